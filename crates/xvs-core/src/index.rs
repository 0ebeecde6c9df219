//! A fixed-capacity hash index from 64-bit key hashes to 32-bit slot numbers, in
//! buckets of one cache line — the index of the shared tables (connections,
//! persistence templates, fragments). Layer: pure core data structure, used under its
//! owner's shard lock.
//!
//! Invariants:
//! - the bucket array is allocated once, at construction; nothing allocates later;
//! - a bucket holds [`WAYS`] entries, each a 32-bit tag (the hash's low half) and a
//!   value ([`EMPTY`] = unused): a lookup reads one cache line per bucket and calls
//!   the caller's `eq` only on a tag match;
//! - an entry sits in its home bucket (hash bits 16–47 scaled to the bucket count: any
//!   count works, no power-of-two rounding) or, when that is full, in
//!   the first bucket after it with room (linear probing, wrapping); every full bucket
//!   passed on the way counts the entry in its `overflow`, so a lookup stops at the
//!   first bucket whose `overflow` is 0, and removal undoes the counts on the same
//!   path: no tombstones, no rehash, no probe sequence longer than the overflow says;
//! - the home bucket's address is known from the hash alone ([`BucketMap`]), so a
//!   worker can start loading it before it takes the owner's lock.

/// Entries per bucket (7 × 8 bytes + an 8-byte header = 64 bytes).
pub const WAYS: usize = 7;

/// The value of an unused entry (so at most `u32::MAX` values: slot numbers).
pub const EMPTY: u32 = u32::MAX;

/// Entries provisioned per bucket: the index is sized so that it is at most this
/// full on average (5 of 7: overflow stays rare, memory stays ≈ 13 bytes per entry).
const LOAD: usize = 5;

#[derive(Clone, Copy, Debug)]
#[repr(C, align(64))]
struct Bucket {
    tags: [u32; WAYS],
    values: [u32; WAYS],
    /// Entries whose probe passed this bucket because it was full.
    overflow: u32,
    _pad: u32,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

const EMPTY_BUCKET: Bucket = Bucket {
    tags: [0; WAYS],
    values: [EMPTY; WAYS],
    overflow: 0,
    _pad: 0,
};

/// The index (see the module invariants).
#[derive(Debug)]
pub struct Index {
    buckets: Box<[Bucket]>,
    len: usize,
}

/// Where an index's buckets are in memory: enough to compute a home bucket's address
/// without the lock that guards the index (an address for a prefetch hint, never
/// dereferenced by this crate). Valid for the index's lifetime: its buckets never move.
#[derive(Clone, Copy, Debug)]
pub struct BucketMap {
    base: usize,
    buckets: usize,
}

impl BucketMap {
    /// Address of the home bucket of `hash`.
    #[inline]
    pub fn bucket_addr(&self, hash: u64) -> usize {
        self.base + home(hash, self.buckets) * std::mem::size_of::<Bucket>()
    }
}

/// The home bucket of `hash` among `n` (≤ 2^32): hash bits 16–47 times `n`, over 2^32.
/// (Not the top bits: the sharded tables pick the shard with those, so within a
/// shard they are all alike.)
#[inline]
fn home(hash: u64, n: usize) -> usize {
    ((u64::from((hash >> 16) as u32) * n as u64) >> 32) as usize
}

#[inline]
fn tag(hash: u64) -> u32 {
    hash as u32
}

impl Index {
    /// An index for `entries` values, provisioned at [`LOAD`] per bucket (it can hold
    /// 7/5 as many).
    pub fn with_capacity(entries: usize) -> Index {
        let n = entries.div_ceil(LOAD).clamp(1, 1 << 32);
        Index {
            buckets: vec![EMPTY_BUCKET; n].into_boxed_slice(),
            len: 0,
        }
    }

    /// Where the buckets are (for prefetching without the lock).
    pub fn map(&self) -> BucketMap {
        BucketMap {
            base: self.buckets.as_ptr() as usize,
            buckets: self.buckets.len(),
        }
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        home(hash, self.buckets.len())
    }

    /// The bucket after `b` (wrapping).
    #[inline]
    fn next(&self, b: usize) -> usize {
        if b + 1 == self.buckets.len() {
            0
        } else {
            b + 1
        }
    }

    /// Values stored.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Address of the bucket holding `value` (tests: where an entry really is).
    #[cfg(test)]
    pub(crate) fn bucket_addr_of(&self, value: u32) -> Option<usize> {
        let b = self.buckets.iter().find(|b| b.values.contains(&value))?;
        Some(std::ptr::from_ref(b) as usize)
    }

    /// The first value stored under `hash` for which `eq` holds.
    #[inline]
    pub fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag(hash);
        let mut b = self.home(hash);
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            // All seven tags compared at once (branch-free, vectorised), then only the
            // matches looked at.
            let mut hits = bucket
                .tags
                .iter()
                .enumerate()
                .fold(0u32, |m, (i, &t)| m | (u32::from(t == tag) << i));
            while hits != 0 {
                let v = bucket.values[hits.trailing_zeros() as usize];
                if v != EMPTY && eq(v) {
                    return Some(v);
                }
                hits &= hits - 1;
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = self.next(b);
        }
        None
    }

    /// Store `value` under `hash` (the caller knows it is not stored yet). Returns
    /// false, storing nothing, when every entry is taken.
    pub fn insert(&mut self, hash: u64, value: u32) -> bool {
        debug_assert_ne!(value, EMPTY);
        if self.len == self.buckets.len() * WAYS {
            return false;
        }
        let mut b = self.home(hash);
        loop {
            let bucket = &mut self.buckets[b];
            if let Some(i) = bucket.values.iter().position(|&v| v == EMPTY) {
                bucket.tags[i] = tag(hash);
                bucket.values[i] = value;
                self.len += 1;
                return true;
            }
            bucket.overflow += 1;
            b = self.next(b);
        }
    }

    /// Remove `value` stored under `hash`; false when it is not there.
    pub fn remove(&mut self, hash: u64, value: u32) -> bool {
        let start = self.home(hash);
        let mut b = start;
        for passed in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            let at = (0..WAYS).find(|&i| bucket.values[i] == value && bucket.tags[i] == tag(hash));
            if let Some(i) = at {
                bucket.values[i] = EMPTY;
                self.len -= 1;
                let mut c = start;
                for _ in 0..passed {
                    self.buckets[c].overflow -= 1;
                    c = self.next(c);
                }
                return true;
            }
            if bucket.overflow == 0 {
                return false;
            }
            b = self.next(b);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Hashes that all share one home bucket (bucket 0; the tags differ).
    fn same_home(i: u32) -> u64 {
        u64::from(i.wrapping_mul(0x9e37_79b9) & 0xffff)
    }

    #[test]
    fn overflow_chain_survives_removal_in_the_middle() {
        let mut ix = Index::with_capacity(8 * LOAD); // 8 buckets
        let n = 3 * WAYS as u32; // three buckets' worth, one home
        for v in 0..n {
            assert!(ix.insert(same_home(v), v));
        }
        // Remove from the home bucket: the later entries must still be found.
        for v in 0..WAYS as u32 {
            assert!(ix.remove(same_home(v), v));
        }
        for v in WAYS as u32..n {
            assert_eq!(ix.find(same_home(v), |x| x == v), Some(v), "value {v}");
        }
        for v in 0..WAYS as u32 {
            assert_eq!(ix.find(same_home(v), |x| x == v), None);
        }
        // Removing the rest leaves no overflow behind.
        for v in WAYS as u32..n {
            assert!(ix.remove(same_home(v), v));
        }
        assert!(ix.is_empty());
        assert!(ix.buckets.iter().all(|b| b.overflow == 0));
    }

    #[test]
    fn full_index_refuses_and_wraps() {
        let mut ix = Index::with_capacity(1); // 1 bucket
        for v in 0..WAYS as u32 {
            assert!(ix.insert(u64::from(v), v));
        }
        assert!(!ix.insert(99, 99));
        assert_eq!(ix.len(), WAYS);
        assert_eq!(ix.find(3, |x| x == 3), Some(3));
        assert_eq!(ix.find(99, |x| x == 99), None);
        // The last bucket overflows into the first.
        let mut ix = Index::with_capacity(2 * LOAD); // 2 buckets
        let last = |i: u64| (0xffff_ffff << 16) | i;
        for v in 0..WAYS as u32 + 2 {
            assert!(ix.insert(last(u64::from(v)), v));
        }
        assert_eq!(
            ix.find(last(WAYS as u64 + 1), |x| x == WAYS as u32 + 1),
            Some(8)
        );
    }

    #[test]
    fn hashes_of_one_shard_still_spread() {
        // A sharded table's shard is the hash's top bits: within a shard those agree,
        // and the home bucket must not depend on them.
        let mut ix = Index::with_capacity(5000);
        let mut x = 0x1234_5678_9abc_def0_u64;
        for v in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let hash = (0x3ff << 54) | (x >> 10);
            assert!(ix.insert(hash, v));
        }
        let overflowing = ix.buckets.iter().filter(|b| b.overflow > 0).count();
        // Random homes at full load overflow about one bucket in five; homes bunched
        // by the top bits overflow nearly all.
        assert!(
            overflowing * 3 < ix.buckets.len(),
            "{overflowing} of {}",
            ix.buckets.len()
        );
    }

    proptest! {
        /// Against a model: any sequence of inserts and removes keeps every stored
        /// value findable and nothing else.
        #[test]
        fn agrees_with_a_model(ops in prop::collection::vec((any::<bool>(), 0u32..200), 1..600)) {
            let mut ix = Index::with_capacity(64);
            let mut model = std::collections::BTreeSet::new();
            // Few distinct homes, so chains form.
            let hash = |v: u32| (u64::from(v % 5) << 45) | u64::from(v.wrapping_mul(40_503) & 0xffff);
            for (add, v) in ops {
                if add && !model.contains(&v) {
                    if ix.insert(hash(v), v) {
                        model.insert(v);
                    } else {
                        prop_assert_eq!(model.len(), ix.buckets.len() * WAYS);
                    }
                } else if !add {
                    prop_assert_eq!(ix.remove(hash(v), v), model.remove(&v));
                }
                prop_assert_eq!(ix.len(), model.len());
            }
            for v in 0..200 {
                prop_assert_eq!(ix.find(hash(v), |x| x == v).is_some(), model.contains(&v));
            }
        }
    }
}
