//! Login through the directory, shared by every protocol that authenticates users.
//!
//! Verification runs on the blocking pool (argon2id costs tens of milliseconds). A successful
//! login with a legacy hash imported from an old LDAP server ({SSHA}, {CRYPT}$6$, …) rewrites it
//! as argon2id through the Raft log — conditionally, so a password change racing with the login
//! wins. Unknown users cost the same as known ones, so timings do not reveal who exists.
//! Never logs a password or a hash.

use std::sync::OnceLock;

use crate::cluster::Cluster;
use crate::directory::password::{hash_password, verify_password, Verified};
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

/// A hash to verify against when the user does not exist, so that case costs the same time.
fn dummy_hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hash_password("mailnode-timing-equaliser"))
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
        None => (dummy_hash().to_string(), String::new(), false),
    };
    let password = password.to_string();
    let verify_stored = stored.clone();
    let verdict = tokio::task::spawn_blocking(move || {
        verify_password(&verify_stored, &password).map(|v| (v, password))
    })
    .await
    .map_err(|e| AuthError::BadHash(e.to_string()))?;
    let (verified, password) = verdict.map_err(|e| AuthError::BadHash(e.to_string()))?;
    let needs_rehash = match verified {
        Verified::Ok { needs_rehash } if user.is_some() => needs_rehash,
        _ => return Err(AuthError::Failed),
    };
    if !enabled {
        return Err(AuthError::Disabled);
    }
    let mut rehashed = false;
    if needs_rehash {
        let new_hash = tokio::task::spawn_blocking(move || hash_password(&password))
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
