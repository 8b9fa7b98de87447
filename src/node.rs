//! Assembles a running node from a validated [`Config`]: data directory lock, TLS material,
//! listeners, the control plane and the admin API; then drains everything on shutdown.
//!
//! Order matters: the data directory is locked before anything opens the Raft store (a second
//! process on the same directory gets a clear error, not a corrupted store), and every port is
//! bound before Raft starts, so a port conflict fails the start cleanly.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::admin::AdminApi;
use crate::cluster::{Cluster, ClusterError, NodeInfo};
use crate::config::Config;
use crate::failover::Failover;
use crate::mail::sieve::Outbound;
use crate::mail::srs::Srs;
use crate::mail::{DirectoryRouter, ExpandingAcceptor};
use crate::mailstore::{MailstoreServices, StoreSlot};
use crate::net::{self, Conn, ListenerConfig, Protocol, SessionCtx, Shutdown, TlsMode};
use crate::queue::{Queue, QueueError};
use crate::smtp::{DirectoryPolicy, SmtpServer};
use crate::store::StoreError;
use crate::tls;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("data directory {path} is in use by another mailnode process{pid}: stop it first, or give this node its own node.data_dir")]
    Locked { path: String, pid: String },
    #[error("cannot use data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("admin token file {path}: {reason}")]
    Token { path: String, reason: String },
    #[error("mail queue: {0}")]
    Queue(#[from] QueueError),
    #[error("message store: {0}")]
    Store(#[from] StoreError),
    #[error("mail.srs_secret_file: {0}")]
    Srs(String),
}

/// A started node. Dropping it does not stop it: call [`Node::stop`].
pub struct Node {
    pub cluster: Cluster,
    pub http_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    /// The admin bearer token.
    pub token: String,
    /// The CA that signs this node's certificates (what `mailctl` trusts).
    pub ca_file: PathBuf,
    /// This node's mail queue.
    pub queue: Queue,
    /// The message store while this node serves it.
    pub store: StoreSlot,
    /// The store and its listeners, on a node with a `[mailstore]` section.
    mailstore: Option<Arc<MailstoreServices>>,
    /// The mailstore lease duty, on a node with a `[failover]` section.
    failover: Option<Failover>,
    shutdown: Shutdown,
    tasks: JoinSet<()>,
    grace: Duration,
    _lock: Flock<File>,
}

/// Serves Raft RPC on a mutually authenticated TLS connection.
struct RaftRpc(Cluster);

impl Protocol for RaftRpc {
    async fn serve(&self, conn: Conn, ctx: SessionCtx) {
        tokio::select! {
            r = self.0.serve_rpc_conn(conn) => {
                if let Err(e) = r { tracing::debug!(error = %e, "raft connection ended"); }
            }
            () = ctx.shutdown.triggered() => {}
        }
    }
}

/// Serves the admin API (HTTP/1.1 over TLS).
struct Http(Arc<AdminApi>);

impl Protocol for Http {
    async fn serve(&self, conn: Conn, ctx: SessionCtx) {
        let signal = ctx.shutdown.clone();
        self.0
            .clone()
            .serve_conn(conn, async move { signal.triggered().await })
            .await;
    }
}

fn lock_data_dir(dir: &Path) -> Result<Flock<File>, NodeError> {
    let data_err = |e: std::io::Error| NodeError::DataDir {
        path: dir.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(data_err)?;
    let path = dir.join("mailnode.lock");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .map_err(data_err)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0).map_err(data_err)?;
            writeln!(lock, "{}", std::process::id()).map_err(data_err)?;
            Ok(lock)
        }
        Err((_, _)) => {
            let pid = std::fs::read_to_string(&path)
                .map(|p| format!(" (pid {})", p.trim()))
                .unwrap_or_default();
            Err(NodeError::Locked {
                path: dir.display().to_string(),
                pid,
            })
        }
    }
}

/// Reads the admin token; in dev mode creates it at first start.
fn admin_token(path: &Path, create: bool) -> Result<String, NodeError> {
    let err = |reason: String| NodeError::Token {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(err("is empty: write a long random token into it".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let token: String = (0..32)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect();
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| err(e.to_string()))?;
            writeln!(f, "{token}").map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
            Ok(token)
        }
        Err(e) => Err(err(format!(
            "{e}: create it with a long random token (e.g. `openssl rand -hex 32`)"
        ))),
    }
}

/// The site's SRS keys from `mail.srs_secret_file`; in dev mode the file is created with a
/// random secret at first start. No file configured: no SRS (redirects are kept instead).
fn srs_keys(path: Option<&Path>, create: bool) -> Result<Option<Arc<Srs>>, NodeError> {
    let Some(path) = path else {
        tracing::info!(
            "mail.srs_secret_file is not set: Sieve redirects are kept in INBOX instead"
        );
        return Ok(None);
    };
    if create && !path.exists() {
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| {
                writeln!(f, "{secret}")?;
                f.sync_all()
            });
        if let Err(e) = written {
            return Err(NodeError::Srs(format!(
                "cannot create {}: {e}",
                path.display()
            )));
        }
    }
    Srs::load(path)
        .map(|s| Some(Arc::new(s)))
        .map_err(|e| NodeError::Srs(e.to_string()))
}

/// The mail listeners, bound before anything starts so a busy port fails the start cleanly.
struct MailListeners {
    mx: Option<TcpListener>,
    submission: Option<TcpListener>,
    submissions: Option<TcpListener>,
}

async fn bind_opt(
    addr: Option<SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, NodeError> {
    match addr {
        Some(a) => bind(a, what).await.map(Some),
        None => Ok(None),
    }
}

async fn bind_mail(cfg: &Config) -> Result<MailListeners, NodeError> {
    Ok(MailListeners {
        mx: bind_opt(cfg.mail.mx_listen, "SMTP MX").await?,
        submission: bind_opt(cfg.mail.submission_listen, "submission").await?,
        submissions: bind_opt(cfg.mail.submissions_listen, "submissions").await?,
    })
}

/// Saves the greylisting triplets every minute and once more at shutdown (best effort: a
/// lost minute only greylists a few correspondents again).
fn spawn_greylist_saver(
    filter: Arc<crate::antiube::filter::Filter>,
    shutdown: net::ShutdownSignal,
) {
    tokio::spawn(async move {
        loop {
            let stop = tokio::select! {
                () = shutdown.triggered() => true,
                () = tokio::time::sleep(Duration::from_secs(60)) => false,
            };
            let f = filter.clone();
            match tokio::task::spawn_blocking(move || f.save()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot save the greylisting triplets"),
                Err(e) => tracing::warn!(error = %e, "greylist save task failed"),
            }
            if stop {
                return;
            }
        }
    });
}

/// Spawns a listener task that `/readyz` counts as running until it ends.
fn spawn_counted<F>(tasks: &mut JoinSet<()>, readiness: &mut crate::admin::Readiness, serve: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    readiness.expected += 1;
    let up = readiness.listener();
    tasks.spawn(async move {
        let _up = up;
        serve.await
    });
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, NodeError> {
    crate::net::bind(addr).map_err(|e| NodeError::Bind {
        addr,
        what,
        reason: e.to_string(),
    })
}

impl Node {
    /// Starts a node. In `dev` mode, missing TLS material and the admin token are created.
    pub async fn start(mut cfg: Config, dev: bool) -> Result<Node, NodeError> {
        let data_dir = cfg.node.data_dir.clone();
        let lock = lock_data_dir(&data_dir)?;
        if dev {
            let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
            let pki = tls::ensure_dev_pki(&data_dir.join("tls"), &cfg.node.name, &hosts)?;
            cfg.cluster.ca_file = pki.ca;
            cfg.cluster.cert_file = pki.cert;
            cfg.cluster.key_file = pki.key;
        }
        let token = admin_token(&cfg.http.admin_token_file, dev)?;
        let srs = srs_keys(cfg.mail.srs_secret_file.as_deref(), dev)?;
        crate::metrics::set_enabled(cfg.metrics.enabled);
        crate::metrics::node_info(cfg.node.id, &cfg.node.name);
        crate::metrics::certificate("ca", &cfg.cluster.ca_file);
        crate::metrics::certificate("cluster", &cfg.cluster.cert_file);
        if let Some(cert) = &cfg.http.cert_file {
            crate::metrics::certificate("http", cert);
        }
        let c = &cfg.cluster;
        let raft_server = tls::mtls_server_config(&c.ca_file, &c.cert_file, &c.key_file)?;
        let raft_client = tls::mtls_client_config(&c.ca_file, &c.cert_file, &c.key_file)?;
        let http_tls = match (&cfg.http.cert_file, &cfg.http.key_file) {
            (Some(cert), Some(key)) => tls::server_config(cert, key)?,
            _ => tls::server_config(&c.cert_file, &c.key_file)?,
        };

        let raft_listener = bind(c.listen, "Raft RPC").await?;
        let http_listener = bind(cfg.http.listen, "HTTP admin API").await?;
        let mail_listeners = bind_mail(&cfg).await?;
        let raft_addr = raft_listener.local_addr().map_err(|e| NodeError::Bind {
            addr: c.listen,
            what: "Raft RPC",
            reason: e.to_string(),
        })?;
        let http_addr = http_listener.local_addr().map_err(|e| NodeError::Bind {
            addr: cfg.http.listen,
            what: "HTTP admin API",
            reason: e.to_string(),
        })?;

        let info = NodeInfo {
            name: cfg.node.name.clone(),
            raft_addr: cfg
                .cluster
                .advertise
                .clone()
                .unwrap_or_else(|| raft_addr.to_string()),
            api_addr: cfg
                .http
                .advertise
                .clone()
                .unwrap_or_else(|| http_addr.to_string()),
        };
        let source_ip = Some(c.listen.ip()).filter(|ip| !ip.is_unspecified());
        let cluster = Cluster::start(
            cfg.node.id,
            info,
            &data_dir.join("raft"),
            cfg.raft_settings(),
            raft_client,
            source_ip,
        )
        .await?;
        if c.bootstrap && !cluster.is_initialized().await {
            tracing::info!("initializing a new cluster with this node as its first member");
            cluster.bootstrap().await?;
        }

        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        let raft_cfg = ListenerConfig {
            tls: TlsMode::Implicit(raft_server),
            max_connections: 256,
            max_per_ip: 64,
            idle_timeout: Duration::from_secs(3600),
            ..ListenerConfig::new("raft")
        };
        tasks.spawn(net::serve(
            raft_listener,
            raft_cfg,
            Arc::new(RaftRpc(cluster.clone())),
            shutdown.clone(),
        ));
        let http_cfg = ListenerConfig {
            tls: TlsMode::Implicit(http_tls.clone()),
            max_connections: cfg.http.max_connections,
            max_per_ip: cfg.http.max_per_ip,
            idle_timeout: Duration::from_secs(cfg.http.idle_timeout_secs),
            ..ListenerConfig::new("http")
        };

        // Mail: the queue on the local disk; the store and LMTP where this node serves one.
        // The default group: its virtual IP when configured, else wherever the lease holder's
        // LMTP server listens (a cluster without a VIP, e.g. on one host).
        let lmtp_addr = cfg.mail.lmtp_addr;
        let lmtp_groups = cfg.mail.lmtp_groups.clone();
        let lease = cluster.mailstore();
        let resolver: crate::queue::LmtpResolver = Arc::new(move |group: &str| {
            if group == crate::directory::DEFAULT_MAIL_HOST {
                lmtp_addr.or_else(|| lease.borrow().holder_lmtp())
            } else {
                lmtp_groups.get(group).copied()
            }
        });
        let origin = format!("n{}", cfg.node.id);
        let transport = Queue::default_transport(&cfg.queue, resolver, &origin)?;
        let router = Arc::new(DirectoryRouter {
            cluster: cluster.clone(),
        });
        let queue = Queue::start(cfg.queue.clone(), &data_dir, router, transport).await?;
        let policy = Arc::new(DirectoryPolicy::new(cluster.clone()).with_srs(srs.clone()));
        // Anti-UBE: the replicated policy, put in force here, enforced by the MX and submission.
        let antiube = Arc::new(crate::antiube::PolicyHandle::default());
        let policy_sync =
            crate::mail::policy_sync::spawn(cluster.clone(), antiube.clone(), shutdown.signal());
        let filter = Arc::new(
            crate::antiube::filter::Filter::new(
                antiube.clone(),
                &cfg.smtp.hostname,
                &cfg.node.name,
                &data_dir.join("greylist.db"),
            )
            .map_err(|e| NodeError::DataDir {
                path: data_dir.join("greylist.db").display().to_string(),
                reason: format!("greylisting file: {e}"),
            })?,
        );
        spawn_greylist_saver(filter.clone(), shutdown.signal());
        let acceptor = Arc::new(ExpandingAcceptor {
            cluster: cluster.clone(),
            queue: queue.clone(),
            srs: srs.clone(),
        });
        let mail_cfg = |name: &str, tls: TlsMode| ListenerConfig {
            tls,
            max_connections: cfg.mail.max_connections,
            max_per_ip: cfg.mail.max_per_ip,
            idle_timeout: Duration::from_secs(cfg.mail.idle_timeout_secs),
            ..ListenerConfig::new(name)
        };
        // `/readyz` counts the SMTP listeners that run.
        let mut readiness = crate::admin::Readiness {
            shutdown: Some(shutdown.signal()),
            ..Default::default()
        };
        if let Some(l) = mail_listeners.mx {
            let server = SmtpServer::mx(cfg.smtp.clone(), policy.clone(), acceptor.clone())
                .with_filter(filter.clone());
            let lc = mail_cfg("smtp-mx", TlsMode::StartTls(http_tls.clone()));
            let serve = net::serve(l, lc, Arc::new(server), shutdown.clone());
            spawn_counted(&mut tasks, &mut readiness, serve);
        }
        let submission = SmtpServer::submission(cfg.smtp.clone(), policy.clone(), acceptor.clone())
            .with_filter(filter.clone());
        let limiter = submission.auth_limiter();
        if let Some(l) = mail_listeners.submission {
            let server = SmtpServer::submission(cfg.smtp.clone(), policy.clone(), acceptor.clone())
                .with_filter(filter.clone())
                .with_auth_limiter(limiter.clone());
            let lc = mail_cfg("submission", TlsMode::StartTls(http_tls.clone()));
            let serve = net::serve(l, lc, Arc::new(server), shutdown.clone());
            spawn_counted(&mut tasks, &mut readiness, serve);
        }
        if let Some(l) = mail_listeners.submissions {
            let lc = mail_cfg("submissions", TlsMode::Implicit(http_tls.clone()));
            let server = Arc::new(submission.with_auth_limiter(limiter));
            let serve = net::serve(l, lc, server, shutdown.clone());
            spawn_counted(&mut tasks, &mut readiness, serve);
        }
        // The store and its listeners: served from now on (static), or whenever this node
        // holds the mailstore lease (failover).
        let mailstore = cfg.mailstore.as_ref().map(|_| {
            Arc::new(
                MailstoreServices::new(
                    cluster.clone(),
                    Arc::new(cfg.clone()),
                    http_tls.clone(),
                    policy.clone(),
                )
                .with_outbound(Outbound {
                    queue: queue.clone(),
                    srs: srs.clone(),
                })
                .with_antiube(antiube.clone()),
            )
        });
        let mut failover = None;
        if let (Some(services), Some(ms)) = (&mailstore, &cfg.mailstore) {
            match &cfg.failover {
                None => services.start_now(None).await?,
                Some(fo) => {
                    failover = Some(Failover::start(
                        cluster.clone(),
                        fo.clone(),
                        ms.root.clone(),
                        cfg.node.name.clone(),
                        Some(ms.lmtp_listen),
                        services.clone(),
                        shutdown.signal(),
                    ))
                }
            }
        }
        let store_slot = mailstore.as_ref().map(|m| m.slot()).unwrap_or_default();

        let api = Arc::new(
            AdminApi::new(cluster.clone(), token.clone())
                .with_mail(queue.clone(), store_slot.clone())
                .with_failover(failover.clone())
                .with_readiness(readiness)
                .with_antiube(antiube.clone(), policy_sync),
        );
        tasks.spawn(net::serve(
            http_listener,
            http_cfg,
            Arc::new(Http(api)),
            shutdown.clone(),
        ));

        Ok(Node {
            cluster,
            http_addr,
            raft_addr,
            token,
            ca_file: cfg.cluster.ca_file.clone(),
            queue,
            store: store_slot,
            mailstore,
            failover,
            shutdown,
            tasks,
            grace: Duration::from_secs(cfg.shutdown.grace_secs),
            _lock: lock,
        })
    }

    /// Stops accepting, lets sessions say goodbye within the grace period, then stops Raft.
    pub async fn stop(mut self) {
        self.shutdown.drain(self.grace);
        // A holder fences itself and releases the lease (Raft still runs) so another node
        // takes over at once.
        if let Some(f) = &self.failover {
            f.stopped(self.grace + Duration::from_secs(5)).await;
        }
        if let Some(m) = &self.mailstore {
            m.stop_now(self.grace).await;
        }
        while self.tasks.join_next().await.is_some() {}
        self.queue.shutdown(self.grace).await;
        self.cluster.shutdown().await;
    }
}
