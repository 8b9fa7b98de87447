//! The SMTP delivery agent for remote recipients: MX lookup, then for each MX host and address
//! in order — connect, EHLO (HELO fallback), STARTTLS per policy, one transaction.
//!
//! STARTTLS policy ([`TlsPolicy`]): `opportunistic` uses TLS whenever offered and accepts any
//! certificate; if the handshake itself fails it retries that address once in plaintext (a
//! broken TLS stack must not block mail that would otherwise flow). `verify` requires STARTTLS
//! and a certificate chaining to `tls_ca_file` for the MX host name; otherwise the host is
//! skipped and the recipients deferred. A host that fails before anything was handed over
//! (connection, greeting, EHLO, TLS, a 4xx to MAIL) is skipped for the next one; per-recipient
//! answers are final for this attempt. Never PIPELINING or BDAT (simplicity over round trips).
//!
//! Security note: certificate checks are off only in `opportunistic` mode, which by definition
//! protects against passive eavesdropping only; the verifier still checks handshake signatures.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::client::{transaction, Session};
use super::config::{QueueConfig, TlsPolicy};
use super::mx::{self, MxError};
use super::transport::{BoxFuture, Delivery, DeliveryOutcome, Destination, RcptStatus, Transport};
use super::wire::Capabilities;
use super::QueueError;

/// Delivers [`Destination::Smtp`] batches to the domain's MX hosts.
pub struct SmtpTransport {
    resolver: TokioResolver,
    cfg: QueueConfig,
    tls: Option<Arc<ClientConfig>>,
}

enum HostResult {
    /// The host answered for the recipients: final for this attempt.
    Done(Vec<super::transport::RcptResult>),
    /// Nothing was handed over; try the next address.
    Next(String),
    /// The TLS handshake failed; the connection is gone.
    TlsFailed(String),
}

impl SmtpTransport {
    /// Builds the agent: the DNS resolver and, unless the policy is `none`, the TLS client
    /// configuration (for `verify`, the trust anchors are read from `tls_ca_file` now).
    pub fn new(cfg: &QueueConfig) -> Result<SmtpTransport, QueueError> {
        let resolver = mx::resolver(cfg)?;
        let provider = crate::tls::provider();
        let tls = match cfg.tls {
            TlsPolicy::None => None,
            TlsPolicy::Opportunistic => {
                let verifier = Arc::new(AcceptAnyCert(provider.clone()));
                let c = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| QueueError::Transport(e.to_string()))?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth();
                Some(Arc::new(c))
            }
            TlsPolicy::Verify => {
                let certs = crate::tls::load_certs(&cfg.tls_ca_file)
                    .map_err(|e| QueueError::Transport(format!("queue.tls_ca_file: {e}")))?;
                let mut roots = RootCertStore::empty();
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(QueueError::Transport(format!(
                        "queue.tls_ca_file: no usable CA certificate in {}",
                        cfg.tls_ca_file.display()
                    )));
                }
                let c = ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| QueueError::Transport(e.to_string()))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(c))
            }
        };
        Ok(SmtpTransport {
            resolver,
            cfg: cfg.clone(),
            tls,
        })
    }

    async fn run(&self, d: &Delivery) -> DeliveryOutcome {
        let n = d.recipients.len();
        let Destination::Smtp(domain) = &d.destination else {
            return DeliveryOutcome::all(
                n,
                RcptStatus::Temporary,
                "4.3.5 internal error: SMTP agent given a non-SMTP destination",
                None,
                false,
            );
        };
        let hosts = match mx::lookup(&self.resolver, domain, self.cfg.max_mx_hosts).await {
            Ok(h) => h,
            Err(MxError::Permanent(m)) => {
                return DeliveryOutcome::all(n, RcptStatus::Permanent, &m, None, false)
            }
            Err(MxError::Temporary(m)) => {
                return DeliveryOutcome::all(n, RcptStatus::Temporary, &m, None, true)
            }
        };
        let mut last_err = format!("4.4.1 no MX host of {domain} could be reached");
        let mut last_host = None;
        for host in &hosts {
            for &ip in &host.addrs {
                let mut r = self.try_host(ip, &host.name, d, self.tls.is_some()).await;
                if let (HostResult::TlsFailed(e), TlsPolicy::Opportunistic) = (&r, self.cfg.tls) {
                    tracing::info!(host = %host.name, %ip, error = %e, "queue: STARTTLS failed; retrying in plaintext (opportunistic policy)");
                    r = self.try_host(ip, &host.name, d, false).await;
                }
                match r {
                    HostResult::Done(results) => {
                        return DeliveryOutcome {
                            results,
                            unreachable: false,
                            keyed: false,
                        }
                    }
                    HostResult::Next(e) | HostResult::TlsFailed(e) => {
                        tracing::debug!(host = %host.name, %ip, error = %e, "queue: MX host failed");
                        last_err = e;
                        last_host = Some(host.name.clone());
                    }
                }
            }
        }
        DeliveryOutcome::all(
            n,
            RcptStatus::Temporary,
            &last_err,
            last_host.as_deref(),
            true,
        )
    }

    async fn try_host(&self, ip: IpAddr, name: &str, d: &Delivery, starttls: bool) -> HostResult {
        let addr = SocketAddr::new(ip, self.cfg.smtp_port);
        let connected = Session::connect(
            addr,
            name.to_string(),
            self.cfg.connect_timeout(),
            self.cfg.command_timeout(),
        )
        .await;
        let (mut s, greeting) = match connected {
            Ok(x) => x,
            Err(e) => return HostResult::Next(format!("4.4.1 {e}")),
        };
        if !greeting.is_ok() {
            s.quit().await;
            return HostResult::Next(greeting.one_line());
        }
        let mut caps = match self.hello(&mut s).await {
            Ok(c) => c,
            Err(e) => return HostResult::Next(e),
        };
        let verify = self.cfg.tls == TlsPolicy::Verify;
        if let (true, true, Some(tls)) = (starttls, caps.starttls, &self.tls) {
            match s.command("STARTTLS").await {
                Ok(r) if r.code == 220 => {
                    let server_name = ServerName::try_from(name.to_string())
                        .unwrap_or_else(|_| ServerName::IpAddress(ip.into()));
                    s = match s.upgrade(tls.clone(), server_name).await {
                        Ok(s) => s,
                        Err(e) => return HostResult::TlsFailed(format!("4.7.5 {e}")),
                    };
                    caps = match self.hello(&mut s).await {
                        Ok(c) => c,
                        Err(e) => return HostResult::Next(e),
                    };
                }
                Ok(r) if verify => {
                    s.quit().await;
                    return HostResult::Next(r.one_line());
                }
                Ok(_) => {}
                Err(e) => return HostResult::Next(format!("4.4.2 {e}")),
            }
        }
        if verify && !s.is_tls() {
            s.quit().await;
            return HostResult::Next(format!(
                "4.7.5 {name} does not offer STARTTLS and the TLS policy requires it"
            ));
        }
        let ok = RcptStatus::Relayed {
            dsn_passed: caps.dsn,
        };
        let out = transaction(&mut s, d, &caps, false, ok, self.cfg.data_timeout(), None).await;
        s.quit().await;
        let all_temp = out
            .results
            .iter()
            .all(|r| r.status == RcptStatus::Temporary);
        if out.may_try_elsewhere && all_temp {
            let first = out
                .results
                .first()
                .map(|r| r.detail.clone())
                .unwrap_or_default();
            return HostResult::Next(first);
        }
        HostResult::Done(out.results)
    }

    /// EHLO, falling back to HELO on a 5xx; the error text on failure.
    async fn hello(&self, s: &mut Session) -> Result<Capabilities, String> {
        match s.command(&format!("EHLO {}", self.cfg.hostname)).await {
            Ok(r) if r.is_ok() => Ok(Capabilities::parse(&r)),
            Ok(r) if r.is_permanent() => {
                match s.command(&format!("HELO {}", self.cfg.hostname)).await {
                    Ok(r) if r.is_ok() => Ok(Capabilities::default()),
                    Ok(r) => Err(r.one_line()),
                    Err(e) => Err(format!("4.4.2 {e}")),
                }
            }
            Ok(r) => Err(r.one_line()),
            Err(e) => Err(format!("4.4.2 {e}")),
        }
    }
}

impl Transport for SmtpTransport {
    fn deliver<'a>(&'a self, delivery: &'a Delivery) -> BoxFuture<'a, DeliveryOutcome> {
        Box::pin(self.run(delivery))
    }
}

/// Opportunistic TLS (RFC 7435): any certificate is accepted, the handshake signatures are
/// still verified so the session keys are sound.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
