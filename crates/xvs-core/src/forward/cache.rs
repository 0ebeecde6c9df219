//! The per-worker flow cache: a 2-way set-associative map from an established
//! connection's tuple (either direction) to its [`Plan`] — the rewrite and next hop
//! worked out once — in front of the shared connection table. A hit costs one hash,
//! one or two 40-byte compares and the rewrite; a set is three cache lines, all of
//! which an rx batch's look-ahead prefetches. Layer: pure core, hot path, owned by
//! one worker (no lock, no atomics).
//!
//! Invariants:
//! - only steady packets use it: TCP segments without SYN, FIN or RST on an
//!   established connection, and UDP; anything that could change a connection's state
//!   goes to the shared table, which stays the single source of truth;
//! - a connection that leaves the established state (a FIN or RST, which always go
//!   to the shared table) is forgotten at once by the worker that saw it, in both
//!   directions; another worker's copy lives until its refresh time;
//! - an entry is used until its refresh time — half the time the shared entry had
//!   left when it was cached, at most [`MAX_REFRESH_MS`] — then the packet goes to
//!   the shared table again, which re-arms the shared expiry and re-fills the cache:
//!   a flow served from the cache never times out in the shared table;
//! - the cache is emptied whenever the worker takes a new snapshot, so a reload, a
//!   neighbour or route change (the plan holds the next hop), a drain or new
//!   blocking rules (with [`super::Shared::purge_blocked`]) are seen at once;
//!   a connection evicted from the shared table under pressure (or removed without a
//!   snapshot swap) may still be served from a cache until its refresh time.

use std::hash::BuildHasher;

use super::{Plan, Prefetch};
use crate::conntrack::{ConnState, Tuple};
use crate::table::TableHasher;
use crate::time::Time;

/// The longest a cached plan is used without touching the shared table.
pub const MAX_REFRESH_MS: u32 = 10_000;

/// Ways per set: a tuple may sit in either entry of its set. (Four ways made a set
/// six to seven cache lines, and prefetching those for a whole rx batch kept the
/// CPU's miss buffers full: `xvs-sidebyside`, 64k flows, NAT / bare 0.78–0.80 with
/// four ways against 0.81–0.83 with two.)
const WAYS: usize = 2;

#[derive(Clone, Copy, Debug)]
struct Cached {
    key: Tuple,
    plan: Plan,
    /// Back to the shared table from then on.
    refresh: Time,
}

// 92 bytes today: 65536 entries (the default) take 6 MiB per worker.
const _: () = assert!(size_of::<Option<Cached>>() <= 96);
const _: () = assert!(size_of::<Set>() == 192);

/// One set, starting on a cache line (so that it spans three, not four).
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Set([Option<Cached>; WAYS]);

/// A worker's flow cache: a power of two of sets of [`WAYS`] entries. A new entry
/// takes an empty way or one past its refresh time; when every way holds a live
/// flow it is not cached (its packets take the shared table until a way frees up):
/// replacing a live entry would let more flows than ways evict each other on every
/// packet.
#[derive(Debug)]
pub(crate) struct FlowCache {
    sets: Box<[Set]>,
    mask: usize,
    hasher: TableHasher,
}

impl FlowCache {
    /// A cache of at least `entries` entries (rounded up to a power of two).
    pub(crate) fn new(entries: usize, seed: u64) -> FlowCache {
        let sets = entries.div_ceil(WAYS).next_power_of_two();
        FlowCache {
            sets: vec![Set([None; WAYS]); sets].into_boxed_slice(),
            mask: sets - 1,
            hasher: TableHasher::with_seed(seed),
        }
    }

    #[inline]
    fn set(&self, t: &Tuple) -> usize {
        self.hasher.hash_one(t) as usize & self.mask
    }

    /// Show `p` the set of tuple `t` (to start loading it into the CPU cache).
    #[inline]
    pub(crate) fn prefetch(&self, t: &Tuple, p: &impl Prefetch) {
        p.prefetch(&self.sets[self.set(t)]);
    }

    /// The plan for tuple `t`, if cached and fresh.
    #[inline]
    pub(crate) fn get(&self, t: &Tuple, now: Time) -> Option<&Plan> {
        let c = self.sets[self.set(t)]
            .0
            .iter()
            .flatten()
            .find(|c| c.key == *t)?;
        (!c.refresh.has_passed(now)).then_some(&c.plan)
    }

    /// Remember the plan for tuple `t` of a connection in `state` that the shared
    /// table just refreshed to expire at `expires`, if that state is one that steady
    /// packets cannot change.
    #[inline]
    pub(crate) fn put(
        &mut self,
        t: &Tuple,
        plan: &Plan,
        state: ConnState,
        now: Time,
        expires: Time,
    ) {
        if !matches!(state, ConnState::Established | ConnState::Udp) {
            return;
        }
        let refresh = now.after_ms((expires.remaining_ms(now) / 2).min(MAX_REFRESH_MS));
        let set = &mut self.sets[self.set(t)].0;
        let Some(way) = set
            .iter()
            .position(|w| w.as_ref().is_some_and(|c| c.key == *t))
            .or_else(|| {
                set.iter()
                    .position(|w| w.as_ref().is_none_or(|c| c.refresh.has_passed(now)))
            })
        else {
            return;
        };
        set[way] = Some(Cached {
            key: *t,
            plan: *plan,
            refresh,
        });
    }

    /// Forget tuple `t` (its connection left the states the cache serves).
    #[inline]
    pub(crate) fn forget(&mut self, t: &Tuple) {
        let set = &mut self.sets[self.set(t)].0;
        for way in set.iter_mut() {
            if way.as_ref().is_some_and(|c| c.key == *t) {
                *way = None;
            }
        }
    }

    /// Forget everything (new snapshot).
    pub(crate) fn clear(&mut self) {
        self.sets.fill(Set([None; WAYS]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::IfaceId;
    use crate::conntrack::Direction;
    use crate::forward::rewrite::Rewrite;
    use crate::service::DestId;

    fn tuple(port: u16) -> Tuple {
        Tuple {
            src: [198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            dst: [198, 18, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            sport: port,
            dport: 53,
            protocol: 17,
            v6: false,
        }
    }

    fn plan(dest: u32) -> Plan {
        Plan {
            dest: DestId(dest),
            dir: Direction::Original,
            iface: IfaceId(1),
            macs: [0; 12],
            rewrite: Rewrite::new(&tuple(1), None),
        }
    }

    #[test]
    fn a_full_set_keeps_its_live_flows_and_reuses_stale_ways() {
        // One set; one flow more than it has ways.
        let mut c = FlowCache::new(WAYS, 1);
        let now = Time(1000);
        let expires = now.after_ms(300_000);
        let extra = WAYS as u16 + 1;
        for p in 1..=extra {
            c.put(&tuple(p), &plan(u32::from(p)), ConnState::Udp, now, expires);
        }
        for p in 1..extra {
            assert_eq!(
                c.get(&tuple(p), now).map(|x| x.dest),
                Some(DestId(u32::from(p)))
            );
        }
        assert!(
            c.get(&tuple(extra), now).is_none(),
            "no live flow evicted for it"
        );
        // The same flow again takes its own way (no duplicate).
        c.put(&tuple(2), &plan(22), ConnState::Udp, now, expires);
        assert_eq!(c.get(&tuple(2), now).map(|x| x.dest), Some(DestId(22)));
        // Past their refresh time the entries are not used, and their ways are reused.
        let later = now.after_ms(MAX_REFRESH_MS);
        assert!(c.get(&tuple(1), later).is_none());
        c.put(
            &tuple(extra),
            &plan(5),
            ConnState::Udp,
            later,
            later.after_ms(300_000),
        );
        assert_eq!(c.get(&tuple(extra), later).map(|x| x.dest), Some(DestId(5)));
    }

    #[test]
    fn refresh_comes_before_the_shared_entry_could_expire() {
        let mut c = FlowCache::new(64, 1);
        let now = Time(1000);
        // A 4 s timeout: used for 2 s, then the shared table again.
        c.put(&tuple(1), &plan(1), ConnState::Udp, now, now.after_ms(4000));
        assert!(c.get(&tuple(1), now.after_ms(1999)).is_some());
        assert!(c.get(&tuple(1), now.after_ms(2000)).is_none());
        // States that steady packets could change are not cached.
        c.put(
            &tuple(2),
            &plan(2),
            ConnState::SynRecv,
            now,
            now.after_ms(60_000),
        );
        assert!(c.get(&tuple(2), now).is_none());
        c.clear();
        assert!(c.get(&tuple(1), now).is_none());
    }
}
