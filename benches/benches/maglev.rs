//! Scheduler benchmarks: Maglev table build (control side) and per-flow
//! `select` (data path) for mh, wlc and wrr.
//!
//! Layer: bench of the pure core `sched` module. Invariant checked by the
//! figures: a 65537-slot Maglev table for 1000 servers builds in <= 5 ms;
//! select does no allocation (nothing here allocates inside the timed loop
//! except what select itself would).
//!
//! Run: `cargo bench --bench maglev -- --warm-up-time 1 --measurement-time 3`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use xvs_core::sched::{Candidate, Flow, Idle, Load, SchedConfig, SchedFlags, SchedKind, Scheduler};

fn candidates(n: usize) -> Vec<Candidate> {
    (0..n)
        .map(|i| Candidate {
            addr: IpAddr::V4(Ipv4Addr::new(10, 2, (i >> 8) as u8, i as u8)),
            port: 80,
            weight: 1 + (i as u32 * 37) % 100,
        })
        .collect()
}

fn flows(n: u32) -> Vec<Flow> {
    (0..n)
        .map(|i| Flow {
            src: IpAddr::V4(Ipv4Addr::from(
                0x6440_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
            )),
            src_port: 1024 + (i % 60000) as u16,
            dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            dst_port: 443,
            protocol: 6,
        })
        .collect()
}

fn cfg(kind: SchedKind) -> SchedConfig {
    SchedConfig {
        kind,
        flags: SchedFlags {
            fallback: true,
            port: false,
        },
        mh_table_size: 65537,
        hash_seed: 0x5eed,
    }
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("maglev_build_65537");
    for n in [10usize, 100, 1000] {
        let cands = candidates(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &cands, |b, cands| {
            b.iter(|| Scheduler::build(&cfg(SchedKind::Mh), black_box(cands)).unwrap())
        });
    }
    g.finish();
}

fn select(c: &mut Criterion) {
    let cands = candidates(100);
    let loads: Vec<Load> = (0..100u32)
        .map(|i| Load {
            active: (i * 7919) % 500,
            inactive: (i * 104_729) % 2000,
            overloaded: false,
        })
        .collect();
    let fl = flows(4096);
    let mut g = c.benchmark_group("select_100");
    for kind in [SchedKind::Mh, SchedKind::Wlc, SchedKind::Wrr] {
        let s = Scheduler::build(&cfg(kind), &cands).unwrap();
        g.bench_function(kind.to_string(), |b| {
            let mut i = 0usize;
            b.iter(|| {
                i = (i + 1) & 4095;
                s.select(black_box(&fl[i]), &loads)
            })
        });
    }
    // mh when every flow's pick must fall back (half the servers overloaded)
    let s = Scheduler::build(&cfg(SchedKind::Mh), &cands).unwrap();
    let half: Vec<Load> = (0..100)
        .map(|i| Load {
            overloaded: i % 2 == 0,
            ..Load::default()
        })
        .collect();
    g.bench_function("mh_half_overloaded", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 4095;
            s.select(black_box(&fl[i]), &half)
        })
    });
    let s = Scheduler::build(&cfg(SchedKind::Sh), &cands).unwrap();
    g.bench_function("sh", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) & 4095;
            s.select(black_box(&fl[i]), &Idle)
        })
    });
    g.finish();
}

criterion_group!(benches, build, select);
criterion_main!(benches);
