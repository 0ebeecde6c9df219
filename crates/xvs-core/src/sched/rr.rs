//! Round robin (rr) and weighted round robin (wrr).
//!
//! Layer: pure core. [`wrr_sequence`] is build (control side, allocates);
//! [`select_rr`] / [`select_wrr`] are data path (no allocation, no lock: one
//! `Relaxed` atomic add on a shared cursor, two when probing past overloaded
//! servers).
//!
//! # Invariants
//!
//! * The wrr sequence has length `sum(w') / gcd(w')` (<= [`WRR_MAX_SEQ`]) and
//!   candidate `i` appears exactly `w'_i / gcd` times, where `w' = w` unless
//!   scaled (below). With no overloaded server, any `len` consecutive selects
//!   (single-threaded, or concurrent: every select takes a distinct cursor
//!   value) hit each candidate exactly that many times.
//! * A probe never visits more than `n` (rr) or `len` (wrr) entries.
//!
//! # wrr algorithm
//!
//! Not IPVS's gcd stepping (which serves the heaviest server in a burst:
//! `{a:5, b:1, c:1}` gives `a a a a a b c`) but the smooth mid-point sequence
//! of `seq::spread` (appearance `k` of server `i` at time
//! `(k + 1/2) / w_i` of the period): `{5, 1, 1}` gives `a a a b c a a`,
//! `{3, 2}` gives `a b a b a`. Same per-period counts and a smoothness
//! comparable to nginx's smooth weighted round robin, built in O(len + n).
//!
//! If `sum(w) / gcd(w)` exceeds [`WRR_MAX_SEQ`] (65536), weights are scaled
//! down proportionally: `w'_i = max(1, floor(w_i * (65536 - n) / sum(w)))`, so
//! that `sum(w') <= 65536`. Each share then deviates from the exact one by
//! less than `1 / (65536 - n)` of the traffic (absolute), plus the clamp to 1
//! that keeps tiny-weight servers in the rotation.
//!
//! Overloaded servers are skipped (probing onward in sequence order); the
//! cursor is then advanced past the chosen entry, like IPVS moves its
//! pointer, so the next flow starts after it.

use super::seq::{gcd, spread};
use super::{Candidate, LoadView, WRR_MAX_SEQ};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Weights as used by the sequence: reduced by their gcd and scaled to fit.
pub(crate) fn wrr_weights(candidates: &[Candidate]) -> Vec<u32> {
    let sum: u64 = candidates.iter().map(|c| u64::from(c.weight)).sum();
    let g = candidates
        .iter()
        .fold(0u64, |g, c| gcd(g, u64::from(c.weight)))
        .max(1);
    if sum / g <= WRR_MAX_SEQ as u64 {
        return candidates
            .iter()
            .map(|c| (u64::from(c.weight) / g) as u32)
            .collect();
    }
    // n <= MAX_CANDIDATES = 65535 < WRR_MAX_SEQ, so budget >= 1.
    let budget = (WRR_MAX_SEQ - candidates.len()) as u64;
    let w: Vec<u32> = candidates
        .iter()
        .map(|c| ((u64::from(c.weight) * budget / sum).max(1)) as u32)
        .collect();
    let g = w.iter().fold(0u64, |g, &x| gcd(g, u64::from(x))).max(1);
    w.into_iter().map(|x| (u64::from(x) / g) as u32).collect()
}

/// Build: the smooth weighted sequence of candidate indices (see module doc).
pub(crate) fn wrr_sequence(candidates: &[Candidate]) -> Box<[u16]> {
    spread(&wrr_weights(candidates)).into_boxed_slice()
}

/// Data path: next available candidate in rotation order.
#[inline]
pub(crate) fn select_rr<L: LoadView>(cursor: &AtomicUsize, n: usize, loads: &L) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Relaxed) % n;
    for j in 0..n {
        let mut i = start + j;
        if i >= n {
            i -= n;
        }
        if !loads.load(i).overloaded {
            if j > 0 {
                cursor.fetch_add(j, Relaxed);
            }
            return Some(i);
        }
    }
    None
}

/// Data path: `seq[cursor++ % len]`, probing onward past overloaded entries.
#[inline]
pub(crate) fn select_wrr<L: LoadView>(
    cursor: &AtomicUsize,
    seq: &[u16],
    loads: &L,
) -> Option<usize> {
    let len = seq.len();
    if len == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Relaxed) % len;
    for j in 0..len {
        let mut p = start + j;
        if p >= len {
            p -= len;
        }
        let i = usize::from(seq[p]);
        if !loads.load(i).overloaded {
            if j > 0 {
                cursor.fetch_add(j, Relaxed);
            }
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn cands(w: &[u32]) -> Vec<Candidate> {
        w.iter()
            .enumerate()
            .map(|(i, &weight)| Candidate {
                addr: IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)),
                port: 80,
                weight,
            })
            .collect()
    }

    #[test]
    fn sequence_exact_counts_reduced_by_gcd() {
        let seq = wrr_sequence(&cands(&[40, 20, 20, 100]));
        assert_eq!(seq.len(), 9);
        let mut c = [0; 4];
        seq.iter().for_each(|&i| c[usize::from(i)] += 1);
        assert_eq!(c, [2, 1, 1, 5]);
    }

    #[test]
    fn sequence_scaled_when_too_long() {
        let w = [1_000_000u32, 3_000_000, 1, 999_983];
        let ww = wrr_weights(&cands(&w));
        let sum: u32 = ww.iter().sum();
        assert!(sum as usize <= WRR_MAX_SEQ);
        assert_eq!(ww[2], 1);
        // proportions kept within 1 / (budget) absolute
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        for (a, b) in w.iter().zip(&ww) {
            let d = f64::from(*a) / total - f64::from(*b) / f64::from(sum);
            assert!(d.abs() < 2.0 / (WRR_MAX_SEQ - 4) as f64, "{d}");
        }
        assert_eq!(wrr_sequence(&cands(&w)).len(), sum as usize);
    }
}
