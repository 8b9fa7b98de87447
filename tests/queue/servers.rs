//! Test-side mail servers: a minimal, scriptable LMTP/SMTP server written for these tests (not a
//! real MTA: it exists to inject per-recipient 4xx/5xx replies, slow replies, outages and
//! STARTTLS), plus a wrapper that runs the real `smtp-sink` (Postfix) and, re-exported from
//! tests/common/dns.rs, the one that runs `dnsmasq`. Every test binary including this file
//! declares `mod common`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mailnode::net::Conn;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// One accepted message as the mini server saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub rcpt: String,
    pub data: Vec<u8>,
    pub tls: bool,
}

/// Per-recipient final reply: given the recipient and how many times it was offered before.
pub type ReplyFn = Box<dyn Fn(&str, usize) -> String + Send>;

pub struct Script {
    pub greeting: String,
    pub reply: ReplyFn,
    pub data_delay: Duration,
    pub received: Vec<Received>,
    pub offered: HashMap<String, usize>,
    pub sessions: usize,
}

/// The scriptable server. `lmtp` picks LHLO and per-recipient replies; `tls` offers STARTTLS.
pub struct MiniServer {
    pub addr: SocketAddr,
    pub script: Arc<Mutex<Script>>,
    lmtp: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    task: Option<JoinHandle<()>>,
}

impl MiniServer {
    pub async fn start(ip: &str, lmtp: bool, tls: Option<Arc<rustls::ServerConfig>>) -> MiniServer {
        let script = Arc::new(Mutex::new(Script {
            greeting: "220 mini ready".into(),
            reply: Box::new(|_, _| "250 2.0.0 ok".into()),
            data_delay: Duration::ZERO,
            received: Vec::new(),
            offered: HashMap::new(),
            sessions: 0,
        }));
        let listener = TcpListener::bind(format!("{ip}:0")).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut s = MiniServer {
            addr,
            script,
            lmtp,
            tls,
            task: None,
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: TcpListener) {
        let (script, lmtp, tls) = (self.script.clone(), self.lmtp, self.tls.clone());
        self.task = Some(tokio::spawn(async move {
            let mut sessions = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                let (script, tls) = (script.clone(), tls.clone());
                sessions.push(tokio::spawn(async move {
                    let _ = session(sock, script, lmtp, tls).await;
                }));
            }
        }));
    }

    /// Stops listening: connections are refused until [`MiniServer::resume`].
    pub fn pause(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    pub async fn resume(&mut self) {
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }

    pub fn set_reply(&self, f: impl Fn(&str, usize) -> String + Send + 'static) {
        self.script.lock().unwrap().reply = Box::new(f);
    }

    pub fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().received.clone()
    }
}

impl Drop for MiniServer {
    fn drop(&mut self) {
        self.pause();
    }
}

async fn read_line(conn: &mut Conn<TcpStream>, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).into_owned();
            buf.drain(..i + 2);
            return Some(line);
        }
        let mut chunk = [0u8; 8192];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn path_arg(line: &str) -> String {
    let start = line.find('<').map_or(0, |i| i + 1);
    let end = line[start..].find('>').map_or(line.len(), |i| start + i);
    line[start..end].to_string()
}

async fn session(
    sock: TcpStream,
    script: Arc<Mutex<Script>>,
    lmtp: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    let mut conn = match tls {
        Some(cfg) => Conn::with_starttls(sock, Duration::from_secs(30), cfg),
        None => Conn::plain(sock, Duration::from_secs(30)),
    };
    let greeting = {
        let mut s = script.lock().unwrap();
        s.sessions += 1;
        s.greeting.clone()
    };
    conn.write_all(format!("{greeting}\r\n").as_bytes()).await?;
    if !greeting.starts_with('2') {
        return Ok(());
    }
    let mut buf = Vec::new();
    let (mut from, mut rcpts) = (String::new(), Vec::<String>::new());
    while let Some(line) = read_line(&mut conn, &mut buf).await {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        let reply = match verb.as_str() {
            "LHLO" | "EHLO" => {
                let tls = if conn.starttls_available() {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                format!("250-mini\r\n{tls}250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250 SIZE 100000000")
            }
            "STARTTLS" => {
                conn.write_all(b"220 2.0.0 go ahead\r\n").await?;
                conn = conn.upgrade().await?;
                buf.clear();
                continue;
            }
            "MAIL" => {
                from = path_arg(&line);
                rcpts.clear();
                "250 2.1.0 ok".into()
            }
            "RCPT" => {
                rcpts.push(path_arg(&line));
                "250 2.1.5 ok".into()
            }
            "DATA" => {
                conn.write_all(b"354 go\r\n").await?;
                let mut data = Vec::new();
                loop {
                    let Some(l) = read_line(&mut conn, &mut buf).await else {
                        return Ok(());
                    };
                    if l == "." {
                        break;
                    }
                    data.extend_from_slice(l.strip_prefix('.').unwrap_or(&l).as_bytes());
                    data.extend_from_slice(b"\r\n");
                }
                let delay = script.lock().unwrap().data_delay;
                tokio::time::sleep(delay).await;
                let mut out = String::new();
                let replies = {
                    let mut s = script.lock().unwrap();
                    let mut replies = Vec::new();
                    for r in &rcpts {
                        let n = *s.offered.entry(r.clone()).or_insert(0);
                        let reply = (s.reply)(r, n);
                        *s.offered.get_mut(r).unwrap() += 1;
                        if reply.starts_with('2') {
                            s.received.push(Received {
                                from: from.clone(),
                                rcpt: r.clone(),
                                data: data.clone(),
                                tls: conn.is_tls(),
                            });
                        }
                        replies.push(reply);
                    }
                    replies
                };
                if lmtp {
                    for r in replies {
                        out.push_str(&r);
                        out.push_str("\r\n");
                    }
                } else {
                    let first = replies
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "554 no rcpt".into());
                    out.push_str(&first);
                    out.push_str("\r\n");
                }
                conn.write_all(out.as_bytes()).await?;
                rcpts.clear();
                continue;
            }
            "RSET" => {
                rcpts.clear();
                "250 ok".into()
            }
            "QUIT" => {
                conn.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 unknown".into(),
        };
        conn.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
    Ok(())
}

// `dnsmasq` and the child guard are shared with the other DNS tests (every binary that
// includes this file also declares `mod common`).
pub use crate::common::dns::{dnsmasq, Proc};

/// Postfix's `smtp-sink` on `addr`, dumping each transaction into `dir`.
pub fn smtp_sink(addr: &str, dir: &Path, extra: &[&str]) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    // smtp-sink drops to `nobody`, which must be able to write the dumps.
    Command::new("chmod").arg("777").arg(dir).status().unwrap();
    let child = Command::new("smtp-sink")
        .args(["-u", "nobody", "-d"])
        .arg(format!("{}/%H%M%S.", dir.display()))
        .args(extra)
        .arg(addr)
        .arg("64")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("smtp-sink (Debian package postfix) must be installed");
    let p = Proc(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "smtp-sink did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// The transactions `smtp-sink` dumped so far.
pub fn sink_dumps(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}
