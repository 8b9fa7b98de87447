//! What the IMAP tests share: a raw client that reads responses with their literals, the
//! node setup (127.0.52.0/24) and small helpers (test messages, Python clients, RSS).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{mail_config, set_extra_config, TestCluster};

pub const NET: u8 = 52;
pub const PASSWORD: &str = "imap secret";

/// A raw IMAP client over plain TCP with a read timeout on every read.
pub struct Raw {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut c = Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = c.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        c
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    /// One response line, with any literals it announces appended (as `{n}\r\n<bytes>`).
    pub fn line(&mut self) -> String {
        let mut out = String::new();
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("read from server");
            assert!(n > 0, "server closed the connection; so far: {out:?}");
            out.push_str(&l);
            let t = l.trim_end();
            let lit = t
                .strip_suffix('}')
                .and_then(|x| x.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok());
            match lit {
                Some(n) => {
                    let mut buf = vec![0; n];
                    self.r.read_exact(&mut buf).unwrap();
                    out.push_str(&String::from_utf8_lossy(&buf));
                }
                None => return out,
            }
        }
    }

    /// Sends `tag cmd` and returns every line up to and including the tagged one.
    pub fn cmd(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        self.send(format!("{tag} {cmd}\r\n").as_bytes());
        self.until(tag)
    }

    pub fn until(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let l = self.line();
            let done = l.starts_with(&format!("{tag} "));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    /// Runs a command and asserts its tagged status.
    pub fn ok(&mut self, tag: &str, cmd: &str) -> Vec<String> {
        let lines = self.cmd(tag, cmd);
        let last = lines.last().unwrap();
        assert!(last.starts_with(&format!("{tag} OK")), "{cmd}: {lines:?}");
        lines
    }

    pub fn expect(&mut self, tag: &str, cmd: &str, status: &str) -> Vec<String> {
        let lines = self.cmd(tag, cmd);
        let last = lines.last().unwrap();
        assert!(
            last.starts_with(&format!("{tag} {status}")),
            "{cmd}: expected {status}: {lines:?}"
        );
        lines
    }

    pub fn login(addr: &str, user: &str) -> Raw {
        let mut c = Raw::connect(addr);
        c.ok("l", &format!("LOGIN {user} \"{PASSWORD}\""));
        c
    }

    /// APPEND with a synchronising literal; returns the tagged line.
    pub fn append(&mut self, tag: &str, mailbox: &str, extra: &str, msg: &[u8]) -> String {
        self.send(format!("{tag} APPEND {mailbox} {extra}{{{}}}\r\n", msg.len()).as_bytes());
        let cont = self.line();
        assert!(cont.starts_with('+'), "{cont}");
        self.send(msg);
        self.send(b"\r\n");
        self.until(tag).pop().unwrap()
    }
}

pub fn joined(lines: &[String]) -> String {
    lines.concat()
}

pub fn message(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\
         Date: Tue, 1 Feb 2022 10:00:00 +0000\r\nMessage-ID: <{subject}@example.org>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

pub struct Setup {
    pub c: TestCluster,
    pub ip: String,
    pub store: PathBuf,
}

impl Setup {
    pub fn imap(&self) -> String {
        format!("{}:2143", self.ip)
    }
    pub fn ca(&self) -> PathBuf {
        self.c.pki.join("ca.pem")
    }

    pub fn configure(&self, plaintext: bool) {
        let ip = &self.ip;
        let mut cfg = mail_config(ip, Some(&self.store), "");
        cfg.push_str(&format!(
            "imap_listen = \"{ip}:2143\"\nimaps_listen = \"{ip}:2993\"\nallow_plaintext_login = {plaintext}\n\n\
             [imap]\nhostname = \"imap.test\"\nauth_failure_delay_ms = 50\nauth_failure_delay_max_ms = 100\n\
             max_append_size = 1048576\nidle_timeout_secs = 8\nlogin_timeout_secs = 8\n\
             max_output_buffer = 65536\nmax_errors = 50\n\
             auth_failures_per_ip = 100\nauth_failures_per_user = 3\nspool_memory_limit = 100000\n"
        ));
        set_extra_config(&self.c, 1, &cfg);
    }

    pub async fn start(&mut self) {
        self.c.node(1).start();
        self.c.api(1).wait_ready(Duration::from_secs(20)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.imap()).is_err() {
            assert!(Instant::now() < deadline, "IMAP listener did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("timeout")
        .arg("60")
        .arg("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}
