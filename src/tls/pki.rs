//! The cluster PKI: a private CA, node certificates it signs, and the files they live in.
//!
//! Its job is to mint key material (ECDSA P-256 through rcgen) and to put it on disk safely:
//! private keys are created with mode 0600 from the first byte and appear under their final name
//! only once complete (temporary file, fsync, rename, fsync of the directory). It never reads
//! keys from anywhere but the paths it is given, never logs key material, and never overwrites
//! a CA it did not just create — [`ensure_dev_pki`] reuses what it finds.
//!
//! Security note: the CA key is the cluster's root of trust for node-to-node mutual TLS. Whoever
//! holds it can impersonate any node, so it belongs on the operator's machine or in the node's
//! 0700 data directory, nowhere else.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::{provider, TlsError};

/// How long a node certificate is valid: the CA/Browser Forum's historical 825-day ceiling,
/// long enough that a cluster does not need automated renewal to survive two years.
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(825 * 24 * 3600);

/// How long the cluster CA is valid. Renewing a CA means re-issuing every node certificate, so
/// it outlives them by far.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Backdating of `not_before`, so a node whose clock is a little behind the issuer's still
/// accepts a freshly issued certificate.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// A certificate and its private key, both PEM-encoded.
#[derive(Clone)]
pub struct CertBundle {
    /// The certificate (one `CERTIFICATE` block).
    pub cert_pem: String,
    /// The PKCS#8 private key (one `PRIVATE KEY` block). Never logged: `Debug` hides it.
    pub key_pem: String,
}

/// The cluster CA: a self-signed certificate and its key. Same shape as a node bundle.
pub type CaBundle = CertBundle;

impl std::fmt::Debug for CertBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertBundle")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where [`CertBundle::write_bundle`] put a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundlePaths {
    /// `<dir>/<name>.pem`, mode 0644.
    pub cert: PathBuf,
    /// `<dir>/<name>.key`, mode 0600.
    pub key: PathBuf,
}

impl BundlePaths {
    /// The paths a bundle called `name` has under `dir`, whether or not they exist.
    pub fn new(dir: &Path, name: &str) -> Self {
        BundlePaths {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        }
    }
}

impl CertBundle {
    /// Writes `<dir>/<name>.pem` and `<dir>/<name>.key`, each atomically, key first (so a
    /// certificate on disk always has its key next to it). Existing files are replaced.
    pub fn write_bundle(&self, dir: &Path, name: &str) -> Result<BundlePaths, TlsError> {
        if name.is_empty()
            || name.starts_with('.')
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(TlsError::InvalidName {
                name: name.to_owned(),
                reason: "a bundle name is a plain file stem: letters, digits, '-', '_', '.'",
            });
        }
        let paths = BundlePaths::new(dir, name);
        write_atomic(&paths.key, self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&paths.cert, self.cert_pem.as_bytes(), 0o644)?;
        Ok(paths)
    }

    /// Reads a bundle written by [`CertBundle::write_bundle`].
    pub fn read(paths: &BundlePaths) -> Result<Self, TlsError> {
        Ok(CertBundle {
            cert_pem: super::read_text(&paths.cert)?,
            key_pem: super::read_text(&paths.key)?,
        })
    }
}

/// Creates a self-signed ECDSA P-256 CA named `common_name`, allowed to sign end-entity
/// certificates only (path length 0), valid for [`CA_VALIDITY`].
pub fn generate_ca(common_name: &str) -> Result<CaBundle, TlsError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Mailnode cluster");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key)?;
    Ok(CertBundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a certificate for `node_name`, signed by the CA, usable both as a TLS server and as a
/// TLS client (mutual TLS between nodes). Its subject alternative names are `node_name` and
/// every entry of `hosts` — IP addresses become IP SANs, anything else a DNS SAN — and nothing
/// else: no implicit `localhost`. Valid for [`NODE_CERT_VALIDITY`].
pub fn issue_node_cert(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    node_name: &str,
    hosts: &[String],
) -> Result<CertBundle, TlsError> {
    let (ca_params, ca_key) = load_ca(ca_cert_pem, ca_key_pem)?;
    // rcgen signs with the issuer's distinguished name and key identifier, both of which
    // `from_ca_cert_pem` recovered; re-signing the parameters yields an equivalent issuer.
    let issuer = ca_params.self_signed(&ca_key)?;

    let mut sans = Vec::with_capacity(hosts.len() + 1);
    for name in std::iter::once(node_name).chain(hosts.iter().map(String::as_str)) {
        let san = san_for(name)?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Mailnode cluster");
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_CERT_VALIDITY);
    let cert = params.signed_by(&key, &issuer, &ca_key)?;
    Ok(CertBundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The files of the dev node's PKI, as returned by [`ensure_dev_pki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevPki {
    /// The dev CA certificate (`ca.pem`): what `mailctl` trusts.
    pub ca: PathBuf,
    /// The dev CA key (`ca.key`).
    pub ca_key: PathBuf,
    /// The node certificate (`node.pem`), served by every TLS listener.
    pub cert: PathBuf,
    /// The node key (`node.key`).
    pub key: PathBuf,
    /// Whether this call created any of the files (false when everything was reused).
    pub created: bool,
}

/// For `mailnode --dev`: makes sure `dir` holds a CA (`ca.pem`, `ca.key`) and a node certificate
/// signed by it (`node.pem`, `node.key`). Files already there are reused, so a second start
/// serves the same certificate and `mailctl` keeps trusting it; a new CA always gets a new node
/// certificate. A bundle with one of its two files missing is an error, never silently replaced.
pub fn ensure_dev_pki(dir: &Path, node_name: &str, hosts: &[String]) -> Result<DevPki, TlsError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    let ca_paths = BundlePaths::new(dir, "ca");
    let node_paths = BundlePaths::new(dir, "node");

    let mut created = false;
    let ca = if bundle_present(&ca_paths, dir)? {
        CertBundle::read(&ca_paths)?
    } else {
        let ca = generate_ca(&format!("Mailnode dev CA ({node_name})"))?;
        ca.write_bundle(dir, "ca")?;
        created = true;
        ca
    };
    if created || !bundle_present(&node_paths, dir)? {
        issue_node_cert(&ca.cert_pem, &ca.key_pem, node_name, hosts)?.write_bundle(dir, "node")?;
        created = true;
    }
    Ok(DevPki {
        ca: ca_paths.cert,
        ca_key: ca_paths.key,
        cert: node_paths.cert,
        key: node_paths.key,
        created,
    })
}

/// Whether both files of a bundle exist; an error when only one does.
fn bundle_present(paths: &BundlePaths, dir: &Path) -> Result<bool, TlsError> {
    let exists = |p: &Path| {
        p.try_exists().map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    match (exists(&paths.cert)?, exists(&paths.key)?) {
        (true, true) => Ok(true),
        (false, false) => Ok(false),
        (cert, _) => {
            let (present, missing) = if cert {
                (&paths.cert, &paths.key)
            } else {
                (&paths.key, &paths.cert)
            };
            Err(TlsError::HalfBundle {
                present: present.clone(),
                missing: missing.clone(),
                dir: dir.to_owned(),
            })
        }
    }
}

/// Parses the CA and checks that the key belongs to the certificate: a mismatched pair would
/// sign certificates that no node accepts, which is far harder to diagnose later.
fn load_ca(ca_cert_pem: &str, ca_key_pem: &str) -> Result<(CertificateParams, KeyPair), TlsError> {
    let params = CertificateParams::from_ca_cert_pem(ca_cert_pem)?;
    let key = KeyPair::from_pem(ca_key_pem)?;
    let cert_der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
        .map_err(|e| TlsError::InvalidCa(format!("certificate is not valid PEM: {e}")))?;
    let key_der = PrivateKeyDer::from_pem_slice(ca_key_pem.as_bytes())
        .map_err(|e| TlsError::InvalidCa(format!("key is not valid PEM: {e}")))?;
    rustls::sign::CertifiedKey::from_der(vec![cert_der], key_der, &provider()).map_err(|e| {
        TlsError::InvalidCa(format!("the key does not belong to the certificate ({e})"))
    })?;
    if !matches!(params.is_ca, IsCa::Ca(_)) {
        return Err(TlsError::InvalidCa(
            "the certificate is not a CA (no basicConstraints CA:TRUE)".into(),
        ));
    }
    Ok((params, key))
}

/// The SAN for one host: an IP SAN for an address, otherwise a DNS SAN for a syntactically
/// valid DNS name (checked here so a typo fails at issue time, not at the first handshake).
fn san_for(host: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = IpAddr::from_str(host) {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || TlsError::InvalidName {
        name: host.to_owned(),
        reason: "neither an IP address nor a valid DNS name",
    };
    rustls_pki_types::DnsName::try_from(host).map_err(|_| invalid())?;
    Ok(SanType::DnsName(host.try_into().map_err(|_| invalid())?))
}

/// Sets a random positive serial number and a validity window starting slightly in the past.
fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(CLOCK_SKEW);
    params.not_after = epoch + now + validity;
    let mut serial: [u8; 16] = rand::random();
    // Positive and without a leading zero byte, so the DER INTEGER is exactly 16 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(SerialNumber::from(serial.to_vec()));
}

/// Writes `data` to `path` so that readers see either the old file or the complete new one, and
/// so that the file never exists with looser permissions than `mode`.
fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    let wrap = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp-{:016x}",
        file_name.unwrap_or_default(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn node_cert_has_the_requested_sans_usages_and_validity() {
        let ca = generate_ca("test CA").unwrap();
        let hosts = vec!["10.0.0.7".to_owned(), "mail.example.org".to_owned()];
        let node = issue_node_cert(&ca.cert_pem, &ca.key_pem, "node-a", &hosts).unwrap();
        let params = CertificateParams::from_ca_cert_pem(&node.cert_pem).unwrap();
        assert_eq!(
            params.subject_alt_names,
            vec![
                SanType::DnsName("node-a".try_into().unwrap()),
                SanType::IpAddress("10.0.0.7".parse().unwrap()),
                SanType::DnsName("mail.example.org".try_into().unwrap()),
            ]
        );
        assert_eq!(
            params.extended_key_usages,
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth
            ]
        );
        let days = (params.not_after - params.not_before).whole_days();
        assert!((825..=826).contains(&days), "validity {days} days");
    }

    #[test]
    fn bad_inputs_are_named() {
        let ca = generate_ca("test CA").unwrap();
        let other = generate_ca("other CA").unwrap();
        let err = issue_node_cert(&ca.cert_pem, &other.key_pem, "n", &[]).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        let err = issue_node_cert(&ca.cert_pem, &ca.key_pem, "bad name!", &[]).unwrap_err();
        assert!(err.to_string().contains("bad name!"), "{err}");
        let leaf = issue_node_cert(&ca.cert_pem, &ca.key_pem, "n", &[]).unwrap();
        assert!(issue_node_cert(&leaf.cert_pem, &leaf.key_pem, "m", &[]).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(ca.write_bundle(dir.path(), "../evil").is_err());
        assert!(!format!("{ca:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn bundles_are_written_with_private_key_modes() {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca("test CA").unwrap();
        let paths = ca.write_bundle(dir.path(), "ca").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&paths.cert) & 0o077 & !0o044, 0);
        assert_eq!(CertBundle::read(&paths).unwrap().key_pem, ca.key_pem);
        // Replacing leaves no temporary files behind.
        ca.write_bundle(dir.path(), "ca").unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn dev_pki_is_created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("tls");
        let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let first = ensure_dev_pki(&pki_dir, "dev", &hosts).unwrap();
        assert!(first.created);
        let cert = fs::read(&first.cert).unwrap();
        let second = ensure_dev_pki(&pki_dir, "dev", &hosts).unwrap();
        assert!(!second.created);
        assert_eq!(fs::read(&second.cert).unwrap(), cert);

        fs::remove_file(&first.key).unwrap();
        let again = ensure_dev_pki(&pki_dir, "dev", &hosts).unwrap_err();
        assert!(again.to_string().contains("node.key"), "{again}");
        fs::remove_file(&first.cert).unwrap();
        assert!(ensure_dev_pki(&pki_dir, "dev", &hosts).unwrap().created);
    }
}
