//! The node's configuration: one TOML file, parsed and validated before any port is bound.
//!
//! Unknown keys are errors (`deny_unknown_fields`), so a typo never silently falls back to a
//! default. Every error names the offending key and the reason; the binary exits with status 64
//! (EX_USAGE's neighbour EX_DATAERR is 65; we follow the issue's contract of 64). `Config::dev`
//! builds the embedded defaults of `mailnode --dev`. This module never touches the network.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cluster::RaftSettings;
use crate::imap::ImapConfig;
use crate::pop3::Pop3Config;
use crate::queue::QueueConfig;
use crate::smtp::SmtpConfig;

/// Exit status for an invalid configuration or command line.
pub const EXIT_CONFIG: i32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("{path}: `{key}`: {reason}")]
    Invalid {
        path: String,
        key: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub cluster: ClusterSection,
    pub http: HttpSection,
    #[serde(default)]
    pub shutdown: ShutdownSection,
    #[serde(default)]
    pub log: LogSection,
    /// `/metrics` and the recording behind it.
    #[serde(default)]
    pub metrics: MetricsSection,
    /// SMTP listeners and where local mail is delivered.
    #[serde(default)]
    pub mail: MailSection,
    /// Limits and names of the SMTP/LMTP sessions.
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// The node's mail queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// The message store this node serves over LMTP (until the failover module mounts it).
    pub mailstore: Option<MailstoreSection>,
    /// Limits of the POP3 sessions (the listeners are in `[mailstore]`).
    #[serde(default)]
    pub pop3: Pop3Config,
    /// Limits of the IMAP sessions (the listeners are in `[mailstore]`).
    #[serde(default)]
    pub imap: ImapConfig,
    /// Limits of the ManageSieve sessions (the listener is in `[mailstore]`).
    #[serde(default)]
    pub managesieve: crate::managesieve::ManageSieveConfig,
    /// The mailstore is served by whichever node holds the Raft lease (needs `[mailstore]`);
    /// absent: this node serves its `[mailstore]` whenever it runs.
    pub failover: Option<crate::failover::FailoverConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSection {
    /// SMTP MX listener (port 25); none: this node takes no inbound mail.
    pub mx_listen: Option<SocketAddr>,
    /// Submission with STARTTLS (port 587).
    pub submission_listen: Option<SocketAddr>,
    /// Submission over implicit TLS (port 465).
    pub submissions_listen: Option<SocketAddr>,
    /// LMTP address of the active mailstore of the `default` group (its virtual IP); local mail
    /// waits in the queue while it is unset or unreachable.
    pub lmtp_addr: Option<SocketAddr>,
    /// LMTP addresses of the other `mail_host` groups' active mailstores (group name → address),
    /// for sites with several mailstores; users of a group missing here wait in the queue.
    #[serde(default)]
    pub lmtp_groups: BTreeMap<String, SocketAddr>,
    /// Secret(s) of the Sender Rewriting Scheme, one per line (the first signs, all verify),
    /// at least 16 characters each: the same file on every node. It signs the envelope sender
    /// of mail that users' Sieve scripts redirect, and the MX accepts bounces only to
    /// addresses it signed. Unset: redirects are kept in INBOX instead (dev mode creates
    /// `<data_dir>/srs.secret`).
    #[serde(default)]
    pub srs_secret_file: Option<PathBuf>,
    #[serde(default = "d_mail_connections")]
    pub max_connections: usize,
    #[serde(default = "d_mail_per_ip")]
    pub max_per_ip: usize,
    #[serde(default = "d_mail_idle")]
    pub idle_timeout_secs: u64,
}

impl Default for MailSection {
    fn default() -> Self {
        MailSection {
            mx_listen: None,
            submission_listen: None,
            submissions_listen: None,
            lmtp_addr: None,
            lmtp_groups: BTreeMap::new(),
            srs_secret_file: None,
            max_connections: d_mail_connections(),
            max_per_ip: d_mail_per_ip(),
            idle_timeout_secs: d_mail_idle(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailstoreSection {
    /// Root of the message store (the shared volume's mount point).
    pub root: PathBuf,
    /// LMTP listener of the mailstore.
    pub lmtp_listen: SocketAddr,
    /// Initialise an empty store at `root` (dev and first installation only: in production a
    /// missing store means the volume is not mounted).
    #[serde(default)]
    pub create_if_missing: bool,
    /// IMAP with STARTTLS (port 143).
    #[serde(default)]
    pub imap_listen: Option<SocketAddr>,
    /// IMAP over implicit TLS (port 993).
    #[serde(default)]
    pub imaps_listen: Option<SocketAddr>,
    /// POP3 with STLS (port 110).
    #[serde(default)]
    pub pop3_listen: Option<SocketAddr>,
    /// POP3 over implicit TLS (port 995).
    #[serde(default)]
    pub pop3s_listen: Option<SocketAddr>,
    /// ManageSieve with STARTTLS (port 4190).
    #[serde(default)]
    pub managesieve_listen: Option<SocketAddr>,
    /// Allow IMAP LOGIN/AUTHENTICATE, POP3 USER/PASS/AUTH and ManageSieve AUTHENTICATE
    /// before TLS. Off in production
    /// (IMAP then advertises LOGINDISABLED); the dev node on loopback turns it on.
    #[serde(default)]
    pub allow_plaintext_login: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Raft node id: unique in the cluster, never reused for a different machine.
    pub id: u64,
    /// Operator-facing name; also the name in the node certificate.
    pub name: String,
    /// Local (not shared) disk: Raft store, queue, admin token.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Raft RPC listener (mutual TLS).
    pub listen: SocketAddr,
    /// Address peers dial (`host:port`); defaults to `listen`.
    pub advertise: Option<String>,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default = "d_heartbeat")]
    pub heartbeat_ms: u64,
    #[serde(default = "d_election_min")]
    pub election_timeout_min_ms: u64,
    #[serde(default = "d_election_max")]
    pub election_timeout_max_ms: u64,
    #[serde(default = "d_snapshot_every")]
    pub snapshot_every: u64,
    #[serde(default = "d_keep_after_snapshot")]
    pub keep_after_snapshot: u64,
    #[serde(default = "d_write_timeout")]
    pub write_timeout_ms: u64,
    /// Initialize a new one-node cluster at first start if this node has no Raft state yet.
    /// Set it on the first node only; `mailctl cluster bootstrap` does the same on demand.
    #[serde(default)]
    pub bootstrap: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Admin API, webmail, /metrics, /healthz.
    pub listen: SocketAddr,
    /// `host:port` other nodes and `mailctl` use; defaults to `listen`.
    pub advertise: Option<String>,
    /// Certificate for HTTPS; defaults to the cluster node certificate.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// File holding the bearer token of the admin API.
    pub admin_token_file: PathBuf,
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    #[serde(default = "d_max_per_ip")]
    pub max_per_ip: usize,
    #[serde(default = "d_idle_timeout")]
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownSection {
    /// How long sessions get to finish after SIGTERM before they are cut.
    #[serde(default = "d_grace")]
    pub grace_secs: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection {
            grace_secs: d_grace(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter, e.g. `info` or `mailnode=debug,openraft=warn`.
    pub level: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Record metrics and serve `/metrics` (off: every recording point is one atomic load and
    /// `/metrics` answers 404; for measuring what instrumentation costs).
    #[serde(default = "d_true")]
    pub enabled: bool,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { enabled: true }
    }
}

fn d_true() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

fn d_heartbeat() -> u64 {
    100
}
fn d_election_min() -> u64 {
    400
}
fn d_election_max() -> u64 {
    800
}
fn d_snapshot_every() -> u64 {
    10_000
}
fn d_keep_after_snapshot() -> u64 {
    1_000
}
fn d_write_timeout() -> u64 {
    5_000
}
fn d_max_connections() -> usize {
    1024
}
fn d_max_per_ip() -> usize {
    64
}
fn d_idle_timeout() -> u64 {
    60
}
fn d_grace() -> u64 {
    10
}
fn d_mail_connections() -> usize {
    1000
}
fn d_mail_per_ip() -> usize {
    20
}
fn d_mail_idle() -> u64 {
    300
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            reason: e.to_string().trim_end().to_string(),
        })?;
        cfg.validate(origin)?;
        Ok(cfg)
    }

    /// The embedded defaults of `mailnode --dev`: one node, everything under `dir`, the dev
    /// port map of DESIGN.md on 127.0.0.1.
    pub fn dev(dir: &Path) -> Config {
        let tls = dir.join("tls");
        Config {
            node: NodeSection {
                id: 1,
                name: "dev".into(),
                data_dir: dir.to_path_buf(),
            },
            cluster: ClusterSection {
                listen: "127.0.0.1:7400".parse().expect("literal address"),
                advertise: None,
                ca_file: tls.join("ca.pem"),
                cert_file: tls.join("node.pem"),
                key_file: tls.join("node.key"),
                heartbeat_ms: d_heartbeat(),
                election_timeout_min_ms: d_election_min(),
                election_timeout_max_ms: d_election_max(),
                snapshot_every: d_snapshot_every(),
                keep_after_snapshot: d_keep_after_snapshot(),
                write_timeout_ms: d_write_timeout(),
                bootstrap: true,
            },
            http: HttpSection {
                listen: "127.0.0.1:8080".parse().expect("literal address"),
                advertise: None,
                cert_file: None,
                key_file: None,
                admin_token_file: dir.join("admin.token"),
                max_connections: d_max_connections(),
                max_per_ip: d_max_per_ip(),
                idle_timeout_secs: d_idle_timeout(),
            },
            shutdown: ShutdownSection::default(),
            log: LogSection::default(),
            metrics: MetricsSection::default(),
            mail: MailSection {
                mx_listen: Some(local(2525)),
                submission_listen: Some(local(2587)),
                submissions_listen: Some(local(2465)),
                lmtp_addr: Some(local(2424)),
                srs_secret_file: Some(dir.join("srs.secret")),
                ..MailSection::default()
            },
            smtp: SmtpConfig {
                spool_dir: Some(dir.join("spool")),
                ..SmtpConfig::default()
            },
            queue: QueueConfig::default(),
            mailstore: Some(MailstoreSection {
                root: dir.join("mailstore"),
                lmtp_listen: local(2424),
                create_if_missing: true,
                imap_listen: Some(local(2143)),
                imaps_listen: Some(local(2993)),
                pop3_listen: Some(local(2110)),
                pop3s_listen: Some(local(2995)),
                managesieve_listen: Some(local(4190)),
                allow_plaintext_login: true,
            }),
            pop3: Pop3Config::default(),
            imap: ImapConfig::default(),
            managesieve: crate::managesieve::ManageSieveConfig::default(),
            failover: None,
        }
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| ConfigError::Invalid {
            path: origin.into(),
            key: key.into(),
            reason,
        };
        if self.node.id == 0 {
            return Err(bad("node.id", "must be a positive integer".into()));
        }
        if self.node.name.is_empty()
            || !self
                .node
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(bad(
                "node.name",
                format!(
                    "{:?} must be non-empty letters, digits, '-', '.' or '_'",
                    self.node.name
                ),
            ));
        }
        if self.node.data_dir.as_os_str().is_empty() {
            return Err(bad("node.data_dir", "must not be empty".into()));
        }
        let c = &self.cluster;
        if c.heartbeat_ms == 0 {
            return Err(bad("cluster.heartbeat_ms", "must be positive".into()));
        }
        if c.election_timeout_min_ms <= 2 * c.heartbeat_ms {
            return Err(bad(
                "cluster.election_timeout_min_ms",
                format!("must be more than twice cluster.heartbeat_ms ({}), or followers start elections between heartbeats", c.heartbeat_ms),
            ));
        }
        if c.election_timeout_max_ms <= c.election_timeout_min_ms {
            return Err(bad(
                "cluster.election_timeout_max_ms",
                "must be greater than election_timeout_min_ms".into(),
            ));
        }
        if c.snapshot_every == 0 {
            return Err(bad("cluster.snapshot_every", "must be positive".into()));
        }
        if c.write_timeout_ms < c.election_timeout_max_ms {
            return Err(bad(
                "cluster.write_timeout_ms",
                "must be at least election_timeout_max_ms, or writes fail during every election"
                    .into(),
            ));
        }
        if let Some(a) = &c.advertise {
            check_host_port(a).map_err(|r| bad("cluster.advertise", r))?;
        }
        if let Some(a) = &self.http.advertise {
            check_host_port(a).map_err(|r| bad("http.advertise", r))?;
        }
        if self.http.cert_file.is_some() != self.http.key_file.is_some() {
            return Err(bad(
                "http.cert_file",
                "http.cert_file and http.key_file go together".into(),
            ));
        }
        if self.http.max_connections == 0 {
            return Err(bad("http.max_connections", "must be positive".into()));
        }
        if self.http.max_per_ip == 0 || self.http.max_per_ip > self.http.max_connections {
            return Err(bad(
                "http.max_per_ip",
                "must be between 1 and http.max_connections".into(),
            ));
        }
        if self.http.idle_timeout_secs == 0 {
            return Err(bad("http.idle_timeout_secs", "must be positive".into()));
        }
        if let Err((key, reason)) = self.smtp.validate() {
            return Err(bad(&format!("smtp.{key}"), reason));
        }
        if let Err((key, reason)) = self.pop3.validate() {
            return Err(bad(&format!("pop3.{key}"), reason));
        }
        if let Err((key, reason)) = self.imap.validate() {
            return Err(bad(&format!("imap.{key}"), reason));
        }
        if let Err((key, reason)) = self.managesieve.validate() {
            return Err(bad(&format!("managesieve.{key}"), reason));
        }
        if let Some(fo) = &self.failover {
            if self.mailstore.is_none() {
                return Err(bad(
                    "failover",
                    "needs a [mailstore] section (the store this node serves when it holds the lease)".into(),
                ));
            }
            if let Err((key, reason)) = fo.validate() {
                return Err(bad(&format!("failover.{key}"), reason));
            }
        }
        if let Err(e) = self.queue.validate() {
            return Err(bad(&format!("queue.{}", e.key), e.reason));
        }
        if self.mail.max_connections == 0 {
            return Err(bad("mail.max_connections", "must be positive".into()));
        }
        if self.mail.max_per_ip == 0 || self.mail.max_per_ip > self.mail.max_connections {
            return Err(bad(
                "mail.max_per_ip",
                "must be between 1 and mail.max_connections".into(),
            ));
        }
        if self.mail.idle_timeout_secs == 0 {
            return Err(bad("mail.idle_timeout_secs", "must be positive".into()));
        }
        if self
            .mail
            .srs_secret_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(bad(
                "mail.srs_secret_file",
                "must name a file (e.g. /etc/mailnode/srs.secret, the same on every node)".into(),
            ));
        }
        if self
            .mail
            .lmtp_groups
            .contains_key(crate::directory::DEFAULT_MAIL_HOST)
        {
            return Err(bad(
                "mail.lmtp_groups",
                "the default group's address is mail.lmtp_addr".into(),
            ));
        }
        // Every listener on its own address.
        let mut seen: Vec<(&str, SocketAddr)> = Vec::new();
        let listeners = [
            ("cluster.listen", Some(self.cluster.listen)),
            ("http.listen", Some(self.http.listen)),
            ("mail.mx_listen", self.mail.mx_listen),
            ("mail.submission_listen", self.mail.submission_listen),
            ("mail.submissions_listen", self.mail.submissions_listen),
            (
                "mailstore.lmtp_listen",
                self.mailstore.as_ref().map(|m| m.lmtp_listen),
            ),
            (
                "mailstore.imap_listen",
                self.mailstore.as_ref().and_then(|m| m.imap_listen),
            ),
            (
                "mailstore.imaps_listen",
                self.mailstore.as_ref().and_then(|m| m.imaps_listen),
            ),
            (
                "mailstore.pop3_listen",
                self.mailstore.as_ref().and_then(|m| m.pop3_listen),
            ),
            (
                "mailstore.pop3s_listen",
                self.mailstore.as_ref().and_then(|m| m.pop3s_listen),
            ),
            (
                "mailstore.managesieve_listen",
                self.mailstore.as_ref().and_then(|m| m.managesieve_listen),
            ),
        ];
        for (key, addr) in listeners {
            let Some(addr) = addr else { continue };
            if let Some((other, _)) = seen.iter().find(|(_, a)| *a == addr && addr.port() != 0) {
                return Err(bad(key, format!("{addr} is already used by {other}")));
            }
            seen.push((key, addr));
        }
        Ok(())
    }

    pub fn raft_settings(&self) -> RaftSettings {
        let c = &self.cluster;
        RaftSettings {
            heartbeat: Duration::from_millis(c.heartbeat_ms),
            election_timeout_min: Duration::from_millis(c.election_timeout_min_ms),
            election_timeout_max: Duration::from_millis(c.election_timeout_max_ms),
            snapshot_every: c.snapshot_every,
            keep_after_snapshot: c.keep_after_snapshot,
            write_timeout: Duration::from_millis(c.write_timeout_ms),
        }
    }

    /// The Raft address peers dial.
    pub fn raft_advertise(&self) -> String {
        self.cluster
            .advertise
            .clone()
            .unwrap_or_else(|| self.cluster.listen.to_string())
    }

    /// The admin API address `mailctl` and peers use.
    pub fn http_advertise(&self) -> String {
        self.http
            .advertise
            .clone()
            .unwrap_or_else(|| self.http.listen.to_string())
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn check_host_port(s: &str) -> Result<(), String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("{s:?} is not host:port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[node]
id = 1
name = "n1"
data_dir = "/var/lib/mailnode"
[cluster]
listen = "10.0.0.1:7400"
ca_file = "/etc/mailnode/ca.pem"
cert_file = "/etc/mailnode/n1.pem"
key_file = "/etc/mailnode/n1.key"
[http]
listen = "10.0.0.1:443"
admin_token_file = "/etc/mailnode/admin.token"
"#;

    #[test]
    fn good_file_parses_with_defaults() {
        let c = Config::parse(GOOD, "t").unwrap();
        assert_eq!(c.cluster.heartbeat_ms, 100);
        assert_eq!(c.raft_advertise(), "10.0.0.1:7400");
        assert_eq!(c.shutdown.grace_secs, 10);
    }

    #[test]
    fn typo_names_the_key() {
        let text = GOOD.replace("listen = \"10.0.0.1:443\"", "lisen = \"10.0.0.1:443\"");
        let e = Config::parse(&text, "t").unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
    }

    #[test]
    fn bad_relations_name_the_key() {
        let cases = [
            (
                "[cluster]\n",
                "[cluster]\nheartbeat_ms = 300\n",
                "cluster.election_timeout_min_ms",
            ),
            ("id = 1", "id = 0", "node.id"),
            ("name = \"n1\"", "name = \"n 1\"", "node.name"),
            ("[http]\n", "[http]\nmax_per_ip = 0\n", "http.max_per_ip"),
            (
                "[cluster]\n",
                "[cluster]\nadvertise = \"nohost\"\n",
                "cluster.advertise",
            ),
            (
                "[http]\n",
                "[mail]\nsrs_secret_file = \"\"\n[http]\n",
                "mail.srs_secret_file",
            ),
        ];
        for (from, to, key) in cases {
            let text = GOOD.replacen(from, to, 1);
            let e = Config::parse(&text, "t").unwrap_err().to_string();
            assert!(e.contains(key), "{to}: {e}");
        }
    }

    #[test]
    fn wrong_type_is_reported() {
        let e = Config::parse(&GOOD.replace("id = 1", "id = \"one\""), "t")
            .unwrap_err()
            .to_string();
        assert!(e.contains("id"), "{e}");
    }

    #[test]
    fn dev_defaults_are_valid() {
        let c = Config::dev(Path::new("/tmp/x"));
        c.validate("dev").unwrap();
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.cluster.listen.port(), 7400);
    }
}
