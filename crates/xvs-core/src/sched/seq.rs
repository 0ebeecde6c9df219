//! Weighted quotas, smooth weighted sequences and small number helpers,
//! used at build only.
//!
//! Layer: pure core, build side (control thread; allocates). Nothing here is
//! called on the data path.
//!
//! # Quotas
//!
//! [`quotas`] splits `m` table entries among candidates in proportion to
//! their weights by largest remainder (Hamilton): `|q_i - m w_i / W| < 1` and
//! `sum(q) == m`. A zero quota is then raised to 1 (like IPVS mh's
//! `turns ? : 1`), taken from the largest quota, so every candidate keeps at
//! least one entry (callers guarantee `m >= 2n`).
//!
//! # Smooth sequence
//!
//! [`spread`] lays out `sum(q)` entries where candidate `i` appears exactly
//! `q_i` times, its `k`-th appearance at virtual time `(k + 1/2) / q_i` of the
//! sequence (the Webster / Sainte-Laguë "mid-point" order, the same
//! smoothness as nginx's smooth weighted round robin): entries are ordered by
//! that time quantized to `1 / m` (`slot = floor((2k + 1) m / (2 q_i))`, in
//! integers), ties by lower index. `{5, 1, 1}` gives `a a a b c a a`;
//! `{3, 2}` gives `a b a b a`. Counting sort over the `m` time slots with an
//! incremental (division-free) walk per candidate: O(m + n) time and memory,
//! no heap and no division in the loops.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Largest-remainder integer shares of `m` (see module doc). `weights >= 1`.
pub(crate) fn quotas(weights: &[u32], m: u32) -> Vec<u32> {
    let n = weights.len();
    if n == 0 {
        return Vec::new();
    }
    let total: u128 = weights.iter().map(|&w| u128::from(w.max(1))).sum();
    let m128 = u128::from(m);
    let mut q: Vec<u32> = Vec::with_capacity(n);
    let mut rem: Vec<(u128, usize)> = Vec::with_capacity(n);
    for (i, &w) in weights.iter().enumerate() {
        let x = m128 * u128::from(w.max(1));
        q.push((x / total) as u32);
        rem.push((x % total, i));
    }
    let given: u64 = q.iter().map(|&x| u64::from(x)).sum();
    let left = (u64::from(m) - given) as usize; // < n
    rem.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in &rem[..left] {
        q[i] += 1;
    }
    if q.contains(&0) {
        let mut heap: BinaryHeap<(u32, Reverse<usize>)> = q
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, Reverse(i)))
            .collect();
        for i in 0..n {
            if q[i] == 0 {
                let Some(mut top) = heap.peek_mut() else {
                    break;
                };
                let donor = top.1.0;
                if q[donor] < 2 {
                    break; // m < 2n: cannot give everyone an entry
                }
                q[donor] -= 1;
                top.0 -= 1;
                drop(top);
                q[i] = 1;
            }
        }
    }
    q
}

/// Calls `f(slot)` for the `q` appearances of one candidate in a sequence of
/// `m` entries: `slot_k = floor((2k + 1) m / (2q))`, without division in the
/// loop. Requires `1 <= q <= m`; every slot is `< m`.
#[inline]
fn walk(q: u64, m: u64, mut f: impl FnMut(usize)) {
    let d = 2 * q;
    let (mut slot, mut r) = (m / d, m % d);
    let (dq, dr) = (m / q, 2 * (m % q)); // 2m / d, 2m % d
    for _ in 0..q {
        f(slot as usize);
        slot += dq;
        r += dr;
        if r >= d {
            r -= d;
            slot += 1;
        }
    }
}

/// The smooth sequence of candidate indices for `quotas` (see module doc).
/// Length `sum(quotas)`; indices must fit u16.
pub(crate) fn spread(quotas: &[u32]) -> Vec<u16> {
    let m: u64 = quotas.iter().map(|&q| u64::from(q)).sum();
    let len = m as usize;
    if len == 0 {
        return Vec::new();
    }
    let mut start = vec![0u32; len + 1];
    for &q in quotas.iter().filter(|&&q| q > 0) {
        walk(u64::from(q), m, |s| start[s + 1] += 1);
    }
    for s in 1..=len {
        start[s] += start[s - 1];
    }
    let mut out = vec![0u16; len];
    for (i, &q) in quotas.iter().enumerate().filter(|(_, q)| **q > 0) {
        walk(u64::from(q), m, |s| {
            out[start[s] as usize] = i as u16;
            start[s] += 1;
        });
    }
    out
}

pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Trial-division primality test; O(sqrt(n)), fine for n < 2^32 at build time.
pub(crate) fn is_prime(n: u32) -> bool {
    let n = u64::from(n);
    if n < 2 {
        return false;
    }
    if n % 2 == 0 {
        return n == 2;
    }
    let mut d = 3u64;
    while d * d <= n {
        if n % d == 0 {
            return false;
        }
        d += 2;
    }
    true
}

/// Smallest prime >= n (n small enough that one exists below 2^32).
pub(crate) fn next_prime(mut n: u32) -> u32 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_smooth_and_exact() {
        assert_eq!(spread(&[5, 1, 1]), vec![0, 0, 0, 1, 2, 0, 0]);
        assert_eq!(spread(&[3, 2]), vec![0, 1, 0, 1, 0]);
        assert_eq!(spread(&[1]), vec![0]);
        assert_eq!(spread(&[0, 2]), vec![1, 1]);
        assert_eq!(spread(&[]), Vec::<u16>::new());
        let q = [7u32, 13, 1, 100, 42, 1];
        let s = spread(&q);
        let mut c = [0u32; 6];
        s.iter().for_each(|&i| c[usize::from(i)] += 1);
        assert_eq!(c, q);
    }

    #[test]
    fn quotas_are_largest_remainder() {
        let w = [7u32, 13, 1, 100, 42, 1];
        let m = 1009;
        let q = quotas(&w, m);
        assert_eq!(q.iter().sum::<u32>(), m);
        let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
        for (i, &qi) in q.iter().enumerate() {
            assert!((f64::from(qi) - f64::from(m) * f64::from(w[i]) / total).abs() < 1.0);
        }
    }

    #[test]
    fn quotas_raise_zero_to_one() {
        assert_eq!(quotas(&[1000, 1, 1000], 100), vec![49, 1, 50]);
        assert_eq!(quotas(&[], 7), Vec::<u32>::new());
        assert_eq!(quotas(&[5], 7), vec![7]);
    }

    #[test]
    fn primes() {
        assert!(is_prime(2) && is_prime(3) && is_prime(65537) && is_prime(251));
        assert!(!is_prime(0) && !is_prime(1) && !is_prime(65536) && !is_prime(65535));
        assert_eq!(next_prime(65536), 65537);
        assert_eq!(next_prime(1024), 1031);
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(0, 5), 5);
    }
}
