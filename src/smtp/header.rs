//! The message header as the session sees it while streaming: counting `Received:` fields
//! (hop count), noticing `Date:` and `Message-ID:`, capturing `From:`, and inserting the
//! fields a submission server must add when they are missing. Also the trace field we
//! prepend (`Received:`), RFC 5322 dates and new message ids.
//!
//! Sans-I/O: [`HeaderScanner`] takes decoded content and emits it (with insertions) into a
//! buffer; it holds at most one header line and the `From:` value, each capped, so a hostile
//! header cannot grow it. It never rewrites or removes a field the client sent.
//!
//! Security note: everything written into headers here is either ours or validated (the HELO
//! name is printable ASCII without spaces, addresses are [`crate::directory::Address`]), so
//! nothing a client sends can inject a header line.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the scanner learnt about the header.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct HeaderInfo {
    /// `Received:` fields, ours excluded.
    pub received: usize,
    /// A `Date:` field is present.
    pub date: bool,
    /// A `Message-ID:` field is present.
    pub message_id: bool,
    /// Each `From:` field's unfolded value.
    pub from: Vec<String>,
    /// A `From:` value was longer than the cap and was cut.
    pub from_truncated: bool,
}

/// Streams content through, watching the header section.
#[derive(Debug)]
pub(crate) struct HeaderScanner {
    in_header: bool,
    /// The current, incomplete header line.
    line: Vec<u8>,
    /// Cap on `line`: past it the header is considered over (the content checker will have
    /// refused the message already for its line length).
    max_line: usize,
    /// Inside a `From:` field (its continuation lines belong to it).
    in_from: bool,
    max_from: usize,
    /// `Date:` and `Message-ID:` fields to insert when missing; `None` outside submission.
    add_date: Option<String>,
    add_message_id: Option<String>,
    /// The last octet emitted was the LF of a CRLF (or nothing was emitted).
    at_line_start: bool,
    info: HeaderInfo,
}

impl HeaderScanner {
    /// `additions` is `Some((date, message_id))` on submission: the values to insert when the
    /// message lacks those fields.
    pub(crate) fn new(
        max_line: usize,
        max_from: usize,
        additions: Option<(String, String)>,
    ) -> Self {
        let (add_date, add_message_id) = match additions {
            Some((d, m)) => (Some(d), Some(m)),
            None => (None, None),
        };
        HeaderScanner {
            in_header: true,
            line: Vec::new(),
            max_line,
            in_from: false,
            max_from,
            add_date,
            add_message_id,
            at_line_start: true,
            info: HeaderInfo::default(),
        }
    }

    /// Passes `input` on to `out`, inserting missing fields at the end of the header.
    pub(crate) fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if !self.in_header {
                self.emit(input, out);
                return;
            }
            match input.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.line.extend_from_slice(&input[..=i]);
                    input = &input[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.header_line(&line, out);
                }
                None => {
                    self.line.extend_from_slice(input);
                    if self.line.len() > self.max_line {
                        self.end_header(out, false);
                        let line = std::mem::take(&mut self.line);
                        self.emit(&line, out);
                    }
                    return;
                }
            }
        }
    }

    /// Ends the content: flushes a partial line, inserts missing fields if the message was
    /// all header, and returns what was seen.
    pub(crate) fn finish(mut self, out: &mut Vec<u8>) -> HeaderInfo {
        if self.in_header {
            let line = std::mem::take(&mut self.line);
            self.emit(&line, out);
            if !self.at_line_start && self.has_additions() {
                self.emit(b"\r\n", out);
            }
            self.end_header(out, false);
        }
        self.info
    }

    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        if let Some(&last) = bytes.last() {
            self.at_line_start = last == b'\n';
            out.extend_from_slice(bytes);
        }
    }

    fn has_additions(&self) -> bool {
        (self.add_date.is_some() && !self.info.date)
            || (self.add_message_id.is_some() && !self.info.message_id)
    }

    fn header_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            self.end_header(out, false);
        } else if content[0] == b' ' || content[0] == b'\t' {
            if self.in_from {
                self.append_from(content);
            }
        } else if let Some((name, colon)) = field_name(content) {
            self.in_from = name.eq_ignore_ascii_case(b"from");
            if self.in_from {
                self.info.from.push(String::new());
                self.append_from(&content[colon + 1..]);
            } else if name.eq_ignore_ascii_case(b"received") {
                self.info.received += 1;
            } else if name.eq_ignore_ascii_case(b"date") {
                self.info.date = true;
            } else if name.eq_ignore_ascii_case(b"message-id") {
                self.info.message_id = true;
            }
        } else {
            // Not a header field: the body starts here without the blank line. If we insert
            // fields, a blank line must follow them or this line would read as a header.
            self.end_header(out, true);
        }
        self.emit(line, out);
    }

    /// Appends to the current `From:` value (unfolding: the CRLF is dropped, the WSP kept).
    fn append_from(&mut self, part: &[u8]) {
        let used: usize = self.info.from.iter().map(String::len).sum();
        let room = self.max_from.saturating_sub(used);
        let text = String::from_utf8_lossy(part);
        if text.len() > room {
            self.info.from_truncated = true;
        }
        if let Some(value) = self.info.from.last_mut() {
            let mut end = text.len().min(room);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            value.push_str(&text[..end]);
        }
    }

    fn end_header(&mut self, out: &mut Vec<u8>, blank_line: bool) {
        self.in_header = false;
        self.in_from = false;
        let mut added = false;
        if let Some(date) = self.add_date.take().filter(|_| !self.info.date) {
            self.emit(format!("Date: {date}\r\n").as_bytes(), out);
            added = true;
        }
        if let Some(id) = self.add_message_id.take().filter(|_| !self.info.message_id) {
            self.emit(format!("Message-ID: {id}\r\n").as_bytes(), out);
            added = true;
        }
        if added && blank_line {
            self.emit(b"\r\n", out);
        }
    }
}

/// The field name of a header line (`Name:` or the obsolete `Name :`) and the colon's
/// offset, or `None` when the line is not a header field.
fn field_name(line: &[u8]) -> Option<(&[u8], usize)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = line[..colon].trim_ascii_end();
    (!name.is_empty() && name.iter().all(|&b| (33..=126).contains(&b))).then_some((name, colon))
}

/// One comma-separated element of an address list while it is being cut.
#[derive(Default)]
struct Piece {
    /// Text outside angle brackets (display name or a bare addr-spec).
    text: String,
    /// Text inside the angle brackets.
    addr: String,
    /// How many `<…>` the element holds (valid: 0 or 1).
    angles: usize,
    /// Non-space text after the closing `>`: not a valid name-addr.
    junk_after: bool,
}

impl Piece {
    fn push(&mut self, c: char, in_angle: bool) {
        if in_angle {
            self.addr.push(c);
        } else {
            if self.angles > 0 && !c.is_whitespace() {
                self.junk_after = true;
            }
            self.text.push(c);
        }
    }
}

/// The addr-specs of a `From:` value (`Name <a@b>`, `a@b (comment)`, lists, groups), or
/// `None` when it holds none or is malformed. Addresses are returned as written. Brackets
/// inside quoted strings and comments do not count, so a display name cannot smuggle in a
/// second address.
pub(crate) fn mailbox_addresses(value: &str) -> Option<Vec<String>> {
    let mut pieces = vec![Piece::default()];
    let mut depth = 0usize;
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    for c in value.chars() {
        let piece = pieces.last_mut()?;
        if escaped {
            escaped = false;
            if depth == 0 {
                piece.push(c, angle);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    piece.push(c, angle);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                piece.push(c, angle);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ if quoted => piece.push(c, angle),
            '<' if !angle => {
                angle = true;
                piece.angles += 1;
            }
            '>' if angle => angle = false,
            ',' if !angle => pieces.push(Piece::default()),
            // A group name ends at a top-level colon; its list ends with ';'.
            ':' if !angle => *piece = Piece::default(),
            ';' if !angle => {}
            _ => piece.push(c, angle),
        }
    }
    if quoted || depth > 0 || angle {
        return None;
    }
    let mut out = Vec::new();
    for piece in pieces {
        let addr = match piece.angles {
            0 if piece.text.trim().is_empty() => continue,
            0 => piece.text.trim().to_string(),
            1 if !piece.junk_after => piece.addr.trim().to_string(),
            _ => return None,
        };
        if !addr.contains('@') || addr.contains(char::is_whitespace) {
            return None;
        }
        out.push(addr);
    }
    (!out.is_empty()).then_some(out)
}

/// Formats `t` as an RFC 5322 date-time in UTC: `Tue, 1 Apr 2025 12:00:00 +0000`.
pub(crate) fn rfc5322_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A new, globally unique message id: `<seconds.random@hostname>`.
pub(crate) fn new_message_id(hostname: &str, now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format!("<{secs}.{:016x}@{hostname}>", rand::random::<u64>())
}

/// The facts a `Received:` field records.
pub(crate) struct Trace<'a> {
    pub helo: &'a str,
    pub peer: IpAddr,
    pub hostname: &'a str,
    /// `ESMTPSA`, `LMTP`, `UTF8SMTPS`… (RFC 3848, RFC 6531).
    pub with: &'a str,
    pub tls: Option<&'a str>,
    pub id: &'a str,
    /// Named only when the message has exactly one recipient, so it reveals no Bcc.
    pub rcpt: Option<&'a str>,
    pub date: &'a str,
}

/// The `Received:` field (RFC 5321 §4.4), folded, with CRLF.
pub(crate) fn received(t: &Trace<'_>) -> String {
    let ip = match t.peer.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let mut s = format!(
        "Received: from {} ([{ip}])\r\n\tby {} (Mailnode) with {}",
        t.helo, t.hostname, t.with
    );
    if let Some(tls) = t.tls {
        s.push_str(&format!(" ({tls})"));
    }
    s.push_str(&format!(" id {}", t.id));
    if let Some(rcpt) = t.rcpt {
        s.push_str(&format!("\r\n\tfor <{rcpt}>"));
    }
    s.push_str(&format!(";\r\n\t{}\r\n", t.date));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn scan(input: &[u8], add: bool, step: usize) -> (String, HeaderInfo) {
        let additions = add.then(|| ("D".to_string(), "<M@h>".to_string()));
        let mut s = HeaderScanner::new(1000, 64, additions);
        let mut out = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            s.push(chunk, &mut out);
        }
        let info = s.finish(&mut out);
        (String::from_utf8(out).unwrap(), info)
    }

    #[test]
    fn scanner_inserts_missing_fields_at_the_end_of_the_header() {
        let cases: Vec<(&str, bool, &str)> = vec![
            (
                "Subject: x\r\n\r\nbody\r\n",
                false,
                "Subject: x\r\n\r\nbody\r\n",
            ),
            (
                "Subject: x\r\n\r\nbody\r\n",
                true,
                "Subject: x\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\nbody\r\n",
            ),
            (
                "Date: y\r\nmessage-id: <a@b>\r\n\r\nb\r\n",
                true,
                "Date: y\r\nmessage-id: <a@b>\r\n\r\nb\r\n",
            ),
            (
                "Subject: x\r\n",
                true,
                "Subject: x\r\nDate: D\r\nMessage-ID: <M@h>\r\n",
            ),
            (
                "Subject: x",
                true,
                "Subject: x\r\nDate: D\r\nMessage-ID: <M@h>\r\n",
            ),
            ("", true, "Date: D\r\nMessage-ID: <M@h>\r\n"),
            (
                "hello world\r\n",
                true,
                "Date: D\r\nMessage-ID: <M@h>\r\n\r\nhello world\r\n",
            ),
            // Header-looking lines in the body are not header fields.
            (
                "Subject: x\r\n\r\nDate: no\r\n",
                true,
                "Subject: x\r\nDate: D\r\nMessage-ID: <M@h>\r\n\r\nDate: no\r\n",
            ),
        ];
        for (input, add, want) in cases {
            for step in [1, 5, input.len()] {
                assert_eq!(
                    scan(input.as_bytes(), add, step).0,
                    want,
                    "{input:?} {step}"
                );
            }
        }
    }

    #[test]
    fn scanner_counts_received_and_captures_from() {
        let input = "Received: a\r\nRECEIVED : b\r\n\tc\r\nFrom: Alice\r\n <alice@example.org>\r\n\
                     X: y\r\n\r\nReceived: body\r\n";
        for step in [1, 3, input.len()] {
            let (out, info) = scan(input.as_bytes(), false, step);
            assert_eq!(out, input);
            assert_eq!(info.received, 2);
            assert_eq!(info.from, vec![" Alice <alice@example.org>".to_string()]);
            assert!(!info.from_truncated);
        }
        let long = format!("From: {}\r\n\r\n", "x".repeat(100));
        let (_, info) = scan(long.as_bytes(), false, 7);
        assert!(info.from_truncated);
        assert_eq!(info.from[0].len(), 64);
    }

    #[test]
    fn from_addresses() {
        let cases: Vec<(&str, Option<Vec<&str>>)> = vec![
            ("alice@example.org", Some(vec!["alice@example.org"])),
            (
                " Alice <alice@example.org>",
                Some(vec!["alice@example.org"]),
            ),
            (
                "\"Smith, A\" <a@x.org>, b@y.org",
                Some(vec!["a@x.org", "b@y.org"]),
            ),
            ("a@x.org (Alice (the) <real> one)", Some(vec!["a@x.org"])),
            ("\"Q <q@evil.org>\" <a@x.org>", Some(vec!["a@x.org"])),
            ("<a@x.org> \"Q <q@evil.org>\"", None),
            ("<a@x.org> <b@y.org>", None),
            ("A <\"a>b\"@x.org>", Some(vec!["\"a>b\"@x.org"])),
            ("Team: a@x.org, b@x.org;", Some(vec!["a@x.org", "b@x.org"])),
            ("", None),
            ("Alice", None),
            ("<a@x.org", None),
            ("\"unterminated <a@x.org>", None),
            ("Alice Smith alice@x.org", None),
        ];
        for (value, want) in cases {
            let want = want.map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(mailbox_addresses(value), want, "{value:?}");
        }
    }

    #[test]
    fn dates() {
        let at = |s: u64| rfc5322_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(at(1_743_508_800), "Tue, 1 Apr 2025 12:00:00 +0000");
        assert_eq!(at(4_102_444_799), "Thu, 31 Dec 2099 23:59:59 +0000");
    }

    #[test]
    fn received_field() {
        let t = Trace {
            helo: "client.example",
            peer: "::ffff:192.0.2.7".parse().unwrap(),
            hostname: "mx.example.org",
            with: "ESMTPS",
            tls: Some("TLSv1.3 TLS13_AES_256_GCM_SHA384"),
            id: "42.1",
            rcpt: Some("a@example.org"),
            date: "Tue, 1 Apr 2025 12:00:00 +0000",
        };
        assert_eq!(
            received(&t),
            "Received: from client.example ([192.0.2.7])\r\n\tby mx.example.org (Mailnode) \
             with ESMTPS (TLSv1.3 TLS13_AES_256_GCM_SHA384) id 42.1\r\n\tfor <a@example.org>;\
             \r\n\tTue, 1 Apr 2025 12:00:00 +0000\r\n"
        );
        let v6 = Trace {
            peer: "2001:db8::1".parse().unwrap(),
            tls: None,
            rcpt: None,
            ..t
        };
        assert!(received(&v6).starts_with("Received: from client.example ([IPv6:2001:db8::1])"));
        assert!(new_message_id("h.example", SystemTime::now()).ends_with("@h.example>"));
    }
}
