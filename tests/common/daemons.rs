//! Real scanner daemons for tests: ClamAV's clamd (Debian `clamav-daemon`) and SpamAssassin's
//! spamd (Debian `spamassassin`), each started as a child in its own process group on a
//! loopback address the test chooses, with its configuration in its own temporary folder,
//! waited for until it answers its protocol's PING, and stopped (TERM, then KILL, the whole
//! group) when dropped or [`Daemon::stop`]ped.
//!
//! - clamd never downloads signatures: its database is one MD5 signature of the EICAR test
//!   file (`eicar.hdb`, reported as [`EICAR_FOUND`]); `StreamMaxLength 2M`; archive limits
//!   (`MaxFileSize 10M`, `MaxScanSize 20M`, `MaxRecursion 8`, `MaxFiles 1000`) with
//!   `AlertExceedsMax yes`, so an archive bomb is reported, not passed.
//! - spamd uses the Debian rules in /usr/share/spamassassin with the package's plugin loads,
//!   no network tests, no Bayes, no user configuration, `required_score 5.0`.
//!
//! Never reaches the network beyond the given loopback address. A start returns `None`, after
//! saying so on stderr, only when the daemon's binary is not installed (the test then skips);
//! any other start-up failure panics with the daemon's logs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

/// The EICAR anti-virus test file.
pub const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// The name [`Clamd`]'s database gives the EICAR signature.
pub const EICAR_SIGNATURE: &str = "Eicar-Test-Signature";
/// What clamd reports for EICAR with that database (not an official ClamAV signature).
pub const EICAR_FOUND: &str = "Eicar-Test-Signature.UNOFFICIAL";
/// How long a daemon may take to answer after its start (spamd parses its rules first).
const START_WITHIN: Duration = Duration::from_secs(60);

/// A message (CRLF line ends) carrying EICAR as a base64 MIME attachment: only a scanner that
/// decodes MIME sees the EICAR bytes.
pub fn eicar_mail(from: &str, to: &str, subject: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(EICAR);
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nSee the attachment.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n{b64}\r\n--b1--\r\n"
    )
}

/// The daemon's path, or `None` when it is not installed.
pub fn find(binary: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"])
        .map(|d| Path::new(d).join(binary))
        .find(|p| p.is_file());
    found
}

/// A port free on `ip` now (the daemon binds it a moment later).
pub fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("bind a port on {ip} (is its /24 routed to lo?): {e}"))
        .port()
}

/// A daemon started in its own process group, stopped (TERM, then KILL) on drop.
pub struct Daemon {
    name: &'static str,
    child: Child,
    /// The daemon's own log file (clamd's `LogFile`; spamd logs to stderr).
    log: PathBuf,
    /// Configuration, database, sockets and logs; removed on drop.
    dir: tempfile::TempDir,
    stopped: bool,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, dir: tempfile::TempDir, log: PathBuf) -> Daemon {
        let out = std::fs::File::create(dir.path().join("stdio.log")).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Daemon {
            name,
            child,
            log,
            dir,
            stopped: false,
        }
    }

    /// The daemon's log and its stdout/stderr, for failure messages.
    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- {} log ---\n{}\n--- stdout/stderr ---\n{}",
            self.name,
            read(&self.log),
            read(&self.dir.path().join("stdio.log"))
        )
    }

    /// Polls `ready` until it holds, the daemon exits, or `within` passes.
    fn wait_ready(&mut self, within: Duration, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        loop {
            if ready() {
                eprintln!("{} ready after {:?}", self.name, start.elapsed());
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited during startup ({status})\n{}",
                    self.name,
                    self.logs()
                );
            }
            if start.elapsed() > within {
                panic!(
                    "{} did not answer within {within:?} of its start\n{}",
                    self.name,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the daemon and its children (TERM, KILL after 5 s) and reaps it; once its
    /// listening sockets are closed, connections to them are refused. Idempotent.
    pub fn stop(&mut self) {
        use nix::sys::signal::{killpg, Signal};
        use nix::unistd::Pid;
        if self.stopped {
            return;
        }
        self.stopped = true;
        // The group holds the daemon and its children (spamd preforks).
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = killpg(group, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Also reaches children that outlived their parent.
        let _ = killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request/answer exchange with a daemon that closes after answering; `None` on any error.
fn exchange(addr: &str, request: &[u8]) -> Option<String> {
    let addr: SocketAddr = addr.parse().ok()?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(request).ok()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    Some(String::from_utf8_lossy(&answer).into_owned())
}

// ---------------------------------------------------------------- clamd

/// A running clamd with the EICAR-only database.
pub struct Clamd {
    pub daemon: Daemon,
    /// `ip:port` of its TCP socket.
    pub addr: String,
    /// The path of its Unix socket.
    pub unix: String,
}

impl Clamd {
    /// Starts clamd listening on `ip` (a free port) and on a Unix socket, and waits until it
    /// answers `PING`. `None` when clamd is not installed.
    pub fn start(ip: &str) -> Option<Clamd> {
        let Some(binary) = find("clamd") else {
            eprintln!("SKIP: clamd is not installed (Debian package clamav-daemon)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let db = d.join("db");
        std::fs::create_dir(&db).unwrap();
        let md5 = "44d88612fea8a8f36de82e1278abb02f";
        std::fs::write(
            db.join("eicar.hdb"),
            format!("{md5}:{}:{EICAR_SIGNATURE}\n", EICAR.len()),
        )
        .unwrap();
        let port = free_port(ip);
        let unix = d.join("clamd.sock");
        let log = d.join("clamd.log");
        let conf = d.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nTCPAddr {ip}\nTCPSocket {port}\nLocalSocket {}\n\
                 DatabaseDirectory {}\nTemporaryDirectory {}\nLogFile {}\nLogVerbose yes\n\
                 PidFile {}\nStreamMaxLength 2M\nMaxThreads 4\nSelfCheck 3600\n\
                 MaxFileSize 10M\nMaxScanSize 20M\nMaxRecursion 8\nMaxFiles 1000\n\
                 AlertExceedsMax yes\n",
                unix.display(),
                db.display(),
                d.display(),
                log.display(),
                d.join("clamd.pid").display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(binary);
        cmd.arg("-c").arg(&conf);
        let mut daemon = Daemon::spawn("clamd", cmd, dir, log);
        let addr = format!("{ip}:{port}");
        daemon.wait_ready(START_WITHIN, || {
            exchange(&addr, b"zPING\0").is_some_and(|a| a.starts_with("PONG"))
        });
        Some(Clamd {
            daemon,
            addr,
            unix: unix.to_string_lossy().into_owned(),
        })
    }
}

// ---------------------------------------------------------------- spamd

/// A running spamd with the Debian rules and no network tests.
pub struct Spamd {
    pub daemon: Daemon,
    /// `ip:port` it listens on.
    pub addr: String,
}

impl Spamd {
    /// Starts spamd on `ip` (a free port), children running as `nobody`, and waits until it
    /// answers `PING` (rules are parsed first: a few seconds). `None` when spamd is not
    /// installed.
    pub fn start(ip: &str) -> Option<Spamd> {
        let Some(binary) = find("spamd") else {
            eprintln!("SKIP: spamd is not installed (Debian package spamassassin)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        // spamd runs its children as `nobody`: the site configuration must be readable.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let site = d.join("site");
        std::fs::create_dir(&site).unwrap();
        // The plugin loads shipped with the package (without sa-compile.pre: no compiled
        // rules needed), and no network tests.
        let mut pre = 0;
        for entry in std::fs::read_dir("/etc/spamassassin")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".pre") && name != "sa-compile.pre" {
                std::fs::copy(entry.path(), site.join(&name)).unwrap();
                pre += 1;
            }
        }
        if pre == 0 {
            std::fs::write(
                site.join("init.pre"),
                "loadplugin Mail::SpamAssassin::Plugin::Check\n",
            )
            .unwrap();
        }
        std::fs::write(
            site.join("local.cf"),
            "skip_rbl_checks 1\nuse_razor2 0\nuse_pyzor 0\ndns_available no\nuse_bayes 0\n\
             bayes_auto_learn 0\nrequired_score 5.0\n",
        )
        .unwrap();
        for entry in std::fs::read_dir(&site).unwrap().flatten() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        std::fs::set_permissions(&site, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port(ip);
        let addr = format!("{ip}:{port}");
        let log = d.join("stdio.log");
        let mut cmd = Command::new(binary);
        cmd.arg("--listen")
            .arg(&addr)
            .arg("--allowed-ips=127.0.0.0/8")
            .arg(format!("--siteconfigpath={}", site.display()))
            .arg(format!("--pidfile={}", d.join("spamd.pid").display()))
            .args(["-x", "-L", "--username=nobody", "--syslog=stderr"])
            .args(["--max-children=2", "--min-children=1"])
            .env("HOME", &d);
        let mut daemon = Daemon::spawn("spamd", cmd, dir, log);
        daemon.wait_ready(START_WITHIN, || {
            exchange(&addr, b"PING SPAMC/1.5\r\n\r\n").is_some_and(|a| a.contains(" 0 PONG"))
        });
        Some(Spamd { daemon, addr })
    }
}
