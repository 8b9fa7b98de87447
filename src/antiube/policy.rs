//! The anti-UBE policy: what every stage checks and what each result does. One document,
//! replicated cluster-wide through the control plane, so every MX enforces the same policy.
//!
//! A [`PolicyDoc`] is what the operator writes: the settings as TOML text plus the named
//! Postfix maps it refers to (`header_checks = "pcre:spam_headers"`). [`PolicyDoc::compile`]
//! turns it into a [`Policy`]: settings parsed with every key checked, maps compiled, every
//! reference resolved. A bad document is refused whole with the file (or map) and line; the
//! node keeps the policy it had.
//!
//! Never: do I/O. Security: the document is operator input; everything it bounds (timeouts,
//! sizes, counts) is validated here so a careless value cannot disable a limit.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

use super::checks::{Dialect, Limits, Table};

/// The document the operator edits and the control plane replicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDoc {
    /// The settings, TOML (see [`Settings`]); empty means every default.
    pub settings: String,
    /// Named maps in Postfix's regexp/pcre table format, by name.
    #[serde(default)]
    pub maps: BTreeMap<String, String>,
}

/// Why a document was refused. Displays as `name:line: what`, `name` being `policy` for the
/// settings or the map's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}:{line}: {message}")]
pub struct PolicyError {
    /// `policy` or the map's name.
    pub name: String,
    /// 1-based line (0 when the error is about the document as a whole).
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl PolicyError {
    fn settings(line: usize, message: impl Into<String>) -> Self {
        PolicyError {
            name: "policy".into(),
            line,
            message: message.into(),
        }
    }
}

/// The most a map name may be: it appears in errors, URLs and file names.
pub const MAX_MAP_NAME: usize = 64;
/// The most maps one policy may hold.
pub const MAX_MAPS: usize = 64;
/// The most bytes of one map's text (a large SecuritySage map is a few hundred KiB).
pub const MAX_MAP_BYTES: usize = 4 * 1024 * 1024;

/// Whether `name` may name a map: 1–64 of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn valid_map_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MAP_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A compiled policy: the settings and the compiled maps they name.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The parsed settings.
    pub settings: Settings,
    /// `header_checks`, compiled.
    pub header_checks: Option<Arc<Table>>,
    /// `mime_header_checks`, compiled.
    pub mime_header_checks: Option<Arc<Table>>,
    /// `body_checks`, compiled.
    pub body_checks: Option<Arc<Table>>,
}

impl PolicyDoc {
    /// Parses and checks the settings, compiles every map (referenced or not: a map that is
    /// stored must be valid) and resolves the references.
    pub fn compile(&self) -> Result<Policy, PolicyError> {
        if self.maps.len() > MAX_MAPS {
            return Err(PolicyError::settings(
                0,
                format!("{} maps; at most {MAX_MAPS}", self.maps.len()),
            ));
        }
        let settings: Settings = toml::from_str(&self.settings).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                self.settings[..s.start.min(self.settings.len())]
                    .matches('\n')
                    .count()
                    + 1
            });
            PolicyError::settings(line, e.message().to_string())
        })?;
        settings
            .validate()
            .map_err(|m| PolicyError::settings(0, m))?;
        let mut compiled: BTreeMap<&str, (Dialect, Arc<Table>)> = BTreeMap::new();
        let wanted = |r: &Option<MapRef>| r.as_ref().map(|m| (m.name.clone(), m.dialect));
        let refs = [
            ("header_checks", wanted(&settings.content.header_checks)),
            (
                "mime_header_checks",
                wanted(&settings.content.mime_header_checks),
            ),
            ("body_checks", wanted(&settings.content.body_checks)),
        ];
        for (name, text) in &self.maps {
            if !valid_map_name(name) {
                return Err(PolicyError::settings(
                    0,
                    format!(
                        "map name {name:?}: use 1-{MAX_MAP_NAME} letters, digits, '.', '_' or '-'"
                    ),
                ));
            }
            if text.len() > MAX_MAP_BYTES {
                return Err(PolicyError {
                    name: name.clone(),
                    line: 0,
                    message: format!("{} bytes; at most {MAX_MAP_BYTES}", text.len()),
                });
            }
            // A map referenced as pcre: compiles as pcre; otherwise as regexp.
            let dialect = refs
                .iter()
                .find_map(|(_, r)| r.as_ref().filter(|(n, _)| n == name).map(|(_, d)| *d))
                .unwrap_or(Dialect::Regexp);
            let table =
                Table::parse(name, text, dialect, &Limits::default()).map_err(|e| PolicyError {
                    name: e.name.clone(),
                    line: e.line,
                    message: e.kind.to_string(),
                })?;
            compiled.insert(name, (dialect, Arc::new(table)));
        }
        let mut resolved = Vec::new();
        for (key, r) in refs {
            match r {
                None => resolved.push(None),
                Some((name, _)) => match compiled.get(name.as_str()) {
                    Some((_, t)) => resolved.push(Some(t.clone())),
                    None => {
                        return Err(PolicyError::settings(
                            0,
                            format!(
                                "content.{key} names the map {name:?}, which is not stored: add it with `mailctl policy map put {name} FILE` first"
                            ),
                        ))
                    }
                },
            }
        }
        let mut it = resolved.into_iter();
        Ok(Policy {
            settings,
            header_checks: it.next().flatten(),
            mime_header_checks: it.next().flatten(),
            body_checks: it.next().flatten(),
        })
    }
}

/// A reference to a stored map with its dialect: `regexp:name` or `pcre:name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRef {
    /// `Regexp` or `Pcre`.
    pub dialect: Dialect,
    /// The stored map's name.
    pub name: String,
}

impl FromStr for MapRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (dialect, name) = match s.split_once(':') {
            Some(("regexp", n)) => (Dialect::Regexp, n),
            Some(("pcre", n)) => (Dialect::Pcre, n),
            _ => {
                return Err(format!(
                    "{s:?}: write regexp:NAME or pcre:NAME (NAME a map stored with `mailctl policy map put`)"
                ))
            }
        };
        if !valid_map_name(name) {
            return Err(format!("{s:?}: invalid map name"));
        }
        Ok(MapRef {
            dialect,
            name: name.to_string(),
        })
    }
}

impl<'de> Deserialize<'de> for MapRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IP network, `a.b.c.d/n`, `x::/n` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Whether `ip` is inside (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Net {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or network (a.b.c.d/n, x::/n)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?
        };
        Ok(Net { addr, prefix })
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What to do when a check cannot answer (DNS timeout or SERVFAIL, scanner down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Answer `451 4.7.x`: the sender retries later.
    Tempfail,
    /// Go on as if the check had found nothing (logged and counted).
    Skip,
}

/// All settings. Every section and key is optional; unknown keys are refused.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Connection stage: limits, allowlists, pregreet, reverse DNS.
    pub connection: ConnectionSettings,
    /// DNS blocklists of the client address.
    pub dnsbl: DnsblSettings,
    /// SPF of MAIL FROM and HELO.
    pub spf: SpfSettings,
    /// Greylisting.
    pub greylist: GreylistSettings,
    /// Content: maps, scoring, thresholds, MIME limits.
    pub content: ContentSettings,
    /// DKIM and DMARC.
    pub dkim: DkimSettings,
    /// ClamAV over clamd's INSTREAM.
    pub clamd: Option<ScannerSettings>,
    /// SpamAssassin's spamd.
    pub spamd: Option<SpamdSettings>,
    /// DNS for every lookup of the policy.
    pub dns: DnsSettings,
}

/// Connection stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionSettings {
    /// Clients that skip every check (DNSBL, pregreet, reverse DNS, SPF, greylisting,
    /// scoring; viruses are still refused), like Postfix's `mynetworks`. Default: loopback
    /// (`127.0.0.0/8`, `::1`), so local programs (webmail, monitoring) are trusted; write
    /// `allow_networks = []` to filter them too. Authenticated submission clients always skip.
    pub allow_networks: Vec<Net>,
    /// Most simultaneous connections from one address to this node's MX (0: no limit).
    pub max_connections_per_ip: u32,
    /// Most new connections per minute from one address (0: no limit).
    pub max_connection_rate_per_ip: u32,
    /// How long the MX waits before its greeting to catch clients that talk first (0: off).
    pub pregreet_ms: u64,
    /// Score added when the client has no forward-confirmed reverse DNS.
    pub fcrdns_score: f64,
    /// Refuse clients without forward-confirmed reverse DNS (`450 4.7.25` as Postfix's
    /// reject_unknown_client_hostname when the lookup failed temporarily, else `550 5.7.25`).
    pub require_fcrdns: bool,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            allow_networks: vec![
                Net {
                    addr: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                    prefix: 8,
                },
                Net {
                    addr: IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                    prefix: 128,
                },
            ],
            max_connections_per_ip: 50,
            max_connection_rate_per_ip: 0,
            pregreet_ms: 0,
            fcrdns_score: 0.0,
            require_fcrdns: false,
        }
    }
}

/// One DNS blocklist.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsblList {
    /// The list's zone, e.g. `zen.spamhaus.org`.
    pub zone: String,
    /// Added to the client's score per matching answer set (negative for allowlists such as
    /// `list.dnswl.org`).
    #[serde(default = "one")]
    pub weight: f64,
    /// Which answers count: addresses or inclusive ranges `127.0.0.2-127.0.0.11`. Empty:
    /// any address in 127.0.0.0/8.
    #[serde(default)]
    pub codes: Vec<String>,
    /// When the list does not answer in time or answers SERVFAIL.
    #[serde(default = "skip")]
    pub on_error: OnError,
}

fn one() -> f64 {
    1.0
}
fn skip() -> OnError {
    OnError::Skip
}

/// DNS blocklists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsblSettings {
    /// The lists, queried in parallel.
    pub lists: Vec<DnsblList>,
    /// Refuse the client (`554 5.7.1` at RCPT, naming the lists) at this summed weight.
    pub reject_score: f64,
    /// Below `reject_score`, the summed weight is added to the message's score.
    pub add_to_score: bool,
    /// Answers (and non-answers) are cached this long.
    pub cache_ttl_s: u64,
    /// Most cached client addresses.
    pub cache_entries: usize,
}

impl Default for DnsblSettings {
    fn default() -> Self {
        DnsblSettings {
            lists: Vec::new(),
            reject_score: 1.0,
            add_to_score: true,
            cache_ttl_s: 300,
            cache_entries: 100_000,
        }
    }
}

/// What an SPF `fail` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfFail {
    /// `550 5.7.23` at MAIL FROM.
    Reject,
    /// Add `fail_score` to the message's score.
    Score,
}

/// SPF.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpfSettings {
    /// Check SPF at all.
    pub enabled: bool,
    /// Also check the HELO identity (its `fail` counts like MAIL FROM's).
    pub helo: bool,
    /// What `fail` does.
    pub on_fail: SpfFail,
    /// Score of `fail` when `on_fail = "score"`.
    pub fail_score: f64,
    /// Score of `softfail`.
    pub softfail_score: f64,
    /// Score of `neutral`.
    pub neutral_score: f64,
    /// Score of `permerror`.
    pub permerror_score: f64,
    /// `temperror`: answer `451 4.7.24` or go on.
    pub on_temperror: OnError,
}

impl Default for SpfSettings {
    fn default() -> Self {
        SpfSettings {
            enabled: true,
            helo: true,
            on_fail: SpfFail::Reject,
            fail_score: 5.0,
            softfail_score: 2.0,
            neutral_score: 0.5,
            permerror_score: 1.0,
            on_temperror: OnError::Tempfail,
        }
    }
}

/// Greylisting of (client network, sender, recipient) triplets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistSettings {
    /// Off by default: it delays first mail from every new correspondent.
    pub enabled: bool,
    /// A retry is accepted this long after the first attempt at the earliest.
    pub delay_s: u64,
    /// ... and at the latest this long after it (then it starts over).
    pub retry_window_s: u64,
    /// A triplet that passed is remembered this long after its last message.
    pub pass_ttl_s: u64,
    /// Most triplets remembered (oldest forgotten first).
    pub max_entries: usize,
    /// Triplets use the client's /24 (IPv4) or /64 (IPv6), since big senders retry from
    /// another address of the same pool.
    pub by_network: bool,
}

impl Default for GreylistSettings {
    fn default() -> Self {
        GreylistSettings {
            enabled: false,
            delay_s: 300,
            retry_window_s: 4 * 3600,
            pass_ttl_s: 35 * 86_400,
            max_entries: 1_000_000,
            by_network: true,
        }
    }
}

/// Where a scoring rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleTarget {
    /// One header field's decoded value (`header = "Subject"`), or any field's whole line.
    Header,
    /// The decoded text of the text parts (HTML with its tags removed).
    Body,
    /// Every URI found in the text parts.
    Uri,
}

/// One scoring rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRule {
    /// Shown in `X-Spam-Status` and events: `[A-Z0-9_]`, at most 64.
    pub name: String,
    /// Where it looks.
    pub target: RuleTarget,
    /// For `target = "header"`: the field name (case-insensitive); absent: `Name: value` of
    /// every field.
    #[serde(default)]
    pub header: Option<String>,
    /// A regular expression (Rust `regex` syntax, case-insensitive unless it says `(?-i)`).
    pub pattern: String,
    /// Added to the score when it matches (once per message).
    pub score: f64,
}

/// Content stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContentSettings {
    /// `regexp:NAME` or `pcre:NAME` of a stored map.
    pub header_checks: Option<MapRef>,
    /// Checks of MIME part headers.
    pub mime_header_checks: Option<MapRef>,
    /// Checks of body lines.
    pub body_checks: Option<MapRef>,
    /// At this score the message is tagged (`X-Spam-Flag: YES`, filed to Junk).
    pub tag_score: f64,
    /// At this score it is refused (`550 5.7.1`); absent: never.
    pub reject_score: Option<f64>,
    /// The folder tagged messages go to.
    pub junk_folder: String,
    /// Scoring rules.
    pub rules: Vec<ScoreRule>,
    /// Score of the GTUBE test string.
    pub gtube_score: f64,
    /// Only this many bytes of a message are scanned by rules and maps (the rest passes).
    pub scan_limit_bytes: usize,
    /// MIME nesting deeper than this is refused (`554 5.6.0`).
    pub max_mime_depth: usize,
    /// More MIME parts than this is refused.
    pub max_mime_parts: usize,
}

impl Default for ContentSettings {
    fn default() -> Self {
        ContentSettings {
            header_checks: None,
            mime_header_checks: None,
            body_checks: None,
            tag_score: 5.0,
            reject_score: Some(15.0),
            junk_folder: "Junk".into(),
            rules: Vec::new(),
            gtube_score: 1000.0,
            scan_limit_bytes: 1024 * 1024,
            max_mime_depth: 20,
            max_mime_parts: 1000,
        }
    }
}

/// DKIM (RFC 6376) verification and DMARC (RFC 7489).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimSettings {
    /// Verify DKIM signatures and evaluate DMARC.
    pub enabled: bool,
    /// Score of a signature that fails verification.
    pub dkim_fail_score: f64,
    /// Score of a DMARC failure whose domain asks `p=quarantine` (or `p=reject` when
    /// `dmarc_reject` is off).
    pub dmarc_quarantine_score: f64,
    /// Refuse DMARC failures of domains that ask `p=reject` (`550 5.7.1`).
    pub dmarc_reject: bool,
}

impl Default for DkimSettings {
    fn default() -> Self {
        DkimSettings {
            enabled: true,
            dkim_fail_score: 1.0,
            dmarc_quarantine_score: 5.0,
            dmarc_reject: true,
        }
    }
}

/// A scanner daemon (clamd).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSettings {
    /// `host:port` or an absolute Unix socket path.
    pub address: String,
    /// Connect + scan deadline.
    #[serde(default = "scan_timeout")]
    pub timeout_ms: u64,
    /// When the daemon is down, slow or answers an error.
    #[serde(default = "tempfail")]
    pub on_error: OnError,
    /// Messages larger than this are not sent (clamd's StreamMaxLength, 25 MiB by default).
    #[serde(default = "scan_max")]
    pub max_bytes: usize,
}

fn scan_timeout() -> u64 {
    30_000
}
fn tempfail() -> OnError {
    OnError::Tempfail
}
fn scan_max() -> usize {
    25 * 1024 * 1024
}

/// SpamAssassin's spamd.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpamdSettings {
    /// `host:port` or an absolute Unix socket path.
    pub address: String,
    /// Connect + check deadline.
    #[serde(default = "scan_timeout")]
    pub timeout_ms: u64,
    /// When spamd is down, slow or answers an error (`skip` by default: spam checks fail open).
    #[serde(default = "skip")]
    pub on_error: OnError,
    /// Messages larger than this are not sent (spamc's default 500 KiB).
    #[serde(default = "spamd_max")]
    pub max_bytes: usize,
    /// spamd's score is multiplied by this and added to ours.
    #[serde(default = "one")]
    pub weight: f64,
}

fn spamd_max() -> usize {
    500 * 1024
}

/// DNS used by the policy's lookups.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsSettings {
    /// `ip` or `ip:port` of the resolvers; empty: the system's (`/etc/resolv.conf`).
    pub servers: Vec<String>,
    /// Deadline of one lookup.
    pub timeout_ms: u64,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            servers: Vec::new(),
            timeout_ms: 5_000,
        }
    }
}

fn finite(what: &str, v: f64) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!("{what} must be a finite number"))
    }
}

/// Whether `name` is a valid rule name.
pub fn valid_rule_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

impl Settings {
    /// Checks what serde cannot: ranges, names, patterns.
    pub fn validate(&self) -> Result<(), String> {
        let c = &self.content;
        finite("content.tag_score", c.tag_score)?;
        if let Some(r) = c.reject_score {
            finite("content.reject_score", r)?;
            if r < c.tag_score {
                return Err("content.reject_score must not be below content.tag_score".into());
            }
        }
        finite("content.gtube_score", c.gtube_score)?;
        if c.junk_folder.is_empty()
            || c.junk_folder.len() > 255
            || c.junk_folder.contains(['\0', '\r', '\n'])
        {
            return Err(
                "content.junk_folder must be a mailbox name (1-255 bytes, no controls)".into(),
            );
        }
        if !(1..=100).contains(&c.max_mime_depth) {
            return Err("content.max_mime_depth must be 1-100".into());
        }
        if !(1..=100_000).contains(&c.max_mime_parts) {
            return Err("content.max_mime_parts must be 1-100000".into());
        }
        if !(1024..=64 * 1024 * 1024).contains(&c.scan_limit_bytes) {
            return Err("content.scan_limit_bytes must be 1 KiB-64 MiB".into());
        }
        if c.rules.len() > 10_000 {
            return Err("at most 10000 content.rules".into());
        }
        for r in &c.rules {
            if !valid_rule_name(&r.name) {
                return Err(format!(
                    "rule name {:?}: use 1-64 of A-Z, 0-9 and _",
                    r.name
                ));
            }
            finite(&format!("rule {} score", r.name), r.score)?;
            if r.target != RuleTarget::Header && r.header.is_some() {
                return Err(format!(
                    "rule {}: `header` is only for target = \"header\"",
                    r.name
                ));
            }
            regex::RegexBuilder::new(&r.pattern)
                .case_insensitive(true)
                .size_limit(256 * 1024)
                .dfa_size_limit(256 * 1024)
                .build()
                .map_err(|e| format!("rule {}: bad pattern: {e}", r.name))?;
        }
        let d = &self.dnsbl;
        finite("dnsbl.reject_score", d.reject_score)?;
        if d.lists.len() > 32 {
            return Err("at most 32 dnsbl.lists".into());
        }
        for l in &d.lists {
            finite(&format!("dnsbl list {} weight", l.zone), l.weight)?;
            if l.zone.is_empty()
                || l.zone.len() > 200
                || !l
                    .zone
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            {
                return Err(format!("dnsbl zone {:?} is not a domain name", l.zone));
            }
            for code in &l.codes {
                parse_code_range(code).map_err(|e| format!("dnsbl list {}: {e}", l.zone))?;
            }
        }
        if d.cache_entries > 10_000_000 {
            return Err("dnsbl.cache_entries must be at most 10000000".into());
        }
        let s = &self.spf;
        for (k, v) in [
            ("spf.fail_score", s.fail_score),
            ("spf.softfail_score", s.softfail_score),
            ("spf.neutral_score", s.neutral_score),
            ("spf.permerror_score", s.permerror_score),
            ("connection.fcrdns_score", self.connection.fcrdns_score),
            ("dkim.dkim_fail_score", self.dkim.dkim_fail_score),
            (
                "dkim.dmarc_quarantine_score",
                self.dkim.dmarc_quarantine_score,
            ),
        ] {
            finite(k, v)?;
        }
        if self.connection.pregreet_ms > 30_000 {
            return Err("connection.pregreet_ms must be at most 30000".into());
        }
        let g = &self.greylist;
        if g.enabled && (g.delay_s == 0 || g.retry_window_s <= g.delay_s || g.pass_ttl_s == 0) {
            return Err(
                "greylist: need delay_s > 0, retry_window_s > delay_s and pass_ttl_s > 0".into(),
            );
        }
        if g.max_entries == 0 || g.max_entries > 100_000_000 {
            return Err("greylist.max_entries must be 1-100000000".into());
        }
        if let Some(c) = &self.clamd {
            check_scanner("clamd", &c.address, c.timeout_ms)?;
        }
        if let Some(s) = &self.spamd {
            check_scanner("spamd", &s.address, s.timeout_ms)?;
            finite("spamd.weight", s.weight)?;
        }
        if !(100..=60_000).contains(&self.dns.timeout_ms) {
            return Err("dns.timeout_ms must be 100-60000".into());
        }
        for s in &self.dns.servers {
            parse_server(s)?;
        }
        Ok(())
    }
}

fn check_scanner(what: &str, address: &str, timeout_ms: u64) -> Result<(), String> {
    if !(100..=600_000).contains(&timeout_ms) {
        return Err(format!("{what}.timeout_ms must be 100-600000"));
    }
    if !address.starts_with('/') && address.parse::<std::net::SocketAddr>().is_err() {
        return Err(format!(
            "{what}.address {address:?}: write host:port (an IP address) or an absolute Unix socket path"
        ));
    }
    Ok(())
}

/// Parses a DNS server: `ip` (port 53) or `ip:port` / `[v6]:port`.
pub fn parse_server(s: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, 53));
    }
    s.parse()
        .map_err(|_| format!("dns.servers: {s:?} is not ip or ip:port"))
}

/// Parses a DNSBL code filter: `127.0.0.2` or `127.0.0.2-127.0.0.11` (inclusive).
pub fn parse_code_range(s: &str) -> Result<(std::net::Ipv4Addr, std::net::Ipv4Addr), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: std::net::Ipv4Addr = a
        .trim()
        .parse()
        .map_err(|_| format!("code {s:?}: write an IPv4 address or a range a.b.c.d-a.b.c.e"))?;
    let b: std::net::Ipv4Addr = b
        .trim()
        .parse()
        .map_err(|_| format!("code {s:?}: write an IPv4 address or a range a.b.c.d-a.b.c.e"))?;
    if a > b {
        return Err(format!("code {s:?}: the range is empty"));
    }
    Ok((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(settings: &str, maps: &[(&str, &str)]) -> PolicyDoc {
        PolicyDoc {
            settings: settings.into(),
            maps: maps
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn empty_document_is_the_defaults() {
        let p = doc("", &[]).compile().unwrap();
        assert!(p.settings.spf.enabled);
        assert_eq!(p.settings.content.tag_score, 5.0);
        assert!(p.header_checks.is_none());
    }

    #[test]
    fn maps_are_resolved_and_errors_name_file_and_line() {
        let p = doc(
            "[content]\nheader_checks = \"pcre:hc\"\n",
            &[("hc", "/^Subject: viagra/ REJECT no\n")],
        )
        .compile()
        .unwrap();
        assert_eq!(p.header_checks.unwrap().len(), 1);
        let e = doc("", &[("hc", "# ok\n/^Subject: x/ FROB\n")])
            .compile()
            .unwrap_err();
        assert_eq!((e.name.as_str(), e.line), ("hc", 2), "{e}");
        let e = doc("[content]\nbody_checks = \"regexp:missing\"\n", &[])
            .compile()
            .unwrap_err();
        assert!(e.message.contains("not stored"), "{e}");
    }

    #[test]
    fn settings_errors_are_refused_with_a_line() {
        let e = doc("[content]\ntag_score = 5\nfrobnicate = 1\n", &[])
            .compile()
            .unwrap_err();
        assert_eq!((e.name.as_str(), e.line), ("policy", 3), "{e}");
        for bad in [
            "[content]\ntag_score = 10.0\nreject_score = 5.0\n",
            "[[content.rules]]\nname = \"x\"\ntarget = \"body\"\npattern = \"a\"\nscore = 1.0\n",
            "[[content.rules]]\nname = \"X\"\ntarget = \"body\"\npattern = \"(\"\nscore = 1.0\n",
            "[[dnsbl.lists]]\nzone = \"bl.example\"\ncodes = [\"127.0.0.9-127.0.0.2\"]\n",
            "[clamd]\naddress = \"clamd:3310\"\n",
            "[connection]\nallow_networks = [\"10.0.0.0/33\"]\n",
            "[dns]\ntimeout_ms = 0\n",
        ] {
            assert!(doc(bad, &[]).compile().is_err(), "{bad}");
        }
    }

    #[test]
    fn networks_match() {
        let n: Net = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(n.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        let all: Net = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        let v6: Net = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
    }
}
