//! `Director::process` per packet: an established NAT flow with 100k live connections
//! (client side and reply side), DR, and new flows with and without persistence.
//! Targets: established ≤ 50 ns, new flow with persistence ≤ 200 ns.

use std::hint::black_box;

use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use xvs_benches::{
    ack, client, decide_pipelined, live_sizes, remove_new_connections, scramble, syn,
    syn_persistent,
};

use xvs_core::classify::Classifier;
use xvs_core::lab::{
    CLIENT_MAC, EXT, INT, INT_MAC, lab_net, lab_rules, lab_specs, lab_with, mac_of,
};
use xvs_core::net::NetView;
use xvs_core::service::ServiceTable;
use xvs_core::time::Time;
use xvs_core::wire::build::FrameSpec;
use xvs_core::wire::tcp_flags::{ACK, SYN};
use xvs_core::{Snapshot, TableSizes, Verdict};

const LIVE: u32 = 100_000;
const NOW: Time = Time(1000);

/// The lab's snapshot, with every client host of `client()` a known neighbour (so
/// that replies are forwarded, not dropped for want of a MAC).
fn snapshot_with_clients() -> Arc<Snapshot> {
    let lab = lab_net();
    let clients = (1..=250).map(|h| (IpAddr::V4(Ipv4Addr::new(198, 18, 0, h)), CLIENT_MAC));
    Arc::new(Snapshot {
        services: ServiceTable::build(&lab_specs()).unwrap(),
        rules: Classifier::compile(&lab_rules()).unwrap(),
        net: NetView::new(lab.ifaces().to_vec(), lab.routes().to_vec(), clients),
    })
}

fn process(c: &mut Criterion) {
    let mut d = lab_with(live_sizes());
    d.set_snapshot(snapshot_with_clients());
    // 100k live connections; the established frames below rotate over 1024 of them
    // spread across the table (the rest stay live and compete for cache).
    for i in 0..LIVE {
        let mut f = syn(i);
        assert_eq!(d.process(EXT, NOW, &mut f), Verdict::Forward { iface: INT });
    }
    let picks: Vec<u32> = (0..1024u64)
        .map(|k| (scramble(k + 1) % u64::from(LIVE)) as u32)
        .collect();
    let originals: Vec<Vec<u8>> = picks.iter().map(|&i| ack(i)).collect();
    let replies: Vec<Vec<u8>> = picks
        .iter()
        .zip(&originals)
        .map(|(&i, original)| {
            let mut f = original.clone();
            d.process(EXT, NOW, &mut f);
            // The server answers from the address the director chose.
            let rs = std::net::Ipv4Addr::new(f[30], f[31], f[32], f[33]);
            FrameSpec::tcp(format!("{rs}:8080").parse().unwrap(), client(i), ACK)
                .with_macs(mac_of(u32::from(f[33])), INT_MAC)
                .build()
        })
        .collect();
    let dr: Vec<Vec<u8>> = (0..1024u32)
        .map(|i| {
            let mut f =
                FrameSpec::tcp(client(LIVE + i), "198.18.1.2:80".parse().unwrap(), SYN).build();
            d.process(EXT, NOW, &mut f);
            FrameSpec::tcp(client(LIVE + i), "198.18.1.2:80".parse().unwrap(), ACK).build()
        })
        .collect();
    let mut g = c.benchmark_group("process");
    let mut run = |name: &str, frames: &[Vec<u8>], iface| {
        // What is measured is forwarding: every frame is forwarded once, untimed.
        for f in frames {
            let verdict = d.process(iface, NOW, &mut f.clone());
            assert!(
                matches!(verdict, Verdict::Forward { .. }),
                "{name}: {verdict:?}"
            );
        }
        let mut buf = frames[0].clone();
        let mut k = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                let f = &frames[k & 1023];
                k = k.wrapping_add(1);
                buf.copy_from_slice(f);
                black_box(d.process(iface, NOW, black_box(&mut buf)))
            })
        });
    };
    run("established/nat-in/100k-live", &originals, EXT);
    run("established/nat-reply/100k-live", &replies, INT);
    run("established/dr/100k-live", &dr, EXT);
    // New flows: fresh SYNs (distinct clients) against the 100k live connections;
    // after every `CHUNK` of them (untimed) the new connections are removed again, so
    // every measured insert lands in a table that is not full (no eviction: at most
    // 1 600 + 500 of a shard's 4 096 slots are taken). Removing them only after each
    // sample, as before, let criterion's larger samples fill shards and time
    // evictions.
    const CHUNK: usize = 32_768;
    let mut next = 1_000_000u32;
    let mut since_removal = 0usize;
    let shared = d.shared().clone();
    let snap = d.snapshot().clone();
    // Frames arrive as a worker gets them: rx batches of 32 written just before into
    // its (hot) ring buffers — built untimed, batch by batch; only the decisions are
    // timed (two clock reads per batch, ≈ 1–2 ns per frame, included). With
    // `look_ahead`, each frame is shown to `Director::prefetch` a few frames before
    // it is decided, as the AF_XDP worker does.
    let mut ring: Vec<Vec<u8>> = vec![Vec::new(); 32];
    let mut new_flows = |name: &str, make: fn(u32) -> Vec<u8>, look_ahead: bool| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut elapsed = std::time::Duration::ZERO;
                let mut left = iters as usize;
                while left > 0 {
                    let batch = &mut ring[..left.min(32)];
                    left -= batch.len();
                    for f in batch.iter_mut() {
                        next = if next >= 15_000_000 {
                            1_000_000
                        } else {
                            next + 1
                        };
                        *f = make(next);
                    }
                    let start = Instant::now();
                    if look_ahead {
                        decide_pipelined(&mut d, EXT, NOW, batch);
                    } else {
                        for f in batch.iter_mut() {
                            black_box(d.process(EXT, NOW, f));
                        }
                    }
                    elapsed += start.elapsed();
                    since_removal += batch.len();
                    if since_removal >= CHUNK {
                        since_removal = 0;
                        remove_new_connections(&shared, &snap.services);
                    }
                }
                elapsed
            })
        });
    };
    new_flows("new-flow/persistent", syn_persistent, false);
    new_flows("new-flow/rr", syn, false);
    new_flows("new-flow/persistent/look-ahead", syn_persistent, true);
    new_flows("new-flow/rr/look-ahead", syn, true);
    g.finish();
    eprintln!(
        "live connections at the end: {}; evicted for new flows: {}",
        d.shared().conns.len(),
        d.stats().conns_evicted
    );
}

/// Established NAT flows in batches of 32 (as a worker gets them from its rx ring)
/// over 64k flows, so the flow cache does not fit the CPU caches: each packet
/// decided in turn, against the same with each frame shown to `Director::prefetch`
/// a few frames ahead (what the AF_XDP worker does). Time per packet, frame
/// copies included in both.
fn batches(c: &mut Criterion) {
    const FLOWS: u32 = 65_536;
    const BATCH: usize = 32;
    let mut d = lab_with(TableSizes {
        flow_cache: 1 << 18,
        ..live_sizes()
    });
    d.set_snapshot(snapshot_with_clients());
    let frames: Vec<Vec<u8>> = (0..FLOWS)
        .map(|k| {
            let i = (scramble(u64::from(k) + 1) % u64::from(LIVE)) as u32;
            let mut f = syn(i);
            d.process(EXT, NOW, &mut f);
            ack(i)
        })
        .collect();
    for f in &frames {
        let verdict = d.process(EXT, NOW, &mut f.clone());
        assert_eq!(verdict, Verdict::Forward { iface: INT });
    }
    let mut bufs: Vec<Vec<u8>> = frames[..BATCH].to_vec();
    let mut g = c.benchmark_group("process-batch");
    for look_ahead in [false, true] {
        let name = if look_ahead {
            "established/nat-in/64k-flows/look-ahead"
        } else {
            "established/nat-in/64k-flows/one-by-one"
        };
        let mut next = 0usize;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    for buf in bufs.iter_mut() {
                        buf.copy_from_slice(&frames[next]);
                        next = (next + 1) % frames.len();
                    }
                    if look_ahead {
                        decide_pipelined(&mut d, EXT, NOW, &mut bufs);
                    } else {
                        for buf in bufs.iter_mut() {
                            black_box(d.process(EXT, NOW, black_box(buf)));
                        }
                    }
                }
                start.elapsed() / BATCH as u32
            })
        });
    }
    g.finish();
}

criterion_group!(benches, process, batches);
criterion_main!(benches);
