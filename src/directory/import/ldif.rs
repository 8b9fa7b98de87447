//! LDIF import files (RFC 2849 content records), as exported from an old LDAP server with
//! `ldapsearch -LLL` or `slapcat`.
//!
//! Handled: records separated by blank lines, folded lines (a continuation starts with one
//! space), `#` comments (folded too), `attr:: base64` values, attribute options
//! (`cn;lang-fr`), an optional leading `version: 1`, CRLF line ends. Mapping, with attribute
//! names matched case-insensitively: `mail` → address (further `mail` values become aliases),
//! `displayName` (else `cn`) → display name, `userPassword` → password, `mailQuota` or `quota`
//! → quota, `mailHost` → mail host, `mailAlternateAddress` → aliases. Other attributes are
//! ignored, and entries without `mail` (organisational units, groups) are skipped silently.
//! Change records (`changetype:` other than `add`) and `attr:< URL` values are refused.
//!
//! `userPassword` follows OpenLDAP's rule: a value with a `{SCHEME}` prefix (or a `$id$` crypt
//! string) is a hash and must be one this server verifies; a value without one is plaintext
//! and will be hashed with argon2id. Among several values the first usable hash wins.
//!
//! This parser must never do I/O. Security note: see the parent module about plaintext.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::{Fields, ImportRecord, LineError};
use crate::directory::password::scheme_of;

/// Exporters differ on base64 padding; accept both.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses LDIF `text`: one result per entry that has a `mail` attribute, or per bad entry, in
/// file order.
pub fn parse_ldif(text: &str) -> Vec<Result<ImportRecord, LineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    let mut first = true;
    for (line, entry) in records(text) {
        let logical = match entry {
            Ok(lines) => lines,
            Err(reason) => {
                out.push(Err(LineError { line, reason }));
                continue;
            }
        };
        let mut logical = logical.as_slice();
        if first {
            first = false;
            if logical
                .first()
                .is_some_and(|l| l.to_ascii_lowercase().starts_with("version:"))
            {
                logical = &logical[1..];
                if logical.is_empty() {
                    continue;
                }
            }
        }
        match parse_entry(logical) {
            Ok(Some(fields)) => out.push(fields.into_record(line)),
            Ok(None) => {}
            Err(reason) => out.push(Err(LineError { line, reason })),
        }
    }
    out
}

/// One entry of the file: its first line number and its unfolded logical lines (comments
/// removed), or why it cannot be unfolded.
type RawEntry = (usize, Result<Vec<String>, String>);

/// Splits `text` into entries at blank lines, unfolding continuation lines.
fn records(text: &str) -> Vec<RawEntry> {
    let mut out: Vec<RawEntry> = Vec::new();
    let mut current: Option<RawEntry> = None;
    // Whether the logical line being built is a comment, so its continuations are dropped too.
    let mut in_comment = false;
    for (i, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.is_empty() {
            out.extend(current.take());
            in_comment = false;
            continue;
        }
        if line.starts_with('#') {
            in_comment = true;
            continue;
        }
        let continuation = line.strip_prefix(' ');
        if continuation.is_some() && in_comment {
            continue;
        }
        in_comment = false;
        let (_, entry) = current.get_or_insert_with(|| (i + 1, Ok(Vec::new())));
        let Ok(lines) = entry else {
            continue;
        };
        match (continuation, lines.last_mut()) {
            (Some(rest), Some(last)) => last.push_str(rest),
            (Some(_), None) => {
                *entry = Err(format!(
                    "continuation line {} has nothing to continue",
                    i + 1
                ))
            }
            (None, _) => lines.push(line.to_string()),
        }
    }
    out.extend(current);
    out
}

/// Maps one entry to import fields; `Ok(None)` for entries without `mail`.
fn parse_entry(lines: &[String]) -> Result<Option<Fields>, String> {
    let mut fields = Fields::default();
    let mut mails: Vec<String> = Vec::new();
    let mut cn = String::new();
    let mut display_name = String::new();
    let mut passwords: Vec<String> = Vec::new();
    for line in lines {
        let (attr, value) = attribute(line)?;
        let attr = attr.to_ascii_lowercase();
        let text = || {
            String::from_utf8(value.clone())
                .map_err(|_| format!("attribute {attr} is not valid UTF-8"))
        };
        match attr.as_str() {
            "changetype" => {
                let kind = text()?;
                if !kind.eq_ignore_ascii_case("add") {
                    return Err(format!(
                        "changetype: {kind} records are not supported: export plain entries (ldapsearch -LLL or slapcat)"
                    ));
                }
            }
            "mail" => mails.push(text()?),
            "cn" if cn.is_empty() => cn = text()?,
            "displayname" if display_name.is_empty() => display_name = text()?,
            "userpassword" => passwords.push(text()?),
            "mailquota" | "quota" if fields.quota.is_empty() => fields.quota = text()?,
            "mailhost" if fields.mail_host.is_empty() => fields.mail_host = text()?,
            "mailalternateaddress" => fields.aliases.push(text()?),
            _ => {}
        }
    }
    let mut mails = mails.into_iter();
    let Some(address) = mails.next() else {
        return Ok(None);
    };
    fields.address = address;
    let extra: Vec<String> = mails.collect();
    fields.aliases.splice(0..0, extra);
    fields.display_name = if display_name.is_empty() {
        cn
    } else {
        display_name
    };
    choose_password(&mut fields, passwords)?;
    Ok(Some(fields))
}

/// Puts the best `userPassword` value into `fields`: the first hash this server verifies,
/// else the first plaintext value; an error if every value is an unusable hash.
fn choose_password(fields: &mut Fields, values: Vec<String>) -> Result<(), String> {
    let is_hash = |v: &str| v.starts_with('{') || v.starts_with('$');
    let mut first_error = None;
    let mut plain = None;
    for v in values {
        if is_hash(&v) {
            match scheme_of(&v) {
                Ok(_) => {
                    fields.password_hash = v;
                    return Ok(());
                }
                Err(e) => {
                    first_error.get_or_insert(format!("userPassword: {e}"));
                }
            }
        } else if plain.is_none() && !v.is_empty() {
            plain = Some(v);
        }
    }
    match (plain, first_error) {
        (Some(p), _) => {
            fields.password = p;
            Ok(())
        }
        (None, Some(e)) => Err(e),
        (None, None) => Ok(()),
    }
}

/// Splits `attr[;options]: value`, `attr:: base64` into the attribute type and the value bytes.
fn attribute(line: &str) -> Result<(&str, Vec<u8>), String> {
    let Some((desc, rest)) = line.split_once(':') else {
        return Err(format!(
            "expected \"attribute: value\", found {:?}",
            line.chars().take(40).collect::<String>()
        ));
    };
    let attr = desc.split(';').next().unwrap_or_default().trim_end();
    if attr.is_empty() {
        return Err("a line starts with ':' instead of an attribute name".to_string());
    }
    if let Some(b64) = rest.strip_prefix(':') {
        let value = BASE64
            .decode(b64.trim())
            .map_err(|_| format!("attribute {attr}: value after '::' is not valid base64"))?;
        Ok((attr, value))
    } else if rest.starts_with('<') {
        Err(format!(
            "attribute {attr}: URL values (':<') are not supported: inline the value"
        ))
    } else {
        Ok((attr, rest.trim_start_matches(' ').as_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::ImportPassword;
    use super::*;

    /// An export as `ldapsearch -LLL` or `slapcat` writes it, with a few broken entries.
    const SAMPLE: &[&str] = &[
        "version: 1",
        "",
        "# The organisation; skipped, it has no mail.",
        "dn: ou=people,dc=example,dc=org",
        "objectClass: organizationalUnit",
        "ou: people",
        "",
        "dn: uid=alice,ou=people,dc=example,dc=org",
        "objectClass: inetOrgPerson",
        "cn: Alice Smith",
        "displayName:: QWxpY2UgU23DrXRo",
        "mail: Alice@Example.org",
        "mail: asmith@example.org",
        "mailAlternateAddress: al@example.org",
        "userPassword:: e1NTSEF9bUlnck5YcUtKWkZUdFRyQUpPYVp5cmtwVDIxMDNuU2g=",
        "mailQuota: 500M",
        "mailHost: store-2",
        "# a folded comment",
        " that continues here",
        "description: a long description that is",
        "  folded over two lines",
        "",
        "dn: uid=bob,ou=people,dc=example,dc=org\r",
        "cn: Bob\r",
        "mail: bob@exa\r",
        " mple.org\r",
        "userPassword: {CRYPT}$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1\r",
        "\r",
        "dn: uid=carol,ou=people,dc=example,dc=org",
        "changetype: delete",
        "",
        "dn: uid=dave,ou=people,dc=example,dc=org",
        "mail: dave@example.org",
        "userPassword: {MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
        "",
        "dn: uid=erin,ou=people,dc=example,dc=org",
        "mail: erin@example.org",
        "jpegPhoto:< file:///tmp/erin.jpg",
        "",
        "",
        "dn: uid=frank,ou=people,dc=example,dc=org",
        "mail: frank@example.org",
        "userPassword: plain-secret",
        "this line has no colon",
        "",
        "dn: uid=gina,ou=people,dc=example,dc=org",
        "changetype: add",
        "mail: gina@example.org",
        "userPassword: gina-secret",
        "cn;lang-fr: Gina",
    ];

    #[test]
    fn sample_file() {
        let got = parse_ldif(&SAMPLE.join("\n"));
        let summary: Vec<(usize, Result<&str, &str>)> = got
            .iter()
            .map(|r| match r {
                Ok(r) => (r.line, Ok(r.user.address.as_str())),
                Err(e) => (e.line, Err(e.reason.as_str())),
            })
            .collect();
        assert_eq!(summary.len(), 7, "{summary:#?}");
        assert_eq!(summary[0], (8, Ok("alice@example.org")));
        assert_eq!(summary[1], (23, Ok("bob@example.org")));
        assert_eq!(summary[2].0, 29);
        assert!(summary[2].1.unwrap_err().contains("changetype: delete"));
        assert_eq!(summary[3].0, 32);
        assert!(summary[3].1.unwrap_err().contains("{MD5}"));
        assert_eq!(summary[4].0, 36);
        assert!(summary[4].1.unwrap_err().contains("URL"));
        assert_eq!(summary[5].0, 41);
        assert!(summary[5].1.unwrap_err().contains("no colon"));
        assert_eq!(summary[6], (46, Ok("gina@example.org")));

        let alice = got[0].as_ref().unwrap();
        assert_eq!(alice.user.display_name, "Alice Smíth");
        assert_eq!(
            alice.user.password,
            ImportPassword::Hash("{SSHA}mIgrNXqKJZFTtTrAJOaZyrkpT2103nSh".into())
        );
        assert_eq!(alice.user.quota_bytes, 500 << 20);
        assert_eq!(alice.user.mail_host, "store-2");
        assert_eq!(alice.aliases, ["asmith@example.org", "al@example.org"]);

        let bob = got[1].as_ref().unwrap();
        assert_eq!(bob.user.display_name, "Bob");
        assert!(
            matches!(&bob.user.password, ImportPassword::Hash(h) if h.starts_with("{CRYPT}$6$"))
        );

        let gina = got[6].as_ref().unwrap();
        assert_eq!(gina.user.display_name, "Gina");
        assert_eq!(
            gina.user.password,
            ImportPassword::Plain("gina-secret".into())
        );
    }

    #[test]
    fn password_choice() {
        let entry = |pw: &[&str]| {
            let mut text = String::from("dn: uid=x\nmail: x@example.org\n");
            for p in pw {
                text.push_str(&format!("userPassword: {p}\n"));
            }
            parse_ldif(&text).remove(0)
        };
        let pw = |r: Result<ImportRecord, LineError>| r.map(|r| r.user.password);
        assert_eq!(pw(entry(&[])), Ok(ImportPassword::None));
        assert_eq!(
            pw(entry(&["{MD5}x", "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="])),
            Ok(ImportPassword::Hash(
                "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=".into()
            ))
        );
        assert_eq!(
            pw(entry(&["{MD5}x", "clear"])),
            Ok(ImportPassword::Plain("clear".into()))
        );
        assert!(pw(entry(&["{MD5}x"])).is_err());
    }

    #[test]
    fn malformed_structure() {
        let got = parse_ldif(" leading continuation\nmail: a@example.org\n\ndn: x\nmail:: !!!\n");
        assert_eq!(got.len(), 2);
        let e0 = got[0].as_ref().unwrap_err();
        assert_eq!(e0.line, 1);
        assert!(e0.reason.contains("nothing to continue"), "{}", e0.reason);
        let e1 = got[1].as_ref().unwrap_err();
        assert_eq!(e1.line, 4);
        assert!(e1.reason.contains("base64"), "{}", e1.reason);
        assert!(parse_ldif("").is_empty());
        assert!(parse_ldif("version: 1\n").is_empty());
        assert!(parse_ldif("# only a comment\n\n\n").is_empty());
    }
}
