//! `Director::process` on sequences of well-formed frames of the example lab (built
//! with `wire::build::FrameSpec`, optionally fragmented, then optionally mutated), one
//! fresh director (new, small tables over the lab's snapshot) per input so that a
//! finding always reproduces from its input.
//!
//! Every frame is checked with `xvs_fuzz::check_generic`. Frames that were not
//! mutated are also checked against what `crates/xvs-core/src/lab.rs` promises
//! (`oracle` below): where a NAT / DR frame must go, with which addresses, ports, MACs
//! and TTL, valid checksums, blocked sources never forwarded, and new flows to a
//! service always forwarded.

#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use xvs_core::classify::IfaceId;
use xvs_core::lab::{self, EXT, EXT_MAC, INT, INT_MAC, mac_of};
use xvs_core::time::Time;
use xvs_core::wire::ip_proto::{TCP, UDP};
use xvs_core::wire::{IcmpPacket, Icmpv6Packet, Ipv4Packet};
use xvs_core::{Director, DropReason, Shared, Snapshot, TableSizes, Verdict};
use xvs_fuzz::{
    Kind, Layout, Scenario, Step, addrs, check_generic, facts, l4_checksum_ok, l4_checksum_partial,
    layout,
};

/// Start a little before the 32-bit millisecond clock wraps, so that long scenarios
/// cross the wrap.
const START: Time = Time(u32::MAX - 1_800_000);

/// Small tables, so that scenarios also fill shards and evict live entries.
const SIZES: TableSizes = TableSizes {
    conns: 64,
    templates: 16,
    fragments: 8,
    shards: 2,
    max_dests: 128,
    flow_cache: 1024,
    seed: 1,
};

/// The lab's snapshot (services, rules, network), built once; tables are new per input.
static SNAPSHOT: LazyLock<Arc<Snapshot>> = LazyLock::new(|| lab::snapshot(&lab::lab_specs()));

fuzz_target!(|sc: Scenario| {
    let mut d = Director::new(Arc::new(Shared::new(SIZES)), Arc::clone(&SNAPSHOT));
    let mut now = START;
    for step in &sc.steps {
        if step.maintain_first() {
            d.maintain(now, 64);
        }
        now = now.after_ms(step.time_advance_ms());
        let (frames, fragmented) = step.frames();
        let natural = if step.from_server() { INT } else { EXT };
        let iface = if step.iface & 1 == 1 {
            IfaceId(1 - natural.0)
        } else {
            natural
        };
        for (frame, mutated) in frames {
            let mut out = frame.clone();
            let v = d.process(iface, now, &mut out);
            check_generic(&frame, &out, v);
            if !mutated {
                oracle(step, fragmented, &frame, &out, v);
            }
        }
    }
    let s = d.stats();
    assert_eq!(
        s.rx_packets,
        s.forwarded + s.passed + s.total_drops(),
        "a frame without exactly one counted verdict"
    );
    d.maintain(now.after_ms(4_000_000), usize::MAX);
});

fn ttl(frame: &[u8], l: &Layout) -> u8 {
    frame[l.l3 + if l.v6 { 7 } else { 8 }]
}

fn ports(frame: &[u8], at: usize) -> (u16, u16) {
    (
        u16::from_be_bytes([frame[at], frame[at + 1]]),
        u16::from_be_bytes([frame[at + 2], frame[at + 3]]),
    )
}

fn server_by_addr(t: &facts::Target, a: IpAddr) -> Option<&'static facts::Server> {
    t.servers.iter().find(|s| s.addr == a)
}

/// Is `t` a service for this protocol (the lab's services are targets 0..=5)?
fn served(t: &facts::Target, protocol: u8) -> bool {
    t.protocol == protocol && t.servers.iter().all(|s| s.id != 99)
}

/// The checks on a frame that was built from `step` and not mutated.
fn oracle(step: &Step, fragmented: bool, before: &[u8], after: &[u8], v: Verdict) {
    let l = layout(before).expect("an unmutated frame parses");
    let t = step.target();
    let (src, _dst) = addrs(before, &l);
    let fwd = match v {
        Verdict::Forward { iface } => Some(iface),
        _ => None,
    };

    // Blocked sources never get through; the rule applies before anything else.
    if facts::blocked(src) {
        assert!(
            fwd.is_none(),
            "a frame from the blocked 198.18.9.0/24 was forwarded"
        );
        if !l.later_fragment {
            assert_eq!(
                v,
                Verdict::Drop(DropReason::Blocked),
                "a frame from 198.18.9.0/24 not dropped as blocked"
            );
        }
        return;
    }

    let nat_ttl_ok = step.ttl() > 1;
    match step.kind() {
        Kind::IcmpEcho => {
            assert!(
                fwd.is_none(),
                "an ICMP echo was forwarded (no ICMP service in the lab)"
            );
            if !l.later_fragment && !l.v6 {
                assert_eq!(
                    v,
                    Verdict::Pass,
                    "an ICMP echo was not passed to the kernel"
                );
            }
        }
        Kind::Tcp | Kind::Udp => {
            let proto = if step.kind() == Kind::Tcp { TCP } else { UDP };
            // Liveness: a new flow to a service is always placed.
            let tcp_opens = proto == UDP || {
                let f = step.tcp_flags();
                use xvs_core::wire::tcp_flags::{ACK, RST, SYN};
                f & SYN != 0 && f & (ACK | RST) == 0
            };
            if !step.from_server()
                && !fragmented
                && served(t, proto)
                && tcp_opens
                && (nat_ttl_ok || !t.nat)
                && !l.v6
            {
                let want = if t.nat { INT } else { EXT };
                assert_eq!(
                    v,
                    Verdict::Forward { iface: want },
                    "a new flow to a service was not forwarded"
                );
            }
            if !step.from_server()
                && !fragmented
                && served(t, proto)
                && tcp_opens
                && nat_ttl_ok
                && l.v6
                && l.l4_len >= 20
            {
                assert_eq!(
                    v,
                    Verdict::Forward { iface: INT },
                    "a new IPv6 flow to a service was not forwarded"
                );
            }
            let Some(iface) = fwd else { return };
            // A later fragment carries no ports: it follows whichever first fragment
            // had the same (source, destination, protocol, identification) — possibly
            // one of another port's flow (a limit of fragment tracking, as in IPVS).
            // Only its addresses are checked, against a service of that VIP / server.
            let t = if l.later_fragment {
                let same = |c: &&facts::Target| {
                    served(c, proto)
                        && if step.from_server() {
                            c.servers.iter().any(|s| s.addr == step.server().addr)
                        } else {
                            c.vip == t.vip
                        }
                };
                facts::TARGETS.iter().find(same).unwrap_or_else(|| {
                    panic!("forwarded a later fragment of no service: {t:?} protocol {proto}")
                })
            } else {
                t
            };
            assert!(
                served(t, proto),
                "forwarded a frame of no service: {t:?} protocol {proto}"
            );
            if !step.from_server() {
                // Client -> VIP.
                if t.nat {
                    assert_eq!(iface, INT, "NAT to a real server must leave through int");
                    let (s1, d1) = addrs(after, &l);
                    assert_eq!(s1, src, "NAT changed the client's address");
                    let srv = server_by_addr(t, d1).unwrap_or_else(|| {
                        panic!("NAT sent {t:?} to {d1}, not one of its real servers")
                    });
                    assert_eq!(
                        after[0..6],
                        mac_of(srv.id),
                        "NAT to {d1} with the wrong next-hop MAC"
                    );
                    assert_eq!(after[6..12], INT_MAC);
                    assert_eq!(
                        ttl(after, &l),
                        ttl(before, &l) - 1,
                        "NAT must decrement the TTL"
                    );
                    if !l.later_fragment {
                        let (sp0, _) = ports(before, l.l4);
                        let (sp1, dp1) = ports(after, l.l4);
                        assert_eq!(sp1, sp0, "NAT changed the client's port");
                        assert_eq!(
                            dp1,
                            srv.port.unwrap_or(t.port),
                            "NAT to the wrong real-server port"
                        );
                    }
                } else {
                    assert_eq!(iface, EXT, "DR real server is on ext");
                    assert_eq!(after[0..6], mac_of(20), "DR to the wrong MAC");
                    assert_eq!(after[6..12], EXT_MAC);
                    // DR rewrites the MACs only — and completes a partial (offload)
                    // checksum, whose validity the generic checks assert.
                    let mut expected = before[12..].to_vec();
                    if !l.fragment && l4_checksum_partial(before, &l) {
                        let at = l.l4 - 12 + if l.protocol == TCP { 16 } else { 6 };
                        expected[at..at + 2].copy_from_slice(&after[12 + at..12 + at + 2]);
                    }
                    assert_eq!(expected, after[12..], "DR must only rewrite MACs");
                }
            } else {
                // Real server -> client.
                assert_eq!(iface, EXT, "a reply to a client must leave through ext");
                let client = step.client();
                assert_eq!(
                    Some(<[u8; 6]>::try_from(&after[0..6]).unwrap()),
                    facts::client_mac(client),
                    "reply with the wrong MAC"
                );
                if t.nat {
                    let (s1, d1) = addrs(after, &l);
                    assert_eq!(s1, t.vip, "NAT reply not from the VIP");
                    assert_eq!(d1, client, "NAT reply changed the client's address");
                    assert_eq!(
                        ttl(after, &l),
                        ttl(before, &l) - 1,
                        "NAT must decrement the TTL"
                    );
                    if !l.later_fragment {
                        let (sp1, dp1) = ports(after, l.l4);
                        assert_eq!(sp1, t.port, "NAT reply not from the VIP's port");
                        assert_eq!(
                            dp1,
                            step.client_port(),
                            "NAT reply changed the client's port"
                        );
                    }
                } else {
                    assert_eq!(
                        before[12..],
                        after[12..],
                        "a DR reply must only get MACs rewritten"
                    );
                }
            }
            if !l.fragment && (step.partial & 1 == 0 || t.nat) {
                assert!(
                    l4_checksum_ok(after, &l),
                    "forwarded {proto} segment with a bad checksum"
                );
            }
        }
        Kind::IcmpError => {
            let Some(iface) = fwd else { return };
            let qproto = if step.icmp & 8 != 0 { UDP } else { TCP };
            assert!(
                served(t, qproto),
                "forwarded an ICMP error about no service's flow"
            );
            assert!(
                !l.later_fragment,
                "a later fragment of an ICMP error cannot be forwarded"
            );
            let q = l.l4 + 8; // quoted IP header
            let qhl = if l.v6 {
                40
            } else {
                usize::from(before[q] & 0x0f) * 4
            };
            let ql4 = q + qhl;
            let qaddr = |f: &[u8], end_src: bool| -> IpAddr {
                let ql = Layout { l3: q, ..l };
                let (s, d) = addrs(f, &ql);
                if end_src { s } else { d }
            };
            if !step.from_server() {
                // About our packet to the client: goes to the real server.
                if t.nat {
                    assert_eq!(iface, INT);
                    let (_, d1) = addrs(after, &l);
                    let srv = server_by_addr(t, d1).unwrap_or_else(|| {
                        panic!("ICMP error sent to {d1}, not a real server of {t:?}")
                    });
                    assert_eq!(after[0..6], mac_of(srv.id));
                    assert_eq!(
                        qaddr(after, true),
                        d1,
                        "quoted source not rewritten to the real server"
                    );
                    assert_eq!(
                        ports(after, ql4).0,
                        srv.port.unwrap_or(t.port),
                        "quoted source port not the real server's"
                    );
                    assert_eq!(ttl(after, &l), ttl(before, &l) - 1);
                } else {
                    assert_eq!(iface, EXT);
                    assert_eq!(after[0..6], mac_of(20));
                    // DR rewrites the MACs only — and completes a partial (offload)
                    // checksum, whose validity the generic checks assert.
                    let mut expected = before[12..].to_vec();
                    if !l.fragment && l4_checksum_partial(before, &l) {
                        let at = l.l4 - 12 + if l.protocol == TCP { 16 } else { 6 };
                        expected[at..at + 2].copy_from_slice(&after[12 + at..12 + at + 2]);
                    }
                    assert_eq!(expected, after[12..], "DR must only rewrite MACs");
                }
            } else {
                // About the client's packet to the server: goes to the client from the VIP.
                assert_eq!(iface, EXT);
                assert_eq!(
                    Some(<[u8; 6]>::try_from(&after[0..6]).unwrap()),
                    facts::client_mac(step.client())
                );
                if t.nat {
                    assert_eq!(
                        addrs(after, &l).0,
                        t.vip,
                        "ICMP error to the client not from the VIP"
                    );
                    assert_eq!(
                        qaddr(after, false),
                        t.vip,
                        "quoted destination not rewritten to the VIP"
                    );
                    assert_eq!(
                        ports(after, ql4).1,
                        t.port,
                        "quoted destination port not the VIP's"
                    );
                    assert_eq!(ttl(after, &l), ttl(before, &l) - 1);
                } else {
                    // DR rewrites the MACs only — and completes a partial (offload)
                    // checksum, whose validity the generic checks assert.
                    let mut expected = before[12..].to_vec();
                    if !l.fragment && l4_checksum_partial(before, &l) {
                        let at = l.l4 - 12 + if l.protocol == TCP { 16 } else { 6 };
                        expected[at..at + 2].copy_from_slice(&after[12 + at..12 + at + 2]);
                    }
                    assert_eq!(expected, after[12..], "DR must only rewrite MACs");
                }
            }
            if !l.fragment {
                let msg = &after[l.l4..l.l4 + l.l4_len];
                let ok = match addrs(after, &l) {
                    (IpAddr::V6(s), IpAddr::V6(d)) => Icmpv6Packet::new_checked(msg)
                        .unwrap()
                        .verify_checksum(&s, &d),
                    _ => IcmpPacket::new_checked(msg).unwrap().verify_checksum(),
                };
                assert!(ok, "forwarded ICMP error with a bad ICMP checksum");
                if !l.v6 {
                    let quoted = Ipv4Packet::new_unchecked(&after[q..l.l4 + l.l4_len]);
                    assert!(
                        quoted.verify_checksum(),
                        "quoted IPv4 header checksum broken by the rewrite"
                    );
                }
                // A complete quoted segment keeps a valid checksum.
                let qend = if l.v6 {
                    q + 40 + usize::from(u16::from_be_bytes([before[q + 4], before[q + 5]]))
                } else {
                    q + usize::from(u16::from_be_bytes([before[q + 2], before[q + 3]]))
                };
                if qend == l.l4 + l.l4_len {
                    let ql = Layout {
                        l3: q,
                        l4: ql4,
                        l4_len: qend - ql4,
                        protocol: qproto,
                        fragment: false,
                        later_fragment: false,
                        ip_end: qend,
                        v6: l.v6,
                    };
                    if l4_checksum_ok(before, &ql) {
                        assert!(
                            l4_checksum_ok(after, &ql),
                            "quoted {qproto} checksum broken by the rewrite"
                        );
                    }
                }
            }
        }
    }
}
