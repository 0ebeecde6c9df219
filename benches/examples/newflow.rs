//! Profiling aid: new persistent flows (fresh clients' SYNs to the lab's mark
//! service, one /24), for `valgrind --tool=callgrind` or `perf record`, and a steadier
//! clock than criterion's on a noisy machine (the minimum of many rounds).
//!
//! `cargo run --release -p xvs-benches --example newflow -- [N] [ROUNDS] [LIVE]`:
//! with `LIVE` = 0 (the default), `N` SYNs decided one by one over cache-resident
//! tables; otherwise the `process` bench's case — `LIVE` connections first, then
//! rounds of `N` SYNs in rx batches of 32 copied into a hot ring and decided with the
//! worker's look-ahead, the new connections removed after each round. Prints ns per
//! SYN: the minimum and the median over the rounds.
use std::time::{Duration, Instant};
use xvs_benches::{decide_pipelined, live_sizes, remove_new_connections, syn, syn_persistent};
use xvs_core::TableSizes;
use xvs_core::lab::{EXT, lab_with};
use xvs_core::time::Time;

fn main() {
    let arg = |k: usize, default: u32| -> u32 {
        std::env::args()
            .nth(k)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (n, rounds, live) = (arg(1, 20_000), arg(2, 1), arg(3, 0));
    let mut d = lab_with(if live == 0 {
        TableSizes {
            conns: 1 << 16,
            templates: 1 << 10,
            fragments: 256,
            shards: 64,
            max_dests: 1024,
            flow_cache: 1 << 12,
            seed: 7,
        }
    } else {
        live_sizes()
    });
    for i in 0..live {
        std::hint::black_box(d.process(EXT, Time(2), &mut syn(i)));
    }
    let frames: Vec<Vec<u8>> = (0..n).map(|i| syn_persistent(1_000_000 + i)).collect();
    let mut ring: Vec<Vec<u8>> = frames[..32.min(frames.len())].to_vec();
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let mut elapsed = Duration::ZERO;
        if live == 0 {
            let buf = &mut ring[0];
            let t = Instant::now();
            for f in &frames {
                buf.copy_from_slice(f);
                std::hint::black_box(d.process(EXT, Time(2), std::hint::black_box(buf)));
            }
            elapsed = t.elapsed();
        } else {
            for batch in frames.chunks(32) {
                for (slot, f) in ring.iter_mut().zip(batch) {
                    slot.copy_from_slice(f);
                }
                let t = Instant::now();
                decide_pipelined(&mut d, EXT, Time(2), &mut ring[..batch.len()]);
                elapsed += t.elapsed();
            }
        }
        per_round.push(elapsed.as_nanos() as f64 / f64::from(n));
        remove_new_connections(d.shared(), &d.snapshot().services);
    }
    per_round.sort_by(f64::total_cmp);
    println!(
        "{:.1} ns per new flow (min of {rounds}; median {:.1})",
        per_round[0],
        per_round[per_round.len() / 2]
    );
}
