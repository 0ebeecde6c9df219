//! Per-worker counters: plain integers owned by one worker, flushed to the control
//! side between batches (no atomics, no sharing on the hot path). Layer: pure core.
//!
//! Invariant: sized when the worker starts or takes a new snapshot, never on a packet.

use crate::addr::AddrBytes;
use crate::forward::verdict::DropReason;

/// Traffic of one real server as seen by one worker (IPVS `--stats` columns).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestTraffic {
    /// Connections scheduled to it.
    pub conns: u64,
    /// Packets client → server.
    pub in_packets: u64,
    /// Bytes client → server.
    pub in_bytes: u64,
    /// Packets server → client (NAT only).
    pub out_packets: u64,
    /// Bytes server → client.
    pub out_bytes: u64,
}

/// Addresses whose MAC was missing, for the control side to resolve (bounded).
pub const UNRESOLVED_SLOTS: usize = 16;

/// One worker's counters.
#[derive(Clone, Debug, Default)]
pub struct WorkerStats {
    /// Frames seen.
    pub rx_packets: u64,
    /// Bytes seen.
    pub rx_bytes: u64,
    /// Frames forwarded.
    pub forwarded: u64,
    /// Frames passed to the kernel.
    pub passed: u64,
    /// Drops by reason (index = `DropReason as usize`).
    pub drops: [u64; DropReason::COUNT],
    /// Connections created.
    pub conns_created: u64,
    /// Live connections evicted because a table shard was full.
    pub conns_evicted: u64,
    /// New connections placed by a persistence template.
    pub persist_reused: u64,
    /// Templates evicted because a shard was full.
    pub persist_evicted: u64,
    /// Fragments forwarded after their first fragment.
    pub fragments_forwarded: u64,
    /// Frames with a partial (offloaded) L4 checksum, completed in full.
    pub checksum_completed: u64,
    /// Per real server, indexed by `DestId`.
    pub dests: Vec<DestTraffic>,
    /// Hits per mark rule, indexed by rule number.
    pub rule_hits: Vec<u64>,
    /// Next hops to resolve: (address, is IPv6).
    pub unresolved: [Option<(AddrBytes, bool)>; UNRESOLVED_SLOTS],
}

impl WorkerStats {
    /// Counters sized for `dest_bound` real servers and `rules` mark rules.
    pub fn new(dest_bound: usize, rules: usize) -> Self {
        WorkerStats {
            dests: vec![DestTraffic::default(); dest_bound],
            rule_hits: vec![0; rules],
            ..Default::default()
        }
    }

    /// Drops under `reason`.
    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize]
    }

    /// Total drops.
    pub fn total_drops(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Remember an address to resolve (dropped silently when the slots are full: the
    /// drop itself is still counted, and the address will come back on the next miss).
    pub fn want_neighbour(&mut self, addr: AddrBytes, v6: bool) {
        if self
            .unresolved
            .iter()
            .flatten()
            .any(|&(a, f)| a == addr && f == v6)
        {
            return;
        }
        if let Some(slot) = self.unresolved.iter_mut().find(|s| s.is_none()) {
            *slot = Some((addr, v6));
        }
    }

    /// Add `other` into `self` (control-side aggregation).
    pub fn merge(&mut self, other: &WorkerStats) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.forwarded += other.forwarded;
        self.passed += other.passed;
        for (a, b) in self.drops.iter_mut().zip(other.drops.iter()) {
            *a += b;
        }
        self.conns_created += other.conns_created;
        self.conns_evicted += other.conns_evicted;
        self.persist_reused += other.persist_reused;
        self.persist_evicted += other.persist_evicted;
        self.fragments_forwarded += other.fragments_forwarded;
        self.checksum_completed += other.checksum_completed;
        if self.dests.len() < other.dests.len() {
            self.dests.resize(other.dests.len(), DestTraffic::default());
        }
        for (a, b) in self.dests.iter_mut().zip(other.dests.iter()) {
            a.conns += b.conns;
            a.in_packets += b.in_packets;
            a.in_bytes += b.in_bytes;
            a.out_packets += b.out_packets;
            a.out_bytes += b.out_bytes;
        }
        if self.rule_hits.len() < other.rule_hits.len() {
            self.rule_hits.resize(other.rule_hits.len(), 0);
        }
        for (a, b) in self.rule_hits.iter_mut().zip(other.rule_hits.iter()) {
            *a += b;
        }
    }
}
