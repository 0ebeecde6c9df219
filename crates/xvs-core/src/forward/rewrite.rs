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

use crate::addr::{AddrBytes, v4_bytes, v4_octets};
use crate::conntrack::Tuple;
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
/// incrementally (fragments and the packets inside ICMP errors; the packets of
/// connections go through [`Rewrite`]).
pub(crate) fn rewrite_end(
    frame: &mut [u8],
    ip: &IpInfo,
    end: End,
    addr: &AddrBytes,
    port: Option<u16>,
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

/// The rewrite of the packets travelling one direction of a connection, with its
/// checksum work done once (RFC 1624 eqn. 3 with the sums of the old and new words
/// precomputed): per packet, a NAT rewrite is a few stores and two one's-complement
/// additions. Valid only for packets of the tuple it was made for. `A` is how the
/// NAT address is kept: 16 bytes, or 4 in the flow cache's IPv4 entries
/// ([`Rewrite4`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rewrite<A = AddrBytes> {
    /// NAT: what changes; `None` for DR (the frame's L3/L4 stay as they are).
    pub nat: Option<NatEdit<A>>,
    /// Pseudo-header sum (addresses, protocol; no length) of the packets as they
    /// arrive: a TCP/UDP checksum equal to it plus the length is a partial one.
    pseudo: u32,
}

/// The NAT part of a [`Rewrite`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NatEdit<A = AddrBytes> {
    /// Which end changes.
    pub end: End,
    /// The new address of that end.
    pub addr: A,
    /// The new port of that end.
    pub port: u16,
    /// Added to the IPv4 header checksum: the address change and the TTL decrement.
    ip_delta: u16,
    /// Added to the TCP/UDP checksum: the address (pseudo-header) and port change.
    l4_delta: u16,
}

/// A [`Rewrite`] of IPv4 packets with the NAT address in 4 bytes (what lets the flow
/// cache keep an IPv4 flow's entry in one cache line). [`Rewrite::to_v4`] and
/// [`Rewrite4::to_rewrite`] are exact inverses for rewrites of IPv4 tuples.
pub(crate) type Rewrite4 = Rewrite<[u8; 4]>;

impl<A: Copy> Rewrite<A> {
    /// The same rewrite with its NAT address kept as `f` makes it.
    #[inline]
    fn map_addr<B>(self, f: impl FnOnce(A) -> B) -> Rewrite<B> {
        Rewrite {
            nat: self.nat.map(|n| NatEdit {
                end: n.end,
                addr: f(n.addr),
                port: n.port,
                ip_delta: n.ip_delta,
                l4_delta: n.l4_delta,
            }),
            pseudo: self.pseudo,
        }
    }
}

impl Rewrite4 {
    /// The full rewrite.
    #[inline]
    pub(crate) fn to_rewrite(self) -> Rewrite {
        self.map_addr(v4_bytes)
    }
}

/// `!check + delta`, complemented: RFC 1624 eqn. 3 with the sum of the changes
/// already made.
#[inline]
fn adjust(check: u16, delta: u16) -> u16 {
    !checksum::fold(u32::from(!check) + u32::from(delta))
}

impl Rewrite {
    /// The rewrite of packets with tuple `arriving`: `nat` gives the end that changes
    /// and its new address and port (`None`: DR).
    pub fn new(arriving: &Tuple, nat: Option<(End, AddrBytes, u16)>) -> Rewrite {
        // The running sum of an address's words (an IPv4 address as one 32-bit word:
        // congruent, and what `checksum::sum` of its 4 bytes returns).
        let words = |a: &AddrBytes| {
            if arriving.v6 {
                checksum::sum(a)
            } else {
                u32::from_be_bytes(v4_octets(a))
            }
        };
        let pseudo = checksum::combine(
            checksum::combine(words(&arriving.src), words(&arriving.dst)),
            u32::from(arriving.protocol),
        );
        let nat = nat.map(|(end, addr, port)| {
            let (old_addr, old_port) = match end {
                End::Src => (&arriving.src, arriving.sport),
                End::Dst => (&arriving.dst, arriving.dport),
            };
            // Σ ~old + Σ new over the changed words.
            let addr_change =
                checksum::combine(u32::from(!checksum::fold(words(old_addr))), words(&addr));
            let port_change = u32::from(!old_port) + u32::from(port);
            // TTL −1: the word (TTL, protocol) loses 0x100, i.e. ~m + m' = 0xfeff.
            let ttl_change = 0xfeff;
            NatEdit {
                end,
                addr,
                port,
                ip_delta: checksum::fold(checksum::combine(addr_change, ttl_change)),
                l4_delta: checksum::fold(checksum::combine(addr_change, port_change)),
            }
        });
        Rewrite { nat, pseudo }
    }

    /// The compact form of a rewrite of IPv4 packets (only the first 4 bytes of the
    /// NAT address are kept).
    #[inline]
    pub(crate) fn to_v4(self) -> Rewrite4 {
        self.map_addr(|a| v4_octets(&a))
    }

    /// True when the frame's TCP/UDP checksum is the partial (offload) form.
    #[inline]
    fn partial(&self, frame: &[u8], ip: &IpInfo) -> bool {
        match l4_check_offset(ip.protocol) {
            Some(off) if !ip.fragment && ip.has_l4 && ip.l4_len >= off + 2 => {
                let len = ip.l4_len as u32;
                let expect = checksum::combine(self.pseudo, (len >> 16) + (len & 0xffff));
                rd16(frame, ip.l4 + off) == checksum::fold(expect)
            }
            _ => false,
        }
    }

    /// Rewrite a packet of the tuple this rewrite was made for: NAT (TTL, address,
    /// port, checksums), and for NAT and DR a partial checksum completed. Returns
    /// whether a partial checksum was completed.
    #[inline]
    pub fn apply(&self, frame: &mut [u8], ip: &IpInfo) -> Result<bool, DropReason> {
        let partial = self.partial(frame, ip);
        if let Some(n) = &self.nat {
            let ttl_at = ip.l3 + if ip.v6 { 7 } else { 8 };
            let ttl = frame[ttl_at];
            if ttl <= 1 {
                return Err(DropReason::TtlExceeded);
            }
            frame[ttl_at] = ttl - 1;
            let range = addr_range(ip, n.end);
            let width = range.len();
            frame[range].copy_from_slice(&n.addr[..width]);
            if !ip.v6 {
                let c = adjust(rd16(frame, ip.l3 + 10), n.ip_delta);
                wr16(frame, ip.l3 + 10, c);
            }
            if ip.has_l4 {
                wr16(frame, ip.l4 + if n.end == End::Src { 0 } else { 2 }, n.port);
                match l4_check_offset(ip.protocol) {
                    Some(off) if !partial && ip.l4_len >= off + 2 => {
                        let c = rd16(frame, ip.l4 + off);
                        // IPv4 UDP without checksum stays without.
                        if !(ip.protocol == UDP && c == 0 && !ip.v6) {
                            let c = adjust(c, n.l4_delta);
                            let c = if ip.protocol == UDP && c == 0 {
                                0xffff
                            } else {
                                c
                            };
                            wr16(frame, ip.l4 + off, c);
                        }
                    }
                    _ => {}
                }
            }
        }
        if partial {
            complete_checksum(frame, ip);
        }
        Ok(partial)
    }
}

/// Set the Ethernet source and destination MACs.
#[inline]
pub(crate) fn set_macs(frame: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    frame[0..6].copy_from_slice(&dst);
    frame[6..12].copy_from_slice(&src);
}
