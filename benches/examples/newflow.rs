//! Profiling aid: new persistent flows (fresh clients' SYNs to the lab's mark
//! service, one /24) decided one by one over cache-resident tables, for
//! `valgrind --tool=callgrind` or `perf record`
//! (`cargo run --release -p xvs-benches --example newflow`); prints ns per SYN.
use std::time::Instant;
use xvs_benches::syn_persistent;
use xvs_core::TableSizes;
use xvs_core::lab::{EXT, lab_with};
use xvs_core::time::Time;
fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let mut d = lab_with(TableSizes {
        conns: 1 << 16,
        templates: 1 << 10,
        fragments: 256,
        shards: 64,
        max_dests: 1024,
        flow_cache: 1 << 12,
        seed: 7,
    });
    let frames: Vec<Vec<u8>> = (0..n).map(|i| syn_persistent(1_000_000 + i)).collect();
    let mut buf = frames[0].clone();
    let t = Instant::now();
    for f in &frames {
        buf.copy_from_slice(f);
        std::hint::black_box(d.process(EXT, Time(2), std::hint::black_box(&mut buf)));
    }
    println!(
        "{:.1} ns per new flow ({} connections)",
        t.elapsed().as_nanos() as f64 / f64::from(n),
        d.shared().conns.len()
    );
}
