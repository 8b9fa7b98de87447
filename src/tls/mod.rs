//! Cluster PKI and rustls configurations.
//!
//! Its job: mint the cluster CA and node certificates (submodule `pki`), load PEM files, and build the
//! four rustls configurations the node uses — a plain server config for SMTP/IMAP/POP3/HTTPS
//! listeners, a mutual-TLS server and client pair for node-to-node traffic (Raft RPC), and a
//! client config for `mailctl` that trusts only the cluster's own CA. It never does network I/O,
//! and it never relies on a process-wide default crypto provider: every config is built with
//! rustls' ring provider explicitly, so no other crate can change what we negotiate.
//!
//! Security note: mutual-TLS configs trust *only* the given CA — never the system roots — and
//! require a client certificate that chains to it; a certificate from any other CA, or none at
//! all, fails the handshake. Key material is never logged (errors name files, not contents).

mod pki;

pub use pki::{
    ensure_dev_pki, generate_ca, issue_node_cert, BundlePaths, CaBundle, CertBundle, DevPki,
    CA_VALIDITY, NODE_CERT_VALIDITY,
};

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Everything that can go wrong building TLS material; each message names the file involved and,
/// where there is one, the operator's next step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source} — {}", path.display(), read_hint(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file or directory could not be written.
    #[error("cannot write {}: {source} — check that the directory exists and is writable by mailnode", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file expected to hold PEM does not parse.
    #[error("{} is not a valid PEM file ({detail}) — expected the output of `mailctl cluster init`", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the PEM parser said.
        detail: String,
    },
    /// A certificate file holds no `CERTIFICATE` block.
    #[error("{} holds no certificate — expected a PEM `BEGIN CERTIFICATE` block", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A key file holds no private key block.
    #[error("{} holds no private key — expected a PEM `BEGIN PRIVATE KEY` block", path.display())]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },
    /// rustls refused the certificate or key (wrong algorithm, key not matching the certificate).
    #[error("cannot use certificate {} with key {}: {source} — make sure the key belongs to the certificate", cert.display(), key.display())]
    CertKey {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        source: rustls::Error,
    },
    /// A CA certificate could not be used as a trust anchor.
    #[error("cannot trust the CA in {}: {detail}", path.display())]
    TrustAnchor {
        /// The CA file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// The CA handed to [`issue_node_cert`] is unusable.
    #[error("invalid cluster CA: {0}")]
    InvalidCa(String),
    /// A name cannot go into a certificate or a file name.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// One file of a certificate/key pair exists without the other.
    #[error("{} exists but {} is missing — restore it, or remove {} to start over", present.display(), missing.display(), dir.display())]
    HalfBundle {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
        /// The directory to clear to regenerate everything.
        dir: PathBuf,
    },
    /// Certificate generation failed.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused to build a configuration.
    #[error("cannot build TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn read_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => {
            "run `mailctl cluster init` to create the cluster certificates, or fix the path in the configuration"
        }
        io::ErrorKind::PermissionDenied => {
            "check the file's owner and mode: the mailnode user must be able to read it"
        }
        _ => "check the file and the disk holding it",
    }
}

/// The crypto provider behind every config here: ring, chosen explicitly.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn read_text(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Loads every certificate of a PEM file, leaf first as written. Fails if there is none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_bytes(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// When the first certificate of a PEM file expires (Unix seconds), for the expiry metric.
pub fn not_after(path: &Path) -> Result<i64, TlsError> {
    let der = load_certs(path)?.remove(0);
    let params = rcgen::CertificateParams::from_ca_cert_der(&der).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        detail: e.to_string(),
    })?;
    Ok(params.not_after.unix_timestamp())
}

/// Loads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file. Warns when the file is
/// readable by group or others, since the key is only as secret as its file.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_bytes(path)?;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "private key file is readable by group or others; run `chmod 600` on it"
            );
        }
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoPrivateKey {
            path: path.to_owned(),
        },
        e => TlsError::Pem {
            path: path.to_owned(),
            detail: e.to_string(),
        },
    })
}

/// A root store holding exactly the certificates of `ca_path`.
fn load_roots(ca_path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca_path)? {
        roots.add(cert).map_err(|e| TlsError::TrustAnchor {
            path: ca_path.to_owned(),
            detail: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn cert_and_key(
    cert_path: &Path,
    key_path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    Ok((load_certs(cert_path)?, load_private_key(key_path)?))
}

fn cert_key_error(cert_path: &Path, key_path: &Path) -> impl FnOnce(rustls::Error) -> TlsError {
    let (cert, key) = (cert_path.to_owned(), key_path.to_owned());
    move |source| TlsError::CertKey { cert, key, source }
}

/// A server config without client authentication, for the mail and HTTPS listeners.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let (certs, key) = cert_and_key(cert_path, key_path)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(cert_key_error(cert_path, key_path))?;
    Ok(Arc::new(config))
}

/// A server config for node-to-node traffic: the client must present a certificate chaining to
/// the CA in `ca_path`, or the handshake fails.
pub fn mtls_server_config(
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let roots = Arc::new(load_roots(ca_path)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::TrustAnchor {
            path: ca_path.to_owned(),
            detail: e.to_string(),
        })?;
    let (certs, key) = cert_and_key(cert_path, key_path)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(cert_key_error(cert_path, key_path))?;
    Ok(Arc::new(config))
}

/// The client side of node-to-node traffic: trusts only the CA in `ca_path` and presents the
/// node's own certificate.
pub fn mtls_client_config(
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca_path)?;
    let (certs, key) = cert_and_key(cert_path, key_path)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(cert_key_error(cert_path, key_path))?;
    Ok(Arc::new(config))
}

/// A client config trusting only the certificates in `ca_path` (the cluster CA, or a server's
/// self-signed certificate) and presenting none: what `mailctl` uses against the admin API.
pub fn client_config_trusting(ca_path: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca_path)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    struct Pki {
        _dir: tempfile::TempDir,
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
        other_cert: PathBuf,
        other_key: PathBuf,
    }

    /// A CA with one node certificate, plus a node certificate from an unrelated CA.
    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = generate_ca("cluster").unwrap();
        let ca_paths = ca.write_bundle(dir.path(), "ca").unwrap();
        let hosts = ["127.0.0.1".to_owned()];
        let node = issue_node_cert(&ca.cert_pem, &ca.key_pem, "node-a", &hosts).unwrap();
        let node_paths = node.write_bundle(dir.path(), "node").unwrap();
        let other = generate_ca("intruder").unwrap();
        let intruder = issue_node_cert(&other.cert_pem, &other.key_pem, "node-x", &[]).unwrap();
        let other_paths = intruder.write_bundle(dir.path(), "intruder").unwrap();
        Pki {
            _dir: dir,
            ca: ca_paths.cert,
            cert: node_paths.cert,
            key: node_paths.key,
            other_cert: other_paths.cert,
            other_key: other_paths.key,
        }
    }

    /// Runs a handshake over an in-memory pipe and exchanges one byte each way. Returns the
    /// server's and the client's outcome.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> (io::Result<()>, io::Result<()>) {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let server = async move {
            let mut tls = TlsAcceptor::from(server).accept(s).await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            tls.write_all(&b).await?;
            tls.flush().await
        };
        let client = async move {
            let mut tls = TlsConnector::from(client).connect(name, c).await?;
            tls.write_all(b"x").await?;
            tls.flush().await?;
            let mut b = [0u8; 1];
            tls.read_exact(&mut b).await?;
            Ok(())
        };
        let fut = async { tokio::join!(server, client) };
        tokio::time::timeout(std::time::Duration::from_secs(10), fut)
            .await
            .expect("handshake hung")
    }

    #[tokio::test]
    async fn mutual_tls_handshake_succeeds_between_nodes() {
        let p = pki();
        let server = mtls_server_config(&p.ca, &p.cert, &p.key).unwrap();
        let client = mtls_client_config(&p.ca, &p.cert, &p.key).unwrap();
        let (s, c) = handshake(server.clone(), client.clone(), "node-a").await;
        s.unwrap();
        c.unwrap();
        // IP SANs work too.
        let (s, c) = handshake(server, client, "127.0.0.1").await;
        s.unwrap();
        c.unwrap();
    }

    #[tokio::test]
    async fn client_cert_from_another_ca_is_refused() {
        let p = pki();
        let server = mtls_server_config(&p.ca, &p.cert, &p.key).unwrap();
        let client = mtls_client_config(&p.ca, &p.other_cert, &p.other_key).unwrap();
        let (s, c) = handshake(server, client, "node-a").await;
        let err = s.unwrap_err().to_string();
        assert!(
            err.contains("UnknownIssuer") || err.contains("issuer"),
            "{err}"
        );
        assert!(c.is_err());
    }

    #[tokio::test]
    async fn client_without_cert_is_refused() {
        let p = pki();
        let server = mtls_server_config(&p.ca, &p.cert, &p.key).unwrap();
        let client = client_config_trusting(&p.ca).unwrap();
        let (s, c) = handshake(server, client, "node-a").await;
        assert!(s.is_err());
        assert!(c.is_err());
    }

    #[tokio::test]
    async fn plain_server_config_serves_clients_trusting_the_ca_only() {
        let p = pki();
        let server = server_config(&p.cert, &p.key).unwrap();
        let (s, c) = handshake(
            server.clone(),
            client_config_trusting(&p.ca).unwrap(),
            "node-a",
        )
        .await;
        s.unwrap();
        c.unwrap();
        // A client trusting another CA refuses the server.
        let (_, c) = handshake(
            server,
            client_config_trusting(&p.other_cert).unwrap(),
            "node-a",
        )
        .await;
        assert!(c.is_err());
    }

    #[test]
    fn errors_name_the_file_and_the_next_step() {
        let p = pki();
        let missing = p.ca.with_file_name("node-missing.key");
        let err = server_config(&p.cert, &missing).unwrap_err().to_string();
        assert!(err.contains("node-missing.key"), "{err}");
        assert!(err.contains("mailctl cluster init"), "{err}");

        let err = server_config(&p.cert, &p.cert).unwrap_err().to_string();
        assert!(err.contains("no private key"), "{err}");
        let err = server_config(&p.key, &p.key).unwrap_err().to_string();
        assert!(err.contains("no certificate"), "{err}");
        let err = server_config(&p.cert, &p.other_key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("key belongs"), "{err}");
    }
}
