//! Login through the directory, shared by every protocol that authenticates users.
//!
//! Verification runs on the blocking pool (argon2id costs tens of milliseconds). A successful
//! login with a legacy hash imported from an old LDAP server ({SSHA}, {CRYPT}$6$, …) rewrites it
//! as argon2id through the Raft log — conditionally, so a password change racing with the login
//! wins. Unknown users cost the same as known ones, so timings do not reveal who exists.
//! Never logs a password or a hash.
//!
//! Password checks are bounded: at most [`Verifier::permits`] run at once (about the number of
//! cores; more would only share the same cores and multiply the memory), the others queue
//! without a thread. Each argon2 check and rehash uses one of a small pool of work areas (19 MiB
//! for the default parameters) that are kept and reused, not allocated per check: glibc's malloc
//! keeps freed blocks of that size resident, which made a process that served 10,000 logins hold
//! gigabytes. Security note: a hostile imported hash cannot grow the pool past its bound — a
//! work area larger than [`MAX_POOLED_KIB`] is freed after its check — and the directory already
//! refuses argon2 costs above its limits.

use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::Cluster;
use crate::directory::password::{scheme_of, verify_password, PasswordError, Scheme, Verified};
use crate::directory::Command;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("authentication failed")]
    Failed,
    #[error("account disabled")]
    Disabled,
    #[error("the stored password hash cannot be used: {0}")]
    BadHash(String),
}

/// A successful login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The canonical address of the user.
    pub address: String,
    /// True when a legacy hash was replaced by argon2id during this login.
    pub rehashed: bool,
}

/// Largest argon2 work area kept for reuse, in KiB: four times the default cost, so hashes made
/// with stronger (but sane) parameters are reused too, while an area for an odd 1 GiB hash is
/// freed after its check.
pub const MAX_POOLED_KIB: u32 = 4 * Params::DEFAULT_M_COST;

/// The password checks of the process: a limit on how many run at once and the argon2 work
/// areas they reuse.
pub struct Verifier {
    permits: Arc<Semaphore>,
    /// How many checks may run at once (the semaphore's size).
    limit: usize,
    /// Idle work areas; at most `limit` of them, each at most [`MAX_POOLED_KIB`].
    areas: Mutex<Vec<Vec<Block>>>,
}

impl Verifier {
    /// A verifier running at most `limit` checks at once (at least one).
    pub fn new(limit: usize) -> Verifier {
        let limit = limit.max(1);
        Verifier {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            areas: Mutex::new(Vec::with_capacity(limit)),
        }
    }

    /// The process's verifier: as many concurrent checks as the machine has cores.
    pub fn global() -> &'static Verifier {
        static V: OnceLock<Verifier> = OnceLock::new();
        V.get_or_init(|| Verifier::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
    }

    /// How many checks may run at once.
    pub fn permits(&self) -> usize {
        self.limit
    }

    /// Work areas kept for reuse now, and their total size in KiB (for tests and status).
    pub fn pooled(&self) -> (usize, usize) {
        let areas = self.areas.lock().unwrap_or_else(|e| e.into_inner());
        (areas.len(), areas.iter().map(Vec::len).sum())
    }

    /// Waits for a turn. The permit travels with the blocking work, so a session that goes
    /// away mid-check does not let another check start while this one still runs.
    async fn turn(&self) -> OwnedSemaphorePermit {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            // The semaphore is never closed.
            .expect("the password check semaphore is never closed")
    }

    /// Runs `f` with a work area of at least `blocks` blocks, from the pool when one is idle.
    fn with_area<R>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> R) -> R {
        let taken = self.areas.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut area = taken.unwrap_or_default();
        if area.len() < blocks {
            area.resize(blocks, Block::new());
        }
        let r = f(&mut area[..blocks]);
        if area.len() <= MAX_POOLED_KIB as usize {
            let mut areas = self.areas.lock().unwrap_or_else(|e| e.into_inner());
            if areas.len() < self.limit {
                areas.push(area);
            }
        }
        r
    }

    /// [`verify_password`] with a pooled work area for argon2 hashes (same verdicts, same
    /// `needs_rehash`). Blocking: run it on the blocking pool.
    pub fn verify(&self, stored: &str, plain: &str) -> Result<Verified, PasswordError> {
        // Validates the form and the cost bounds of every scheme.
        match scheme_of(stored)? {
            Scheme::Argon2id | Scheme::Argon2Other => {}
            _ => return verify_password(stored, plain),
        }
        // `{ARGON2}$argon2id$…` (OpenLDAP's tag) is accepted but always rehashed untagged.
        let (phc, tagged) = match stored.split_once('}') {
            Some((_, phc)) if stored.starts_with('{') => (phc, true),
            _ => (stored, false),
        };
        // The form and the costs were checked above; like `verify_password`, anything argon2
        // still refuses (a salt too short, an unknown version) can never match.
        let matched = self.argon2_matches(phc, tagged, plain.as_bytes());
        Ok(match matched {
            Some(canonical) => Verified::Ok {
                needs_rehash: !canonical,
            },
            None => Verified::Mismatch,
        })
    }

    /// Whether `plain` matches the PHC string `phc`: `Some(canonical)` when it does, where
    /// `canonical` means untagged argon2id, version 0x13, at least the default costs.
    fn argon2_matches(&self, phc: &str, tagged: bool, plain: &[u8]) -> Option<bool> {
        let hash = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
        let version = match hash.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&hash).ok()?;
        let (salt, expected) = (hash.salt?, hash.hash?);
        let mut salt_buf = [0u8; 64];
        let salt = salt.decode_b64(&mut salt_buf).ok()?;
        let canonical = !tagged
            && algorithm == Algorithm::Argon2id
            && version == Version::V0x13
            && params.m_cost() >= Params::DEFAULT_M_COST
            && params.t_cost() >= Params::DEFAULT_T_COST;
        let blocks = params.block_count();
        let mut out = vec![0u8; expected.len()];
        let argon = Argon2::new(algorithm, version, params);
        self.with_area(blocks, |area| {
            argon.hash_password_into_with_memory(plain, salt, &mut out, area)
        })
        .ok()?;
        // `Output`'s equality is constant-time.
        (Output::new(&out).ok()? == expected).then_some(canonical)
    }

    /// A fresh argon2id hash with the default parameters and a random salt, in the same PHC
    /// form as [`crate::directory::password::hash_password`], with a pooled work area.
    /// Blocking.
    pub fn hash(&self, plain: &str) -> String {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let params = Params::default();
        let mut salt_buf = [0u8; 64];
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        // Only invalid parameters or salt lengths make these fail, and both are fixed here.
        let raw_salt = salt
            .decode_b64(&mut salt_buf)
            .expect("a generated salt decodes");
        self.with_area(params.block_count(), |area| {
            argon.hash_password_into_with_memory(plain.as_bytes(), raw_salt, &mut out, area)
        })
        .expect("argon2id with default parameters and a generated salt cannot fail");
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).expect("default parameters encode"),
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).expect("a 32-byte output is valid")),
        };
        phc.to_string()
    }
}

/// A hash to verify against when the user does not exist, so that case costs the same time.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| Verifier::global().hash("mailnode-timing-equaliser"))
}

/// Checks `password` for `address` against the directory.
pub async fn authenticate(
    cluster: &Cluster,
    address: &str,
    password: &str,
) -> Result<Login, AuthError> {
    let user = {
        let dir = cluster.read_directory();
        dir.user(address).cloned()
    };
    let (stored, canonical, enabled) = match &user {
        Some(u) => (u.password_hash.clone(), u.address.clone(), u.enabled),
        None => (String::new(), String::new(), false),
    };
    let verifier = Verifier::global();
    let permit = verifier.turn().await;
    let password = password.to_string();
    let verify_stored = stored.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        let stored = if verify_stored.is_empty() {
            dummy_hash()
        } else {
            verify_stored.as_str()
        };
        let v = verifier.verify(stored, &password);
        (v, password, permit)
    })
    .await
    .map_err(|e| AuthError::BadHash(e.to_string()))?;
    let (verified, password, permit) = verdict;
    let verified = verified.map_err(|e| AuthError::BadHash(e.to_string()))?;
    let needs_rehash = match verified {
        Verified::Ok { needs_rehash } if user.is_some() => needs_rehash,
        _ => return Err(AuthError::Failed),
    };
    if !enabled {
        return Err(AuthError::Disabled);
    }
    let mut rehashed = false;
    if needs_rehash {
        let new_hash = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verifier.hash(&password)
        })
        .await
        .map_err(|e| AuthError::BadHash(e.to_string()))?;
        let cmd = Command::RehashPassword {
            address: canonical.clone(),
            old_hash: stored,
            new_hash,
        };
        match cluster.write(cmd).await {
            Ok(_) => rehashed = true,
            // The login stands; the rehash is retried at the next one.
            Err(e) => {
                tracing::warn!(user = %canonical, error = %e, "could not upgrade a legacy password hash")
            }
        }
    }
    Ok(Login {
        address: canonical,
        rehashed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::password::hash_password;

    /// Every verdict of the pooled verifier equals the directory's own.
    #[test]
    fn pooled_verification_agrees_with_the_directory() {
        let v = Verifier::new(2);
        let fresh = hash_password("right");
        // argon2id with weaker costs, argon2i, OpenLDAP's tag, and legacy schemes.
        let weak = "$argon2id$v=19$m=4096,t=3,p=1$c29tZXNhbHRzYWx0$6pVKRFxOk3UokGCeAncuGBUcjK8nGcczSAnET2sIboo";
        let argon2i = {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let a = Argon2::new(Algorithm::Argon2i, Version::V0x13, Params::default());
            argon2::PasswordHasher::hash_password(&a, b"right", &salt)
                .unwrap()
                .to_string()
        };
        let v10 = {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let a = Argon2::new(Algorithm::Argon2id, Version::V0x10, Params::default());
            argon2::PasswordHasher::hash_password(&a, b"right", &salt)
                .unwrap()
                .to_string()
        };
        let tagged = format!("{{ARGON2}}{fresh}");
        let lower_tag = format!("{{argon2}}{fresh}");
        let ssha = "{SSHA}8hdSoKkJybnvYK3ySjVR/SDJNYA0NDU2";
        let cases: Vec<&str> = vec![
            &fresh,
            weak,
            &argon2i,
            &v10,
            &tagged,
            &lower_tag,
            ssha,
            "!",
            "{MD5}xyz",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$",
            "$argon2id$garbage",
        ];
        for stored in cases {
            for plain in ["right", "wrong", "password", ""] {
                assert_eq!(
                    v.verify(stored, plain),
                    verify_password(stored, plain),
                    "{stored} / {plain}"
                );
            }
        }
        assert_eq!(
            v.verify(&fresh, "right"),
            Ok(Verified::Ok {
                needs_rehash: false
            })
        );
        assert_eq!(v.verify(&fresh, "wrong"), Ok(Verified::Mismatch));
    }

    #[test]
    fn pooled_hashes_are_canonical_argon2id() {
        let v = Verifier::new(1);
        let h = v.hash("secret");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_ne!(h, v.hash("secret"), "a fresh salt each time");
        assert_eq!(
            verify_password(&h, "secret"),
            Ok(Verified::Ok {
                needs_rehash: false
            })
        );
        assert_eq!(verify_password(&h, "other"), Ok(Verified::Mismatch));
        assert_eq!(scheme_of(&h), Ok(Scheme::Argon2id));
    }

    /// The pool holds at most one area per permit, reuses them, and keeps none of an
    /// oversized hash.
    #[test]
    fn work_areas_are_reused_and_bounded() {
        let v = Verifier::new(2);
        assert_eq!(v.pooled(), (0, 0));
        let h = hash_password("x");
        for _ in 0..5 {
            v.verify(&h, "x").unwrap();
        }
        let default_blocks = Params::default().block_count();
        assert_eq!(v.pooled(), (1, default_blocks), "one area, reused");
        // Two at once (two permits): two areas, never more.
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| v.verify(&h, "x").unwrap());
            }
        });
        assert!(v.pooled().0 <= 2);
        // An area larger than the bound is freed after use.
        let big = {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let params = Params::new(MAX_POOLED_KIB + 1024, 1, 1, None).unwrap();
            let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
            argon2::PasswordHasher::hash_password(&a, b"x", &salt)
                .unwrap()
                .to_string()
        };
        let before = v.pooled();
        assert_eq!(
            v.verify(&big, "x"),
            Ok(Verified::Ok { needs_rehash: true }),
            "t=1 is weaker than the default"
        );
        let after = v.pooled();
        assert!(
            after.0 <= before.0 && after.1 <= before.1,
            "{before:?} -> {after:?}"
        );
    }

    /// With one permit, a second check waits until the first one's permit is released.
    #[tokio::test]
    async fn checks_queue_behind_the_limit() {
        let v: &'static Verifier = Box::leak(Box::new(Verifier::new(1)));
        assert_eq!(v.permits(), 1);
        let first = v.turn().await;
        let waiting = tokio::spawn(async move {
            let _p = v.turn().await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a second check ran past the limit");
        drop(first);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the queued check ran once the first was done")
            .unwrap();
    }
}
