//! The IMAP4rev1 server (RFC 3501) of the mailstore, with the extensions real clients rely
//! on: LITERAL+, SASL-IR, ID, ENABLE, IDLE, NAMESPACE, UNSELECT, CHILDREN, SPECIAL-USE,
//! LIST-EXTENDED, LIST-STATUS, UIDPLUS, MOVE, CONDSTORE, QUOTA, ESEARCH, SORT, APPENDLIMIT.
//!
//! Layers: `parser` (framing and lexer), `command` (+ `fetch_items`, `search`, `sequence`,
//! `mutf7`, `date`) turn bytes into [`command::Command`] values without I/O; `session` runs the
//! state machine (not authenticated → authenticated → selected) over a [`Conn`]; `mailboxes`
//! serves the mailbox-level commands, `selected` keeps a selected mailbox's view in step with
//! the store's change events, `messages` and `fetch` serve the message-level commands, `mime`
//! renders ENVELOPE/BODYSTRUCTURE/sections. Only APPEND, COPY, MOVE, STORE and EXPUNGE write,
//! and only through `store::MailboxHandle` (invariant 5).
//!
//! It never touches the queue, never decides delivery, never logs passwords or message text.
//! Security note: LOGIN and AUTHENTICATE are refused before TLS (LOGINDISABLED) unless
//! `mailstore.allow_plaintext_login`; failed logins are slowed and limited per address and per
//! user (`limiter`); every client-sized value (line, literal, command, nesting, sequence set,
//! reply buffer, search work) is bounded by [`ImapConfig`]; literals over a limit are refused
//! before they are read (a synchronising literal never gets its `+`).

mod command;
mod config;
mod date;
mod fetch;
mod fetch_items;
mod io;
mod limiter;
mod login;
mod mailboxes;
mod messages;
mod mime;
mod mutf7;
mod parser;
mod response;
mod search;
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

/// What every session of the IMAP listeners shares.
pub(crate) struct Shared {
    pub cfg: ImapConfig,
    pub cluster: Cluster,
    pub store: Store,
    pub limiter: Arc<LoginLimiter>,
    /// Allow LOGIN/AUTHENTICATE without TLS (dev only).
    pub allow_plaintext_login: bool,
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
        ImapServer {
            shared: Arc::new(Shared {
                cfg,
                cluster,
                store,
                limiter,
                allow_plaintext_login,
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
