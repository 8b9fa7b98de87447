//! The peer: Dovecot from Debian as a private instance (`dovecot -F -c FILE`, everything in a
//! temporary folder) on 127.0.202.2 with IMAP on :2143, POP3 on :2110 and LMTP on :2424, a
//! passwd-file passdb and userdb holding the same users and the same argon2id hashes as
//! mailnode's directory (Dovecot verifies `{ARGON2ID}` with libsodium), Maildir owned by
//! `nobody`. Dovecot's shipped defaults otherwise (`mail_fsync = optimized`, one `imap` process
//! per session, `imap-login` in its high-security mode: one process per connection in login),
//! except the process and connection limits listed in [`dovecot_conf`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{IMAP_PORT, LMTP_PORT, POP3_PORT};

const DOVECOT: &str = "/usr/sbin/dovecot";
const IP: &str = "127.0.202.2";
/// Owner of the Maildirs (Dovecot refuses to run mail processes as root).
const MAIL_UID: u32 = 65534;

/// Why the peer cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    for f in [
        DOVECOT,
        "/usr/lib/dovecot/imap",
        "/usr/lib/dovecot/pop3",
        "/usr/lib/dovecot/lmtp",
    ] {
        if !Path::new(f).exists() {
            return Some(format!("{f} is missing"));
        }
    }
    for user in ["dovecot", "dovenull"] {
        let known = Command::new("id")
            .arg(user)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !known {
            return Some(format!("the system user {user} is missing"));
        }
    }
    None
}

/// `Dovecot 2.3.19.1`.
pub fn version() -> String {
    let out = Command::new(DOVECOT)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("Dovecot {}", out.split_whitespace().next().unwrap_or("?"))
}

pub struct DovecotSide {
    /// Configuration, state, logs and Maildirs; removed on drop, after Dovecot is stopped.
    tmp: tempfile::TempDir,
    conf: PathBuf,
    /// The master, in the foreground (`-F`).
    master: Option<Child>,
}

impl DovecotSide {
    /// Writes the configuration and the users, starts Dovecot and waits until IMAP greets.
    pub async fn start(users: &[(String, String)]) -> DovecotSide {
        let tmp = tempfile::tempdir().expect("temporary folder");
        let root = tmp.path().to_path_buf();
        // The processes run as dovecot, dovenull and nobody and open files by absolute path.
        chmod(&root, 0o755);
        let mail = root.join("mail");
        std::fs::create_dir_all(&mail).expect("mail folder");
        chown(&mail, MAIL_UID);
        let passwd = root.join("users");
        let lines: String = users
            .iter()
            .map(|(address, hash)| format!("{address}:{{ARGON2ID}}{hash}::::::\n"))
            .collect();
        std::fs::write(&passwd, lines).expect("users file");
        let conf = root.join("dovecot.conf");
        std::fs::write(&conf, dovecot_conf(&root, &mail, &passwd)).expect("dovecot.conf");
        let mut side = DovecotSide {
            tmp,
            conf,
            master: None,
        };
        side.launch().await;
        side
    }

    async fn launch(&mut self) {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("stderr.log"))
            .expect("dovecot stderr log");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start dovecot");
        self.master = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.master.as_mut().map(|c| c.try_wait()) {
                panic!("dovecot exited ({status}): {}", self.log_tail());
            }
            if crate::greets(self.imap()).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dovecot did not answer on {}: {}",
                self.imap(),
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the master (SIGTERM; it ends every process of the instance) and starts it again.
    pub async fn restart(&mut self) {
        let t = Instant::now();
        self.stop();
        self.launch().await;
        println!(
            "  restarted in {}",
            crate::measure::fmt_duration(t.elapsed())
        );
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.master.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // The master's children leave when it does; wait until none is left (bounded).
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && !self.leftovers().is_empty() {
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in self.leftovers() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Processes of this instance still alive: their title names it (`dovecot-imapbench/…`).
    fn leftovers(&self) -> Vec<u32> {
        let mut found = Vec::new();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return found;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.starts_with(format!("dovecot-{INSTANCE}/").as_bytes()) {
                found.push(pid);
            }
        }
        found
    }

    fn addr(&self, port: u16) -> SocketAddr {
        format!("{IP}:{port}").parse().expect("address")
    }
    pub fn imap(&self) -> SocketAddr {
        self.addr(IMAP_PORT)
    }
    pub fn pop3(&self) -> SocketAddr {
        self.addr(POP3_PORT)
    }
    pub fn lmtp(&self) -> SocketAddr {
        self.addr(LMTP_PORT)
    }

    /// The master: every process of the instance descends from it.
    pub fn roots(&self) -> Vec<u32> {
        self.master.iter().map(Child::id).collect()
    }

    /// Dovecot's log, for a failure report.
    pub fn log_tail(&self) -> String {
        format!(
            "{}\n{}",
            tail(&self.tmp.path().join("stderr.log")),
            tail(&self.tmp.path().join("dovecot.log"))
        )
    }

    /// Dovecot's warnings and errors so far, each distinct text once with its count (the
    /// text after the level, pids and session ids blanked), at most ten.
    pub fn log_notes(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.tmp.path().join("dovecot.log")).unwrap_or_default();
        let mut seen: Vec<(String, usize)> = Vec::new();
        for line in text.lines() {
            let Some(at) = ["Warning: ", "Error: ", "Fatal: ", "Panic: "]
                .iter()
                .find_map(|level| line.find(level))
            else {
                continue;
            };
            let note: String = line[at..]
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            match seen.iter_mut().find(|(n, _)| *n == note) {
                Some((_, count)) => *count += 1,
                None => seen.push((note, 1)),
            }
        }
        seen.into_iter()
            .take(10)
            .map(|(note, count)| format!("{count}× {note}"))
            .collect()
    }
}

impl Drop for DovecotSide {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The instance name: process titles read `dovecot-imapbench/imap-login` and so on.
const INSTANCE: &str = "imapbench";

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {uid} {}: {e}", path.display()));
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Dovecot's configuration: only what the private instance needs (its folders, addresses,
/// users, plaintext logins on loopback as on mailnode's side) and the raised limits; everything
/// else is Dovecot's default.
fn dovecot_conf(dir: &Path, mail: &Path, passwd: &Path) -> String {
    format!(
        "# Private Dovecot of the IMAP benchmark; everything not set here is Dovecot's default.
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = {INSTANCE}
protocols = imap pop3 lmtp
listen = {IP}
ssl = no
# Plaintext logins without TLS, as mailnode's allow_plaintext_login on its side (loopback).
disable_plaintext_auth = no
log_path = {dir}/dovecot.log
mail_location = maildir:{mail}/%d/%n
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
  default_fields = uid={MAIL_UID} gid={MAIL_UID} home={mail}/%d/%n
}}
# Raised limits (shipped values in brackets). Login processes, one per connection in login
# (imap-login and pop3-login inherit it) [100]: 200 clients log in at once.
default_process_limit = 1000
# Connections a service process accepts (anvil, log, auth, config serve every session
# process) [1000]: 10,000 idle sessions.
default_client_limit = 12000
# Sessions of one user from one address [10]: the idle sessions share 200 users and one
# client address.
mail_max_userip_connections = 1000
service imap {{
  # One process per session [1024].
  process_limit = 11000
}}
service imap-login {{
  inet_listener imap {{
    address = {IP}
    port = {IMAP_PORT}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {IP}
    port = {POP3_PORT}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {IP}
    port = {LMTP_PORT}
  }}
}}
",
        dir = dir.display(),
        mail = mail.display(),
        passwd = passwd.display(),
    )
}
