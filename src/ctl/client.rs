//! The admin API client: one HTTP/1.1 request per TLS connection, JSON in and out.
//!
//! A fresh connection per request keeps failure handling simple: a request that was never sent
//! can be reported as "unreachable", and nothing is retried behind the operator's back — a
//! retried POST could apply a change twice. The handful of requests a command makes cost a
//! handshake each, which is nothing next to a Raft commit.
//!
//! Security note: the TLS configuration trusts only the discovered CA file
//! ([`crate::tls::client_config_trusting`]) and the server name checked is the host the
//! operator gave, so the bearer token is sent only to a node holding a certificate from the
//! cluster CA for that name.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Serialize;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::discover::{ServerAddr, Target};
use super::CtlError;

/// How long TCP connect and the TLS handshake may take, each.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may take from sending to the end of the answer: long enough for an
/// import batch of thousands of users to be hashed and committed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A client of one node's admin API.
pub struct Client {
    /// Where the node is; its host is the TLS server name.
    server: ServerAddr,
    /// `Bearer <token>`, marked sensitive so hyper never logs it.
    auth: HeaderValue,
    /// TLS trusting only the cluster CA.
    tls: TlsConnector,
    /// The name the server's certificate must hold.
    server_name: ServerName<'static>,
    /// The CA file, named in certificate errors.
    ca: std::path::PathBuf,
}

impl Client {
    /// A client for the discovered target. Fails (exit 2) when the CA file is unusable.
    pub fn new(target: Target) -> Result<Client, CtlError> {
        let config =
            crate::tls::client_config_trusting(&target.ca).map_err(|e| CtlError::Usage {
                message: e.to_string(),
                hint: Some("pass the cluster's ca.pem with --ca-file or MAILCTL_CA".into()),
            })?;
        let server_name = ServerName::try_from(target.server.host.clone()).map_err(|_| {
            CtlError::usage(format!(
                "{} is neither an IP address nor a valid DNS name",
                target.server.host
            ))
        })?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", target.token))
            .map_err(|_| CtlError::usage("the admin token cannot go into an HTTP header"))?;
        auth.set_sensitive(true);
        Ok(Client {
            server: target.server,
            auth,
            tls: TlsConnector::from(config),
            server_name,
            ca: target.ca,
        })
    }

    /// The same credentials and CA, for another member's API (`HOST:PORT` as the cluster
    /// lists it).
    pub fn for_server(&self, addr: &str) -> Result<Client, CtlError> {
        let server = ServerAddr::parse(addr).map_err(CtlError::usage)?;
        let server_name = ServerName::try_from(server.host.clone())
            .map_err(|_| CtlError::usage(format!("{addr}: not a valid server name")))?;
        Ok(Client {
            server,
            auth: self.auth.clone(),
            tls: self.tls.clone(),
            server_name,
            ca: self.ca.clone(),
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Bytes, CtlError> {
        self.send(Method::GET, path, None).await
    }

    /// `GET path`, answer parsed as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, CtlError> {
        parse_json(&self.get(path).await?)
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Bytes, CtlError> {
        self.send(Method::DELETE, path, None).await
    }

    /// `DELETE path` with a JSON body (list member removal).
    pub async fn delete_with<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Bytes, CtlError> {
        self.send(Method::DELETE, path, Some(encode(body)?)).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Bytes, CtlError> {
        self.send(Method::POST, path, Some(encode(body)?)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Bytes, CtlError> {
        self.send(Method::PUT, path, Some(encode(body)?)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Bytes, CtlError> {
        self.send(Method::PATCH, path, Some(encode(body)?)).await
    }

    /// Sends one request on a new connection and returns the body of a 2xx answer; any other
    /// answer becomes the matching [`CtlError`].
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, CtlError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(HOST, self.server.authority())
            .header(AUTHORIZATION, self.auth.clone())
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, concat!("mailctl/", env!("CARGO_PKG_VERSION")));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CtlError::usage(format!("cannot build a request for {path}: {e}")))?;

        let mut sender = self.connect().await?;
        let exchange = async {
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                return Err(self.lost(&method, &format!("the connection failed: {}", chain(&e))))
            }
            Err(_) => {
                return Err(self.lost(
                    &method,
                    &format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
                ))
            }
        };
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(status, &body))
        }
    }

    /// TCP connect, TLS handshake and HTTP/1.1 handshake; the connection is driven by a task
    /// that ends when the request is done.
    async fn connect(
        &self,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, CtlError> {
        let addr = self.server.authority();
        let unreachable = |message: String, hint: &str| CtlError::Unreachable {
            message,
            hint: Some(hint.to_owned()),
        };
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.server.host.as_str(), self.server.port)),
        )
        .await
        .map_err(|_| {
            unreachable(
                format!(
                    "cannot connect to {addr}: no answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
                "is the node up and the address right? (--server / MAILCTL_SERVER)",
            )
        })?
        .map_err(|e| {
            unreachable(
                format!("cannot connect to {addr}: {e}"),
                "is mailnode running there? check --server / MAILCTL_SERVER",
            )
        })?;
        let _ = tcp.set_nodelay(true);

        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.tls.connect(self.server_name.clone(), tcp),
        )
        .await
        .map_err(|_| {
            unreachable(
                format!("TLS handshake with {addr} timed out"),
                "is this the node's admin API port?",
            )
        })?
        .map_err(|e| self.tls_error(&addr, e))?;

        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| {
                unreachable(
                    format!("cannot talk HTTP to {addr}: {}", chain(&e)),
                    "is this the node's admin API port?",
                )
            })?;
        tokio::spawn(async move {
            // Errors surface through the request future; nothing to add here.
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// A failed TLS handshake, with a hint that tells certificate trouble from the rest.
    fn tls_error(&self, addr: &str, e: std::io::Error) -> CtlError {
        let rustls_error = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let hint = match rustls_error {
            Some(rustls::Error::InvalidCertificate(_)) => format!(
                "the server's certificate is not from the CA in {} or does not name {}: pass \
                 the cluster's ca.pem with --ca-file, and a --server name its certificate holds",
                self.ca.display(),
                self.server.host
            ),
            _ => "is this the node's admin API port, serving HTTPS?".to_owned(),
        };
        CtlError::Unreachable {
            message: format!("TLS handshake with {addr} failed: {e}"),
            hint: Some(hint),
        }
    }

    /// The request was (perhaps) sent but no answer came: a change may or may not be applied.
    fn lost(&self, method: &Method, what: &str) -> CtlError {
        let hint = if method == Method::GET {
            "is --server the node's admin API (not its Raft port)? is the node healthy?".to_owned()
        } else {
            "the change may or may not have been applied: check before retrying".to_owned()
        };
        CtlError::Unreachable {
            message: format!("{}: {what}", self.server),
            hint: Some(hint),
        }
    }
}

/// An error with its causes, `outer: inner: innermost`: hyper's own messages ("connection
/// error") say little without the TLS alert or I/O error underneath.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn encode<T: Serialize + ?Sized>(body: &T) -> Result<Vec<u8>, CtlError> {
    serde_json::to_vec(body)
        .map_err(|e| CtlError::Failed(format!("cannot encode the request: {e}")))
}

/// Parses a 2xx answer's body as JSON.
pub fn parse_json(body: &[u8]) -> Result<Value, CtlError> {
    serde_json::from_slice(body).map_err(|e| {
        CtlError::Failed(format!(
            "the server's answer is not the JSON expected ({e}); are mailctl and mailnode the \
             same version?"
        ))
    })
}

/// The error for a non-2xx answer: the server's `{"error", "hint"}` when it sent one. 503 means
/// the node cannot reach a Raft leader, which for the operator is "cluster unreachable".
pub fn status_error(status: StatusCode, body: &[u8]) -> CtlError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let hint = field("hint");
    let message = field("error").unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let default = match status {
            StatusCode::UNAUTHORIZED => "the server refused the admin token".to_owned(),
            StatusCode::SERVICE_UNAVAILABLE => "the cluster has no leader".to_owned(),
            _ => format!("the server answered {status}"),
        };
        if text.is_empty() || parsed.is_some() {
            default
        } else {
            let short: String = text.chars().take(200).collect();
            format!("{default}: {short}")
        }
    });
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return CtlError::Unreachable {
            message,
            hint: hint.or_else(|| {
                Some("a majority of the nodes must be up and reachable; run `mailctl status` on each".into())
            }),
        };
    }
    let hint = hint.or_else(|| {
        (status == StatusCode::UNAUTHORIZED)
            .then(|| "check --token-file / MAILCTL_TOKEN".to_owned())
    });
    CtlError::Server {
        status: status.as_u16(),
        message,
        hint,
    }
}

/// Percent-encodes one path segment or query value: everything but RFC 3986 unreserved
/// characters and `@` (harmless in a path and what every address holds) is escaped, so an
/// address with `/`, `?`, `#`, `%` or `+` stays one segment.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `path` with `?domain=D` appended when a domain filter is given.
pub fn with_domain(path: &str, domain: Option<&str>) -> String {
    match domain {
        Some(d) => format!("{path}?domain={}", seg(d)),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded_except_at() {
        assert_eq!(seg("alice@example.org"), "alice@example.org");
        assert_eq!(seg("a+tag@x.org"), "a%2Btag@x.org");
        assert_eq!(seg("a/b?c#d%e f"), "a%2Fb%3Fc%23d%25e%20f");
        assert_eq!(seg("é"), "%C3%A9");
        assert_eq!(seg("~_.-"), "~_.-");
        assert_eq!(
            with_domain("/api/users", Some("x.org")),
            "/api/users?domain=x.org"
        );
        assert_eq!(with_domain("/api/users", None), "/api/users");
    }

    #[test]
    fn server_errors_keep_message_and_hint() {
        let e = status_error(
            StatusCode::CONFLICT,
            br#"{"error":"user alice@x.org exists","hint":"use mailctl user set"}"#,
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "user alice@x.org exists");
        assert_eq!(e.hint(), Some("use mailctl user set"));
    }

    #[test]
    fn no_leader_is_unreachable() {
        let e = status_error(StatusCode::SERVICE_UNAVAILABLE, br#"{"error":"no leader"}"#);
        assert_eq!(e.exit_code(), 3);
        assert_eq!(e.to_string(), "no leader");
        let e = status_error(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(e.exit_code(), 3);
        assert!(e.hint().is_some());
    }

    #[test]
    fn an_unknown_outcome_fails_with_the_servers_hint() {
        // The node forwarded the change and lost the leader's answer (HTTP 504): the operation
        // failed (exit 1), the cluster is not unreachable (exit 3).
        let e = status_error(
            StatusCode::GATEWAY_TIMEOUT,
            br#"{"error":"node 1 stopped leading; the change may or may not have been applied","hint":"read it back before retrying"}"#,
        );
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("may or may not"));
        assert_eq!(e.hint(), Some("read it back before retrying"));
    }

    #[test]
    fn answers_without_error_json_still_say_something() {
        let e = status_error(StatusCode::UNAUTHORIZED, b"");
        assert_eq!(e.to_string(), "the server refused the admin token");
        assert!(e.hint().unwrap().contains("MAILCTL_TOKEN"));
        let e = status_error(StatusCode::NOT_FOUND, b"not here\n");
        assert_eq!(e.to_string(), "the server answered 404 Not Found: not here");
        let e = status_error(StatusCode::BAD_REQUEST, br#"{"detail":1}"#);
        assert_eq!(e.to_string(), "the server answered 400 Bad Request");
    }
}
