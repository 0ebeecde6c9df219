//! Least-connection family (lc, wlc, sed, nq) and weighted failover (fo).
//!
//! Layer: pure core. [`fo_order`] is build (control side, allocates); the
//! `select_*` functions are data path: one pass over the candidates reading
//! their live counters, no allocation, no lock, O(n) like IPVS.
//!
//! # Invariants (as in net/netfilter/ipvs/ip_vs_{lc,wlc,sed,nq,fo}.c)
//!
//! * Overloaded candidates are skipped; `None` iff all are (or none exist).
//! * Ties go to the lowest index (IPVS keeps the first in list order: it
//!   replaces its pick only on a strict improvement).
//! * Overheads: lc/wlc `active * 256 + inactive`, sed/nq `active + 1`.
//!   wlc/sed/nq compare `oh_a / w_a < oh_b / w_b` as `oh_a * w_b < oh_b * w_a`
//!   (no division). Computed in u128: `oh < 2^41` and `w < 2^32`, so the
//!   products (< 2^73) would overflow the u64 (IPVS: s64) arithmetic for
//!   extreme counters; u128 cannot.
//! * nq: the first idle (`active == 0`) available server in list order wins
//!   at once (IPVS has no rotation for nq: "rotation order" is list order);
//!   otherwise sed.
//! * fo: the available server with the highest weight, first on ties.

use super::{Candidate, Load, LoadView};

#[inline]
fn lc_overhead(l: Load) -> u128 {
    (u128::from(l.active) << 8) + u128::from(l.inactive)
}

#[inline]
fn sed_overhead(l: Load) -> u128 {
    u128::from(l.active) + 1
}

/// Generic "min of overhead / weight" scan; `weights = None` means all 1.
/// Keeps the first strict minimum (lowest index on ties).
#[inline(always)]
fn min_weighted<L: LoadView>(
    n: usize,
    weights: Option<&[u32]>,
    loads: &L,
    overhead: impl Fn(Load) -> u128,
) -> Option<usize> {
    let mut best = None;
    let (mut boh, mut bw) = (0u128, 1u128);
    for i in 0..n {
        let l = loads.load(i);
        if l.overloaded {
            continue;
        }
        let oh = overhead(l);
        let w = weights.map_or(1, |w| u128::from(w[i]));
        if best.is_none() || oh * bw < boh * w {
            (best, boh, bw) = (Some(i), oh, w);
        }
    }
    best
}

/// lc: min `active * 256 + inactive`.
#[inline]
pub(crate) fn select_lc<L: LoadView>(n: usize, loads: &L) -> Option<usize> {
    min_weighted(n, None, loads, lc_overhead)
}

/// wlc: min `(active * 256 + inactive) / weight`.
#[inline]
pub(crate) fn select_wlc<L: LoadView>(weights: &[u32], loads: &L) -> Option<usize> {
    min_weighted(weights.len(), Some(weights), loads, lc_overhead)
}

/// sed: min `(active + 1) / weight`.
#[inline]
pub(crate) fn select_sed<L: LoadView>(weights: &[u32], loads: &L) -> Option<usize> {
    min_weighted(weights.len(), Some(weights), loads, sed_overhead)
}

/// nq: first available idle server, else sed. Single pass, as in IPVS.
#[inline]
pub(crate) fn select_nq<L: LoadView>(weights: &[u32], loads: &L) -> Option<usize> {
    let mut best = None;
    let (mut boh, mut bw) = (0u128, 1u128);
    for (i, &w) in weights.iter().enumerate() {
        let l = loads.load(i);
        if l.overloaded {
            continue;
        }
        if l.active == 0 {
            return Some(i);
        }
        let (oh, w) = (sed_overhead(l), u128::from(w));
        if best.is_none() || oh * bw < boh * w {
            (best, boh, bw) = (Some(i), oh, w);
        }
    }
    best
}

/// Build: candidate indices by weight descending, lowest index first on ties.
pub(crate) fn fo_order(candidates: &[Candidate]) -> Box<[u16]> {
    let mut v: Vec<u16> = (0..candidates.len()).map(|i| i as u16).collect();
    v.sort_by_key(|&i| std::cmp::Reverse(candidates[usize::from(i)].weight)); // stable
    v.into_boxed_slice()
}

/// fo: first available in [`fo_order`].
#[inline]
pub(crate) fn select_fo<L: LoadView>(by_weight: &[u16], loads: &L) -> Option<usize> {
    by_weight
        .iter()
        .map(|&i| usize::from(i))
        .find(|&i| !loads.load(i).overloaded)
}
