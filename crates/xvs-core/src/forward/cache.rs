//! The per-worker flow cache: a small direct-mapped copy of established connections
//! in front of the shared connection table. Layer: pure core, hot path, owned by one
//! worker (no lock, no atomics).
//!
//! Invariants:
//! - only steady packets use it: TCP segments without SYN, FIN or RST on an
//!   established connection, and UDP; anything that could change a connection's state
//!   goes to the shared table, which stays the single source of truth;
//! - an entry is used for at most [`REFRESH_MS`] after the shared entry was last
//!   refreshed; then the packet goes to the shared table again, which re-arms the
//!   shared expiry (so a flow in the cache can never time out in the shared table,
//!   whose shortest timeout is far longer) and re-fills the cache;
//! - the cache is emptied whenever the worker takes a new snapshot, so a reload, a
//!   drain or new blocking rules (with [`super::Shared::purge_blocked`]) are seen at once;
//!   a connection evicted from the shared table under pressure (or removed without a
//!   snapshot swap) may still be served from a cache for at most [`REFRESH_MS`].

use std::hash::BuildHasher;

use crate::conntrack::{Conn, ConnState, Direction, Tuple};
use crate::table::TableHasher;
use crate::time::Time;

/// How long a cached copy may be used without touching the shared table.
pub const REFRESH_MS: u32 = 1000;

/// Entries per worker (a power of two; ≈ 80 bytes each).
pub const CACHE_SLOTS: usize = 4096;

#[derive(Clone, Copy, Debug)]
struct Cached {
    conn: Conn,
    dir: Direction,
    refreshed: Time,
}

/// A worker's flow cache.
#[derive(Debug)]
pub(crate) struct FlowCache {
    slots: Box<[Option<Cached>]>,
    hasher: TableHasher,
}

impl FlowCache {
    pub(crate) fn new(seed: u64) -> FlowCache {
        FlowCache {
            slots: vec![None; CACHE_SLOTS].into_boxed_slice(),
            hasher: TableHasher::with_seed(seed),
        }
    }

    #[inline]
    fn slot(&self, t: &Tuple) -> usize {
        self.hasher.hash_one(t) as usize & (CACHE_SLOTS - 1)
    }

    /// The cached connection of tuple `t`, if fresh.
    #[inline]
    pub(crate) fn get(&self, t: &Tuple, now: Time) -> Option<(Conn, Direction)> {
        let c = self.slots[self.slot(t)].as_ref()?;
        let fresh = !c.refreshed.after_ms(REFRESH_MS).has_passed(now);
        (fresh && c.conn.matches(c.dir, t)).then_some((c.conn, c.dir))
    }

    /// Remember `conn` (just refreshed in the shared table) for tuple `t`, if its state
    /// is one that steady packets cannot change.
    #[inline]
    pub(crate) fn put(&mut self, t: &Tuple, conn: &Conn, dir: Direction, now: Time) {
        if matches!(conn.state(), ConnState::Established | ConnState::Udp) {
            let slot = self.slot(t);
            self.slots[slot] = Some(Cached {
                conn: *conn,
                dir,
                refreshed: now,
            });
        }
    }

    /// Forget everything (new snapshot).
    pub(crate) fn clear(&mut self) {
        self.slots.fill(None);
    }
}
