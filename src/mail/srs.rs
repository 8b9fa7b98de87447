//! The Sender Rewriting Scheme (SRS, Shevek's paper; the `SRS0` format of postsrsd): a message
//! a user's Sieve script redirects leaves with the envelope sender rewritten into an address of
//! our own domain, so the next hop's SPF check sees our domain, and a bounce comes back to us.
//!
//! `SRS0=HHHH=TT=domain=local@our-domain`: `TT` is the day (days since 1970 modulo 1024, two
//! base32 digits), `HHHH` the first four base32 digits of HMAC-SHA256 over the lowercased
//! `TT`, `domain` and `local` with the site's secret. Our MX accepts mail to such an address
//! only while the hash is right and the day is at most [`MAX_AGE_DAYS`] old, and forwards it
//! to `local@domain`; anything else is an unknown user, so we are never an open relay.
//!
//! Addresses reach us lowercased (the directory's [`crate::directory::Address`] lowercases, and
//! so do some MTAs), so the scheme is case-insensitive throughout: base32 digits compare
//! without case and the hash covers lowercased fields — as the paper recommends.
//!
//! The secret must be the same on every node (any node's MX may get the bounce): it is read
//! from `mail.srs_secret_file`, one secret per line; the first signs, every one verifies (so a
//! secret can be rotated). No I/O here except [`Srs::load`].
//!
//! Security note: a 20-bit hash and a 21-day window bound forgery to about a million guesses
//! per address and day, each an SMTP RCPT refused with `550 5.1.1`.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Days an SRS address stays valid (postsrsd's default).
pub const MAX_AGE_DAYS: u32 = 21;
/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 16;
/// Base32 digits of the hash.
const HASH_LEN: usize = 4;
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why an address does not reverse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not an `SRS0=` address at all.
    #[error("not an SRS address")]
    NotSrs,
    /// An `SRS0=` address with missing or malformed parts.
    #[error("malformed SRS address")]
    Malformed,
    /// The hash does not match any secret.
    #[error("SRS hash does not match: forged or damaged address")]
    Forged,
    /// Older than [`MAX_AGE_DAYS`].
    #[error("SRS address has expired")]
    Expired,
}

/// Why the secret file is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsSecretError {
    /// The file cannot be read.
    #[error("cannot read {path}: {reason}: create it with a long random secret (e.g. `openssl rand -hex 32`), the same file on every node")]
    Read { path: String, reason: String },
    /// No line holds a long enough secret.
    #[error("{path}: every line must hold a secret of at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`), the same file on every node")]
    Weak { path: String },
}

/// The site's SRS keys.
#[derive(Clone)]
pub struct Srs {
    /// The first signs; all verify.
    secrets: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Srs({} secrets)", self.secrets.len())
    }
}

impl Srs {
    /// Keys from secrets given in memory; `None` unless there is at least one and every one
    /// is at least [`MIN_SECRET_LEN`] bytes.
    pub fn new(secrets: Vec<Vec<u8>>) -> Option<Srs> {
        (!secrets.is_empty() && secrets.iter().all(|s| s.len() >= MIN_SECRET_LEN))
            .then_some(Srs { secrets })
    }

    /// Reads the secret file: one secret per line (blank lines and `#` comments ignored).
    pub fn load(path: &Path) -> Result<Srs, SrsSecretError> {
        let text = std::fs::read_to_string(path).map_err(|e| SrsSecretError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let secrets = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.as_bytes().to_vec())
            .collect();
        Srs::new(secrets).ok_or_else(|| SrsSecretError::Weak {
            path: path.display().to_string(),
        })
    }

    /// The rewritten sender for mail we forward from `sender` (`""` is the null sender and
    /// stays null) as a user of `our_domain`, at `now_unix`.
    pub fn forward(&self, sender: &str, our_domain: &str, now_unix: i64) -> String {
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return String::new();
        };
        if local.is_empty() || domain.is_empty() {
            return String::new();
        }
        let ts = timestamp(day(now_unix));
        let hash = self.hash(&self.secrets[0], &ts, domain, local);
        format!("SRS0={hash}={ts}={domain}={local}@{our_domain}")
    }

    /// Whether `address` looks like an SRS0 address (without checking it).
    pub fn is_srs(address: &str) -> bool {
        address
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("SRS0="))
    }

    /// The original sender an SRS0 `address` stands for, if its hash is right and it has not
    /// expired at `now_unix`. The domain after `@` is not checked here: the caller accepts only
    /// its own domains.
    pub fn reverse(&self, address: &str, now_unix: i64) -> Result<String, SrsError> {
        if !Srs::is_srs(address) {
            return Err(SrsError::NotSrs);
        }
        let (local, _) = address.rsplit_once('@').ok_or(SrsError::Malformed)?;
        let mut parts = local[5..].splitn(4, '=');
        let (Some(hash), Some(ts), Some(domain), Some(orig)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::Malformed);
        };
        if hash.len() != HASH_LEN || domain.is_empty() || orig.is_empty() {
            return Err(SrsError::Malformed);
        }
        let stamped = decode_timestamp(ts).ok_or(SrsError::Malformed)?;
        if !self
            .secrets
            .iter()
            .any(|s| self.hash(s, ts, domain, orig).eq_ignore_ascii_case(hash))
        {
            return Err(SrsError::Forged);
        }
        let age = (day(now_unix) + 1024 - stamped) % 1024;
        if age > MAX_AGE_DAYS {
            return Err(SrsError::Expired);
        }
        Ok(format!("{orig}@{domain}"))
    }

    fn hash(&self, secret: &[u8], ts: &str, domain: &str, local: &str) -> String {
        let (ts, domain, local) = (
            ts.to_ascii_lowercase(),
            domain.to_ascii_lowercase(),
            local.to_ascii_lowercase(),
        );
        let mac = hmac_sha256(
            secret,
            &[
                ts.as_bytes(),
                b"\0",
                domain.as_bytes(),
                b"\0",
                local.as_bytes(),
            ],
        );
        base32(&mac)
            .into_iter()
            .take(HASH_LEN)
            .map(char::from)
            .collect()
    }
}

/// Days since 1970 modulo 1024.
fn day(now_unix: i64) -> u32 {
    (now_unix.div_euclid(86_400).rem_euclid(1024)) as u32
}

fn timestamp(day: u32) -> String {
    [BASE32[(day >> 5) as usize & 31], BASE32[day as usize & 31]]
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

fn decode_timestamp(ts: &str) -> Option<u32> {
    let b = ts.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let digit = |c: u8| {
        BASE32
            .iter()
            .position(|&x| x == c.to_ascii_uppercase())
            .map(|p| p as u32)
    };
    Some(digit(b[0])? << 5 | digit(b[1])?)
}

/// Base32 digits (RFC 4648 alphabet) of `bytes`, 5 bits at a time.
fn base32(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32[((acc >> bits) & 31) as usize]);
        }
    }
    out
}

/// HMAC-SHA256 (RFC 2104) over the concatenation of `parts`.
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_780_000_000;

    fn srs() -> Srs {
        Srs::new(vec![b"0123456789abcdef-secret".to_vec()]).unwrap()
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn round_trip_and_format() {
        let s = srs();
        let fwd = s.forward("Alice@Remote.example", "example.org", NOW);
        assert!(fwd.starts_with("SRS0="), "{fwd}");
        assert!(fwd.ends_with("=Remote.example=Alice@example.org"), "{fwd}");
        let parts: Vec<&str> = fwd.split('=').collect();
        assert_eq!((parts[1].len(), parts[2].len()), (4, 2), "{fwd}");
        assert_eq!(s.reverse(&fwd, NOW).unwrap(), "Alice@Remote.example");
        // A local part holding '=' survives (an SRS address forwarded again).
        let nested = s.forward("SRS0=abcd=XY=a.example=bob@b.example", "example.org", NOW);
        assert_eq!(
            s.reverse(&nested, NOW).unwrap(),
            "SRS0=abcd=XY=a.example=bob@b.example"
        );
        assert_eq!(s.forward("", "example.org", NOW), "", "<> stays <>");
    }

    #[test]
    fn hash_and_address_compare_without_case() {
        let s = srs();
        let fwd = s.forward("alice@remote.example", "example.org", NOW);
        assert_eq!(
            s.reverse(&fwd.to_ascii_lowercase(), NOW).unwrap(),
            "alice@remote.example"
        );
        let upper = fwd.to_ascii_uppercase();
        assert_eq!(
            s.reverse(&upper, NOW).unwrap(),
            "ALICE@REMOTE.EXAMPLE",
            "an MTA that uppercases everything still reverses"
        );
    }

    #[test]
    fn forged_hash_other_secret_and_malformed_are_refused() {
        let s = srs();
        let fwd = s.forward("alice@remote.example", "example.org", NOW);
        let mut forged = fwd.clone().into_bytes();
        forged[5] = if forged[5] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(s.reverse(&forged, NOW), Err(SrsError::Forged));
        let tampered = fwd.replace("=alice@", "=mallory@");
        assert_eq!(s.reverse(&tampered, NOW), Err(SrsError::Forged));
        let other = Srs::new(vec![b"another-secret-of-16+".to_vec()]).unwrap();
        assert_eq!(other.reverse(&fwd, NOW), Err(SrsError::Forged));
        for bad in [
            "SRS0=abcd@example.org",
            "SRS0=abc=AA=d=l@example.org",
            "SRS0=abcd=A=d=l@example.org",
            "SRS0=abcd=AA==l@example.org",
            "SRS0=abcd=A1=d=l@example.org",
        ] {
            assert_eq!(s.reverse(bad, NOW), Err(SrsError::Malformed), "{bad}");
        }
        assert_eq!(s.reverse("alice@example.org", NOW), Err(SrsError::NotSrs));
    }

    #[test]
    fn rotation_old_secret_still_verifies() {
        let old = srs();
        let fwd = old.forward("alice@remote.example", "example.org", NOW);
        let rotated = Srs::new(vec![
            b"the-new-secret-0123".to_vec(),
            b"0123456789abcdef-secret".to_vec(),
        ])
        .unwrap();
        assert_eq!(rotated.reverse(&fwd, NOW).unwrap(), "alice@remote.example");
        assert!(Srs::new(vec![b"short".to_vec()]).is_none());
        assert!(Srs::new(vec![]).is_none());
    }

    #[test]
    fn expires_after_max_age_also_across_the_wrap() {
        let s = srs();
        let fwd = s.forward("alice@remote.example", "example.org", NOW);
        let day = 86_400;
        let ok = NOW + i64::from(MAX_AGE_DAYS) * day;
        assert!(s.reverse(&fwd, ok).is_ok());
        assert_eq!(
            s.reverse(&fwd, ok + day),
            Err(SrsError::Expired),
            "one day too old"
        );
        assert_eq!(
            s.reverse(&fwd, NOW - day),
            Err(SrsError::Expired),
            "from the future"
        );
        // The day counter wraps at 1024: an address made on day 1023 is fine on day 1 (mod).
        let before_wrap = 1023 * day;
        let f = s.forward("a@b.example", "example.org", before_wrap);
        assert!(s.reverse(&f, before_wrap + 2 * day).is_ok());
    }

    #[test]
    fn secret_file_lines_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("srs.secret");
        std::fs::write(
            &p,
            "# rotate by adding a line on top\nnew-secret-0123456789\n\nold-secret-0123456789\n",
        )
        .unwrap();
        let s = Srs::load(&p).unwrap();
        assert_eq!(s.secrets.len(), 2);
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(Srs::load(&p), Err(SrsSecretError::Weak { .. })));
        assert!(matches!(
            Srs::load(&dir.path().join("missing")),
            Err(SrsSecretError::Read { .. })
        ));
    }
}
