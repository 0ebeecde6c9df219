//! The data path allocates nothing per packet in steady state: a counting global
//! allocator (`allocation-counter`) watches `Director::process` over a churning mix of
//! new flows (with and without persistence), established flows in both directions,
//! DR, IPv6, UDP with partial checksums, fragments, drops, passes, evictions and sweeps.

use std::net::SocketAddr;

use xvs_core::lab::{EXT, INT, lab_with};
use xvs_core::time::Time;
use xvs_core::wire::build::{FrameSpec, fragment_ipv4};
use xvs_core::wire::tcp_flags::{ACK, SYN};
use xvs_core::{TableSizes, Verdict};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A workload of frames; `round` varies client ports so that new flows keep coming.
fn workload(round: u16) -> Vec<(Verdict, bool, Vec<u8>)> {
    let mut frames = Vec::new();
    let c = |p: u16| sa(&format!("198.18.0.{}:{}", 10 + (p % 200), 1024 + p));
    for i in 0..64u16 {
        let port = round.wrapping_mul(64).wrapping_add(i);
        frames.push((
            Verdict::Forward { iface: INT },
            true,
            FrameSpec::tcp(c(port), sa("198.18.1.1:80"), SYN).build(),
        ));
        frames.push((
            Verdict::Forward { iface: INT },
            true,
            FrameSpec::tcp(c(port), sa("198.18.1.1:80"), ACK)
                .with_payload(b"hello")
                .build(),
        ));
        frames.push((
            Verdict::Forward { iface: INT },
            true,
            FrameSpec::tcp(c(port), sa("198.18.1.3:443"), SYN).build(),
        ));
        frames.push((
            Verdict::Forward { iface: EXT },
            true,
            FrameSpec::tcp(c(port), sa("198.18.1.2:80"), SYN).build(),
        ));
        frames.push((
            Verdict::Forward { iface: INT },
            true,
            FrameSpec::udp(c(port), sa("198.18.1.1:53"))
                .with_partial_checksum(true)
                .build(),
        ));
        frames.push((
            Verdict::Forward { iface: INT },
            true,
            FrameSpec::tcp(
                sa(&format!("[2001:db8::7]:{}", 1024 + port)),
                sa("[2001:db8:1::1]:80"),
                SYN,
            )
            .build(),
        ));
    }
    let big = FrameSpec::udp(sa("198.18.0.9:999"), sa("198.18.1.1:53"))
        .with_payload(&[1u8; 2500])
        .with_ident(round);
    for f in fragment_ipv4(&big.build(), 1400) {
        frames.push((Verdict::Forward { iface: INT }, true, f));
    }
    frames.push((
        Verdict::Pass,
        false,
        FrameSpec::tcp(sa("198.18.0.9:1"), sa("198.18.1.1:22"), SYN).build(),
    ));
    frames.push((Verdict::Pass, false, vec![0u8; 3]));
    frames.push((
        Verdict::Pass,
        false,
        FrameSpec::tcp(sa("198.18.9.9:1"), sa("198.18.1.1:80"), SYN).build(),
    ));
    frames
}

#[test]
fn steady_state_processing_does_not_allocate() {
    // The counter sees allocations at all (the test could fail).
    let probe = allocation_counter::measure(|| {
        std::hint::black_box(vec![1u8; 10]);
    });
    assert!(probe.count_total > 0);

    // Small tables so that the churn fills them and eviction paths run too.
    let sizes = TableSizes {
        conns: 2048,
        templates: 256,
        fragments: 64,
        shards: 4,
        max_dests: 128,
        flow_cache: 1024,
        seed: 3,
    };
    let mut d = lab_with(sizes);
    let rounds: Vec<Vec<(Verdict, bool, Vec<u8>)>> = (0..64).map(workload).collect();
    let mut buffers: Vec<Vec<Vec<u8>>> = rounds
        .iter()
        .map(|r| r.iter().map(|(_, _, f)| f.clone()).collect())
        .collect();
    // Warm up: one pass over everything (first-touch effects are not steady state).
    for (r, round) in rounds.iter().enumerate() {
        for (i, (_, _, f)) in round.iter().enumerate() {
            buffers[r][i].copy_from_slice(f);
            d.process(EXT, Time(r as u32 * 1000), &mut buffers[r][i]);
        }
    }
    let mut forwarded = 0u64;
    let info = allocation_counter::measure(|| {
        for pass in 0..4u32 {
            for (r, round) in rounds.iter().enumerate() {
                let now = Time(100_000 + pass * 400_000 + r as u32 * 5_000);
                for (i, (expect, must, f)) in round.iter().enumerate() {
                    let buf = &mut buffers[r][i];
                    buf.copy_from_slice(f);
                    let v = d.process(EXT, now, buf);
                    if *must {
                        assert_eq!(v, *expect);
                        forwarded += 1;
                    }
                }
                d.maintain(now, 32);
            }
        }
    });
    assert!(
        forwarded > 50_000,
        "the workload ran ({forwarded} forwarded)"
    );
    assert!(d.stats().conns_evicted > 0 || d.stats().conns_created > 0);
    assert_eq!(
        info.count_total, 0,
        "heap allocations during steady-state processing: {info:?}"
    );
}
