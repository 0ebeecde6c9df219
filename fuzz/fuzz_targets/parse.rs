//! Every wire view of `xvs_core::wire` on arbitrary bytes, at offset 0 and after the
//! Ethernet header (and down the layers: IPv4 payload, IPv6 extension-header walk, the
//! packet quoted in ICMP / ICMPv6 errors).
//!
//! The module's contract (`wire/mod.rs`): once `new_checked` / `check_len` succeeded,
//! no getter or setter panics, whatever the bytes say. So for every view that checks,
//! this target calls every getter, `payload()`, the checksum verifiers, then setters
//! on a mutable copy — including setters of length fields with arbitrary values,
//! followed by every getter again. It also asserts what the documentation promises:
//! lengths reported by the views are consistent with the buffer, setters read back,
//! and `fill_checksum*` makes the matching `verify_checksum*` true.

#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use xvs_core::wire::{
    ArpPacket, EthernetFrame, IcmpPacket, Icmpv6Packet, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};

/// Addresses for pseudo-header checksums: from the enclosing IP header when there
/// is one.
#[derive(Clone, Copy)]
struct Pseudo {
    v4: (Ipv4Addr, Ipv4Addr),
    v6: (Ipv6Addr, Ipv6Addr),
}

const DEFAULT_PSEUDO: Pseudo = Pseudo {
    v4: (Ipv4Addr::new(198, 18, 0, 10), Ipv4Addr::new(198, 18, 1, 1)),
    v6: (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10),
        Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1),
    ),
};

/// Values for the setters, taken from the input so that they vary.
struct Knobs {
    a: u8,
    b: u16,
    c: u32,
}

impl Knobs {
    fn from(data: &[u8]) -> Knobs {
        let at = |i: usize| {
            data.get(data.len().wrapping_sub(1 + i))
                .copied()
                .unwrap_or(0x5a)
        };
        Knobs {
            a: at(0),
            b: u16::from_be_bytes([at(1), at(2)]),
            c: u32::from_be_bytes([at(3), at(4), at(5), at(6)]),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let k = Knobs::from(data);
    // Offset 0: every view.
    ethernet(data, &k);
    arp(data, &k);
    ip(data, &k);
    l4(data, DEFAULT_PSEUDO, &k);
});

fn ethernet(b: &[u8], k: &Knobs) {
    let Ok(e) = EthernetFrame::new_checked(b) else {
        assert!(
            b.len() < 18,
            "EthernetFrame refused a buffer of {} bytes",
            b.len()
        );
        return;
    };
    let hl = e.header_len();
    assert!(hl == 14 || hl == 18);
    assert_eq!(e.vlan_id().is_some(), hl == 18);
    assert_eq!(e.vlan_tci().map(|t| t & 0x0fff), e.vlan_id());
    assert_eq!(e.payload().len(), b.len() - hl);
    let _ = (e.dst_addr(), e.src_addr(), e.outer_ethertype());
    let et = e.ethertype();
    // After the Ethernet header: every view, whatever the EtherType says (a view must
    // not rely on it).
    let payload = &b[hl..];
    ip(payload, k);
    arp(payload, k);

    let mut m = b.to_vec();
    let mut e = EthernetFrame::new_unchecked(&mut m[..]);
    e.set_dst_addr([k.a; 6]);
    e.set_src_addr([2, 0, 0, 0, 0, k.a]);
    assert_eq!(e.dst_addr(), [k.a; 6]);
    e.set_vlan_id(k.b);
    if hl == 18 {
        assert_eq!(e.vlan_id(), Some(k.b & 0x0fff));
    }
    e.set_ethertype(k.b);
    if k.b != 0x8100 {
        // (Writing 0x8100 into an untagged frame's EtherType makes it a tagged one.)
        assert_eq!(e.ethertype(), k.b);
    }
    let _ = e.payload_mut().len();
    // A header of either size, when it fits.
    let _ = e.emit_header([1; 6], [2; 6], (k.a & 1 == 1).then_some(k.b), et);
    let _ = (
        e.header_len(),
        e.ethertype(),
        e.vlan_id(),
        e.payload().len(),
        e.payload_mut().len(),
    );
}

fn arp(b: &[u8], k: &Knobs) {
    let Ok(a) = ArpPacket::new_checked(b) else {
        return;
    };
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
    let mut m = b.to_vec();
    let mut a = ArpPacket::new_unchecked(&mut m[..]);
    a.set_hardware_type(k.b);
    a.set_protocol_type(k.b);
    a.set_operation(k.b);
    a.set_sender_hw_addr([k.a; 6]);
    a.set_sender_proto_addr(Ipv4Addr::from(k.c));
    a.set_target_hw_addr([k.a; 6]);
    a.set_target_proto_addr(Ipv4Addr::from(k.c));
    a.set_hardware_len(k.a);
    a.set_protocol_len(k.a);
    assert_eq!(a.sender_proto_addr(), Ipv4Addr::from(k.c));
    assert_eq!(a.operation(), k.b);
    let _ = (
        a.hardware_len(),
        a.protocol_len(),
        a.target_hw_addr(),
        a.target_proto_addr(),
    );
}

/// IPv4 and IPv6 views on `b`, then the L4 views on what they carry.
fn ip(b: &[u8], k: &Knobs) {
    ipv4(b, k);
    ipv6(b, k);
}

fn ipv4_getters<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp_ecn(),
        p.total_len(),
        p.ident(),
        p.dont_frag(),
        p.more_frags(),
    );
    let _ = (
        p.frag_offset(),
        p.is_fragment(),
        p.ttl(),
        p.hop_limit(),
        p.protocol(),
        p.next_header(),
        p.checksum(),
    );
    let _ = (
        p.src_addr(),
        p.dst_addr(),
        p.options().len(),
        p.payload().len(),
        p.header().len(),
        p.verify_checksum(),
    );
}

fn ipv4(b: &[u8], k: &Knobs) {
    let Ok(p) = Ipv4Packet::new_checked(b) else {
        return;
    };
    ipv4_getters(&p);
    let (hl, tl) = (p.header_len(), usize::from(p.total_len()));
    assert!(p.version() == 4 && (20..=60).contains(&hl) && hl <= tl && tl <= b.len());
    assert_eq!(p.options().len(), hl - 20);
    assert_eq!(p.header().len(), hl);
    assert_eq!(p.payload().len(), tl - hl);
    assert_eq!(p.frag_offset() % 8, 0);
    assert_eq!(p.is_fragment(), p.more_frags() || p.frag_offset() != 0);
    let pseudo = Pseudo {
        v4: (p.src_addr(), p.dst_addr()),
        ..DEFAULT_PSEUDO
    };
    if p.frag_offset() == 0 {
        l4(p.payload(), pseudo, k);
    }

    let mut m = b.to_vec();
    let mut q = Ipv4Packet::new_unchecked(&mut m[..]);
    q.set_ttl(k.a);
    q.set_hop_limit(k.a);
    q.set_dscp_ecn(k.a);
    q.set_ident(k.b);
    q.set_dont_frag(k.a & 1 == 1);
    q.set_more_frags(k.a & 2 == 2);
    q.set_frag_offset(k.b);
    q.set_src_addr(Ipv4Addr::from(k.c));
    q.set_dst_addr(Ipv4Addr::from(!k.c));
    assert_eq!(
        (q.ttl(), q.ident(), q.src_addr(), q.dst_addr()),
        (k.a, k.b, Ipv4Addr::from(k.c), Ipv4Addr::from(!k.c))
    );
    assert_eq!(
        (q.dont_frag(), q.more_frags(), q.frag_offset()),
        (k.a & 1 == 1, k.a & 2 == 2, k.b & !7)
    );
    q.fill_checksum();
    assert!(
        q.verify_checksum(),
        "fill_checksum then verify_checksum failed"
    );
    q.options_mut().fill(1);
    q.payload_mut().fill(k.a);
    // Length fields that lie: every getter and setter must still be safe.
    q.set_protocol(k.a);
    q.set_next_header(k.a);
    q.set_header_len(usize::from(k.b));
    q.set_total_len(k.b.rotate_left(3));
    q.set_version(k.a >> 4);
    ipv4_getters(&q);
    let _ = (q.options_mut().len(), q.payload_mut().len());
    q.fill_checksum();
    let _ = q.verify_checksum();
    q.set_checksum(k.b);
}

fn ipv6_getters<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) {
    let _ = (
        p.version(),
        p.traffic_class(),
        p.flow_label(),
        p.payload_len(),
        p.next_header(),
        p.hop_limit(),
    );
    let _ = (
        p.src_addr(),
        p.dst_addr(),
        p.payload().len(),
        p.walk_to_l4(),
    );
}

fn ipv6(b: &[u8], k: &Knobs) {
    let Ok(p) = Ipv6Packet::new_checked(b) else {
        return;
    };
    ipv6_getters(&p);
    let end = 40 + usize::from(p.payload_len());
    assert!(p.version() == 6 && end <= b.len());
    assert_eq!(p.payload().len(), end - 40);
    if let Ok(w) = p.walk_to_l4() {
        assert!(
            w.offset >= 40 && w.offset <= end,
            "walk_to_l4 offset {} outside 40..={end}",
            w.offset
        );
        if let Some(f) = w.frag {
            assert!(f.header_offset >= 40 && f.header_offset + 8 <= w.offset);
            assert_eq!(f.offset % 8, 0);
            if f.offset != 0 {
                assert_eq!(
                    w.offset,
                    f.header_offset + 8,
                    "a later fragment's data starts after its Fragment header"
                );
            }
        }
        let later = w.frag.is_some_and(|f| f.offset != 0);
        if !later {
            let pseudo = Pseudo {
                v6: (p.src_addr(), p.dst_addr()),
                ..DEFAULT_PSEUDO
            };
            l4(&b[w.offset..end], pseudo, k);
        }
    }

    let mut m = b.to_vec();
    let mut q = Ipv6Packet::new_unchecked(&mut m[..]);
    q.set_traffic_class(k.a);
    q.set_flow_label(k.c);
    q.set_hop_limit(k.a);
    q.set_src_addr(Ipv6Addr::from(u128::from(k.c) << 64));
    q.set_dst_addr(Ipv6Addr::from(u128::from(k.c)));
    assert_eq!(
        (q.traffic_class(), q.flow_label(), q.hop_limit()),
        (k.a, k.c & 0x000f_ffff, k.a)
    );
    assert_eq!(
        q.version(),
        6,
        "a traffic-class / flow-label setter changed the version"
    );
    q.payload_mut().fill(k.a);
    q.set_next_header(k.a);
    q.set_payload_len(k.b);
    q.set_version(k.a);
    ipv6_getters(&q);
    let _ = q.payload_mut().len();
}

/// Every L4 view on `b` (whatever protocol the IP header announced).
fn l4(b: &[u8], ps: Pseudo, k: &Knobs) {
    tcp(b, ps, k);
    udp(b, ps, k);
    icmp(b, k);
    icmpv6(b, ps, k);
}

fn tcp_getters<T: AsRef<[u8]>>(t: &TcpPacket<T>, ps: Pseudo) {
    let _ = (
        t.src_port(),
        t.dst_port(),
        t.seq_number(),
        t.ack_number(),
        t.header_len(),
        t.flags(),
    );
    let _ = (
        t.fin(),
        t.syn(),
        t.rst(),
        t.psh(),
        t.ack(),
        t.window_len(),
        t.checksum(),
        t.urgent_at(),
    );
    let _ = (
        t.options().len(),
        t.payload().len(),
        t.verify_checksum_v4(ps.v4.0, ps.v4.1),
    );
    let _ = t.verify_checksum_v6(&ps.v6.0, &ps.v6.1);
}

fn tcp(b: &[u8], ps: Pseudo, k: &Knobs) {
    let Ok(t) = TcpPacket::new_checked(b) else {
        return;
    };
    tcp_getters(&t, ps);
    let hl = t.header_len();
    assert!((20..=60).contains(&hl) && hl <= b.len());
    assert_eq!(t.options().len(), hl - 20);
    assert_eq!(t.payload().len(), b.len() - hl);
    assert!(t.flags() <= 0x1ff);

    let mut m = b.to_vec();
    let mut q = TcpPacket::new_unchecked(&mut m[..]);
    q.set_src_port(k.b);
    q.set_dst_port(!k.b);
    q.set_seq_number(k.c);
    q.set_ack_number(!k.c);
    q.set_flags(k.b);
    q.set_window_len(k.b);
    q.set_urgent_at(k.b);
    assert_eq!(
        (q.src_port(), q.dst_port(), q.seq_number(), q.ack_number()),
        (k.b, !k.b, k.c, !k.c)
    );
    assert_eq!(
        (q.flags(), q.header_len()),
        (k.b & 0x1ff, hl),
        "set_flags changed the data offset"
    );
    q.payload_mut().fill(k.a);
    q.fill_checksum_v4(ps.v4.0, ps.v4.1);
    assert!(
        q.verify_checksum_v4(ps.v4.0, ps.v4.1),
        "TCP fill_checksum_v4 then verify_checksum_v4 failed"
    );
    q.fill_checksum_v6(&ps.v6.0, &ps.v6.1);
    assert!(
        q.verify_checksum_v6(&ps.v6.0, &ps.v6.1),
        "TCP fill_checksum_v6 then verify_checksum_v6 failed"
    );
    q.set_header_len(usize::from(k.a));
    q.set_checksum(k.b);
    tcp_getters(&q, ps);
    let _ = q.payload_mut().len();
}

fn udp_getters<T: AsRef<[u8]>>(u: &UdpPacket<T>, ps: Pseudo) {
    let _ = (
        u.src_port(),
        u.dst_port(),
        u.len(),
        u.checksum(),
        u.datagram().len(),
        u.payload().len(),
    );
    let _ = (
        u.verify_checksum_v4(ps.v4.0, ps.v4.1),
        u.verify_checksum_v6(&ps.v6.0, &ps.v6.1),
    );
}

fn udp(b: &[u8], ps: Pseudo, k: &Knobs) {
    let Ok(u) = UdpPacket::new_checked(b) else {
        return;
    };
    udp_getters(&u, ps);
    let l = usize::from(u.len());
    assert!(l >= 8 && l <= b.len());
    assert_eq!(u.datagram().len(), l);
    assert_eq!(u.payload().len(), l - 8);

    let mut m = b.to_vec();
    let mut q = UdpPacket::new_unchecked(&mut m[..]);
    q.set_src_port(k.b);
    q.set_dst_port(!k.b);
    assert_eq!((q.src_port(), q.dst_port()), (k.b, !k.b));
    q.payload_mut().fill(k.a);
    q.fill_checksum_v4(ps.v4.0, ps.v4.1);
    assert!(
        q.verify_checksum_v4(ps.v4.0, ps.v4.1),
        "UDP fill_checksum_v4 then verify_checksum_v4 failed"
    );
    assert_ne!(
        q.checksum(),
        0,
        "UDP fill_checksum_v4 wrote 0 (means no checksum)"
    );
    q.fill_checksum_v6(&ps.v6.0, &ps.v6.1);
    assert!(
        q.verify_checksum_v6(&ps.v6.0, &ps.v6.1),
        "UDP fill_checksum_v6 then verify_checksum_v6 failed"
    );
    q.set_len(k.b);
    q.set_checksum(k.b);
    udp_getters(&q, ps);
    let _ = q.payload_mut().len();
}

fn icmp(b: &[u8], k: &Knobs) {
    let Ok(m) = IcmpPacket::new_checked(b) else {
        return;
    };
    let _ = (
        m.msg_type(),
        m.msg_code(),
        m.checksum(),
        m.ident(),
        m.seq_no(),
        m.rest_of_header(),
    );
    let _ = (m.is_error(), m.next_hop_mtu(), m.verify_checksum());
    assert_eq!(m.payload().len(), b.len() - 8);
    if let Ok(e) = m.embedded_ipv4() {
        assert!(m.is_error());
        assert_eq!(e.ip_offset, 8);
        assert!(
            e.l4_offset >= e.ip_offset + 20,
            "embedded L4 before the end of a 20-byte header"
        );
        assert!(
            e.l4_offset + e.l4_len_available <= b.len(),
            "embedded region past the buffer"
        );
        assert!(
            e.later_fragment || e.l4_len_available >= 8,
            "embedded first fragment with < 8 L4 bytes"
        );
        assert_eq!(e.protocol, b[8 + 9]);
        let inner = Ipv4Packet::new_unchecked(&b[e.ip_offset..]);
        let _ = (
            inner.src_addr(),
            inner.dst_addr(),
            inner.header_len(),
            inner.protocol(),
            inner.total_len(),
        );
        assert_eq!(e.ip_offset + inner.header_len(), e.l4_offset);
        let quoted = &b[e.l4_offset..e.l4_offset + e.l4_len_available];
        if !e.later_fragment {
            let ps = Pseudo {
                v4: (inner.src_addr(), inner.dst_addr()),
                ..DEFAULT_PSEUDO
            };
            tcp(quoted, ps, k);
            udp(quoted, ps, k);
        }
    }
    let mut c = b.to_vec();
    let mut q = IcmpPacket::new_unchecked(&mut c[..]);
    q.set_ident(k.b);
    q.set_seq_no(!k.b);
    assert_eq!((q.ident(), q.seq_no()), (k.b, !k.b));
    q.set_rest_of_header(k.c.to_be_bytes());
    assert_eq!(q.rest_of_header(), k.c.to_be_bytes());
    q.set_next_hop_mtu(k.b);
    q.set_msg_type(k.a);
    q.set_msg_code(k.a >> 4);
    q.payload_mut().fill(k.a);
    q.fill_checksum();
    assert!(
        q.verify_checksum(),
        "ICMP fill_checksum then verify_checksum failed"
    );
    let _ = (q.embedded_ipv4(), q.next_hop_mtu(), q.is_error());
    q.set_checksum(k.b);
}

fn icmpv6(b: &[u8], ps: Pseudo, k: &Knobs) {
    let Ok(m) = Icmpv6Packet::new_checked(b) else {
        return;
    };
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
        m.verify_checksum(&ps.v6.0, &ps.v6.1),
    );
    assert_eq!(m.payload().len(), b.len() - 8);
    if let Ok(e) = m.embedded_ipv6() {
        assert!(m.is_error());
        assert_eq!(e.ip_offset, 8);
        assert!(
            e.l4_offset >= e.ip_offset + 40,
            "embedded L4 inside the fixed IPv6 header"
        );
        assert!(
            e.l4_offset + e.l4_len_available <= b.len(),
            "embedded region past the buffer"
        );
        assert!(
            e.later_fragment || e.l4_len_available >= 8,
            "embedded first fragment with < 8 L4 bytes"
        );
        let inner = Ipv6Packet::new_unchecked(&b[e.ip_offset..]);
        let _ = (
            inner.src_addr(),
            inner.dst_addr(),
            inner.payload_len(),
            inner.next_header(),
        );
        let quoted = &b[e.l4_offset..e.l4_offset + e.l4_len_available];
        if !e.later_fragment {
            let ps = Pseudo {
                v6: (inner.src_addr(), inner.dst_addr()),
                ..ps
            };
            tcp(quoted, ps, k);
            udp(quoted, ps, k);
        }
    }
    let mut c = b.to_vec();
    let mut q = Icmpv6Packet::new_unchecked(&mut c[..]);
    q.set_ident(k.b);
    q.set_seq_no(!k.b);
    assert_eq!((q.ident(), q.seq_no()), (k.b, !k.b));
    q.set_rest_of_header(k.c.to_be_bytes());
    q.set_mtu(k.c);
    q.set_msg_type(k.a);
    q.set_msg_code(k.a >> 4);
    q.payload_mut().fill(k.a);
    q.fill_checksum(&ps.v6.0, &ps.v6.1);
    assert!(
        q.verify_checksum(&ps.v6.0, &ps.v6.1),
        "ICMPv6 fill_checksum then verify_checksum failed"
    );
    let _ = (q.embedded_ipv6(), q.mtu(), q.is_error(), q.is_ndp());
    q.set_checksum(k.b);
}
