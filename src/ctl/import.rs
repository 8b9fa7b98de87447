//! `mailctl user import FILE`: bulk creation of users from a CSV or LDIF file.
//!
//! The file is parsed here, before anything is sent, with the directory's own parsers
//! ([`parse_csv`], [`parse_ldif`]): unreadable records are reported as `FILE:LINE: reason` and
//! skipped, and the good ones go to the server in batches (1,000 by default, to keep each Raft
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
use super::{CtlError, Ctx};

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
        refused_users: 0,
        unreadable: unreadable.len(),
        domains_created: Vec::new(),
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
        for d in &answer.domains_created {
            output::note(&format!("created domain {}", clean(d)));
        }
        report.domains_created.extend(answer.domains_created);
        let index = BatchIndex::new(chunk);
        let refusals = index.refusals(&answer.errors);
        for r in &refusals {
            output::note(&format!("{name}:{}", r.describe()));
        }
        let refused = refused_users(&refusals);
        report.imported += chunk.len() - refused;
        report.refused_users += refused;
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
    match report.failure(&name) {
        Some(message) => Err(CtlError::Failed(message)),
        None => Ok(()),
    }
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
    /// Domains the server created for this batch (`--create-domains`).
    #[serde(default)]
    domains_created: Vec<String>,
}

/// One refused item, as the server names it.
#[derive(Debug, Clone, Deserialize)]
struct Refused {
    /// `Alias` when `index` counts the batch's alternate addresses (record after record);
    /// otherwise `index` is the record's position in the batch.
    #[serde(default)]
    kind: Option<String>,
    /// Position in the batch, from 0.
    #[serde(alias = "record")]
    index: usize,
    /// The refused address: the user's, or one of its alternate addresses.
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
        let named = self.address.is_empty() || self.reason.contains(&self.address);
        let what = match (self.alias, named) {
            (true, true) => "alternate address: ".to_owned(),
            (true, false) => format!("alternate address {}: ", self.address),
            (false, true) => String::new(),
            (false, false) => format!("{}: ", self.address),
        };
        format!("{line}: {}{}", clean(&what), clean(&self.reason))
    }
}

/// What the server may name in a batch: each record's line, user address and alternate
/// addresses, and the record owning each alternate address in the flattened order.
#[derive(Debug)]
struct BatchIndex {
    /// Per record of the batch: (line, user address, alternate addresses).
    records: Vec<(usize, String, Vec<String>)>,
    /// `alias_owner[j]`: the record that alternate address `j` of the batch belongs to.
    alias_owner: Vec<usize>,
}

impl BatchIndex {
    fn new(chunk: &[ImportRecord]) -> BatchIndex {
        BatchIndex::from_parts(
            chunk
                .iter()
                .map(|r| (r.line, r.user.address.clone(), r.aliases.clone())),
        )
    }

    fn from_parts(records: impl IntoIterator<Item = (usize, String, Vec<String>)>) -> BatchIndex {
        let records: Vec<_> = records.into_iter().collect();
        let alias_owner = records
            .iter()
            .enumerate()
            .flat_map(|(i, (_, _, aliases))| std::iter::repeat_n(i, aliases.len()))
            .collect();
        BatchIndex {
            records,
            alias_owner,
        }
    }

    fn refusals(&self, errors: &[Refused]) -> Vec<Refusal> {
        errors
            .iter()
            .map(|e| {
                let flat_alias = e
                    .kind
                    .as_deref()
                    .is_some_and(|k| k.eq_ignore_ascii_case("alias"));
                let record = if flat_alias {
                    self.alias_owner.get(e.index).copied()
                } else {
                    (e.index < self.records.len()).then_some(e.index)
                };
                // A record-indexed error may still be about one of its alternate addresses.
                let alias = flat_alias
                    || record.is_some_and(|r| {
                        let (_, user, aliases) = &self.records[r];
                        !user.eq_ignore_ascii_case(&e.address)
                            && aliases.iter().any(|a| a.eq_ignore_ascii_case(&e.address))
                    });
                Refusal {
                    line: record.map(|r| self.records[r].0),
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
    let mut records: Vec<usize> = refusals
        .iter()
        .filter(|r| !r.alias)
        .filter_map(|r| r.record)
        .collect();
    records.sort_unstable();
    records.dedup();
    records.len()
        + refusals
            .iter()
            .filter(|r| !r.alias && r.record.is_none())
            .count()
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
    /// Distinct users among them (a user can be refused for several reasons).
    refused_users: usize,
    /// Records that could not be parsed.
    unreadable: usize,
    /// Domains created on the way (`--create-domains`).
    domains_created: Vec<String>,
}

impl Report {
    /// Alternate addresses refused while their user was imported (or refused too).
    fn refused_aliases(&self) -> usize {
        self.refused.iter().filter(|r| r.alias).count()
    }

    /// The error message when anything was left out, `None` when everything went in.
    fn failure(&self, file: &str) -> Option<String> {
        let records = self.refused_users + self.unreadable;
        let aliases = self.refused_aliases();
        let mut parts = Vec::new();
        if records > 0 {
            let total = self.imported + records;
            parts.push(format!(
                "{records} of the {total} records of {file} were not imported"
            ));
        }
        if aliases > 0 {
            parts.push(format!(
                "{aliases} alternate address{} not created",
                plural_es(aliases)
            ));
        }
        (!parts.is_empty()).then(|| format!("{} (see above)", parts.join("; ")))
    }

    fn summary(&self) -> String {
        let users = self.refused_users;
        let aliases = self.refused_aliases();
        let mut s = format!(
            "{} user{} imported, {users} refused, {} line{} unreadable",
            self.imported,
            if self.imported == 1 { "" } else { "s" },
            self.unreadable,
            if self.unreadable == 1 { "" } else { "s" },
        );
        match self.domains_created.len() {
            0 => {}
            1 => s.push_str(", 1 domain created"),
            n => s.push_str(&format!(", {n} domains created")),
        }
        if aliases > 0 {
            s.push_str(&format!(
                ", {aliases} alternate address{} refused",
                if aliases == 1 { "" } else { "es" }
            ));
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
            "domains_created": self.domains_created,
            "unreadable": unreadable.iter().map(|e| json!({"line": e.line, "reason": e.reason}))
                .collect::<Vec<_>>(),
        })
    }
}

fn plural_es(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "es"
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

    fn rec(line: usize, user: &str, aliases: &[&str]) -> (usize, String, Vec<String>) {
        (
            line,
            user.to_owned(),
            aliases.iter().map(|a| a.to_string()).collect(),
        )
    }

    #[test]
    fn batch_indexes_map_back_to_file_lines() {
        // Records on lines 2, 3, 7 (a multi-line LDIF entry before it) and 9; the record on
        // line 3 has two alternate addresses, the one on line 9 has one.
        let index = BatchIndex::from_parts([
            rec(2, "a@x.org", &[]),
            rec(3, "b@x.org", &["b1@x.org", "b2@x.org"]),
            rec(7, "c@x.org", &[]),
            rec(9, "d@x.org", &["d1@x.org"]),
        ]);
        let errors = [
            refused(
                None,
                2,
                "c@x.org",
                json!("c@x.org already exists as a user"),
            ),
            refused(
                Some("User"),
                0,
                "a@x.org",
                json!("domain x.org is not served here"),
            ),
            refused(Some("Alias"), 1, "b2@x.org", json!("taken")),
            refused(Some("Alias"), 2, "d1@x.org", json!("taken")),
            refused(Some("User"), 99, "", json!("bogus index")),
        ];
        let r = index.refusals(&errors);
        let lines: Vec<Option<usize>> = r.iter().map(|r| r.line).collect();
        assert_eq!(lines, [Some(7), Some(2), Some(3), Some(9), None]);
        assert_eq!(r[0].describe(), "7: c@x.org already exists as a user");
        assert_eq!(
            r[1].describe(),
            "2: a@x.org: domain x.org is not served here"
        );
        assert_eq!(r[2].describe(), "3: alternate address b2@x.org: taken");
        assert_eq!(r[4].describe(), "?: bogus index");
        // Users at records 2 and 0, plus one with an unknown index; aliases do not count.
        assert_eq!(refused_users(&r), 3);
    }

    #[test]
    fn record_indexed_errors_about_alternate_addresses_are_alias_refusals() {
        // The server may index every error by record and tell aliases by their address.
        let index =
            BatchIndex::from_parts([rec(2, "a@x.org", &[]), rec(5, "b@x.org", &["info@x.org"])]);
        let answer: BatchAnswer = serde_json::from_value(json!({
            "applied": 1,
            "errors": [
                {"record": 1, "address": "info@x.org", "reason": "info@x.org is taken"},
                {"record": 0, "address": "a@x.org", "reason": "a@x.org is taken"}
            ],
            "domains_created": ["x.org"]
        }))
        .unwrap();
        let r = index.refusals(&answer.errors);
        assert_eq!((r[0].line, r[0].alias), (Some(5), true));
        assert_eq!((r[1].line, r[1].alias), (Some(2), false));
        assert_eq!(refused_users(&r), 1);
        assert_eq!(answer.domains_created, ["x.org"]);
    }

    #[test]
    fn a_user_refused_twice_counts_once() {
        let index = BatchIndex::from_parts([rec(2, "a@x.org", &[])]);
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
            refused_users: 3,
            unreadable: 2,
            domains_created: Vec::new(),
        };
        assert_eq!(
            report.summary(),
            "35000 users imported, 3 refused, 2 lines unreadable"
        );
        let v = report.to_json(&[LineError {
            line: 5,
            reason: "bad".into(),
        }]);
        assert_eq!(v["refused"][0]["line"], 4);
        assert_eq!(v["unreadable"][0]["line"], 5);
        assert_eq!(
            report.failure("u.csv").unwrap(),
            "5 of the 35005 records of u.csv were not imported (see above)"
        );
        let clean = Report {
            imported: 2,
            refused: Vec::new(),
            refused_users: 0,
            unreadable: 0,
            domains_created: vec!["x.org".into()],
        };
        assert_eq!(clean.failure("u.csv"), None);
        assert_eq!(
            clean.summary(),
            "2 users imported, 0 refused, 0 lines unreadable, 1 domain created"
        );
    }

    #[test]
    fn format_from_extension() {
        assert_eq!(format_of(Path::new("u.CSV")).unwrap(), ImportFormat::Csv);
        assert_eq!(
            format_of(Path::new("dir/export.ldif")).unwrap(),
            ImportFormat::Ldif
        );
        assert_eq!(
            format_of(Path::new("users.txt")).unwrap_err().exit_code(),
            2
        );
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
