//! The connection table: every flow the director forwards, shared by all workers.
//! Layer: pure core data structure (callers pass `now`; no clock, no threads).
//!
//! Invariants:
//! - an entry is one [`Conn`] of 64 bytes, one cache line (asserted at compile time),
//!   stored in a fixed slab per shard; the [`Index`] holds slot numbers in
//!   cache-line buckets and never grows (≈ 94 bytes per connection slot in all: the
//!   entry, 4 bytes of free list, two index entries of ≈ 13 bytes);
//! - a NAT entry is indexed under two keys — the client's packet tuple (client → VIP)
//!   and the real server's reply tuple (real server → client) — a DR entry under the
//!   first only (DR replies bypass the director);
//! - both keys hash by the *client endpoint* (address, port, protocol), which both
//!   tuples contain: it picks the shard (so one shard lock covers both keys) and the
//!   index bucket (so both keys of a connection share one cache line, and the bucket
//!   of a reply key is known before the real server is chosen); the full tuple is
//!   compared on a tag match. A lookup tries the packet as an original (client =
//!   source), then as a reply (client = destination);
//! - [`ConnTable::prefetch`] computes those buckets (and the slot an insert would
//!   take) without a lock, so a worker can load them a few frames before deciding;
//! - capacity is fixed at construction; a full shard evicts expired entries first,
//!   then the entry closest to expiry within a bounded window (counted by the caller
//!   through the returned [`Inserted`]); nothing grows in steady state.

pub mod state;

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::addr::AddrBytes;
use crate::index::{BucketMap, Index};
use crate::service::DestId;
use crate::table::{Inserted, Prefetch, TableHasher, lock, pick_victim, shard_layout, shard_of};
use crate::time::Time;
pub use state::{ConnState, TcpFlags, Timeouts, tcp_next};

/// A packet's 5-tuple as seen on the wire (addresses in table form).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    /// Source address.
    pub src: AddrBytes,
    /// Destination address.
    pub dst: AddrBytes,
    /// Source port (0 when the protocol has none).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// IPv6 when true.
    pub v6: bool,
}

impl std::hash::Hash for Tuple {
    /// Three word writes (no length prefixes): the per-packet hash stays cheap.
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(u128::from_ne_bytes(self.src));
        state.write_u128(u128::from_ne_bytes(self.dst));
        let rest = (u64::from(self.sport) << 32)
            | (u64::from(self.dport) << 16)
            | (u64::from(self.protocol) << 8)
            | u64::from(self.v6);
        state.write_u64(rest);
    }
}

#[inline]
fn same_addr(a: &AddrBytes, b: &AddrBytes) -> bool {
    u128::from_ne_bytes(*a) == u128::from_ne_bytes(*b)
}

/// Which way a packet travels on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client → virtual service.
    Original,
    /// Real server → client (NAT only).
    Reply,
}

const STATE_MASK: u8 = 0x0f;
const FLAG_V6: u8 = 0x10;
const FLAG_NAT: u8 = 0x20;
const FLAG_PERSIST: u8 = 0x40;
const FLAG_USED: u8 = 0x80;

/// One tracked connection (64 bytes, aligned to a cache line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Conn {
    /// Client address.
    pub client: AddrBytes,
    /// Virtual address the client used.
    pub vaddr: AddrBytes,
    /// Real server address.
    pub daddr: AddrBytes,
    /// Client port.
    pub cport: u16,
    /// Virtual port the client used.
    pub vport: u16,
    /// Real server port.
    pub dport: u16,
    /// IP protocol.
    pub protocol: u8,
    bits: u8,
    /// When the entry expires unless refreshed.
    pub expires: Time,
    /// The real server (stable id).
    pub dest: DestId,
}

const _: () = assert!(std::mem::size_of::<Conn>() == 64);

impl Conn {
    /// A new entry for `original` (client → VIP) sent to `daddr:dport`.
    pub fn new(
        original: &Tuple,
        daddr: AddrBytes,
        dport: u16,
        dest: DestId,
        nat: bool,
        state: ConnState,
    ) -> Conn {
        let mut c = Conn {
            client: original.src,
            vaddr: original.dst,
            daddr,
            cport: original.sport,
            vport: original.dport,
            dport,
            protocol: original.protocol,
            bits: FLAG_USED,
            expires: Time(0),
            dest,
        };
        c.set_flag(FLAG_V6, original.v6);
        c.set_flag(FLAG_NAT, nat);
        c.set_state(state);
        c
    }

    fn set_flag(&mut self, f: u8, on: bool) {
        if on { self.bits |= f } else { self.bits &= !f }
    }

    /// Connection state.
    #[inline]
    pub fn state(&self) -> ConnState {
        ConnState::from_bits(self.bits & STATE_MASK)
    }

    /// Set the connection state.
    #[inline]
    pub fn set_state(&mut self, s: ConnState) {
        self.bits = (self.bits & !STATE_MASK) | s as u8;
    }

    /// IPv6 connection.
    #[inline]
    pub fn is_v6(&self) -> bool {
        self.bits & FLAG_V6 != 0
    }

    /// Forwarded by NAT (else direct routing).
    #[inline]
    pub fn is_nat(&self) -> bool {
        self.bits & FLAG_NAT != 0
    }

    /// Holds a reference on a persistence template (released when the entry goes).
    #[inline]
    pub fn is_persistent(&self) -> bool {
        self.bits & FLAG_PERSIST != 0
    }

    /// Mark the entry as holding a persistence template reference.
    #[inline]
    pub fn set_persistent(&mut self, on: bool) {
        self.set_flag(FLAG_PERSIST, on)
    }

    fn is_used(&self) -> bool {
        self.bits & FLAG_USED != 0
    }

    /// The client's tuple (client → VIP).
    pub fn original_tuple(&self) -> Tuple {
        Tuple {
            src: self.client,
            dst: self.vaddr,
            sport: self.cport,
            dport: self.vport,
            protocol: self.protocol,
            v6: self.is_v6(),
        }
    }

    /// The real server's reply tuple (real server → client).
    pub fn reply_tuple(&self) -> Tuple {
        Tuple {
            src: self.daddr,
            dst: self.client,
            sport: self.dport,
            dport: self.cport,
            protocol: self.protocol,
            v6: self.is_v6(),
        }
    }

    /// True when `t` is this connection's tuple in direction `dir`.
    #[inline]
    pub fn matches(&self, dir: Direction, t: &Tuple) -> bool {
        let same = self.protocol == t.protocol && self.is_v6() == t.v6;
        same && match dir {
            Direction::Original => {
                self.cport == t.sport
                    && self.vport == t.dport
                    && same_addr(&self.client, &t.src)
                    && same_addr(&self.vaddr, &t.dst)
            }
            Direction::Reply => {
                self.dport == t.sport
                    && self.cport == t.dport
                    && same_addr(&self.daddr, &t.src)
                    && same_addr(&self.client, &t.dst)
            }
        }
    }

    const EMPTY: Conn = Conn {
        client: [0; 16],
        vaddr: [0; 16],
        daddr: [0; 16],
        cport: 0,
        vport: 0,
        dport: 0,
        protocol: 0,
        bits: 0,
        expires: Time(0),
        dest: DestId(0),
    };
}

/// What [`ConnTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The entry was stored.
    Stored(Inserted),
    /// Another worker stored the same flow first: this is its entry, unchanged.
    Existing(Conn),
}

/// What [`ConnTable::open`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened<R> {
    /// The packet belongs to a stored connection: what `found` returned.
    Found(R),
    /// A new connection was stored (an entry a full shard gave up for it went to
    /// `on_removed`).
    Created {
        /// The connection stored.
        conn: Conn,
        /// How its slot was found.
        outcome: Inserted,
    },
}

const REPLY_BIT: u32 = 1 << 31;

#[derive(Debug)]
struct Shard {
    slots: Vec<Conn>,
    /// Two keys per slot at most (NAT): sized for that, so an insert always fits.
    index: Index,
    free: Vec<u32>,
    hand: usize,
}

/// What a worker may read of a shard without its lock: addresses to prefetch. One
/// cache line per shard: an insert in one shard does not disturb the others' hints.
#[derive(Debug)]
#[repr(align(64))]
struct Hints {
    index: BucketMap,
    /// Address of the slot the next insert takes (updated under the lock).
    next_slot: AtomicUsize,
}

/// The sharded connection table.
#[derive(Debug)]
pub struct ConnTable {
    shards: Box<[Mutex<Shard>]>,
    hints: Box<[Hints]>,
    hasher: TableHasher,
    shard_shift: u32,
}

#[inline]
fn endpoint_hash(h: &TableHasher, addr: &AddrBytes, port: u16, protocol: u8) -> u64 {
    h.hash_one((
        u128::from_ne_bytes(*addr),
        (u32::from(port) << 8) | u32::from(protocol),
    ))
}

impl ConnTable {
    /// A table of at most `capacity` connections in `shards` shards (a power of two
    /// ≤ 1024); `seed` keys the internal hash.
    pub fn new(capacity: usize, shards: usize, seed: u64) -> ConnTable {
        let (n, shard_shift) = shard_layout(shards);
        let per = capacity.div_ceil(n).clamp(1, (REPLY_BIT - 1) as usize);
        let shards: Box<[_]> = (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    slots: vec![Conn::EMPTY; per],
                    index: Index::with_capacity(2 * per),
                    free: (0..per as u32).rev().collect(),
                    hand: 0,
                })
            })
            .collect();
        let hints = shards
            .iter()
            .map(|s| {
                let s = lock(s);
                Hints {
                    index: s.index.map(),
                    next_slot: AtomicUsize::new(s.next_slot_addr()),
                }
            })
            .collect();
        ConnTable {
            shards,
            hints,
            hasher: TableHasher::with_seed(seed),
            shard_shift,
        }
    }

    /// Total slots.
    pub fn capacity(&self) -> usize {
        self.shards.iter().map(|s| lock(s).slots.len()).sum()
    }

    /// Entries stored (including expired ones not yet swept).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = lock(s);
                s.slots.len() - s.free.len()
            })
            .sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The client endpoint's hash and shard number.
    #[inline]
    fn place(&self, addr: &AddrBytes, port: u16, protocol: u8) -> (u64, usize) {
        let h = endpoint_hash(&self.hasher, addr, port, protocol);
        (h, shard_of(h, self.shard_shift))
    }

    /// Start loading, without a lock, what a lookup of `t` reads — the index buckets
    /// of `t` as an original and as a reply — or, for a packet that opens a
    /// connection (`opening`: see [`ConnTable::open`]), its original bucket and the
    /// slot the new entry will take.
    #[inline]
    pub fn prefetch(&self, t: &Tuple, opening: bool, p: &impl Prefetch) {
        let (h, shard) = self.place(&t.src, t.sport, t.protocol);
        let hints = &self.hints[shard];
        p.prefetch_addr(hints.index.bucket_addr(h));
        if opening {
            p.prefetch_addr(hints.next_slot.load(Relaxed));
        } else {
            let (h, shard) = self.place(&t.dst, t.dport, t.protocol);
            p.prefetch_addr(self.hints[shard].index.bucket_addr(h));
        }
    }

    #[inline]
    fn lock_shard(&self, shard: usize) -> std::sync::MutexGuard<'_, Shard> {
        lock(&self.shards[shard])
    }

    /// After a store or removal under shard `shard`'s lock: where the next insert goes.
    fn publish_next_slot(&self, shard: usize, s: &Shard) {
        self.hints[shard]
            .next_slot
            .store(s.next_slot_addr(), Relaxed);
    }

    /// Find the live connection of a packet with tuple `t` and run `f` on it under the
    /// shard lock. An entry found expired is removed (passed to `on_removed`) and the
    /// lookup misses.
    #[inline]
    pub fn lookup<R>(
        &self,
        t: &Tuple,
        now: Time,
        on_removed: impl FnMut(&Conn),
        f: impl FnOnce(&mut Conn, Direction) -> R,
    ) -> Option<R> {
        self.lookup_from(Direction::Original, t, now, on_removed, f)
    }

    /// [`ConnTable::lookup`], trying `t` as a `first` before the other direction —
    /// `Reply` first for a packet that can only come from the server side (a SYN-ACK),
    /// so that it does not lock the shard of the server's own endpoint, which every
    /// such packet of that server would share, before its own.
    #[inline]
    pub fn lookup_from<R>(
        &self,
        first: Direction,
        t: &Tuple,
        now: Time,
        on_removed: impl FnMut(&Conn),
        f: impl FnOnce(&mut Conn, Direction) -> R,
    ) -> Option<R> {
        let mut on_removed = on_removed;
        let order = match first {
            Direction::Original => [Direction::Original, Direction::Reply],
            Direction::Reply => [Direction::Reply, Direction::Original],
        };
        for dir in order {
            let (addr, port) = match dir {
                Direction::Original => (&t.src, t.sport),
                Direction::Reply => (&t.dst, t.dport),
            };
            let (h, shard) = self.place(addr, port, t.protocol);
            let mut s = self.lock_shard(shard);
            let Some(slot) = s.find(h, dir, t) else {
                continue;
            };
            if s.slots[slot].expires.has_passed(now) {
                let gone = s.remove_slot(slot, h);
                self.publish_next_slot(shard, &s);
                drop(s);
                on_removed(&gone);
                return None;
            }
            return Some(f(&mut s.slots[slot], dir));
        }
        None
    }

    /// Look up a packet that opens a connection — a client's SYN, so an original,
    /// never a reply (a real server answers a SYN, it does not send one; this also
    /// keeps new flows off the one shard that every reply probe of a busy VIP:port
    /// would lock) — and, when it matches nothing, store the connection `create`
    /// makes for it (its original tuple must be `t`). The shard stays locked from
    /// the probe to the store, so two workers opening the same flow at once agree
    /// without probing twice. `create` runs under that lock and may take a
    /// persistence-table lock: the lock order is connection shard, then persistence
    /// shard, never the reverse. An expired entry met and an entry evicted to make
    /// room go to `on_removed` (under the lock).
    pub fn open<R, E>(
        &self,
        t: &Tuple,
        now: Time,
        mut on_removed: impl FnMut(&Conn),
        found: impl FnOnce(&mut Conn) -> R,
        create: impl FnOnce() -> Result<Conn, E>,
    ) -> Result<Opened<R>, E> {
        let (h, shard) = self.place(&t.src, t.sport, t.protocol);
        let mut s = self.lock_shard(shard);
        if let Some(slot) = s.find(h, Direction::Original, t) {
            if !s.slots[slot].expires.has_passed(now) {
                return Ok(Opened::Found(found(&mut s.slots[slot])));
            }
            on_removed(&s.remove_slot(slot, h));
            self.publish_next_slot(shard, &s);
        }
        let conn = create()?;
        debug_assert_eq!(conn.original_tuple(), *t);
        let (outcome, evicted) = self.make_room(&mut s, now);
        if let Some(gone) = &evicted {
            on_removed(gone);
        }
        s.store(conn, h);
        self.publish_next_slot(shard, &s);
        Ok(Opened::Created { conn, outcome })
    }

    /// Free a slot of a full shard by the eviction policy.
    fn make_room(&self, s: &mut Shard, now: Time) -> (Inserted, Option<Conn>) {
        if !s.free.is_empty() {
            return (Inserted::Free, None);
        }
        let victim = s.pick_victim(now);
        let victim_hash = self.hash_of(&s.slots[victim]);
        let gone = s.remove_slot(victim, victim_hash);
        let outcome = if gone.expires.has_passed(now) {
            Inserted::EvictedExpired
        } else {
            Inserted::EvictedLive
        };
        (outcome, Some(gone))
    }

    /// Store `conn` (its `expires` set by the caller) unless its flow is already there.
    pub fn insert(&self, conn: Conn, now: Time, on_evicted: impl FnOnce(&Conn)) -> InsertOutcome {
        let original = conn.original_tuple();
        let (h, shard) = self.place(&conn.client, conn.cport, conn.protocol);
        let mut s = self.lock_shard(shard);
        let outcome = if let Some(slot) = s.find(h, Direction::Original, &original) {
            let existing = s.slots[slot];
            if !existing.expires.has_passed(now) {
                return InsertOutcome::Existing(existing);
            }
            on_evicted(&s.remove_slot(slot, h));
            Inserted::EvictedExpired
        } else {
            let (outcome, evicted) = self.make_room(&mut s, now);
            if let Some(gone) = evicted {
                on_evicted(&gone);
            }
            outcome
        };
        s.store(conn, h);
        self.publish_next_slot(shard, &s);
        InsertOutcome::Stored(outcome)
    }

    /// Remove the entry of the flow whose client tuple is `original`.
    pub fn remove(&self, original: &Tuple) -> Option<Conn> {
        let (h, shard) = self.place(&original.src, original.sport, original.protocol);
        let mut s = self.lock_shard(shard);
        let slot = s.find(h, Direction::Original, original)?;
        let gone = s.remove_slot(slot, h);
        self.publish_next_slot(shard, &s);
        Some(gone)
    }

    /// The index hash of a stored connection (its client endpoint's).
    fn hash_of(&self, c: &Conn) -> u64 {
        endpoint_hash(&self.hasher, &c.client, c.cport, c.protocol)
    }

    /// Remove up to `budget` expired entries per shard (bounded work, from each shard's
    /// clock hand); `on_removed` sees each one. Returns how many were removed.
    pub fn sweep(&self, now: Time, budget: usize, mut on_removed: impl FnMut(&Conn)) -> usize {
        let mut removed = 0;
        for shard in 0..self.shards.len() {
            let mut s = self.lock_shard(shard);
            let n = s.slots.len();
            for _ in 0..budget.min(n) {
                let slot = s.hand;
                s.hand = (s.hand + 1) % n;
                let c = s.slots[slot];
                if c.is_used() && c.expires.has_passed(now) {
                    let gone = s.remove_slot(slot, self.hash_of(&c));
                    on_removed(&gone);
                    removed += 1;
                }
            }
            self.publish_next_slot(shard, &s);
        }
        removed
    }

    /// Remove every entry for which `keep` is false (e.g. connections of a removed real
    /// server under the "reset" reload policy); `on_removed` sees each one.
    pub fn retain(
        &self,
        mut keep: impl FnMut(&Conn) -> bool,
        mut on_removed: impl FnMut(&Conn),
    ) -> usize {
        let mut removed = 0;
        for shard in 0..self.shards.len() {
            let mut s = self.lock_shard(shard);
            for slot in 0..s.slots.len() {
                let c = s.slots[slot];
                if c.is_used() && !keep(&c) {
                    let gone = s.remove_slot(slot, self.hash_of(&c));
                    on_removed(&gone);
                    removed += 1;
                }
            }
            self.publish_next_slot(shard, &s);
        }
        removed
    }

    /// Visit every entry (listings); shards are locked one at a time.
    pub fn for_each(&self, mut f: impl FnMut(&Conn)) {
        for shard in self.shards.iter() {
            let s = lock(shard);
            s.slots.iter().filter(|c| c.is_used()).for_each(&mut f);
        }
    }
}

impl Shard {
    /// The slot of the connection whose tuple in direction `dir` is `t`; `h` is the
    /// hash of `t`'s client endpoint.
    #[inline]
    fn find(&self, h: u64, dir: Direction, t: &Tuple) -> Option<usize> {
        let want_reply = dir == Direction::Reply;
        self.index
            .find(h, |v| {
                let is_reply = v & REPLY_BIT != 0;
                is_reply == want_reply && self.slots[(v & !REPLY_BIT) as usize].matches(dir, t)
            })
            .map(|v| (v & !REPLY_BIT) as usize)
    }

    /// Store `conn` in a free slot (the caller made one free); `h`: its client
    /// endpoint's hash, under which both its keys are indexed.
    fn store(&mut self, conn: Conn, h: u64) {
        let Some(slot) = self.free.pop() else { return };
        self.slots[slot as usize] = conn;
        // The index has room for two keys per slot: these inserts cannot fail.
        self.index.insert(h, slot);
        if conn.is_nat() {
            self.index.insert(h, slot | REPLY_BIT);
        }
    }

    /// Free `slot`, whose connection's client endpoint hashes to `h`.
    fn remove_slot(&mut self, slot: usize, h: u64) -> Conn {
        let c = self.slots[slot];
        self.index.remove(h, slot as u32);
        if c.is_nat() {
            self.index.remove(h, slot as u32 | REPLY_BIT);
        }
        self.slots[slot] = Conn::EMPTY;
        self.free.push(slot as u32);
        c
    }

    /// Address of the slot the next [`Shard::store`] takes (of the last slot when
    /// none is free: an eviction frees one near the clock hand — any line will do
    /// for a hint).
    fn next_slot_addr(&self) -> usize {
        let slot = self.free.last().map_or(self.hand, |&s| s as usize);
        std::ptr::from_ref(&self.slots[slot.min(self.slots.len() - 1)]) as usize
    }

    /// Only called when the shard is full (every slot used).
    fn pick_victim(&mut self, now: Time) -> usize {
        let slots = &self.slots;
        pick_victim(&mut self.hand, slots.len(), |slot| {
            let d = slots[slot].expires;
            Some((d, d.has_passed(now)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::to_bytes;

    fn tuple(src: &str, sport: u16, dst: &str, dport: u16) -> Tuple {
        let s: std::net::IpAddr = src.parse().unwrap();
        Tuple {
            src: to_bytes(s),
            dst: to_bytes(dst.parse().unwrap()),
            sport,
            dport,
            protocol: 6,
            v6: s.is_ipv6(),
        }
    }

    fn conn(t: &Tuple, rs: &str, nat: bool, expires: u32) -> Conn {
        let mut c = Conn::new(
            t,
            to_bytes(rs.parse().unwrap()),
            8080,
            DestId(7),
            nat,
            ConnState::SynRecv,
        );
        c.expires = Time(expires);
        c
    }

    #[test]
    fn entry_is_64_bytes() {
        assert_eq!(std::mem::size_of::<Conn>(), 64);
    }

    #[test]
    fn nat_entry_found_from_both_directions() {
        let table = ConnTable::new(1024, 8, 1);
        let t = tuple("198.18.0.10", 40000, "198.18.1.1", 80);
        assert_eq!(
            table.insert(conn(&t, "198.19.0.2", true, 1000), Time(0), |_| {}),
            InsertOutcome::Stored(Inserted::Free)
        );
        let got = table.lookup(&t, Time(1), |_| {}, |c, d| (c.dest, d));
        assert_eq!(got, Some((DestId(7), Direction::Original)));
        let reply = tuple("198.19.0.2", 8080, "198.18.0.10", 40000);
        let got = table.lookup(&reply, Time(1), |_| {}, |c, d| (c.vport, d));
        assert_eq!(got, Some((80, Direction::Reply)));
        // An unrelated tuple misses.
        assert!(
            table
                .lookup(
                    &tuple("198.18.0.11", 40000, "198.18.1.1", 80),
                    Time(1),
                    |_| {},
                    |_, _| ()
                )
                .is_none()
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.remove(&t).map(|c| c.dest), Some(DestId(7)));
        assert!(table.lookup(&reply, Time(1), |_| {}, |_, _| ()).is_none());
        assert!(table.is_empty());
    }

    #[test]
    fn lookup_from_either_side_finds_the_same_entry() {
        let table = ConnTable::new(1024, 8, 1);
        let t = tuple("198.18.0.10", 40000, "198.18.1.1", 80);
        table.insert(conn(&t, "198.19.0.2", true, 1000), Time(0), |_| {});
        let reply = tuple("198.19.0.2", 8080, "198.18.0.10", 40000);
        for first in [Direction::Original, Direction::Reply] {
            let look = |t: &Tuple| table.lookup_from(first, t, Time(1), |_| {}, |_, d| d);
            assert_eq!(look(&t), Some(Direction::Original));
            assert_eq!(look(&reply), Some(Direction::Reply));
        }
    }

    #[test]
    fn dr_entry_has_no_reply_key() {
        let table = ConnTable::new(64, 1, 1);
        let t = tuple("2001:db8::10", 1234, "2001:db8:1::1", 443);
        table.insert(conn(&t, "2001:db8:2::5", false, 1000), Time(0), |_| {});
        let reply = tuple("2001:db8:2::5", 8080, "2001:db8::10", 1234);
        assert!(table.lookup(&reply, Time(1), |_| {}, |_, _| ()).is_none());
        assert!(table.lookup(&t, Time(1), |_| {}, |_, _| ()).is_some());
    }

    #[test]
    fn expired_entry_misses_and_is_removed() {
        let table = ConnTable::new(64, 2, 1);
        let t = tuple("198.18.0.10", 1, "198.18.1.1", 80);
        table.insert(conn(&t, "198.19.0.2", true, 100), Time(0), |_| {});
        let mut removed = 0;
        assert!(
            table
                .lookup(&t, Time(100), |_| removed += 1, |_, _| ())
                .is_none()
        );
        assert_eq!(removed, 1);
        assert!(table.is_empty());
    }

    #[test]
    fn duplicate_insert_returns_existing() {
        let table = ConnTable::new(64, 2, 1);
        let t = tuple("198.18.0.10", 1, "198.18.1.1", 80);
        table.insert(conn(&t, "198.19.0.2", true, 100), Time(0), |_| {});
        let mut other = conn(&t, "198.19.0.3", true, 100);
        other.dest = DestId(9);
        match table.insert(other, Time(0), |_| {}) {
            InsertOutcome::Existing(c) => assert_eq!(c.dest, DestId(7)),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn full_table_evicts_and_stays_bounded() {
        let table = ConnTable::new(64, 4, 1);
        let mut evicted = 0;
        for i in 0..1000u16 {
            let t = tuple("198.18.0.10", i, "198.18.1.1", 80);
            if let InsertOutcome::Stored(Inserted::EvictedLive) = table.insert(
                conn(&t, "198.19.0.2", true, 10_000 + u32::from(i)),
                Time(0),
                |_| {},
            ) {
                evicted += 1;
            }
        }
        assert_eq!(table.len(), 64);
        assert!(evicted >= 1000 - 64);
        // Every remaining entry is still findable from both sides (index consistent).
        let mut n = 0;
        let mut tuples = Vec::new();
        table.for_each(|c| tuples.push((c.original_tuple(), c.reply_tuple())));
        for (o, r) in tuples {
            assert!(table.lookup(&o, Time(1), |_| {}, |_, _| ()).is_some());
            assert!(table.lookup(&r, Time(1), |_| {}, |_, _| ()).is_some());
            n += 1;
        }
        assert_eq!(n, 64);
    }

    /// Records the addresses it is asked to prefetch.
    #[derive(Default)]
    struct Recorder(std::cell::RefCell<Vec<usize>>);

    impl Prefetch for Recorder {
        fn prefetch_addr(&self, addr: usize) {
            self.0.borrow_mut().push(addr);
        }
    }

    #[test]
    fn prefetch_names_the_lines_an_insert_and_its_lookups_use() {
        let table = ConnTable::new(4096, 4, 9);
        let t = tuple("198.18.0.10", 40000, "198.18.1.1", 80);
        let rec = Recorder::default();
        table.prefetch(&t, true, &rec);
        let seen = rec.0.into_inner();
        assert_eq!(seen.len(), 2, "original bucket, next slot");
        table.insert(conn(&t, "198.19.0.2", true, 1000), Time(0), |_| {});
        let (h, shard) = table.place(&t.src, t.sport, t.protocol);
        let s = lock(&table.shards[shard]);
        let slot = s.find(h, Direction::Original, &t).unwrap();
        // The slot the insert took is the one named, and so is the bucket that now
        // holds both keys.
        assert_eq!(seen[1], std::ptr::from_ref(&s.slots[slot]) as usize);
        assert_eq!(Some(seen[0]), s.index.bucket_addr_of(slot as u32));
        assert_eq!(
            Some(seen[0]),
            s.index.bucket_addr_of(slot as u32 | REPLY_BIT)
        );
        drop(s);
        // The reply bucket named is where the server's packets look: the bucket of
        // the client endpoint in the same shard, when the server answers.
        let back = tuple("198.19.0.2", 8080, "198.18.0.10", 40000);
        let rec = Recorder::default();
        table.prefetch(&back, false, &rec);
        let named = rec.0.into_inner();
        assert_eq!(named.len(), 2, "original bucket, reply bucket");
        assert_eq!(named[1], seen[0]);
    }

    #[test]
    fn open_finds_the_original_or_creates_once() {
        let table = ConnTable::new(1024, 8, 1);
        let t = tuple("198.18.0.10", 40000, "198.18.1.1", 80);
        let make = || Ok::<_, ()>(conn(&t, "198.19.0.2", true, 1000));
        let created = table.open(&t, Time(0), |_| {}, |_| unreachable!(), make);
        assert!(matches!(
            created,
            Ok(Opened::Created {
                outcome: Inserted::Free,
                ..
            })
        ));
        // The same SYN again: found, not created.
        let again = table.open(&t, Time(1), |_| {}, |c| c.dest, || Err(()));
        assert_eq!(again, Ok(Opened::Found(DestId(7))));
        // `create` refusing stores nothing.
        let other = tuple("198.18.0.11", 40000, "198.18.1.1", 80);
        let refused = table.open(&other, Time(1), |_| {}, |_| (), || Err("no"));
        assert_eq!(refused, Err("no"));
        assert_eq!(table.len(), 1);
        // An expired entry is reported and replaced.
        let mut gone = Vec::new();
        let replaced = table.open(
            &t,
            Time(5000),
            |c| gone.push(c.dest),
            |_| unreachable!(),
            || Ok::<_, ()>(conn(&t, "198.19.0.3", true, 9000)),
        );
        assert!(matches!(replaced, Ok(Opened::Created { .. })));
        assert_eq!(gone, vec![DestId(7)]);
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn concurrent_opens_of_one_flow_create_it_once() {
        let table = std::sync::Arc::new(ConnTable::new(1 << 14, 16, 3));
        let created: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..2)
                .map(|w| {
                    let table = table.clone();
                    scope.spawn(move || {
                        let mut created = 0;
                        for i in 0..5000u16 {
                            let t = tuple("198.18.0.10", i, "198.18.1.1", 80);
                            let rs = if w == 0 { "198.19.0.2" } else { "198.19.0.3" };
                            let opened = table.open(
                                &t,
                                Time(0),
                                |_| {},
                                |_| (),
                                || Ok::<_, ()>(conn(&t, rs, true, 1000)),
                            );
                            if let Ok(Opened::Created { .. }) = opened {
                                created += 1;
                            }
                        }
                        created
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(created, 5000);
        assert_eq!(table.len(), 5000);
    }

    #[test]
    fn sweep_and_retain() {
        let table = ConnTable::new(512, 2, 1);
        for i in 0..100u16 {
            let t = tuple("198.18.0.10", i, "198.18.1.1", 80);
            table.insert(
                conn(&t, "198.19.0.2", true, if i < 50 { 10 } else { 1000 }),
                Time(0),
                |_| {},
            );
        }
        let mut swept = 0;
        assert_eq!(table.sweep(Time(20), 1000, |_| swept += 1), 50);
        assert_eq!(swept, 50);
        assert_eq!(table.retain(|c| c.cport % 2 == 0, |_| {}), 25);
        assert_eq!(table.len(), 25);
    }
}
