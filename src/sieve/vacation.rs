//! Whether a vacation reply may be sent at all: RFC 3834 §2 and RFC 5230 §4.5. The response
//! memory (`:days`, `:handle`) lives on the delivery side.

/// `false` when the message must not get an automatic reply: it is auto-submitted, from a list,
/// bulk or junk, has a null sender, or comes from a daemon or list-management address.
/// `headers` are `(name, value)` pairs in any case; `envelope_from` is MAIL FROM ("" if null).
pub fn vacation_allowed(headers: &[(String, String)], envelope_from: &str) -> bool {
    let from = envelope_from
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    if from.is_empty() {
        return false;
    }
    let local = from
        .rsplit_once('@')
        .map_or(from, |(l, _)| l)
        .to_ascii_lowercase();
    if local == "mailer-daemon"
        || local == "postmaster"
        || local == "listserv"
        || local == "majordomo"
        || local.starts_with("owner-")
        || local.ends_with("-request")
        || local.ends_with("-owner")
        || local.ends_with("-bounces")
    {
        return false;
    }
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        let v = value.trim().to_ascii_lowercase();
        match name.as_str() {
            "auto-submitted" if v.split(';').next().map(str::trim) != Some("no") => return false,
            "precedence" if matches!(v.as_str(), "bulk" | "list" | "junk") => return false,
            "list-id" | "list-help" | "list-unsubscribe" | "list-subscribe" | "list-post"
            | "list-owner" | "list-archive" => return false,
            "x-auto-response-suppress" if v.contains("all") || v.contains("oof") => return false,
            _ => {}
        }
    }
    true
}
