//! The connection table: every flow the director forwards, shared by all workers.
//! Layer: pure core data structure (callers pass `now`; no clock, no threads).
//!
//! Invariants:
//! - an entry is one [`Conn`] of at most 64 bytes (asserted at compile time), stored in
//!   a fixed slab per shard; the hash index holds slot numbers (4 bytes per key, sized
//!   so that it never grows: about 87 bytes per connection in all);
//! - a NAT entry is indexed under two keys — the client's packet tuple (client → VIP)
//!   and the real server's reply tuple (real server → client) — a DR entry under the
//!   first only (DR replies bypass the director);
//! - an entry lives in the shard chosen by its *client* endpoint, which both tuples
//!   contain, so one shard lock covers both keys: a lookup tries the packet as an
//!   original (client = source) and then as a reply (client = destination);
//! - capacity is fixed at construction; a full shard evicts expired entries first,
//!   then the entry closest to expiry within a bounded window (counted by the caller
//!   through the returned [`Inserted`]); nothing grows in steady state.

pub mod state;

use std::hash::BuildHasher;
use std::sync::Mutex;

use hashbrown::HashTable;

use crate::addr::AddrBytes;
use crate::service::DestId;
use crate::table::{Inserted, TableHasher, lock, pick_victim, shard_layout, shard_of};
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

/// One tracked connection (64 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
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

const _: () = assert!(std::mem::size_of::<Conn>() <= 64);

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

const REPLY_BIT: u32 = 1 << 31;

/// Index capacity per slot: two keys (NAT) at most half full, so that hashbrown
/// always rehashes tombstones in place instead of growing (no allocation after
/// construction; the no-allocation test churns the table to prove it).
const INDEX_SLACK: usize = 4;

#[derive(Debug)]
struct Shard {
    slots: Vec<Conn>,
    index: HashTable<u32>,
    free: Vec<u32>,
    hand: usize,
}

/// The sharded connection table.
#[derive(Debug)]
pub struct ConnTable {
    shards: Box<[Mutex<Shard>]>,
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
        let shards = (0..n)
            .map(|_| {
                Mutex::new(Shard {
                    slots: vec![Conn::EMPTY; per],
                    index: HashTable::with_capacity(per * INDEX_SLACK),
                    free: (0..per as u32).rev().collect(),
                    hand: 0,
                })
            })
            .collect();
        ConnTable {
            shards,
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

    fn shard_for(&self, addr: &AddrBytes, port: u16, protocol: u8) -> &Mutex<Shard> {
        let h = endpoint_hash(&self.hasher, addr, port, protocol);
        &self.shards[shard_of(h, self.shard_shift)]
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
        let key_hash = self.hasher.hash_one(t);
        let mut on_removed = on_removed;
        for dir in [Direction::Original, Direction::Reply] {
            let (addr, port) = match dir {
                Direction::Original => (&t.src, t.sport),
                Direction::Reply => (&t.dst, t.dport),
            };
            let mut s = lock(self.shard_for(addr, port, t.protocol));
            let Some(slot) = s.find(key_hash, dir, t) else {
                continue;
            };
            if s.slots[slot].expires.has_passed(now) {
                let gone = s.remove_slot(slot, &self.hasher);
                drop(s);
                on_removed(&gone);
                return None;
            }
            return Some(f(&mut s.slots[slot], dir));
        }
        None
    }

    /// Store `conn` (its `expires` set by the caller) unless its flow is already there.
    pub fn insert(&self, conn: Conn, now: Time, on_evicted: impl FnOnce(&Conn)) -> InsertOutcome {
        let original = conn.original_tuple();
        let key_hash = self.hasher.hash_one(original);
        let mut s = lock(self.shard_for(&conn.client, conn.cport, conn.protocol));
        if let Some(slot) = s.find(key_hash, Direction::Original, &original) {
            let existing = s.slots[slot];
            if !existing.expires.has_passed(now) {
                return InsertOutcome::Existing(existing);
            }
            let gone = s.remove_slot(slot, &self.hasher);
            on_evicted(&gone);
            s.store(conn, &self.hasher);
            return InsertOutcome::Stored(Inserted::EvictedExpired);
        }
        let mut outcome = Inserted::Free;
        if s.free.is_empty() {
            let victim = s.pick_victim(now);
            let gone = s.remove_slot(victim, &self.hasher);
            outcome = if gone.expires.has_passed(now) {
                Inserted::EvictedExpired
            } else {
                Inserted::EvictedLive
            };
            on_evicted(&gone);
        }
        s.store(conn, &self.hasher);
        InsertOutcome::Stored(outcome)
    }

    /// Remove the entry of the flow whose client tuple is `original`.
    pub fn remove(&self, original: &Tuple) -> Option<Conn> {
        let key_hash = self.hasher.hash_one(original);
        let mut s = lock(self.shard_for(&original.src, original.sport, original.protocol));
        let slot = s.find(key_hash, Direction::Original, original)?;
        Some(s.remove_slot(slot, &self.hasher))
    }

    /// Remove up to `budget` expired entries per shard (bounded work, from each shard's
    /// clock hand); `on_removed` sees each one. Returns how many were removed.
    pub fn sweep(&self, now: Time, budget: usize, mut on_removed: impl FnMut(&Conn)) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            let n = s.slots.len();
            for _ in 0..budget.min(n) {
                let slot = s.hand;
                s.hand = (s.hand + 1) % n;
                let c = s.slots[slot];
                if c.is_used() && c.expires.has_passed(now) {
                    let gone = s.remove_slot(slot, &self.hasher);
                    on_removed(&gone);
                    removed += 1;
                }
            }
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
        for shard in self.shards.iter() {
            let mut s = lock(shard);
            for slot in 0..s.slots.len() {
                let c = s.slots[slot];
                if c.is_used() && !keep(&c) {
                    let gone = s.remove_slot(slot, &self.hasher);
                    on_removed(&gone);
                    removed += 1;
                }
            }
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
    #[inline]
    fn find(&self, key_hash: u64, dir: Direction, t: &Tuple) -> Option<usize> {
        let want_reply = dir == Direction::Reply;
        self.index
            .find(key_hash, |&v| {
                let is_reply = v & REPLY_BIT != 0;
                is_reply == want_reply && self.slots[(v & !REPLY_BIT) as usize].matches(dir, t)
            })
            .map(|&v| (v & !REPLY_BIT) as usize)
    }

    fn rehash(slots: &[Conn], hasher: &TableHasher, v: u32) -> u64 {
        let c = &slots[(v & !REPLY_BIT) as usize];
        let t = if v & REPLY_BIT != 0 {
            c.reply_tuple()
        } else {
            c.original_tuple()
        };
        hasher.hash_one(t)
    }

    fn store(&mut self, conn: Conn, hasher: &TableHasher) {
        let Some(slot) = self.free.pop() else { return };
        self.slots[slot as usize] = conn;
        let slots = &self.slots;
        let h = hasher.hash_one(conn.original_tuple());
        self.index
            .insert_unique(h, slot, |&v| Self::rehash(slots, hasher, v));
        if conn.is_nat() {
            let h = hasher.hash_one(conn.reply_tuple());
            self.index
                .insert_unique(h, slot | REPLY_BIT, |&v| Self::rehash(slots, hasher, v));
        }
    }

    fn remove_slot(&mut self, slot: usize, hasher: &TableHasher) -> Conn {
        let c = self.slots[slot];
        let h = hasher.hash_one(c.original_tuple());
        if let Ok(e) = self.index.find_entry(h, |&v| v == slot as u32) {
            e.remove();
        }
        if c.is_nat() {
            let h = hasher.hash_one(c.reply_tuple());
            if let Ok(e) = self.index.find_entry(h, |&v| v == slot as u32 | REPLY_BIT) {
                e.remove();
            }
        }
        self.slots[slot] = Conn::EMPTY;
        self.free.push(slot as u32);
        c
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
