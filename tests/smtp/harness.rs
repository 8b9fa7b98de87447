//! The test side of the SMTP/LMTP protocol tests: in-test implementations of the policy,
//! queue and store traits (over a real `Directory` and the crate's own verdict functions),
//! a server on 127.0.0.1 port 0 through `net::serve`, and a raw-bytes client.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailnode::directory::{Address, Command, Directory, User};
use mailnode::net::{serve, ListenerConfig, ListenerStats, Shutdown, TlsMode};
use mailnode::smtp::{
    rcpt_verdict, sender_verdict, AcceptError, Acceptor, AuthFailure, DeliveryError, Envelope,
    LmtpDelivery, LmtpServer, MailPolicy, Message, Mode, QueueId, SmtpConfig, SmtpServer, Verdict,
};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

/// Upper bound for any single wait; far above what a passing run needs.
pub const BOUND: Duration = Duration::from_secs(20);

pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The password of every test user.
pub const PASSWORD: &str = "secret";

/// Recipients and senders judged by the crate's own verdict functions over a directory with
/// example.org: alice, carol and full (enabled), bob (disabled), postmaster → alice.
pub struct TestPolicy {
    dir: Directory,
    passwords: HashMap<String, String>,
}

impl TestPolicy {
    pub fn new() -> Self {
        let hash = "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=";
        let mut bob = User::new("bob@example.org", hash);
        bob.enabled = false;
        let mut dir = Directory::new();
        let cmds = vec![
            Command::AddDomain {
                name: "example.org".into(),
            },
            Command::AddUser(User::new("alice@example.org", hash)),
            Command::AddUser(User::new("carol@example.org", hash)),
            Command::AddUser(User::new("full@example.org", hash)),
            Command::AddUser(bob),
            Command::AddAlias {
                address: "postmaster@example.org".into(),
                targets: vec!["alice@example.org".into()],
            },
        ];
        for cmd in cmds {
            dir.apply(&cmd).unwrap();
        }
        let passwords = ["alice@example.org", "carol@example.org"]
            .into_iter()
            .map(|u| (u.to_string(), PASSWORD.to_string()))
            .collect();
        TestPolicy { dir, passwords }
    }
}

impl MailPolicy for TestPolicy {
    fn check_sender(&self, mode: Mode, auth: Option<&str>, sender: Option<&Address>) -> Verdict {
        sender_verdict(&self.dir, mode, auth, sender)
    }

    fn check_rcpt(&self, mode: Mode, auth: Option<&str>, rcpt: &Address) -> Verdict {
        rcpt_verdict(&self.dir, mode, auth, rcpt)
    }

    async fn authenticate(&self, user: &str, password: &str) -> Result<String, AuthFailure> {
        let user = user.to_ascii_lowercase();
        if user == "tempfail@example.org" {
            return Err(AuthFailure::Temporary("directory unavailable".into()));
        }
        match self.passwords.get(&user) {
            Some(p) if p == password => Ok(user),
            _ => Err(AuthFailure::Invalid),
        }
    }
}

/// A message the test queue took.
pub struct Accepted {
    pub envelope: Envelope,
    pub content: String,
    /// Whether the session had spooled it to a file.
    pub spooled: bool,
}

/// Records accepted messages, or fails as told.
#[derive(Default)]
pub struct TestQueue {
    pub accepted: Mutex<Vec<Accepted>>,
    pub fail: Mutex<Option<AcceptError>>,
}

impl TestQueue {
    pub fn count(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }

    /// The content of the last accepted message.
    pub fn last(&self) -> String {
        self.accepted
            .lock()
            .unwrap()
            .last()
            .expect("a message")
            .content
            .clone()
    }
}

impl Acceptor for TestQueue {
    async fn accept(&self, envelope: Envelope, message: Message) -> Result<QueueId, AcceptError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        let spooled = message.path().is_some();
        let content = String::from_utf8(message.to_vec().unwrap()).unwrap();
        let mut accepted = self.accepted.lock().unwrap();
        accepted.push(Accepted {
            envelope,
            content,
            spooled,
        });
        Ok(QueueId(format!("Q{}", accepted.len())))
    }
}

/// Delivers to everyone but full@example.org (over quota).
#[derive(Default)]
pub struct TestStore {
    pub delivered: Mutex<Vec<(String, String)>>,
}

impl LmtpDelivery for TestStore {
    async fn deliver(
        &self,
        envelope: &Envelope,
        message: &Message,
    ) -> Vec<Result<(), DeliveryError>> {
        let content = String::from_utf8(message.to_vec().unwrap()).unwrap();
        envelope
            .recipients
            .iter()
            .map(|r| {
                if r.address.as_str() == "full@example.org" {
                    return Err(DeliveryError::QuotaExceeded);
                }
                let mut d = self.delivered.lock().unwrap();
                d.push((r.address.to_string(), content.clone()));
                Ok(())
            })
            .collect()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    StartTls,
    Implicit,
}

/// A running server and what tests inspect.
pub struct Server {
    pub addr: SocketAddr,
    pub shutdown: Shutdown,
    pub task: JoinHandle<()>,
    pub queue: Arc<TestQueue>,
    pub store: Arc<TestStore>,
    pub stats: ListenerStats,
    pub ca: PathBuf,
    pub spool: PathBuf,
    _dir: tempfile::TempDir,
}

/// The configuration tests start from: fast AUTH delays, `mx.test` as host name.
pub fn config() -> SmtpConfig {
    SmtpConfig {
        hostname: "mx.test".into(),
        auth_failure_delay_ms: 20,
        auth_failure_delay_max_ms: 80,
        ..SmtpConfig::default()
    }
}

pub async fn start(mode: Mode, transport: Transport, cfg: SmtpConfig) -> Server {
    start_with(mode, transport, cfg, |_| {}).await
}

pub async fn start_with(
    mode: Mode,
    transport: Transport,
    mut cfg: SmtpConfig,
    tweak: impl FnOnce(&mut ListenerConfig),
) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.1".to_owned(), "localhost".to_owned()];
    let pki = mailnode::tls::ensure_dev_pki(dir.path(), "node-a", &hosts).unwrap();
    let server_config = mailnode::tls::server_config(&pki.cert, &pki.key).unwrap();
    let spool = dir.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    cfg.spool_dir = Some(spool.clone());
    let mut lcfg = ListenerConfig::new("smtp-test");
    lcfg.tls = match transport {
        Transport::Plain => TlsMode::Plain,
        Transport::StartTls => TlsMode::StartTls(server_config),
        Transport::Implicit => TlsMode::Implicit(server_config),
    };
    lcfg.idle_timeout = BOUND;
    // Every test connects from 127.0.0.1; the per-address limit is not what is under test.
    lcfg.max_per_ip = 0;
    tweak(&mut lcfg);
    let stats = lcfg.stats.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let policy = Arc::new(TestPolicy::new());
    let queue = Arc::new(TestQueue::default());
    let store = Arc::new(TestStore::default());
    let task = match mode {
        Mode::Mx => {
            let server = SmtpServer::mx(cfg, policy, queue.clone());
            tokio::spawn(serve(listener, lcfg, Arc::new(server), shutdown.clone()))
        }
        Mode::Submission => {
            let server = SmtpServer::submission(cfg, policy, queue.clone());
            tokio::spawn(serve(listener, lcfg, Arc::new(server), shutdown.clone()))
        }
        Mode::Lmtp => {
            let server = LmtpServer::new(cfg, policy, store.clone());
            tokio::spawn(serve(listener, lcfg, Arc::new(server), shutdown.clone()))
        }
    };
    Server {
        addr,
        shutdown,
        task,
        queue,
        store,
        stats,
        ca: pki.ca,
        spool,
        _dir: dir,
    }
}

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A reply as read off the wire.
#[derive(Debug)]
pub struct Reply {
    /// Every line, without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// The last line (the one with a space after the code).
    pub fn last(&self) -> &str {
        self.lines.last().map(String::as_str).unwrap_or("")
    }

    /// Whether any line is `code<sep>text` exactly (for EHLO keywords).
    pub fn has_line(&self, text: &str) -> bool {
        self.lines.iter().any(|l| l.get(4..) == Some(text))
    }
}

/// A raw SMTP client.
pub struct Client {
    io: BufReader<Box<dyn Stream>>,
    ca: PathBuf,
}

impl Client {
    /// Connects and reads the greeting, which must start with `greeting`.
    pub async fn connect(server: &Server, greeting: &str) -> Client {
        let tcp = bounded("connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        let mut c = Client {
            io: BufReader::new(Box::new(tcp)),
            ca: server.ca.clone(),
        };
        c.expect_reply(greeting).await;
        c
    }

    /// Connects with TLS from the first byte.
    pub async fn connect_tls(server: &Server, greeting: &str) -> Client {
        let tcp = bounded("connect", TcpStream::connect(server.addr))
            .await
            .unwrap();
        let tls = tls_wrap(&server.ca, tcp).await;
        let mut c = Client {
            io: BufReader::new(Box::new(tls)),
            ca: server.ca.clone(),
        };
        c.expect_reply(greeting).await;
        c
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        let io = self.io.get_mut();
        bounded("write", async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .unwrap();
    }

    pub async fn send(&mut self, line: &str) {
        self.write(format!("{line}\r\n").as_bytes()).await;
    }

    /// The next reply, or `None` at end of stream.
    pub async fn try_reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match bounded("a reply line", self.io.read_line(&mut line)).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            assert!(line.ends_with("\r\n"), "reply line without CRLF: {line:?}");
            let line = line.trim_end_matches("\r\n").to_string();
            let code = line.get(..3).and_then(|c| c.parse::<u16>().ok());
            assert!(code.is_some(), "not a reply: {line:?}");
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line);
            if last {
                return Some(Reply { lines });
            }
        }
    }

    pub async fn reply(&mut self) -> Reply {
        self.try_reply().await.expect("a reply, not end of stream")
    }

    /// Reads a reply whose last line starts with `prefix`.
    pub async fn expect_reply(&mut self, prefix: &str) -> Reply {
        let r = self.reply().await;
        assert!(
            r.last().starts_with(prefix),
            "expected {prefix:?}, got {:?}",
            r.lines
        );
        r
    }

    /// Sends `line`, expects a reply starting with `prefix`.
    pub async fn cmd(&mut self, line: &str, prefix: &str) -> Reply {
        self.send(line).await;
        self.expect_reply(prefix).await
    }

    /// Expects the server to close the connection.
    pub async fn expect_closed(&mut self) {
        if let Some(r) = self.try_reply().await {
            panic!("expected the connection to close, got {:?}", r.lines);
        }
    }

    /// Reads whatever the server still sends (a TLS alert, say) until it closes.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut out = Vec::new();
        let _ = bounded("end of stream", self.io.read_to_end(&mut out)).await;
        out
    }

    /// STARTTLS and the handshake.
    pub async fn starttls(&mut self) {
        self.cmd("STARTTLS", "220 2.0.0").await;
        self.finish_starttls().await;
    }

    /// The handshake after a 220 to STARTTLS.
    pub async fn finish_starttls(&mut self) {
        assert!(self.io.buffer().is_empty(), "server sent bytes after 220");
        let dummy: Box<dyn Stream> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.io, BufReader::new(dummy)).into_inner();
        let tls = tls_wrap(&self.ca, plain).await;
        self.io = BufReader::new(Box::new(tls));
    }

    /// Sends one message with DATA; returns the final reply.
    pub async fn mail(&mut self, from: &str, to: &[&str], content: &str) -> Reply {
        self.cmd(&format!("MAIL FROM:<{from}>"), "250 2.1.0").await;
        for rcpt in to {
            self.cmd(&format!("RCPT TO:<{rcpt}>"), "250 2.1.5").await;
        }
        self.cmd("DATA", "354").await;
        self.write(content.as_bytes()).await;
        self.write(b".\r\n").await;
        self.reply().await
    }

    /// Authenticates with PLAIN.
    pub async fn login(&mut self, user: &str, password: &str) -> Reply {
        self.send(&format!("AUTH PLAIN {}", plain(user, password)))
            .await;
        self.reply().await
    }
}

/// A base64 PLAIN initial response.
pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn tls_wrap<S: AsyncRead + AsyncWrite + Unpin>(
    ca: &std::path::Path,
    io: S,
) -> tokio_rustls::client::TlsStream<S> {
    let config = mailnode::tls::client_config_trusting(ca).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    bounded(
        "TLS handshake",
        TlsConnector::from(config).connect(name, io),
    )
    .await
    .unwrap()
}
