//! Sieve scripts generated from simple per-user settings: forwarding and a vacation reply, as
//! the reference deployment's migration generated them from LDAP attributes.
//!
//! The settings live in the script itself: its first line is a comment holding them as JSON
//! ([`SETTINGS_SCRIPT`], [`read_settings`]), and the rest is what [`generate`] makes of them.
//! So one directory command (`PutSieveScript`) changes settings and script together — there is
//! no second record that could disagree with the script after a failed write — and a user who
//! looks at the script over ManageSieve sees what it does. A script whose text is not exactly
//! what its header generates was edited by hand; [`read_settings`] says so.
//!
//! Security: every value is user input (an operator's or, later, webmail's). Addresses must be
//! plain addresses ([`Address::parse`]: no quotes, backslashes or spaces); free text is written
//! as a Sieve quoted string with `\` and `"` escaped, and no extension is required that would
//! give `${...}` a meaning (variables, encoded-character), so text reaches the reply verbatim.
//! Control characters other than line breaks and tabs are refused; the subject is one line.
//! This module does no I/O.

use serde::{Deserialize, Serialize};

use crate::directory::Address;

/// The name of the script generated from the settings.
pub const SETTINGS_SCRIPT: &str = "mailnode-settings";

/// The first line of a generated script, before the settings' JSON.
const HEADER: &str = "# mailnode-settings v1 ";

/// Most forwarding addresses: the interpreter's default redirect limit per message.
pub const MAX_FORWARDS: usize = 4;
/// Longest vacation subject, in characters.
pub const MAX_SUBJECT: usize = 256;
/// Longest vacation message, in bytes (the script must stay well under the 64 KiB limit).
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Most days between two replies to the same sender.
pub const MAX_DAYS: u64 = 365;

/// A user's simple filtering settings; `None` is off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Forward every message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
    /// Answer messages with an automatic reply (RFC 5230).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vacation: Option<Vacation>,
}

impl Settings {
    /// Whether nothing is on: no script is needed.
    pub fn is_empty(&self) -> bool {
        self.forward.is_none() && self.vacation.is_none()
    }
}

/// Forwarding: where to, and whether the user keeps a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Forward {
    /// 1 to [`MAX_FORWARDS`] addresses.
    pub addresses: Vec<String>,
    /// Also deliver to the user's INBOX.
    #[serde(default = "yes")]
    pub keep: bool,
}

fn yes() -> bool {
    true
}

/// An automatic reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vacation {
    /// Subject of the reply (one line).
    pub subject: String,
    /// Text of the reply.
    pub message: String,
    /// Days before the same sender is answered again (1 to [`MAX_DAYS`]; absent: delivery's
    /// default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<u64>,
    /// From address of the reply (absent: the recipient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The user's other addresses (aliases): mail to them is answered too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Last day replies are sent, `YYYY-MM-DD` (inclusive, in the server's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Why settings cannot become a script: says which value is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SettingsError(pub String);

/// What a stored settings script holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSettings {
    /// The settings from its header line.
    pub settings: Settings,
    /// The text differs from what the settings generate: someone changed it by hand.
    pub edited: bool,
}

/// Checks and normalises settings: addresses lowercased and de-duplicated, line breaks of the
/// message as LF, the subject on one line. [`generate`] calls it; callers that store or show
/// the settings call it first so that they keep what was generated.
pub fn normalise(settings: &Settings) -> Result<Settings, SettingsError> {
    let forward = match &settings.forward {
        None => None,
        Some(f) => {
            let addresses = addresses(&f.addresses, "forwarding address")?;
            if addresses.is_empty() {
                return Err(SettingsError(
                    "forwarding needs at least one address".into(),
                ));
            }
            if addresses.len() > MAX_FORWARDS {
                return Err(SettingsError(format!(
                    "{} forwarding addresses: at most {MAX_FORWARDS} (use a list for more)",
                    addresses.len()
                )));
            }
            Some(Forward {
                addresses,
                keep: f.keep,
            })
        }
    };
    let vacation = match &settings.vacation {
        None => None,
        Some(v) => Some(Vacation {
            subject: subject(&v.subject)?,
            message: message(&v.message)?,
            days: match v.days {
                Some(d) if d == 0 || d > MAX_DAYS => {
                    return Err(SettingsError(format!(
                        "vacation days must be 1 to {MAX_DAYS}, not {d}"
                    )))
                }
                d => d,
            },
            from: match &v.from {
                None => None,
                Some(a) => Some(address(a, "vacation from address")?),
            },
            addresses: addresses(&v.addresses, "vacation address")?,
            until: match &v.until {
                None => None,
                Some(d) => Some(date(d)?),
            },
        }),
    };
    Ok(Settings { forward, vacation })
}

/// The script for `settings`: a header comment holding them, then the vacation (first, so it
/// also answers forwarded mail) and the redirects. Always compiles.
pub fn generate(settings: &Settings) -> Result<String, SettingsError> {
    let s = normalise(settings)?;
    let json = serde_json::to_string(&s)
        .map_err(|e| SettingsError(format!("cannot encode the settings: {e}")))?;
    let mut out = format!("{HEADER}{json}\n");
    out.push_str(
        "# Generated by Mailnode from the user's forward and vacation settings\n\
         # (`mailctl user set USER forward|vacation ...`). It is rewritten whenever they\n\
         # change: keep your own rules in another script.\n",
    );
    let mut require = Vec::new();
    if let Some(v) = &s.vacation {
        if v.until.is_some() {
            require.extend(["date", "relational"]);
        }
        require.push("vacation");
    }
    if !require.is_empty() {
        let list: Vec<String> = require.iter().map(|r| quote(r)).collect();
        out.push_str(&format!("require [{}];\n", list.join(", ")));
    }
    if let Some(v) = &s.vacation {
        let mut cmd = String::from("vacation");
        if let Some(d) = v.days {
            cmd.push_str(&format!(" :days {d}"));
        }
        cmd.push_str(&format!(" :subject {}", quote(&v.subject)));
        if let Some(from) = &v.from {
            cmd.push_str(&format!(" :from {}", quote(from)));
        }
        if !v.addresses.is_empty() {
            let list: Vec<String> = v.addresses.iter().map(|a| quote(a)).collect();
            cmd.push_str(&format!(" :addresses [{}]", list.join(", ")));
        }
        cmd.push_str(&format!(" {};\n", quote(&v.message)));
        match &v.until {
            Some(until) => out.push_str(&format!(
                "if currentdate :value \"le\" \"date\" {} {{\n    {cmd}}}\n",
                quote(until)
            )),
            None => out.push_str(&cmd),
        }
    }
    if let Some(f) = &s.forward {
        for a in &f.addresses {
            out.push_str(&format!("redirect {};\n", quote(a)));
        }
        if f.keep {
            out.push_str("keep;\n");
        }
    }
    Ok(out)
}

/// The settings a generated script holds; `None` when its first line is not a settings header
/// (not a generated script).
pub fn read_settings(source: &str) -> Option<StoredSettings> {
    let first = source.lines().next()?;
    let json = first.strip_prefix(HEADER)?;
    let settings: Settings = serde_json::from_str(json).ok()?;
    let edited = generate(&settings).ok().as_deref() != Some(source);
    Some(StoredSettings { settings, edited })
}

/// `s` as a Sieve quoted string (RFC 5228 §2.4.2): `\` and `"` escaped, everything else as is.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

fn address(a: &str, what: &str) -> Result<String, SettingsError> {
    Address::parse(a.trim())
        .map(Address::into_string)
        .map_err(|e| SettingsError(format!("{what} {a:?}: {e}")))
}

fn addresses(list: &[String], what: &str) -> Result<Vec<String>, SettingsError> {
    let mut out: Vec<String> = Vec::new();
    for a in list {
        let a = address(a, what)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

fn subject(s: &str) -> Result<String, SettingsError> {
    // A subject is one header line: line breaks and tabs become single spaces.
    let mut out = String::with_capacity(s.len());
    let mut blank = false;
    for c in s.trim().chars() {
        if matches!(c, '\r' | '\n' | '\t') {
            if !blank {
                out.push(' ');
            }
            blank = true;
            continue;
        }
        if c.is_control() {
            return Err(SettingsError(format!(
                "the vacation subject holds the control character {c:?}"
            )));
        }
        blank = false;
        out.push(c);
    }
    if out.is_empty() {
        return Err(SettingsError("the vacation subject is empty".into()));
    }
    if out.chars().count() > MAX_SUBJECT {
        return Err(SettingsError(format!(
            "the vacation subject is longer than {MAX_SUBJECT} characters"
        )));
    }
    Ok(out)
}

fn message(m: &str) -> Result<String, SettingsError> {
    let m = m.replace("\r\n", "\n").replace('\r', "\n");
    if let Some(c) = m
        .chars()
        .find(|&c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(SettingsError(format!(
            "the vacation message holds the control character {c:?}"
        )));
    }
    if m.trim().is_empty() {
        return Err(SettingsError("the vacation message is empty".into()));
    }
    if m.len() > MAX_MESSAGE {
        return Err(SettingsError(format!(
            "the vacation message is {} bytes, more than {MAX_MESSAGE}",
            m.len()
        )));
    }
    Ok(m)
}

/// A `YYYY-MM-DD` date that exists.
fn date(d: &str) -> Result<String, SettingsError> {
    let bad = || SettingsError(format!("{d:?} is not a date: write YYYY-MM-DD"));
    let d = d.trim();
    let b = d.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<u32, SettingsError> {
        let s = &d[r];
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (y, m, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if day == 0 || day > days_in {
        return Err(bad());
    }
    Ok(d.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sieve::{compile, run, Action, Envelope, Limits, MessageView, SieveTime};

    const HOSTILE: &str = "Re: \"quoted\" \\back\\slash ${var} ${hex:41} text:\n.\n..\n";

    fn vacation(subject: &str, message: &str) -> Vacation {
        Vacation {
            subject: subject.into(),
            message: message.into(),
            days: Some(3),
            from: Some("Me@Example.org".into()),
            addresses: vec!["alias@example.org".into()],
            until: None,
        }
    }

    fn actions(script: &str, now: i64) -> Vec<Action> {
        let compiled = compile(script, &Limits::default()).unwrap_or_else(|e| {
            panic!("generated script does not compile: {e}\n{script}");
        });
        let msg = MessageView::from_raw(
            b"From: a@b.org\r\nTo: u@example.org\r\nSubject: hi\r\n\r\nbody\r\n",
        );
        let env = Envelope {
            from: "a@b.org".into(),
            to: "u@example.org".into(),
            ..Default::default()
        };
        let now = SieveTime {
            unix: now,
            offset_minutes: 0,
        };
        run(&compiled, &msg, &env, now, &Limits::default())
            .unwrap()
            .actions
    }

    #[test]
    fn hostile_text_reaches_the_reply_verbatim() {
        let message =
            "Line one with \"quotes\" and \\ and ${x}\n.\nthe line above is a dot\r\n..\n\
                       text:\n# not a comment\n}";
        let s = Settings {
            forward: None,
            vacation: Some(vacation(HOSTILE, message)),
        };
        let script = generate(&s).unwrap();
        let got = actions(&script, 0);
        let want_reason = message.replace("\r\n", "\n").replace('\n', "\r\n");
        let want_subject = "Re: \"quoted\" \\back\\slash ${var} ${hex:41} text: . ..";
        match &got[..] {
            [Action::Vacation {
                reason,
                subject,
                from,
                addresses,
                days,
                ..
            }, Action::Keep { .. }] => {
                assert_eq!(reason, &want_reason);
                assert_eq!(subject.as_deref(), Some(want_subject));
                assert_eq!(from.as_deref(), Some("me@example.org"));
                assert_eq!(addresses, &["alias@example.org"]);
                assert_eq!(*days, Some(3));
            }
            other => panic!("{other:?}\n{script}"),
        }
        // The settings read back from the script are the normalised ones, and unedited.
        let stored = read_settings(&script).unwrap();
        assert!(!stored.edited);
        assert_eq!(stored.settings, normalise(&s).unwrap());
        assert_eq!(generate(&stored.settings).unwrap(), script);
        let edited = script.replace("keep;", "discard;") + "discard;\n";
        assert!(read_settings(&edited).unwrap().edited);
        assert_eq!(read_settings("keep;\n"), None);
    }

    #[test]
    fn forwarding_with_and_without_a_copy() {
        let mut s = Settings {
            forward: Some(Forward {
                addresses: vec!["A@x.org".into(), "b@y.org".into(), "a@x.org".into()],
                keep: true,
            }),
            vacation: None,
        };
        let got = actions(&generate(&s).unwrap(), 0);
        let redirect = |a: &str| Action::Redirect {
            address: a.into(),
            copy: false,
        };
        assert_eq!(
            got,
            [
                redirect("a@x.org"),
                redirect("b@y.org"),
                Action::Keep { flags: vec![] }
            ]
        );
        s.forward.as_mut().unwrap().keep = false;
        let got = actions(&generate(&s).unwrap(), 0);
        assert_eq!(got, [redirect("a@x.org"), redirect("b@y.org")]);
    }

    #[test]
    fn vacation_until_a_date_then_forwarding() {
        let mut v = vacation("Away", "Back soon.");
        v.until = Some("2026-12-31".into());
        let s = Settings {
            forward: Some(Forward {
                addresses: vec!["b@y.org".into()],
                keep: false,
            }),
            vacation: Some(v),
        };
        let script = generate(&s).unwrap();
        // 2026-12-31 12:00 UTC: replies; 2027-01-01 00:00 UTC: no longer.
        let before = actions(&script, 1_798_718_400);
        assert!(
            matches!(
                before[..],
                [Action::Vacation { .. }, Action::Redirect { .. }]
            ),
            "{before:?}"
        );
        let after = actions(&script, 1_798_761_600);
        assert!(matches!(after[..], [Action::Redirect { .. }]), "{after:?}");
    }

    #[test]
    fn bad_settings_are_refused_with_the_value_named() {
        let fwd = |a: Vec<&str>| Settings {
            forward: Some(Forward {
                addresses: a.into_iter().map(String::from).collect(),
                keep: true,
            }),
            vacation: None,
        };
        let vac = |f: &dyn Fn(&mut Vacation)| {
            let mut v = vacation("S", "M");
            f(&mut v);
            Settings {
                forward: None,
                vacation: Some(v),
            }
        };
        let cases = [
            (fwd(vec![]), "at least one"),
            (fwd(vec!["a\"@x.org"]), "a\\\"@x.org"),
            (fwd(vec!["a@x.org\" ; discard ; \""]), "forwarding address"),
            (
                fwd(vec!["a@x.org", "b@x.org", "c@x.org", "d@x.org", "e@x.org"]),
                "at most 4",
            ),
            (vac(&|v| v.subject = " \n ".into()), "subject is empty"),
            (vac(&|v| v.subject = "a\u{1b}[2J".into()), "control"),
            (vac(&|v| v.message = "a\0b".into()), "control"),
            (vac(&|v| v.message = "\n\n".into()), "message is empty"),
            (vac(&|v| v.message = "x".repeat(MAX_MESSAGE + 1)), "bytes"),
            (vac(&|v| v.days = Some(0)), "days"),
            (vac(&|v| v.from = Some("not an address".into())), "from"),
            (vac(&|v| v.until = Some("2026-02-29".into())), "not a date"),
            (vac(&|v| v.until = Some("2026-1-01".into())), "not a date"),
            (vac(&|v| v.until = Some("2026-13-01".into())), "not a date"),
        ];
        for (settings, want) in cases {
            let err = generate(&settings).unwrap_err();
            assert!(err.to_string().contains(want), "{err} (wanted {want:?})");
        }
        assert!(generate(&vac(&|v| v.until = Some("2028-02-29".into()))).is_ok());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quote(""), "\"\"");
    }
}
