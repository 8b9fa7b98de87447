//! The IMAP4rev1 server (RFC 3501) of the mailstore, with IMAP4rev2 (RFC 9051) behaviour for
//! sessions that `ENABLE IMAP4rev2`, and the extensions real clients rely on: LITERAL+,
//! SASL-IR, ID, ENABLE, IDLE, NAMESPACE, UNSELECT, CHILDREN, SPECIAL-USE, LIST-EXTENDED,
//! LIST-STATUS, UIDPLUS, MOVE, CONDSTORE, QUOTA, ESEARCH, SEARCHRES, SORT, BINARY,
//! STATUS=SIZE, UTF8=ACCEPT, APPENDLIMIT.
//!
//! Layers: `parser` (framing and lexer), `command` (+ `fetch_items`, `search`, `sequence`,
//! `mutf7`, `date`) turn bytes into [`command::Command`] values without I/O; `session` runs the
//! state machine (not authenticated → authenticated → selected) over a [`Conn`], `features`
//! says what it offers and what the client enabled; `mailboxes` (+ `list`) serves the
//! mailbox-level commands, `selected` keeps a selected mailbox's view in step with the store's
//! change events (and `recent` the `\Recent` markers), `messages` and `fetch` serve the
//! message-level commands, `mime` renders ENVELOPE/BODYSTRUCTURE/sections, `headers` finds a
//! message's header and keeps recently fetched ones in a bounded cache shared by the
//! sessions, and `binary` decodes BINARY sections. Only APPEND, COPY, MOVE, STORE and EXPUNGE
//! write, and only through `store::MailboxHandle` (invariant 5). The parsers are fuzzed by a
//! seeded mutation fuzzer that runs with the unit tests (`fuzz`).
//!
//! It never touches the queue, never decides delivery, never logs passwords or message text.
//! Security note: LOGIN and AUTHENTICATE are refused before TLS (LOGINDISABLED) unless
//! `mailstore.allow_plaintext_login`; failed logins are slowed and limited per address and per
//! user (`limiter`); every client-sized value (line, literal, command, nesting, sequence set,
//! reply buffer, search work and nesting, header cache) is bounded by [`ImapConfig`]; literals
//! over a limit are refused before they are read (a synchronising literal never gets its `+`).

mod binary;
mod command;
mod config;
mod date;
mod features;
mod fetch;
mod fetch_items;
#[cfg(test)]
pub(crate) mod fuzz;
mod headers;
mod io;
mod limiter;
mod list;
mod login;
mod mailboxes;
mod messages;
mod mime;
mod mutf7;
mod parser;
mod recent;
mod response;
mod search;
mod searching;
mod selected;
mod sequence;
mod session;

pub use config::ImapConfig;
pub use limiter::LoginLimiter;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::cluster::Cluster;
use crate::net::{Conn, Protocol, RejectReason, SessionCtx};
use crate::store::Store;

use recent::RecentTracker;

/// What every session of the IMAP listeners shares.
pub(crate) struct Shared {
    pub cfg: ImapConfig,
    pub cluster: Cluster,
    pub store: Store,
    pub limiter: Arc<LoginLimiter>,
    /// `\Recent` markers, one table for both listeners; new with each start of the service.
    pub recent: Arc<RecentTracker>,
    /// Allow LOGIN/AUTHENTICATE without TLS (dev only).
    pub allow_plaintext_login: bool,
    /// Recently fetched message headers, for FETCH ENVELOPE / BODY[HEADER.FIELDS …].
    pub headers: headers::HeaderCache,
}

/// The IMAP protocol for [`crate::net::serve`]: one per listener (IMAP with STARTTLS, IMAPS).
pub struct ImapServer {
    shared: Arc<Shared>,
}

impl ImapServer {
    /// A server for `store`, authenticating through `cluster`'s directory.
    pub fn new(
        cfg: ImapConfig,
        cluster: Cluster,
        store: Store,
        allow_plaintext_login: bool,
    ) -> Self {
        let limiter = Arc::new(LoginLimiter::new(&cfg));
        let cfg_headers = cfg.header_cache_bytes;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        ImapServer {
            shared: Arc::new(Shared {
                cfg,
                cluster,
                store,
                limiter,
                recent: Arc::new(RecentTracker::new(started)),
                allow_plaintext_login,
                headers: headers::HeaderCache::new(cfg_headers),
            }),
        }
    }
}

impl Protocol for ImapServer {
    async fn serve(&self, conn: Conn, ctx: SessionCtx) {
        session::run(&self.shared, conn, ctx).await;
    }

    async fn reject(&self, mut conn: Conn, reason: RejectReason) {
        let line = format!("* BYE [UNAVAILABLE] {reason}, try again later\r\n");
        let _ = conn.write_all(line.as_bytes()).await;
        let _ = conn.flush().await;
    }
}
