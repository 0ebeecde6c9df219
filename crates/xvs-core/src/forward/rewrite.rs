//! In-place frame rewrites for NAT and DR, with checksums kept right.
//! Layer: pure core, hot path: no allocation, offsets validated by the parser.
//!
//! Checksums: the IPv4 header checksum and the TCP/UDP checksum are updated
//! incrementally (RFC 1624) for every address, port and TTL change. A frame whose
//! L4 checksum is only *partial* (CHECKSUM_PARTIAL: veth/virtio tx offload, where the
//! field holds the folded pseudo-header sum and the device was meant to finish it) is
//! detected before the rewrite and its checksum is then computed in full, because
//! the frame leaves through a path that will not finish it. A complete checksum that
//! happens to equal the partial value (1 in 65536) is recomputed too — still correct.
//! Fragments are never completed (the checksum covers the whole datagram).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::addr::AddrBytes;
use crate::forward::verdict::DropReason;
use crate::wire::checksum;
use crate::wire::ip_proto::{TCP, UDP};

/// Offsets and facts about a parsed IP packet inside a frame.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IpInfo {
    /// Offset of the IP header.
    pub l3: usize,
    /// Offset of the L4 header.
    pub l4: usize,
    /// L4 bytes (header + payload) per the IP length fields.
    pub l4_len: usize,
    /// IPv6.
    pub v6: bool,
    /// L4 protocol.
    pub protocol: u8,
    /// Part of a fragmented datagram.
    pub fragment: bool,
    /// The L4 header is present (ports readable).
    pub has_l4: bool,
}

/// Which end of a packet to rewrite.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Source address / port.
    Src,
    /// Destination address / port.
    Dst,
}

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Byte range of an address in the IP header.
#[inline]
pub(crate) fn addr_range(ip: &IpInfo, end: End) -> std::ops::Range<usize> {
    let (off, len) = match (ip.v6, end) {
        (false, End::Src) => (12, 4),
        (false, End::Dst) => (16, 4),
        (true, End::Src) => (8, 16),
        (true, End::Dst) => (24, 16),
    };
    ip.l3 + off..ip.l3 + off + len
}

/// Offset of the L4 checksum field of TCP / UDP.
#[inline]
fn l4_check_offset(protocol: u8) -> Option<usize> {
    match protocol {
        TCP => Some(16),
        UDP => Some(6),
        _ => None,
    }
}

/// The packet's (source, destination) IPv4 addresses.
#[inline]
pub(crate) fn addrs_v4(frame: &[u8], ip: &IpInfo) -> (Ipv4Addr, Ipv4Addr) {
    let get = |r: std::ops::Range<usize>| {
        Ipv4Addr::from(<[u8; 4]>::try_from(&frame[r]).unwrap_or_default())
    };
    (get(addr_range(ip, End::Src)), get(addr_range(ip, End::Dst)))
}

/// The packet's (source, destination) IPv6 addresses.
#[inline]
pub(crate) fn addrs_v6(frame: &[u8], ip: &IpInfo) -> (Ipv6Addr, Ipv6Addr) {
    let get = |r: std::ops::Range<usize>| {
        Ipv6Addr::from(<[u8; 16]>::try_from(&frame[r]).unwrap_or_default())
    };
    (get(addr_range(ip, End::Src)), get(addr_range(ip, End::Dst)))
}

/// True when the frame's TCP/UDP checksum is the partial (offload) form.
#[inline]
pub(crate) fn has_partial_checksum(frame: &[u8], ip: &IpInfo) -> bool {
    let Some(off) = l4_check_offset(ip.protocol) else {
        return false;
    };
    if ip.fragment || !ip.has_l4 || ip.l4_len < off + 2 {
        return false;
    }
    let check = rd16(frame, ip.l4 + off);
    if ip.v6 {
        let (src, dst) = addrs_v6(frame, ip);
        checksum::is_partial_v6(check, &src, &dst, ip.protocol, ip.l4_len as u32)
    } else {
        let (src, dst) = addrs_v4(frame, ip);
        checksum::is_partial_v4(check, src, dst, ip.protocol, ip.l4_len as u16)
    }
}

/// Compute the TCP/UDP checksum of the frame in full.
pub(crate) fn complete_checksum(frame: &mut [u8], ip: &IpInfo) {
    let Some(off) = l4_check_offset(ip.protocol) else {
        return;
    };
    let l4 = &frame[ip.l4..ip.l4 + ip.l4_len];
    let check = if ip.v6 {
        let (src, dst) = addrs_v6(frame, ip);
        checksum::tcp_udp_checksum_v6(&src, &dst, ip.protocol, l4)
    } else {
        let (src, dst) = addrs_v4(frame, ip);
        checksum::tcp_udp_checksum_v4(src, dst, ip.protocol, l4)
    };
    wr16(frame, ip.l4 + off, check);
}

/// Decrement the TTL / hop limit (NAT forwarding is routing).
#[inline]
pub(crate) fn decrement_ttl(frame: &mut [u8], ip: &IpInfo) -> Result<(), DropReason> {
    let at = ip.l3 + if ip.v6 { 7 } else { 8 };
    let ttl = frame[at];
    if ttl <= 1 {
        return Err(DropReason::TtlExceeded);
    }
    frame[at] = ttl - 1;
    if !ip.v6 {
        // The TTL is the high byte of the 16-bit word at offset 8.
        let old = u16::from_be_bytes([ttl, frame[at + 1]]);
        let new = u16::from_be_bytes([ttl - 1, frame[at + 1]]);
        let c = checksum::update16(rd16(frame, ip.l3 + 10), old, new);
        wr16(frame, ip.l3 + 10, c);
    }
    Ok(())
}

/// Replace the address (and, when `port` is given and the L4 header is present, the
/// port) at `end`, updating the IPv4 header checksum and the TCP/UDP checksum
/// incrementally. `partial` comes from [`has_partial_checksum`] *before* the rewrite:
/// then the L4 checksum is computed in full afterwards instead.
#[inline]
pub(crate) fn rewrite_end(
    frame: &mut [u8],
    ip: &IpInfo,
    end: End,
    addr: &AddrBytes,
    port: Option<u16>,
    partial: bool,
) {
    let range = addr_range(ip, end);
    let width = range.len();
    // Old and new addresses as fixed-size arrays (no variable-length copies: those
    // cost a memcmp / a store-forwarding stall per packet).
    let mut old = [0u8; 16];
    let addr_changed = if ip.v6 {
        old = <[u8; 16]>::try_from(&frame[range.clone()]).unwrap_or_default();
        old != *addr
    } else {
        let o = <[u8; 4]>::try_from(&frame[range.clone()]).unwrap_or_default();
        old[..4].copy_from_slice(&o);
        o != addr[..4]
    };
    let new = &addr[..width];
    if addr_changed {
        frame[range].copy_from_slice(new);
        if !ip.v6 {
            let c = checksum::update_bytes(rd16(frame, ip.l3 + 10), &old[..4], new);
            wr16(frame, ip.l3 + 10, c);
        }
    }
    if !ip.has_l4 {
        return;
    }
    let port_at = ip.l4 + if end == End::Src { 0 } else { 2 };
    let old_port = rd16(frame, port_at);
    let new_port = port.unwrap_or(old_port);
    if new_port != old_port {
        wr16(frame, port_at, new_port);
    }
    let Some(off) = l4_check_offset(ip.protocol) else {
        return;
    };
    if ip.l4_len < off + 2 {
        return; // The checksum field is not present (e.g. inside a short ICMP error).
    }
    if partial {
        complete_checksum(frame, ip);
        return;
    }
    let at = ip.l4 + off;
    let mut c = rd16(frame, at);
    if ip.protocol == UDP && c == 0 && !ip.v6 {
        return; // IPv4 UDP without checksum stays without.
    }
    if addr_changed {
        c = checksum::update_bytes(c, &old[..width], new);
    }
    if new_port != old_port {
        c = checksum::update16(c, old_port, new_port);
    }
    if ip.protocol == UDP && c == 0 {
        c = 0xffff;
    }
    wr16(frame, at, c);
}

/// Set the Ethernet source and destination MACs.
#[inline]
pub(crate) fn set_macs(frame: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}
