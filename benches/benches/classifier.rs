//! Benchmark of the mark-rule classifier (bench layer, not shipped): per-packet
//! cost with 10, 1 000 and 10 000 rules of a realistic shape, and compile
//! time. Target: classify with 10k rules within 2x of 10 rules.
//!
//! Rule shape (rule `i` of `n`, the last two special):
//! * `i % 10 in 0..=4 | 8 | 9`: src /32 (distinct, from 198.18.0.0/15), dst VIP /32
//!   (one of 16 in 203.0.113.0/24), TCP, dst ports {80, 443} → Mark;
//! * `i % 10 == 7`: src /24 from 198.18.0.0/15 → Drop (overlaps the /32s);
//! * `i % 10 == 6`: src /32, dst VIP /32, UDP dst port 53 → Mark;
//! * `i % 10 == 5`: IPv6 src /128 from 2001:db8::/64, dst VIP6 /128, TCP
//!   {80, 443} → Mark;
//! * `n-2`: catch-all for the VIP net: dst 203.0.113.0/24 TCP → Accept;
//! * `n-1`: last real rule: src 100.64.0.0/10, UDP dst port 4789 → Mark.
//!
//! Invariant: every bench packet's decision is asserted against
//! `classify_linear` before it is measured.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use xvs_core::classify::{
    Action, Classifier, IfaceId, PacketMeta, PortRange, Rule, classify_linear,
};

const SIZES: [usize; 3] = [10, 1_000, 10_000];

fn v4(base: u32, off: u32, len: u8) -> IpNet {
    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(base + off), len).unwrap())
}

fn vip(i: usize) -> u32 {
    0xcb00_7100 + 1 + (i % 16) as u32 // 203.0.113.1..=16
}

fn vip6() -> Ipv6Addr {
    "2001:db8:ffff::1".parse().unwrap()
}

const SRC_BASE: u32 = 0xc612_0000; // 198.18.0.0

fn rules(n: usize) -> Vec<Rule> {
    let web = vec![PortRange::single(80), PortRange::single(443)];
    let mut out: Vec<Rule> = (0..n - 2)
        .map(|i| {
            let mut r = Rule::new(Action::Mark(i as u32 + 1));
            match i % 10 {
                0..=4 | 8 | 9 => {
                    r.src = vec![v4(SRC_BASE, i as u32 * 7, 32)];
                    r.dst = vec![v4(vip(i), 0, 32)];
                    r.protocol = Some(6);
                    r.dst_ports = web.clone();
                }
                7 => {
                    r.src = vec![v4(SRC_BASE, ((i / 10) as u32 % 512) << 8, 24)];
                    r.action = Action::Drop;
                }
                6 => {
                    r.src = vec![v4(SRC_BASE, i as u32 * 7, 32)];
                    r.dst = vec![v4(vip(i), 0, 32)];
                    r.protocol = Some(17);
                    r.dst_ports = vec![PortRange::single(53)];
                }
                _ => {
                    let s = Ipv6Addr::from((0x2001_0db8u128 << 96) + i as u128);
                    r.src = vec![IpNet::V6(Ipv6Net::new(s, 128).unwrap())];
                    r.dst = vec![IpNet::V6(Ipv6Net::new(vip6(), 128).unwrap())];
                    r.protocol = Some(6);
                    r.dst_ports = web.clone();
                }
            }
            r
        })
        .collect();
    out.push(Rule {
        dst: vec![v4(0xcb00_7100, 0, 24)],
        protocol: Some(6),
        ..Rule::new(Action::Accept)
    });
    out.push(Rule {
        src: vec![v4(0x6440_0000, 0, 10)],
        protocol: Some(17),
        dst_ports: vec![PortRange::single(4789)],
        ..Rule::new(Action::Mark(0xffff))
    });
    out
}

fn packet(src: IpAddr, dst: IpAddr, protocol: u8, ports: Option<(u16, u16)>) -> PacketMeta {
    PacketMeta {
        src,
        dst,
        protocol,
        ports,
        iface: IfaceId(0),
    }
}

/// (name, packet, expected rule index)
fn packets(n: usize) -> Vec<(&'static str, PacketMeta, Option<u32>)> {
    // Last IPv6 rule: the largest i < n-2 with i % 10 == 5.
    let last6 = (0..n - 2).rev().find(|i| i % 10 == 5).unwrap();
    vec![
        (
            "v4_last_rule",
            packet(
                Ipv4Addr::new(100, 64, 7, 7).into(),
                Ipv4Addr::new(10, 1, 1, 1).into(),
                17,
                Some((5555, 4789)),
            ),
            Some(n as u32 - 1),
        ),
        (
            "v4_no_match",
            packet(
                Ipv4Addr::new(192, 0, 2, 9).into(),
                Ipv4Addr::new(10, 9, 9, 9).into(),
                6,
                Some((40000, 22)),
            ),
            None,
        ),
        (
            "v4_early_match",
            packet(
                Ipv4Addr::from(SRC_BASE).into(),
                Ipv4Addr::from(vip(0)).into(),
                6,
                Some((40000, 443)),
            ),
            Some(0),
        ),
        (
            "v6_late_match",
            packet(
                Ipv6Addr::from((0x2001_0db8u128 << 96) + last6 as u128).into(),
                vip6().into(),
                6,
                Some((40000, 80)),
            ),
            Some(last6 as u32),
        ),
        (
            "v6_no_match",
            packet(
                "2001:db8:1::1".parse::<Ipv6Addr>().unwrap().into(),
                vip6().into(),
                6,
                Some((40000, 80)),
            ),
            None,
        ),
        (
            "icmp_drop",
            packet(
                Ipv4Addr::new(198, 18, 0, 3).into(),
                Ipv4Addr::new(203, 0, 113, 5).into(),
                1,
                None,
            ),
            Some(7),
        ),
    ]
}

fn bench_classify(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    for n in SIZES {
        let rules = rules(n);
        let t = Instant::now();
        let cls = Classifier::compile(&rules).unwrap();
        let compile = t.elapsed();
        let s = cls.stats();
        eprintln!(
            "rules={n}: compile {compile:?}, memory {} bytes ({:.2} MiB), src classes {}, dst classes {}, \
             (src,dst) classes {:?}, l4 classes {:?}, fully precomputed {}",
            s.memory_bytes,
            s.memory_bytes as f64 / (1 << 20) as f64,
            s.src_classes,
            s.dst_classes,
            s.address_classes,
            s.l4_classes,
            s.fully_precomputed
        );
        for (name, pkt, want) in packets(n) {
            let d = cls.classify(&pkt);
            assert_eq!(d, classify_linear(&rules, &pkt), "{name} n={n}");
            assert_eq!(d.rule, want, "{name} n={n}");
            group.bench_with_input(BenchmarkId::new(name, n), &pkt, |b, p| {
                b.iter(|| cls.classify(black_box(p)))
            });
        }
    }
    group.finish();
}

fn bench_compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    for n in SIZES {
        let rules = rules(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &rules, |b, r| {
            b.iter(|| Classifier::compile(black_box(r)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench_classify, bench_compile);
criterion_main!(benches);
