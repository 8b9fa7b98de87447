//! The peer: Postfix → Dovecot LMTP from Debian, each a private instance of its own from files
//! in a temporary folder, with the packages' shipped durability settings untouched (Postfix's
//! queue files fsynced before the `250`; Dovecot's `mail_fsync = optimized`, which fsyncs a
//! delivered message before the LMTP `250`).
//!
//! Postfix (`postfix -c DIR start`): `smtpd` on 127.0.201.2:2525 accepting mail for the bench
//! domain's users (a `virtual_mailbox_maps` table: unknown users are refused at RCPT, as on
//! mailnode), handing it to Dovecot with `virtual_transport = lmtp:inet:127.0.201.3:2424`.
//! Dovecot (`dovecot -F -c FILE`): only the LMTP service, on 127.0.201.3:2424, a passwd-file
//! userdb of the same users, Maildir under the temporary folder, mail owned by `nobody`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mailnode_side::entries;
use crate::DOMAIN;

const POSTFIX: &str = "/usr/sbin/postfix";
const DOVECOT: &str = "/usr/sbin/dovecot";
const DOVECOT_LMTP: &str = "/usr/lib/dovecot/lmtp";
const SMTPD_ADDR: &str = "127.0.201.2:2525";
const LMTP_IP: &str = "127.0.201.3";
const LMTP_PORT: u16 = 2424;
/// Owner of the Maildirs (Dovecot refuses to deliver as root).
const MAIL_UID: u32 = 65534;

/// Why the peer cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    for f in [POSTFIX, DOVECOT, DOVECOT_LMTP] {
        if !Path::new(f).exists() {
            return Some(format!("{f} is missing"));
        }
    }
    for user in ["postfix", "dovecot", "dovenull"] {
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

/// `Postfix 3.7.11, Dovecot 2.3.19.1`.
pub fn version() -> String {
    let out = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let postfix = out("/usr/sbin/postconf", &["-dh", "mail_version"]);
    let dovecot = out(DOVECOT, &["--version"]);
    format!(
        "Postfix {postfix}, Dovecot {}",
        dovecot.split_whitespace().next().unwrap_or("?")
    )
}

pub struct PeerSide {
    /// Everything of both instances; removed on drop, after they are stopped.
    tmp: tempfile::TempDir,
    /// Postfix's config_directory (main.cf, master.cf, the recipient table).
    etc: PathBuf,
    /// Postfix's queue_directory.
    spool: PathBuf,
    /// Where the Maildirs are: `<mail>/<domain>/<user>/{new,cur,tmp}`.
    mail: PathBuf,
    /// Postfix's master, once started.
    master: Option<u32>,
    /// Dovecot's master, in the foreground (`-F`).
    dovecot: Option<Child>,
}

impl PeerSide {
    /// Writes both configurations, starts Dovecot, then Postfix, and waits until both answer.
    /// `process_limit` is Postfix's `default_process_limit` (shipped: 100).
    pub async fn start(users: &[String], process_limit: usize) -> PeerSide {
        let tmp = tempfile::tempdir().expect("temporary folder");
        let root = tmp.path().to_path_buf();
        // The daemons run as postfix, dovecot and nobody and open files by absolute path.
        chmod(&root, 0o755);
        let etc = root.join("postfix-etc");
        let spool = root.join("postfix-spool");
        let data = root.join("postfix-data");
        let dc = root.join("dovecot");
        let mail = root.join("mail");
        for d in [&etc, &spool, &data, &dc, &mail] {
            std::fs::create_dir_all(d).expect("peer folder");
        }
        chown(&data, "postfix");
        chown(&mail, &MAIL_UID.to_string());

        let mut side = PeerSide {
            tmp,
            etc,
            spool,
            mail,
            master: None,
            dovecot: None,
        };

        // Dovecot.
        let userdb = dc.join("users");
        let lines: String = users
            .iter()
            .map(|u| format!("{u}:{{PLAIN}}x::::::\n"))
            .collect();
        std::fs::write(&userdb, lines).expect("dovecot users");
        let conf = dc.join("dovecot.conf");
        std::fs::write(&conf, dovecot_conf(&dc, &side.mail, &userdb)).expect("dovecot.conf");
        let log = dc.join("stderr.log");
        let child = Command::new(DOVECOT)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("dovecot log"))
            .spawn()
            .expect("start dovecot");
        side.dovecot = Some(child);
        let lmtp: SocketAddr = format!("{LMTP_IP}:{LMTP_PORT}").parse().expect("address");
        side.wait_greeting(lmtp, "dovecot", &dc.join("dovecot.log"))
            .await;

        // Postfix.
        let table: String = users.iter().map(|u| format!("{u} x\n")).collect();
        std::fs::write(side.etc.join("vmailbox"), table).expect("postfix table");
        let main_cf = main_cf(&side.etc, &side.spool, &data, &root, process_limit);
        std::fs::write(side.etc.join("main.cf"), main_cf).expect("main.cf");
        std::fs::write(side.etc.join("master.cf"), MASTER_CF).expect("master.cf");
        // `start` runs `postfix check`, which creates the queue's subfolders with their owners.
        let status = side.postfix("start");
        let maillog = root.join("maillog");
        assert!(
            status,
            "postfix -c {} start failed: {}",
            side.etc.display(),
            tail(&maillog)
        );
        let pid_file = side.spool.join("pid/master.pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
            {
                side.master = Some(pid);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "postfix wrote no {}: {}",
                pid_file.display(),
                tail(&maillog)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        side.wait_greeting(side.mx(), "postfix", &maillog).await;
        side
    }

    /// Waits for a `220` from `addr`, or panics with the log's tail.
    async fn wait_greeting(&mut self, addr: SocketAddr, name: &str, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.dovecot.as_mut().map(|c| c.try_wait()) {
                panic!("dovecot exited ({status}): {}", tail(log));
            }
            if crate::greets(addr).await {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not answer on {addr}: {}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `postfix -c ETC VERB`; whether it succeeded.
    fn postfix(&self, verb: &str) -> bool {
        Command::new(POSTFIX)
            .arg("-c")
            .arg(&self.etc)
            .arg(verb)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `postfix reload`: the master starts a new generation of its services, and the processes
    /// of the old one exit as soon as they are idle.
    pub fn reload(&self) {
        assert!(
            self.postfix("reload"),
            "postfix reload failed: {}",
            self.log_tail()
        );
    }

    /// Postfix's smtpd.
    pub fn mx(&self) -> SocketAddr {
        SMTPD_ADDR.parse().expect("address")
    }

    /// Postfix's master and Dovecot's master: every process of the peer descends from one.
    pub fn roots(&self) -> Vec<u32> {
        self.master
            .into_iter()
            .chain(self.dovecot.as_ref().map(Child::id))
            .collect()
    }

    /// Counts the messages in every Maildir (`new/` and `cur/`). Dovecot renames a message into
    /// `new/` once it is fsynced, just before the LMTP `250`.
    pub fn in_mailboxes(&self) -> Arc<dyn Fn() -> usize + Send + Sync> {
        let domain = self.mail.join(DOMAIN);
        Arc::new(move || {
            entries(&domain)
                .iter()
                .map(|u| entries(&u.join("new")).len() + entries(&u.join("cur")).len())
                .sum()
        })
    }

    /// Whether Postfix's queue holds no message (no file under incoming, active, deferred,
    /// hold or maildrop).
    pub fn queue_empty(&self) -> bool {
        fn any_file(dir: &Path) -> bool {
            entries(dir)
                .iter()
                .any(|p| if p.is_dir() { any_file(p) } else { true })
        }
        !["incoming", "active", "deferred", "hold", "maildrop"]
            .iter()
            .any(|q| any_file(&self.spool.join(q)))
    }

    /// Postfix's log, for a failure report.
    pub fn log_tail(&self) -> String {
        format!(
            "{}\n{}",
            tail(&self.tmp.path().join("maillog")),
            tail(&self.tmp.path().join("dovecot/dovecot.log"))
        )
    }
}

impl Drop for PeerSide {
    /// Stops Postfix (`postfix stop`, then SIGKILL to its master if it lingers) and Dovecot
    /// (SIGTERM, then SIGKILL), waiting for each, before the folder is removed.
    fn drop(&mut self) {
        if let Some(master) = self.master.take() {
            self.postfix("stop");
            if !wait_gone(master, Duration::from_secs(15)) {
                kill(master, nix::sys::signal::Signal::SIGKILL);
                wait_gone(master, Duration::from_secs(5));
            }
        }
        if let Some(mut child) = self.dovecot.take() {
            kill(child.id(), nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn kill(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Waits until `pid` has exited (it is not our child: Postfix's master daemonizes).
fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").starts_with(" Z"));
        if !alive {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn chown(path: &Path, user: &str) {
    let ok = Command::new("chown")
        .arg(user)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "chown {user} {} failed", path.display());
}

/// The last lines of a log file.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Postfix's main.cf: Debian's shipped defaults except where the private instance must differ
/// (its folders, its address, its log file, the virtual domain) and `default_process_limit`.
fn main_cf(etc: &Path, spool: &Path, data: &Path, root: &Path, process_limit: usize) -> String {
    format!(
        "# Private Postfix of the mail benchmark; everything not set here is Postfix's default.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = peer.bench.example
mydestination =
# 127.0.201.2 is not an interface address; master.cf binds smtpd to it explicitly.
inet_interfaces = loopback-only
inet_protocols = ipv4
# The default (mynetworks_style = host) would include 127.0.0.0/8 too: the load generator's
# clients are exempt from anvil's per-client limits, as mailnode's per-IP limit is raised.
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{etc}/vmailbox
virtual_transport = lmtp:inet:{LMTP_IP}:{LMTP_PORT}
# Shipped: 100. One smtpd process per session: raised so that the idle sessions fit.
default_process_limit = {process_limit}
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
biff = no
",
        spool = spool.display(),
        data = data.display(),
        etc = etc.display(),
        root = root.display(),
    )
}

/// Debian's master.cf, minus the services a virtual-only relay never uses (local, virtual,
/// pipe transports), chroot off (the private folders are outside Debian's chroot), smtpd on
/// the benchmark's address, and the postlog service for `maillog_file`.
const MASTER_CF: &str = "\
127.0.201.2:2525 inet n - n - - smtpd
pickup     unix  n - n 60   1 pickup
cleanup    unix  n - n -    0 cleanup
qmgr       unix  n - n 300  1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -    - trivial-rewrite
bounce     unix  - - n -    0 bounce
defer      unix  - - n -    0 bounce
trace      unix  - - n -    0 bounce
verify     unix  - - n -    1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -    - proxymap
proxywrite unix  - - n -    1 proxymap
smtp       unix  - - n -    - smtp
relay      unix  - - n -    - smtp
showq      unix  n - n -    - showq
error      unix  - - n -    - error
retry      unix  - - n -    - error
discard    unix  - - n -    - discard
lmtp       unix  - - n -    - lmtp
anvil      unix  - - n -    1 anvil
scache     unix  - - n -    1 scache
postlog    unix-dgram n - n - 1 postlogd
";

/// Dovecot's configuration: only what the private instance needs; everything else (notably
/// `mail_fsync = optimized`) is Dovecot's default.
fn dovecot_conf(dir: &Path, mail: &Path, userdb: &Path) -> String {
    format!(
        "# Private Dovecot of the mail benchmark; everything not set here is Dovecot's default.
base_dir = {dir}/run
state_dir = {dir}/state
instance_name = mailbench
protocols = lmtp
listen = {LMTP_IP}
ssl = no
log_path = {dir}/dovecot.log
mail_location = maildir:{mail}/%d/%n
passdb {{
  driver = passwd-file
  args = {userdb}
}}
userdb {{
  driver = passwd-file
  args = {userdb}
  default_fields = uid={MAIL_UID} gid={MAIL_UID} home={mail}/%d/%n
}}
service lmtp {{
  inet_listener lmtp {{
    address = {LMTP_IP}
    port = {LMTP_PORT}
  }}
}}
",
        dir = dir.display(),
        mail = mail.display(),
        userdb = userdb.display(),
    )
}
