//! The per-worker flow cache: a 2-way set-associative map from an established
//! connection's tuple (either direction) to its [`Plan`] — the rewrite and next hop
//! worked out once — in front of the shared connection table. A hit costs one hash,
//! one or two key compares and the rewrite. IPv4 and IPv6 flows have sets of their
//! own: an IPv4 entry (4-byte addresses) fits one cache line, so an IPv4 set is two
//! lines, an IPv6 set three; an rx batch's look-ahead prefetches the whole set.
//! Layer: pure core, hot path, owned by one worker (no lock, no atomics).
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

use super::rewrite::Rewrite4;
use super::{Plan, Prefetch};
use crate::addr::v4_octets;
use crate::classify::IfaceId;
use crate::conntrack::{ConnState, Direction, Tuple};
use crate::service::DestId;
use crate::table::TableHasher;
use crate::time::Time;

/// The longest a cached plan is used without touching the shared table.
pub const MAX_REFRESH_MS: u32 = 10_000;

/// Ways per set: a tuple may sit in either entry of its set. (Four ways made a set
/// six to seven cache lines, and prefetching those for a whole rx batch kept the
/// CPU's miss buffers full: `xvs-sidebyside`, 64k flows, NAT / bare 0.78–0.80 with
/// four ways against 0.81–0.83 with two.)
const WAYS: usize = 2;

/// What a way holds: a flow's key, its plan and its refresh time.
trait Entry: Copy {
    fn new(key: &Tuple, plan: &Plan, refresh: Time) -> Self;
    fn is_for(&self, key: &Tuple) -> bool;
    fn refresh(&self) -> Time;
    fn plan(&self) -> Plan;
}

/// Any flow's entry (the IPv6 one).
#[derive(Clone, Copy, Debug)]
struct Cached {
    key: Tuple,
    plan: Plan,
    /// Back to the shared table from then on.
    refresh: Time,
}

impl Entry for Cached {
    #[inline]
    fn new(key: &Tuple, plan: &Plan, refresh: Time) -> Self {
        Cached {
            key: *key,
            plan: *plan,
            refresh,
        }
    }
    #[inline]
    fn is_for(&self, key: &Tuple) -> bool {
        self.key == *key
    }
    #[inline]
    fn refresh(&self) -> Time {
        self.refresh
    }
    #[inline]
    fn plan(&self) -> Plan {
        self.plan
    }
}

/// An IPv4 flow's entry, in one cache line.
#[derive(Clone, Copy, Debug)]
struct Cached4 {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    protocol: u8,
    dir: Direction,
    iface: IfaceId,
    dest: DestId,
    refresh: Time,
    macs: [u8; 12],
    rewrite: Rewrite4,
}

impl Entry for Cached4 {
    #[inline]
    fn new(key: &Tuple, plan: &Plan, refresh: Time) -> Self {
        Cached4 {
            src: v4_octets(&key.src),
            dst: v4_octets(&key.dst),
            sport: key.sport,
            dport: key.dport,
            protocol: key.protocol,
            dir: plan.dir,
            iface: plan.iface,
            dest: plan.dest,
            refresh,
            macs: plan.macs,
            rewrite: plan.rewrite.to_v4(),
        }
    }
    #[inline]
    fn is_for(&self, key: &Tuple) -> bool {
        self.src == v4_octets(&key.src)
            && self.dst == v4_octets(&key.dst)
            && self.sport == key.sport
            && self.dport == key.dport
            && self.protocol == key.protocol
    }
    #[inline]
    fn refresh(&self) -> Time {
        self.refresh
    }
    #[inline]
    fn plan(&self) -> Plan {
        Plan {
            dest: self.dest,
            dir: self.dir,
            iface: self.iface,
            macs: self.macs,
            rewrite: self.rewrite.to_rewrite(),
        }
    }
}

// An IPv6 entry is 92 bytes, an IPv4 one 52: 65536 entries (the default) take 6 MiB
// of IPv6 sets and 4 MiB of IPv4 sets per worker.
const _: () = assert!(size_of::<Option<Cached>>() <= 96);
const _: () = assert!(size_of::<Set<Cached>>() == 192);
const _: () = assert!(size_of::<Option<Cached4>>() <= 64);
const _: () = assert!(size_of::<Set<Cached4>>() == 128);

/// One set, starting on a cache line (so that it spans as few as its size allows).
#[derive(Clone, Copy, Debug)]
#[repr(align(64))]
struct Set<E>([Option<E>; WAYS]);

/// The sets of one address family. A new entry takes an empty way or one past its
/// refresh time; when every way holds a live flow it is not cached (its packets take
/// the shared table until a way frees up): replacing a live entry would let more
/// flows than ways evict each other on every packet.
#[derive(Debug)]
struct Sets<E>(Box<[Set<E>]>);

impl<E: Entry> Sets<E> {
    fn new(sets: usize) -> Self {
        Sets(vec![Set([None; WAYS]); sets].into_boxed_slice())
    }

    #[inline]
    fn prefetch(&self, set: usize, p: &impl Prefetch) {
        p.prefetch(&self.0[set]);
    }

    #[inline]
    fn get(&self, set: usize, t: &Tuple, now: Time) -> Option<Plan> {
        let e = self.0[set].0.iter().flatten().find(|e| e.is_for(t))?;
        (!e.refresh().has_passed(now)).then(|| e.plan())
    }

    #[inline]
    fn put(&mut self, set: usize, t: &Tuple, plan: &Plan, refresh: Time, now: Time) {
        let ways = &mut self.0[set].0;
        let Some(way) = ways
            .iter()
            .position(|w| w.as_ref().is_some_and(|e| e.is_for(t)))
            .or_else(|| {
                ways.iter()
                    .position(|w| w.as_ref().is_none_or(|e| e.refresh().has_passed(now)))
            })
        else {
            return;
        };
        ways[way] = Some(E::new(t, plan, refresh));
    }

    #[inline]
    fn forget(&mut self, set: usize, t: &Tuple) {
        for way in self.0[set].0.iter_mut() {
            if way.as_ref().is_some_and(|e| e.is_for(t)) {
                *way = None;
            }
        }
    }

    fn clear(&mut self) {
        self.0.fill(Set([None; WAYS]));
    }
}

/// A worker's flow cache: for each address family a power of two of sets of
/// [`WAYS`] entries.
#[derive(Debug)]
pub(crate) struct FlowCache {
    v4: Sets<Cached4>,
    v6: Sets<Cached>,
    mask: usize,
    hasher: TableHasher,
}

impl FlowCache {
    /// A cache of at least `entries` entries per address family (rounded up to a
    /// power of two).
    pub(crate) fn new(entries: usize, seed: u64) -> FlowCache {
        let sets = entries.div_ceil(WAYS).next_power_of_two();
        FlowCache {
            v4: Sets::new(sets),
            v6: Sets::new(sets),
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
        let set = self.set(t);
        if t.v6 {
            self.v6.prefetch(set, p);
        } else {
            self.v4.prefetch(set, p);
        }
    }

    /// The plan for tuple `t`, if cached and fresh.
    #[inline]
    pub(crate) fn get(&self, t: &Tuple, now: Time) -> Option<Plan> {
        let set = self.set(t);
        if t.v6 {
            self.v6.get(set, t, now)
        } else {
            self.v4.get(set, t, now)
        }
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
        let set = self.set(t);
        if t.v6 {
            self.v6.put(set, t, plan, refresh, now);
        } else {
            self.v4.put(set, t, plan, refresh, now);
        }
    }

    /// Forget tuple `t` (its connection left the states the cache serves).
    #[inline]
    pub(crate) fn forget(&mut self, t: &Tuple) {
        let set = self.set(t);
        if t.v6 {
            self.v6.forget(set, t);
        } else {
            self.v4.forget(set, t);
        }
    }

    /// Forget everything (new snapshot).
    pub(crate) fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
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
    fn plans_come_back_exactly_for_both_families_and_directions() {
        use crate::forward::rewrite::End;
        let mut c = FlowCache::new(64, 1);
        let now = Time(1000);
        let expires = now.after_ms(300_000);
        let v4 = tuple(7);
        // The same ports and the IPv4 bytes at the start of IPv6 addresses: another flow.
        let v6 = Tuple { v6: true, ..v4 };
        let rs = [198, 19, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let rs6 = [0x20, 1, 0xd, 0xb8, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x40];
        let plan_for = |t: &Tuple, dir, nat| Plan {
            dest: DestId(10),
            dir,
            iface: IfaceId(1),
            macs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            rewrite: Rewrite::new(t, nat),
        };
        let cases = [
            (
                v4,
                plan_for(&v4, Direction::Original, Some((End::Dst, rs, 8080))),
            ),
            (
                v6,
                plan_for(&v6, Direction::Reply, Some((End::Src, rs6, 80))),
            ),
        ];
        for (t, plan) in &cases {
            c.put(t, plan, ConnState::Established, now, expires);
        }
        for (t, plan) in &cases {
            assert_eq!(c.get(t, now), Some(*plan), "v6 {}", t.v6);
        }
        // DR (no NAT edit) through the IPv4 form too.
        let dr = tuple(8);
        let dr_plan = plan_for(&dr, Direction::Original, None);
        c.put(&dr, &dr_plan, ConnState::Udp, now, expires);
        assert_eq!(c.get(&dr, now), Some(dr_plan));
        c.forget(&v4);
        assert_eq!(c.get(&v4, now), None);
        assert_eq!(
            c.get(&v6, now),
            Some(cases[1].1),
            "forgetting IPv4 keeps IPv6"
        );
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
