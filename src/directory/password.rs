//! Password hashing and verification.
//!
//! New passwords are hashed with argon2id (the argon2 crate's default parameters, a random salt
//! from the OS). Hashes imported from old LDAP servers are verified as they are — `{SSHA}`,
//! `{SHA}`, `{SSHA256}`, `{SHA256}`, `{SSHA512}`, `{SHA512}`, and `{CRYPT}` (or bare) md5-crypt
//! `$1$`, sha256-crypt `$5$`, sha512-crypt `$6$` — and reported as needing a rehash, so the
//! login path can replace them with argon2id through `Command::RehashPassword`. This module does
//! no I/O besides reading the OS random generator in [`hash_password`].
//!
//! Security note: an unknown or malformed hash is an error, never a match and never a panic.
//! Raw digests are compared in constant time. Cost parameters embedded in a stored hash are
//! bounded ([`MAX_CRYPT_ROUNDS`], [`MAX_ARGON2_MEMORY_KIB`], …) so that one hostile imported
//! hash cannot make a login take minutes or exhaust memory. Errors never echo the hash.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};

/// The stored "hash" of an account that has no password: it receives mail but every login
/// fails with [`PasswordError::NoPassword`]. Same convention as `/etc/shadow`.
pub const NO_PASSWORD: &str = "!";
/// Most `rounds=` accepted in a sha256-crypt/sha512-crypt hash (glibc's default is 5000).
pub const MAX_CRYPT_ROUNDS: u32 = 1_000_000;
/// Most memory an argon2 hash may ask for, in KiB (1 GiB).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;
/// Most argon2 passes.
pub const MAX_ARGON2_ITERATIONS: u32 = 64;
/// Most argon2 lanes.
pub const MAX_ARGON2_LANES: u32 = 16;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password is right. `needs_rehash` asks the caller to store a fresh
    /// [`hash_password`] result: the stored hash is not argon2id with current parameters.
    Ok {
        /// True for every scheme other than argon2id, and for argon2id weaker than the default.
        needs_rehash: bool,
    },
    /// The password is wrong.
    Mismatch,
}

/// The hash schemes this module understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scheme {
    /// PHC `$argon2id$…`, also accepted as `{ARGON2}$argon2id$…` (OpenLDAP's module).
    Argon2id,
    /// PHC `$argon2i$…` or `$argon2d$…`.
    Argon2Other,
    /// `{SSHA}`: base64(sha1(password + salt) + salt).
    Ssha,
    /// `{SHA}`: base64(sha1(password)).
    Sha,
    /// `{SSHA256}`.
    Ssha256,
    /// `{SHA256}`.
    Sha256,
    /// `{SSHA512}`.
    Ssha512,
    /// `{SHA512}`.
    Sha512,
    /// md5-crypt `$1$`.
    Md5Crypt,
    /// sha256-crypt `$5$`.
    Sha256Crypt,
    /// sha512-crypt `$6$`.
    Sha512Crypt,
    /// [`NO_PASSWORD`].
    NoPassword,
}

/// Why a stored hash could not be used. Messages never contain the hash itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PasswordError {
    /// The scheme is not one this server verifies.
    #[error("unsupported password scheme {scheme}: reset the password with `mailctl user passwd`, or import it in plaintext so it is hashed with argon2id")]
    UnknownScheme {
        /// The scheme tag or prefix, e.g. `{MD5}` or `$2y$`.
        scheme: String,
    },
    /// The scheme is known but the hash is damaged.
    #[error("malformed {scheme} password hash: {reason}")]
    Malformed {
        /// The scheme, e.g. `{SSHA}`.
        scheme: String,
        /// What is wrong.
        reason: String,
    },
    /// The account has no password ([`NO_PASSWORD`]).
    #[error("the account has no password: set one with `mailctl user passwd`")]
    NoPassword,
}

/// Hashes `plain` with argon2id, the argon2 crate's default parameters and a fresh random
/// salt, returning a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`).
pub fn hash_password(plain: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(plain.as_bytes(), &salt)
        // Only invalid parameters or salt lengths make this fail, and both are fixed here.
        .expect("argon2id with default parameters and a generated salt cannot fail")
        .to_string()
}

/// Checks `plain` against `stored`. A wrong password is `Ok(Verified::Mismatch)`; an error
/// means the stored hash itself is unusable (unknown scheme, damaged, or no password set).
pub fn verify_password(stored: &str, plain: &str) -> Result<Verified, PasswordError> {
    let matched = match parse(stored)? {
        Parsed::NoPassword => return Err(PasswordError::NoPassword),
        Parsed::Argon2 { phc, canonical } => {
            let hash = PasswordHash::new(phc).map_err(|e| argon2_malformed(&e))?;
            let matched = Argon2::default()
                .verify_password(plain.as_bytes(), &hash)
                .is_ok();
            return Ok(if matched {
                Verified::Ok {
                    needs_rehash: !canonical,
                }
            } else {
                Verified::Mismatch
            });
        }
        Parsed::Digest { alg, raw, .. } => {
            // parse() guarantees raw.len() >= alg.len(); unsalted digests have no salt bytes.
            let (digest, salt) = raw.split_at(alg.len());
            ct_eq(&alg.digest(plain.as_bytes(), salt), digest)
        }
        Parsed::Crypt { scheme, hash } => {
            #[allow(deprecated)] // md5-crypt is deprecated for new hashes, which is not this use
            match scheme {
                Scheme::Md5Crypt => pwhash::md5_crypt::verify(plain, hash),
                Scheme::Sha256Crypt => pwhash::sha256_crypt::verify(plain, hash),
                _ => pwhash::sha512_crypt::verify(plain, hash),
            }
        }
    };
    Ok(if matched {
        Verified::Ok { needs_rehash: true }
    } else {
        Verified::Mismatch
    })
}

/// Checks that `stored` is a hash [`verify_password`] can use (or [`NO_PASSWORD`]) and names
/// its scheme. Used to validate hashes before they enter the directory.
pub fn scheme_of(stored: &str) -> Result<Scheme, PasswordError> {
    Ok(match parse(stored)? {
        Parsed::NoPassword => Scheme::NoPassword,
        Parsed::Argon2 { phc, .. } => {
            if phc.starts_with("$argon2id$") {
                Scheme::Argon2id
            } else {
                Scheme::Argon2Other
            }
        }
        Parsed::Digest { alg, salted, .. } => match (alg, salted) {
            (DigestAlg::Sha1, true) => Scheme::Ssha,
            (DigestAlg::Sha1, false) => Scheme::Sha,
            (DigestAlg::Sha256, true) => Scheme::Ssha256,
            (DigestAlg::Sha256, false) => Scheme::Sha256,
            (DigestAlg::Sha512, true) => Scheme::Ssha512,
            (DigestAlg::Sha512, false) => Scheme::Sha512,
        },
        Parsed::Crypt { scheme, .. } => scheme,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestAlg {
    Sha1,
    Sha256,
    Sha512,
}

impl DigestAlg {
    fn len(self) -> usize {
        match self {
            DigestAlg::Sha1 => 20,
            DigestAlg::Sha256 => 32,
            DigestAlg::Sha512 => 64,
        }
    }

    fn digest(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        match self {
            DigestAlg::Sha1 => Sha1::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            DigestAlg::Sha256 => Sha256::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
            DigestAlg::Sha512 => Sha512::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec(),
        }
    }
}

/// A stored hash, taken apart and checked for form and bounded cost.
enum Parsed<'a> {
    NoPassword,
    /// `canonical`: argon2id at version 0x13 with at least the default costs, untagged.
    Argon2 {
        phc: &'a str,
        canonical: bool,
    },
    Digest {
        alg: DigestAlg,
        salted: bool,
        raw: Vec<u8>,
    },
    Crypt {
        scheme: Scheme,
        hash: &'a str,
    },
}

/// LDAP tools differ on base64 padding; accept both.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn parse(stored: &str) -> Result<Parsed<'_>, PasswordError> {
    if stored == NO_PASSWORD {
        return Ok(Parsed::NoPassword);
    }
    if let Some(rest) = stored.strip_prefix('{') {
        let Some((tag, value)) = rest.split_once('}') else {
            return Err(unknown("'{' without a closing '}'"));
        };
        let tag = tag.to_ascii_uppercase();
        let (alg, salted) = match tag.as_str() {
            "SSHA" => (DigestAlg::Sha1, true),
            "SHA" => (DigestAlg::Sha1, false),
            "SSHA256" => (DigestAlg::Sha256, true),
            "SHA256" => (DigestAlg::Sha256, false),
            "SSHA512" => (DigestAlg::Sha512, true),
            "SHA512" => (DigestAlg::Sha512, false),
            "CRYPT" => {
                return parse_crypt(value)?.ok_or_else(|| {
                    unknown("{CRYPT} other than $1$, $5$ or $6$ (DES or bcrypt crypt(3))")
                })
            }
            "ARGON2" => {
                return match parse_argon2(value)? {
                    Some(Parsed::Argon2 { phc, .. }) => Ok(Parsed::Argon2 {
                        phc,
                        canonical: false,
                    }),
                    _ => Err(malformed("{ARGON2}", "value is not a $argon2…$ PHC string")),
                }
            }
            _ => return Err(unknown(&format!("{{{tag}}}"))),
        };
        let scheme = format!("{{{tag}}}");
        let raw = LENIENT_BASE64
            .decode(value.trim_end())
            .map_err(|_| malformed(&scheme, "value is not valid base64"))?;
        let ok = if salted {
            raw.len() >= alg.len()
        } else {
            raw.len() == alg.len()
        };
        if !ok {
            return Err(malformed(&scheme, "decoded value has the wrong length"));
        }
        return Ok(Parsed::Digest { alg, salted, raw });
    }
    if let Some(parsed) = parse_argon2(stored)? {
        return Ok(parsed);
    }
    if let Some(parsed) = parse_crypt(stored)? {
        return Ok(parsed);
    }
    if stored.starts_with('$') {
        let id: String = stored.chars().take(5).collect();
        let id = id.rsplit_once('$').map(|(p, _)| p).unwrap_or("$");
        return Err(unknown(&format!("{id}$")));
    }
    Err(unknown(
        "without a recognisable prefix (expected {SSHA}…, $6$… or $argon2id$…)",
    ))
}

fn parse_argon2(value: &str) -> Result<Option<Parsed<'_>>, PasswordError> {
    if !value.starts_with("$argon2") {
        return Ok(None);
    }
    let hash = PasswordHash::new(value).map_err(|e| argon2_malformed(&e))?;
    let algorithm = hash.algorithm.as_str();
    if !matches!(algorithm, "argon2id" | "argon2i" | "argon2d") {
        return Err(unknown(&format!("${algorithm}$")));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err(malformed("argon2", "salt or hash output missing"));
    }
    let params = Params::try_from(&hash).map_err(|e| argon2_malformed(&e))?;
    if params.m_cost() > MAX_ARGON2_MEMORY_KIB
        || params.t_cost() > MAX_ARGON2_ITERATIONS
        || params.p_cost() > MAX_ARGON2_LANES
    {
        return Err(malformed(
            "argon2",
            &format!("cost parameters exceed m={MAX_ARGON2_MEMORY_KIB},t={MAX_ARGON2_ITERATIONS},p={MAX_ARGON2_LANES}"),
        ));
    }
    let current = hash.version.is_none_or(|v| v == 0x13);
    let strong =
        params.m_cost() >= Params::DEFAULT_M_COST && params.t_cost() >= Params::DEFAULT_T_COST;
    Ok(Some(Parsed::Argon2 {
        phc: value,
        canonical: algorithm == "argon2id" && current && strong,
    }))
}

/// Recognises `$1$`, `$5$` and `$6$` crypt(3) strings and checks their form strictly, so the
/// pwhash crate only ever sees well-formed input. `Ok(None)`: not one of these schemes.
fn parse_crypt(value: &str) -> Result<Option<Parsed<'_>>, PasswordError> {
    let (scheme, name, max_salt, out_len, rounds_allowed) = if value.starts_with("$1$") {
        (Scheme::Md5Crypt, "md5-crypt $1$", 8, 22, false)
    } else if value.starts_with("$5$") {
        (Scheme::Sha256Crypt, "sha256-crypt $5$", 16, 43, true)
    } else if value.starts_with("$6$") {
        (Scheme::Sha512Crypt, "sha512-crypt $6$", 16, 86, true)
    } else {
        return Ok(None);
    };
    let mut fields: Vec<&str> = value[3..].split('$').collect();
    if rounds_allowed && fields.first().is_some_and(|f| f.starts_with("rounds=")) {
        let rounds: u32 = fields[0]["rounds=".len()..]
            .parse()
            .map_err(|_| malformed(name, "rounds= is not a number"))?;
        if !(1000..=MAX_CRYPT_ROUNDS).contains(&rounds) {
            return Err(malformed(
                name,
                &format!("rounds={rounds} outside 1000..={MAX_CRYPT_ROUNDS}"),
            ));
        }
        fields.remove(0);
    }
    let [salt, output] = fields[..] else {
        return Err(malformed(name, "expected $salt$hash"));
    };
    let crypt_chars = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    if salt.len() > max_salt || !crypt_chars(salt) {
        return Err(malformed(name, "bad salt"));
    }
    if output.len() != out_len || !crypt_chars(output) {
        return Err(malformed(name, "bad hash length or characters"));
    }
    Ok(Some(Parsed::Crypt {
        scheme,
        hash: value,
    }))
}

/// Compares two byte strings in time that depends only on their lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

fn unknown(scheme: &str) -> PasswordError {
    PasswordError::UnknownScheme {
        scheme: scheme.to_string(),
    }
}

fn malformed(scheme: &str, reason: &str) -> PasswordError {
    PasswordError::Malformed {
        scheme: scheme.to_string(),
        reason: reason.to_string(),
    }
}

fn argon2_malformed(e: &argon2::password_hash::Error) -> PasswordError {
    malformed("argon2", &e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known vectors for the password "secret", made with real tools (OpenLDAP 2.5
    /// `slappasswd`, with `-o module-load=pw-sha2` for the SHA-2 ones; OpenSSL 3.0
    /// `openssl passwd`; the argon2 reference CLI `argon2`).
    const VECTORS: &[(&str, Scheme)] = &[
        ("{SSHA}mIgrNXqKJZFTtTrAJOaZyrkpT2103nSh", Scheme::Ssha),
        ("{ssha}mIgrNXqKJZFTtTrAJOaZyrkpT2103nSh", Scheme::Ssha),
        ("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", Scheme::Sha),
        ("{SSHA256}jCfL4iylkN8u7mpRro23/6sNflFSKTxU9qsoJMT8X4Gw2Jr7h7zrag==", Scheme::Ssha256),
        ("{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=", Scheme::Sha256),
        ("{SSHA512}lKG9TEJ2TRXEKrv7QmF0X4KfX4u7BEZkxpu6XpC75tiPDngSbLJy33dLb1y5DPnDyqdoZDBLEV0gnoXyxjqrG7OwISjPMwe4", Scheme::Ssha512),
        ("{SHA512}vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==", Scheme::Sha512),
        ("{CRYPT}$1$S.0Wfx3N$5nj1kxip4hgSmyiAcqFHB.", Scheme::Md5Crypt),
        ("{crypt}$5$jGvlMxNDVLD6FBc0$6BERQOZgnEGUAOJ4v5PZDFlMCDRq7kOoj5oLXwJHHL7", Scheme::Sha256Crypt),
        ("{CRYPT}$6$..N33Eq/bo3NrfXJ$j3tBjtyw4WKyVrNWmU69YbfODcb6xixMtCCnAG4cZynP/vNUfhdPkAOPZxAd.bYiNSPrIUVbCAg7cSXpvXDNU.", Scheme::Sha512Crypt),
        ("$1$saltsalt$9xy1btjgzLYfb7hivXtC//", Scheme::Md5Crypt),
        ("$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA", Scheme::Sha256Crypt),
        ("$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1", Scheme::Sha512Crypt),
        ("$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzYWx0$6pVKRFxOk3UokGCeAncuGBUcjK8nGcczSAnET2sIboo", Scheme::Argon2id),
        ("{ARGON2}$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzYWx0$6pVKRFxOk3UokGCeAncuGBUcjK8nGcczSAnET2sIboo", Scheme::Argon2id),
    ];

    #[test]
    fn known_vectors_verify_and_ask_for_rehash() {
        for &(hash, scheme) in VECTORS {
            assert_eq!(scheme_of(hash), Ok(scheme), "{hash}");
            assert_eq!(
                verify_password(hash, "secret"),
                Ok(Verified::Ok { needs_rehash: true }),
                "{hash}"
            );
            assert_eq!(
                verify_password(hash, "Secret"),
                Ok(Verified::Mismatch),
                "{hash}"
            );
            assert_eq!(verify_password(hash, ""), Ok(Verified::Mismatch), "{hash}");
        }
    }

    #[test]
    fn non_ascii_passwords() {
        // slappasswd -h {SSHA} -s 'Pässwörd with spaces'
        let ssha = "{SSHA}may85e4OmsndOAedYu8JjD1L4ur5/kdv";
        assert_eq!(
            verify_password(ssha, "Pässwörd with spaces"),
            Ok(Verified::Ok { needs_rehash: true })
        );
        assert_eq!(
            verify_password(ssha, "Passwörd with spaces"),
            Ok(Verified::Mismatch)
        );
        // argon2 anothersalt -i: argon2i is accepted but replaced by argon2id.
        let argon2i =
            "$argon2i$v=19$m=4096,t=3,p=1$YW5vdGhlcnNhbHQ$aKURl4vZzUX2SJEzv8G89wW/IzuII4lccOrVSa1J8CI";
        assert_eq!(scheme_of(argon2i), Ok(Scheme::Argon2Other));
        assert_eq!(
            verify_password(argon2i, "pässwörd"),
            Ok(Verified::Ok { needs_rehash: true })
        );
        assert_eq!(verify_password(argon2i, "passwörd"), Ok(Verified::Mismatch));
    }

    #[test]
    fn fresh_hashes_are_argon2id_and_salted() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert!(a.starts_with("$argon2id$v=19$"), "{a}");
        assert_ne!(a, b, "salts must differ");
        assert_eq!(scheme_of(&a), Ok(Scheme::Argon2id));
        assert_eq!(
            verify_password(&a, "correct horse"),
            Ok(Verified::Ok {
                needs_rehash: false
            })
        );
        assert_eq!(
            verify_password(&a, "correct horse "),
            Ok(Verified::Mismatch)
        );
    }

    #[test]
    fn unusable_hashes_are_errors() {
        let unknown_cases = [
            "{MD5}Xr4ilOzQ4PCOq3aQ0qbuaQ==",
            "{CRYPT}Z035oLF6nSBXk",
            "$2y$05$bvIG6Nmid91Mu9RcmmWZfO5HJIMCT8riNW0hEp8f6/FuA2/mHZFpe",
            "secret",
            "",
            "{SSHA",
            "$argon2x$v=19$m=4096,t=3,p=1$c29tZXNhbHRzYWx0$6pVKRFxOk3UokGCeAncuGBUcjK8nGcczSAnET2sIboo",
        ];
        for hash in unknown_cases {
            let err = verify_password(hash, "secret").unwrap_err();
            assert!(
                matches!(
                    err,
                    PasswordError::UnknownScheme { .. } | PasswordError::Malformed { .. }
                ),
                "{hash}: {err:?}"
            );
            assert!(scheme_of(hash).is_err(), "{hash}");
        }
        let malformed_cases = [
            "{SSHA}not base64!",
            "{SHA}c2VjcmV0",
            "{SSHA}AAAA",
            "$6$saltsalt$short",
            "$6$rounds=999999999$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "$6$rounds=x$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
            "$1$salt!$9xy1btjgzLYfb7hivXtC//",
            "$1$saltsalt$9xy1btjgzLYfb7hivXtC//$extra",
            "$argon2id$v=19$m=4194304,t=3,p=1$c29tZXNhbHRzYWx0$6pVKRFxOk3UokGCeAncuGBUcjK8nGcczSAnET2sIboo",
            "$argon2id$garbage",
            "{ARGON2}$6$saltsalt$x",
        ];
        for hash in malformed_cases {
            let err = verify_password(hash, "secret").unwrap_err();
            assert!(
                matches!(err, PasswordError::Malformed { .. }),
                "{hash}: {err:?}"
            );
        }
        assert_eq!(
            verify_password("!", "anything"),
            Err(PasswordError::NoPassword)
        );
        assert_eq!(scheme_of("!"), Ok(Scheme::NoPassword));
    }

    #[test]
    fn errors_do_not_echo_the_hash() {
        let err = verify_password("{SSHA}c2VjcmV0IQ==!", "x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let err = verify_password("$9$c2VjcmV0", "x").unwrap_err().to_string();
        assert!(!err.contains("c2VjcmV0"), "{err}");
    }

    #[test]
    fn constant_time_compare() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
