//! CSV import files: a header row naming the columns, then one user per row.
//!
//! Columns, in any order, named case-insensitively: `address` (required), `display_name`,
//! `password`, `password_hash`, `quota`, `mail_host`, `enabled`, `aliases` (separated by
//! spaces, semicolons or commas). An unknown or repeated column fails the whole file on
//! line 1, since every row would be misread. Quoting follows RFC 4180 (the `csv` crate);
//! fields are trimmed.
//! This parser must never do I/O.
//!
//! Security note: the `password` column is plaintext; it goes into
//! [`ImportPassword::Plain`](super::ImportPassword::Plain) and nowhere else.

use super::{Fields, ImportRecord, LineError};

/// The columns a file may have.
const COLUMNS: &[&str] = &[
    "address",
    "display_name",
    "password",
    "password_hash",
    "quota",
    "mail_host",
    "enabled",
    "aliases",
];

/// Parses CSV `text`: one result per data row, in file order.
pub fn parse_csv(text: &str) -> Vec<Result<ImportRecord, LineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut rows = reader.records();
    let header = match rows.next() {
        Some(Ok(h)) => h,
        Some(Err(e)) => return vec![Err(csv_error(&e, 1))],
        None => {
            return vec![Err(LineError {
                line: 1,
                reason: format!(
                    "empty file: a header row naming the columns is required ({})",
                    COLUMNS.join(",")
                ),
            })]
        }
    };
    let header_line = record_line(text, header.position());
    let columns = match header_columns(&header) {
        Ok(c) => c,
        Err(reason) => {
            return vec![Err(LineError {
                line: header_line,
                reason,
            })]
        }
    };
    let mut out = Vec::new();
    for row in rows {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                out.push(Err(csv_error(&e, header_line + 1)));
                continue;
            }
        };
        let line = record_line(text, row.position());
        if row.iter().all(str::is_empty) {
            continue;
        }
        if row.len() > columns.len() {
            out.push(Err(LineError {
                line,
                reason: format!(
                    "{} fields but the header names {}: quote fields that contain commas",
                    row.len(),
                    columns.len()
                ),
            }));
            continue;
        }
        let mut fields = Fields::default();
        for (&column, value) in columns.iter().zip(row.iter()) {
            let value = value.to_string();
            match column {
                "address" => fields.address = value,
                "display_name" => fields.display_name = value,
                "password" => fields.password = value,
                "password_hash" => fields.password_hash = value,
                "quota" => fields.quota = value,
                "mail_host" => fields.mail_host = value,
                "enabled" => fields.enabled = value,
                _ => {
                    fields.aliases = value
                        .split([' ', ';', ','])
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect()
                }
            }
        }
        if fields.address.is_empty() {
            out.push(Err(LineError {
                line,
                reason: "empty address".to_string(),
            }));
            continue;
        }
        out.push(fields.into_record(line));
    }
    out
}

/// Maps header cells to known column names, refusing unknown, repeated or missing ones.
fn header_columns(header: &::csv::StringRecord) -> Result<Vec<&'static str>, String> {
    let mut columns = Vec::with_capacity(header.len());
    for cell in header.iter() {
        let name = cell.to_ascii_lowercase();
        let Some(&known) = COLUMNS.iter().find(|&&c| c == name) else {
            return Err(format!(
                "unknown column {cell:?}: the columns are {}",
                COLUMNS.join(", ")
            ));
        };
        if columns.contains(&known) {
            return Err(format!("column {known} appears twice"));
        }
        columns.push(known);
    }
    if !columns.contains(&"address") {
        return Err("the header has no address column".to_string());
    }
    Ok(columns)
}

/// The line where a record's first field is. The csv crate's position is where it started
/// reading, which is before any blank lines it skipped.
fn record_line(text: &str, position: Option<&::csv::Position>) -> usize {
    let Some(p) = position else {
        return 1;
    };
    let skipped = text
        .as_bytes()
        .iter()
        .skip(p.byte() as usize)
        .take_while(|&&b| b == b'\n' || b == b'\r')
        .filter(|&&b| b == b'\n')
        .count();
    p.line() as usize + skipped
}

fn csv_error(e: &::csv::Error, fallback_line: usize) -> LineError {
    LineError {
        line: e.position().map_or(fallback_line, |p| p.line() as usize),
        reason: format!("unreadable CSV: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ImportPassword, ImportUser};
    use super::*;

    #[test]
    fn good_rows_survive_bad_ones() {
        let text = "\u{feff}Address, display_name ,password,password_hash,quota,mail_host,enabled,aliases\n\
            alice@Example.org,\"Smith, Alice\",s3cret,,500M,store-2,yes,al@example.org; a.smith@example.org\n\
            bob@example.org,Bob,,{SSHA}mIgrNXqKJZFTtTrAJOaZyrkpT2103nSh,,,0,\n\
            \n\
            not an address,X,,,,,,\n\
            carol@example.org,Carol,pw,{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=,,,,\n\
            dave@example.org,Dave,,{MD5}abc,,,,\n\
            erin@example.org,Erin,,,12Q,,,\n\
            frank@example.org,Frank,,,,,maybe,\n\
            gina@example.org,Gina,Smith,x,,,,,,\n\
            \"multi\nline\"@example.org,,,,,,,\n\
            hal@example.org\n";
        let got = parse_csv(text);
        assert_eq!(got.len(), 10, "{got:#?}");
        assert_eq!(
            got[0],
            Ok(ImportRecord {
                line: 2,
                user: ImportUser {
                    address: "alice@example.org".into(),
                    display_name: "Smith, Alice".into(),
                    quota_bytes: 500 << 20,
                    mail_host: "store-2".into(),
                    enabled: true,
                    password: ImportPassword::Plain("s3cret".into()),
                },
                aliases: vec!["al@example.org".into(), "a.smith@example.org".into()],
            })
        );
        let bob = got[1].as_ref().unwrap();
        assert_eq!(
            bob.user.password,
            ImportPassword::Hash("{SSHA}mIgrNXqKJZFTtTrAJOaZyrkpT2103nSh".into())
        );
        assert!(!bob.user.enabled);
        assert_eq!(bob.user.mail_host, "default");
        let errors: Vec<(usize, &str)> = got
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        let lines: Vec<usize> = errors.iter().map(|e| e.0).collect();
        assert_eq!(lines, [5, 6, 7, 8, 9, 10, 11], "{errors:#?}");
        assert!(errors[0].1.contains("address"), "{}", errors[0].1);
        assert!(errors[1].1.contains("keep only one"), "{}", errors[1].1);
        assert!(errors[2].1.contains("{MD5}"), "{}", errors[2].1);
        assert!(errors[3].1.contains("quota"), "{}", errors[3].1);
        assert!(errors[4].1.contains("enabled"), "{}", errors[4].1);
        assert!(errors[5].1.contains("10 fields"), "{}", errors[5].1);
        let hal = got[9].as_ref().unwrap();
        assert_eq!(
            (hal.line, hal.user.address.as_str()),
            (13, "hal@example.org")
        );
        assert_eq!(hal.user.password, ImportPassword::None);
    }

    #[test]
    fn header_errors_fail_the_file_on_line_1() {
        for (text, want) in [
            ("", "header row"),
            (
                "address,passwd\na@example.org,x\n",
                "unknown column \"passwd\"",
            ),
            ("address,quota,Quota\n", "appears twice"),
            ("display_name\nAlice\n", "no address column"),
        ] {
            let got = parse_csv(text);
            assert_eq!(got.len(), 1, "{text:?}");
            let err = got[0].as_ref().unwrap_err();
            assert_eq!(err.line, 1);
            assert!(err.reason.contains(want), "{}", err.reason);
        }
    }

    #[test]
    fn minimal_file() {
        let got = parse_csv("address\nA@example.org\n");
        assert_eq!(got.len(), 1);
        let r = got[0].as_ref().unwrap();
        assert_eq!(r.user.address, "a@example.org");
        assert_eq!(r.user.password, ImportPassword::None);
        assert!(r.user.enabled);
        assert_eq!(r.user.quota_bytes, 0);
    }
}
