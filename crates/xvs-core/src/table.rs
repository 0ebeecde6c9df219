//! Bounded, sharded hash tables shared by the workers (persistence templates, fragment
//! tracking). Layer: pure core data structure; callers supply `now`.
//!
//! Invariants:
//! - capacity is fixed at construction (split evenly over a power-of-two number of
//!   shards); inserting never allocates and never grows a shard past its share;
//! - a full shard evicts by policy: an expired entry if one is found in a bounded
//!   window of slots after the shard's clock hand, else the entry with the earliest
//!   deadline in that window (an approximation of "oldest" with O(1) cost);
//! - each shard has its own lock; no operation holds two shard locks;
//! - the slot index is an [`Index`] (one cache line per bucket).

use std::hash::{BuildHasher, Hash};
use std::sync::{Mutex, MutexGuard};

use crate::index::Index;
use crate::time::Time;

/// Something that can start loading memory into the CPU cache ahead of its use —
/// the I/O layer's prefetch instruction (this crate has no `unsafe`).
pub trait Prefetch {
    /// Start loading the cache line at `addr` (a hint: any address is harmless).
    fn prefetch_addr(&self, addr: usize);

    /// Start loading every cache line of `value`.
    #[inline]
    fn prefetch<T>(&self, value: &T) {
        let start = std::ptr::from_ref(value) as usize;
        for offset in (0..std::mem::size_of::<T>()).step_by(64) {
            self.prefetch_addr(start + offset);
        }
    }
}

/// Slots examined per eviction (the window after the clock hand).
pub const EVICTION_WINDOW: usize = 16;

/// A value with a deadline, stored in a [`ShardedTable`].
pub trait Expiring {
    /// When the entry stops being needed.
    fn deadline(&self) -> Time;
    /// True when the entry may be removed at `now` (by default: deadline passed).
    fn is_expired(&self, now: Time) -> bool {
        self.deadline().has_passed(now)
    }
}

/// Outcome of an insertion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// Stored in a free slot (or replaced the value of the same key).
    Free,
    /// Stored after removing an expired entry.
    EvictedExpired,
    /// Stored after removing a live entry (the table is under pressure).
    EvictedLive,
}

/// Hasher state shared by all tables: foldhash with a caller-chosen seed (internal
/// tables only; the scheduling flow hash is `sched::hash`).
pub(crate) type TableHasher = foldhash::fast::FixedState;

/// Hash map for control-built lookup structures (deterministic, not DoS-keyed: keys
/// come from configuration, not from packets).
pub(crate) type Map<K, V> = hashbrown::HashMap<K, V, TableHasher>;

/// Sharded, bounded map from `K` to `V`.
#[derive(Debug)]
pub struct ShardedTable<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: TableHasher,
    shard_shift: u32,
}

/// One shard: a slab of slots, a hash index of slot numbers, a free list, a clock hand.
#[derive(Debug)]
pub struct Shard<K, V> {
    slots: Vec<Option<(K, V)>>,
    index: Index,
    free: Vec<u32>,
    hand: usize,
}

/// Lock a mutex, recovering from poisoning (a panicked holder cannot leave a shard
/// half-updated: every mutation completes before any call that could panic).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Round `shards` to a power of two in `1..=1024` and return (count, shift for hash→shard).
pub(crate) fn shard_layout(shards: usize) -> (usize, u32) {
    let n = shards.clamp(1, 1024).next_power_of_two();
    let shift = if n == 1 { 64 } else { 64 - n.trailing_zeros() };
    (n, shift)
}

/// Shard number from a hash: the top bits, so the low bits stay independent for the index.
#[inline]
pub(crate) fn shard_of(hash: u64, shift: u32) -> usize {
    if shift >= 64 {
        0
    } else {
        (hash >> shift) as usize
    }
}

impl<K: Hash + Eq + Copy, V: Expiring> ShardedTable<K, V> {
    /// A table holding at most about `capacity` entries in `shards` shards (rounded to a
    /// power of two); `seed` keys the internal hash.
    pub fn new(capacity: usize, shards: usize, seed: u64) -> Self {
        let (n, shard_shift) = shard_layout(shards);
        let per_shard = capacity.div_ceil(n).max(1);
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::with_capacity(per_shard)))
            .collect();
        ShardedTable {
            shards,
            hasher: TableHasher::with_seed(seed),
            shard_shift,
        }
    }

    /// Total slots.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| lock(s).slots.len()).sum()
    }

    /// Entries stored now (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Run `f` on the shard holding `key`, under its lock, with the key's hash.
    pub fn with_shard<R>(&self, key: &K, f: impl FnOnce(&mut ShardRef<'_, K, V>) -> R) -> R {
        let hash = self.hasher.hash_one(key);
        let mut guard = lock(&self.shards[shard_of(hash, self.shard_shift)]);
        let mut shard = ShardRef {
            shard: &mut guard,
            hash,
            hasher: &self.hasher,
        };
        f(&mut shard)
    }

    /// Remove up to `budget` expired entries per shard, scanning from each clock hand;
    /// `on_removed` sees each removed entry. Returns how many were removed.
    pub fn sweep(&self, now: Time, budget: usize, mut on_removed: impl FnMut(&K, &V)) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            removed += s.sweep(now, budget, &self.hasher, &mut on_removed);
        }
        removed
    }

    /// Visit every stored entry (for listings; takes each shard lock in turn).
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        for shard in self.shards.iter() {
            let s = lock(shard);
            for (k, v) in s.slots.iter().flatten() {
                f(k, v);
            }
        }
    }

    /// Remove every entry for which `pred` is true; returns how many.
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            for slot in 0..s.slots.len() {
                let drop_it = matches!(&s.slots[slot], Some((k, v)) if !keep(k, v));
                if drop_it {
                    s.remove_slot(slot, &self.hasher);
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// A locked shard with the hash of the key being worked on.
#[derive(Debug)]
pub struct ShardRef<'a, K, V> {
    shard: &'a mut Shard<K, V>,
    hash: u64,
    hasher: &'a TableHasher,
}

impl<K: Hash + Eq + Copy, V: Expiring> ShardRef<'_, K, V> {
    /// The value stored under `key`, if any (expired or not: the caller decides).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let slot = self.shard.find(self.hash, key)?;
        self.shard.slots[slot].as_mut().map(|(_, v)| v)
    }

    /// Remove `key`; returns its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.shard.find(self.hash, key)?;
        self.shard.remove_slot(slot, self.hasher).map(|(_, v)| v)
    }

    /// Insert or replace `key`, evicting by policy when the shard is full. The evicted
    /// entry (if any) is passed to `on_evicted`.
    pub fn insert(
        &mut self,
        key: K,
        value: V,
        now: Time,
        on_evicted: impl FnOnce(&K, &V),
    ) -> Inserted {
        if let Some(slot) = self.shard.find(self.hash, &key) {
            self.shard.slots[slot] = Some((key, value));
            return Inserted::Free;
        }
        let mut outcome = Inserted::Free;
        if self.shard.free.is_empty() {
            let victim = self.shard.pick_victim(now);
            if let Some((k, v)) = self.shard.remove_slot(victim, self.hasher) {
                outcome = if v.is_expired(now) {
                    Inserted::EvictedExpired
                } else {
                    Inserted::EvictedLive
                };
                on_evicted(&k, &v);
            }
        }
        let Some(slot) = self.shard.free.pop() else {
            return outcome;
        };
        self.shard.slots[slot as usize] = Some((key, value));
        // Sized for every slot: there is always room.
        self.shard.index.insert(self.hash, slot);
        outcome
    }
}

impl<K: Hash + Eq + Copy, V: Expiring> Shard<K, V> {
    fn with_capacity(n: usize) -> Self {
        Shard {
            slots: (0..n).map(|_| None).collect(),
            index: Index::with_capacity(n),
            free: (0..n as u32).rev().collect(),
            hand: 0,
        }
    }

    fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    fn find(&self, hash: u64, key: &K) -> Option<usize> {
        self.index
            .find(
                hash,
                |s| matches!(&self.slots[s as usize], Some((k, _)) if k == key),
            )
            .map(|s| s as usize)
    }

    fn remove_slot(&mut self, slot: usize, hasher: &TableHasher) -> Option<(K, V)> {
        let (key, _) = self.slots[slot].as_ref()?;
        let hash = hasher.hash_one(key);
        self.index.remove(hash, slot as u32);
        self.free.push(slot as u32);
        self.slots[slot].take()
    }

    /// Called only when the shard is full (so every slot is occupied).
    fn pick_victim(&mut self, now: Time) -> usize {
        let slots = &self.slots;
        pick_victim(&mut self.hand, slots.len(), |slot| {
            slots[slot]
                .as_ref()
                .map(|(_, v)| (v.deadline(), v.is_expired(now)))
        })
    }

    fn sweep(
        &mut self,
        now: Time,
        budget: usize,
        hasher: &TableHasher,
        on_removed: &mut impl FnMut(&K, &V),
    ) -> usize {
        let n = self.slots.len();
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let slot = self.hand;
            self.hand = (self.hand + 1) % n;
            if matches!(&self.slots[slot], Some((_, v)) if v.is_expired(now))
                && let Some((k, v)) = self.remove_slot(slot, hasher)
            {
                on_removed(&k, &v);
                removed += 1;
            }
        }
        removed
    }
}

/// The eviction policy shared by every bounded table: scan [`EVICTION_WINDOW`] slots
/// from the clock `hand` (of `n` slots); take the first expired entry, else the one with
/// the earliest deadline; advance the hand past the victim. `entry(slot)` gives a
/// slot's (deadline, expired) or `None` for a free slot.
pub(crate) fn pick_victim(
    hand: &mut usize,
    n: usize,
    entry: impl Fn(usize) -> Option<(Time, bool)>,
) -> usize {
    let mut best = *hand % n;
    let mut best_deadline: Option<Time> = None;
    for step in 0..EVICTION_WINDOW.min(n) {
        let slot = (*hand + step) % n;
        let Some((deadline, expired)) = entry(slot) else {
            continue;
        };
        if expired {
            best = slot;
            break;
        }
        if best_deadline.is_none_or(|b| b.is_after(deadline)) {
            best = slot;
            best_deadline = Some(deadline);
        }
    }
    *hand = (best + 1) % n;
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Val(Time);
    impl Expiring for Val {
        fn deadline(&self) -> Time {
            self.0
        }
    }

    fn insert(t: &ShardedTable<u32, Val>, k: u32, deadline: u32, now: u32) -> Inserted {
        t.with_shard(&k, |s| {
            s.insert(k, Val(Time(deadline)), Time(now), |_, _| {})
        })
    }

    #[test]
    fn insert_get_remove() {
        let t = ShardedTable::new(64, 4, 7);
        assert_eq!(insert(&t, 1, 100, 0), Inserted::Free);
        assert_eq!(
            t.with_shard(&1, |s| s.get_mut(&1).copied()),
            Some(Val(Time(100)))
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.with_shard(&1, |s| s.remove(&1)), Some(Val(Time(100))));
        assert!(t.is_empty());
        assert_eq!(t.with_shard(&1, |s| s.remove(&1)), None);
    }

    #[test]
    fn full_shard_evicts_expired_first_then_earliest_deadline() {
        let t: ShardedTable<u32, Val> = ShardedTable::new(4, 1, 1);
        for k in 0..4 {
            insert(&t, k, 1000 + k, 0);
        }
        // key 2 expires at 50; at now=60 it is the expired one and must go first.
        t.with_shard(&2, |s| s.get_mut(&2).unwrap().0 = Time(50));
        let mut evicted = None;
        let out = t.with_shard(&9, |s| {
            s.insert(9, Val(Time(2000)), Time(60), |k, _| evicted = Some(*k))
        });
        assert_eq!(out, Inserted::EvictedExpired);
        assert_eq!(evicted, Some(2));
        // Nothing expired now: the earliest deadline (key 0 at 1000) goes.
        let mut evicted = None;
        let out = t.with_shard(&10, |s| {
            s.insert(10, Val(Time(3000)), Time(60), |k, _| evicted = Some(*k))
        });
        assert_eq!(out, Inserted::EvictedLive);
        assert_eq!(evicted, Some(0));
        assert_eq!(t.len(), 4);
        assert_eq!(t.capacity(), 4);
    }

    #[test]
    fn never_grows_past_capacity() {
        let t: ShardedTable<u32, Val> = ShardedTable::new(100, 4, 3);
        for k in 0..10_000 {
            insert(&t, k, k, k);
        }
        assert!(t.len() <= t.capacity());
        assert_eq!(t.capacity(), 100);
    }

    #[test]
    fn sweep_removes_only_expired_within_budget() {
        let t: ShardedTable<u32, Val> = ShardedTable::new(8, 1, 3);
        for k in 0..8 {
            insert(&t, k, if k % 2 == 0 { 10 } else { 1000 }, 0);
        }
        let mut seen = Vec::new();
        let n = t.sweep(Time(20), 8, |k, _| seen.push(*k));
        assert_eq!(n, 4);
        seen.sort();
        assert_eq!(seen, vec![0, 2, 4, 6]);
        assert_eq!(t.len(), 4);
        assert_eq!(t.retain(|k, _| *k != 1), 1);
        assert_eq!(t.len(), 3);
    }
}
