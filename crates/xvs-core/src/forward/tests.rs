//! Katran-style fixture tests: {description, input frame, expected verdict, expected
//! output frame}, run in order through one director over a small lab:
//!
//! ```text
//! clients 198.18.0.0/24, 2001:db8:0::/64 ── ext (if 0) ─ director ─ int (if 1) ── real servers 198.19.0.0/24, 2001:db8:2::/64
//! VIP 198.18.1.1 tcp/80 (NAT rr), udp/53 (NAT) ; 198.18.1.2 tcp/80 (DR, servers 198.18.2.0/24 on ext)
//! mark 7 = dst 198.18.1.3 tcp {80, 443} (NAT, persistence 300 s /24) ; drop rule: src 198.18.9.0/24
//! VIP 2001:db8:1::1 tcp/80 (NAT)
//! ```

use std::net::{IpAddr, SocketAddr};

use super::*;
use std::sync::Arc;

use crate::lab::*;
use crate::service::ServiceTable;
use crate::wire::build::FrameSpec;
use crate::wire::tcp_flags::{ACK, SYN};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A frame as the director receives it: from the client's MAC to the director's.
fn from_client(spec: FrameSpec) -> FrameSpec {
    spec.with_macs(CLIENT_MAC, EXT_MAC)
}

/// A frame as a real server sends it to the director.
fn from_server(spec: FrameSpec, id: u32) -> FrameSpec {
    spec.with_macs(mac_of(id), INT_MAC)
}

struct Fixture {
    description: &'static str,
    input: Vec<u8>,
    verdict: Verdict,
    output: Option<Vec<u8>>,
}

fn run(d: &mut Director, fixtures: Vec<Fixture>) {
    for f in fixtures {
        let mut frame = f.input.clone();
        let v = d.process(IfaceId(0), Time(1000), &mut frame);
        assert_eq!(v, f.verdict, "{}: verdict", f.description);
        if let Some(out) = f.output {
            assert_eq!(frame, out, "{}: output frame", f.description);
        }
    }
}

fn fwd(iface: IfaceId) -> Verdict {
    Verdict::Forward { iface }
}

#[test]
fn nat_ipv4_tcp_both_directions() {
    let mut d = lab();
    let syn = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.18.1.1:80"), SYN);
    let syn_out = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.19.0.10:8080"), SYN)
        .with_macs(INT_MAC, mac_of(10))
        .with_ttl(63);
    let synack = FrameSpec::tcp(sa("198.19.0.10:8080"), sa("198.18.0.10:40000"), SYN | ACK);
    let synack_out = FrameSpec::tcp(sa("198.18.1.1:80"), sa("198.18.0.10:40000"), SYN | ACK)
        .with_macs(EXT_MAC, CLIENT_MAC)
        .with_ttl(63);
    let ack = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.18.1.1:80"), ACK)
        .with_payload(b"GET / HTTP/1.0\r\n\r\n");
    let ack_out = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.19.0.10:8080"), ACK)
        .with_payload(b"GET / HTTP/1.0\r\n\r\n")
        .with_macs(INT_MAC, mac_of(10))
        .with_ttl(63);
    let syn2 = FrameSpec::tcp(sa("198.18.0.11:40001"), sa("198.18.1.1:80"), SYN);
    let syn2_out = FrameSpec::tcp(sa("198.18.0.11:40001"), sa("198.19.0.11:8080"), SYN)
        .with_macs(INT_MAC, mac_of(11))
        .with_ttl(63);
    run(
        &mut d,
        vec![
            Fixture {
                description: "SYN to VIP goes to the first rr server",
                input: from_client(syn.clone()).build(),
                verdict: fwd(INT),
                output: Some(syn_out.build()),
            },
            Fixture {
                description: "a retransmitted SYN follows its connection",
                input: from_client(syn.clone()).build(),
                verdict: fwd(INT),
                output: Some(syn_out.build()),
            },
            Fixture {
                description: "SYN-ACK from the server comes back from the VIP",
                input: from_server(synack, 10).build(),
                verdict: fwd(EXT),
                output: Some(synack_out.build()),
            },
            Fixture {
                description: "a bare SYN from the server is no reply: not ours",
                input: from_server(
                    FrameSpec::tcp(sa("198.19.0.10:8080"), sa("198.18.0.10:40000"), SYN),
                    10,
                )
                .build(),
                verdict: Verdict::Pass,
                output: None,
            },
            Fixture {
                description: "ACK with data follows the connection",
                input: from_client(ack).build(),
                verdict: fwd(INT),
                output: Some(ack_out.build()),
            },
            Fixture {
                description: "a second client goes to the second server",
                input: from_client(syn2).build(),
                verdict: fwd(INT),
                output: Some(syn2_out.build()),
            },
        ],
    );
    assert_eq!(d.stats().conns_created, 2);
    let counters = &d.shared().counters;
    assert_eq!(
        counters[10]
            .active
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "established after the client's ACK"
    );
    assert_eq!(
        counters[11]
            .inactive
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(d.stats().dests[10].in_packets, 3);
    assert_eq!(d.stats().dests[10].out_packets, 1);
}

#[test]
fn nat_ipv6_udp_dr_and_passes() {
    let mut d = lab();
    let syn6 = FrameSpec::tcp(sa("[2001:db8::10]:5555"), sa("[2001:db8:1::1]:80"), SYN);
    let syn6_out = FrameSpec::tcp(sa("[2001:db8::10]:5555"), sa("[2001:db8:2::40]:8080"), SYN)
        .with_macs(INT_MAC, mac_of(40))
        .with_ttl(63);
    let reply6 = FrameSpec::tcp(
        sa("[2001:db8:2::40]:8080"),
        sa("[2001:db8::10]:5555"),
        SYN | ACK,
    );
    let reply6_out = FrameSpec::tcp(
        sa("[2001:db8:1::1]:80"),
        sa("[2001:db8::10]:5555"),
        SYN | ACK,
    )
    .with_macs(EXT_MAC, GW6_MAC)
    .with_ttl(63);
    let udp = FrameSpec::udp(sa("198.18.0.10:3333"), sa("198.18.1.1:53"))
        .with_payload(b"query")
        .with_partial_checksum(true);
    let udp_out = FrameSpec::udp(sa("198.18.0.10:3333"), sa("198.19.0.12:53"))
        .with_payload(b"query")
        .with_macs(INT_MAC, mac_of(12))
        .with_ttl(63);
    let dr = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.18.1.2:80"), SYN);
    let dr_out = dr.clone().with_macs(EXT_MAC, mac_of(20));
    let mut arp = from_client(FrameSpec::udp(sa("198.18.0.10:1"), sa("198.18.1.1:2"))).build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    run(
        &mut d,
        vec![
            Fixture {
                description: "IPv6 NAT SYN",
                input: from_client(syn6).build(),
                verdict: fwd(INT),
                output: Some(syn6_out.build()),
            },
            Fixture {
                description: "IPv6 NAT reply via the gateway",
                input: from_server(reply6, 40).build(),
                verdict: fwd(EXT),
                output: Some(reply6_out.build()),
            },
            Fixture {
                description: "UDP with a partial checksum leaves complete",
                input: from_client(udp).build(),
                verdict: fwd(INT),
                output: Some(udp_out.build()),
            },
            Fixture {
                description: "DR rewrites MACs only",
                input: from_client(dr.clone()).build(),
                verdict: fwd(EXT),
                output: Some(dr_out.build()),
            },
            Fixture {
                description: "DR completes a partial checksum (sender's tx offload)",
                input: from_client(
                    FrameSpec::tcp(sa("198.18.0.10:40001"), sa("198.18.1.2:80"), SYN)
                        .with_partial_checksum(true),
                )
                .build(),
                verdict: fwd(EXT),
                output: Some(
                    FrameSpec::tcp(sa("198.18.0.10:40001"), sa("198.18.1.2:80"), SYN)
                        .with_macs(EXT_MAC, mac_of(20))
                        .build(),
                ),
            },
            Fixture {
                description: "ARP is the kernel's",
                input: arp,
                verdict: Verdict::Pass,
                output: None,
            },
            Fixture {
                description: "a port with no service is the kernel's",
                input: from_client(FrameSpec::tcp(
                    sa("198.18.0.10:1"),
                    sa("198.18.1.1:22"),
                    SYN,
                ))
                .build(),
                verdict: Verdict::Pass,
                output: None,
            },
            Fixture {
                description: "ping to the VIP is the kernel's",
                input: from_client(FrameSpec::icmp_echo(
                    ip("198.18.0.10"),
                    ip("198.18.1.1"),
                    1,
                    1,
                    false,
                ))
                .build(),
                verdict: Verdict::Pass,
                output: None,
            },
        ],
    );
    // The UDP NAT frame and the DR SYN.
    assert_eq!(d.stats().checksum_completed, 2);
}

#[test]
fn drops_are_counted_by_reason() {
    let mut d = lab();
    let good = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ))
    .build();
    let mut bad_csum = good.clone();
    bad_csum[14 + 10] ^= 0xff;
    let mut ttl1 =
        from_client(FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.18.1.1:80"), SYN).with_ttl(1))
            .build();
    let mut unresolved_specs = lab_specs();
    unresolved_specs[0].servers[0].next_hop = None;
    run(
        &mut d,
        vec![
            Fixture {
                description: "runt",
                input: good[..10].to_vec(),
                verdict: Verdict::Drop(DropReason::Truncated),
                output: None,
            },
            Fixture {
                description: "cut IP header",
                input: good[..30].to_vec(),
                verdict: Verdict::Drop(DropReason::Truncated),
                output: None,
            },
            Fixture {
                description: "bad IP checksum",
                input: bad_csum,
                verdict: Verdict::Drop(DropReason::BadIpChecksum),
                output: None,
            },
            Fixture {
                description: "mid-flow segment without a connection",
                input: from_client(FrameSpec::tcp(
                    sa("198.18.0.10:40000"),
                    sa("198.18.1.1:80"),
                    ACK,
                ))
                .build(),
                verdict: Verdict::Drop(DropReason::NoConnection),
                output: None,
            },
            Fixture {
                description: "blocked subnet",
                input: from_client(FrameSpec::tcp(
                    sa("198.18.9.7:40000"),
                    sa("198.18.1.1:80"),
                    SYN,
                ))
                .build(),
                verdict: Verdict::Drop(DropReason::Blocked),
                output: None,
            },
            Fixture {
                description: "TTL 1 cannot be routed",
                input: std::mem::take(&mut ttl1),
                verdict: Verdict::Drop(DropReason::TtlExceeded),
                output: None,
            },
        ],
    );
    assert_eq!(d.stats().total_drops(), 6);
    assert_eq!(d.stats().drop_count(DropReason::Truncated), 2);
    assert_eq!(d.stats().rule_hits[0], 1);
    d.set_snapshot(snapshot(&unresolved_specs));
    let mut f = good;
    assert_eq!(
        d.process(EXT, Time(1000), &mut f),
        Verdict::Drop(DropReason::NeighbourUnresolved)
    );
    assert!(
        d.stats()
            .unresolved
            .iter()
            .flatten()
            .any(|(a, _)| from_bytes(a, false) == ip("198.19.0.10"))
    );
}

#[test]
fn vlan_tag_is_kept() {
    let mut d = lab();
    let syn = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.18.1.1:80"), SYN).with_vlan(Some(42));
    let out = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.19.0.10:8080"), SYN)
        .with_vlan(Some(42))
        .with_macs(INT_MAC, mac_of(10))
        .with_ttl(63);
    run(
        &mut d,
        vec![Fixture {
            description: "802.1Q",
            input: from_client(syn).build(),
            verdict: fwd(INT),
            output: Some(out.build()),
        }],
    );
}

#[test]
fn icmp_errors_follow_their_connection() {
    let mut d = lab();
    let mut syn = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ))
    .build();
    assert_eq!(d.process(EXT, Time(1000), &mut syn), fwd(INT));
    // The client says our reply (VIP:80 → client) was too big.
    let quoted = FrameSpec::tcp(sa("198.18.1.1:80"), sa("198.18.0.10:40000"), ACK)
        .with_payload(&[0u8; 64])
        .build_ip();
    let err = FrameSpec::icmp_error(
        ip("198.18.0.10"),
        ip("198.18.1.1"),
        3,
        4,
        [0, 0, 5, 0xdc],
        &quoted,
    );
    let quoted_out = FrameSpec::tcp(sa("198.19.0.10:8080"), sa("198.18.0.10:40000"), ACK)
        .with_payload(&[0u8; 64])
        .build_ip();
    let err_out = FrameSpec::icmp_error(
        ip("198.18.0.10"),
        ip("198.19.0.10"),
        3,
        4,
        [0, 0, 5, 0xdc],
        &quoted_out,
    )
    .with_macs(INT_MAC, mac_of(10))
    .with_ttl(63);
    // The real server's side says the client's packet could not be delivered.
    let quoted2 = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.19.0.10:8080"), ACK).build_ip();
    let err2 = FrameSpec::icmp_error(ip("198.19.0.10"), ip("198.18.0.10"), 3, 3, [0; 4], &quoted2);
    let quoted2_out = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.18.1.1:80"), ACK).build_ip();
    let err2_out = FrameSpec::icmp_error(
        ip("198.18.1.1"),
        ip("198.18.0.10"),
        3,
        3,
        [0; 4],
        &quoted2_out,
    )
    .with_macs(EXT_MAC, CLIENT_MAC)
    .with_ttl(63);
    let unrelated = FrameSpec::tcp(sa("198.18.1.1:80"), sa("198.18.0.99:1"), ACK).build_ip();
    run(
        &mut d,
        vec![
            Fixture {
                description: "frag-needed from the client reaches the server",
                input: from_client(err).build(),
                verdict: fwd(INT),
                output: Some(err_out.build()),
            },
            Fixture {
                description: "port unreachable from the server side reaches the client",
                input: from_server(err2, 10).build(),
                verdict: fwd(EXT),
                output: Some(err2_out.build()),
            },
            Fixture {
                description: "an error for no connection is the kernel's",
                input: from_client(FrameSpec::icmp_error(
                    ip("198.18.0.99"),
                    ip("198.18.1.1"),
                    3,
                    3,
                    [0; 4],
                    &unrelated,
                ))
                .build(),
                verdict: Verdict::Pass,
                output: None,
            },
        ],
    );
}

#[test]
fn fragments_follow_the_first() {
    let mut d = lab();
    let big = FrameSpec::udp(sa("198.18.0.10:3333"), sa("198.18.1.1:53"))
        .with_payload(&[7u8; 3000])
        .with_ident(77);
    let frags = crate::wire::build::fragment_ipv4(&from_client(big).build(), 1500);
    assert!(frags.len() >= 3);
    for (i, f) in frags.into_iter().enumerate() {
        let mut f = f;
        assert_eq!(d.process(EXT, Time(1000), &mut f), fwd(INT), "fragment {i}");
        assert_eq!(
            &f[14 + 16..14 + 20],
            &[198, 19, 0, 12],
            "fragment {i} rewritten"
        );
        let ip = crate::wire::Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
    }
    assert_eq!(d.stats().fragments_forwarded, 2);
    let orphan = FrameSpec::udp(sa("198.18.0.10:3334"), sa("198.18.1.1:53"))
        .with_payload(&[7u8; 3000])
        .with_ident(78);
    let mut later = crate::wire::build::fragment_ipv4(&from_client(orphan).build(), 1500)
        .pop()
        .unwrap();
    assert_eq!(
        d.process(EXT, Time(1000), &mut later),
        Verdict::Drop(DropReason::UnknownFragment)
    );
}

#[test]
fn persistence_groups_a_subnet_and_a_mark_group() {
    let mut d = lab();
    let mut dest_of = |src: &str, port: u16| {
        let mut f = from_client(FrameSpec::tcp(
            sa(&format!("{src}:40000")),
            sa(&format!("198.18.1.3:{port}")),
            SYN,
        ))
        .build();
        assert_eq!(d.process(EXT, Time(1000), &mut f), fwd(INT));
        (
            f[14 + 19],
            u16::from_be_bytes([f[14 + 20 + 2], f[14 + 20 + 3]]),
        )
    };
    let (first, port) = dest_of("198.18.0.10", 80);
    assert_eq!(port, 80, "mark services keep the destination port");
    assert_eq!(
        dest_of("198.18.0.10", 443).0,
        first,
        "443 joins 80's server"
    );
    assert_eq!(
        dest_of("198.18.0.200", 80).0,
        first,
        "same /24, same server"
    );
    assert_eq!(dest_of("198.18.0.201", 443).0, first);
    assert_eq!(d.stats().persist_reused, 3);
}

#[test]
fn quiescent_server_keeps_established_flows() {
    let mut d = lab();
    let mut syn = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ))
    .build();
    assert_eq!(d.process(EXT, Time(1000), &mut syn), fwd(INT));
    assert_eq!(&syn[30..34], &[198, 19, 0, 10]);
    let mut specs = lab_specs();
    specs[0].servers[0].weight = 0;
    d.set_snapshot(snapshot(&specs));
    let mut ack = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        ACK,
    ))
    .build();
    assert_eq!(d.process(EXT, Time(2000), &mut ack), fwd(INT));
    assert_eq!(&ack[30..34], &[198, 19, 0, 10], "established flow stays");
    for port in 1..5 {
        let mut f = from_client(FrameSpec::tcp(
            sa(&format!("198.18.0.11:{port}")),
            sa("198.18.1.1:80"),
            SYN,
        ))
        .build();
        assert_eq!(d.process(EXT, Time(2000), &mut f), fwd(INT));
        assert_eq!(
            &f[30..34],
            &[198, 19, 0, 11],
            "new flows avoid the quiescent server"
        );
    }
}

#[test]
fn expiry_frees_connections_and_counters() {
    let mut d = lab();
    let mut syn = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ))
    .build();
    assert_eq!(d.process(EXT, Time(1000), &mut syn), fwd(INT));
    assert_eq!(d.shared().conns.len(), 1);
    // SYN_RECV times out after 60 s.
    assert_eq!(d.maintain(Time(1000 + 59_000), 1 << 12), 0);
    assert_eq!(d.maintain(Time(1000 + 60_000), 1 << 12), 1);
    assert!(d.shared().conns.is_empty());
    assert_eq!(
        d.shared().counters[10]
            .inactive
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[test]
fn a_full_table_evicts_for_new_syns_and_releases_what_the_victims_held() {
    // One shard of a few slots; persistent SYNs from 20 client /24s, so that every
    // new flow past the capacity evicts a live one (and the template it controls).
    let mut d = lab_with(TableSizes {
        conns: 8,
        templates: 64,
        fragments: 16,
        shards: 1,
        max_dests: 128,
        flow_cache: 64,
        seed: 1,
    });
    let capacity = d.shared().conns.capacity();
    let key = |net: u8| {
        PersistKey::new(
            crate::persist::Scope::Mark(7),
            &crate::addr::to_bytes(ip(&format!("198.18.{net}.10"))),
            false,
            24,
        )
    };
    for net in 10..30u8 {
        let mut f = from_client(FrameSpec::tcp(
            sa(&format!("198.18.{net}.10:40000")),
            sa("198.18.1.3:443"),
            SYN,
        ))
        .build();
        assert_eq!(d.process(EXT, Time(1000), &mut f), fwd(INT), "net {net}");
    }
    assert!(
        capacity < 20,
        "the test needs evictions: capacity {capacity}"
    );
    assert_eq!(d.shared().conns.len(), capacity);
    assert_eq!(d.stats().conns_evicted, 20 - capacity as u64);
    let counted: u32 = [30usize, 31]
        .iter()
        .map(|&i| {
            let c = &d.shared().counters[i];
            c.active.load(Relaxed) + c.inactive.load(Relaxed)
        })
        .sum();
    assert_eq!(counted as usize, capacity, "victims are uncounted");
    let controlled: u32 = (10..30u8)
        .filter_map(|net| d.shared().persist.get(&key(net)))
        .map(|t| t.controlled)
        .sum();
    assert_eq!(
        controlled as usize, capacity,
        "victims release their templates"
    );
    // The newest flows are the ones kept.
    assert_eq!(
        d.shared().persist.get(&key(29)).map(|t| t.controlled),
        Some(1)
    );
}

#[test]
fn new_blocking_rules_cut_open_flows() {
    let mut d = lab();
    let mut syn = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ))
    .build();
    assert_eq!(d.process(EXT, Time(1000), &mut syn), fwd(INT));
    // Established and (so) in this worker's flow cache before the rules change.
    for _ in 0..2 {
        let mut est = from_client(FrameSpec::tcp(
            sa("198.18.0.10:40000"),
            sa("198.18.1.1:80"),
            ACK,
        ))
        .build();
        assert_eq!(d.process(EXT, Time(1000), &mut est), fwd(INT));
    }
    let mut other = from_client(FrameSpec::tcp(
        sa("198.18.0.11:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ))
    .build();
    assert_eq!(d.process(EXT, Time(1000), &mut other), fwd(INT));
    // New rules: block 198.18.0.10/32 too.
    let mut rules = lab_rules();
    rules.insert(
        0,
        crate::classify::Rule {
            src: vec!["198.18.0.10/32".parse().unwrap()],
            ..crate::classify::Rule::new(crate::classify::Action::Drop)
        },
    );
    let snap = Arc::new(Snapshot {
        services: ServiceTable::build(&lab_specs()).unwrap(),
        rules: crate::classify::Classifier::compile(&rules).unwrap(),
        net: lab_net(),
    });
    assert_eq!(d.shared().purge_blocked(&snap), 1);
    d.set_snapshot(snap);
    let mut ack = from_client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        ACK,
    ))
    .build();
    assert_eq!(
        d.process(EXT, Time(1001), &mut ack),
        Verdict::Drop(DropReason::Blocked)
    );
    let mut ack2 = from_client(FrameSpec::tcp(
        sa("198.18.0.11:40000"),
        sa("198.18.1.1:80"),
        ACK,
    ))
    .build();
    assert_eq!(
        d.process(EXT, Time(1001), &mut ack2),
        fwd(INT),
        "other clients keep flowing"
    );
    assert_eq!(
        d.shared().counters[10]
            .active
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "counter released"
    );
}

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    fn seeds() -> Vec<Vec<u8>> {
        vec![
            from_client(FrameSpec::tcp(
                sa("198.18.0.10:40000"),
                sa("198.18.1.1:80"),
                SYN,
            ))
            .build(),
            from_client(
                FrameSpec::tcp(sa("[2001:db8::10]:5555"), sa("[2001:db8:1::1]:80"), SYN)
                    .with_ipv6_ext(60, &[0; 6]),
            )
            .build(),
            from_client(
                FrameSpec::udp(sa("198.18.0.10:3333"), sa("198.18.1.1:53"))
                    .with_payload(b"q")
                    .with_vlan(Some(3)),
            )
            .build(),
            from_server(
                FrameSpec::tcp(sa("198.19.0.10:8080"), sa("198.18.0.10:40000"), SYN | ACK),
                10,
            )
            .build(),
            from_client(FrameSpec::icmp_error(
                ip("198.18.0.10"),
                ip("198.18.1.1"),
                3,
                4,
                [0; 4],
                &FrameSpec::tcp(sa("198.18.1.1:80"), sa("198.18.0.10:40000"), ACK).build_ip(),
            ))
            .build(),
        ]
    }

    proptest! {
        /// Arbitrary bytes, and valid frames with random byte changes and cuts, get a
        /// verdict without panicking; a forwarded frame keeps its length.
        #[test]
        fn process_never_panics(
            raw in proptest::collection::vec(any::<u8>(), 0..300),
            pick in 0usize..5,
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in any::<usize>(),
        ) {
            let mut d = lab();
            let mut f = raw;
            let _ = d.process(EXT, Time(1), &mut f);
            let mut g = seeds()[pick].clone();
            // Prime a connection so that mutated frames reach the established paths too.
            let mut prime = seeds()[0].clone();
            d.process(EXT, Time(1), &mut prime);
            for (at, x) in flips {
                let n = g.len();
                g[at % n] ^= x;
            }
            g.truncate(cut % (g.len() + 1));
            let len = g.len();
            if let Verdict::Forward { .. } = d.process(EXT, Time(2), &mut g) {
                prop_assert_eq!(g.len(), len);
            }
        }
    }
}

#[test]
fn cached_flows_keep_the_shared_entry_alive_until_a_fin() {
    let mut d = lab();
    let t = |flags| {
        from_client(FrameSpec::tcp(
            sa("198.18.0.10:40000"),
            sa("198.18.1.1:80"),
            flags,
        ))
        .build()
    };
    assert_eq!(d.process(EXT, Time(0), &mut t(SYN)), fwd(INT));
    assert_eq!(d.process(EXT, Time(0), &mut t(ACK)), fwd(INT));
    // Steady packets every 400 ms for 20 minutes: longer than the 900 s established
    // timeout, so the shared entry survives only if the cache keeps refreshing it.
    let mut now = Time(0);
    for _ in 0..3000 {
        now = now.after_ms(400);
        assert_eq!(d.process(EXT, now, &mut t(ACK)), fwd(INT));
        d.maintain(now, 64);
    }
    let mut expires = None;
    d.shared().conns.for_each(|c| expires = Some(c.expires));
    let expires = expires.expect("connection still tracked");
    assert!(
        expires.remaining_ms(now) >= 900_000 - super::cache::MAX_REFRESH_MS - 400,
        "refreshed within the last {} ms",
        super::cache::MAX_REFRESH_MS
    );
    // A FIN bypasses the cache and moves the state on.
    assert_eq!(
        d.process(EXT, now, &mut t(ACK | crate::wire::tcp_flags::FIN)),
        fwd(INT)
    );
    let mut state = None;
    d.shared().conns.for_each(|c| state = Some(c.state()));
    assert_eq!(state, Some(crate::conntrack::ConnState::FinWait));
    // The ACK that follows is not served from the cache (the FIN took the flow out of
    // it): the shared entry sees it and re-arms its timer for the state it is in.
    let later = now.after_ms(5000);
    assert_eq!(d.process(EXT, later, &mut t(ACK)), fwd(INT));
    let mut seen = None;
    d.shared()
        .conns
        .for_each(|c| seen = Some((c.state(), c.expires)));
    let (state, expires) = seen.expect("still tracked");
    assert_eq!(
        expires.remaining_ms(later),
        crate::conntrack::Timeouts::default().for_state_ms(state)
    );
    assert_eq!(
        d.shared().counters[10]
            .active
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(d.stats().dests[10].in_packets, 3004);
}
