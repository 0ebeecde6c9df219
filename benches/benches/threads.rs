//! Two workers on the shared tables: the same workload on one thread and on two
//! threads at once (each with its own `Director` over one `Shared`), reported as time
//! per packet per thread — established flows (flow-cache hits), and new flows (SYNs
//! of fresh clients: connection-shard locks, shared server counters). Equal figures
//! mean the workers do not serialise on shared lines (on this 2-vCPU VM the second
//! thread shares the machine).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use xvs_benches::{ack, syn};
use xvs_core::lab::{EXT, lab_with};
use xvs_core::time::Time;
use xvs_core::{Director, TableSizes};

const NOW: Time = Time(1000);
const FLOWS: u32 = 100_000;

fn director() -> Director {
    let mut d = lab_with(TableSizes {
        conns: 1 << 19,
        templates: 1 << 12,
        fragments: 1024,
        shards: 64,
        max_dests: 1024,
        flow_cache: 1 << 16,
        seed: 5,
    });
    for i in 0..FLOWS {
        let mut f = syn(i);
        d.process(EXT, NOW, &mut f);
    }
    d
}

fn run(d: &mut Director, frames: &[Vec<u8>], iters: u64) -> Duration {
    let mut buf = frames[0].clone();
    let start = Instant::now();
    for k in 0..iters as usize {
        buf.copy_from_slice(&frames[k % frames.len()]);
        std::hint::black_box(d.process(EXT, NOW, &mut buf));
    }
    start.elapsed()
}

/// Fresh clients' SYNs `from..from + n`, built before timing.
fn syns(from: u32, n: u64) -> Vec<Vec<u8>> {
    (0..n as u32).map(|i| syn(from + i)).collect()
}

fn open(d: &mut Director, frames: &mut [Vec<u8>]) -> Duration {
    let start = Instant::now();
    for f in frames {
        std::hint::black_box(d.process(EXT, NOW, f));
    }
    start.elapsed()
}

/// Drop the connections a sample opened (the lab's first clients use ports below 2000).
fn forget_new(d: &Director) {
    let (shared, snap) = (d.shared(), d.snapshot());
    shared
        .conns
        .retain(|c| c.cport < 2000, |c| shared.conn_gone(&snap.services, c));
}

/// The next fresh client range of `n` (cycling through clients 1M..15M).
fn fresh(next: &mut u32, n: u64) -> u32 {
    if *next + n as u32 > 15_000_000 {
        *next = 1_000_000;
    }
    let from = *next;
    *next += n as u32;
    from
}

fn threads(c: &mut Criterion) {
    let base = director();
    let frames_a: Arc<Vec<Vec<u8>>> = Arc::new((0..FLOWS / 2).step_by(47).map(ack).collect());
    let frames_b: Arc<Vec<Vec<u8>>> = Arc::new((FLOWS / 2..FLOWS).step_by(47).map(ack).collect());
    let mut g = c.benchmark_group("threads");
    g.bench_function("established/1-thread", |b| {
        let mut d = Director::new(base.shared().clone(), base.snapshot().clone());
        b.iter_custom(|iters| run(&mut d, &frames_a, iters))
    });
    g.bench_function("established/2-threads-per-thread", |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(2));
            let (shared, snap, fb, bar) = (
                base.shared().clone(),
                base.snapshot().clone(),
                frames_b.clone(),
                barrier.clone(),
            );
            let other = std::thread::spawn(move || {
                let mut d = Director::new(shared, snap);
                bar.wait();
                run(&mut d, &fb, iters)
            });
            let mut d = Director::new(base.shared().clone(), base.snapshot().clone());
            barrier.wait();
            let mine = run(&mut d, &frames_a, iters);
            let theirs = other.join().expect("worker thread");
            // Time per packet per thread: the mean of the two threads' wall times.
            (mine + theirs) / 2
        })
    });
    let mut next = 1_000_000u32;
    g.bench_function("new-flow/1-thread", |b| {
        let mut d = Director::new(base.shared().clone(), base.snapshot().clone());
        b.iter_custom(|iters| {
            let mut frames = syns(fresh(&mut next, iters), iters);
            let t = open(&mut d, &mut frames);
            forget_new(&d);
            t
        })
    });
    g.bench_function("new-flow/2-threads-per-thread", |b| {
        b.iter_custom(|iters| {
            let mut mine_frames = syns(fresh(&mut next, iters), iters);
            let theirs_frames = syns(fresh(&mut next, iters), iters);
            let barrier = Arc::new(Barrier::new(2));
            let (shared, snap, bar) = (
                base.shared().clone(),
                base.snapshot().clone(),
                barrier.clone(),
            );
            let other = std::thread::spawn(move || {
                let mut d = Director::new(shared, snap);
                let mut frames = theirs_frames;
                bar.wait();
                open(&mut d, &mut frames)
            });
            let mut d = Director::new(base.shared().clone(), base.snapshot().clone());
            barrier.wait();
            let mine = open(&mut d, &mut mine_frames);
            let theirs = other.join().expect("worker thread");
            forget_new(&d);
            (mine + theirs) / 2
        })
    });
    g.finish();
}

criterion_group!(benches, threads);
criterion_main!(benches);
