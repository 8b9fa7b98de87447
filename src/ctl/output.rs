//! What `mailctl` prints: aligned plain-text tables for people, the server's JSON for scripts.
//!
//! Everything here renders into strings; only [`stdout`] and [`note`] touch a stream, so the
//! rendering is table-tested. Text that came from the server is passed through [`clean`] before
//! it reaches a terminal: a display name holding an escape sequence must not be able to rewrite
//! the operator's screen.

use std::io::{self, Write};

use serde_json::Value;

use super::CtlError;

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: padded on the right.
    Left,
    /// Numbers: padded on the left, so digits line up.
    Right,
}

/// A plain-text table: a header row, then rows, columns separated by two spaces, no trailing
/// blanks. Widths count characters, which is right for the ASCII that addresses and indexes are.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column titles, upper case by convention.
    headers: Vec<String>,
    /// Per-column alignment, same length as `headers`.
    align: Vec<Align>,
    /// The cells, already cleaned; each row has exactly `headers.len()` cells.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles, all left-aligned.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            align: vec![Align::Left; headers.len()],
            rows: Vec::new(),
        }
    }

    /// Right-aligns column `col` (0-based).
    pub fn right(mut self, col: usize) -> Table {
        if let Some(a) = self.align.get_mut(col) {
            *a = Align::Right;
        }
        self
    }

    /// Appends a row. Missing cells are rendered empty, extra ones dropped, so a row can never
    /// break the layout.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut row: Vec<String> = cells
            .into_iter()
            .take(self.headers.len())
            .map(|c| clean(c.as_ref()))
            .collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(cell));
                match self.align[i] {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Renders `key value` lines with the values aligned, e.g. the header of `mailctl status`.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{}\n", format!("{k:width$}  {}", clean(v)).trim_end()))
        .collect()
}

/// Replaces control characters (escape sequences, newlines, tabs) with their `\u{..}`/`\n`
/// escapes, so server-supplied text stays on its line and cannot drive the terminal.
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A JSON value as a table cell: `-` for null or missing, strings bare, booleans as yes/no.
pub fn text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => if *b { "yes" } else { "no" }.to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => other.to_string(),
    }
}

/// A Raft log position as a cell: a bare index, or the `index` of a log id object
/// (`{"leader_id": .., "index": 42}`), or `-`.
pub fn index(v: Option<&Value>) -> String {
    match v {
        Some(Value::Object(o)) if o.contains_key("index") => text(o.get("index")),
        other => text(other),
    }
}

/// A byte count the way quotas are given: `2G`, `500M`, `1.5G`, `1024`; 0 is `unlimited`.
pub fn bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    if n == 0 {
        return "unlimited".to_owned();
    }
    for (size, unit) in UNITS {
        if n >= size {
            if n % size == 0 {
                return format!("{}{unit}", n / size);
            }
            // One decimal is what an operator reads; the exact figure is in --json.
            return format!("{:.1}{unit}", n as f64 / size as f64);
        }
    }
    n.to_string()
}

/// The array at the top of a server answer, or under `key` when the server wrapped it in an
/// object; an empty slice when there is neither.
pub fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    match v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice),
        _ => &[],
    }
}

/// A server answer for `--json`: pretty-printed when it is JSON, verbatim otherwise; nothing
/// for an empty body.
pub fn json(body: &[u8]) -> String {
    if body.iter().all(u8::is_ascii_whitespace) {
        return String::new();
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => pretty(&v),
        Err(_) => {
            let mut s = String::from_utf8_lossy(body).into_owned();
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
    }
}

/// A value pretty-printed with a trailing newline.
pub fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    s.push('\n');
    s
}

/// Writes to stdout. A closed pipe (`mailctl user list | head`) is not an error worth a
/// message: the operation itself succeeded.
pub fn stdout(s: &str) -> Result<(), CtlError> {
    let mut out = io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CtlError::Failed(format!(
            "cannot write to standard output: {e}"
        ))),
    }
}

/// A progress or diagnostic line on stderr, which scripts do not parse.
pub fn note(s: &str) {
    let _ = writeln!(io::stderr().lock(), "{s}");
}

/// Text from the server as printed: verbatim into a pipe or file (so it can be edited and sent
/// back); on a terminal, control characters other than line breaks and tabs are escaped.
/// Always ends with a newline.
pub fn text_for_stdout(source: &str, terminal: bool) -> String {
    let mut out = if terminal {
        source
            .split('\n')
            .map(|line| {
                line.split('\t')
                    .map(|part| clean(part.strip_suffix('\r').unwrap_or(part)))
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        source.to_owned()
    };
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let mut t = Table::new(&["ID", "NAME", "LAG"]).right(2);
        t.row(["1", "node-a", "0"]);
        t.row(["12", "b", "1500"]);
        assert_eq!(
            t.render(),
            "ID  NAME     LAG\n\
             1   node-a     0\n\
             12  b       1500\n"
        );
    }

    #[test]
    fn short_and_long_rows_keep_the_layout() {
        let mut t = Table::new(&["A", "B"]);
        t.row(["x"]);
        t.row(["y", "z", "dropped"]);
        assert_eq!(t.render(), "A  B\nx\ny  z\n");
        assert!(!t.is_empty());
        assert_eq!(Table::new(&["ONLY"]).render(), "ONLY\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut t = Table::new(&["NAME"]);
        t.row(["evil\u{1b}[2J\nname"]);
        assert_eq!(t.render(), "NAME\nevil\\u{1b}[2J\\nname\n");
        assert_eq!(clean("plain"), "plain");
    }

    #[test]
    fn fields_align_values() {
        let s = fields(&[("node", "1".into()), ("committed", "7".into())]);
        assert_eq!(s, "node       1\ncommitted  7\n");
    }

    #[test]
    fn cells_from_json() {
        assert_eq!(text(None), "-");
        assert_eq!(text(Some(&json!(null))), "-");
        assert_eq!(text(Some(&json!("a"))), "a");
        assert_eq!(text(Some(&json!(true))), "yes");
        assert_eq!(text(Some(&json!(42))), "42");
        assert_eq!(
            index(Some(&json!({"leader_id": {"term": 1}, "index": 9}))),
            "9"
        );
        assert_eq!(index(Some(&json!(5))), "5");
    }

    #[test]
    fn byte_counts_read_like_quota_arguments() {
        assert_eq!(bytes(0), "unlimited");
        assert_eq!(bytes(1000), "1000");
        assert_eq!(bytes(1024), "1K");
        assert_eq!(bytes(2 << 30), "2G");
        assert_eq!(bytes(500 << 20), "500M");
        assert_eq!(bytes(3 << 29), "1.5G");
    }

    #[test]
    fn json_is_pretty_printed_or_passed_through() {
        assert_eq!(json(b"{\"a\":1}"), "{\n  \"a\": 1\n}\n");
        assert_eq!(json(b""), "");
        assert_eq!(json(b"not json"), "not json\n");
        assert_eq!(array(&json!({"users": [1, 2]}), "users").len(), 2);
        assert_eq!(array(&json!([1]), "users").len(), 1);
        assert!(array(&json!("x"), "users").is_empty());
    }

    #[test]
    fn text_is_verbatim_in_pipes_and_escaped_on_terminals() {
        let s = "if true {\r\n\tkeep; # \u{1b}[31m\r\n}";
        assert_eq!(text_for_stdout(s, false), format!("{s}\n"));
        let shown = text_for_stdout(s, true);
        assert_eq!(shown, "if true {\n\tkeep; # \\u{1b}[31m\n}\n");
        assert_eq!(text_for_stdout("", true), "");
    }
}
