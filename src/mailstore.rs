//! The mailstore's services on the node that serves it: the message store, LMTP, IMAP, POP3
//! and ManageSieve.
//!
//! Started once at node start when the node serves the store statically (a `[mailstore]`
//! section without `[failover]`: dev mode, single-node sites), or by the failover module each
//! time this node becomes the active mailstore, and stopped when it fences itself. Stopping
//! drains every session of these listeners (IMAP `* BYE`, POP3 `-ERR`, LMTP `421`,
//! ManageSieve `BYE`) within the grace, aborts the rest and closes the store, so nothing
//! touches the volume afterwards.
//! The admin API reads the current store through [`StoreSlot`].
//!
//! Security note: listeners are bound only while serving, so a standby node refuses
//! connections rather than answering from a volume it does not hold.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::cluster::Cluster;
use crate::config::Config;
use crate::failover::{BoxFuture, Services};
use crate::imap::ImapServer;
use crate::mail::sieve::Outbound;
use crate::mail::StoreDelivery;
use crate::managesieve::ManageSieveServer;
use crate::net::{
    self, Conn, ListenerConfig, Protocol, RejectReason, SessionCtx, Shutdown, TlsMode,
};
use crate::node::NodeError;
use crate::pop3::Pop3Server;
use crate::smtp::{DirectoryPolicy, LmtpServer};
use crate::store::{Store, StoreConfig, WriteFence};

/// The store this node serves right now, if any (shared with the admin API).
pub type StoreSlot = Arc<RwLock<Option<Store>>>;

/// The store and its protocol listeners.
pub struct MailstoreServices {
    cluster: Cluster,
    config: Arc<Config>,
    tls: Arc<rustls::ServerConfig>,
    policy: Arc<DirectoryPolicy>,
    slot: StoreSlot,
    running: tokio::sync::Mutex<Option<(Shutdown, JoinSet<()>)>>,
    /// The node's queue and SRS keys, for Sieve redirects and vacation replies.
    outbound: Option<Outbound>,
    /// The anti-UBE policy in force (its Junk folder).
    antiube: Option<Arc<crate::antiube::PolicyHandle>>,
}

async fn bind(
    addr: Option<SocketAddr>,
    what: &'static str,
) -> Result<Option<TcpListener>, NodeError> {
    let Some(addr) = addr else { return Ok(None) };
    crate::net::bind(addr)
        .map(Some)
        .map_err(|e| NodeError::Bind {
            addr,
            what,
            reason: e.to_string(),
        })
}

impl MailstoreServices {
    pub fn new(
        cluster: Cluster,
        config: Arc<Config>,
        tls: Arc<rustls::ServerConfig>,
        policy: Arc<DirectoryPolicy>,
    ) -> MailstoreServices {
        MailstoreServices {
            cluster,
            config,
            tls,
            policy,
            slot: Arc::new(RwLock::new(None)),
            running: tokio::sync::Mutex::new(None),
            outbound: None,
            antiube: None,
        }
    }

    /// Lets users' Sieve scripts send (redirect, vacation) through this node's queue.
    pub fn with_outbound(mut self, outbound: Outbound) -> Self {
        self.outbound = Some(outbound);
        self
    }

    /// Files messages the MX tagged as spam into the policy's Junk folder.
    pub fn with_antiube(mut self, policy: Arc<crate::antiube::PolicyHandle>) -> Self {
        self.antiube = Some(policy);
        self
    }

    /// The store slot for the admin API.
    pub fn slot(&self) -> StoreSlot {
        self.slot.clone()
    }

    /// Binds every listener, opens the store (behind the lease's write fence, when given)
    /// and serves. On error nothing stays open.
    pub async fn start_now(&self, fence: Option<Arc<WriteFence>>) -> Result<(), NodeError> {
        let mut running = self.running.lock().await;
        if running.is_some() {
            return Ok(());
        }
        let cfg = &self.config;
        let Some(ms) = &cfg.mailstore else {
            return Ok(());
        };
        let lmtp = bind(Some(ms.lmtp_listen), "LMTP").await?;
        let pop3_l = bind(ms.pop3_listen, "POP3").await?;
        let pop3s_l = bind(ms.pop3s_listen, "POP3S").await?;
        let imap_l = bind(ms.imap_listen, "IMAP").await?;
        let imaps_l = bind(ms.imaps_listen, "IMAPS").await?;
        let sieve_l = bind(ms.managesieve_listen, "ManageSieve").await?;
        let store_cfg = StoreConfig {
            create_if_missing: ms.create_if_missing,
            ..StoreConfig::default()
        };
        let store = Store::open_fenced(&ms.root, store_cfg, fence.clone())?;
        let shutdown = Shutdown::new();
        let mut tasks = JoinSet::new();
        let tls = &self.tls;
        let mail_cfg = |name: &str, tls: TlsMode| ListenerConfig {
            tls,
            max_connections: cfg.mail.max_connections,
            max_per_ip: cfg.mail.max_per_ip,
            idle_timeout: Duration::from_secs(cfg.mail.idle_timeout_secs),
            ..ListenerConfig::new(name)
        };
        let mut delivery =
            StoreDelivery::new(self.cluster.clone(), store.clone(), self.outbound.clone());
        delivery.junk = self.antiube.clone();
        let delivery = Arc::new(delivery);
        let server = LmtpServer::new(cfg.smtp.clone(), self.policy.clone(), delivery);
        if let Some(l) = lmtp {
            let lc = mail_cfg("lmtp", TlsMode::Plain);
            tasks.spawn(net::serve(
                l,
                lc,
                Guarded::new(Arc::new(server), fence.clone()),
                shutdown.clone(),
            ));
        }
        // One POP3 server for both listeners: shared maildrop locks and login limits.
        let pop3 = Arc::new(
            Pop3Server::new(
                cfg.pop3.clone(),
                Arc::new(self.cluster.clone()),
                store.clone(),
            )
            .allow_plaintext_login(ms.allow_plaintext_login),
        );
        let pop3_cfg = |name: &str, tls| ListenerConfig {
            idle_timeout: cfg.pop3.idle_timeout(),
            ..mail_cfg(name, tls)
        };
        if let Some(l) = pop3_l {
            let lc = pop3_cfg("pop3", TlsMode::StartTls(tls.clone()));
            tasks.spawn(net::serve(
                l,
                lc,
                Guarded::new(pop3.clone(), fence.clone()),
                shutdown.clone(),
            ));
        }
        if let Some(l) = pop3s_l {
            let lc = pop3_cfg("pop3s", TlsMode::Implicit(tls.clone()));
            tasks.spawn(net::serve(
                l,
                lc,
                Guarded::new(pop3, fence.clone()),
                shutdown.clone(),
            ));
        }
        // One IMAP server for both listeners: shared login limits.
        let imap = Arc::new(ImapServer::new(
            cfg.imap.clone(),
            self.cluster.clone(),
            store.clone(),
            ms.allow_plaintext_login,
        ));
        if let Some(l) = imap_l {
            let lc = mail_cfg("imap", TlsMode::StartTls(tls.clone()));
            tasks.spawn(net::serve(
                l,
                lc,
                Guarded::new(imap.clone(), fence.clone()),
                shutdown.clone(),
            ));
        }
        if let Some(l) = imaps_l {
            let lc = mail_cfg("imaps", TlsMode::Implicit(tls.clone()));
            tasks.spawn(net::serve(
                l,
                lc,
                Guarded::new(imap, fence.clone()),
                shutdown.clone(),
            ));
        }
        if let Some(l) = sieve_l {
            let server = ManageSieveServer::new(
                cfg.managesieve.clone(),
                self.cluster.clone(),
                ms.allow_plaintext_login,
            );
            let lc = ListenerConfig {
                idle_timeout: cfg.managesieve.idle_timeout(),
                ..mail_cfg("managesieve", TlsMode::StartTls(tls.clone()))
            };
            tasks.spawn(net::serve(
                l,
                lc,
                Guarded::new(Arc::new(server), fence.clone()),
                shutdown.clone(),
            ));
        }
        *self.slot.write().unwrap_or_else(|p| p.into_inner()) = Some(store);
        *running = Some((shutdown, tasks));
        Ok(())
    }

    /// Drains and stops everything started by [`Self::start_now`].
    pub async fn stop_now(&self, grace: Duration) {
        let mut running = self.running.lock().await;
        if let Some((shutdown, mut tasks)) = running.take() {
            shutdown.drain(grace);
            while tasks.join_next().await.is_some() {}
        }
        // Sessions are gone; the store's last users with them.
        self.slot.write().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// A protocol that serves a new connection only while the lease's write fence is open: a
/// process resuming after a pause longer than its lease drops connections (without a greeting)
/// until the failover task has fenced it, so clients never see two servers answer.
struct Guarded<P> {
    inner: Arc<P>,
    fence: Option<Arc<WriteFence>>,
}

impl<P> Guarded<P> {
    fn new(inner: Arc<P>, fence: Option<Arc<WriteFence>>) -> Arc<Guarded<P>> {
        Arc::new(Guarded { inner, fence })
    }

    fn open(&self) -> bool {
        self.fence.as_ref().is_none_or(|f| f.is_open())
    }
}

impl<P: Protocol> Protocol for Guarded<P> {
    fn serve(&self, conn: Conn, ctx: SessionCtx) -> impl Future<Output = ()> + Send {
        let (inner, open) = (self.inner.clone(), self.open());
        async move {
            if open {
                inner.serve(conn, ctx).await;
            } else {
                tracing::warn!("mailstore: connection dropped: this node's lease has run out");
            }
        }
    }

    fn reject(&self, conn: Conn, reason: RejectReason) -> impl Future<Output = ()> + Send {
        let inner = self.inner.clone();
        async move { inner.reject(conn, reason).await }
    }
}

impl Services for MailstoreServices {
    fn start(&self, epoch: u64, fence: Arc<WriteFence>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            tracing::info!(epoch, "mailstore: starting the store and its listeners");
            self.start_now(Some(fence)).await.map_err(|e| e.to_string())
        })
    }

    fn stop(&self, grace: Duration) -> BoxFuture<'_, ()> {
        Box::pin(self.stop_now(grace))
    }
}
