//! The announcement frames, sans I/O: what `failover::vip` sends on its packet socket.
//!
//! Security note: every field comes from the node's config and its own interface; nothing
//! here parses received data.

use std::net::{Ipv4Addr, Ipv6Addr};

const ETH_BROADCAST: [u8; 6] = [0xff; 6];
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
/// ff02::1, the all-nodes group, and its Ethernet multicast address (RFC 2464 §7).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
/// The shortest Ethernet frame without its FCS; shorter ones are padded with zeros.
const ETH_MIN_FRAME: usize = 60;

fn ethernet_header(frame: &mut Vec<u8>, dst: [u8; 6], src: [u8; 6], ethertype: u16) {
    frame.extend_from_slice(&dst);
    frame.extend_from_slice(&src);
    frame.extend_from_slice(&ethertype.to_be_bytes());
}

/// An RFC 5227 ARP announcement from `mac` for `ip`, broadcast: an ARP request whose sender
/// and target protocol addresses are both `ip` and whose target hardware address is zero.
pub fn arp_announcement(mac: [u8; 6], ip: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_MIN_FRAME);
    ethernet_header(&mut f, ETH_BROADCAST, mac, ETHERTYPE_ARP);
    f.extend_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    f.extend_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    f.extend_from_slice(&[6, 4]); // address lengths
    f.extend_from_slice(&1u16.to_be_bytes()); // operation: request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&ip.octets());
    f.resize(ETH_MIN_FRAME, 0);
    f
}

/// An unsolicited neighbour advertisement (RFC 4861 §7.2.6) from `mac` for `ip`, to ff02::1:
/// override flag set, solicited and router flags clear, with the target link-layer address
/// option; hop limit 255, as receivers require.
pub fn unsolicited_na(mac: [u8; 6], ip: Ipv6Addr) -> Vec<u8> {
    let mut icmp = Vec::with_capacity(32);
    icmp.extend_from_slice(&[136, 0, 0, 0]); // type, code, checksum (below)
    icmp.extend_from_slice(&[0x20, 0, 0, 0]); // R = 0, S = 0, O = 1
    icmp.extend_from_slice(&ip.octets());
    icmp.extend_from_slice(&[2, 1]); // option: target link-layer address, 8 bytes
    icmp.extend_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, &icmp).to_be_bytes();
    icmp.splice(2..4, sum);
    let mut f = Vec::with_capacity(14 + 40 + icmp.len());
    ethernet_header(&mut f, ALL_NODES_MAC, mac, ETHERTYPE_IPV6);
    f.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, traffic class 0, flow label 0
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]); // next header ICMPv6, hop limit
    f.extend_from_slice(&ip.octets());
    f.extend_from_slice(&ALL_NODES.octets());
    f.extend_from_slice(&icmp);
    f
}

/// The ICMPv6 checksum (RFC 4443 §2.3): the one's complement sum over the IPv6 pseudo-header
/// and the message, whose checksum field must be zero.
pub fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, message: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for pair in bytes.chunks(2) {
            let hi = pair.first().copied().unwrap_or(0);
            let lo = pair.get(1).copied().unwrap_or(0);
            sum += u32::from(u16::from_be_bytes([hi, lo]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(message.len() as u32).to_be_bytes());
    add(&[0, 0, 0, 58]);
    add(message);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn arp_announcement_bytes() {
        let f = arp_announcement(MAC, Ipv4Addr::new(192, 0, 2, 10));
        let mut want = vec![
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // to everyone
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, // from us
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 6, 4, // Ethernet / IPv4
            0x00, 0x01, // request
            0x02, 0x00, 0x5e, 0x10, 0x20, 0x30, 192, 0, 2, 10, // sender: us, the VIP
            0, 0, 0, 0, 0, 0, 192, 0, 2, 10, // target: unknown, the VIP
        ];
        want.resize(60, 0);
        assert_eq!(f, want);
    }

    /// The expected frame was built independently, with scapy:
    /// `Ether(src=MAC, dst="33:33:00:00:00:01") / IPv6(src=VIP, dst="ff02::1", hlim=255) /
    /// ICMPv6ND_NA(tgt=VIP, R=0, S=0, O=1) / ICMPv6NDOptDstLLAddr(lladdr=MAC)`.
    #[test]
    fn unsolicited_na_bytes() {
        let f = unsolicited_na(MAC, "2001:db8::7".parse().unwrap());
        let scapy = concat!(
            "333300000001",
            "02005e102030",
            "86dd", // Ethernet
            "60000000",
            "0020",
            "3a",
            "ff", // IPv6: 32 bytes of ICMPv6, hop limit 255
            "20010db8000000000000000000000007",
            "ff020000000000000000000000000001",
            "88",
            "00",
            "7adf",
            "20000000",                         // NA, checksum, override
            "20010db8000000000000000000000007", // target
            "0201",
            "02005e102030", // target link-layer address option
        );
        assert_eq!(hex(&f), scapy);
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn icmpv6_checksum_verifies_to_zero() {
        // Summing a message whose checksum is filled in gives 0 (RFC 1071), odd lengths too.
        let (src, dst) = ("fe80::1".parse().unwrap(), ALL_NODES);
        for len in [0usize, 1, 7, 24, 33] {
            let mut msg: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            msg.resize(len.max(4), 0);
            msg[2] = 0;
            msg[3] = 0;
            let sum = icmpv6_checksum(src, dst, &msg).to_be_bytes();
            msg[2..4].copy_from_slice(&sum);
            assert_eq!(icmpv6_checksum(src, dst, &msg), 0, "length {len}");
        }
    }
}
