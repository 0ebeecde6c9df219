//! Shared code of the xvs-core fuzz targets and of the seed generator:
//!
//! - [`facts`]: what the example lab (`xvs_core::lab`) promises, restated by hand from
//!   `crates/xvs-core/src/lab.rs` (VIPs, real servers, clients, MACs) — the oracle of
//!   the `process_structured` target;
//! - [`check_generic`]: invariants that hold for *every* frame given to
//!   `Director::process`, whatever its bytes (used by `process` and
//!   `process_structured`);
//! - [`Step`] / [`Scenario`]: the byte format of `process_structured` inputs (one byte
//!   per field, so that seeds can be written exactly by [`Step::encode`]) and
//!   [`Step::frames`], which turns a step into frames with `wire::build::FrameSpec`.
//!
//! This file is not a fuzz target and does not link libFuzzer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::{Arbitrary, Unstructured};
use xvs_core::Verdict;
use xvs_core::classify::IfaceId;
use xvs_core::lab::{EXT_MAC, INT_MAC};
use xvs_core::wire::checksum;
use xvs_core::wire::ip_proto::{ICMP, ICMPV6, TCP, UDP};
use xvs_core::wire::{self, EthernetFrame, FrameSpec, Ipv4Packet, Ipv6Packet, ethertype};

/// The lab as the oracle sees it.
pub mod facts {
    use super::*;

    /// A real server: lab `DestId`, address, port (`None`: the VIP's port).
    #[derive(Clone, Copy, Debug)]
    pub struct Server {
        pub id: u32,
        pub addr: IpAddr,
        pub port: Option<u16>,
    }

    /// A (VIP, protocol, port) the fuzzer aims at, and who serves it.
    #[derive(Clone, Copy, Debug)]
    pub struct Target {
        pub vip: IpAddr,
        pub protocol: u8,
        pub port: u16,
        /// NAT (true) or DR (false).
        pub nat: bool,
        /// Empty: not a service of the lab.
        pub servers: &'static [Server],
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }

    const fn v6(segs: [u16; 8]) -> IpAddr {
        IpAddr::V6(Ipv6Addr::new(
            segs[0], segs[1], segs[2], segs[3], segs[4], segs[5], segs[6], segs[7],
        ))
    }

    pub const WEB: &[Server] = &[
        Server {
            id: 10,
            addr: v4(198, 19, 0, 10),
            port: Some(8080),
        },
        Server {
            id: 11,
            addr: v4(198, 19, 0, 11),
            port: Some(8080),
        },
    ];
    pub const DNS: &[Server] = &[Server {
        id: 12,
        addr: v4(198, 19, 0, 12),
        port: Some(53),
    }];
    pub const DR: &[Server] = &[Server {
        id: 20,
        addr: v4(198, 18, 2, 20),
        port: None,
    }];
    pub const MARK: &[Server] = &[
        Server {
            id: 30,
            addr: v4(198, 19, 0, 30),
            port: None,
        },
        Server {
            id: 31,
            addr: v4(198, 19, 0, 31),
            port: None,
        },
    ];
    pub const WEB6: &[Server] = &[Server {
        id: 40,
        addr: v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x40]),
        port: Some(8080),
    }];
    /// "Servers" of the non-services: addresses nobody is scheduled to.
    pub const NOBODY4: &[Server] = &[Server {
        id: 99,
        addr: v4(198, 19, 0, 99),
        port: None,
    }];
    pub const NOBODY6: &[Server] = &[Server {
        id: 99,
        addr: v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 0x99]),
        port: None,
    }];

    /// Index 0..=5: the lab's services; 6, 7: a VIP's unserved port.
    pub const TARGETS: &[Target] = &[
        Target {
            vip: v4(198, 18, 1, 1),
            protocol: TCP,
            port: 80,
            nat: true,
            servers: WEB,
        },
        Target {
            vip: v4(198, 18, 1, 1),
            protocol: UDP,
            port: 53,
            nat: true,
            servers: DNS,
        },
        Target {
            vip: v4(198, 18, 1, 2),
            protocol: TCP,
            port: 80,
            nat: false,
            servers: DR,
        },
        Target {
            vip: v4(198, 18, 1, 3),
            protocol: TCP,
            port: 80,
            nat: true,
            servers: MARK,
        },
        Target {
            vip: v4(198, 18, 1, 3),
            protocol: TCP,
            port: 443,
            nat: true,
            servers: MARK,
        },
        Target {
            vip: v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]),
            protocol: TCP,
            port: 80,
            nat: true,
            servers: WEB6,
        },
        Target {
            vip: v4(198, 18, 1, 1),
            protocol: TCP,
            port: 443,
            nat: true,
            servers: NOBODY4,
        },
        Target {
            vip: v6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 1]),
            protocol: UDP,
            port: 53,
            nat: true,
            servers: NOBODY6,
        },
    ];

    /// Clients: 198.18.0.10/.11 have a resolved MAC, .50 does not, 198.18.9.0/24 is
    /// blocked by the lab's drop rule.
    pub const CLIENTS4: &[IpAddr] = &[
        v4(198, 18, 0, 10),
        v4(198, 18, 0, 11),
        v4(198, 18, 0, 50),
        v4(198, 18, 9, 10),
    ];
    /// IPv6 clients (routed through the gateway 2001:db8::ff).
    pub const CLIENTS6: &[IpAddr] = &[
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]),
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11]),
    ];
    /// A router on each side (source of ICMP errors).
    pub const ROUTER4_EXT: IpAddr = v4(198, 18, 0, 1);
    pub const ROUTER4_INT: IpAddr = v4(198, 19, 0, 1);
    pub const ROUTER6_EXT: IpAddr = v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    pub const ROUTER6_INT: IpAddr = v6([0x2001, 0xdb8, 2, 0, 0, 0, 0, 1]);

    /// True for a source the lab's drop rule blocks (198.18.9.0/24).
    pub fn blocked(a: IpAddr) -> bool {
        matches!(a, IpAddr::V4(v) if v.octets()[..3] == [198, 18, 9])
    }

    /// The MAC the lab resolves for a client (None: unresolved).
    pub fn client_mac(a: IpAddr) -> Option<[u8; 6]> {
        use xvs_core::lab::{CLIENT_MAC, GW6_MAC};
        match a {
            IpAddr::V4(v)
                if v == Ipv4Addr::new(198, 18, 0, 10) || v == Ipv4Addr::new(198, 18, 0, 11) =>
            {
                Some(CLIENT_MAC)
            }
            IpAddr::V6(v) if v.segments()[..4] == [0x2001, 0xdb8, 0, 0] => Some(GW6_MAC),
            _ => None,
        }
    }
}

/// Where the L4 part of an IP packet lies in a frame, as `Director::process` parses it.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub l3: usize,
    pub v6: bool,
    /// End of the IP packet (total length / 40 + payload length).
    pub ip_end: usize,
    pub l4: usize,
    pub l4_len: usize,
    pub protocol: u8,
    /// First or later fragment (IPv4 MF/offset, IPv6 Fragment header with M or offset).
    pub fragment: bool,
    pub later_fragment: bool,
}

/// Parse a frame like the director does (Ethernet, IPv4 / IPv6 with extension
/// headers). `None` when it would not get that far.
pub fn layout(frame: &[u8]) -> Option<Layout> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let l3 = eth.header_len();
    match eth.ethertype() {
        ethertype::IPV4 => {
            let p = Ipv4Packet::new_checked(&frame[l3..]).ok()?;
            let hl = p.header_len();
            let tl = usize::from(p.total_len());
            Some(Layout {
                l3,
                v6: false,
                ip_end: l3 + tl,
                l4: l3 + hl,
                l4_len: tl - hl,
                protocol: p.protocol(),
                fragment: p.is_fragment(),
                later_fragment: p.frag_offset() != 0,
            })
        }
        ethertype::IPV6 => {
            let p = Ipv6Packet::new_checked(&frame[l3..]).ok()?;
            let w = p.walk_to_l4().ok()?;
            let end = 40 + usize::from(p.payload_len());
            let (fragment, later) = match w.frag {
                Some(f) => (f.offset != 0 || f.more, f.offset != 0),
                None => (false, false),
            };
            Some(Layout {
                l3,
                v6: true,
                ip_end: l3 + end,
                l4: l3 + w.offset,
                l4_len: end.saturating_sub(w.offset),
                protocol: w.protocol,
                fragment,
                later_fragment: later,
            })
        }
        _ => None,
    }
}

fn v4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

fn v6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// Source and destination address of the IP packet at `l.l3`.
pub fn addrs(frame: &[u8], l: &Layout) -> (IpAddr, IpAddr) {
    if l.v6 {
        (
            v6_at(frame, l.l3 + 8).into(),
            v6_at(frame, l.l3 + 24).into(),
        )
    } else {
        (
            v4_at(frame, l.l3 + 12).into(),
            v4_at(frame, l.l3 + 16).into(),
        )
    }
}

/// Does the TCP/UDP checksum of the L4 region verify (pseudo-header length = the
/// IP-derived L4 length, as the director computes it)? IPv4 UDP 0 = "no checksum".
pub fn l4_checksum_ok(frame: &[u8], l: &Layout) -> bool {
    let seg = &frame[l.l4..l.l4 + l.l4_len];
    let off = if l.protocol == TCP { 16 } else { 6 };
    if seg.len() < off + 2 {
        return true;
    }
    let check = u16::from_be_bytes([seg[off], seg[off + 1]]);
    let ph = match addrs(frame, l) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            if l.protocol == UDP && check == 0 {
                return true;
            }
            checksum::pseudo_header_v4(s, d, l.protocol, l.l4_len as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if l.protocol == UDP && check == 0 {
                return false;
            }
            checksum::pseudo_header_v6(&s, &d, l.protocol, l.l4_len as u32)
        }
        _ => unreachable!(),
    };
    checksum::fold(checksum::combine(ph, checksum::sum(seg))) == 0xffff
}

/// Is the TCP/UDP checksum the CHECKSUM_PARTIAL form (folded pseudo-header sum)?
pub fn l4_checksum_partial(frame: &[u8], l: &Layout) -> bool {
    let off = if l.protocol == TCP { 16 } else { 6 };
    if l.l4_len < off + 2 {
        return false;
    }
    let check = u16::from_be_bytes([frame[l.l4 + off], frame[l.l4 + off + 1]]);
    match addrs(frame, l) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            checksum::is_partial_v4(check, s, d, l.protocol, l.l4_len as u16)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            checksum::is_partial_v6(check, &s, &d, l.protocol, l.l4_len as u32)
        }
        _ => unreachable!(),
    }
}

/// MAC of an interface of the lab.
pub fn iface_mac(i: IfaceId) -> [u8; 6] {
    if i == xvs_core::lab::EXT {
        EXT_MAC
    } else {
        INT_MAC
    }
}

/// Invariants of `Director::process` that hold for any input frame. `before` is the
/// frame as given, `after` as the director left it.
///
/// 1. `Forward` leaves the frame length unchanged (guaranteed by `&mut [u8]`, checked
///    anyway), goes out of interface 0 or 1, and the source MAC is that interface's;
/// 2. `Pass` (the kernel gets the frame) leaves every byte as it was;
/// 3. a forwarded frame keeps its EtherType / VLAN tag and every byte after the IP
///    packet (link-layer padding);
/// 4. a forwarded IPv4 frame has a valid header checksum (the parser rejected a bad
///    one, and rewrites update it incrementally);
/// 5. a forwarded TCP/UDP frame that is not a fragment has a valid L4 checksum if it
///    had one before, or if it carried a CHECKSUM_PARTIAL value and its addresses were
///    rewritten (NAT completes it).
pub fn check_generic(before: &[u8], after: &[u8], verdict: Verdict) {
    assert_eq!(before.len(), after.len(), "frame length changed");
    match verdict {
        Verdict::Pass => assert!(before == after, "Pass verdict but the frame was modified"),
        Verdict::Drop(_) => {}
        Verdict::Forward { iface } => {
            assert!(
                iface.0 <= 1,
                "forwarded out of an unknown interface {iface:?}"
            );
            assert_eq!(
                after[6..12],
                iface_mac(iface),
                "source MAC is not the out interface's"
            );
            let l = layout(before).expect("forwarded a frame the director cannot have parsed");
            assert_eq!(
                before[12..l.l3],
                after[12..l.l3],
                "EtherType / VLAN tag changed"
            );
            assert_eq!(
                before[l.ip_end..],
                after[l.ip_end..],
                "bytes after the IP packet changed"
            );
            if !l.v6 {
                let p = Ipv4Packet::new_checked(&after[l.l3..])
                    .expect("forwarded IPv4 packet no longer parses");
                assert!(
                    p.verify_checksum(),
                    "forwarded IPv4 frame has a bad header checksum"
                );
            }
            if matches!(l.protocol, TCP | UDP)
                && !l.fragment
                && (l.protocol != TCP || l.l4_len >= 20)
                && l.l4_len >= 8
            {
                let valid_before = l4_checksum_ok(before, &l);
                let partial_before = l4_checksum_partial(before, &l);
                let (s0, d0) = addrs(before, &l);
                let (s1, d1) = addrs(after, &l);
                let rewritten = (s0, d0) != (s1, d1);
                if valid_before || (partial_before && rewritten) {
                    assert!(
                        l4_checksum_ok(after, &l),
                        "forwarded frame has a bad L4 checksum (valid before: {valid_before}, partial before: {partial_before})"
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// process_structured: input format
// ---------------------------------------------------------------------------------

/// Time advances (ms) a step can choose: around the lab's timeouts (fragments 30 s,
/// TCP SYN 60 s, FIN 120 s, UDP 300 s, persistence 300 s, established 900 s).
pub const ADVANCES_MS: [u32; 16] = [
    0, 0, 0, 0, 1, 10, 1_000, 5_000, 10_001, 29_999, 30_001, 60_001, 120_001, 300_001, 900_001,
    3_600_000,
];

/// TCP flag combinations (`flags & 0x80 == 0`; otherwise `flags & 0x3f` is used raw).
pub const TCP_FLAGS: [u16; 8] = {
    use xvs_core::wire::tcp_flags::*;
    [
        SYN,
        SYN | ACK,
        ACK,
        ACK | PSH,
        FIN | ACK,
        RST,
        RST | ACK,
        FIN | SYN,
    ]
};

/// Kinds of frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tcp,
    Udp,
    IcmpEcho,
    IcmpError,
}

/// One step of a scenario: a frame (or a train of fragments) built from a spec, then
/// mutated. Every field is one byte of the input (`u16`s two, big-endian), in order,
/// so that [`Step::encode`] writes seeds exactly.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Low 4 bits: index into [`ADVANCES_MS`]; bit 7: run `maintain` first.
    pub advance: u8,
    /// Bit 0: receive on the "other" interface (ext for server frames, int for client ones).
    pub iface: u8,
    /// `% 4`: TCP, UDP, ICMP echo, ICMP error.
    pub kind: u8,
    /// `% TARGETS.len()`.
    pub target: u8,
    /// Client (index into CLIENTS4/6 of the target's family).
    pub client: u8,
    /// Client port 40000 + (`cport % 4`).
    pub cport: u8,
    /// Bit 0: from the real server (reply direction) instead of from the client;
    /// bits 1..: which server of the target.
    pub dir: u8,
    /// TCP flags (see [`TCP_FLAGS`]).
    pub flags: u8,
    /// Payload length = `payload * 6`.
    pub payload: u8,
    /// 0: untagged; else VLAN id `vlan * 16 + 1`.
    pub vlan: u8,
    /// Bit 0: CHECKSUM_PARTIAL form of the TCP/UDP checksum.
    pub partial: u8,
    /// TTL / hop limit; 0 means 64.
    pub ttl: u8,
    /// IPv4 options / IPv6 extension headers class (`% 8`).
    pub opts: u8,
    /// 0: not fragmented; else bits 0..2: MTU class, bits 2..4: delivery order.
    pub frag: u8,
    /// ICMP: bits 0..3 type/code class, bit 3 quote UDP instead of TCP, bits 4..6
    /// quote length class, bit 6: error from a router instead of the host.
    pub icmp: u8,
    /// 0: no truncation; else the first frame is cut to `len * cut / 256`.
    pub cut: u8,
    /// Byte overwrites after building: (position in the concatenated frames, value).
    pub mutations: Vec<(u16, u8)>,
}

/// At most this many steps per input, and this many mutations per step.
pub const MAX_STEPS: usize = 24;
pub const MAX_MUTATIONS: usize = 4;

impl Step {
    fn decode(u: &mut Unstructured<'_>) -> arbitrary::Result<Step> {
        let mut b = || u8::arbitrary(u);
        let mut s = Step {
            advance: b()?,
            iface: b()?,
            kind: b()?,
            target: b()?,
            client: b()?,
            cport: b()?,
            dir: b()?,
            flags: b()?,
            payload: b()?,
            vlan: b()?,
            partial: b()?,
            ttl: b()?,
            opts: b()?,
            frag: b()?,
            icmp: b()?,
            cut: b()?,
            mutations: Vec::new(),
        };
        let n = usize::from(u8::arbitrary(u)?) % (MAX_MUTATIONS + 1);
        for _ in 0..n {
            let hi = u8::arbitrary(u)?;
            let lo = u8::arbitrary(u)?;
            let v = u8::arbitrary(u)?;
            s.mutations.push((u16::from_be_bytes([hi, lo]), v));
        }
        Ok(s)
    }

    /// The bytes that decode to this step.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            self.advance,
            self.iface,
            self.kind,
            self.target,
            self.client,
            self.cport,
            self.dir,
            self.flags,
            self.payload,
            self.vlan,
            self.partial,
            self.ttl,
            self.opts,
            self.frag,
            self.icmp,
            self.cut,
            self.mutations.len() as u8,
        ];
        for &(pos, v) in &self.mutations {
            out.extend_from_slice(&pos.to_be_bytes());
            out.push(v);
        }
        out
    }

    pub fn kind(&self) -> Kind {
        [Kind::Tcp, Kind::Udp, Kind::IcmpEcho, Kind::IcmpError][usize::from(self.kind % 4)]
    }

    pub fn target(&self) -> &'static facts::Target {
        &facts::TARGETS[usize::from(self.target) % facts::TARGETS.len()]
    }

    pub fn from_server(&self) -> bool {
        self.dir & 1 == 1
    }

    pub fn server(&self) -> &'static facts::Server {
        let s = self.target().servers;
        &s[usize::from(self.dir >> 1) % s.len()]
    }

    pub fn client(&self) -> IpAddr {
        let c = if self.target().vip.is_ipv6() {
            facts::CLIENTS6
        } else {
            facts::CLIENTS4
        };
        c[usize::from(self.client) % c.len()]
    }

    pub fn client_port(&self) -> u16 {
        40000 + u16::from(self.cport % 4)
    }

    /// The port the server side of the flow uses.
    pub fn server_port(&self) -> u16 {
        let t = self.target();
        self.server().port.unwrap_or(t.port)
    }

    pub fn time_advance_ms(&self) -> u32 {
        ADVANCES_MS[usize::from(self.advance & 0x0f)]
    }

    pub fn maintain_first(&self) -> bool {
        self.advance & 0x80 != 0
    }

    pub fn ttl(&self) -> u8 {
        if self.ttl == 0 { 64 } else { self.ttl }
    }

    pub fn tcp_flags(&self) -> u16 {
        if self.flags & 0x80 == 0 {
            TCP_FLAGS[usize::from(self.flags % 8)]
        } else {
            u16::from(self.flags & 0x3f)
        }
    }

    /// (source, destination) of the frame's outer IP header and ports of its L4
    /// header (echo: ident/seq) before any mutation.
    pub fn endpoints(&self) -> (SocketAddr, SocketAddr) {
        let t = self.target();
        let client = SocketAddr::new(self.client(), self.client_port());
        if self.from_server() {
            (
                SocketAddr::new(self.server().addr, self.server_port()),
                client,
            )
        } else {
            (client, SocketAddr::new(t.vip, t.port))
        }
    }

    fn apply_opts(&self, spec: FrameSpec, v6: bool) -> FrameSpec {
        use xvs_core::wire::ip_proto::{
            AH, IPV6_DSTOPTS, IPV6_FRAGMENT, IPV6_HOPOPTS, IPV6_ROUTING,
        };
        let c = self.opts % 8;
        if v6 {
            let frag_body = |more: bool| {
                let mut b = vec![0u8, u8::from(more)];
                b.extend_from_slice(&0x0bad_f00du32.to_be_bytes());
                b
            };
            match c {
                1 => spec.with_ipv6_ext(IPV6_HOPOPTS, &[1, 4, 0, 0, 0, 0]),
                2 => spec.with_ipv6_ext(IPV6_DSTOPTS, &[]),
                3 => spec.with_ipv6_ext(IPV6_ROUTING, &[0, 0, 0, 0, 0, 0]),
                4 => spec
                    .with_ipv6_ext(IPV6_HOPOPTS, &[])
                    .with_ipv6_ext(IPV6_DSTOPTS, &[])
                    .with_ipv6_ext(IPV6_ROUTING, &[4, 0, 0, 0, 0, 0])
                    .with_ipv6_ext(IPV6_DSTOPTS, &[]),
                5 => spec.with_ipv6_ext(AH, &[0; 10]),
                6 => spec.with_ipv6_ext(IPV6_FRAGMENT, &frag_body(false)),
                7 => spec
                    .with_ipv6_ext(IPV6_DSTOPTS, &[])
                    .with_ipv6_ext(IPV6_FRAGMENT, &frag_body(true)),
                _ => spec,
            }
        } else {
            let opts: &[u8] = match c {
                1 => &[1, 1, 1, 0],
                2 => &[0x94, 4, 0, 0],
                3 => &[7, 39, 4],
                4 => &[0x44, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                5 => &[0x82, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                6 => &[0x83, 7, 4, 198, 19, 0, 1],
                7 => &[1; 40],
                _ => &[],
            };
            let mut o = opts.to_vec();
            if c == 3 {
                o.resize(39, 0);
            }
            spec.with_ipv4_options(&o)
        }
    }

    fn has_ipv6_fragment_header(&self) -> bool {
        self.target().vip.is_ipv6() && matches!(self.opts % 8, 6 | 7)
    }

    /// The ICMP error's type, code and rest-of-header for `icmp & 7`.
    fn icmp_error_kind(&self, v6: bool) -> (u8, u8, [u8; 4]) {
        let c = usize::from(self.icmp & 7);
        if v6 {
            [
                (1, 4, [0; 4]),
                (2, 0, [0, 0, 5, 0]),
                (3, 0, [0; 4]),
                (4, 0, [0, 0, 0, 6]),
                (1, 1, [0; 4]),
                (1, 3, [0, 0, 0, 0]),
                (2, 0, [0, 0, 0, 0x44]),
                (3, 1, [0; 4]),
            ][c]
        } else {
            [
                (3, 3, [0; 4]),
                (3, 4, [0, 0, 5, 0x78]),
                (11, 0, [0; 4]),
                (12, 0, [20, 0, 0, 0]),
                (3, 1, [0; 4]),
                (4, 0, [0; 4]),
                (5, 1, [198, 18, 0, 1]),
                (11, 1, [0; 4]),
            ][c]
        }
    }

    /// The IP packet the ICMP error quotes: the flow's packet travelling towards the
    /// error's sender (client side: VIP -> client; server side: client -> server).
    pub fn quoted_packet(&self) -> Vec<u8> {
        let t = self.target();
        let client = SocketAddr::new(self.client(), self.client_port());
        let (src, dst) = if self.from_server() {
            (
                client,
                SocketAddr::new(self.server().addr, self.server_port()),
            )
        } else {
            (SocketAddr::new(t.vip, t.port), client)
        };
        let spec = if self.icmp & 8 != 0 {
            FrameSpec::udp(src, dst)
        } else {
            FrameSpec::tcp(src, dst, xvs_core::wire::tcp_flags::ACK)
        };
        let payload = vec![0x42u8; usize::from(self.payload) * 6];
        let ip = spec.with_payload(&payload).with_ttl(63).build_ip();
        let hl = if t.vip.is_ipv6() { 40 } else { 20 };
        let keep = match (self.icmp >> 4) & 3 {
            0 => ip.len(),
            1 => hl + 8,
            2 => hl + 4,
            _ => hl + 20.min(ip.len() - hl),
        };
        ip[..keep.min(ip.len())].to_vec()
    }

    /// The frame spec of this step (before fragmentation and mutation).
    pub fn spec(&self) -> FrameSpec {
        use xvs_core::lab::{CLIENT_MAC, mac_of};
        let t = self.target();
        let v6 = t.vip.is_ipv6();
        let (src, dst) = self.endpoints();
        let payload = vec![0x5au8; usize::from(self.payload) * 6];
        let spec = match self.kind() {
            Kind::Tcp => FrameSpec::tcp(src, dst, self.tcp_flags()).with_payload(&payload),
            Kind::Udp => FrameSpec::udp(src, dst).with_payload(&payload),
            Kind::IcmpEcho => FrameSpec::icmp_echo(
                src.ip(),
                dst.ip(),
                src.port(),
                u16::from(self.flags),
                self.from_server(),
            )
            .with_payload(&payload),
            Kind::IcmpError => {
                let (kind, code, rest) = self.icmp_error_kind(v6);
                let router = self.icmp & 0x40 != 0;
                let (esrc, edst) = match (self.from_server(), router, v6) {
                    (false, false, _) => (self.client(), t.vip),
                    (false, true, false) => (facts::ROUTER4_EXT, t.vip),
                    (false, true, true) => (facts::ROUTER6_EXT, t.vip),
                    (true, false, _) => (self.server().addr, self.client()),
                    (true, true, false) => (facts::ROUTER4_INT, self.client()),
                    (true, true, true) => (facts::ROUTER6_INT, self.client()),
                };
                FrameSpec::icmp_error(esrc, edst, kind, code, rest, &self.quoted_packet())
            }
        };
        let (smac, dmac) = if self.from_server() {
            (mac_of(self.server().id), INT_MAC)
        } else {
            (CLIENT_MAC, EXT_MAC)
        };
        let spec = spec
            .with_macs(smac, dmac)
            .with_vlan((self.vlan != 0).then(|| u16::from(self.vlan) * 16 + 1))
            .with_partial_checksum(self.partial & 1 == 1)
            .with_ttl(self.ttl())
            .with_ident(0x4000 | u16::from(self.cport % 4) << 8 | u16::from(self.client))
            .with_dont_frag(self.frag == 0);
        self.apply_opts(spec, v6)
    }

    /// The frames of this step, in delivery order, each with "was it mutated" — and
    /// whether the step was fragmented.
    pub fn frames(&self) -> (Vec<(Vec<u8>, bool)>, bool) {
        let spec = self.spec();
        let whole = spec.build();
        let v6 = self.target().vip.is_ipv6();
        let mut frames = if self.frag == 0 || self.has_ipv6_fragment_header() {
            vec![whole]
        } else {
            let mtu = [96usize, 200, 576, 1280][usize::from(self.frag & 3)];
            if v6 {
                wire::fragment_ipv6(&whole, mtu)
            } else {
                wire::fragment_ipv4(&whole, mtu)
            }
        };
        let fragmented = frames.len() > 1;
        if fragmented {
            match (self.frag >> 2) & 3 {
                0 => {}
                1 => frames.reverse(),
                2 => frames.truncate(1),
                _ => {
                    frames.remove(0);
                }
            }
        }
        let mut out: Vec<(Vec<u8>, bool)> = frames.into_iter().map(|f| (f, false)).collect();
        if self.cut != 0
            && let Some((f, m)) = out.first_mut()
        {
            let n = f.len() * usize::from(self.cut) / 256;
            f.truncate(n);
            *m = true;
        }
        let total: usize = out.iter().map(|(f, _)| f.len()).sum();
        if total > 0 {
            for &(pos, v) in &self.mutations {
                let mut at = usize::from(pos) % total;
                for (f, m) in out.iter_mut() {
                    if at < f.len() {
                        if f[at] != v {
                            f[at] = v;
                            *m = true;
                        }
                        break;
                    }
                    at -= f.len();
                }
            }
        }
        (out, fragmented)
    }
}

/// A `process_structured` input: up to [`MAX_STEPS`] steps, decoded until the bytes
/// run out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scenario {
    pub steps: Vec<Step>,
}

impl<'a> Arbitrary<'a> for Scenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut steps = Vec::new();
        while !u.is_empty() && steps.len() < MAX_STEPS {
            steps.push(Step::decode(u)?);
        }
        Ok(Scenario { steps })
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Self::arbitrary(&mut u)
    }
}

impl Scenario {
    /// The bytes that decode to this scenario.
    pub fn encode(&self) -> Vec<u8> {
        self.steps.iter().flat_map(Step::encode).collect()
    }
}

/// The ICMP protocol number of a family.
pub fn icmp_proto(v6: bool) -> u8 {
    if v6 { ICMPV6 } else { ICMP }
}
