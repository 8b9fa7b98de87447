//! The benchmark's users, identical for both systems: one LDIF file that `ldapadd` loads into
//! slapd and `mailctl user import` loads into mailnode, and the entries of the write phase.
//!
//! User `N` of the import is `uN@bench.example` with the alternate address `aN@bench.example`
//! (a second `mail` value: an alias to mailnode's LDIF import, an indexed attribute to slapd),
//! a `cn`, and a salted SHA-1 (`{SSHA}`) password hash, as an old OpenLDAP would hold it.

use base64::Engine;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sha1::{Digest, Sha1};

/// The suffix of the slapd databases; mailnode ignores the DNs.
pub const BASE_DN: &str = "dc=bench,dc=example";
/// The mail domain of every user.
pub const DOMAIN: &str = "bench.example";

/// One user, with the same values on both sides.
pub struct BenchUser {
    /// `uid`, also the local part of the address: `u17`, `w3`.
    pub uid: String,
    /// The primary address.
    pub address: String,
    /// The alternate address, for imported users only (written users have none on either side).
    pub alias: Option<String>,
    /// Display name (`cn`).
    pub cn: String,
    /// `{SSHA}` hash of the user's password.
    pub password_hash: String,
}

impl BenchUser {
    /// The user's entry DN on the slapd side.
    pub fn dn(&self) -> String {
        format!("uid={},ou=people,{BASE_DN}", self.uid)
    }
}

/// `{SSHA}` as OpenLDAP's `slappasswd -h {SSHA}` writes it: base64(sha1(password + salt) + salt).
pub fn ssha(password: &[u8], salt: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(password);
    h.update(salt);
    let mut raw = h.finalize().to_vec();
    raw.extend_from_slice(salt);
    format!(
        "{{SSHA}}{}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// `count` users `{prefix}1..={prefix}count`; imported users (`with_alias`) get an alternate
/// address. Salts come from a fixed seed so every run loads the same bytes.
pub fn users(prefix: &str, count: usize, with_alias: bool) -> Vec<BenchUser> {
    let mut rng = StdRng::seed_from_u64(0x6d61_696c_6e6f_6465);
    (1..=count)
        .map(|n| {
            let salt: [u8; 8] = rng.gen();
            BenchUser {
                uid: format!("{prefix}{n}"),
                address: format!("{prefix}{n}@{DOMAIN}"),
                alias: with_alias.then(|| format!("a{n}@{DOMAIN}")),
                cn: format!("Bench User {prefix}{n}"),
                password_hash: ssha(format!("password-{prefix}{n}").as_bytes(), &salt),
            }
        })
        .collect()
}

/// The import file: the two container entries slapd needs (mailnode skips entries without
/// `mail`), then one `inetOrgPerson` per user.
pub fn ldif(users: &[BenchUser]) -> String {
    let mut out = format!(
        "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\ndc: bench\no: Bench\n\n\
         dn: ou=people,{BASE_DN}\nobjectClass: organizationalUnit\nou: people\n\n"
    );
    for u in users {
        out.push_str(&format!(
            "dn: {}\nobjectClass: inetOrgPerson\nuid: {}\ncn: {}\nsn: {}\nmail: {}\n",
            u.dn(),
            u.uid,
            u.cn,
            u.uid,
            u.address
        ));
        if let Some(alias) = &u.alias {
            out.push_str(&format!("mail: {alias}\n"));
        }
        out.push_str(&format!("userPassword: {}\n\n", u.password_hash));
    }
    out
}

/// A fixed random order of `0..n`, so lookups do not walk the keys in their sorted order.
pub fn shuffled(n: usize) -> Vec<usize> {
    let mut rng = StdRng::seed_from_u64(35_000);
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rng);
    order
}
