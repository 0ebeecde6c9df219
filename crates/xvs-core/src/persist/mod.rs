//! The persistence table (IPVS "templates"): a client that returns within the
//! service's persistence timeout goes to the same real server. Layer: pure core.
//!
//! Invariants:
//! - key = (scope, client address masked by the service's granularity); the scope is
//!   the service, or the firewall mark for mark services, so that all ports of a mark
//!   group (e.g. 80 and 443) share one template per client;
//! - a template counts the connections it controls; it does not expire while that
//!   count is non-zero (IPVS re-arms such templates), and it is refreshed to
//!   `now + timeout` whenever it places a new connection;
//! - expiry is lazy on lookup plus bounded sweeps; a full shard evicts by the
//!   [`crate::table`] policy; a template whose server is no longer usable is dropped on
//!   lookup and the scheduler chooses again.

use crate::addr::{AddrBytes, mask};
use crate::service::DestId;
use crate::table::{Expiring, Inserted, ShardedTable};
use crate::time::Time;

/// What a template is shared by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One virtual service (its stable id).
    Service(u32),
    /// Every service of a firewall mark.
    Mark(u32),
}

/// Key of a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PersistKey {
    /// Service or mark.
    pub scope: Scope,
    /// Client address, masked.
    pub client: AddrBytes,
    /// IPv6 client.
    pub v6: bool,
}

impl PersistKey {
    /// The key for `client` under `scope`, masked to `prefix` bits (IPv4 netmask as a
    /// prefix length, or IPv6 prefix length).
    pub fn new(scope: Scope, client: &AddrBytes, v6: bool, prefix: u8) -> PersistKey {
        PersistKey {
            scope,
            client: mask(client, v6, prefix),
            v6,
        }
    }
}

/// A template: the chosen real server, its expiry and how many connections it controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    /// The real server.
    pub dest: DestId,
    /// Expiry (meaningful once `controlled` is 0).
    pub expires: Time,
    /// Live connections placed through this template.
    pub controlled: u32,
}

impl Expiring for Template {
    fn deadline(&self) -> Time {
        self.expires
    }
    fn is_expired(&self, now: Time) -> bool {
        self.controlled == 0 && self.expires.has_passed(now)
    }
}

/// How a new connection got its real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// From a live template (the scheduler was bypassed).
    Reused(DestId),
    /// The scheduler chose; a template now records the choice.
    Bound(DestId, Inserted),
    /// The template was unusable or absent and the scheduler found no server.
    NoServer,
}

/// The sharded persistence table.
#[derive(Debug)]
pub struct PersistTable {
    table: ShardedTable<PersistKey, Template>,
}

impl PersistTable {
    /// A table of at most `capacity` templates.
    pub fn new(capacity: usize, shards: usize, seed: u64) -> PersistTable {
        PersistTable {
            table: ShardedTable::new(capacity, shards, seed),
        }
    }

    /// Place a new connection of `key`'s client: reuse a live template whose server
    /// `usable` accepts, else ask `schedule` and record its choice. Either way the
    /// template now controls one more connection and expires at `now + timeout_ms`
    /// at the earliest. Runs under the shard lock, so two workers placing the same
    /// client at once agree.
    pub fn place(
        &self,
        key: &PersistKey,
        now: Time,
        timeout_ms: u32,
        usable: impl Fn(DestId) -> bool,
        schedule: impl FnOnce() -> Option<DestId>,
    ) -> Placement {
        self.table.with_shard(key, |shard| {
            if let Some(t) = shard.get_mut(key) {
                if !t.is_expired(now) && usable(t.dest) {
                    t.controlled = t.controlled.saturating_add(1);
                    t.expires = now.after_ms(timeout_ms);
                    return Placement::Reused(t.dest);
                }
                shard.remove(key);
            }
            let Some(dest) = schedule() else {
                return Placement::NoServer;
            };
            let t = Template {
                dest,
                expires: now.after_ms(timeout_ms),
                controlled: 1,
            };
            Placement::Bound(dest, shard.insert(*key, t, now, |_, _| {}))
        })
    }

    /// A connection placed through `key` has ended.
    pub fn release(&self, key: &PersistKey) {
        self.table.with_shard(key, |shard| {
            if let Some(t) = shard.get_mut(key) {
                t.controlled = t.controlled.saturating_sub(1);
            }
        });
    }

    /// The template of `key`, if stored.
    pub fn get(&self, key: &PersistKey) -> Option<Template> {
        self.table.with_shard(key, |s| s.get_mut(key).copied())
    }

    /// Remove up to `budget` expired templates per shard.
    pub fn sweep(&self, now: Time, budget: usize) -> usize {
        self.table.sweep(now, budget, |_, _| {})
    }

    /// Drop every template pointing to a server for which `gone` is true (a removed
    /// server, or a quiescent one under `expire_quiescent_template`).
    pub fn forget_dests(&self, gone: impl Fn(DestId) -> bool) -> usize {
        self.table.retain(|_, t| !gone(t.dest))
    }

    /// Visit every template (for `xvs list --persistent`).
    pub fn for_each(&self, f: impl FnMut(&PersistKey, &Template)) {
        self.table.for_each(f)
    }

    /// Templates stored.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::to_bytes;

    fn key(ip: &str, prefix: u8) -> PersistKey {
        let a: std::net::IpAddr = ip.parse().unwrap();
        PersistKey::new(Scope::Service(1), &to_bytes(a), a.is_ipv6(), prefix)
    }

    #[test]
    fn same_subnet_reuses_until_timeout() {
        let p = PersistTable::new(1024, 4, 9);
        let k1 = key("198.18.5.1", 24);
        let k2 = key("198.18.5.200", 24);
        assert_eq!(k1, k2);
        assert_eq!(
            p.place(&k1, Time(0), 300, |_| true, || Some(DestId(1))),
            Placement::Bound(DestId(1), Inserted::Free)
        );
        assert_eq!(
            p.place(&k2, Time(10), 300, |_| true, || Some(DestId(2))),
            Placement::Reused(DestId(1))
        );
        p.release(&k1);
        p.release(&k2);
        // Expired (310 + nothing controlled) → the scheduler chooses again.
        assert_eq!(
            p.place(&k1, Time(311), 300, |_| true, || Some(DestId(2))),
            Placement::Bound(DestId(2), Inserted::Free)
        );
        // Another /24 is independent.
        assert_eq!(
            p.place(
                &key("198.18.6.1", 24),
                Time(311),
                300,
                |_| true,
                || Some(DestId(3))
            ),
            Placement::Bound(DestId(3), Inserted::Free)
        );
    }

    #[test]
    fn controlled_template_outlives_its_timeout() {
        let p = PersistTable::new(64, 1, 9);
        let k = key("2001:db8:1:2::9", 64);
        p.place(&k, Time(0), 100, |_| true, || Some(DestId(4)));
        assert_eq!(
            p.place(&k, Time(1000), 100, |_| true, || Some(DestId(5))),
            Placement::Reused(DestId(4))
        );
        assert_eq!(p.sweep(Time(5000), 64), 0);
        p.release(&k);
        p.release(&k);
        assert_eq!(p.sweep(Time(5000), 64), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn unusable_server_is_rescheduled() {
        let p = PersistTable::new(64, 1, 9);
        let k = key("198.18.5.1", 24);
        p.place(&k, Time(0), 100, |_| true, || Some(DestId(4)));
        assert_eq!(
            p.place(&k, Time(1), 100, |d| d != DestId(4), || Some(DestId(5))),
            Placement::Bound(DestId(5), Inserted::Free)
        );
        assert_eq!(p.get(&k).unwrap().controlled, 1);
        assert_eq!(
            p.place(&key("198.18.9.1", 24), Time(1), 100, |_| true, || None),
            Placement::NoServer
        );
        assert_eq!(p.forget_dests(|d| d == DestId(5)), 1);
    }
}
