//! Mailbox names and user directory names: validation, normalisation and file-system encoding.
//!
//! Mailbox names are IMAP names in UTF-8 (the IMAP layer decodes modified UTF-7) with `/` as the
//! hierarchy separator. They never become paths: a mailbox lives in a directory named by a
//! numeric id and the user's `mailboxes.json` maps names to ids, so a rename of a whole
//! hierarchy is one atomic file replacement. User names (addresses) do become path components,
//! through [`user_dir_name`], which percent-encodes everything outside a small safe set.
//! This module does no I/O.
//!
//! Security note: an address may contain `/`, `%`, `..` sequences or other bytes that would
//! escape or collide in a file system; the encoding is injective (distinct users get distinct
//! names), never yields `.`/`..` or a `/`, and bounds the length (long names end in a hash).

use sha2::{Digest, Sha256};

use super::error::StoreError;

/// The hierarchy separator of mailbox names.
pub const SEPARATOR: char = '/';
/// The one mailbox name that is case-insensitive (RFC 3501 §5.1).
pub const INBOX: &str = "INBOX";
/// Longest user name the store accepts, in bytes (an address is at most 254).
pub const MAX_USER_LEN: usize = 320;
/// Encoded user names longer than this end in a hash instead (file names are ≤ 255 bytes).
const MAX_DIR_NAME: usize = 200;

/// Validates a mailbox name and returns its normal form: `INBOX` (any case) as the first
/// component becomes `INBOX`; everything else is kept as given (IMAP names are
/// case-sensitive). `max_len` bounds the UTF-8 length and `max_depth` the number of
/// components.
pub fn normalize_mailbox(
    name: &str,
    max_len: usize,
    max_depth: usize,
) -> Result<String, StoreError> {
    let bad = |reason| StoreError::InvalidName {
        name: name.chars().take(100).collect(),
        reason,
    };
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    if name.len() > max_len {
        return Err(bad("name too long"));
    }
    if name.chars().any(|c| c.is_control()) {
        return Err(bad("control characters are not allowed"));
    }
    // IMAP LIST wildcards: a name holding them could never be listed unambiguously.
    if name.contains(['*', '%']) {
        return Err(bad("'*' and '%' are not allowed"));
    }
    let parts: Vec<&str> = name.split(SEPARATOR).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad(
            "empty hierarchy level (leading, trailing or doubled '/')",
        ));
    }
    if parts.len() > max_depth {
        return Err(bad("too many hierarchy levels"));
    }
    if parts[0].eq_ignore_ascii_case(INBOX) && parts[0] != INBOX {
        let mut out = String::with_capacity(name.len());
        out.push_str(INBOX);
        out.push_str(&name[INBOX.len()..]);
        return Ok(out);
    }
    Ok(name.to_string())
}

/// Whether `name` is `parent` itself or below it in the hierarchy.
pub fn is_same_or_below(name: &str, parent: &str) -> bool {
    name == parent
        || (name.len() > parent.len()
            && name.starts_with(parent)
            && name[parent.len()..].starts_with(SEPARATOR))
}

/// Checks a user name: non-empty, bounded, no control characters.
pub fn check_user(user: &str) -> Result<(), StoreError> {
    if user.is_empty() || user.len() > MAX_USER_LEN || user.chars().any(|c| c.is_control()) {
        return Err(StoreError::InvalidUser(user.chars().take(100).collect()));
    }
    Ok(())
}

/// The two directory levels that hold a user: a 2-hex-digit shard (so no directory holds
/// more than a few hundred users at tens of thousands) and the encoded name.
pub fn user_dir_name(user: &str) -> (String, String) {
    let digest = Sha256::digest(user.as_bytes());
    let shard = format!("{:02x}", digest[0]);
    let mut out = String::with_capacity(user.len() + 8);
    for (i, b) in user.bytes().enumerate() {
        let safe = b.is_ascii_alphanumeric()
            || matches!(b, b'@' | b'_' | b'+' | b'-')
            // A leading dot could make "." or ".." or a hidden file.
            || (b == b'.' && i > 0);
        if safe {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_DIR_NAME {
        // Injective: the hash covers the whole name; the prefix is for humans.
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let mut cut = 150;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out = format!("{}~{}", &out[..cut], hex);
    }
    (shard, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_names_table() {
        let ok = [
            ("INBOX", "INBOX"),
            ("inbox", "INBOX"),
            ("InBoX/Lists", "INBOX/Lists"),
            ("Inboxes", "Inboxes"),
            ("Sent", "Sent"),
            ("Archive/2024/Q1", "Archive/2024/Q1"),
            ("Entwürfe", "Entwürfe"),
            ("a.b/../c", "a.b/../c"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize_mailbox(input, 100, 5).unwrap(), want, "{input}");
        }
        let bad = [
            "",
            "/a",
            "a/",
            "a//b",
            "a\0b",
            "a\nb",
            "a*",
            "a%b",
            "1/2/3/4/5/6",
            &"x".repeat(101),
        ];
        for input in bad {
            assert!(
                matches!(
                    normalize_mailbox(input, 100, 5),
                    Err(StoreError::InvalidName { .. })
                ),
                "{input:?} accepted"
            );
        }
    }

    #[test]
    fn hierarchy_membership() {
        assert!(is_same_or_below("a", "a"));
        assert!(is_same_or_below("a/b", "a"));
        assert!(!is_same_or_below("ab", "a"));
        assert!(!is_same_or_below("a", "a/b"));
    }

    #[test]
    fn user_dir_names_are_safe_and_injective() {
        let users = [
            "alice@example.org",
            "ALICE@example.org",
            "a/b@example.org",
            "a%2Fb@example.org",
            ".@x",
            "..",
            "x.y@z",
            "ünï@example.org",
        ];
        let mut seen = std::collections::HashSet::new();
        for u in users {
            let (shard, name) = user_dir_name(u);
            assert_eq!(shard.len(), 2);
            assert!(!name.contains('/'), "{name}");
            assert!(!name.starts_with('.'), "{name}");
            assert!(name.len() <= 255);
            assert!(seen.insert(name.clone()), "collision on {name}");
        }
        assert_eq!(user_dir_name("alice@example.org").1, "alice@example.org");
        assert_eq!(user_dir_name("a/b@x").1, "a%2Fb@x");
        assert_eq!(user_dir_name("%").1, "%25");
    }

    #[test]
    fn long_user_names_end_in_a_hash() {
        let a = format!("{}@x", "é".repeat(150));
        let b = format!("{}@y", "é".repeat(150));
        let (_, na) = user_dir_name(&a);
        let (_, nb) = user_dir_name(&b);
        assert!(na.len() <= 255 && nb.len() <= 255);
        assert_ne!(na, nb);
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user("alice@example.org").is_ok());
        assert!(check_user("").is_err());
        assert!(check_user("a\nb").is_err());
        assert!(check_user(&"x".repeat(MAX_USER_LEN + 1)).is_err());
    }
}
