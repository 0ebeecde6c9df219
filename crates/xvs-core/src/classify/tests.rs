//! Tests of the mark-rule classifier (test-only layer): unit tests per
//! criterion, action, order and family, compile errors, and property tests
//! checking the invariant `compile(r).classify(p) == classify_linear(r, p)`
//! under the default budget and under budgets that force every fallback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use proptest::prelude::*;

use super::*;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn host4(a: Ipv4Addr) -> IpNet {
    IpNet::V4(ipnet::Ipv4Net::from(a))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pkt(src: &str, dst: &str, protocol: u8, ports: Option<(u16, u16)>) -> PacketMeta {
    PacketMeta {
        src: ip(src),
        dst: ip(dst),
        protocol,
        ports,
        iface: IfaceId(0),
    }
}

fn tcp(src: &str, dst: &str, sport: u16, dport: u16) -> PacketMeta {
    pkt(src, dst, 6, Some((sport, dport)))
}

/// Budgets exercising every plan (full RFC, partial tables, pure AND) and
/// both IPv4 maps (binary search, trie).
fn option_sets() -> Vec<CompileOptions> {
    let d = CompileOptions::default();
    vec![
        d,
        CompileOptions {
            trie_min_intervals: 0,
            ..d
        },
        CompileOptions { max_work: 0, ..d },
        CompileOptions {
            max_work: 40,
            trie_min_intervals: 0,
            ..d
        },
        CompileOptions { max_work: 400, ..d },
        CompileOptions {
            max_bytes: 6_000,
            ..d
        },
    ]
}

/// Compile under every budget and check against the linear reference.
fn check(rules: &[Rule], pkts: &[PacketMeta]) -> Decision {
    let mut first = None;
    for opts in option_sets() {
        let c = match Classifier::compile_with(rules, &opts) {
            Ok(c) => c,
            Err(CompileError::MemoryBudget { .. }) if opts.max_bytes < 1 << 20 => continue,
            Err(e) => panic!("{e}"),
        };
        for p in pkts {
            let want = classify_linear(rules, p);
            assert_eq!(c.classify(p), want, "{opts:?} {p:?} {:?}", c.stats());
            first.get_or_insert(want);
        }
    }
    first.unwrap_or(Decision::NO_MATCH)
}

fn hit(rules: &[Rule], p: PacketMeta) -> Option<u32> {
    check(rules, &[p]).rule
}

fn mark(m: u32) -> Rule {
    Rule::new(Action::Mark(m))
}

#[test]
fn empty_matches_nothing() {
    let c = Classifier::empty();
    assert!(c.is_empty());
    assert_eq!(c.rule_count(), 0);
    let p = tcp("10.0.0.1", "10.0.0.2", 1, 2);
    assert_eq!(c.classify(&p), Decision::NO_MATCH);
    let c = Classifier::compile(&[]).unwrap();
    assert!(c.is_empty());
    assert_eq!(c.classify(&p), Decision::NO_MATCH);
}

#[test]
fn catch_all_rule() {
    let rules = [mark(7)];
    let d = check(&rules, &[tcp("10.0.0.1", "10.0.0.2", 1, 2)]);
    assert_eq!(
        d,
        Decision {
            action: Action::Mark(7),
            rule: Some(0)
        }
    );
    assert_eq!(hit(&rules, pkt("::1", "::2", 58, None)), Some(0));
}

#[test]
fn source_cidr() {
    let rules = [Rule {
        src: vec![net("10.1.0.0/16"), net("192.0.2.7/32")],
        ..mark(1)
    }];
    assert_eq!(hit(&rules, tcp("10.1.200.3", "1.1.1.1", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("192.0.2.7", "1.1.1.1", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("192.0.2.8", "1.1.1.1", 1, 2)), None);
    assert_eq!(hit(&rules, tcp("10.2.0.0", "1.1.1.1", 1, 2)), None);
    // The destination does not matter.
    assert_eq!(hit(&rules, tcp("1.1.1.1", "10.1.0.1", 1, 2)), None);
}

#[test]
fn destination_cidr_edges() {
    let rules = [Rule {
        dst: vec![net("203.0.113.0/24")],
        ..mark(1)
    }];
    assert_eq!(hit(&rules, tcp("1.1.1.1", "203.0.113.0", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "203.0.113.255", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "203.0.112.255", 1, 2)), None);
    assert_eq!(hit(&rules, tcp("1.1.1.1", "203.0.114.0", 1, 2)), None);
}

#[test]
fn host_bits_in_cidr_are_ignored() {
    let rules = [Rule {
        src: vec![net("10.1.2.3/16")],
        ..mark(1)
    }];
    assert_eq!(hit(&rules, tcp("10.1.9.9", "1.1.1.1", 1, 2)), Some(0));
}

#[test]
fn zero_prefix_and_extremes() {
    let rules = [
        Rule {
            src: vec![net("255.255.255.255/32")],
            ..mark(1)
        },
        Rule {
            src: vec![net("0.0.0.0/0")],
            ..mark(2)
        },
        Rule {
            dst: vec![net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")],
            ..mark(3)
        },
        Rule {
            dst: vec![net("::/0")],
            ..mark(4)
        },
    ];
    assert_eq!(hit(&rules, tcp("255.255.255.255", "::1", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("0.0.0.0", "1.2.3.4", 1, 2)), Some(1));
    assert_eq!(
        hit(
            &rules,
            tcp("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 1, 2)
        ),
        Some(2)
    );
    assert_eq!(hit(&rules, tcp("::", "::", 1, 2)), Some(3));
}

#[test]
fn families_never_cross() {
    let rules = [
        Rule {
            src: vec![net("0.0.0.0/0")],
            ..mark(1)
        },
        Rule {
            dst: vec![net("::/0")],
            ..mark(2)
        },
    ];
    assert_eq!(
        hit(&rules, tcp("2001:db8::1", "2001:db8::2", 1, 2)),
        Some(1)
    );
    assert_eq!(hit(&rules, tcp("10.0.0.1", "10.0.0.2", 1, 2)), Some(0));
    // IPv4-mapped IPv6 is IPv6.
    let rules = [Rule {
        src: vec![net("10.0.0.0/8")],
        ..mark(1)
    }];
    assert_eq!(hit(&rules, tcp("::ffff:10.0.0.1", "::1", 1, 2)), None);
    // A mixed set matches either family.
    let rules = [Rule {
        src: vec![net("10.0.0.0/8"), net("2001:db8::/32")],
        ..mark(1)
    }];
    assert_eq!(hit(&rules, tcp("10.9.9.9", "1.1.1.1", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("2001:db8::5", "::1", 1, 2)), Some(0));
    assert_eq!(hit(&rules, tcp("2001:db9::5", "::1", 1, 2)), None);
}

#[test]
fn protocol() {
    let rules = [
        Rule {
            protocol: Some(17),
            ..mark(1)
        },
        Rule {
            protocol: Some(1),
            ..mark(2)
        },
    ];
    assert_eq!(
        hit(&rules, pkt("1.1.1.1", "2.2.2.2", 17, Some((1, 2)))),
        Some(0)
    );
    assert_eq!(hit(&rules, pkt("1.1.1.1", "2.2.2.2", 1, None)), Some(1));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 1, 2)), None);
    assert_eq!(hit(&rules, pkt("1.1.1.1", "2.2.2.2", 255, None)), None);
}

#[test]
fn ports() {
    let rules = [
        Rule {
            dst_ports: vec![PortRange::single(80), PortRange::single(443)],
            ..mark(1)
        },
        Rule {
            src_ports: vec![PortRange::new(1024, 2047)],
            ..mark(2)
        },
    ];
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 5, 80)), Some(0));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 5, 443)), Some(0));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 5, 81)), None);
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 1024, 81)), Some(1));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 2047, 81)), Some(1));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 2048, 81)), None);
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 80, 1024)), None);
}

#[test]
fn port_criteria_never_match_portless_packets() {
    let rules = [
        Rule {
            dst_ports: vec![PortRange::ALL],
            ..mark(1)
        },
        Rule {
            src_ports: vec![PortRange::ALL],
            ..mark(2)
        },
        Rule {
            protocol: Some(1),
            ..mark(3)
        },
    ];
    assert_eq!(hit(&rules, pkt("1.1.1.1", "2.2.2.2", 1, None)), Some(2));
    assert_eq!(hit(&rules, tcp("1.1.1.1", "2.2.2.2", 0, 65535)), Some(0));
    assert_eq!(hit(&rules, pkt("1.1.1.1", "2.2.2.2", 6, None)), None);
}

#[test]
fn interface() {
    let rules = [Rule {
        in_iface: vec![IfaceId(3), IfaceId(65535)],
        ..mark(1)
    }];
    let mut p = tcp("1.1.1.1", "2.2.2.2", 1, 2);
    for (iface, want) in [
        (3, Some(0)),
        (65535, Some(0)),
        (2, None),
        (4, None),
        (0, None),
    ] {
        p.iface = IfaceId(iface);
        assert_eq!(hit(&rules, p), want, "iface {iface}");
    }
}

#[test]
fn all_criteria_together() {
    let rule = Rule {
        src: vec![net("10.0.0.0/8")],
        dst: vec![net("203.0.113.10/32")],
        protocol: Some(6),
        src_ports: vec![PortRange::new(1024, 65535)],
        dst_ports: vec![PortRange::single(443)],
        in_iface: vec![IfaceId(1)],
        action: Action::Mark(0x42),
    };
    let rules = [rule];
    let good = PacketMeta {
        iface: IfaceId(1),
        ..tcp("10.1.1.1", "203.0.113.10", 40000, 443)
    };
    assert_eq!(
        check(&rules, &[good]),
        Decision {
            action: Action::Mark(0x42),
            rule: Some(0)
        }
    );
    let bad = [
        PacketMeta {
            src: ip("11.1.1.1"),
            ..good
        },
        PacketMeta {
            dst: ip("203.0.113.11"),
            ..good
        },
        PacketMeta {
            protocol: 17,
            ..good
        },
        PacketMeta {
            ports: Some((1023, 443)),
            ..good
        },
        PacketMeta {
            ports: Some((40000, 80)),
            ..good
        },
        PacketMeta {
            ports: None,
            ..good
        },
        PacketMeta {
            iface: IfaceId(2),
            ..good
        },
    ];
    for p in bad {
        assert_eq!(hit(&rules, p), None, "{p:?}");
    }
}

#[test]
fn actions_and_first_match_wins() {
    let blocked = Rule {
        src: vec![net("192.0.2.0/24")],
        action: Action::Drop,
        ..mark(1)
    };
    let trusted = Rule {
        src: vec![net("192.0.2.1/32")],
        action: Action::Accept,
        ..mark(1)
    };
    let web = Rule {
        dst_ports: vec![PortRange::single(80)],
        ..mark(9)
    };
    // Accept stops evaluation before the broader Drop and the Mark.
    let rules = [trusted.clone(), blocked.clone(), web.clone()];
    let d = check(&rules, &[tcp("192.0.2.1", "2.2.2.2", 1, 80)]);
    assert_eq!(
        d,
        Decision {
            action: Action::Accept,
            rule: Some(0)
        }
    );
    let d = check(&rules, &[tcp("192.0.2.2", "2.2.2.2", 1, 80)]);
    assert_eq!(
        d,
        Decision {
            action: Action::Drop,
            rule: Some(1)
        }
    );
    let d = check(&rules, &[tcp("192.0.3.2", "2.2.2.2", 1, 80)]);
    assert_eq!(
        d,
        Decision {
            action: Action::Mark(9),
            rule: Some(2)
        }
    );
    // Reversed order: the first rule now wins everything it matches.
    let rules = [web, blocked, trusted];
    assert_eq!(hit(&rules, tcp("192.0.2.1", "2.2.2.2", 1, 80)), Some(0));
    assert_eq!(hit(&rules, tcp("192.0.2.1", "2.2.2.2", 1, 81)), Some(1));
}

#[test]
fn duplicate_and_overlapping_criteria() {
    let rules = [Rule {
        src: vec![net("10.0.0.0/8"), net("10.1.0.0/16"), net("10.0.0.0/8")],
        dst_ports: vec![
            PortRange::new(10, 20),
            PortRange::new(15, 30),
            PortRange::single(15),
        ],
        ..mark(1)
    }];
    for (s, port, want) in [
        ("10.1.0.1", 15, Some(0)),
        ("10.2.0.1", 30, Some(0)),
        ("10.2.0.1", 31, None),
        ("10.2.0.1", 9, None),
        ("11.0.0.0", 15, None),
    ] {
        assert_eq!(hit(&rules, tcp(s, "1.1.1.1", 1, port)), want, "{s} {port}");
    }
}

#[test]
fn many_rules_sharing_a_value_and_beyond_64() {
    // 200 rules on the same destination, distinguished by source: exercises
    // multi-word bitsets and the first-set-bit arithmetic past word 0.
    let rules: Vec<Rule> = (0..200u32)
        .map(|i| Rule {
            src: vec![host4(Ipv4Addr::from(0x0a00_0000 + i))],
            dst: vec![net("203.0.113.1/32")],
            ..mark(i + 1)
        })
        .collect();
    for i in [0u32, 63, 64, 65, 127, 128, 199] {
        let p = PacketMeta {
            src: Ipv4Addr::from(0x0a00_0000 + i).into(),
            ..tcp("0.0.0.0", "203.0.113.1", 1, 2)
        };
        assert_eq!(hit(&rules, p), Some(i));
    }
    assert_eq!(hit(&rules, tcp("10.0.0.200", "203.0.113.1", 1, 2)), None);
}

#[test]
fn compile_errors() {
    let err = Classifier::compile(&[mark(1), mark(0)]).unwrap_err();
    assert_eq!(err, CompileError::ZeroMark { rule: 1 });
    let bad = Rule {
        dst_ports: vec![PortRange::single(1), PortRange::new(9, 8)],
        ..mark(1)
    };
    let err = Classifier::compile(&[mark(1), mark(2), bad]).unwrap_err();
    assert_eq!(
        err,
        CompileError::EmptyPortRange {
            rule: 2,
            which: "destination",
            start: 9,
            end: 8
        }
    );
    assert!(err.to_string().contains("rule 2"));
    let rules = vec![mark(1); MAX_RULES + 1];
    assert!(matches!(
        Classifier::compile(&rules),
        Err(CompileError::TooManyRules { count, max: MAX_RULES }) if count == MAX_RULES + 1
    ));
    let tiny = CompileOptions {
        max_bytes: 100,
        ..CompileOptions::default()
    };
    assert!(matches!(
        Classifier::compile_with(&[mark(1)], &tiny),
        Err(CompileError::MemoryBudget { budget: 100, .. })
    ));
}

#[test]
fn fallback_is_reported_and_correct() {
    let rules: Vec<Rule> = (0..100u32)
        .map(|i| Rule {
            src: vec![host4(Ipv4Addr::from(0x0a00_0000 + i))],
            dst: vec![host4(Ipv4Addr::from(0xcb00_7100 + i))],
            ..mark(i + 1)
        })
        .collect();
    let full = Classifier::compile(&rules).unwrap();
    assert!(full.stats().fully_precomputed);
    let opts = CompileOptions {
        max_work: 100,
        ..CompileOptions::default()
    };
    let partial = Classifier::compile_with(&rules, &opts).unwrap();
    let s = partial.stats();
    assert!(!s.fully_precomputed && s.and_words_per_packet > 0, "{s:?}");
    let p = PacketMeta {
        src: Ipv4Addr::from(0x0a00_0000 + 77).into(),
        dst: Ipv4Addr::from(0xcb00_7100 + 77).into(),
        ..tcp("0.0.0.0", "0.0.0.0", 1, 2)
    };
    assert_eq!(partial.classify(&p).rule, Some(77));
    assert_eq!(full.classify(&p).rule, Some(77));
}

#[test]
fn classifier_is_send_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Classifier>();
}

// ---- property tests ----------------------------------------------------

/// Addresses from a narrow space so that matches are common.
fn v4_addr() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        8 => (0u32..16).prop_map(|x| Ipv4Addr::from(0x0a00_0000 + x)),
        1 => Just(Ipv4Addr::UNSPECIFIED),
        1 => Just(Ipv4Addr::BROADCAST),
    ]
}

fn v6_addr() -> impl Strategy<Value = Ipv6Addr> {
    prop_oneof![
        8 => (0u128..16).prop_map(|x| Ipv6Addr::from((0x2001_0db8u128 << 96) + x)),
        1 => Just(Ipv6Addr::UNSPECIFIED),
        1 => Just(Ipv6Addr::from(u128::MAX)),
    ]
}

fn cidr() -> impl Strategy<Value = IpNet> {
    prop_oneof![
        6 => (v4_addr(), 27u8..=32).prop_map(|(a, l)| IpNet::V4(ipnet::Ipv4Net::new(a, l).unwrap())),
        3 => (v6_addr(), 123u8..=128).prop_map(|(a, l)| IpNet::V6(ipnet::Ipv6Net::new(a, l).unwrap())),
        1 => prop_oneof![Just(net("0.0.0.0/0")), Just(net("::/0")), Just(net("10.0.0.0/8"))],
    ]
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![8 => 0u16..10, 1 => Just(65535u16), 1 => any::<u16>()]
}

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        8 => (0u16..10, 0u16..4).prop_map(|(s, l)| PortRange::new(s, s + l)),
        1 => Just(PortRange::ALL),
        1 => Just(PortRange::new(65530, 65535)),
    ]
}

fn set<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Vec<T>> {
    prop_oneof![2 => Just(Vec::new()), 3 => prop::collection::vec(s, 1..3)]
}

fn rule() -> impl Strategy<Value = Rule> {
    let action = prop_oneof![
        4 => (1u32..5).prop_map(Action::Mark),
        1 => Just(Action::Drop),
        1 => Just(Action::Accept),
    ];
    (
        set(cidr()),
        set(cidr()),
        prop::option::weighted(0.4, prop_oneof![Just(6u8), Just(17), Just(1)]),
        set(port_range()),
        set(port_range()),
        set((0u16..3).prop_map(IfaceId)),
        action,
    )
        .prop_map(
            |(src, dst, protocol, src_ports, dst_ports, in_iface, action)| Rule {
                src,
                dst,
                protocol,
                src_ports,
                dst_ports,
                in_iface,
                action,
            },
        )
}

fn addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        v4_addr().prop_map(IpAddr::V4),
        v6_addr().prop_map(IpAddr::V6)
    ]
}

fn packet() -> impl Strategy<Value = PacketMeta> {
    // Mostly same-family pairs, sometimes mixed (not on a wire, but defined).
    let pair = prop_oneof![
        4 => (v4_addr(), v4_addr()).prop_map(|(s, d)| (IpAddr::V4(s), IpAddr::V4(d))),
        3 => (v6_addr(), v6_addr()).prop_map(|(s, d)| (IpAddr::V6(s), IpAddr::V6(d))),
        1 => (addr(), addr()),
    ];
    (
        pair,
        prop_oneof![Just(6u8), Just(17), Just(1), Just(58)],
        prop::option::weighted(0.8, (port(), port())),
        (0u16..4).prop_map(IfaceId),
    )
        .prop_map(|((src, dst), protocol, ports, iface)| PacketMeta {
            src,
            dst,
            protocol,
            ports,
            iface,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn compiled_equals_linear(
        rules in prop::collection::vec(rule(), 1..60),
        pkts in prop::collection::vec(packet(), 1..40),
    ) {
        check(&rules, &pkts);
    }

    #[test]
    fn compiled_equals_linear_on_rule_derived_packets(
        rules in prop::collection::vec(rule(), 1..60),
        picks in prop::collection::vec((any::<prop::sample::Index>(), packet()), 1..20),
    ) {
        // Packets built to hit a specific rule's boundaries (first/last
        // address of a CIDR, ends of port ranges) where possible.
        let pkts: Vec<PacketMeta> = picks
            .into_iter()
            .map(|(ix, mut p)| {
                let r = &rules[ix.index(rules.len())];
                let lo = ix.index(2) == 0;
                if let Some(n) = r.src.first() {
                    p.src = if lo { n.network() } else { n.broadcast() };
                }
                if let Some(n) = r.dst.first() {
                    p.dst = if lo { n.network() } else { n.broadcast() };
                }
                if let Some(proto) = r.protocol {
                    p.protocol = proto;
                }
                if let (Some(sp), Some(dp)) = (r.src_ports.first(), r.dst_ports.first()) {
                    p.ports = Some(if lo { (sp.start, dp.start) } else { (sp.end, dp.end) });
                }
                if let Some(i) = r.in_iface.first() {
                    p.iface = *i;
                }
                p
            })
            .collect();
        check(&rules, &pkts);
    }
}
