//! Connection table lookup and insert at 1k, 100k, 1M and 10M live entries.
//! Target: lookup at 10M within 2× of 1k; entry ≤ 64 bytes (checked here too).
//! Lookups hit random live entries (xorshift order), the realistic worst case; one by
//! one, and in batches of 32 with their index buckets prefetched first (as a worker
//! does with an rx batch). `floor` is the machine's own share: two dependent loads
//! among as many random lines of an array as large as the table.

use std::hint::black_box;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use xvs_benches::{CpuPrefetch, conn, scramble, tuple};
use xvs_core::conntrack::{Conn, ConnTable, InsertOutcome};
use xvs_core::time::Time;

const NOW: Time = Time(1000);

fn sizes() -> Vec<u32> {
    // XVS_BENCH_QUICK=1 (used by the test command) keeps to the small sizes.
    if std::env::var_os("XVS_BENCH_QUICK").is_some() {
        vec![1_000, 100_000]
    } else {
        vec![1_000, 100_000, 1_000_000, 10_000_000]
    }
}

fn conntrack(c: &mut Criterion) {
    assert!(std::mem::size_of::<Conn>() <= 64);
    let mut g = c.benchmark_group("conntrack");
    for n in sizes() {
        // 25% headroom so inserts below do not evict.
        let table = ConnTable::new(n as usize + n as usize / 4, 64, 11);
        for i in 0..n {
            assert!(matches!(
                table.insert(conn(i), NOW, |_| {}),
                InsertOutcome::Stored(_)
            ));
        }
        let keys: Vec<_> = (0..4096u64)
            .map(|k| tuple((scramble(k + 1) % u64::from(n)) as u32))
            .collect();
        let mut k = 0usize;
        g.bench_with_input(BenchmarkId::new("lookup", n), &n, |b, _| {
            b.iter(|| {
                let t = &keys[k & 4095];
                k = k.wrapping_add(1);
                black_box(table.lookup(black_box(t), NOW, |_| {}, |c, _| c.dport))
            })
        });
        // As a worker looks them up: an rx batch of 32 at a time, every key's index
        // bucket prefetched first (`ConnTable::prefetch`). Time per key.
        g.bench_with_input(BenchmarkId::new("lookup-batch32", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    let batch = &keys[k & 4095 & !31..][..32];
                    k = k.wrapping_add(32);
                    for t in batch {
                        table.prefetch(t, false, &CpuPrefetch);
                    }
                    for t in batch {
                        black_box(table.lookup(black_box(t), NOW, |_| {}, |c, _| c.dport));
                    }
                }
                start.elapsed() / 32
            })
        });
        let reply_keys: Vec<_> = keys.iter().map(conn_reply).collect();
        g.bench_with_input(BenchmarkId::new("lookup-reply", n), &n, |b, _| {
            b.iter(|| {
                let t = &reply_keys[k & 4095];
                k = k.wrapping_add(1);
                black_box(table.lookup(black_box(t), NOW, |_| {}, |c, _| c.dport))
            })
        });
        // Fresh flows (not in the table), built before timing.
        let fresh: Vec<Conn> = (0..4096).map(|i| conn(n + i)).collect();
        g.bench_with_input(BenchmarkId::new("insert+remove", n), &n, |b, _| {
            b.iter(|| {
                let c = fresh[k & 4095];
                k = k.wrapping_add(1);
                black_box(table.insert(c, NOW, |_| {}));
                black_box(table.remove(&c.original_tuple()));
            })
        });
        // The floor of a lookup on this machine: two dependent loads (as bucket →
        // entry) among 8 192 random lines (as the 4 096 keys' buckets and entries) of
        // an array as large as the table, on the same kind of pages, and nothing
        // else. Its ratio between sizes is what the memory hierarchy alone costs;
        // the lookups' ratio reads against it.
        let chain = Chain::new(table.capacity() * BYTES_PER_SLOT, 8192);
        let mut at = chain.start;
        g.bench_with_input(BenchmarkId::new("floor", n), &n, |b, _| {
            b.iter(|| {
                at = chain.next[chain.next[at]];
                black_box(at)
            })
        });
        eprintln!("conntrack {n}: {} live", table.len());
    }
    g.finish();
}

/// Bytes of table per connection slot: the 64-byte entry and its two index entries
/// (≈ 13 bytes each; the conntrack module's own count).
const BYTES_PER_SLOT: usize = 64 + 2 * 13;

/// A cycle through `lines` distinct random cache lines of a `bytes`-sized array:
/// `next[i]` is where the load after `i` goes, from `start`.
struct Chain {
    next: Vec<usize>,
    start: usize,
}

impl Chain {
    fn new(bytes: usize, lines: usize) -> Chain {
        const WORDS: usize = 64 / size_of::<usize>();
        let total = (bytes / 64).max(1);
        let mut picked = std::collections::HashSet::new();
        let mut order = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        while order.len() < lines.min(total) {
            x = scramble(x);
            let line = (x % total as u64) as usize;
            if picked.insert(line) {
                order.push(line * WORDS);
            }
        }
        let mut next = vec![0; total * WORDS];
        for w in order.windows(2) {
            next[w[0]] = w[1];
        }
        next[order[order.len() - 1]] = order[0];
        Chain {
            next,
            start: order[0],
        }
    }
}

fn conn_reply(t: &xvs_core::conntrack::Tuple) -> xvs_core::conntrack::Tuple {
    let mut c = conn(0);
    c.client = t.src;
    c.cport = t.sport;
    c.reply_tuple()
}

criterion_group!(benches, conntrack);
criterion_main!(benches);
