//! Tests of the schedulers through the public API (unit and property tests).
//!
//! Layer: pure core, test only. Invariants checked: the per-kind semantics
//! listed in the module docs, `None` on empty / all-overloaded lists, and the
//! Maglev properties (no holes, determinism, order independence, weight
//! shares, minimal disruption).

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

fn ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8))
}

fn cands(w: &[u32]) -> Vec<Candidate> {
    w.iter()
        .enumerate()
        .map(|(i, &weight)| Candidate {
            addr: ip(i),
            port: 8080,
            weight,
        })
        .collect()
}

fn flow(i: u32) -> Flow {
    Flow {
        src: IpAddr::V4(Ipv4Addr::from(
            0xc0a8_0000u32.wrapping_add(i.wrapping_mul(2_654_435_761)),
        )),
        src_port: (i % 60000) as u16 + 1024,
        dst: IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 7) as u8)),
        dst_port: 80,
        protocol: 6,
    }
}

fn cfg(kind: SchedKind) -> SchedConfig {
    SchedConfig {
        kind,
        ..SchedConfig::default()
    }
}

fn build(kind: SchedKind, w: &[u32]) -> Scheduler {
    Scheduler::build(&cfg(kind), &cands(w)).unwrap()
}

fn l(active: u32, inactive: u32) -> Load {
    Load {
        active,
        inactive,
        overloaded: false,
    }
}

const OVER: Load = Load {
    active: 0,
    inactive: 0,
    overloaded: true,
};

// ---------------------------------------------------------------- basics

#[test]
fn kind_names_round_trip() {
    for k in SchedKind::ALL {
        assert_eq!(k.to_string().parse::<SchedKind>().unwrap(), k);
    }
    assert_eq!("wlc".parse::<SchedKind>().unwrap(), SchedKind::Wlc);
    assert!(matches!(
        "WLC".parse::<SchedKind>(),
        Err(SchedError::UnknownKind(_))
    ));
}

#[test]
fn default_config() {
    let c = SchedConfig::default();
    assert_eq!(c.kind, SchedKind::Wlc);
    assert_eq!(c.flags, SchedFlags::default());
    assert!(!c.flags.fallback && !c.flags.port);
    assert_eq!(c.mh_table_size, 65537);
    assert_eq!(c.hash_seed, 0);
}

#[test]
fn scheduler_is_send_sync() {
    fn ok<T: Send + Sync>() {}
    ok::<Scheduler>();
}

#[test]
fn build_errors() {
    let e = Scheduler::build(&cfg(SchedKind::Rr), &cands(&[1, 0])).unwrap_err();
    assert!(matches!(e, SchedError::ZeroWeight { index: 1, .. }), "{e}");
    let mut c = cands(&[1, 2, 3]);
    c[2].addr = c[0].addr;
    let e = Scheduler::build(&cfg(SchedKind::Wlc), &c).unwrap_err();
    assert!(
        matches!(
            e,
            SchedError::DuplicateCandidate {
                first: 0,
                second: 2,
                ..
            }
        ),
        "{e}"
    );
    c[2].port = 1; // same addr, other port: fine
    Scheduler::build(&cfg(SchedKind::Wlc), &c).unwrap();

    let mh = |size| SchedConfig {
        kind: SchedKind::Mh,
        mh_table_size: size,
        ..SchedConfig::default()
    };
    let e = Scheduler::build(&mh(65536), &cands(&[1])).unwrap_err();
    assert_eq!(e, SchedError::MhTableSizeNotPrime(65536));
    assert_eq!(e.to_string(), "mh table size 65536 is not prime");
    let e = Scheduler::build(&mh(251), &cands(&[1; 8])).unwrap_err();
    assert!(
        matches!(
            e,
            SchedError::MhTableTooSmall {
                size: 251,
                candidates: 8,
                min: 256
            }
        ),
        "{e}"
    );
    Scheduler::build(&mh(257), &cands(&[1; 8])).unwrap();
    let e = Scheduler::build(&mh(16_777_259), &cands(&[1])).unwrap_err();
    assert!(matches!(e, SchedError::MhTableTooLarge { .. }), "{e}");
    // the table size is only checked for mh
    Scheduler::build(
        &SchedConfig {
            kind: SchedKind::Sh,
            ..mh(4)
        },
        &cands(&[1]),
    )
    .unwrap();

    let many: Vec<Candidate> = (0..=MAX_CANDIDATES)
        .map(|i| Candidate {
            addr: IpAddr::V4(Ipv4Addr::from(i as u32)),
            port: 1,
            weight: 1,
        })
        .collect();
    let e = Scheduler::build(&cfg(SchedKind::Rr), &many).unwrap_err();
    assert!(matches!(e, SchedError::TooManyCandidates { .. }), "{e}");
    Scheduler::build(&cfg(SchedKind::Wrr), &many[..MAX_CANDIDATES]).unwrap();
}

fn all_flag_cfgs() -> Vec<SchedConfig> {
    let mut v = Vec::new();
    for kind in SchedKind::ALL {
        for (fallback, port) in [(false, false), (true, true)] {
            v.push(SchedConfig {
                kind,
                flags: SchedFlags { fallback, port },
                ..SchedConfig::default()
            });
        }
    }
    v
}

#[test]
fn empty_selects_none() {
    for c in all_flag_cfgs() {
        let s = Scheduler::build(&c, &[]).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
        assert_eq!(s.kind(), c.kind);
        for i in 0..10 {
            assert_eq!(s.select(&flow(i), &Idle), None, "{}", c.kind);
        }
    }
}

#[test]
fn all_overloaded_selects_none() {
    let w = [1, 2, 3, 4, 5];
    for c in all_flag_cfgs() {
        let s = Scheduler::build(&c, &cands(&w)).unwrap();
        for i in 0..50 {
            assert_eq!(s.select(&flow(i), &[OVER; 5]), None, "{}", c.kind);
        }
    }
}

#[test]
fn every_kind_picks_only_available() {
    let w = [3, 1, 4, 1, 5, 9, 2, 6];
    let loads: Vec<Load> = (0..8)
        .map(|i| if i % 3 == 0 { OVER } else { l(i, 2 * i) })
        .collect();
    for c in all_flag_cfgs() {
        let s = Scheduler::build(&c, &cands(&w)).unwrap();
        for i in 0..300 {
            if let Some(p) = s.select(&flow(i), &loads) {
                assert!(p < 8 && p % 3 != 0, "{} picked {p}", c.kind);
            } else {
                // only pure hashing without fallback may refuse
                assert!(
                    matches!(c.kind, SchedKind::Sh | SchedKind::Dh | SchedKind::Mh)
                        && (c.kind == SchedKind::Dh || !c.flags.fallback)
                );
            }
        }
    }
}

// ---------------------------------------------------------------- rr / wrr

fn counts(s: &Scheduler, loads: &impl LoadView, flows: u32) -> Vec<u32> {
    let mut c = vec![0u32; s.len()];
    for i in 0..flows {
        c[s.select(&flow(i), loads).unwrap()] += 1;
    }
    c
}

#[test]
fn rr_rotates_and_skips_overloaded_like_ipvs() {
    let s = build(SchedKind::Rr, &[5, 1, 1]);
    let picks: Vec<usize> = (0..6).map(|i| s.select(&flow(i), &Idle).unwrap()).collect();
    assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    assert_eq!(counts(&s, &Idle, 3000), vec![1000, 1000, 1000]);
    let loads = [l(0, 0), OVER, l(0, 0)];
    let s = build(SchedKind::Rr, &[1, 1, 1]);
    let picks: Vec<usize> = (0..6)
        .map(|i| s.select(&flow(i), &loads).unwrap())
        .collect();
    assert_eq!(picks, vec![0, 2, 0, 2, 0, 2]);
}

#[test]
fn wrr_exact_proportions() {
    let w = [5, 1, 1, 3];
    let s = build(SchedKind::Wrr, &w);
    assert_eq!(s.wrr_sequence().unwrap().len(), 10);
    assert_eq!(counts(&s, &Idle, 10 * 123), vec![615, 123, 123, 369]);
    // smooth: no more than 2 consecutive picks of server 0 in the sequence
    let seq = s.wrr_sequence().unwrap();
    let run = seq.windows(3).filter(|w| w.iter().all(|&x| x == 0)).count();
    assert_eq!(run, 0, "{seq:?}");
}

#[test]
fn wrr_skips_overloaded_keeps_others_proportional() {
    let s = build(SchedKind::Wrr, &[2, 4, 6]);
    let loads = [l(0, 0), OVER, l(0, 0)];
    let c = counts(&s, &loads, 8000);
    assert_eq!(c[1], 0);
    // with the cursor moved past the chosen entry, 0 and 2 keep roughly 2:6
    let ratio = f64::from(c[2]) / f64::from(c[0]);
    assert!((2.0..=4.5).contains(&ratio), "{c:?}");
}

#[test]
fn wrr_concurrent_exact() {
    let s = build(SchedKind::Wrr, &[3, 2, 1]);
    let total: Vec<u32> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|t| {
                let s = &s;
                sc.spawn(move || counts_from(s, t * 100_000, 6000))
            })
            .collect();
        let r: Vec<Vec<u32>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        (0..3).map(|i| r[0][i] + r[1][i]).collect()
    });
    assert_eq!(total, vec![6000, 4000, 2000]);
}

fn counts_from(s: &Scheduler, base: u32, flows: u32) -> Vec<u32> {
    let mut c = vec![0u32; s.len()];
    for i in 0..flows {
        c[s.select(&flow(base + i), &Idle).unwrap()] += 1;
    }
    c
}

// ---------------------------------------------------------------- lc family, fo

#[test]
fn lc_picks_min_overhead_lowest_index_on_tie() {
    let s = build(SchedKind::Lc, &[1, 100, 1, 1]);
    let f = flow(0);
    // overheads: 2*256+10=522, 2*256+20=532, 1*256+300=556, 2*256+10=522
    assert_eq!(
        s.select(&f, &[l(2, 10), l(2, 20), l(1, 300), l(2, 10)]),
        Some(0)
    );
    assert_eq!(
        s.select(&f, &[l(2, 11), l(2, 20), l(1, 300), l(2, 10)]),
        Some(3)
    );
    assert_eq!(
        s.select(&f, &[OVER, l(2, 20), l(1, 300), l(2, 10)]),
        Some(3)
    );
    assert_eq!(s.select(&f, &[l(0, 0); 4]), Some(0));
}

#[test]
fn wlc_divides_by_weight() {
    let s = build(SchedKind::Wlc, &[1, 2, 4]);
    let f = flow(0);
    // 2560/1, 3840/2=1920, 7680/4=1920 -> tie between 1 and 2 -> 1
    assert_eq!(s.select(&f, &[l(10, 0), l(15, 0), l(30, 0)]), Some(1));
    assert_eq!(s.select(&f, &[l(10, 0), l(15, 1), l(30, 0)]), Some(2));
    assert_eq!(s.select(&f, &[l(0, 0); 3]), Some(0));
    assert_eq!(s.select(&f, &[l(0, 0), l(0, 1), l(0, 1)]), Some(0));
    assert_eq!(s.select(&f, &[l(0, 1), l(0, 1), l(0, 1)]), Some(2));
    // extreme counters do not overflow
    let s = build(SchedKind::Wlc, &[u32::MAX, 1]);
    assert_eq!(
        s.select(&f, &[l(u32::MAX, u32::MAX), l(u32::MAX, u32::MAX)]),
        Some(0)
    );
}

#[test]
fn sed_uses_active_plus_one() {
    let s = build(SchedKind::Sed, &[1, 3]);
    let f = flow(0);
    // (1+1)/1 = 2 vs (2+1)/3 = 1 -> 1; inactive ignored
    assert_eq!(s.select(&f, &[l(1, 0), l(2, 500)]), Some(1));
    // 1/1 vs 3/3: tie -> 0
    assert_eq!(s.select(&f, &[l(0, 0), l(2, 0)]), Some(0));
    assert_eq!(s.select(&f, &[l(0, 0), l(3, 0)]), Some(0));
}

#[test]
fn nq_prefers_idle_then_sed() {
    let s = build(SchedKind::Nq, &[1, 100, 1]);
    let f = flow(0);
    // server 2 idle beats the heavier 1 (whose sed would be lower)
    assert_eq!(s.select(&f, &[l(5, 0), l(1, 0), l(0, 9)]), Some(2));
    // first idle in list order
    assert_eq!(s.select(&f, &[l(5, 0), l(0, 0), l(0, 0)]), Some(1));
    // idle but overloaded does not count
    assert_eq!(
        s.select(
            &f,
            &[
                l(5, 0),
                l(1, 0),
                Load {
                    overloaded: true,
                    ..l(0, 0)
                }
            ]
        ),
        Some(1)
    );
    // no idle -> sed: 6/1, 3/100, 2/1 -> 1
    assert_eq!(s.select(&f, &[l(5, 0), l(2, 0), l(1, 0)]), Some(1));
}

#[test]
fn fo_highest_weight_first_on_ties() {
    let s = build(SchedKind::Fo, &[10, 30, 20, 30]);
    let f = flow(0);
    assert_eq!(s.select(&f, &Idle), Some(1));
    assert_eq!(s.select(&f, &[l(0, 0), OVER, l(0, 0), l(0, 0)]), Some(3));
    assert_eq!(s.select(&f, &[l(0, 0), OVER, l(0, 0), OVER]), Some(2));
    assert_eq!(s.select(&f, &[l(0, 0), OVER, OVER, OVER]), Some(0));
    // load does not matter
    assert_eq!(
        s.select(&f, &[l(0, 0), l(999, 9), l(0, 0), l(0, 0)]),
        Some(1)
    );
}

// ---------------------------------------------------------------- sh / dh

fn by_key(c: &[Candidate], i: usize) -> (IpAddr, u16) {
    (c[i].addr, c[i].port)
}

#[test]
fn sh_stable_and_order_independent() {
    let c = cands(&[1, 2, 3, 4, 5, 6]);
    let mut r = c.clone();
    r.reverse();
    r.swap(1, 4);
    for kind in [SchedKind::Sh, SchedKind::Dh, SchedKind::Mh] {
        let a = Scheduler::build(&cfg(kind), &c).unwrap();
        let a2 = Scheduler::build(&cfg(kind), &c).unwrap();
        let b = Scheduler::build(&cfg(kind), &r).unwrap();
        for i in 0..2000 {
            let f = flow(i);
            let pa = a.select(&f, &Idle).unwrap();
            assert_eq!(a.select(&f, &Idle), Some(pa));
            assert_eq!(a2.select(&f, &Idle), Some(pa));
            assert_eq!(by_key(&r, b.select(&f, &Idle).unwrap()), by_key(&c, pa));
        }
    }
}

#[test]
fn sh_hashes_source_dh_destination() {
    let c = cands(&[1; 16]);
    let sh = Scheduler::build(&cfg(SchedKind::Sh), &c).unwrap();
    let dh = Scheduler::build(&cfg(SchedKind::Dh), &c).unwrap();
    let shp = Scheduler::build(
        &SchedConfig {
            kind: SchedKind::Sh,
            flags: SchedFlags {
                fallback: false,
                port: true,
            },
            ..SchedConfig::default()
        },
        &c,
    )
    .unwrap();
    let base = flow(1);
    let mut shp_picks = std::collections::HashSet::new();
    for p in 0..200u16 {
        let mut f = base;
        f.src_port = 1000 + p;
        f.dst_port = p;
        assert_eq!(sh.select(&f, &Idle), sh.select(&base, &Idle));
        assert_eq!(dh.select(&f, &Idle), dh.select(&base, &Idle));
        shp_picks.insert(shp.select(&f, &Idle).unwrap());
        // a protocol without ports hashes port 0
        f.protocol = 1;
        let mut g = f;
        g.src_port = 7;
        assert_eq!(shp.select(&f, &Idle), shp.select(&g, &Idle));
    }
    assert!(shp_picks.len() > 10, "port flag should spread one source");
    // dh follows the destination
    let picks: std::collections::HashSet<usize> = (0..200u32)
        .map(|i| {
            let mut f = base;
            f.dst = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16));
            dh.select(&f, &Idle).unwrap()
        })
        .collect();
    assert!(picks.len() > 10);
}

#[test]
fn sh_bucket_shares_follow_weights() {
    let w = [1, 2, 3, 50, 100, 7];
    let s = build(SchedKind::Sh, &w);
    let t = s.hash_table().unwrap();
    assert_eq!(t.slots().len(), 1543); // next_prime(6 * 256)
    let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
    for (i, &got) in t.slot_counts().iter().enumerate() {
        let ideal = 1543.0 * f64::from(w[i]) / total;
        assert!(
            (f64::from(got) - ideal).abs() <= 1.0,
            "{i}: {got} vs {ideal}"
        );
    }
    assert_eq!(
        build(SchedKind::Sh, &[1])
            .hash_table()
            .unwrap()
            .slots()
            .len(),
        1031
    );
    assert_eq!(
        build(SchedKind::Dh, &[1; 300])
            .hash_table()
            .unwrap()
            .slots()
            .len(),
        65537
    );
}

#[test]
fn sh_fallback() {
    let c = cands(&[1, 1, 1, 1]);
    let mk = |fallback| {
        Scheduler::build(
            &SchedConfig {
                kind: SchedKind::Sh,
                flags: SchedFlags {
                    fallback,
                    port: false,
                },
                ..SchedConfig::default()
            },
            &c,
        )
        .unwrap()
    };
    let (plain, fb) = (mk(false), mk(true));
    let mut seen_none = 0;
    for i in 0..400 {
        let f = flow(i);
        let p = plain.select(&f, &Idle).unwrap();
        let mut loads = [l(0, 0); 4];
        loads[p] = OVER;
        if plain.select(&f, &loads).is_none() {
            seen_none += 1;
        }
        let q = fb.select(&f, &loads).unwrap();
        assert_ne!(q, p);
        // only one available: fallback must find it
        let mut only = [OVER; 4];
        only[(p + 1) % 4] = l(0, 0);
        assert_eq!(fb.select(&f, &only), Some((p + 1) % 4));
    }
    assert_eq!(seen_none, 400);
}

#[test]
fn dh_ignores_fallback_flag() {
    let s = Scheduler::build(
        &SchedConfig {
            kind: SchedKind::Dh,
            flags: SchedFlags {
                fallback: true,
                port: true,
            },
            ..SchedConfig::default()
        },
        &cands(&[1, 1]),
    )
    .unwrap();
    let f = flow(3);
    let p = s.select(&f, &Idle).unwrap();
    let mut loads = [l(0, 0); 2];
    loads[p] = OVER;
    assert_eq!(s.select(&f, &loads), None);
}

// ---------------------------------------------------------------- mh

fn mh_cfg(size: u32, seed: u64) -> SchedConfig {
    SchedConfig {
        kind: SchedKind::Mh,
        mh_table_size: size,
        hash_seed: seed,
        ..SchedConfig::default()
    }
}

#[test]
fn mh_fallback_spreads_and_finds_last_server() {
    let c = cands(&[1; 10]);
    let s = Scheduler::build(
        &SchedConfig {
            flags: SchedFlags {
                fallback: true,
                port: false,
            },
            ..mh_cfg(65537, 1)
        },
        &c,
    )
    .unwrap();
    let mut loads = [l(0, 0); 10];
    loads[3] = OVER;
    let mut moved = HashMap::new();
    for i in 0..5000 {
        let f = flow(i);
        let p = s.select(&f, &Idle).unwrap();
        let q = s.select(&f, &loads).unwrap();
        if p == 3 {
            *moved.entry(q).or_insert(0) += 1;
        } else {
            assert_eq!(p, q, "flows of available servers must not move");
        }
    }
    assert!(
        moved.len() >= 8,
        "rehash spreads over the others: {moved:?}"
    );
    let mut only = [OVER; 10];
    only[7] = l(0, 0);
    for i in 0..100 {
        assert_eq!(s.select(&flow(i), &only), Some(7));
    }
}

#[test]
fn mh_select_distribution_follows_weights() {
    let w = [1, 2, 3, 4];
    let s = Scheduler::build(&mh_cfg(65537, 9), &cands(&w)).unwrap();
    let c = counts(&s, &Idle, 100_000);
    for (i, &x) in c.iter().enumerate() {
        let ideal = 100_000.0 * f64::from(w[i]) / 10.0;
        assert!((f64::from(x) - ideal).abs() / ideal < 0.05, "{c:?}");
    }
}

/// Table as (addr, port) per slot, to compare across candidate lists.
fn keyed_table(s: &Scheduler, c: &[Candidate]) -> Vec<(IpAddr, u16)> {
    s.hash_table()
        .unwrap()
        .slots()
        .iter()
        .map(|&i| by_key(c, usize::from(i)))
        .collect()
}

fn arb_weights() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(1u32..=100, 2..=50)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn mh_no_holes(w in arb_weights(), seed in any::<u64>(), big in any::<bool>()) {
        let size = if big { 65537 } else { 4099 };
        let s = Scheduler::build(&mh_cfg(size, seed), &cands(&w)).unwrap();
        let t = s.hash_table().unwrap();
        prop_assert_eq!(t.slots().len(), size as usize);
        prop_assert!(t.slots().iter().all(|&i| usize::from(i) < w.len()));
        // every candidate owns at least one slot
        prop_assert!(t.slot_counts().iter().all(|&c| c >= 1));
    }

    #[test]
    fn mh_deterministic_and_order_independent(
        w in arb_weights(), seed in any::<u64>(), rot in any::<prop::sample::Index>()
    ) {
        let c = cands(&w);
        let a = Scheduler::build(&mh_cfg(65537, seed), &c).unwrap();
        let b = Scheduler::build(&mh_cfg(65537, seed), &c).unwrap();
        prop_assert_eq!(a.hash_table(), b.hash_table());
        let mut r = c.clone();
        r.rotate_left(rot.index(c.len()));
        r.reverse();
        let d = Scheduler::build(&mh_cfg(65537, seed), &r).unwrap();
        prop_assert!(keyed_table(&a, &c) == keyed_table(&d, &r));
    }

    /// Shares: less than 1 slot from `M * w / W` (so within 1 percentage point, and
    /// within 1% relative for ideal shares of >= 100 slots).
    #[test]
    fn mh_shares_follow_weights(w in arb_weights(), seed in any::<u64>()) {
        let m = 65537u32;
        let s = Scheduler::build(&mh_cfg(m, seed), &cands(&w)).unwrap();
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        for (i, &got) in s.hash_table().unwrap().slot_counts().iter().enumerate() {
            let ideal = f64::from(m) * f64::from(w[i]) / total;
            let got = f64::from(got);
            // every ideal share here is >= 13 slots, so the quota bound is < 1
            prop_assert!((got - ideal).abs() < 1.0, "i={} got={} ideal={}", i, got, ideal);
            prop_assert!((got / f64::from(m) - ideal / f64::from(m)).abs() <= 0.01);
            if ideal >= 100.0 {
                prop_assert!((got - ideal).abs() / ideal <= 0.01);
            }
        }
    }

    /// Removing candidate j changes at most its share + DISRUPTION_EPS of the
    /// slots (ideal: exactly its share).
    #[test]
    fn mh_minimal_disruption(
        w in arb_weights(), seed in any::<u64>(), j in any::<prop::sample::Index>(), equal in any::<bool>()
    ) {
        let w: Vec<u32> = if equal { vec![1; w.len()] } else { w };
        let c = cands(&w);
        let j = j.index(c.len());
        let mut r = c.clone();
        r.remove(j);
        let a = keyed_table(&Scheduler::build(&mh_cfg(65537, seed), &c).unwrap(), &c);
        let b = keyed_table(&Scheduler::build(&mh_cfg(65537, seed), &r).unwrap(), &r);
        let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64;
        let share = f64::from(w[j]) / w.iter().map(|&x| f64::from(x)).sum::<f64>();
        prop_assert!(changed <= share + DISRUPTION_EPS, "changed={} share={} n={}", changed, share, w.len());
    }
}

/// Extra fraction of the table that may move when one backend is removed.
const DISRUPTION_EPS: f64 = 0.02;

#[test]
#[ignore = "prints Maglev disruption statistics; run by hand with --ignored --nocapture"]
fn mh_disruption_stats() {
    for n in [2usize, 3, 5, 10, 20, 50, 100, 1000] {
        let mut worst = 0f64;
        let mut sum = 0f64;
        let trials = if n >= 100 { 3 } else { 20 };
        for seed in 0..trials {
            let c = cands(&vec![1; n]);
            let j = (seed as usize * 7) % n;
            let mut r = c.clone();
            r.remove(j);
            let a = keyed_table(&Scheduler::build(&mh_cfg(65537, seed), &c).unwrap(), &c);
            let b = keyed_table(&Scheduler::build(&mh_cfg(65537, seed), &r).unwrap(), &r);
            let ch = a.iter().zip(&b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64;
            let ex = ch - 1.0 / n as f64;
            worst = worst.max(ex);
            sum += ex;
        }
        println!(
            "n={n} mean_excess={:.4} worst_excess={:.4}",
            sum / trials as f64,
            worst
        );
    }
}
