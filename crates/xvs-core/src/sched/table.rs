//! Hashed lookup tables shared by sh, dh and mh, and the sh/dh bucket fill.
//!
//! Layer: pure core. [`canonical_order`] and [`bucket_table`] are build
//! (control side, allocate); [`HashTable::select`] is data path (one SipHash
//! and one table read per flow; no allocation, no lock).
//!
//! # Invariants
//!
//! * Every slot holds a valid candidate index (`< n`); the table is empty iff
//!   there is no candidate.
//! * The table is a function of the *set* of candidates (and the seed):
//!   candidates are first put in a canonical order, sorted by
//!   `hash_backend(seed, addr, port, SALT_ORDER)` (then `(addr, port)`,
//!   which are distinct), the table is built over that order and its entries
//!   mapped back to the caller's indices. Two directors with the same config
//!   and servers listed in a different order pick the same server.
//! * Fallback (sh/mh with the `fallback` flag) is bounded: the pick for
//!   `hash_addr` is tried, then up to [`FALLBACK_REHASHES`] rehashes with
//!   salts `SALT_FLOW + 1, + 2, ...` (spreading the flows of an unavailable
//!   server over the others in proportion to their table shares, like the
//!   IPVS rehash with a growing offset), then a linear scan of the remaining
//!   candidates in canonical order starting after the original pick, so an
//!   available server is found if one exists: at most `8 + n` load reads.
//!   (IPVS probes up to the whole table size; this bound is far smaller.)
//!
//! # sh/dh bucket table
//!
//! IPVS uses 256 buckets (CONFIG_IP_VS_SH_TAB_BITS = 8), filled with each
//! server repeated `weight` times in list order; that quantizes shares to
//! 1/256, starves servers beyond a weight sum of 256, and depends on list
//! order. Here the table has
//! `B = next_prime(max(clamp(256 * n, 1024, 65536), 2 * n))` buckets (256
//! per server up to 65537 buckets = 128 KiB of u16; at least 2 per server).
//! Each server holds its largest-remainder quota of `B * w_i / W` buckets
//! (error < 1 bucket, i.e. < 1/B of the traffic: 0.0015 percentage points at
//! 65537; at least one bucket each), laid out in the smooth weighted order
//! of `seq::spread` so neighbouring buckets belong to different servers. A
//! prime size is not needed for SipHash output (uniform 64 bits; the modulo
//! bias is about B / 2^64) but costs nothing. sh/dh are not consistent
//! hashing (IPVS's are not either): a change of the server set re-spreads
//! the table; use mh for that.

use super::hash::{SALT_FLOW, SALT_ORDER, hash_addr, hash_addr_salted, hash_backend};
use super::seq::{next_prime, quotas, spread};
use super::{Candidate, FALLBACK_REHASHES, LoadView};
use std::net::IpAddr;

/// A lookup table `slot -> candidate index`, plus the canonical ring used by
/// the bounded fallback scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashTable {
    slots: Box<[u16]>,
    /// Caller indices in canonical order.
    ring: Box<[u16]>,
    /// Caller index -> position in `ring`.
    ring_pos: Box<[u16]>,
}

/// Caller indices sorted into the canonical, order-independent order.
pub(crate) fn canonical_order(seed: u64, candidates: &[Candidate]) -> Vec<usize> {
    let mut keyed: Vec<(u64, IpAddr, u16, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                hash_backend(seed, &c.addr, c.port, SALT_ORDER),
                c.addr,
                c.port,
                i,
            )
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|k| k.3).collect()
}

impl HashTable {
    /// Wraps `slots` holding *canonical positions* (indices into `order`).
    pub(crate) fn from_canonical(order: &[usize], mut slots: Vec<u16>) -> HashTable {
        for s in &mut slots {
            *s = order[usize::from(*s)] as u16;
        }
        let mut ring_pos = vec![0u16; order.len()];
        for (p, &i) in order.iter().enumerate() {
            ring_pos[i] = p as u16;
        }
        HashTable {
            slots: slots.into_boxed_slice(),
            ring: order.iter().map(|&i| i as u16).collect(),
            ring_pos: ring_pos.into_boxed_slice(),
        }
    }

    /// The table: slot -> caller's candidate index.
    pub fn slots(&self) -> &[u16] {
        &self.slots
    }

    /// Number of slots owned by each candidate (build-side helper for tests
    /// and diagnostics; allocates).
    pub fn slot_counts(&self) -> Vec<u32> {
        let mut c = vec![0u32; self.ring.len()];
        for &s in self.slots.iter() {
            c[usize::from(s)] += 1;
        }
        c
    }

    #[inline]
    fn slot(&self, h: u64) -> usize {
        usize::from(self.slots[(h % self.slots.len() as u64) as usize])
    }

    /// Data path: candidate for the flow key `(addr, port)`.
    #[inline]
    pub fn select<L: LoadView>(
        &self,
        seed: u64,
        addr: &IpAddr,
        port: Option<u16>,
        fallback: bool,
        loads: &L,
    ) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let pick = self.slot(hash_addr(seed, addr, port));
        if !loads.load(pick).overloaded {
            return Some(pick);
        }
        if !fallback {
            return None;
        }
        for a in 1..=FALLBACK_REHASHES {
            let c = self.slot(hash_addr_salted(
                seed,
                SALT_FLOW.wrapping_add(a),
                addr,
                port,
            ));
            if !loads.load(c).overloaded {
                return Some(c);
            }
        }
        let n = self.ring.len();
        let p = usize::from(self.ring_pos[pick]);
        (1..n)
            .map(|j| usize::from(self.ring[(p + j) % n]))
            .find(|&i| !loads.load(i).overloaded)
    }
}

/// Bucket count for sh/dh with `n` candidates (0 if none).
pub(crate) fn bucket_count(n: usize) -> u32 {
    if n == 0 {
        return 0;
    }
    // n <= MAX_CANDIDATES, so this stays far below u32::MAX.
    let target = n.saturating_mul(256).clamp(1024, 65536).max(2 * n);
    next_prime(target as u32)
}

/// Build: the sh/dh weighted bucket table (see module doc).
pub(crate) fn bucket_table(seed: u64, candidates: &[Candidate]) -> HashTable {
    let order = canonical_order(seed, candidates);
    let b = bucket_count(candidates.len()) as usize;
    let weights: Vec<u32> = order.iter().map(|&i| candidates[i].weight).collect();
    let slots = spread(&quotas(&weights, b as u32));
    HashTable::from_canonical(&order, slots)
}
