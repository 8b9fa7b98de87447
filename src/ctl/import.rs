//! `mailctl user import FILE`: bulk creation of users from a CSV or LDIF file.
//!
//! The file is parsed here, before anything is sent, with the directory's own parsers
//! ([`parse_csv`], [`parse_ldif`]): unreadable records are reported as `FILE:LINE: reason` and
//! skipped, and the good ones go to the server in batches (5,000 by default, to keep each Raft
//! entry small). The server refuses records one by one — an address already taken, a domain
//! that does not exist — and names them by their index in the batch; [`BatchIndex`] maps those
//! back to lines of the file. Good records stay imported whatever happens to the others.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::directory::import::{parse_csv, parse_ldif, ImportRecord, LineError};
use crate::directory::DirectoryError;

use super::args::ImportFormat;
use super::client::parse_json;
use super::output::{self, clean};
use super::{Ctx, CtlError};

pub(crate) async fn run(
    ctx: &Ctx,
    file: &Path,
    format: Option<ImportFormat>,
    create_domains: bool,
    batch: u64,
) -> Result<(), CtlError> {
    let name = file.display().to_string();
    let format = match format {
        Some(f) => f,
        None => format_of(file)?,
    };
    let text = read_text(file)?;
    let parsed = match format {
        ImportFormat::Csv => parse_csv(&text),
        ImportFormat::Ldif => parse_ldif(&text),
    };
    let (records, unreadable): (Vec<_>, Vec<_>) = parsed.into_iter().partition(Result::is_ok);
    let records: Vec<ImportRecord> = records.into_iter().filter_map(Result::ok).collect();
    let unreadable: Vec<LineError> = unreadable.into_iter().filter_map(Result::err).collect();
    for e in &unreadable {
        output::note(&format!("{name}:{}: {}", e.line, clean(&e.reason)));
    }
    if records.is_empty() && !unreadable.is_empty() {
        return Err(CtlError::Usage {
            message: format!("nothing to import: no record of {name} could be read"),
            hint: Some(format!(
                "is it really {}? pass --format to say so",
                match format {
                    ImportFormat::Csv => "CSV with a header line",
                    ImportFormat::Ldif => "LDIF",
                }
            )),
        });
    }

    let batch = usize::try_from(batch).unwrap_or(usize::MAX).max(1);
    let total = records.len();
    let batches = total.div_ceil(batch);
    let mut report = Report {
        imported: 0,
        refused: Vec::new(),
        unreadable: unreadable.len(),
    };
    for (n, chunk) in records.chunks(batch).enumerate() {
        let body = ImportBody {
            records: chunk,
            create_domains,
        };
        let answer = match ctx.client.post("/api/users/import", &body).await {
            Ok(answer) => answer,
            Err(e) => {
                output::note(&format!(
                    "stopped at batch {} of {batches} ({name}:{}–{}): {} users imported before it",
                    n + 1,
                    chunk[0].line,
                    chunk[chunk.len() - 1].line,
                    report.imported
                ));
                return Err(e);
            }
        };
        let answer: BatchAnswer = serde_json::from_value(parse_json(&answer)?).map_err(|e| {
            CtlError::Failed(format!(
                "the server's import answer is not what mailctl expects ({e}); are mailctl and \
                 mailnode the same version?"
            ))
        })?;
        let index = BatchIndex::new(chunk);
        let refusals = index.refusals(&answer.errors);
        for r in &refusals {
            output::note(&format!("{name}:{}", r.describe()));
        }
        report.imported += chunk.len() - refused_users(&refusals);
        report.refused.extend(refusals);
        if batches > 1 {
            output::note(&format!(
                "imported {}/{total} …{}",
                report.imported,
                match report.refused.len() {
                    0 => String::new(),
                    r => format!(" ({r} refused)"),
                }
            ));
        }
    }

    if ctx.json {
        output::stdout(&output::pretty(&report.to_json(&unreadable)))?;
    } else {
        output::stdout(&format!("{}\n", report.summary()))?;
    }
    let failed = report.refused.len() + report.unreadable;
    if failed > 0 {
        return Err(CtlError::Failed(format!(
            "{failed} record{} of {name} not imported (see above)",
            if failed == 1 { " was" } else { "s were" }
        )));
    }
    Ok(())
}

/// The request body of `POST /api/users/import`.
#[derive(Serialize)]
struct ImportBody<'a> {
    /// One batch of good records.
    records: &'a [ImportRecord],
    /// Whether the server may create missing domains.
    create_domains: bool,
}

/// The answer to one batch.
#[derive(Debug, Deserialize)]
struct BatchAnswer {
    /// The refused items; everything else was applied.
    #[serde(default)]
    errors: Vec<Refused>,
}

/// One refused item, as the server names it.
#[derive(Debug, Clone, Deserialize)]
struct Refused {
    /// `User` (an index into the batch's records) or `Alias` (an index into the aliases of the
    /// batch, record after record); absent means `User`.
    #[serde(default)]
    kind: Option<String>,
    /// Position in the batch, from 0.
    index: usize,
    /// The address as given.
    #[serde(default)]
    address: String,
    /// Why: a message, or a serialised directory error.
    reason: Value,
}

/// A refused item placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    /// The line the record starts on, when the server's index made sense.
    line: Option<usize>,
    /// The record's position in its batch (users only), to count refused users once.
    record: Option<usize>,
    /// Whether an alternate address (alias) rather than the user was refused.
    alias: bool,
    /// The address.
    address: String,
    /// Why.
    reason: String,
}

impl Refusal {
    /// `LINE: [alias ]ADDRESS: reason`, without repeating an address the reason already names.
    fn describe(&self) -> String {
        let line = self.line.map_or("?".to_owned(), |l| l.to_string());
        let what = match (self.alias, self.reason.contains(&self.address) || self.address.is_empty()) {
            (true, _) => format!("alias {}: ", self.address),
            (false, true) => String::new(),
            (false, false) => format!("{}: ", self.address),
        };
        format!("{line}: {}{}", clean(&what), clean(&self.reason))
    }
}

/// Where each item of a batch came from: the line of every record, and the record owning every
/// alias (the server flattens aliases record after record).
#[derive(Debug)]
struct BatchIndex {
    /// `lines[i]`: the line record `i` of the batch starts on.
    lines: Vec<usize>,
    /// `alias_owner[j]`: the record of the batch that alias `j` belongs to.
    alias_owner: Vec<usize>,
}

impl BatchIndex {
    fn new(chunk: &[ImportRecord]) -> BatchIndex {
        BatchIndex::from_parts(chunk.iter().map(|r| (r.line, r.aliases.len())))
    }

    /// From `(line, number of aliases)` per record.
    fn from_parts(records: impl IntoIterator<Item = (usize, usize)>) -> BatchIndex {
        let mut lines = Vec::new();
        let mut alias_owner = Vec::new();
        for (i, (line, aliases)) in records.into_iter().enumerate() {
            lines.push(line);
            alias_owner.extend(std::iter::repeat_n(i, aliases));
        }
        BatchIndex { lines, alias_owner }
    }

    fn refusals(&self, errors: &[Refused]) -> Vec<Refusal> {
        errors
            .iter()
            .map(|e| {
                let alias = e.kind.as_deref().is_some_and(|k| k.eq_ignore_ascii_case("alias"));
                let record = if alias {
                    self.alias_owner.get(e.index).copied()
                } else {
                    (e.index < self.lines.len()).then_some(e.index)
                };
                Refusal {
                    line: record.map(|r| self.lines[r]),
                    record: if alias { None } else { record },
                    alias,
                    address: e.address.clone(),
                    reason: reason_text(&e.reason),
                }
            })
            .collect()
    }
}

/// How many distinct users of a batch were refused (aliases do not count: their user is in).
fn refused_users(refusals: &[Refusal]) -> usize {
    let mut records: Vec<usize> = refusals.iter().filter(|r| !r.alias).filter_map(|r| r.record).collect();
    records.sort_unstable();
    records.dedup();
    records.len() + refusals.iter().filter(|r| !r.alias && r.record.is_none()).count()
}

/// A refusal reason as a sentence: the server's text, or a serialised [`DirectoryError`]
/// rendered with its own message.
fn reason_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => match serde_json::from_value::<DirectoryError>(other.clone()) {
            Ok(e) => e.to_string(),
            Err(_) => other.to_string(),
        },
    }
}

/// The outcome of a whole import.
struct Report {
    /// Users created.
    imported: usize,
    /// Items the server refused.
    refused: Vec<Refusal>,
    /// Records that could not be parsed.
    unreadable: usize,
}

impl Report {
    fn summary(&self) -> String {
        let users = self.refused.iter().filter(|r| !r.alias).count();
        let aliases = self.refused.len() - users;
        let mut s = format!(
            "{} user{} imported, {users} refused, {} line{} unreadable",
            self.imported,
            if self.imported == 1 { "" } else { "s" },
            self.unreadable,
            if self.unreadable == 1 { "" } else { "s" },
        );
        if aliases > 0 {
            s.push_str(&format!(", {aliases} alternate address{} refused", if aliases == 1 { "" } else { "es" }));
        }
        s
    }

    fn to_json(&self, unreadable: &[LineError]) -> Value {
        json!({
            "imported": self.imported,
            "refused": self.refused.iter().map(|r| json!({
                "line": r.line,
                "kind": if r.alias { "alias" } else { "user" },
                "address": r.address,
                "reason": r.reason,
            })).collect::<Vec<_>>(),
            "unreadable": unreadable.iter().map(|e| json!({"line": e.line, "reason": e.reason}))
                .collect::<Vec<_>>(),
        })
    }
}

/// The format named by the file's extension.
fn format_of(file: &Path) -> Result<ImportFormat, CtlError> {
    let ext = file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("csv") => Ok(ImportFormat::Csv),
        Some("ldif") => Ok(ImportFormat::Ldif),
        _ => Err(CtlError::Usage {
            message: format!("cannot tell the format of {} from its name", file.display()),
            hint: Some("pass --format csv or --format ldif".into()),
        }),
    }
}

fn read_text(file: &Path) -> Result<String, CtlError> {
    let bytes = std::fs::read(file)
        .map_err(|e| CtlError::usage(format!("cannot read {}: {e}", file.display())))?;
    String::from_utf8(bytes).map_err(|e| CtlError::Usage {
        message: format!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            file.display(),
            e.utf8_error().valid_up_to()
        ),
        hint: Some(format!(
            "convert it first, e.g. iconv -f latin1 -t utf-8 {} > converted",
            file.display()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(kind: Option<&str>, index: usize, address: &str, reason: Value) -> Refused {
        Refused {
            kind: kind.map(str::to_owned),
            index,
            address: address.into(),
            reason,
        }
    }

    #[test]
    fn batch_indexes_map_back_to_file_lines() {
        // Records on lines 2, 3, 7 (a multi-line LDIF entry before it) and 9; the record on
        // line 3 has two alternate addresses, the one on line 9 has one.
        let index = BatchIndex::from_parts([(2, 0), (3, 2), (7, 0), (9, 1)]);
        let errors = [
            refused(None, 2, "c@x.org", json!("c@x.org already exists as a user")),
            refused(Some("User"), 0, "a@x.org", json!("domain x.org is not served here")),
            refused(Some("Alias"), 1, "b2@x.org", json!("taken")),
            refused(Some("Alias"), 2, "d1@x.org", json!("taken")),
            refused(Some("User"), 99, "?", json!("bogus index")),
        ];
        let r = index.refusals(&errors);
        let lines: Vec<Option<usize>> = r.iter().map(|r| r.line).collect();
        assert_eq!(lines, [Some(7), Some(2), Some(3), Some(9), None]);
        assert_eq!(r[0].describe(), "7: c@x.org already exists as a user");
        assert_eq!(r[1].describe(), "2: a@x.org: domain x.org is not served here");
        assert_eq!(r[2].describe(), "3: alias b2@x.org: taken");
        assert_eq!(r[4].describe(), "?: bogus index");
        // Users at records 2 and 0, plus one with an unknown index; aliases do not count.
        assert_eq!(refused_users(&r), 3);
    }

    #[test]
    fn a_user_refused_twice_counts_once() {
        let index = BatchIndex::from_parts([(2, 0)]);
        let errors = [
            refused(None, 0, "a@x.org", json!("one")),
            refused(None, 0, "a@x.org", json!("two")),
        ];
        assert_eq!(refused_users(&index.refusals(&errors)), 1);
    }

    #[test]
    fn structured_reasons_are_rendered() {
        assert_eq!(reason_text(&json!("plain")), "plain");
        assert_eq!(reason_text(&json!({"Weird": 1})), "{\"Weird\":1}");
    }

    #[test]
    fn summary_counts() {
        let report = Report {
            imported: 35000,
            refused: vec![
                Refusal {
                    line: Some(4),
                    record: Some(2),
                    alias: false,
                    address: "a@x.org".into(),
                    reason: "r".into(),
                };
                3
            ],
            unreadable: 2,
        };
        assert_eq!(report.summary(), "35000 users imported, 3 refused, 2 lines unreadable");
        let v = report.to_json(&[LineError {
            line: 5,
            reason: "bad".into(),
        }]);
        assert_eq!(v["refused"][0]["line"], 4);
        assert_eq!(v["unreadable"][0]["line"], 5);
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(format_of(Path::new("u.CSV")).unwrap(), ImportFormat::Csv);
        assert_eq!(format_of(Path::new("dir/export.ldif")).unwrap(), ImportFormat::Ldif);
        assert_eq!(format_of(Path::new("users.txt")).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn files_must_be_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.csv");
        std::fs::write(&path, b"address\nj\xe9r\xf4me@x.org\n").unwrap();
        let err = read_text(&path).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.hint().unwrap().contains("iconv"), "{err:?}");
    }
}
