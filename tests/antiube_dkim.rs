//! DKIM and DMARC (`mailnode::antiube::dkim`) against a real DNS server.
//!
//! 1. `real_dns_*`: `dnsmasq` (Debian's dnsmasq-base) on 127.0.91.1:5353 serves the DKIM keys
//!    and DMARC records of `*.test` (NXDOMAIN for other `.test` names, REFUSED outside `.test`).
//!    Keys are made per run: RSA-2048 by the `openssl` CLI (Debian's openssl; the key record
//!    is its SubjectPublicKeyInfo, split into 255-byte strings as real zones do), Ed25519 by
//!    mail-auth. Messages are signed with mail-auth's `DkimSigner`.
//! 2. `silent_server_*`: a UDP socket on 127.0.91.2:5353 that never answers must give
//!    `temperror` for DKIM and DMARC within the lookup timeout.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::dns::dnsmasq;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use mailnode::antiube::dkim::{AuthInput, AuthOutcome, AuthVerifier, DmarcPolicy, MAX_SIGNATURES};
use mailnode::antiube::policy::DnsSettings;
use mailnode::antiube::spf::SpfResult;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

/// A `--txt-record` of `name` whose text is split into character-strings of at most 255 bytes.
fn txt(name: &str, text: &str) -> String {
    let parts: Vec<&str> = text
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    assert!(!text.contains(','), "{text}");
    format!("--txt-record={name},{}", parts.join(","))
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}: {st}");
}

/// A fresh RSA-2048 key: its PKCS#8 PEM and the base64 SubjectPublicKeyInfo for `p=`; `None`
/// when the openssl CLI is absent.
fn rsa_key(dir: &Path) -> Option<(Vec<u8>, String)> {
    if Command::new("openssl").arg("version").output().is_err() {
        return None;
    }
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ],
    );
    openssl(
        dir,
        &[
            "pkey", "-in", "rsa.pem", "-pubout", "-outform", "DER", "-out", "rsa.der",
        ],
    );
    let pem = std::fs::read(dir.join("rsa.pem")).unwrap();
    let der = std::fs::read(dir.join("rsa.der")).unwrap();
    Some((pem, base64::engine::general_purpose::STANDARD.encode(der)))
}

const SIGNED: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

fn message(from: &str, body: &str) -> String {
    format!(
        "From: Alice <{from}>\r\nTo: bob@mailnode.test\r\nSubject: quarterly figures\r\n\
         Date: Sun, 29 Nov 2026 12:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\n{body}"
    )
}

fn sign_rsa(pem: &[u8], domain: &str, selector: &str, msg: &str) -> String {
    let key = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::from_pem_slice(pem).unwrap()).unwrap();
    let sig = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED)
        .sign(msg.as_bytes())
        .unwrap();
    format!("{}{msg}", sig.to_header())
}

fn sign_ed25519(pkcs8: &[u8], domain: &str, selector: &str, msg: &str) -> String {
    let key = Ed25519Key::from_pkcs8_der(pkcs8).unwrap();
    let sig = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED)
        .sign(msg.as_bytes())
        .unwrap();
    format!("{}{msg}", sig.to_header())
}

fn input<'a>(mail_from: &'a str, spf: SpfResult, spf_domain: &'a str) -> AuthInput<'a> {
    AuthInput {
        ip: "127.0.91.20".parse().unwrap(),
        helo: "client.other.test",
        mail_from: Some(mail_from),
        spf: Some((spf, spf_domain)),
        hostname: "mx.mailnode.test",
    }
}

fn results(o: &AuthOutcome) -> Vec<&'static str> {
    o.dkim.iter().map(|d| d.result).collect()
}

#[tokio::test]
async fn real_dns_dkim_and_dmarc() {
    let dir = tempfile::tempdir().unwrap();
    let Some((rsa_pem, rsa_pub)) = rsa_key(dir.path()) else {
        eprintln!("SKIP: the openssl CLI (Debian package openssl) is not installed");
        return;
    };
    let ed_pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let ed_pub = base64::engine::general_purpose::STANDARD
        .encode(Ed25519Key::from_pkcs8_der(&ed_pkcs8).unwrap().public_key());
    let rsa_record = format!("v=DKIM1; k=rsa; p={rsa_pub}");
    assert!(
        rsa_record.len() > 255,
        "the key record must need several strings"
    );
    let _dns = dnsmasq(
        "127.0.91.1",
        &[
            txt("sel._domainkey.example.test", &rsa_record),
            txt(
                "ed._domainkey.example.test",
                &format!("v=DKIM1; k=ed25519; p={ed_pub}"),
            ),
            txt("_dmarc.example.test", "v=DMARC1; p=reject"),
            txt("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
            txt("sel._domainkey.nodmarc.test", &rsa_record),
        ],
    );
    let v = AuthVerifier::new(&DnsSettings {
        servers: vec!["127.0.91.1:5353".into()],
        timeout_ms: 2_000,
    })
    .unwrap();
    let body = "Hello Bob,\r\n\r\nthe figures are attached.\r\n";
    let plain = message("alice@example.test", body);
    // SPF failed for an unrelated bounce domain: DMARC can only pass through DKIM.
    let bounce = input("bounce@other.test", SpfResult::Fail, "other.test");

    // A valid RSA-SHA256 signature of the From domain.
    let signed = sign_rsa(&rsa_pem, "example.test", "sel", &plain);
    let o = v.verify(signed.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["pass"], "{o:?}");
    assert_eq!(
        (o.dkim[0].domain.as_str(), o.dkim[0].selector.as_str()),
        ("example.test", "sel")
    );
    assert_eq!(o.dmarc.result, "pass", "{o:?}");
    assert_eq!(o.dmarc.domain, "example.test");
    assert_eq!(o.dmarc.policy, DmarcPolicy::Reject);
    let h = o.authentication_results("mx.mailnode.test");
    assert_eq!(
        h,
        "mx.mailnode.test;\r\n\tdkim=pass header.d=example.test header.s=sel;\r\n\
         \tspf=fail smtp.mailfrom=bounce@other.test;\r\n\
         \tdmarc=pass (p=reject) header.from=example.test"
    );

    // Ed25519-SHA256.
    let signed_ed = sign_ed25519(&ed_pkcs8, "example.test", "ed", &plain);
    let o = v.verify(signed_ed.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["pass"], "{o:?}");
    assert_eq!(o.dmarc.result, "pass", "{o:?}");

    // The body changed after signing.
    let tampered = signed.replace("the figures are attached", "send the money to account 1234");
    let o = v.verify(tampered.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["fail"], "{o:?}");
    assert_eq!(
        o.dkim[0].reason.as_deref(),
        Some("body hash did not verify")
    );
    assert_eq!(o.dmarc.result, "fail", "{o:?}");
    assert_eq!(o.dmarc.policy, DmarcPolicy::Reject);
    assert!(o
        .authentication_results("mx")
        .contains("dmarc=fail (p=reject) header.from=example.test"));

    // A signed header changed after signing.
    let tampered = signed.replace("Subject: quarterly figures", "Subject: urgent: invoice");
    let o = v.verify(tampered.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["fail"], "{o:?}");
    assert_eq!(o.dmarc.result, "fail", "{o:?}");

    // A selector without a key.
    let nokey = sign_rsa(&rsa_pem, "example.test", "gone", &plain);
    let o = v.verify(nokey.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["permerror"], "{o:?}");
    assert_eq!(o.dmarc.result, "fail", "{o:?}");

    // Unsigned mail of a p=quarantine domain: SPF fail gives DMARC fail, SPF pass (aligned)
    // gives DMARC pass — the caller's SPF result is what DMARC uses.
    let quar = message("carol@quar.test", body);
    let o = v
        .verify(
            quar.as_bytes(),
            input("carol@quar.test", SpfResult::Fail, "quar.test"),
        )
        .await;
    assert!(o.dkim.is_empty(), "{o:?}");
    assert_eq!(o.dmarc.result, "fail", "{o:?}");
    assert_eq!(o.dmarc.policy, DmarcPolicy::Quarantine);
    let o = v
        .verify(
            quar.as_bytes(),
            input("carol@quar.test", SpfResult::Pass, "quar.test"),
        )
        .await;
    assert_eq!(o.dmarc.result, "pass", "{o:?}");
    let h = o.authentication_results("mx");
    assert!(h.contains("\tdkim=none;"), "{h}");
    assert!(h.contains("spf=pass smtp.mailfrom=carol@quar.test"), "{h}");

    // A domain without DMARC record.
    let nod = sign_rsa(
        &rsa_pem,
        "nodmarc.test",
        "sel",
        &message("dan@nodmarc.test", body),
    );
    let o = v.verify(nod.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["pass"], "{o:?}");
    assert_eq!(o.dmarc.result, "none", "{o:?}");
    assert_eq!(o.dmarc.domain, "nodmarc.test");
    assert_eq!(o.dmarc.policy, DmarcPolicy::None);

    // The DMARC lookups are refused (outside .test): a DNS failure, never "none".
    let refused = message("eve@example.org", body);
    let o = v.verify(refused.as_bytes(), bounce).await;
    assert_eq!(o.dmarc.result, "temperror", "{o:?}");
    assert_eq!(o.dmarc.domain, "example.org");

    // Bounded work: seven valid signatures, five verified.
    let mut many = plain.clone();
    for _ in 0..7 {
        many = sign_rsa(&rsa_pem, "example.test", "sel", &many);
    }
    let o = v.verify(many.as_bytes(), bounce).await;
    assert_eq!(results(&o), ["pass"; MAX_SIGNATURES], "{o:?}");
    assert_eq!(o.ignored_signatures, 7 - MAX_SIGNATURES);
    assert_eq!(o.dmarc.result, "pass", "{o:?}");
}

#[tokio::test]
async fn silent_server_is_temperror_within_the_timeout() {
    // Receives queries and never answers.
    let silent = UdpSocket::bind("127.0.91.2:5353").unwrap();
    let timeout = Duration::from_millis(500);
    let v = AuthVerifier::new(&DnsSettings {
        servers: vec![silent.local_addr().unwrap().to_string()],
        timeout_ms: timeout.as_millis() as u64,
    })
    .unwrap();
    let ed_pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let signed = sign_ed25519(
        &ed_pkcs8,
        "example.test",
        "ed",
        &message("alice@example.test", "hi\r\n"),
    );
    let started = Instant::now();
    let o = v
        .verify(
            signed.as_bytes(),
            input("alice@example.test", SpfResult::TempError, "example.test"),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(results(&o), ["temperror"], "{o:?}");
    assert_eq!(o.dmarc.result, "temperror", "{o:?}");
    assert_eq!(o.dmarc.domain, "example.test");
    // One key lookup and one DMARC evaluation, each bounded by the timeout.
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
    assert!(
        took < timeout * 3,
        "took {took:?} with a {timeout:?} lookup timeout"
    );
    let h = o.authentication_results("mx");
    assert!(h.contains("dkim=temperror"), "{h}");
    assert!(h.contains("spf=temperror"), "{h}");
    assert!(
        h.contains("dmarc=temperror header.from=example.test"),
        "{h}"
    );
    drop(silent);
}
