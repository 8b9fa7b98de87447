//! The mailstore's virtual IP: the holder adds the address to its interface and announces it
//! (gratuitous ARP for IPv4, unsolicited neighbour advertisements for IPv6) so switches and
//! neighbours send its traffic here at once; a fenced holder removes it.
//!
//! Netlink (rtnetlink) adds, lists and deletes the address; a fresh netlink socket is opened
//! for each call, in the network namespace of the calling thread. An IPv6 address is added
//! with `IFA_F_NODAD`, like keepalived does: duplicate address detection would keep it
//! unusable for a second and could fail against the old holder's last packets, and the lease
//! already guarantees one holder. Announcements go out as hand-built Ethernet frames (module
//! `frames`, sans I/O) on an `AF_PACKET` socket: an RFC 5227 ARP announcement (a request whose
//! sender and target IP are the VIP), or an ICMPv6 neighbour advertisement to ff02::1 with the
//! override flag and the target link-layer address, as keepalived sends them. The
//! first announcement is sent before `claim` returns; the others follow in a task that
//! `release` stops, so this node never announces an address it no longer holds.
//!
//! This module must never decide *when* to hold the address: the holder duty (module
//! `failover`) claims it after the lease and the volume are taken and releases it when it
//! fences.
//!
//! Security note: the address and interface come from the node's config file only. Adding
//! addresses needs CAP_NET_ADMIN and the packet socket CAP_NET_RAW; the socket is opened with
//! protocol 0, so it never receives a frame, and it sends only the frames built here.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::TryStreamExt;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkLayerType};
use serde::Deserialize;

mod frames;
pub use frames::{arp_announcement, icmpv6_checksum, unsolicited_na};

/// How long one netlink request may take; the kernel answers in microseconds.
const NETLINK_TIMEOUT: Duration = Duration::from_secs(5);
/// Linux's IFNAMSIZ less the terminating NUL.
const MAX_IFNAME: usize = 15;
/// The most announcements one claim sends: past a few dozen they only flood the segment.
pub const MAX_GARP_COUNT: u32 = 100;
/// The allowed spacing between announcements, in milliseconds.
pub const GARP_INTERVAL_MS: std::ops::RangeInclusive<u64> = 10..=10_000;

/// The `[failover.vip]` settings: the address the mailstore's clients and queues use, which
/// moves with the lease.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VipConfig {
    /// The virtual address.
    pub address: IpAddr,
    /// Its prefix length on the interface; absent: 32 for IPv4, 128 for IPv6 (no prefix
    /// route). See [`VipConfig::prefix`].
    #[serde(default)]
    pub prefix_len: Option<u8>,
    /// The interface that carries it (e.g. `eth0`, `bond0`).
    pub interface: String,
    /// How many announcements each claim sends; 0 sends none (a routed, non-Ethernet link).
    #[serde(default = "d_garp_count")]
    pub garp_count: u32,
    /// The spacing between announcements, so one lost frame or a switch port still learning
    /// does not lose them all.
    #[serde(default = "d_garp_interval_ms")]
    pub garp_interval_ms: u64,
}

/// keepalived's default repeat count for gratuitous ARP.
fn d_garp_count() -> u32 {
    5
}

fn d_garp_interval_ms() -> u64 {
    200
}

impl VipConfig {
    /// The prefix length to use: the configured one, else a host prefix.
    pub fn prefix(&self) -> u8 {
        self.prefix_len.unwrap_or(match self.address {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        })
    }

    /// Checks the settings; `Err((key, reason))` with the key relative to `[failover]`
    /// (`vip.interface`), like [`super::FailoverConfig::validate`]'s `volume.fstype`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad_address = match self.address {
            IpAddr::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            IpAddr::V6(a) => a.is_unspecified() || a.is_multicast() || a.is_loopback(),
        } || self.address.is_loopback();
        if bad_address {
            return Err((
                "vip.address",
                format!("{} is not a unicast address", self.address),
            ));
        }
        let max = if self.address.is_ipv4() { 32 } else { 128 };
        if let Some(p) = self.prefix_len {
            if p == 0 || p > max {
                return Err((
                    "vip.prefix_len",
                    format!("must be 1 ..= {max} for {}", self.address),
                ));
            }
        }
        let name = &self.interface;
        if name.is_empty() || name.len() > MAX_IFNAME {
            return Err((
                "vip.interface",
                format!("must be an interface name of 1 ..= {MAX_IFNAME} bytes"),
            ));
        }
        if name == "."
            || name == ".."
            || name
                .chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace())
        {
            return Err((
                "vip.interface",
                format!("{name:?} is not a valid interface name (no '/', ':' or spaces)"),
            ));
        }
        if self.garp_count > MAX_GARP_COUNT {
            return Err((
                "vip.garp_count",
                format!("must be at most {MAX_GARP_COUNT}"),
            ));
        }
        if !GARP_INTERVAL_MS.contains(&self.garp_interval_ms) {
            return Err((
                "vip.garp_interval_ms",
                format!(
                    "must be {} ..= {}",
                    GARP_INTERVAL_MS.start(),
                    GARP_INTERVAL_MS.end()
                ),
            ));
        }
        Ok(())
    }
}

/// Why the address could not be claimed, released or checked. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    #[error("interface {interface} does not exist: check failover.vip.interface (`ip link`)")]
    NoInterface { interface: String },
    #[error("cannot {action} on {interface}: {reason}; {hint}")]
    Netlink {
        action: String,
        interface: String,
        reason: String,
        hint: String,
    },
    #[error("cannot announce {address} on {interface}: {reason}; {hint}")]
    Arp {
        address: IpAddr,
        interface: String,
        reason: String,
        hint: String,
    },
}

/// The virtual IP of this node's mailstore.
pub struct Vip {
    cfg: VipConfig,
    /// The announcements still to come after the first; aborted by `release` (and a new
    /// claim), so a fenced node never announces the address.
    announcer: Mutex<Option<tokio::task::AbortHandle>>,
}

/// A netlink connection for one call; its task ends with it.
struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What claiming needs to know about the interface.
struct Link {
    index: u32,
    /// The hardware address, for an Ethernet link.
    mac: Option<[u8; 6]>,
}

fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| Errno::from_raw(c.get().abs())),
        _ => None,
    }
}

impl Vip {
    /// A VIP that is not claimed yet; nothing is touched until [`Vip::claim`].
    pub fn new(cfg: VipConfig) -> Vip {
        Vip {
            cfg,
            announcer: Mutex::new(None),
        }
    }

    /// The settings.
    pub fn config(&self) -> &VipConfig {
        &self.cfg
    }

    /// Adds the address (already present: fine) and sends the first announcement; the other
    /// `garp_count − 1` follow every `garp_interval_ms` in a task. An error after the address
    /// was added leaves it there: the caller fences and calls [`Vip::release`].
    pub async fn claim(&self) -> Result<(), VipError> {
        let nl = self.connect()?;
        let link = self.link(&nl).await?.ok_or_else(|| self.no_interface())?;
        // Open the announcer first, so a missing capability or a non-Ethernet link is reported
        // before the address is touched.
        let announcer = if self.cfg.garp_count > 0 {
            Some(self.announcer(&link)?)
        } else {
            None
        };
        let prefix = self.cfg.prefix();
        let mut add = nl
            .handle
            .address()
            .add(link.index, self.cfg.address, prefix);
        if self.cfg.address.is_ipv6() {
            add.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let action = || format!("add {}/{prefix}", self.cfg.address);
        match tokio::time::timeout(NETLINK_TIMEOUT, add.execute()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if errno(&e) == Some(Errno::EEXIST) => {}
            Ok(Err(e)) => return Err(self.netlink_error(action(), &e)),
            Err(_) => return Err(self.netlink_timeout(action())),
        }
        drop(nl);
        let Some(announcer) = announcer else {
            tracing::info!(address = %self.cfg.address, interface = %self.cfg.interface, "vip: claimed (no announcements)");
            return Ok(());
        };
        self.stop_announcing();
        announcer
            .send()
            .map_err(|e| self.arp_error(e.desc().to_string(), arp_hint(e, &self.cfg.interface)))?;
        tracing::info!(address = %self.cfg.address, interface = %self.cfg.interface, count = self.cfg.garp_count, "vip: claimed; announcing");
        if self.cfg.garp_count > 1 {
            let (count, interval) = (
                self.cfg.garp_count,
                Duration::from_millis(self.cfg.garp_interval_ms),
            );
            let address = self.cfg.address;
            let task = tokio::spawn(async move {
                for _ in 1..count {
                    tokio::time::sleep(interval).await;
                    if let Err(e) = announcer.send() {
                        tracing::warn!(%address, error = %e, "vip: an announcement failed");
                    }
                }
            });
            if let Ok(mut slot) = self.announcer.lock() {
                *slot = Some(task.abort_handle());
            }
        }
        Ok(())
    }

    /// Stops the announcements and deletes the address, under any prefix length. Absent (or
    /// no such interface): fine.
    pub async fn release(&self) -> Result<(), VipError> {
        self.stop_announcing();
        let nl = self.connect()?;
        let Some(link) = self.link(&nl).await? else {
            return Ok(());
        };
        for msg in self.addresses(&nl, link.index).await? {
            let prefix = msg.header.prefix_len;
            let action = || format!("delete {}/{prefix}", self.cfg.address);
            match tokio::time::timeout(NETLINK_TIMEOUT, nl.handle.address().del(msg).execute())
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) if matches!(errno(&e), Some(Errno::EADDRNOTAVAIL | Errno::ENOENT)) => {}
                Ok(Err(e)) => return Err(self.netlink_error(action(), &e)),
                Err(_) => return Err(self.netlink_timeout(action())),
            }
            tracing::info!(address = %self.cfg.address, interface = %self.cfg.interface, "vip: released");
        }
        Ok(())
    }

    /// Whether the address is on the interface now (under any prefix length).
    pub async fn is_held(&self) -> Result<bool, VipError> {
        let nl = self.connect()?;
        let link = self.link(&nl).await?.ok_or_else(|| self.no_interface())?;
        Ok(!self.addresses(&nl, link.index).await?.is_empty())
    }

    fn stop_announcing(&self) {
        if let Some(task) = self.announcer.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }

    fn connect(&self) -> Result<Netlink, VipError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| VipError::Netlink {
            action: "open a netlink socket".into(),
            interface: self.cfg.interface.clone(),
            reason: e.to_string(),
            hint: "is this Linux?".into(),
        })?;
        Ok(Netlink {
            handle,
            task: tokio::spawn(conn),
        })
    }

    /// The interface, or `None` when there is no such interface.
    async fn link(&self, nl: &Netlink) -> Result<Option<Link>, VipError> {
        let action = || "look up the interface".to_string();
        let mut links = pin!(nl
            .handle
            .link()
            .get()
            .match_name(self.cfg.interface.clone())
            .execute());
        let msg = match tokio::time::timeout(NETLINK_TIMEOUT, links.try_next()).await {
            Ok(Ok(Some(msg))) => msg,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) if errno(&e) == Some(Errno::ENODEV) => return Ok(None),
            Ok(Err(e)) => return Err(self.netlink_error(action(), &e)),
            Err(_) => return Err(self.netlink_timeout(action())),
        };
        let ether = msg.header.link_layer_type == LinkLayerType::Ether;
        let mac = msg.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(mac) if ether => <[u8; 6]>::try_from(mac.as_slice()).ok(),
            _ => None,
        });
        Ok(Some(Link {
            index: msg.header.index,
            mac,
        }))
    }

    /// The VIP's address records on the interface (one per prefix length it was added with).
    async fn addresses(&self, nl: &Netlink, index: u32) -> Result<Vec<AddressMessage>, VipError> {
        let action = || "list addresses".to_string();
        let mut stream = pin!(nl
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .set_address_filter(self.cfg.address)
            .execute());
        let collect = async {
            let mut found = Vec::new();
            while let Some(msg) = stream.try_next().await? {
                found.push(msg);
            }
            Ok::<_, rtnetlink::Error>(found)
        };
        match tokio::time::timeout(NETLINK_TIMEOUT, collect).await {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => Err(self.netlink_error(action(), &e)),
            Err(_) => Err(self.netlink_timeout(action())),
        }
    }

    /// The packet socket and the frame for this link.
    fn announcer(&self, link: &Link) -> Result<Announcer, VipError> {
        let Some(mac) = link.mac else {
            return Err(self.arp_error(
                "it is not an Ethernet interface".into(),
                "set failover.vip.garp_count = 0 on a link without ARP".into(),
            ));
        };
        let frame = match self.cfg.address {
            IpAddr::V4(ip) => arp_announcement(mac, ip),
            IpAddr::V6(ip) => unsolicited_na(mac, ip),
        };
        Announcer::open(link.index, frame)
            .map_err(|e| self.arp_error(e.desc().to_string(), arp_hint(e, &self.cfg.interface)))
    }

    fn no_interface(&self) -> VipError {
        VipError::NoInterface {
            interface: self.cfg.interface.clone(),
        }
    }

    fn netlink_error(&self, action: String, e: &rtnetlink::Error) -> VipError {
        let hint = match errno(e) {
            Some(Errno::EPERM | Errno::EACCES) => {
                "mailnode needs CAP_NET_ADMIN: run it as root or grant the capability".to_string()
            }
            _ => format!("compare with `ip address show dev {}`", self.cfg.interface),
        };
        let reason = match errno(e) {
            Some(n) => n.desc().to_string(),
            None => e.to_string(),
        };
        VipError::Netlink {
            action,
            interface: self.cfg.interface.clone(),
            reason,
            hint,
        }
    }

    fn netlink_timeout(&self, action: String) -> VipError {
        VipError::Netlink {
            action,
            interface: self.cfg.interface.clone(),
            reason: format!(
                "no answer from the kernel within {} s",
                NETLINK_TIMEOUT.as_secs()
            ),
            hint: "check that `ip address show` answers on this node".into(),
        }
    }

    fn arp_error(&self, reason: String, hint: String) -> VipError {
        VipError::Arp {
            address: self.cfg.address,
            interface: self.cfg.interface.clone(),
            reason,
            hint,
        }
    }
}

impl Drop for Vip {
    fn drop(&mut self) {
        self.stop_announcing();
    }
}

fn arp_hint(e: Errno, interface: &str) -> String {
    match e {
        Errno::EPERM | Errno::EACCES => {
            "mailnode needs CAP_NET_RAW: run it as root or grant the capability".into()
        }
        Errno::ENETDOWN => format!("the interface is down: `ip link set {interface} up`"),
        _ => format!("check the interface (`ip link show {interface}`)"),
    }
}

/// A packet socket that sends one prepared frame on one interface.
struct Announcer {
    fd: OwnedFd,
    /// The interface's `sockaddr_ll`, taken from getifaddrs: nix builds a `LinkAddr` only from
    /// the kernel's own, which keeps this module free of `unsafe`.
    to: LinkAddr,
    frame: Vec<u8>,
}

impl Announcer {
    fn open(index: u32, frame: Vec<u8>) -> Result<Announcer, Errno> {
        let to = nix::ifaddrs::getifaddrs()?
            .filter_map(|a| a.address.and_then(|s| s.as_link_addr().copied()))
            .find(|l| l.ifindex() == index as usize)
            .ok_or(Errno::ENODEV)?;
        // Protocol 0: this socket only sends, nothing is ever queued on it.
        let fd = socket::socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )?;
        Ok(Announcer { fd, to, frame })
    }

    fn send(&self) -> Result<(), Errno> {
        socket::sendto(
            self.fd.as_raw_fd(),
            &self.frame,
            &self.to,
            MsgFlags::empty(),
        )
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(address: &str, interface: &str) -> VipConfig {
        VipConfig {
            address: address.parse().unwrap(),
            prefix_len: None,
            interface: interface.into(),
            garp_count: d_garp_count(),
            garp_interval_ms: d_garp_interval_ms(),
        }
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: VipConfig =
            toml::from_str("address = \"192.0.2.10\"\ninterface = \"eth0\"").unwrap();
        assert_eq!(c, cfg("192.0.2.10", "eth0"));
        assert_eq!((c.prefix(), c.garp_count, c.garp_interval_ms), (32, 5, 200));
        assert_eq!(cfg("2001:db8::7", "eth0").prefix(), 128);

        // (address, interface, more keys, the key refused)
        const V4: &str = "192.0.2.10";
        const V6: &str = "2001:db8::7";
        let table: &[(&str, &str, &str, Option<&str>)] = &[
            (V4, "eth0", "", None),
            (V4, "eth0", "prefix_len = 24", None),
            (V4, "eth0", "prefix_len = 0", Some("vip.prefix_len")),
            (V4, "eth0", "prefix_len = 33", Some("vip.prefix_len")),
            (V6, "eth0", "prefix_len = 64", None),
            (V6, "eth0", "prefix_len = 129", Some("vip.prefix_len")),
            ("0.0.0.0", "eth0", "", Some("vip.address")),
            ("224.0.0.1", "eth0", "", Some("vip.address")),
            ("127.0.0.5", "eth0", "", Some("vip.address")),
            ("ff02::1", "eth0", "", Some("vip.address")),
            (V4, "", "", Some("vip.interface")),
            (V4, "a-fifteen-bytes", "", None),
            (V4, "a-sixteen-bytes!", "", Some("vip.interface")),
            (V4, "eth0:1", "", Some("vip.interface")),
            (V4, "eth 0", "", Some("vip.interface")),
            (V4, "..", "", Some("vip.interface")),
            (V4, "eth0", "garp_count = 0", None),
            (V4, "eth0", "garp_count = 100", None),
            (V4, "eth0", "garp_count = 101", Some("vip.garp_count")),
            (
                V4,
                "eth0",
                "garp_interval_ms = 9",
                Some("vip.garp_interval_ms"),
            ),
            (
                V4,
                "eth0",
                "garp_interval_ms = 10001",
                Some("vip.garp_interval_ms"),
            ),
        ];
        for (address, interface, more, want) in table {
            let text = format!("address = {address:?}\ninterface = {interface:?}\n{more}");
            let c: VipConfig = toml::from_str(&text).unwrap();
            assert_eq!(c.validate().err().map(|(key, _)| key), *want, "{text}");
        }
        let unknown = "address = \"192.0.2.10\"\ninterface = \"eth0\"\nlabel = \"x\"";
        assert!(toml::from_str::<VipConfig>(unknown).is_err());
    }

    #[test]
    fn errors_say_what_to_do() {
        let v = Vip::new(cfg("192.0.2.10", "eth9"));
        assert_eq!(
            v.no_interface().to_string(),
            "interface eth9 does not exist: check failover.vip.interface (`ip link`)"
        );
        assert!(arp_hint(Errno::ENETDOWN, "eth9").contains("ip link set eth9 up"));
        assert!(arp_hint(Errno::EPERM, "eth9").contains("CAP_NET_RAW"));
    }
}
