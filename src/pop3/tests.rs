//! Sessions driven over in-memory streams against a real store in a temporary directory and a
//! fixed authenticator: what the end-to-end test cannot arrange deterministically (a message
//! expunged by another session, an aborted session task, an authenticator that is down).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::net::Shutdown;
use crate::store::{Flags, StoreConfig, SystemFlag, INBOX};

const BOUND: Duration = Duration::from_secs(10);

#[test]
fn unique_ids_are_short_printable_and_distinct() {
    assert_eq!(unique_id(0x5f00_0001, 1), "5f000001.1");
    let id = unique_id(u32::MAX, u32::MAX);
    assert!(id.len() <= 70 && id.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert_ne!(unique_id(1, 0x11), unique_id(0x11, 1));
}

#[test]
fn a_maildrop_lock_is_exclusive_and_released_on_drop() {
    let locks = Arc::new(MaildropLocks::default());
    let a = locks.try_lock("Alice@example.org").expect("free");
    assert!(locks.try_lock("alice@example.org").is_none());
    assert!(locks.try_lock("bob@example.org").is_some());
    drop(a);
    assert!(locks.try_lock("alice@example.org").is_some());
}

/// alice@x.org / pw logs in; down@x.org finds the directory unavailable; the rest is invalid.
struct Users;

impl Authenticator for Users {
    async fn authenticate(&self, user: &str, password: &str) -> Result<String, LoginError> {
        match (user.to_lowercase().as_str(), password) {
            ("alice@x.org", "pw") => Ok("alice@x.org".into()),
            ("down@x.org", _) => Err(LoginError::Temporary("directory down".into())),
            _ => Err(LoginError::Invalid),
        }
    }
}

struct Rig {
    server: Arc<Pop3Server<Users>>,
    store: Store,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path().join("store"),
        StoreConfig {
            create_if_missing: true,
            ..StoreConfig::default()
        },
    )
    .unwrap();
    let cfg = Pop3Config {
        auth_failure_delay_ms: 1,
        auth_failure_delay_max_ms: 1,
        ..Pop3Config::default()
    };
    let server = Pop3Server::new(cfg, Arc::new(Users), store.clone()).allow_plaintext_login(true);
    Rig {
        server: Arc::new(server),
        store,
        shutdown: Shutdown::new(),
        _dir: dir,
    }
}

struct Client {
    io: BufReader<DuplexStream>,
    session: JoinHandle<()>,
}

impl Rig {
    async fn connect(&self) -> (Client, String) {
        let (client, server_io) = tokio::io::duplex(1 << 20);
        let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let local: SocketAddr = "192.0.2.1:110".parse().unwrap();
        let ctx = SessionCtx::new(peer, local, "pop3".into(), self.shutdown.signal());
        let server = Arc::clone(&self.server);
        let session = tokio::spawn(async move {
            server
                .serve_conn(Conn::plain(server_io, Duration::from_secs(5)), ctx)
                .await
        });
        let mut c = Client {
            io: BufReader::new(client),
            session,
        };
        let greeting = c.line().await;
        (c, greeting)
    }

    async fn deliver(&self, text: &str) {
        self.store
            .deliver(
                "alice@x.org",
                INBOX,
                text.as_bytes(),
                Flags::default(),
                None,
                0,
            )
            .await
            .unwrap();
    }
}

impl Client {
    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(BOUND, self.io.read_line(&mut line))
            .await
            .expect("a reply in time")
            .unwrap();
        line.trim_end_matches("\r\n").to_string()
    }

    async fn cmd(&mut self, cmd: &str) -> String {
        self.io
            .get_mut()
            .write_all(format!("{cmd}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    /// The lines of a multi-line response, raw.
    async fn multi(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line().await;
            if l == "." {
                return lines;
            }
            lines.push(l);
        }
    }
}

#[tokio::test]
async fn a_message_expunged_elsewhere_and_an_aborted_session() {
    let rig = rig();
    rig.deliver("Subject: a\r\n\r\none\r\n").await;
    rig.deliver("Subject: b\r\n\r\ntwo\r\n").await;
    let (mut c, greeting) = rig.connect().await;
    assert_eq!(greeting, "+OK Mailnode POP3 server ready");
    assert!(c.cmd("USER alice@x.org").await.starts_with("+OK"));
    assert!(c
        .cmd("PASS pw")
        .await
        .starts_with("+OK maildrop has 2 messages"));
    // Another session (IMAP) expunges message 1: the numbering stays, RETR 1 says why.
    let other = rig.store.open_mailbox("alice@x.org", INBOX).await.unwrap();
    let first = other.snapshot().unwrap().messages[0].uid;
    other.expunge(&[first]).await.unwrap();
    assert_eq!(
        c.cmd("RETR 1").await,
        "-ERR message 1 was removed by another session"
    );
    assert!(c.cmd("RETR 2").await.starts_with("+OK"));
    assert_eq!(c.multi().await, ["Subject: b", "", "two"]);
    assert!(c.cmd("DELE 2").await.starts_with("+OK"));
    // The session task dies without QUIT (a node aborting it at its shutdown deadline): the
    // lock goes with it and nothing is expunged.
    c.session.abort();
    let _ = c.session.await;
    let (mut d, _) = rig.connect().await;
    assert!(d.cmd("USER alice@x.org").await.starts_with("+OK"));
    assert!(d
        .cmd("PASS pw")
        .await
        .starts_with("+OK maildrop has 1 messages"));
    assert!(d.cmd("DELE 1").await.starts_with("+OK"));
    // Meanwhile a delivery: not in this session's maildrop, kept by UPDATE.
    rig.deliver("Subject: c\r\n\r\nthree\r\n").await;
    assert_eq!(
        d.cmd("QUIT").await,
        "+OK Mailnode POP3 server signing off (0 messages left)"
    );
    let left = other.snapshot().unwrap();
    assert_eq!(left.messages.len(), 1);
    assert_eq!(
        rig.store
            .open_mailbox("alice@x.org", INBOX)
            .await
            .unwrap()
            .fetch(left.messages[0].uid)
            .await
            .unwrap(),
        b"Subject: c\r\n\r\nthree\r\n"
    );
}

#[tokio::test]
async fn logins_that_fail_for_other_reasons() {
    let rig = rig();
    let (mut c, _) = rig.connect().await;
    // A user with no INBOX yet has an empty maildrop; UIDL and LIST are empty listings.
    assert!(c.cmd("USER alice@x.org").await.starts_with("+OK"));
    assert_eq!(
        c.cmd("PASS pw").await,
        "+OK maildrop has 0 messages (0 octets)"
    );
    assert_eq!(c.cmd("STAT").await, "+OK 0 0");
    assert!(c.cmd("UIDL").await.starts_with("+OK"));
    assert!(c.multi().await.is_empty());
    assert!(c.cmd("RETR 1").await.starts_with("-ERR no such message"));
    assert!(c.cmd("QUIT").await.starts_with("+OK"));
    // The authenticator is down: a temporary failure, not counted as a guess.
    let (mut c, _) = rig.connect().await;
    assert!(c.cmd("USER down@x.org").await.starts_with("+OK"));
    assert!(c.cmd("PASS x").await.starts_with("-ERR [SYS/TEMP]"));
    assert!(!rig.server.shared.limiter.user_blocked("down@x.org"));
    // STLS on a listener without TLS is refused; CAPA does not offer it.
    assert!(c.cmd("CAPA").await.starts_with("+OK"));
    assert!(!c.multi().await.contains(&"STLS".to_string()));
    assert!(c.cmd("STLS").await.starts_with("-ERR"));
    // Shutdown while waiting for a command: the goodbye, and the session ends.
    rig.shutdown.trigger();
    assert_eq!(c.line().await, "-ERR server shutting down");
    tokio::time::timeout(BOUND, c.session)
        .await
        .unwrap()
        .unwrap();
    // A connection accepted during the drain is greeted with the goodbye.
    let (_, greeting) = rig.connect().await;
    assert_eq!(greeting, "-ERR server shutting down");
}

/// RETR sets `\Seen` at QUIT (UPDATE), only on what it sent and only when the session QUITs;
/// TOP is no retrieval; a message already seen or deleted is left alone.
#[tokio::test]
async fn retr_marks_seen_at_quit_only() {
    let rig = rig();
    for s in ["a", "b", "c", "d"] {
        rig.deliver(&format!("Subject: {s}\r\n\r\nbody {s}\r\n"))
            .await;
    }
    let inbox = rig.store.open_mailbox("alice@x.org", INBOX).await.unwrap();
    let seen = || -> Vec<bool> {
        inbox
            .snapshot()
            .unwrap()
            .messages
            .iter()
            .map(|m| m.flags.contains(SystemFlag::Seen))
            .collect()
    };
    // RETR, then the session dies: nothing changes.
    let (mut c, _) = rig.connect().await;
    assert!(c.cmd("USER alice@x.org").await.starts_with("+OK"));
    assert!(c.cmd("PASS pw").await.starts_with("+OK"));
    assert!(c.cmd("RETR 1").await.starts_with("+OK"));
    c.multi().await;
    c.session.abort();
    let _ = c.session.await;
    assert_eq!(seen(), [false; 4]);
    // RETR 1, TOP 2, RETR 3 + DELE 3, RETR 4 twice, then QUIT.
    let (mut c, _) = rig.connect().await;
    assert!(c.cmd("USER alice@x.org").await.starts_with("+OK"));
    assert!(c.cmd("PASS pw").await.starts_with("+OK"));
    for cmd in ["RETR 1", "TOP 2 1", "RETR 3", "RETR 4", "RETR 4"] {
        assert!(c.cmd(cmd).await.starts_with("+OK"), "{cmd}");
        c.multi().await;
    }
    assert!(c.cmd("DELE 3").await.starts_with("+OK"));
    // Before QUIT nothing is written.
    assert_eq!(seen(), [false; 4]);
    assert_eq!(
        c.cmd("QUIT").await,
        "+OK Mailnode POP3 server signing off (3 messages left)"
    );
    assert_eq!(seen(), [true, false, true], "messages 1, 2 and 4 remain");
}
