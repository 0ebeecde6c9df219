//! Test-packet builder: complete Ethernet frames as `Vec<u8>` with correct
//! checksums, and IPv4/IPv6 fragmenters.
//!
//! Used by tests, fuzz seed corpora, benchmarks and the packet generator, not
//! by the hot path, so it allocates and panics on nonsensical specs (mixed
//! address families, more than 40 bytes of IPv4 options, packets over 64 KiB,
//! an MTU too small to carry 8 bytes of fragment data).
//!
//! Invariant: every frame produced by [`FrameSpec::build`] parses with the
//! views in this module (`new_checked` succeeds on every layer) and all its
//! checksums verify, except the L4 checksum when `partial_checksum` is set,
//! which then holds the CHECKSUM_PARTIAL value (folded pseudo-header sum).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{
    EthernetFrame, Ipv4Packet, Ipv6Packet, checksum, ethertype, icmp, icmpv6, ip_proto, put16,
};

/// Source MAC used by the constructors.
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// Destination MAC used by the constructors.
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
/// TCP window used by the builder.
pub const DEFAULT_WINDOW: u16 = 64240;
/// RFC 1812: an ICMPv4 error is at most 576 bytes.
pub const ICMPV4_ERROR_MAX: usize = 576;
/// RFC 4443: an ICMPv6 error is at most the IPv6 minimum MTU.
pub const ICMPV6_ERROR_MAX: usize = 1280;

/// The L4 part of a [`FrameSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Spec {
    /// A TCP header without options (window [`DEFAULT_WINDOW`]).
    Tcp {
        src_port: u16,
        dst_port: u16,
        flags: u16,
        seq: u32,
        ack: u32,
    },
    /// A UDP header.
    Udp { src_port: u16, dst_port: u16 },
    /// ICMP echo request/reply (ICMPv6 128/129 for IPv6).
    IcmpEcho { ident: u16, seq: u16, reply: bool },
    /// An ICMP or ICMPv6 error of type `kind`; `original` is the IP packet that
    /// caused it, truncated like a router does (576-byte ICMPv4 message,
    /// 1280-byte ICMPv6 message). The spec's `payload` is not used.
    IcmpError {
        kind: u8,
        code: u8,
        rest: [u8; 4],
        original: Vec<u8>,
    },
    /// `payload` as-is, with IP protocol `protocol`.
    Raw { protocol: u8 },
}

/// Description of a complete Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// One 802.1Q tag with this VLAN id (`& 0x0fff`).
    pub vlan: Option<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    /// IPv4 identification (unused for IPv6).
    pub ip_ident: u16,
    /// IPv4 options, zero-padded to a multiple of 4 (at most 40 bytes).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers inserted before L4, in order: `(kind, body)`
    /// where `body` is everything after the next-header and length bytes,
    /// zero-padded to the header's unit (8 bytes; 6 bytes of body exactly for
    /// a Fragment header). The builder fills next-header and length.
    pub ipv6_ext: Vec<(u8, Vec<u8>)>,
    pub l4: L4Spec,
    pub payload: Vec<u8>,
    /// Emit the CHECKSUM_PARTIAL form of the TCP/UDP checksum.
    pub partial_checksum: bool,
    /// IPv4 DF bit.
    pub dont_frag: bool,
}

impl FrameSpec {
    fn base(src: IpAddr, dst: IpAddr, l4: L4Spec) -> Self {
        FrameSpec {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            src,
            dst,
            ttl: 64,
            ip_ident: 0x1234,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            l4,
            payload: Vec::new(),
            partial_checksum: false,
            dont_frag: true,
        }
    }

    /// A TCP segment; seq 1000, ack 2000 when `flags` has ACK (else 0).
    pub fn tcp(src: SocketAddr, dst: SocketAddr, flags: u16) -> Self {
        let ack = if flags & super::tcp::flags::ACK != 0 {
            2000
        } else {
            0
        };
        let l4 = L4Spec::Tcp {
            src_port: src.port(),
            dst_port: dst.port(),
            flags,
            seq: 1000,
            ack,
        };
        Self::base(src.ip(), dst.ip(), l4)
    }

    /// A UDP datagram.
    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Self {
        let l4 = L4Spec::Udp {
            src_port: src.port(),
            dst_port: dst.port(),
        };
        Self::base(src.ip(), dst.ip(), l4)
    }

    /// An ICMP/ICMPv6 echo request (or reply).
    pub fn icmp_echo(src: IpAddr, dst: IpAddr, ident: u16, seq: u16, reply: bool) -> Self {
        Self::base(src, dst, L4Spec::IcmpEcho { ident, seq, reply })
    }

    /// An ICMP/ICMPv6 error quoting `original` (an IP packet, no Ethernet).
    pub fn icmp_error(
        src: IpAddr,
        dst: IpAddr,
        kind: u8,
        code: u8,
        rest: [u8; 4],
        original: &[u8],
    ) -> Self {
        let l4 = L4Spec::IcmpError {
            kind,
            code,
            rest,
            original: original.to_vec(),
        };
        Self::base(src, dst, l4)
    }

    /// An IP packet with protocol `protocol` carrying `payload` as-is.
    pub fn raw(src: IpAddr, dst: IpAddr, protocol: u8) -> Self {
        Self::base(src, dst, L4Spec::Raw { protocol })
    }

    pub fn with_payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    pub fn with_vlan(mut self, vlan: Option<u16>) -> Self {
        self.vlan = vlan;
        self
    }

    pub fn with_macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    pub fn with_ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn with_ident(mut self, ident: u16) -> Self {
        self.ip_ident = ident;
        self
    }

    pub fn with_ipv4_options(mut self, o: &[u8]) -> Self {
        self.ipv4_options = o.to_vec();
        self
    }

    pub fn with_ipv6_ext(mut self, kind: u8, body: &[u8]) -> Self {
        self.ipv6_ext.push((kind, body.to_vec()));
        self
    }

    pub fn with_partial_checksum(mut self, partial: bool) -> Self {
        self.partial_checksum = partial;
        self
    }

    pub fn with_dont_frag(mut self, df: bool) -> Self {
        self.dont_frag = df;
        self
    }

    /// True for an IPv6 spec.
    ///
    /// # Panics
    /// If `src` and `dst` are of different families.
    pub fn is_ipv6(&self) -> bool {
        match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => panic!("FrameSpec: src and dst address families differ"),
        }
    }

    /// The L4 protocol number (ICMP or ICMPv6 by family for ICMP specs).
    pub fn protocol(&self) -> u8 {
        match &self.l4 {
            L4Spec::Tcp { .. } => ip_proto::TCP,
            L4Spec::Udp { .. } => ip_proto::UDP,
            L4Spec::IcmpEcho { .. } | L4Spec::IcmpError { .. } => {
                if self.is_ipv6() {
                    ip_proto::ICMPV6
                } else {
                    ip_proto::ICMP
                }
            }
            L4Spec::Raw { protocol } => *protocol,
        }
    }

    fn padded_options(&self) -> Vec<u8> {
        let mut o = self.ipv4_options.clone();
        o.resize(o.len().next_multiple_of(4), 0);
        assert!(
            o.len() <= 40,
            "FrameSpec: more than 40 bytes of IPv4 options"
        );
        o
    }

    fn ext_headers(&self, l4_proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (kind, body)) in self.ipv6_ext.iter().enumerate() {
            let next = self.ipv6_ext.get(i + 1).map_or(l4_proto, |e| e.0);
            let start = out.len();
            out.push(next);
            out.push(0);
            match *kind {
                ip_proto::IPV6_FRAGMENT => {
                    let mut b = body.clone();
                    b.resize(6, 0);
                    out.extend_from_slice(&b);
                }
                ip_proto::AH => {
                    out.extend_from_slice(body);
                    out.resize(start + (2 + body.len()).next_multiple_of(8), 0);
                    out[start + 1] = ((out.len() - start) / 4 - 2) as u8;
                }
                _ => {
                    out.extend_from_slice(body);
                    out.resize(start + (2 + body.len()).next_multiple_of(8), 0);
                    out[start + 1] = ((out.len() - start) / 8 - 1) as u8;
                }
            }
        }
        out
    }

    /// The L4 segment with its checksum field still zero.
    fn l4_bytes(&self, max_icmp_original: usize) -> Vec<u8> {
        let v6 = self.is_ipv6();
        let mut l4 = Vec::new();
        match &self.l4 {
            L4Spec::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ack,
            } => {
                l4.extend_from_slice(&src_port.to_be_bytes());
                l4.extend_from_slice(&dst_port.to_be_bytes());
                l4.extend_from_slice(&seq.to_be_bytes());
                l4.extend_from_slice(&ack.to_be_bytes());
                l4.extend_from_slice(&((5u16 << 12) | (flags & 0x01ff)).to_be_bytes());
                l4.extend_from_slice(&DEFAULT_WINDOW.to_be_bytes());
                l4.extend_from_slice(&[0, 0, 0, 0]);
                l4.extend_from_slice(&self.payload);
            }
            L4Spec::Udp { src_port, dst_port } => {
                l4.extend_from_slice(&src_port.to_be_bytes());
                l4.extend_from_slice(&dst_port.to_be_bytes());
                let len = u16::try_from(8 + self.payload.len()).expect("UDP datagram too long");
                l4.extend_from_slice(&len.to_be_bytes());
                l4.extend_from_slice(&[0, 0]);
                l4.extend_from_slice(&self.payload);
            }
            L4Spec::IcmpEcho { ident, seq, reply } => {
                let t = match (v6, reply) {
                    (false, false) => icmp::msg_type::ECHO_REQUEST,
                    (false, true) => icmp::msg_type::ECHO_REPLY,
                    (true, false) => icmpv6::msg_type::ECHO_REQUEST,
                    (true, true) => icmpv6::msg_type::ECHO_REPLY,
                };
                l4.extend_from_slice(&[t, 0, 0, 0]);
                l4.extend_from_slice(&ident.to_be_bytes());
                l4.extend_from_slice(&seq.to_be_bytes());
                l4.extend_from_slice(&self.payload);
            }
            L4Spec::IcmpError {
                kind,
                code,
                rest,
                original,
            } => {
                l4.extend_from_slice(&[*kind, *code, 0, 0]);
                l4.extend_from_slice(rest);
                l4.extend_from_slice(&original[..original.len().min(max_icmp_original)]);
            }
            L4Spec::Raw { .. } => l4.extend_from_slice(&self.payload),
        }
        l4
    }

    fn fill_l4_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr, l4: &mut [u8]) {
        let proto = self.protocol();
        let (off, c) = match self.l4 {
            L4Spec::Tcp { .. } | L4Spec::Udp { .. } => {
                let off = if proto == ip_proto::TCP { 16 } else { 6 };
                let c = if self.partial_checksum {
                    checksum::fold(checksum::pseudo_header_v4(src, dst, proto, l4.len() as u16))
                } else {
                    checksum::tcp_udp_checksum_v4(src, dst, proto, l4)
                };
                (off, c)
            }
            L4Spec::IcmpEcho { .. } | L4Spec::IcmpError { .. } => (2, checksum::checksum(l4)),
            L4Spec::Raw { .. } => return,
        };
        put16(l4, off, c);
    }

    fn fill_l4_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr, l4: &mut [u8]) {
        let proto = self.protocol();
        let off = match self.l4 {
            L4Spec::Tcp { .. } => 16,
            L4Spec::Udp { .. } => 6,
            L4Spec::IcmpEcho { .. } | L4Spec::IcmpError { .. } => 2,
            L4Spec::Raw { .. } => return,
        };
        let c = if self.partial_checksum && off != 2 {
            checksum::fold(checksum::pseudo_header_v6(src, dst, proto, l4.len() as u32))
        } else {
            checksum::tcp_udp_checksum_v6(src, dst, proto, l4)
        };
        put16(l4, off, c);
    }

    /// Build the IP packet (no Ethernet header).
    pub fn build_ip(&self) -> Vec<u8> {
        match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.build_v4(src, dst),
            (IpAddr::V6(src), IpAddr::V6(dst)) => self.build_v6(&src, &dst),
            _ => panic!("FrameSpec: src and dst address families differ"),
        }
    }

    fn build_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let opts = self.padded_options();
        let hl = 20 + opts.len();
        let mut l4 = self.l4_bytes(ICMPV4_ERROR_MAX - hl - 8);
        self.fill_l4_checksum_v4(src, dst, &mut l4);
        let total = u16::try_from(hl + l4.len()).expect("IPv4 packet too long");
        let mut buf = vec![0u8; usize::from(total)];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(hl);
        p.set_total_len(total);
        p.set_ident(self.ip_ident);
        p.set_dont_frag(self.dont_frag);
        p.set_ttl(self.ttl);
        p.set_protocol(self.protocol());
        p.set_src_addr(src);
        p.set_dst_addr(dst);
        p.options_mut().copy_from_slice(&opts);
        p.payload_mut().copy_from_slice(&l4);
        p.fill_checksum();
        buf
    }

    fn build_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> Vec<u8> {
        let proto = self.protocol();
        let ext = self.ext_headers(proto);
        let mut l4 = self.l4_bytes(ICMPV6_ERROR_MAX.saturating_sub(40 + ext.len() + 8));
        self.fill_l4_checksum_v6(src, dst, &mut l4);
        let plen = u16::try_from(ext.len() + l4.len()).expect("IPv6 payload too long");
        let mut buf = vec![0u8; 40 + usize::from(plen)];
        let mut p = Ipv6Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_payload_len(plen);
        p.set_next_header(self.ipv6_ext.first().map_or(proto, |e| e.0));
        p.set_hop_limit(self.ttl);
        p.set_src_addr(*src);
        p.set_dst_addr(*dst);
        let pl = p.payload_mut();
        pl[..ext.len()].copy_from_slice(&ext);
        pl[ext.len()..].copy_from_slice(&l4);
        buf
    }

    /// Build the complete Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let ip = self.build_ip();
        let et = if self.is_ipv6() {
            ethertype::IPV6
        } else {
            ethertype::IPV4
        };
        let hl = if self.vlan.is_some() { 18 } else { 14 };
        let mut frame = vec![0u8; hl];
        EthernetFrame::new_unchecked(&mut frame[..])
            .emit_header(self.dst_mac, self.src_mac, self.vlan, et)
            .expect("header fits");
        frame.extend_from_slice(&ip);
        frame
    }
}

/// IPv4 options that must be copied into every fragment, zero-padded.
fn copied_options(opts: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(&l) = opts.get(i + 1) else { break };
        let l = usize::from(l);
        if l < 2 || i + l > opts.len() {
            break;
        }
        if opts[i] & 0x80 != 0 {
            out.extend_from_slice(&opts[i..i + l]);
        }
        i += l;
    }
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// Split an IPv4 Ethernet frame (from [`FrameSpec::build`]) into fragments
/// whose IP packets are at most `mtu` bytes. Returns the frame unchanged
/// (one element) if it fits. Later fragments carry only the options with the
/// copy bit; DF is cleared; an already fragmented packet is fragmented
/// further (offsets and the last MF are kept).
///
/// # Panics
/// If the frame is not a valid IPv4 frame or `mtu` cannot carry 8 data bytes.
pub fn fragment_ipv4(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).expect("Ethernet frame");
    assert_eq!(eth.ethertype(), ethertype::IPV4, "not an IPv4 frame");
    let eh = eth.header_len();
    let ip = Ipv4Packet::new_checked(&frame[eh..]).expect("IPv4 packet");
    if usize::from(ip.total_len()) <= mtu {
        return vec![frame.to_vec()];
    }
    let first_header = &frame[eh..eh + ip.header_len()];
    let mut later_header = first_header[..20].to_vec();
    later_header.extend_from_slice(&copied_options(ip.options()));
    let data = ip.payload();
    let base = usize::from(ip.frag_offset());
    let last_mf = ip.more_frags();
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let h: &[u8] = if pos == 0 {
            first_header
        } else {
            &later_header
        };
        let max = mtu.saturating_sub(h.len()) & !7;
        assert!(max > 0, "MTU too small to fragment");
        let n = max.min(data.len() - pos);
        let mut f = frame[..eh].to_vec();
        f.extend_from_slice(h);
        f.extend_from_slice(&data[pos..pos + n]);
        let mut p = Ipv4Packet::new_unchecked(&mut f[eh..]);
        p.set_header_len(h.len());
        p.set_total_len((h.len() + n) as u16);
        p.set_more_frags(pos + n < data.len() || last_mf);
        p.set_frag_offset((base + pos) as u16);
        p.set_dont_frag(false);
        p.fill_checksum();
        out.push(f);
        pos += n;
    }
    out
}

/// Split an IPv6 Ethernet frame (from [`FrameSpec::build`]) into fragments
/// whose IP packets are at most `mtu` bytes, inserting a Fragment header after
/// the unfragmentable part (Hop-by-Hop, Routing, and Destination Options
/// before a Routing header). Returns the frame unchanged if it fits.
///
/// # Panics
/// If the frame is not a valid IPv6 frame, already has a Fragment header in
/// its unfragmentable part, or `mtu` cannot carry 8 data bytes.
pub fn fragment_ipv6(frame: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let eth = EthernetFrame::new_checked(frame).expect("Ethernet frame");
    assert_eq!(eth.ethertype(), ethertype::IPV6, "not an IPv6 frame");
    let eh = eth.header_len();
    let pkt = Ipv6Packet::new_checked(&frame[eh..]).expect("IPv6 packet");
    let ip = &frame[eh..eh + 40 + usize::from(pkt.payload_len())];
    if ip.len() <= mtu {
        return vec![frame.to_vec()];
    }
    let (mut nh, mut off) = (ip[6], 40);
    let (mut unfrag_end, mut unfrag_nh_pos) = (40, 6);
    while matches!(
        nh,
        ip_proto::IPV6_HOPOPTS | ip_proto::IPV6_ROUTING | ip_proto::IPV6_DSTOPTS
    ) {
        let kind = nh;
        let start = off;
        nh = ip[off];
        off += (usize::from(ip[off + 1]) + 1) * 8;
        if kind != ip_proto::IPV6_DSTOPTS {
            unfrag_end = off;
            unfrag_nh_pos = start;
        }
    }
    assert!(
        ip[unfrag_nh_pos] != ip_proto::IPV6_FRAGMENT,
        "already fragmented"
    );
    let first_nh = ip[unfrag_nh_pos];
    let ident = 0x8000_0000 | u32::from(checksum::fold(checksum::sum(ip)));
    let data = &ip[unfrag_end..];
    let max = mtu.saturating_sub(unfrag_end + 8) & !7;
    assert!(max > 0, "MTU too small to fragment");
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = max.min(data.len() - pos);
        let more = pos + n < data.len();
        let mut f = frame[..eh].to_vec();
        f.extend_from_slice(&ip[..unfrag_end]);
        f.extend_from_slice(&[first_nh, 0]);
        f.extend_from_slice(&((pos as u16) | u16::from(more)).to_be_bytes());
        f.extend_from_slice(&ident.to_be_bytes());
        f.extend_from_slice(&data[pos..pos + n]);
        f[eh + unfrag_nh_pos] = ip_proto::IPV6_FRAGMENT;
        let mut p = Ipv6Packet::new_unchecked(&mut f[eh..]);
        p.set_payload_len((unfrag_end - 40 + 8 + n) as u16);
        out.push(f);
        pos += n;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        ArpPacket, IcmpPacket, Icmpv6Packet, TcpPacket, UdpPacket, ipv6::Ipv6Frag, tcp::flags,
    };
    use pnet_packet::Packet as _;
    use proptest::prelude::*;

    /// The IPv4 TCP SYN of `tcp.rs`, framed: 02:00:00:00:00:02 <- :01, VLAN 42.
    const VLAN_SYN_HEAD: [u8; 18] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0x00,
        0x2a, 0x08, 0x00,
    ];

    #[test]
    fn frame_fixture() {
        let f = FrameSpec::tcp(
            "10.0.0.1:45678".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            flags::SYN,
        )
        .with_vlan(Some(42))
        .build();
        assert_eq!(&f[..18], &VLAN_SYN_HEAD);
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!(e.vlan_id(), Some(42));
        assert_eq!(e.payload().len(), 40);
    }

    /// Parse `frame` with the views and pnet and compare against `spec`.
    fn check_frame(spec: &FrameSpec, frame: &[u8]) {
        let eth = EthernetFrame::new_checked(frame).unwrap();
        assert_eq!(eth.src_addr(), spec.src_mac);
        assert_eq!(eth.dst_addr(), spec.dst_mac);
        assert_eq!(eth.vlan_id(), spec.vlan.map(|v| v & 0x0fff));
        let pe = pnet_packet::ethernet::EthernetPacket::new(frame).unwrap();
        assert_eq!(pe.get_source().octets(), spec.src_mac);
        assert_eq!(pe.get_destination().octets(), spec.dst_mac);
        let pnet_et = if spec.vlan.is_some() {
            assert_eq!(pe.get_ethertype().0, ethertype::VLAN);
            let v = pnet_packet::vlan::VlanPacket::new(pe.payload()).unwrap();
            assert_eq!(Some(v.get_vlan_identifier()), eth.vlan_id());
            v.get_ethertype().0
        } else {
            pe.get_ethertype().0
        };
        assert_eq!(pnet_et, eth.ethertype());
        let ip = eth.payload();
        let proto = spec.protocol();
        let l4: &[u8];
        let mut partial_ok = true;
        let v4;
        match (spec.src, spec.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                assert_eq!(eth.ethertype(), ethertype::IPV4);
                let p = Ipv4Packet::new_checked(ip).unwrap();
                assert!(p.verify_checksum());
                assert_eq!((p.src_addr(), p.dst_addr()), (s, d));
                assert_eq!(
                    (p.ttl(), p.ident(), p.dont_frag(), p.protocol()),
                    (spec.ttl, spec.ip_ident, spec.dont_frag, proto)
                );
                assert_eq!(p.options(), &spec.padded_options()[..]);
                assert!(!p.is_fragment());
                let pp = pnet_packet::ipv4::Ipv4Packet::new(ip).unwrap();
                assert_eq!(pnet_packet::ipv4::checksum(&pp), p.checksum());
                assert_eq!(pp.get_source(), s);
                assert_eq!(pp.get_total_length(), p.total_len());
                l4 = &ip[p.header_len()..usize::from(p.total_len())];
                if matches!(spec.l4, L4Spec::Tcp { .. } | L4Spec::Udp { .. }) {
                    let c = u16::from_be_bytes(if proto == ip_proto::TCP {
                        [l4[16], l4[17]]
                    } else {
                        [l4[6], l4[7]]
                    });
                    if spec.partial_checksum {
                        assert!(checksum::is_partial_v4(c, s, d, proto, l4.len() as u16));
                        partial_ok = false;
                    } else if proto == ip_proto::TCP {
                        let t = pnet_packet::tcp::TcpPacket::new(l4).unwrap();
                        assert_eq!(pnet_packet::tcp::ipv4_checksum(&t, &s, &d), c);
                        assert!(TcpPacket::new_checked(l4).unwrap().verify_checksum_v4(s, d));
                    } else {
                        let u = pnet_packet::udp::UdpPacket::new(l4).unwrap();
                        let pc = pnet_packet::udp::ipv4_checksum(&u, &s, &d);
                        assert!(pc == c || (pc == 0 && c == 0xffff));
                        assert!(UdpPacket::new_checked(l4).unwrap().verify_checksum_v4(s, d));
                    }
                }
                if proto == ip_proto::ICMP {
                    let ic = pnet_packet::icmp::IcmpPacket::new(l4).unwrap();
                    assert_eq!(
                        pnet_packet::icmp::checksum(&ic),
                        IcmpPacket::new_checked(l4).unwrap().checksum()
                    );
                    assert!(IcmpPacket::new_checked(l4).unwrap().verify_checksum());
                }
                v4 = true;
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                assert_eq!(eth.ethertype(), ethertype::IPV6);
                let p = Ipv6Packet::new_checked(ip).unwrap();
                assert_eq!(
                    (p.src_addr(), p.dst_addr(), p.hop_limit()),
                    (s, d, spec.ttl)
                );
                let w = p.walk_to_l4().unwrap();
                assert_eq!(w.protocol, proto);
                assert_eq!(w.offset, 40 + spec.ext_headers(proto).len());
                let fe = spec
                    .ipv6_ext
                    .iter()
                    .position(|e| e.0 == ip_proto::IPV6_FRAGMENT);
                assert_eq!(w.frag.is_some(), fe.is_some());
                let pp = pnet_packet::ipv6::Ipv6Packet::new(ip).unwrap();
                assert_eq!(pp.get_payload_length(), p.payload_len());
                assert_eq!(pp.get_destination(), d);
                l4 = &ip[w.offset..40 + usize::from(p.payload_len())];
                let c = match proto {
                    ip_proto::TCP => u16::from_be_bytes([l4[16], l4[17]]),
                    ip_proto::UDP => u16::from_be_bytes([l4[6], l4[7]]),
                    ip_proto::ICMPV6 => u16::from_be_bytes([l4[2], l4[3]]),
                    _ => 0,
                };
                if spec.partial_checksum && matches!(proto, ip_proto::TCP | ip_proto::UDP) {
                    assert!(checksum::is_partial_v6(c, &s, &d, proto, l4.len() as u32));
                    partial_ok = false;
                } else if proto == ip_proto::TCP {
                    let t = pnet_packet::tcp::TcpPacket::new(l4).unwrap();
                    assert_eq!(pnet_packet::tcp::ipv6_checksum(&t, &s, &d), c);
                    assert!(
                        TcpPacket::new_checked(l4)
                            .unwrap()
                            .verify_checksum_v6(&s, &d)
                    );
                } else if proto == ip_proto::UDP {
                    let u = pnet_packet::udp::UdpPacket::new(l4).unwrap();
                    let pc = pnet_packet::udp::ipv6_checksum(&u, &s, &d);
                    assert!(pc == c || (pc == 0 && c == 0xffff));
                    assert!(
                        UdpPacket::new_checked(l4)
                            .unwrap()
                            .verify_checksum_v6(&s, &d)
                    );
                } else if proto == ip_proto::ICMPV6 {
                    let ic = pnet_packet::icmpv6::Icmpv6Packet::new(l4).unwrap();
                    assert_eq!(pnet_packet::icmpv6::checksum(&ic, &s, &d), c);
                    assert!(
                        Icmpv6Packet::new_checked(l4)
                            .unwrap()
                            .verify_checksum(&s, &d)
                    );
                }
                v4 = false;
            }
            _ => unreachable!(),
        }
        let _ = partial_ok;
        match &spec.l4 {
            L4Spec::Tcp {
                src_port,
                dst_port,
                flags,
                seq,
                ack,
            } => {
                let t = TcpPacket::new_checked(l4).unwrap();
                assert_eq!((t.src_port(), t.dst_port()), (*src_port, *dst_port));
                assert_eq!(
                    (t.seq_number(), t.ack_number(), t.flags()),
                    (*seq, *ack, flags & 0x1ff)
                );
                assert_eq!(t.payload(), &spec.payload[..]);
                let pt = pnet_packet::tcp::TcpPacket::new(l4).unwrap();
                assert_eq!(pt.get_flags(), (*flags & 0xff) as u8);
                assert_eq!(pt.get_sequence(), *seq);
            }
            L4Spec::Udp { src_port, dst_port } => {
                let u = UdpPacket::new_checked(l4).unwrap();
                assert_eq!((u.src_port(), u.dst_port()), (*src_port, *dst_port));
                assert_eq!(u.payload(), &spec.payload[..]);
                assert_eq!(usize::from(u.len()), l4.len());
            }
            L4Spec::IcmpEcho { ident, seq, reply } => {
                if v4 {
                    let m = IcmpPacket::new_checked(l4).unwrap();
                    assert_eq!(m.msg_type(), if *reply { 0 } else { 8 });
                    assert_eq!((m.ident(), m.seq_no()), (*ident, *seq));
                    assert_eq!(m.payload(), &spec.payload[..]);
                } else {
                    let m = Icmpv6Packet::new_checked(l4).unwrap();
                    assert_eq!(m.msg_type(), if *reply { 129 } else { 128 });
                    assert_eq!((m.ident(), m.seq_no()), (*ident, *seq));
                    assert_eq!(m.payload(), &spec.payload[..]);
                }
            }
            L4Spec::IcmpError {
                kind,
                code,
                original,
                ..
            } => {
                let (e, t, c) = if v4 {
                    let m = IcmpPacket::new_checked(l4).unwrap();
                    assert!(ip.len() <= ICMPV4_ERROR_MAX);
                    (m.embedded_ipv4().unwrap(), m.msg_type(), m.msg_code())
                } else {
                    let m = Icmpv6Packet::new_checked(l4).unwrap();
                    assert!(ip.len() <= ICMPV6_ERROR_MAX);
                    (m.embedded_ipv6().unwrap(), m.msg_type(), m.msg_code())
                };
                assert_eq!((t, c), (*kind, *code));
                assert_eq!(&l4[8..], &original[..l4.len() - 8]);
                assert_eq!(e.protocol, ip_proto::TCP);
                let quoted = TcpPacket::new_unchecked(&l4[e.l4_offset..]);
                let orig_l4 = &original[e.l4_offset - 8..];
                assert_eq!(
                    quoted.src_port(),
                    u16::from_be_bytes([orig_l4[0], orig_l4[1]])
                );
            }
            L4Spec::Raw { .. } => assert_eq!(l4, &spec.payload[..]),
        }
    }

    fn addr_pair(v6: bool, a: [u8; 16], b: [u8; 16]) -> (IpAddr, IpAddr) {
        if v6 {
            (Ipv6Addr::from(a).into(), Ipv6Addr::from(b).into())
        } else {
            (
                Ipv4Addr::new(a[0], a[1], a[2], a[3]).into(),
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).into(),
            )
        }
    }

    prop_compose! {
        fn ext_chain()(hbh in any::<bool>(),
                       mid in proptest::collection::vec((prop::sample::select(vec![43u8, 60, 51]),
                                                         proptest::collection::vec(any::<u8>(), 0..30)), 0..3),
                       frag in proptest::option::of((any::<bool>(), any::<u32>())),
                       hbh_body in proptest::collection::vec(any::<u8>(), 0..14))
                      -> Vec<(u8, Vec<u8>)> {
            let mut v = Vec::new();
            if hbh {
                v.push((0u8, hbh_body));
            }
            v.extend(mid);
            if let Some((more, id)) = frag {
                let mut b = vec![0, u8::from(more)];
                b.extend_from_slice(&id.to_be_bytes());
                v.push((44u8, b));
            }
            v
        }
    }

    prop_compose! {
        fn frame_spec()(v6 in any::<bool>(), a in any::<[u8; 16]>(), b in any::<[u8; 16]>(),
                        sp in any::<u16>(), dp in any::<u16>(), kind in 0u8..5,
                        fl in 0u16..0x200, seq in any::<u32>(), ack in any::<u32>(),
                        vlan in proptest::option::of(0u16..4096),
                        opts in proptest::collection::vec(any::<u8>(), 0..=40),
                        ext in ext_chain(),
                        payload in proptest::collection::vec(any::<u8>(), 0..100),
                        orig_len in 0usize..1600,
                        partial in any::<bool>(), df in any::<bool>(), ttl in any::<u8>(),
                        ident in any::<u16>(), macs in any::<([u8; 6], [u8; 6])>(),
                        reply in any::<bool>(), raw_proto in prop::sample::select(vec![2u8, 47, 50, 59, 132]))
                       -> FrameSpec {
            let (src, dst) = addr_pair(v6, a, b);
            let l4 = match kind {
                0 => L4Spec::Tcp { src_port: sp, dst_port: dp, flags: fl, seq, ack },
                1 => L4Spec::Udp { src_port: sp, dst_port: dp },
                2 => L4Spec::IcmpEcho { ident: sp, seq: dp, reply },
                3 => {
                    let original = FrameSpec::tcp(SocketAddr::new(dst, dp), SocketAddr::new(src, sp), flags::ACK)
                        .with_payload(&vec![0x5a; orig_len])
                        .build_ip();
                    L4Spec::IcmpError { kind: if v6 { 1 + (fl % 4) as u8 } else { [3u8, 11, 12][usize::from(fl % 3)] }, code: 0, rest: [0; 4], original }
                }
                _ => L4Spec::Raw { protocol: raw_proto },
            };
            FrameSpec {
                src_mac: macs.0, dst_mac: macs.1, vlan, src, dst, ttl, ip_ident: ident,
                ipv4_options: opts, ipv6_ext: ext, l4, payload, partial_checksum: partial, dont_frag: df,
            }
        }
    }

    /// Run every view over `b` (and the layers it seems to contain), calling
    /// every getter; must never panic.
    fn parse_all(b: &[u8]) {
        if let Ok(e) = EthernetFrame::new_checked(b) {
            let _ = (
                e.dst_addr(),
                e.src_addr(),
                e.vlan_id(),
                e.ethertype(),
                e.header_len(),
            );
            parse_ip(e.payload());
        }
        if let Ok(a) = ArpPacket::new_checked(b) {
            let _ = (
                a.hardware_type(),
                a.protocol_type(),
                a.hardware_len(),
                a.protocol_len(),
                a.operation(),
            );
            let _ = (
                a.sender_hw_addr(),
                a.sender_proto_addr(),
                a.target_hw_addr(),
                a.target_proto_addr(),
            );
        }
        parse_ip(b);
        parse_l4(b);
    }

    fn parse_ip(b: &[u8]) {
        if let Ok(p) = Ipv4Packet::new_checked(b) {
            let _ = (
                p.version(),
                p.header_len(),
                p.dscp_ecn(),
                p.total_len(),
                p.ident(),
                p.dont_frag(),
            );
            let _ = (
                p.more_frags(),
                p.frag_offset(),
                p.is_fragment(),
                p.ttl(),
                p.protocol(),
                p.checksum(),
            );
            let _ = (p.src_addr(), p.dst_addr(), p.options(), p.verify_checksum());
            parse_l4(p.payload());
        }
        if let Ok(p) = Ipv6Packet::new_checked(b) {
            let _ = (
                p.version(),
                p.traffic_class(),
                p.flow_label(),
                p.payload_len(),
                p.next_header(),
            );
            let _ = (p.hop_limit(), p.src_addr(), p.dst_addr(), p.payload());
            if let Ok(w) = p.walk_to_l4() {
                let end = 40 + usize::from(p.payload_len());
                parse_l4(&b[w.offset..end]);
            }
        }
    }

    fn parse_l4(b: &[u8]) {
        let (s4, s6) = (Ipv4Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        if let Ok(t) = TcpPacket::new_checked(b) {
            let _ = (
                t.src_port(),
                t.dst_port(),
                t.seq_number(),
                t.ack_number(),
                t.header_len(),
                t.flags(),
            );
            let _ = (
                t.syn(),
                t.ack(),
                t.fin(),
                t.rst(),
                t.psh(),
                t.window_len(),
                t.checksum(),
                t.urgent_at(),
            );
            let _ = (
                t.options(),
                t.payload(),
                t.verify_checksum_v4(s4, s4),
                t.verify_checksum_v6(&s6, &s6),
            );
        }
        if let Ok(u) = UdpPacket::new_checked(b) {
            let _ = (
                u.src_port(),
                u.dst_port(),
                u.len(),
                u.checksum(),
                u.payload(),
            );
            let _ = (u.verify_checksum_v4(s4, s4), u.verify_checksum_v6(&s6, &s6));
        }
        if let Ok(m) = IcmpPacket::new_checked(b) {
            let _ = (
                m.msg_type(),
                m.msg_code(),
                m.checksum(),
                m.ident(),
                m.seq_no(),
                m.rest_of_header(),
            );
            let _ = (
                m.is_error(),
                m.next_hop_mtu(),
                m.payload(),
                m.verify_checksum(),
            );
            if let Ok(e) = m.embedded_ipv4() {
                let _ = &b[e.l4_offset..e.l4_offset + e.l4_len_available];
                let ip = Ipv4Packet::new_unchecked(&b[e.ip_offset..]);
                let _ = (ip.src_addr(), ip.dst_addr(), ip.header_len());
            }
        }
        if let Ok(m) = Icmpv6Packet::new_checked(b) {
            let _ = (
                m.msg_type(),
                m.msg_code(),
                m.checksum(),
                m.ident(),
                m.seq_no(),
                m.rest_of_header(),
            );
            let _ = (
                m.is_error(),
                m.is_ndp(),
                m.mtu(),
                m.payload(),
                m.verify_checksum(&s6, &s6),
            );
            if let Ok(e) = m.embedded_ipv6() {
                let _ = &b[e.l4_offset..e.l4_offset + e.l4_len_available];
                let ip = Ipv6Packet::new_unchecked(&b[e.ip_offset..]);
                let _ = (ip.src_addr(), ip.dst_addr(), ip.payload_len());
            }
        }
    }

    #[test]
    fn fragment_ipv4_roundtrip() {
        let spec = FrameSpec::udp(
            "10.1.1.1:1000".parse().unwrap(),
            "10.2.2.2:2000".parse().unwrap(),
        )
        .with_vlan(Some(7))
        .with_ipv4_options(&[0x94, 0x04, 0x00, 0x00, 0x07, 0x07, 0x04, 0, 0, 0, 0])
        .with_payload(&(0..3000u32).map(|i| i as u8).collect::<Vec<_>>());
        let frame = spec.build();
        let whole = Ipv4Packet::new_checked(&frame[18..]).unwrap();
        let frags = fragment_ipv4(&frame, 1500);
        assert_eq!(frags.len(), 3);
        let mut data = vec![0u8; whole.payload().len()];
        for (i, f) in frags.iter().enumerate() {
            let e = EthernetFrame::new_checked(&f[..]).unwrap();
            assert_eq!(e.vlan_id(), Some(7));
            let p = Ipv4Packet::new_checked(e.payload()).unwrap();
            assert!(usize::from(p.total_len()) <= 1500);
            assert!(p.verify_checksum() && p.is_fragment() && !p.dont_frag());
            assert_eq!(p.more_frags(), i + 1 < frags.len());
            assert_eq!(p.options().len(), if i == 0 { 12 } else { 4 });
            let off = usize::from(p.frag_offset());
            data[off..off + p.payload().len()].copy_from_slice(p.payload());
        }
        assert_eq!(data, whole.payload());
        assert_eq!(fragment_ipv4(&frame, 9000), vec![frame.clone()]);
    }

    #[test]
    fn fragment_ipv6_roundtrip() {
        let spec = FrameSpec::tcp(
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
            flags::ACK,
        )
        .with_ipv6_ext(ip_proto::IPV6_HOPOPTS, &[])
        .with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[])
        .with_ipv6_ext(ip_proto::IPV6_ROUTING, &[])
        .with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[])
        .with_payload(&[0xab; 4000]);
        let frame = spec.build();
        let whole = Ipv6Packet::new_checked(&frame[14..]).unwrap();
        let frags = fragment_ipv6(&frame, 1280);
        assert_eq!(frags.len(), 4);
        let mut data = Vec::new();
        let mut ident = None;
        for (i, f) in frags.iter().enumerate() {
            let p = Ipv6Packet::new_checked(&f[14..]).unwrap();
            assert!(p.payload().len() + 40 <= 1280);
            let w = p.walk_to_l4().unwrap();
            let fr: Ipv6Frag = w.frag.unwrap();
            assert_eq!(fr.header_offset, 40 + 24);
            assert_eq!(fr.more, i + 1 < frags.len());
            assert_eq!(usize::from(fr.offset), data.len());
            assert!(ident.is_none_or(|x| x == fr.ident));
            ident = Some(fr.ident);
            if i == 0 {
                assert_eq!((w.protocol, w.offset), (ip_proto::TCP, 40 + 24 + 8 + 8));
            }
            data.extend_from_slice(&p.payload()[24 + 8..]);
        }
        assert_eq!(data, &whole.payload()[24..]);
        assert_eq!(fragment_ipv6(&frame, 9000), vec![frame.clone()]);
    }

    #[test]
    fn constructors_and_defaults() {
        let s = FrameSpec::udp("[::1]:5".parse().unwrap(), "[::2]:6".parse().unwrap());
        assert!(s.is_ipv6());
        assert_eq!(
            (s.ttl, s.src_mac, s.dst_mac),
            (64, DEFAULT_SRC_MAC, DEFAULT_DST_MAC)
        );
        let s = s.with_macs([1; 6], [2; 6]).with_partial_checksum(true);
        check_frame(&s, &s.build());
        let s = FrameSpec::tcp(
            "1.1.1.1:1".parse().unwrap(),
            "2.2.2.2:2".parse().unwrap(),
            flags::SYN | flags::ACK,
        );
        assert_eq!(
            s.l4,
            L4Spec::Tcp {
                src_port: 1,
                dst_port: 2,
                flags: 0x12,
                seq: 1000,
                ack: 2000
            }
        );
        check_frame(&s, &s.build());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn build_parse_roundtrip(spec in frame_spec()) {
            let frame = spec.build();
            check_frame(&spec, &frame);
            parse_all(&frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            parse_all(&data);
        }

        #[test]
        fn mutated_frames_never_panic(spec in frame_spec(),
                                      flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
                                      cut in any::<prop::sample::Index>()) {
            let mut frame = spec.build();
            for (i, v) in flips {
                let i = i.index(frame.len());
                frame[i] = v;
            }
            parse_all(&frame);
            let n = cut.index(frame.len() + 1);
            parse_all(&frame[..n]);
            // Without the Ethernet header too.
            parse_all(&frame[14.min(n)..n]);
        }

        #[test]
        fn fragments_parse(spec in frame_spec(), mtu in 200usize..1500) {
            let frame = spec.build();
            let frags = if spec.is_ipv6() {
                if spec.ipv6_ext.iter().any(|e| e.0 == ip_proto::IPV6_FRAGMENT) {
                    return Ok(());
                }
                fragment_ipv6(&frame, mtu)
            } else {
                fragment_ipv4(&frame, mtu)
            };
            for f in &frags {
                let e = EthernetFrame::new_checked(&f[..]).unwrap();
                let ip = e.payload();
                if spec.is_ipv6() {
                    let p = Ipv6Packet::new_checked(ip).unwrap();
                    prop_assert!(40 + usize::from(p.payload_len()) <= mtu.max(frame.len()));
                    p.walk_to_l4().unwrap();
                } else {
                    let p = Ipv4Packet::new_checked(ip).unwrap();
                    prop_assert!(p.verify_checksum());
                    prop_assert!(usize::from(p.total_len()) <= mtu.max(frame.len()));
                }
                parse_all(f);
            }
        }
    }
}
