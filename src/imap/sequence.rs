//! Sequence sets (`1:4,7,9:*`): parsed into ranges, never expanded into numbers.
//!
//! A set is matched against the messages a session sees, so `1:4294967295` costs one range,
//! not four billion numbers. The number of ranges is bounded by the caller. `$` (RFC 5182,
//! folded into IMAP4rev2) names the session's saved search result; the session resolves it.
//! No I/O.

use std::fmt;

/// One end of a range: a number or `*` (the largest number in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqNum {
    Num(u32),
    Star,
}

/// A parsed sequence set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqSet {
    pub ranges: Vec<(SeqNum, SeqNum)>,
    /// `$`: the last saved search result (then `ranges` is empty).
    pub saved: bool,
}

/// A sequence set that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeqError {
    #[error("invalid sequence set")]
    Syntax,
    #[error("too many ranges in a sequence set (limit {0})")]
    TooManyRanges(usize),
}

impl SeqSet {
    /// Parses `set` (as it appears in a command: digits, `:`, `,`, `*`), or `$` alone (RFC
    /// 5182 does not let it combine with numbers).
    pub fn parse(set: &[u8], max_ranges: usize) -> Result<SeqSet, SeqError> {
        if set.is_empty() {
            return Err(SeqError::Syntax);
        }
        if set == b"$" {
            return Ok(SeqSet {
                ranges: Vec::new(),
                saved: true,
            });
        }
        let mut ranges = Vec::new();
        for item in set.split(|&b| b == b',') {
            if ranges.len() >= max_ranges {
                return Err(SeqError::TooManyRanges(max_ranges));
            }
            let mut ends = item.splitn(2, |&b| b == b':');
            let a = num(ends.next().unwrap_or_default())?;
            let b = match ends.next() {
                Some(b) => num(b)?,
                None => a,
            };
            ranges.push((a, b));
        }
        Ok(SeqSet {
            ranges,
            saved: false,
        })
    }

    /// A set of the given numbers (for responses built from UIDs).
    pub fn from_sorted(nums: &[u32]) -> SeqSet {
        let mut ranges: Vec<(SeqNum, SeqNum)> = Vec::new();
        for &n in nums {
            match ranges.last_mut() {
                Some((_, SeqNum::Num(end))) if end.checked_add(1) == Some(n) => *end = n,
                _ => ranges.push((SeqNum::Num(n), SeqNum::Num(n))),
            }
        }
        SeqSet {
            ranges,
            saved: false,
        }
    }

    /// The ranges with `*` replaced by `largest`, each as (low, high).
    pub fn resolve(&self, largest: u32) -> Resolved {
        let v = |n: SeqNum| match n {
            SeqNum::Num(n) => n,
            SeqNum::Star => largest,
        };
        let mut ranges: Vec<(u32, u32)> = self
            .ranges
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (v(a), v(b));
                (a.min(b), a.max(b))
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some((_, h)) if lo <= h.saturating_add(1) => *h = (*h).max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        Resolved { ranges: merged }
    }

    /// The largest explicit number in the set (to tell a client it named a message that does
    /// not exist).
    pub fn max_number(&self) -> u32 {
        self.ranges
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .filter_map(|n| match n {
                SeqNum::Num(n) => Some(n),
                SeqNum::Star => None,
            })
            .max()
            .unwrap_or(0)
    }
}

/// A set with `*` resolved: sorted, merged, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub ranges: Vec<(u32, u32)>,
}

impl Resolved {
    pub fn contains(&self, n: u32) -> bool {
        let i = self.ranges.partition_point(|&(_, hi)| hi < n);
        self.ranges.get(i).is_some_and(|&(lo, _)| lo <= n)
    }
}

fn num(s: &[u8]) -> Result<SeqNum, SeqError> {
    if s == b"*" {
        return Ok(SeqNum::Star);
    }
    if s.is_empty() || s.len() > 10 || s[0] == b'0' || !s.iter().all(u8::is_ascii_digit) {
        return Err(SeqError::Syntax);
    }
    let n: u64 = s
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    u32::try_from(n)
        .map(SeqNum::Num)
        .map_err(|_| SeqError::Syntax)
}

impl fmt::Display for SeqSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.saved {
            return f.write_str("$");
        }
        let one = |n: SeqNum| match n {
            SeqNum::Num(n) => n.to_string(),
            SeqNum::Star => "*".to_string(),
        };
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                f.write_str(&one(a))?;
            } else {
                write!(f, "{}:{}", one(a), one(b))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        use SeqNum::*;
        let ok: [(&str, Vec<(SeqNum, SeqNum)>); 4] = [
            ("1", vec![(Num(1), Num(1))]),
            ("1:*", vec![(Num(1), Star)]),
            ("4:2,7", vec![(Num(4), Num(2)), (Num(7), Num(7))]),
            ("1:4294967295", vec![(Num(1), Num(u32::MAX))]),
        ];
        for (s, want) in ok {
            assert_eq!(SeqSet::parse(s.as_bytes(), 10).unwrap().ranges, want, "{s}");
        }
        for bad in [
            "",
            "0",
            "1:",
            ":1",
            "a",
            "1,,2",
            "4294967296",
            "01",
            "1:2:3",
            "-1",
            "$,1",
            "$:2",
            "$$",
        ] {
            assert_eq!(
                SeqSet::parse(bad.as_bytes(), 10),
                Err(SeqError::Syntax),
                "{bad}"
            );
        }
        assert_eq!(SeqSet::parse(b"1,2,3", 2), Err(SeqError::TooManyRanges(2)));
        let saved = SeqSet::parse(b"$", 2).unwrap();
        assert!(saved.saved && saved.ranges.is_empty());
        assert_eq!(saved.to_string(), "$");
    }

    #[test]
    fn huge_ranges_cost_nothing_and_match() {
        let r = SeqSet::parse(b"1:4294967295", 10).unwrap().resolve(5);
        assert_eq!(r.ranges, vec![(1, u32::MAX)]);
        assert!(r.contains(4_000_000_000));
        let r = SeqSet::parse(b"9:*,2,3,5:6", 10).unwrap().resolve(7);
        assert_eq!(r.ranges, vec![(2, 3), (5, 9)]);
        assert!(!r.contains(4) && r.contains(7) && !r.contains(10) && !r.contains(1));
    }

    #[test]
    fn compact_display() {
        assert_eq!(
            SeqSet::from_sorted(&[1, 2, 3, 5, 7, 8]).to_string(),
            "1:3,5,7:8"
        );
        assert_eq!(SeqSet::from_sorted(&[]).to_string(), "");
    }
}
