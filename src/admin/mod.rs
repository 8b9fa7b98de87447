//! The admin HTTP API that `mailctl` talks to, plus `/healthz`, `/readyz`,
//! `/readyz/mailstore` and `/metrics`.
//!
//! The health and metrics routes answer without the token: load balancers and Prometheus
//! poll them, and they disclose no addresses or user data (docs/METRICS.md says what each
//! answers).
//!
//! JSON over HTTPS on the node's HTTP listener; every `/api/` route requires the bearer token,
//! compared in constant time. Handlers validate input, turn it into directory commands and hand
//! them to the [`Cluster`]; they never write storage themselves. Plaintext passwords are hashed
//! here (argon2id, on the blocking pool) so the Raft log only ever carries hashes. Errors are
//! `{"error": "...", "hint": "..."}` with a status that says whose fault it was.

pub mod mail;
mod policy;
mod routes;
mod sieve;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::cluster::{Cluster, ClusterError};

/// Largest request body: a 5,000-user import batch is about 1.5 MB.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The admin API of one node.
pub struct AdminApi {
    pub cluster: Cluster,
    /// The bearer token operators present.
    token: String,
    /// This node's mail queue (`/api/queue`), once the node runs one.
    pub queue: Option<crate::queue::Queue>,
    /// The message store while this node serves it (`/api/store`).
    pub store: crate::mailstore::StoreSlot,
    /// This node's mailstore lease duty, when it has one (for `/api/status`).
    pub failover: Option<crate::failover::Failover>,
    /// What `/readyz` checks besides Raft.
    pub readiness: Readiness,
    /// The anti-UBE policy in force on this node and its installer's status (`/api/policy`).
    pub antiube: Option<(
        Arc<crate::antiube::PolicyHandle>,
        Arc<crate::mail::policy_sync::SyncStatus>,
    )>,
}

/// What `/readyz` checks besides the cluster: the node's SMTP listeners run, and it is not
/// shutting down (a draining node must leave the load balancer's pool first).
#[derive(Clone, Default)]
pub struct Readiness {
    /// SMTP listeners (MX, submission) serving now; each listener task holds one count.
    pub running: Arc<AtomicUsize>,
    /// How many the configuration starts.
    pub expected: usize,
    /// The node's shutdown signal.
    pub shutdown: Option<crate::net::ShutdownSignal>,
}

impl Readiness {
    /// Counts a running listener until the guard drops (the listener task ended).
    pub fn listener(&self) -> ListenerUp {
        self.running.fetch_add(1, Ordering::SeqCst);
        ListenerUp(self.running.clone())
    }
}

/// Held by a listener task while it serves.
pub struct ListenerUp(Arc<AtomicUsize>);

impl Drop for ListenerUp {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An API error: HTTP status, message, and optionally what to do about it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub hint: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            hint: None,
        }
    }
    pub fn bad_request(error: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error)
    }
    pub fn not_found(error: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error)
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let status = match &e {
            ClusterError::Refused(_) | ClusterError::DuplicateId(_) => StatusCode::CONFLICT,
            ClusterError::AlreadyInitialized => StatusCode::CONFLICT,
            ClusterError::NoLeader(_) | ClusterError::NotInitialized => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ClusterError::Store { .. } | ClusterError::Raft(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // The node forwarded the change and the leader did not answer in time (it lost
            // its majority or its leadership): a gateway timeout, not "no leader" (503, which
            // mailctl reports as an unreachable cluster) nor a conflict (409, "exists").
            ClusterError::OutcomeUnknown(_) => {
                return ApiError::new(StatusCode::GATEWAY_TIMEOUT, e.to_string()).with_hint(
                    "read it back (`mailctl ... show`, or GET with ?consistent=1) before retrying: a retry may apply it twice",
                );
            }
        };
        ApiError::new(status, e.to_string())
    }
}

pub type ApiResult = Result<Response<Full<Bytes>>, ApiError>;

pub fn json<T: Serialize>(status: StatusCode, value: &T) -> ApiResult {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts"))
}

fn error_response(e: ApiError) -> Response<Full<Bytes>> {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        hint: Option<&'a str>,
    }
    let body = serde_json::to_vec(&Body {
        error: &e.error,
        hint: e.hint.as_deref(),
    })
    .unwrap_or_default();
    Response::builder()
        .status(e.status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(body.into()))
        .expect("static response parts")
}

fn readiness(r: Result<(), String>) -> Response<Full<Bytes>> {
    match r {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from timings.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, b) in expected.iter().enumerate() {
        diff |= (given.get(i).copied().unwrap_or(0) ^ b) as usize;
    }
    diff == 0
}

impl AdminApi {
    pub fn new(cluster: Cluster, token: String) -> Self {
        AdminApi {
            cluster,
            token,
            queue: None,
            store: Default::default(),
            failover: None,
            readiness: Readiness::default(),
            antiube: None,
        }
    }

    /// Reports the anti-UBE policy this node has in force.
    pub fn with_antiube(
        mut self,
        handle: Arc<crate::antiube::PolicyHandle>,
        status: Arc<crate::mail::policy_sync::SyncStatus>,
    ) -> Self {
        self.antiube = Some((handle, status));
        self
    }

    /// Adds what `/readyz` checks besides Raft.
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// `/readyz`: ready for SMTP and webmail traffic — a member of an initialized cluster
    /// that knows its leader, with its SMTP listeners running, and not shutting down.
    fn ready(&self) -> Result<(), String> {
        if self
            .readiness
            .shutdown
            .as_ref()
            .is_some_and(|s| s.is_triggered())
        {
            return Err("shutting down".into());
        }
        let f = self.cluster.figures();
        if !f.member {
            return Err("not a member of an initialized cluster".into());
        }
        if f.leader.is_none() {
            return Err("no Raft leader known".into());
        }
        let running = self.readiness.running.load(Ordering::SeqCst);
        if running < self.readiness.expected {
            return Err(format!(
                "{running} of {} SMTP listeners running",
                self.readiness.expected
            ));
        }
        Ok(())
    }

    /// `/readyz/mailstore`: this node serves the mailstore now (IMAP, POP3, LMTP).
    fn mailstore_ready(&self) -> Result<(), String> {
        match &self.failover {
            Some(f) => {
                let role = f.role();
                if role.state == "active" {
                    Ok(())
                } else {
                    Err(format!("mailstore role is {}", role.state))
                }
            }
            None if self.current_store().is_some() => Ok(()),
            None => Err("this node does not serve the mailstore".into()),
        }
    }

    /// `/metrics`: the Prometheus text exposition; 404 when metrics are disabled.
    fn metrics(&self) -> Response<Full<Bytes>> {
        let sources = crate::metrics::scrape::Sources {
            cluster: &self.cluster,
            failover: self.failover.as_ref(),
            queue: self.queue.as_ref(),
            store: self.current_store(),
        };
        match crate::metrics::render(&sources) {
            Some(body) => Response::builder()
                .status(StatusCode::OK)
                .header("content-type", crate::metrics::CONTENT_TYPE)
                .body(Full::new(Bytes::from(body)))
                .expect("static response parts"),
            None => error_response(ApiError::not_found(
                "metrics are disabled on this node ([metrics] enabled = false)",
            )),
        }
    }

    /// Adds the mail services the API operates on.
    pub fn with_mail(
        mut self,
        queue: crate::queue::Queue,
        store: crate::mailstore::StoreSlot,
    ) -> Self {
        self.queue = Some(queue);
        self.store = store;
        self
    }

    /// Adds this node's mailstore lease duty.
    pub fn with_failover(mut self, failover: Option<crate::failover::Failover>) -> Self {
        self.failover = failover;
        self
    }

    /// The store this node serves now.
    pub fn current_store(&self) -> Option<crate::store::Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves HTTP/1.1 on one connection until the client closes it or `shutdown` resolves.
    pub async fn serve_conn<S, F>(self: Arc<Self>, io: S, shutdown: F)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        F: std::future::Future<Output = ()>,
    {
        let api = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(req).await) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(hyper_util::rt::TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(error = %e, "admin connection ended"); } }
            _ = shutdown => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        match path.as_str() {
            "/healthz" => return text(StatusCode::OK, "ok\n"),
            "/readyz" => return readiness(self.ready()),
            "/readyz/mailstore" => return readiness(self.mailstore_ready()),
            "/metrics" => return self.metrics(),
            _ => {}
        }
        if !path.starts_with("/api/") {
            return error_response(ApiError::not_found(format!("no such page: {path}")));
        }
        let authorized = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| token_matches(t.trim().as_bytes(), self.token.as_bytes()));
        if !authorized {
            return error_response(
                ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong admin token")
                    .with_hint("pass --token-file (or MAILCTL_TOKEN) with the node's admin token"),
            );
        }
        let method = req.method().clone();
        let query = req.uri().query().unwrap_or("").to_string();
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error_response(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("cannot read the request body: {e}"),
                ))
            }
        };
        let segments: Vec<String> = path["/api/".len()..]
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let call = routes::Call {
            method: &method,
            segs: &segs,
            query: &query,
            body: &body,
        };
        match routes::route(self, call).await {
            Ok(r) => r,
            Err(e) => error_response(e),
        }
    }
}

/// Decodes `%XX` escapes in a path segment; invalid escapes are kept as they are.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `key` from a URL query string.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| percent_decode(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
        assert!(!token_matches(b"abcd", b"abc"));
        assert!(!token_matches(b"", b"abc"));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("alice%40example.org"), "alice@example.org");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%41"), "A");
        assert_eq!(
            query_param("domain=example.org&x=1", "domain").as_deref(),
            Some("example.org")
        );
    }
}
