//! DKIM (RFC 6376) and DMARC (RFC 7489) results of a received message, for the scoring engine
//! and the `Authentication-Results` field (RFC 8601).
//!
//! Job: [`AuthVerifier::verify`] checks the message's DKIM signatures (RSA-SHA256 and
//! Ed25519-SHA256; RSA-SHA1 is refused as RFC 8301 requires), through the `mail-auth` crate over a hickory resolver that asks the policy's
//! DNS servers), then evaluates the DMARC policy of the RFC 5322.From domain with those results
//! and the SPF result the envelope stage already computed (SPF is not evaluated twice; only a
//! caller that did not evaluate it gets an evaluation here, with [`super::spf`]). The
//! [`AuthOutcome`] carries one entry per verified signature, the DMARC result with the policy
//! the domain asks for, and renders the `Authentication-Results` field value.
//!
//! Never: decide what happens to the message (the filter scores or refuses on the outcome),
//! send DKIM or DMARC failure reports, or trust a header field that claims earlier results.
//!
//! Security note: signatures, keys, DMARC records and every DNS answer are attacker-controlled.
//! Work is bounded: at most [`MAX_SIGNATURES`] signatures are verified (the rest are counted
//! and ignored), each with one key lookup (report requests `r=y` and third-party `atps=` are
//! not followed) bounded by the DNS timeout; body hashes are computed once per distinct
//! canonicalization and hash (signatures with `l=` are refused, so at most four passes over
//! the body); RSA keys are at most 8192 bits; the DMARC evaluation (at most eight record
//! lookups per domain in its tree walk) is bounded by the DNS timeout as a whole. A lookup
//! that times out, or is answered SERVFAIL or REFUSED, gives `temperror`, never `pass` or
//! `fail`. Values written into the header field are quoted so that no input can end it or
//! add a result.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::proto::op::ResponseCode;
use mail_auth::common::crypto::Algorithm;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput,
};

use super::policy::{parse_server, DnsSettings};
use super::spf::{self, HickoryDns, ResolverSetupError, SpfOptions, SpfResult};

/// The most signatures verified per message (each costs a DNS lookup and a public-key
/// operation). Later ones are ignored and counted in [`AuthOutcome::ignored_signatures`].
pub const MAX_SIGNATURES: usize = 5;

/// The longest `reason` written into the header field, in bytes.
const MAX_REASON: usize = 200;

/// Building an [`AuthVerifier`] failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// An entry of `dns.servers` is not `ip` or `ip:port`.
    #[error("{0}")]
    Server(String),
    /// The resolver could not be built (no usable `/etc/resolv.conf`, for one).
    #[error(transparent)]
    Resolver(#[from] ResolverSetupError),
}

/// What the SMTP transaction knows about the message being checked.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The client's address (for the SPF evaluation when `spf` is `None`).
    pub ip: IpAddr,
    /// The HELO/EHLO name: the SPF identity of the null reverse-path.
    pub helo: &'a str,
    /// The MAIL FROM address without angle brackets; `None` for `<>`.
    pub mail_from: Option<&'a str>,
    /// The SPF result of the MAIL FROM identity and the domain it was evaluated for (the
    /// sender's domain, or the HELO name for `<>`); `None` when the envelope stage did not
    /// evaluate SPF, in which case [`AuthVerifier::verify`] does, since DMARC needs it.
    pub spf: Option<(SpfResult, &'a str)>,
    /// This host's name: the authserv-id recorded in [`AuthOutcome::authserv_id`], and `%{r}`
    /// of an SPF evaluation made here.
    pub hostname: &'a str,
}

/// The result of one DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimSig {
    /// The signing domain (`d=`); empty when the signature could not be parsed.
    pub domain: String,
    /// The selector (`s=`); empty when the signature could not be parsed.
    pub selector: String,
    /// `pass`, `fail`, `neutral`, `temperror`, `permerror` or `none` (RFC 8601 section 2.7.1).
    pub result: &'static str,
    /// Why it did not pass, in words for the log and the header field.
    pub reason: Option<String>,
}

/// The policy a DMARC domain asks receivers to apply to failing mail (`p=`, or `sp=` / `np=`
/// for subdomains; one level lower in test mode `t=y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    /// `p=none`, or no policy (no record, or the evaluation did not finish).
    None,
    /// `p=quarantine`: treat as suspicious.
    Quarantine,
    /// `p=reject`: refuse.
    Reject,
}

impl DmarcPolicy {
    /// The policy as written in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

/// The DMARC evaluation of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcOutcome {
    /// `pass`, `fail`, `none`, `temperror` or `permerror`.
    pub result: &'static str,
    /// The RFC 5322.From domain (A-label form); empty when the message has no single From
    /// domain (DMARC does not apply then).
    pub domain: String,
    /// The policy the domain asks for (meaningful with `fail`).
    pub policy: DmarcPolicy,
    /// Why it did not pass, in words for the log.
    pub reason: Option<String>,
}

/// Everything [`AuthVerifier::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOutcome {
    /// One entry per signature looked at, in header order (well-formed signatures first), at
    /// most [`MAX_SIGNATURES`] well-formed and as many malformed ones.
    pub dkim: Vec<DkimSig>,
    /// Signatures beyond the bound, not looked at.
    pub ignored_signatures: usize,
    /// The SPF result DMARC used (the caller's, or the one evaluated here).
    pub spf: SpfResult,
    /// The MAIL FROM address (`None` for `<>`).
    pub mail_from: Option<String>,
    /// The HELO name.
    pub helo: String,
    /// The DMARC result.
    pub dmarc: DmarcOutcome,
    /// The host name given in [`AuthInput::hostname`].
    pub authserv_id: String,
}

/// Verifies DKIM and evaluates DMARC over the policy's DNS servers. Cheap to clone; build one
/// per policy version.
#[derive(Clone)]
pub struct AuthVerifier {
    /// mail-auth over our resolver (hickory caches keys and DMARC records across messages).
    auth: MessageAuthenticator,
    /// For the SPF evaluation of a caller that did not evaluate SPF itself.
    spf_dns: HickoryDns,
    /// The policy's DNS timeout: the bound of each key lookup and of the DMARC evaluation.
    timeout: Duration,
    /// Signatures verified per message.
    max_signatures: usize,
}

impl fmt::Debug for AuthVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthVerifier")
            .field("timeout", &self.timeout)
            .field("max_signatures", &self.max_signatures)
            .finish_non_exhaustive()
    }
}

impl AuthVerifier {
    /// A verifier using the policy's DNS servers and timeout (`/etc/resolv.conf` when no
    /// servers are named).
    pub fn new(dns: &DnsSettings) -> Result<Self, AuthSetupError> {
        let servers = dns
            .servers
            .iter()
            .map(|s| parse_server(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AuthSetupError::Server)?;
        let timeout = Duration::from_millis(dns.timeout_ms);
        Ok(Self::with_dns(&HickoryDns::with_servers(
            &servers, timeout,
        )?))
    }

    /// A verifier sharing `dns`'s resolver (and so its cache) and timeout, for a caller that
    /// already built one from the same DNS settings.
    pub fn with_dns(dns: &HickoryDns) -> Self {
        AuthVerifier {
            auth: MessageAuthenticator(dns.resolver().clone()),
            spf_dns: dns.clone(),
            timeout: dns.timeout(),
            max_signatures: MAX_SIGNATURES,
        }
    }

    /// Verifies at most `n` signatures per message instead of [`MAX_SIGNATURES`].
    pub fn with_max_signatures(mut self, n: usize) -> Self {
        self.max_signatures = n;
        self
    }

    /// Checks `message` (header and body as received, CRLF line ends). Takes at most one DNS
    /// timeout per verified signature, plus one for DMARC (plus two for SPF when the input
    /// carries no SPF result).
    pub async fn verify(&self, message: &[u8], input: AuthInput<'_>) -> AuthOutcome {
        let (spf_result, spf_domain) = match input.spf {
            Some((r, d)) => (r, d.to_string()),
            None => self.evaluate_spf(&input).await,
        };
        let mut out = AuthOutcome {
            dkim: Vec::new(),
            ignored_signatures: 0,
            spf: spf_result,
            mail_from: input
                .mail_from
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            helo: input.helo.to_string(),
            dmarc: DmarcOutcome {
                result: "none",
                domain: String::new(),
                policy: DmarcPolicy::None,
                reason: None,
            },
            authserv_id: input.hostname.to_string(),
        };
        let Some(msg) = AuthenticatedMessage::parse(message) else {
            out.dmarc.reason = Some("the message has no header fields".into());
            return out;
        };

        // One message per verified signature, so that each gets its own time budget (a slow
        // key server cannot starve the signatures after it) and mail-auth looks up nothing
        // but the key.
        let base = AuthenticatedMessage {
            headers: msg.headers.clone(),
            from: msg.from.clone(),
            raw_message: msg.raw_message,
            body_offset: msg.body_offset,
            body_hashes: msg.body_hashes.clone(),
            ..Default::default()
        };
        let singles: Vec<AuthenticatedMessage<'_>> = msg
            .dkim_headers
            .iter()
            .take(self.max_signatures)
            .map(|h| {
                let mut h = h.clone();
                h.header.r = false;
                h.header.atps = None;
                h.header.atpsh = None;
                let mut m = base.clone();
                m.dkim_headers = vec![h];
                m
            })
            .collect();
        out.ignored_signatures = msg.dkim_headers.len() - singles.len();

        let mut outputs: Vec<DkimOutput<'_>> = Vec::with_capacity(singles.len());
        for single in &singles {
            let Some(sig) = single.dkim_headers.first().map(|h| &h.header) else {
                continue;
            };
            if sig.a == Algorithm::RsaSha1 {
                // RFC 8301 section 3.1: verifiers must not consider rsa-sha1 signatures valid
                // (mail-auth would verify them); no lookup either.
                out.dkim.push(DkimSig {
                    domain: sig.d.clone(),
                    selector: sig.s.clone(),
                    result: "permerror",
                    reason: Some("rsa-sha1 signatures are not accepted (RFC 8301)".into()),
                });
                outputs.push(
                    DkimOutput::perm_err(mail_auth::Error::Dkim(DkimError::UnsupportedAlgorithm))
                        .with_signature(sig),
                );
                continue;
            }
            let found = tokio::time::timeout(self.timeout, self.auth.verify_dkim(single)).await;
            let output = match found {
                Ok(v) => v
                    .into_iter()
                    .find(|o| o.signature().is_some())
                    .unwrap_or_else(|| {
                        DkimOutput::neutral(mail_auth::Error::ParseError).with_signature(sig)
                    }),
                Err(_) => DkimOutput::temp_err(resolver_error(format!(
                    "no key within {} ms",
                    self.timeout.as_millis()
                )))
                .with_signature(sig),
            };
            let (result, reason) = dkim_result(output.result());
            out.dkim.push(DkimSig {
                domain: sig.d.clone(),
                selector: sig.s.clone(),
                result,
                reason,
            });
            // DMARC sees the same class of result as the header field.
            outputs.push(if result == "temperror" {
                match output.result() {
                    DkimResult::TempError(_) => output,
                    DkimResult::PermError(e) => DkimOutput::temp_err(e.clone()).with_signature(sig),
                    _ => DkimOutput::temp_err(resolver_error(String::new())).with_signature(sig),
                }
            } else {
                output
            });
        }

        // Malformed signatures cost no lookup; they are reported (as many as verified ones).
        let mut malformed = msg
            .errors
            .iter()
            .filter(|e| e.name.eq_ignore_ascii_case(b"DKIM-Signature"));
        for e in malformed.by_ref().take(self.max_signatures) {
            out.dkim.push(DkimSig {
                domain: String::new(),
                selector: String::new(),
                result: "neutral",
                reason: Some(format!("malformed signature: {}", e.header)),
            });
        }
        out.ignored_signatures += malformed.count();

        out.dmarc = self.dmarc(&msg, &outputs, &spf_domain, spf_result).await;
        out
    }

    /// The SPF result of the MAIL FROM identity, evaluated here, and the domain it is for.
    async fn evaluate_spf(&self, input: &AuthInput<'_>) -> (SpfResult, String) {
        let mail_from = input.mail_from.unwrap_or("");
        let domain = if mail_from.is_empty() {
            input.helo
        } else {
            mail_from.rsplit_once('@').map_or(mail_from, |(_, d)| d)
        };
        let opts = SpfOptions {
            receiver: input.hostname.to_string(),
            ..SpfOptions::default()
        };
        let check = spf::check_mail_from(&self.spf_dns, &opts, input.ip, input.helo, mail_from);
        let result = match tokio::time::timeout(self.timeout * 2, check).await {
            Ok(o) => o.result,
            Err(_) => SpfResult::TempError,
        };
        (result, domain.to_string())
    }

    /// DMARC of the From domain, bounded by the DNS timeout as a whole.
    async fn dmarc(
        &self,
        msg: &AuthenticatedMessage<'_>,
        dkim: &[DkimOutput<'_>],
        mail_from_domain: &str,
        spf_result: SpfResult,
    ) -> DmarcOutcome {
        let spf_output =
            SpfOutput::new(mail_from_domain.to_string()).with_result(spf_for_dmarc(spf_result));
        let evaluation = async {
            let d = self
                .auth
                .verify_dmarc(DmarcParameters::new(
                    msg,
                    dkim,
                    mail_from_domain,
                    &spf_output,
                ))
                .await;
            let policy = match d.policy() {
                Policy::Reject => DmarcPolicy::Reject,
                Policy::Quarantine => DmarcPolicy::Quarantine,
                Policy::None | Policy::Unspecified => DmarcPolicy::None,
            };
            let (result, reason) = match d.result() {
                DmarcResult::Pass => ("pass", None),
                DmarcResult::Fail(_) => (
                    "fail",
                    Some(format!(
                        "neither DKIM nor SPF passed aligned with {}",
                        d.domain()
                    )),
                ),
                DmarcResult::TempError(e) => ("temperror", Some(e.to_string())),
                DmarcResult::PermError(e) => ("permerror", Some(e.to_string())),
                DmarcResult::None => ("none", None),
            };
            DmarcOutcome {
                result,
                domain: d.domain().to_string(),
                policy,
                reason,
            }
        };
        match tokio::time::timeout(self.timeout, evaluation).await {
            Ok(o) => o,
            Err(_) => DmarcOutcome {
                result: "temperror",
                domain: from_domain(msg),
                policy: DmarcPolicy::None,
                reason: Some(format!(
                    "DMARC evaluation did not finish within {} ms",
                    self.timeout.as_millis()
                )),
            },
        }
    }
}

/// The From domain of a message, for a DMARC evaluation that did not finish.
fn from_domain(msg: &AuthenticatedMessage<'_>) -> String {
    msg.from
        .first()
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

fn resolver_error(why: String) -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(why))
}

fn spf_for_dmarc(r: SpfResult) -> mail_auth::SpfResult {
    match r {
        SpfResult::None => mail_auth::SpfResult::None,
        SpfResult::Neutral => mail_auth::SpfResult::Neutral,
        SpfResult::Pass => mail_auth::SpfResult::Pass,
        SpfResult::Fail => mail_auth::SpfResult::Fail,
        SpfResult::SoftFail => mail_auth::SpfResult::SoftFail,
        SpfResult::TempError => mail_auth::SpfResult::TempError,
        SpfResult::PermError => mail_auth::SpfResult::PermError,
    }
}

/// A signature's RFC 8601 result and reason. mail-auth calls a body hash mismatch "neutral";
/// RFC 6376 section 6.1.3 makes it a verification failure. "No record" with an RCODE other
/// than NXDOMAIN or NOERROR is a DNS failure, not a missing key (hickory 0.26 reports SERVFAIL
/// and REFUSED as resolver errors, which mail-auth already makes `temperror`; this keeps it so
/// should a resolver report them as "no records").
fn dkim_result(r: &DkimResult) -> (&'static str, Option<String>) {
    use mail_auth::{DnsError, Error};
    match r {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            ("fail", Some("body hash did not verify".into()))
        }
        DkimResult::Neutral(e) => ("neutral", Some(e.to_string())),
        DkimResult::Fail(e) => ("fail", Some(e.to_string())),
        DkimResult::PermError(e @ Error::Dns(DnsError::RecordNotFound(code)))
            if !matches!(code, ResponseCode::NXDomain | ResponseCode::NoError) =>
        {
            ("temperror", Some(e.to_string()))
        }
        DkimResult::PermError(e) => ("permerror", Some(e.to_string())),
        DkimResult::TempError(e) => ("temperror", Some(e.to_string())),
        DkimResult::None => ("none", None),
    }
}

impl AuthOutcome {
    /// The `Authentication-Results` field value (RFC 8601), folded with CRLF + TAB, without
    /// the field name and final CRLF: `authserv_id; dkim=...; spf=...; dmarc=...`.
    pub fn authentication_results(&self, authserv_id: &str) -> String {
        let mut s = value(authserv_id);
        if self.dkim.is_empty() {
            s.push_str(";\r\n\tdkim=none");
        }
        for d in &self.dkim {
            s.push_str(";\r\n\tdkim=");
            s.push_str(d.result);
            if let Some(r) = &d.reason {
                s.push_str(" reason=");
                s.push_str(&quoted(r));
            }
            if !d.domain.is_empty() {
                s.push_str(" header.d=");
                s.push_str(&value(&d.domain));
            }
            if !d.selector.is_empty() {
                s.push_str(" header.s=");
                s.push_str(&value(&d.selector));
            }
        }
        s.push_str(";\r\n\tspf=");
        s.push_str(self.spf.as_str());
        match &self.mail_from {
            Some(m) => {
                s.push_str(" smtp.mailfrom=");
                s.push_str(&address(m));
            }
            None if !self.helo.is_empty() => {
                s.push_str(" smtp.helo=");
                s.push_str(&value(&self.helo));
            }
            None => {}
        }
        s.push_str(";\r\n\tdmarc=");
        s.push_str(self.dmarc.result);
        if matches!(self.dmarc.result, "pass" | "fail") {
            s.push_str(" (p=");
            s.push_str(self.dmarc.policy.as_str());
            s.push(')');
        }
        if !self.dmarc.domain.is_empty() {
            s.push_str(" header.from=");
            s.push_str(&value(&self.dmarc.domain));
        }
        s
    }
}

/// RFC 2045 `token` characters.
fn token_char(c: char) -> bool {
    c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// `value` (RFC 2045): the text as a token when it is one, else a quoted-string.
fn value(v: &str) -> String {
    if !v.is_empty() && v.chars().all(token_char) {
        v.to_string()
    } else {
        quoted(v)
    }
}

/// `local-part@domain` bare when both are plain (dot-atom local part, token domain), else a
/// quoted-string.
fn address(a: &str) -> String {
    let plain = a.rsplit_once('@').is_some_and(|(l, d)| {
        !l.is_empty()
            && !l.starts_with('.')
            && !l.ends_with('.')
            && !l.contains("..")
            && l.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
            && !d.is_empty()
            && d.chars().all(token_char)
    });
    if plain {
        a.to_string()
    } else {
        quoted(a)
    }
}

/// A quoted-string (RFC 5322): `"` and `\` escaped, control characters (CR and LF among them)
/// turned into spaces, at most [`MAX_REASON`] bytes of text.
fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len().min(MAX_REASON) + 2);
    s.push('"');
    let mut n = 0;
    for c in v.chars() {
        n += c.len_utf8();
        if n > MAX_REASON {
            break;
        }
        match c {
            '"' | '\\' => {
                s.push('\\');
                s.push(c);
            }
            c if c.is_control() => s.push(' '),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn outcome() -> AuthOutcome {
        AuthOutcome {
            dkim: vec![
                DkimSig {
                    domain: "example.test".into(),
                    selector: "sel".into(),
                    result: "pass",
                    reason: None,
                },
                DkimSig {
                    domain: "list.test".into(),
                    selector: "s2023".into(),
                    result: "fail",
                    reason: Some("body hash did not verify".into()),
                },
            ],
            ignored_signatures: 0,
            spf: SpfResult::SoftFail,
            mail_from: Some("bounce+x=y@list.test".into()),
            helo: "mx.list.test".into(),
            dmarc: DmarcOutcome {
                result: "pass",
                domain: "example.test".into(),
                policy: DmarcPolicy::Reject,
                reason: None,
            },
            authserv_id: "mx.mailnode.test".into(),
        }
    }

    #[test]
    fn header_lists_every_method_with_its_properties() {
        assert_eq!(
            outcome().authentication_results("mx.mailnode.test"),
            "mx.mailnode.test;\r\n\
             \tdkim=pass header.d=example.test header.s=sel;\r\n\
             \tdkim=fail reason=\"body hash did not verify\" header.d=list.test header.s=s2023;\r\n\
             \tspf=softfail smtp.mailfrom=bounce+x=y@list.test;\r\n\
             \tdmarc=pass (p=reject) header.from=example.test"
        );
    }

    #[test]
    fn header_without_signatures_null_sender_and_no_dmarc() {
        let mut o = outcome();
        o.dkim.clear();
        o.mail_from = None;
        o.spf = SpfResult::None;
        o.dmarc = DmarcOutcome {
            result: "none",
            domain: String::new(),
            policy: DmarcPolicy::None,
            reason: None,
        };
        assert_eq!(
            o.authentication_results("mx"),
            "mx;\r\n\tdkim=none;\r\n\tspf=none smtp.helo=mx.list.test;\r\n\tdmarc=none"
        );
    }

    #[test]
    fn hostile_values_cannot_end_the_field_or_add_results() {
        let mut o = outcome();
        o.dkim[0].domain = "evil.test; dkim=pass".into();
        o.dkim[0].selector = "a\r\nX-Injected: 1".into();
        o.dkim[1].reason = Some("bad \"key\" \\ here\r\n".into());
        o.mail_from = Some("\"odd local\"@x.test".into());
        o.dmarc.domain = "ex(ample).test".into();
        let h = o.authentication_results("mx host");
        assert!(!h.contains("\r\nX-"), "{h}");
        assert_eq!(h.matches("\r\n").count(), 4, "{h}");
        assert!(h.starts_with("\"mx host\";"), "{h}");
        assert!(h.contains("header.d=\"evil.test; dkim=pass\""), "{h}");
        assert!(h.contains("header.s=\"a  X-Injected: 1\""), "{h}");
        assert!(h.contains("reason=\"bad \\\"key\\\" \\\\ here  \""), "{h}");
        assert!(
            h.contains("smtp.mailfrom=\"\\\"odd local\\\"@x.test\""),
            "{h}"
        );
        assert!(h.contains("header.from=\"ex(ample).test\""), "{h}");
        let long = quoted(&"é".repeat(500));
        assert!(long.len() <= MAX_REASON + 2, "{}", long.len());
    }

    #[test]
    fn dkim_results_follow_rfc_8601() {
        use mail_auth::{DnsError, Error};
        let r = |e| dkim_result(&e).0;
        assert_eq!(r(DkimResult::Pass), "pass");
        assert_eq!(
            r(DkimResult::Neutral(Error::Dkim(
                DkimError::FailedBodyHashMatch
            ))),
            "fail"
        );
        assert_eq!(
            r(DkimResult::Neutral(Error::Dkim(
                DkimError::SignatureExpired
            ))),
            "neutral"
        );
        for (code, want) in [
            (ResponseCode::NXDomain, "permerror"),
            (ResponseCode::NoError, "permerror"),
            (ResponseCode::ServFail, "temperror"),
            (ResponseCode::Refused, "temperror"),
        ] {
            assert_eq!(
                r(DkimResult::PermError(Error::Dns(DnsError::RecordNotFound(
                    code
                )))),
                want,
                "{code:?}"
            );
        }
        assert_eq!(
            r(DkimResult::TempError(resolver_error("timeout".into()))),
            "temperror"
        );
    }

    fn settings(server: SocketAddr) -> DnsSettings {
        DnsSettings {
            servers: vec![server.to_string()],
            timeout_ms: 200,
        }
    }

    /// A UDP port on 127.0.91.9 with nothing behind it: no answer ever comes.
    fn closed_port() -> SocketAddr {
        let s = std::net::UdpSocket::bind("127.0.91.9:0").unwrap();
        s.local_addr().unwrap()
    }

    fn input(spf: Option<(SpfResult, &str)>) -> AuthInput<'_> {
        AuthInput {
            ip: "127.0.91.20".parse().unwrap(),
            helo: "client.test",
            mail_from: Some("a@example.test"),
            spf,
            hostname: "mx.test",
        }
    }

    #[tokio::test]
    async fn signatures_beyond_the_bound_are_ignored_and_dns_failures_are_temperror() {
        let v = AuthVerifier::new(&settings(closed_port())).unwrap();
        let mut m = String::new();
        for i in 0..7 {
            m.push_str(&format!(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d{i}.test; s=s; \
                 h=from; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=AAAA\r\n"
            ));
        }
        m.push_str("DKIM-Signature: v=1; a=rsa-sha256; d=; garbage\r\n");
        m.push_str("From: a@example.test\r\nSubject: x\r\n\r\n");
        let started = std::time::Instant::now();
        let out = v
            .verify(m.as_bytes(), input(Some((SpfResult::Pass, "example.test"))))
            .await;
        // Five key lookups and one DMARC evaluation, each at most 200 ms.
        assert!(
            started.elapsed() < Duration::from_millis(6 * 200 + 500),
            "{:?}",
            started.elapsed()
        );
        let verified: Vec<_> = out.dkim.iter().filter(|d| !d.domain.is_empty()).collect();
        assert_eq!(verified.len(), MAX_SIGNATURES, "{out:?}");
        assert_eq!(out.ignored_signatures, 7 - MAX_SIGNATURES, "{out:?}");
        assert_eq!(verified[0].domain, "d0.test");
        assert!(verified.iter().all(|d| d.result == "temperror"), "{out:?}");
        let bad: Vec<_> = out.dkim.iter().filter(|d| d.domain.is_empty()).collect();
        assert_eq!(bad.len(), 1, "{out:?}");
        assert_eq!(bad[0].result, "neutral");
        assert_eq!(out.dmarc.result, "temperror", "{out:?}");
        assert_eq!(out.dmarc.domain, "example.test");
    }

    #[tokio::test]
    async fn rsa_sha1_is_refused_without_a_lookup() {
        let v = AuthVerifier::new(&settings(closed_port())).unwrap();
        let m = "DKIM-Signature: v=1; a=rsa-sha1; c=relaxed/relaxed; d=example.test; s=s; \
                 h=from; bh=2jmj7l5rSw0yVb/vlWAYkK/YBwk=; b=AAAA\r\n\
                 From: a@example.test\r\n\r\n";
        let started = std::time::Instant::now();
        let out = v
            .verify(m.as_bytes(), input(Some((SpfResult::Fail, "example.test"))))
            .await;
        assert_eq!(out.dkim.len(), 1, "{out:?}");
        assert_eq!(out.dkim[0].result, "permerror", "{out:?}");
        assert_eq!(out.dkim[0].domain, "example.test");
        // Only the DMARC lookup waited for the silent server.
        assert!(
            started.elapsed() < Duration::from_millis(2 * 200),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn unparsable_message_and_bad_settings() {
        let v = AuthVerifier::new(&settings(closed_port())).unwrap();
        let out = v
            .verify(b"", input(Some((SpfResult::None, "example.test"))))
            .await;
        assert!(out.dkim.is_empty());
        assert_eq!(out.dmarc.result, "none");
        assert!(out.authentication_results("mx").contains("dkim=none"));
        let e = AuthVerifier::new(&DnsSettings {
            servers: vec!["dns.example".into()],
            timeout_ms: 1000,
        })
        .unwrap_err();
        assert!(e.to_string().contains("dns.servers"), "{e}");
    }

    /// The SMTP session runs on a multi-threaded runtime: verification must be `Send`.
    #[tokio::test]
    async fn verification_future_is_send() {
        fn send<T: Send>(_: &T) {}
        let v = AuthVerifier::new(&settings(closed_port())).unwrap();
        send(&v.verify(b"From: a@b.test\r\n\r\n", input(None)));
    }
}
