//! LIST and LSUB: which names a pattern and the selection options (RFC 5258 LIST-EXTENDED,
//! RFC 6154 SPECIAL-USE) pick, and with which attributes, plus LIST-STATUS (RFC 5819).
//!
//! [`plan`] is pure: it takes the user's mailboxes and subscriptions and returns the lines to
//! send. Names are the store's UTF-8; the session encodes them (modified UTF-7, or UTF-8 after
//! IMAP4rev2 or UTF8=ACCEPT). A hierarchy level that is no mailbox is `\Noselect` in a plain
//! IMAP4rev1 LIST and `\NonExistent` in LIST-EXTENDED and IMAP4rev2. A parent that matches the
//! pattern when only its descendants meet the selection criteria is listed with RECURSIVEMATCH
//! (with `CHILDINFO`) and, as RFC 3501 §6.3.9 requires, by LSUB with `%` (as `\Noselect`).
//!
//! Wildcard matching is a dynamic programme over (pattern, name), so a pattern of many `*`
//! cannot make it exponential. Security note: the work is bounded by the user's own mailbox
//! and subscription counts, which the store limits.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::{MailboxInfo, SEPARATOR};

use super::command::ListOpts;

/// Whether `name` matches the LIST pattern (`*` anything, `%` anything but the separator).
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // row[j]: pattern[..i] matches name[..j]
    let mut row = vec![false; n.len() + 1];
    row[0] = true;
    for &pc in &p {
        let mut next = vec![false; n.len() + 1];
        match pc {
            '*' | '%' => {
                let mut reach = false;
                for j in 0..=n.len() {
                    if row[j] {
                        reach = true;
                    }
                    next[j] = reach;
                    if pc == '%' && j < n.len() && n[j] == SEPARATOR {
                        reach = false;
                    }
                }
            }
            c => {
                for j in 0..n.len() {
                    next[j + 1] = row[j] && n[j] == c;
                }
            }
        }
        row = next;
    }
    row[n.len()]
}

/// Normalises a pattern's leading INBOX (case-insensitive, like the name).
pub fn normalize_pattern(p: &str) -> String {
    match p.get(..5) {
        Some(head)
            if head.eq_ignore_ascii_case("INBOX")
                && (p.len() == 5 || p[5..].starts_with(SEPARATOR)) =>
        {
            format!("INBOX{}", &p[5..])
        }
        _ => p.to_string(),
    }
}

/// One name the command may list.
#[derive(Debug, Clone, Default)]
struct Entry {
    exists: bool,
    special: Option<&'static str>,
    /// Some mailbox exists below it.
    children: bool,
    subscribed: bool,
    /// Some name below it meets the selection criteria (for RECURSIVEMATCH and LSUB).
    selected_below: bool,
}

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListLine {
    pub name: String,
    pub attrs: Vec<&'static str>,
    /// `CHILDINFO` selection options (RECURSIVEMATCH).
    pub childinfo: Vec<&'static str>,
    /// The name is a mailbox (LIST-STATUS answers for it).
    pub exists: bool,
}

/// The lines LIST or LSUB answers for `patterns` (reference prepended and decoded already).
/// `rev2`: the session enabled IMAP4rev2.
pub fn plan(
    all: &[MailboxInfo],
    subs: &BTreeSet<String>,
    patterns: &[String],
    opts: &ListOpts,
    rev2: bool,
) -> Vec<ListLine> {
    let by_subscription = opts.subscribed || opts.lsub;
    let mut names: BTreeMap<String, Entry> = BTreeMap::new();
    for m in all {
        let e = names.entry(m.name.clone()).or_default();
        e.exists = true;
        e.special = m.special_use.map(|u| u.imap_name());
        e.children |= m.has_children;
    }
    for m in all {
        for parent in ancestors(&m.name) {
            names.entry(parent.to_string()).or_default().children = true;
        }
    }
    if by_subscription {
        for s in subs {
            names.entry(s.clone()).or_default();
        }
    }
    for (name, e) in names.iter_mut() {
        e.subscribed = subs.contains(name);
    }
    let meets = |e: &Entry| {
        (!by_subscription || e.subscribed) && (!opts.special_use_only || e.special.is_some())
    };
    // Parents of names that meet the criteria, for RECURSIVEMATCH and LSUB's `%` rule.
    let recursive = opts.recursive || (opts.lsub && patterns.iter().any(|p| p.contains('%')));
    if recursive {
        let below: Vec<String> = names
            .iter()
            .filter(|(_, e)| meets(e))
            .flat_map(|(n, _)| ancestors(n).map(str::to_string).collect::<Vec<_>>())
            .collect();
        for parent in below {
            names.entry(parent).or_default().selected_below = true;
        }
    }
    let nonexistent = (rev2 || opts.extended || opts.subscribed) && !opts.lsub;
    let mut lines = Vec::new();
    for (name, e) in &names {
        if !patterns.iter().any(|p| wildcard_match(p, name)) {
            continue;
        }
        let listed = meets(e) && (e.exists || e.children || by_subscription);
        let as_parent = !listed && recursive && e.selected_below;
        if !listed && !as_parent {
            continue;
        }
        let mut attrs: Vec<&'static str> = Vec::new();
        if opts.lsub {
            // LSUB: `\Noselect` for what is no (subscribed) mailbox, no child attributes.
            if !e.exists || as_parent {
                attrs.push("\\Noselect");
            }
        } else {
            if !e.exists {
                attrs.push(if nonexistent {
                    "\\NonExistent"
                } else {
                    "\\Noselect"
                });
            }
            attrs.push(if e.children {
                "\\HasChildren"
            } else {
                "\\HasNoChildren"
            });
            if e.subscribed && (opts.subscribed || opts.return_subscribed) {
                attrs.push("\\Subscribed");
            }
            if let Some(s) = e.special {
                attrs.push(s);
            }
        }
        let mut childinfo = Vec::new();
        if opts.recursive && e.selected_below {
            if opts.subscribed {
                childinfo.push("SUBSCRIBED");
            }
            if opts.special_use_only {
                childinfo.push("SPECIAL-USE");
            }
        }
        lines.push(ListLine {
            name: name.clone(),
            attrs,
            childinfo,
            exists: e.exists,
        });
    }
    lines
}

/// The attributes of one existing mailbox (the LIST response an IMAP4rev2 SELECT sends).
pub fn attributes_of(all: &[MailboxInfo], name: &str) -> Vec<&'static str> {
    let Some(m) = all.iter().find(|m| m.name == name) else {
        return vec!["\\NonExistent"];
    };
    let children = m.has_children
        || all
            .iter()
            .any(|o| ancestors(&o.name).any(|parent| parent == name));
    let mut attrs = vec![if children {
        "\\HasChildren"
    } else {
        "\\HasNoChildren"
    }];
    attrs.extend(m.special_use.map(|u| u.imap_name()));
    attrs
}

/// `a/b/c` → `a/b`, `a`.
fn ancestors(name: &str) -> impl Iterator<Item = &str> {
    name.char_indices()
        .rev()
        .filter(|&(_, c)| c == SEPARATOR)
        .map(move |(i, _)| &name[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SpecialUse;

    #[test]
    fn wildcards() {
        let cases = [
            ("*", "a/b/c", true),
            ("%", "a/b", false),
            ("%", "INBOX", true),
            ("a/%", "a/b", true),
            ("a/%", "a/b/c", false),
            ("a/*", "a/b/c", true),
            ("*c", "a/b/c", true),
            ("a%c", "abc", true),
            ("a%c", "a/c", false),
            ("", "x", false),
            ("x", "x", true),
            ("Entw%", "Entwürfe", true),
        ];
        for (p, n, want) in cases {
            assert_eq!(wildcard_match(p, n), want, "{p} {n}");
        }
        // Many wildcards stay polynomial.
        let p = "*".repeat(200) + "x";
        assert!(!wildcard_match(&p, &"a".repeat(1000)));
        assert_eq!(normalize_pattern("inbox/%"), "INBOX/%");
        assert_eq!(normalize_pattern("inboxes"), "inboxes");
        assert_eq!(ancestors("a/b/c").collect::<Vec<_>>(), ["a/b", "a"]);
    }

    fn mailbox(name: &str, special: Option<SpecialUse>) -> MailboxInfo {
        MailboxInfo {
            name: name.into(),
            special_use: special,
            subscribed: false,
            has_children: false,
        }
    }

    /// (command, rev2) → lines as `name attrs [childinfo]`.
    fn run(opts: ListOpts, patterns: &[&str], rev2: bool) -> Vec<String> {
        let all = [
            mailbox("INBOX", None),
            mailbox("Sent", Some(SpecialUse::Sent)),
            mailbox("Work/2024/Q1", None),
            mailbox("Work/2024/Q2", None),
            mailbox("Fruit", None),
            mailbox("Fruit/Apple", None),
        ];
        let subs: BTreeSet<String> = ["Sent", "Work/2024/Q1", "Fruit/Apple", "Gone/Away"]
            .map(String::from)
            .into();
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        plan(&all, &subs, &patterns, &opts, rev2)
            .into_iter()
            .map(|l| {
                let mut s = format!("{} ({})", l.name, l.attrs.join(" "));
                if !l.childinfo.is_empty() {
                    s.push_str(&format!(" CHILDINFO ({})", l.childinfo.join(" ")));
                }
                s
            })
            .collect()
    }

    #[test]
    fn plain_list_and_placeholders() {
        let top = run(ListOpts::default(), &["%"], false);
        assert_eq!(
            top,
            [
                "Fruit (\\HasChildren)",
                "INBOX (\\HasNoChildren)",
                "Sent (\\HasNoChildren \\Sent)",
                "Work (\\Noselect \\HasChildren)",
            ]
        );
        // IMAP4rev2 and LIST-EXTENDED syntax say \NonExistent for the same level.
        assert!(run(ListOpts::default(), &["Work"], true)
            .contains(&"Work (\\NonExistent \\HasChildren)".to_string()));
        let ext = ListOpts {
            extended: true,
            ..Default::default()
        };
        assert_eq!(
            run(ext, &["Work/%"], false),
            ["Work/2024 (\\NonExistent \\HasChildren)"]
        );
        // Subscriptions alone do not make names appear in a plain LIST.
        assert!(!run(ListOpts::default(), &["*"], false)
            .iter()
            .any(|l| l.starts_with("Gone")));
    }

    #[test]
    fn subscribed_and_recursivematch() {
        let subscribed = ListOpts {
            subscribed: true,
            extended: true,
            ..Default::default()
        };
        assert_eq!(
            run(subscribed.clone(), &["*"], false),
            [
                "Fruit/Apple (\\HasNoChildren \\Subscribed)",
                "Gone/Away (\\NonExistent \\HasNoChildren \\Subscribed)",
                "Sent (\\HasNoChildren \\Subscribed \\Sent)",
                "Work/2024/Q1 (\\HasNoChildren \\Subscribed)",
            ]
        );
        // Without RECURSIVEMATCH, `%` does not reach the subscribed children.
        assert_eq!(
            run(subscribed.clone(), &["%"], false),
            ["Sent (\\HasNoChildren \\Subscribed \\Sent)"]
        );
        let recursive = ListOpts {
            recursive: true,
            ..subscribed
        };
        assert_eq!(
            run(recursive, &["%"], true),
            [
                "Fruit (\\HasChildren) CHILDINFO (SUBSCRIBED)",
                "Gone (\\NonExistent \\HasNoChildren) CHILDINFO (SUBSCRIBED)",
                "Sent (\\HasNoChildren \\Subscribed \\Sent)",
                "Work (\\NonExistent \\HasChildren) CHILDINFO (SUBSCRIBED)",
            ]
        );
    }

    #[test]
    fn lsub_lists_noselect_parents_for_percent() {
        let lsub = ListOpts {
            lsub: true,
            subscribed: true,
            ..Default::default()
        };
        // RFC 3501 §6.3.9: "Work/2024/Q1" is subscribed, "Work" is not: `%` returns "Work"
        // flagged \Noselect — also where "Fruit" exists but is not subscribed.
        assert_eq!(
            run(lsub.clone(), &["%"], false),
            [
                "Fruit (\\Noselect)",
                "Gone (\\Noselect)",
                "Sent ()",
                "Work (\\Noselect)"
            ]
        );
        assert_eq!(
            run(lsub.clone(), &["Work/%"], false),
            ["Work/2024 (\\Noselect)"]
        );
        assert_eq!(
            run(lsub.clone(), &["*"], false),
            [
                "Fruit/Apple ()",
                "Gone/Away (\\Noselect)",
                "Sent ()",
                "Work/2024/Q1 ()"
            ]
        );
        // No `%`: no parents.
        assert_eq!(run(lsub, &["Work"], false), Vec::<String>::new());
    }

    #[test]
    fn select_attributes() {
        let all = [
            mailbox("Sent", Some(SpecialUse::Sent)),
            mailbox("A/B", None),
            mailbox("A", None),
        ];
        assert_eq!(attributes_of(&all, "Sent"), ["\\HasNoChildren", "\\Sent"]);
        assert_eq!(attributes_of(&all, "A"), ["\\HasChildren"]);
    }
}
