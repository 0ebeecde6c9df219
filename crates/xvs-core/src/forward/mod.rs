//! `Director::process`: the per-frame decision — parse, mark rules, connection table,
//! persistence, scheduler — and the NAT / DR rewrite. Layer: pure core, hot path.
//!
//! Invariants:
//! - every frame gets exactly one [`Verdict`]; a drop is always counted under a
//!   [`DropReason`]; no input makes this code panic (fuzzed, see `fuzz/`);
//! - no heap allocation and no syscall per frame; the only locks are the shard locks of
//!   the shared tables ([`Shared`]);
//! - a steady packet of a connection whose plan sits in the worker's flow cache
//!   (`cache`) is recognised by the fixed-offset reader (`fast`) and rewritten by
//!   that plan, without the general parser or a shard lock; everything else:
//! - order of decisions: an existing connection (from either direction) first; else
//!   the mark rules (blocking, marks), then a new flow to a service (mark service,
//!   exact, all-ports — IPVS order), through a persistence template or the scheduler.
//!   Mark rules thus see the packets that open flows, like netfilter rules placed
//!   after the usual `ct state established accept`; when new rules arrive,
//!   [`Shared::purge_blocked`] removes the tracked connections they would drop, so a
//!   new blocking rule also cuts the flows already open;
//! - IPv4 and IPv6 fragments: the first fragment is classified like any packet and
//!   remembered by (source, destination, protocol, identification) for 30 s; later
//!   fragments follow it to the same real server, or are dropped as
//!   [`DropReason::UnknownFragment`] when their first fragment was not seen (or came
//!   after them). Fragments are not reassembled.
//! - NAT decrements the TTL / hop limit (it routes); DR does not (it bridges to the
//!   real server, like IPVS).

mod cache;
mod fast;
mod icmp;
pub mod rewrite;
pub mod stats;
pub mod verdict;

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;

use crate::addr::{AddrBytes, from_bytes, to_bytes};
use crate::classify::{Action, Classifier, IfaceId, PacketMeta};
use crate::conntrack::{
    Conn, ConnState, ConnTable, Direction, InsertOutcome, Opened, TcpFlags, Tuple, tcp_next,
};
use crate::net::{HopError, NetView};
use crate::persist::{PersistKey, PersistTable, Placement};
use crate::sched::Flow;
use crate::service::{DestCounters, DestId, Method, NextHop, ServiceLoads, ServiceTable};
pub use crate::table::Prefetch;
use crate::table::{Expiring, Inserted, ShardedTable};
use crate::time::Time;
use crate::wire::ip_proto::{ICMP, ICMPV6, TCP, UDP};
use crate::wire::tcp_flags::{ACK, SYN};
use crate::wire::{self, EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket, ethertype};
use rewrite::{End, IpInfo, Rewrite};
pub use stats::{DestTraffic, WorkerStats};
pub use verdict::{DropReason, Verdict};

/// How long a first fragment is remembered for its followers.
pub const FRAGMENT_TIMEOUT_MS: u32 = 30_000;

/// Sizes of the shared tables (fixed at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableSizes {
    /// Connection table capacity.
    pub conns: usize,
    /// Persistence template capacity.
    pub templates: usize,
    /// Fragment tracking capacity.
    pub fragments: usize,
    /// Shards per table (power of two).
    pub shards: usize,
    /// Upper bound of [`DestId`] values (sizes the shared counters).
    pub max_dests: usize,
    /// Flow cache entries per worker and address family (rounded up to a power of
    /// two, at least 4).
    pub flow_cache: usize,
    /// Seed of the internal table hashes.
    pub seed: u64,
}

impl Default for TableSizes {
    fn default() -> Self {
        TableSizes {
            conns: 1 << 20,
            templates: 1 << 18,
            fragments: 1 << 14,
            shards: 64,
            max_dests: 1 << 16,
            flow_cache: 1 << 16,
            seed: 0x7876_735f_7365_6564,
        }
    }
}

/// Key of a tracked fragment train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    src: AddrBytes,
    dst: AddrBytes,
    ident: u32,
    protocol: u8,
    v6: bool,
}

/// Where the rest of a fragment train goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragRoute {
    dest: DestId,
    direction: Direction,
    nat: bool,
    /// New destination (original direction) or source (reply direction) address.
    addr: AddrBytes,
    expires: Time,
}

impl Expiring for FragRoute {
    fn deadline(&self) -> Time {
        self.expires
    }
}

/// Tables shared by every worker (and read by the control side for listings).
#[derive(Debug)]
pub struct Shared {
    /// Connections.
    pub conns: ConnTable,
    /// Persistence templates.
    pub persist: PersistTable,
    /// First fragments seen.
    pub frags: ShardedTable<FragKey, FragRoute>,
    /// Live active/inactive counts per [`DestId`].
    pub counters: Box<[DestCounters]>,
    /// The sizes everything was made with.
    pub sizes: TableSizes,
}

impl Shared {
    /// Allocate every table at its fixed size.
    pub fn new(sizes: TableSizes) -> Shared {
        Shared {
            conns: ConnTable::new(sizes.conns, sizes.shards, sizes.seed),
            persist: PersistTable::new(sizes.templates, sizes.shards, sizes.seed ^ 1),
            frags: ShardedTable::new(sizes.fragments, sizes.shards.min(16), sizes.seed ^ 2),
            counters: (0..sizes.max_dests)
                .map(|_| DestCounters::default())
                .collect(),
            sizes,
        }
    }

    /// The live count (active or inactive, by `state`) of `dest`.
    fn count_of(&self, dest: DestId, state: ConnState) -> Option<&AtomicU32> {
        let c = self.counters.get(dest.0 as usize)?;
        Some(if state.is_active() {
            &c.active
        } else {
            &c.inactive
        })
    }

    /// Count a new connection in `state` for `dest`.
    fn conn_added(&self, dest: DestId, state: ConnState) {
        if let Some(n) = self.count_of(dest, state) {
            n.fetch_add(1, Relaxed);
        }
    }

    /// Move a connection between active and inactive when its state class changes.
    fn conn_changed(&self, dest: DestId, old: ConnState, new: ConnState) {
        if old.is_active() != new.is_active() {
            self.conn_removed(dest, old);
            self.conn_added(dest, new);
        }
    }

    /// Uncount a connection in `state` (never below zero).
    fn conn_removed(&self, dest: DestId, state: ConnState) {
        if let Some(n) = self.count_of(dest, state) {
            let _ = n.fetch_update(Relaxed, Relaxed, |v| v.checked_sub(1));
        }
    }

    /// Account for a connection that left the table (expired, evicted, flushed):
    /// its counter and the persistence template it held.
    pub fn conn_gone(&self, services: &ServiceTable, c: &Conn) {
        self.conn_removed(c.dest, c.state());
        if c.is_persistent() {
            self.release_template(services, c);
        }
    }

    /// Release the persistence template reference `c` took.
    fn release_template(&self, services: &ServiceTable, c: &Conn) {
        if let Some((s, _)) = services.dest(c.dest)
            && let Some(p) = s.persistence
        {
            self.persist
                .release(&PersistKey::new(s.scope, &c.client, c.is_v6(), p.prefix));
        }
    }

    /// Bounded housekeeping: expire up to `budget` slots per shard of each table
    /// (connections gone update their server's counters and template). Returns
    /// the number of entries removed.
    pub fn maintain(&self, services: &ServiceTable, now: Time, budget: usize) -> usize {
        self.conns
            .sweep(now, budget, |c| self.conn_gone(services, c))
            + self.persist.sweep(now, budget)
            + self.frags.sweep(now, budget, |_, _| {})
    }

    /// The sweep budget per shard that visits every slot of every table once in
    /// `passes` calls (e.g. 10 calls a second → each entry looked at every second).
    pub fn budget_for(sizes: &TableSizes, passes: usize) -> usize {
        let per_shard = sizes
            .conns
            .max(sizes.templates)
            .div_ceil(sizes.shards.max(1));
        // Connection shards carry index slack; round up generously.
        (per_shard * 2).div_ceil(passes.max(1))
    }

    /// Remove every connection whose client tuple or (NAT) reply tuple the rules of
    /// `snap` would drop on any of the director's interfaces (control side, after
    /// publishing a snapshot with new rules). Returns how many were removed.
    pub fn purge_blocked(&self, snap: &Snapshot) -> usize {
        let rules = &snap.rules;
        if rules.is_empty() {
            return 0;
        }
        let ifaces: Vec<IfaceId> = match snap.net.ifaces() {
            [] => vec![IfaceId(0)],
            list => list.iter().map(|i| i.id).collect(),
        };
        let dropped = |t: &Tuple| {
            ifaces
                .iter()
                .any(|&iface| rules.classify(&rule_meta(t, true, iface)).action == Action::Drop)
        };
        self.conns.retain(
            |c| !(dropped(&c.original_tuple()) || c.is_nat() && dropped(&c.reply_tuple())),
            |c| self.conn_gone(&snap.services, c),
        )
    }
}

/// How the packets of one direction of a connection leave: the rewrite and the next
/// hop, worked out from the connection and the snapshot once, then kept in the flow
/// cache for the connection's steady packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    dest: DestId,
    dir: Direction,
    iface: IfaceId,
    /// Destination and source MAC, as they sit at the start of the frame.
    macs: [u8; 12],
    rewrite: Rewrite,
}

/// What the control side publishes to the workers: services, mark rules and the
/// network view, replaced as a whole.
#[derive(Debug)]
pub struct Snapshot {
    /// Services and real servers.
    pub services: ServiceTable,
    /// Compiled mark rules.
    pub rules: Classifier,
    /// Interfaces, routes, neighbours.
    pub net: NetView,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            services: ServiceTable::default(),
            rules: Classifier::empty(),
            net: NetView::default(),
        }
    }
}

/// One worker's decision engine.
#[derive(Debug)]
pub struct Director {
    shared: Arc<Shared>,
    snap: Arc<Snapshot>,
    stats: WorkerStats,
    cache: cache::FlowCache,
}

/// A parsed frame: offsets into it and the fields the decision needs.
#[derive(Clone, Copy, Debug)]
struct Parsed {
    ip: IpInfo,
    /// Addresses, ports (0 without an L4 header), protocol, family.
    tuple: Tuple,
    tcp: TcpFlags,
    /// Identification of a fragment train (first or later fragment).
    frag_ident: Option<u32>,
    /// A non-first fragment (no L4 header).
    later_fragment: bool,
    /// ICMP / ICMPv6 error message.
    icmp_error: bool,
}

impl Parsed {
    /// A frame of the shape the fast reader accepts (no fragment, no ICMP error):
    /// its tuple, layout and TCP flags (0 for UDP).
    #[inline]
    fn plain(tuple: Tuple, ip: IpInfo, flags: u16) -> Parsed {
        Parsed {
            ip,
            tuple,
            tcp: TcpFlags::from_bits(flags),
            frag_ident: None,
            later_fragment: false,
            icmp_error: false,
        }
    }

    fn frag_key(&self) -> Option<FragKey> {
        Some(FragKey {
            src: self.tuple.src,
            dst: self.tuple.dst,
            ident: self.frag_ident?,
            protocol: self.ip.protocol,
            v6: self.ip.v6,
        })
    }
}

/// What the mark rules see of a packet with tuple `t` (ports only when it has them).
fn rule_meta(t: &Tuple, has_ports: bool, iface: IfaceId) -> PacketMeta {
    PacketMeta {
        src: from_bytes(&t.src, t.v6),
        dst: from_bytes(&t.dst, t.v6),
        protocol: t.protocol,
        ports: has_ports.then_some((t.sport, t.dport)),
        iface,
    }
}

fn wire_drop(e: wire::Error) -> Verdict {
    Verdict::Drop(match e {
        wire::Error::Truncated => DropReason::Truncated,
        wire::Error::Malformed => DropReason::Malformed,
    })
}

/// Parse Ethernet, IPv4/IPv6 (extension headers, fragments) and the L4 header.
/// `Err` carries the verdict for frames that go no further.
fn parse(frame: &[u8]) -> Result<Parsed, Verdict> {
    let eth = EthernetFrame::new_checked(frame).map_err(wire_drop)?;
    let l3 = eth.header_len();
    let (ip, src, dst, frag_ident, later) = match eth.ethertype() {
        ethertype::IPV4 => {
            let p = Ipv4Packet::new_checked(&frame[l3..]).map_err(wire_drop)?;
            if !p.verify_checksum() {
                return Err(Verdict::Drop(DropReason::BadIpChecksum));
            }
            let hl = p.header_len();
            let later = p.frag_offset() != 0;
            let fragment = later || p.more_frags();
            let ip = IpInfo {
                l3,
                l4: l3 + hl,
                l4_len: usize::from(p.total_len()) - hl,
                v6: false,
                protocol: p.protocol(),
                fragment,
                has_l4: false,
            };
            let ident = fragment.then(|| u32::from(p.ident()));
            (
                ip,
                to_bytes(p.src_addr().into()),
                to_bytes(p.dst_addr().into()),
                ident,
                later,
            )
        }
        ethertype::IPV6 => {
            let p = Ipv6Packet::new_checked(&frame[l3..]).map_err(wire_drop)?;
            let walk = p.walk_to_l4().map_err(wire_drop)?;
            let end = 40 + usize::from(p.payload_len());
            let (later, ident) = match walk.frag {
                Some(f) if f.offset != 0 => (true, Some(f.ident)),
                Some(f) if f.more => (false, Some(f.ident)),
                _ => (false, None),
            };
            let ip = IpInfo {
                l3,
                l4: l3 + walk.offset,
                l4_len: end.saturating_sub(walk.offset),
                v6: true,
                protocol: walk.protocol,
                fragment: ident.is_some(),
                has_l4: false,
            };
            (
                ip,
                p.src_addr().octets(),
                p.dst_addr().octets(),
                ident,
                later,
            )
        }
        _ => return Err(Verdict::Pass),
    };
    let mut parsed = Parsed {
        ip,
        tuple: Tuple {
            src,
            dst,
            sport: 0,
            dport: 0,
            protocol: ip.protocol,
            v6: ip.v6,
        },
        tcp: TcpFlags::default(),
        frag_ident,
        later_fragment: later,
        icmp_error: false,
    };
    if later {
        return Ok(parsed);
    }
    let l4 = &frame[ip.l4..ip.l4 + ip.l4_len];
    let rd = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    match ip.protocol {
        TCP => {
            let t = TcpPacket::new_checked(l4).map_err(wire_drop)?;
            parsed.tuple.sport = t.src_port();
            parsed.tuple.dport = t.dst_port();
            parsed.tcp = TcpFlags::from_bits(t.flags());
            parsed.ip.has_l4 = true;
        }
        UDP => {
            // Only the ports are needed; the UDP length may describe a whole
            // fragmented datagram, so it is not checked against this frame.
            if l4.len() < 8 {
                return Err(Verdict::Drop(DropReason::Truncated));
            }
            parsed.tuple.sport = rd(0);
            parsed.tuple.dport = rd(2);
            parsed.ip.has_l4 = true;
        }
        ICMP | ICMPV6 if (ip.protocol == ICMP) != ip.v6 => {
            if l4.len() < 8 {
                return Err(Verdict::Drop(DropReason::Truncated));
            }
            let kind = l4[0];
            parsed.icmp_error = if ip.v6 {
                (1..=4).contains(&kind)
            } else {
                matches!(kind, 3 | 4 | 5 | 11 | 12)
            };
        }
        _ => {}
    }
    Ok(parsed)
}

impl Director {
    /// A worker's engine over the shared tables and the current snapshot.
    pub fn new(shared: Arc<Shared>, snap: Arc<Snapshot>) -> Director {
        let stats = WorkerStats::new(snap.services.dest_id_bound(), snap.rules.rule_count());
        let cache = cache::FlowCache::new(shared.sizes.flow_cache, 0x0063_6163_6865);
        Director {
            shared,
            snap,
            stats,
            cache,
        }
    }

    /// Take a new snapshot (between batches). Sizes the per-rule counters and empties
    /// the flow cache.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) {
        self.stats.rule_hits.resize(snap.rules.rule_count(), 0);
        let dests = snap.services.dest_id_bound().max(self.stats.dests.len());
        self.stats.dests.resize(dests, DestTraffic::default());
        self.snap = snap;
        self.cache.clear();
    }

    /// The snapshot in use.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snap
    }

    /// The shared tables.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Counters since the last [`Director::take_stats`].
    pub fn stats(&self) -> &WorkerStats {
        &self.stats
    }

    /// Hand the counters to the control side and start again from zero, sized for
    /// the snapshot's real servers and rules (small: a few allocations per call).
    pub fn take_stats(&mut self) -> WorkerStats {
        let fresh = WorkerStats::new(
            self.snap.services.dest_id_bound(),
            self.snap.rules.rule_count(),
        );
        std::mem::replace(&mut self.stats, fresh)
    }

    /// Bounded housekeeping between batches: expire up to `budget` slots per shard of
    /// each table. Returns the number of entries removed.
    pub fn maintain(&mut self, now: Time, budget: usize) -> usize {
        self.shared.maintain(&self.snap.services, now, budget)
    }

    /// A first look at a frame about to be decided: `p` is shown what the decision
    /// will read — the flow-cache set of a steady packet; for a SYN, FIN or RST the
    /// connection table's index buckets (and, for a SYN, the slot a new entry would
    /// take). Called a few frames ahead of each frame's decision, so that the cache
    /// misses of several flows overlap.
    #[inline]
    pub fn prefetch(&self, frame: &[u8], p: &impl Prefetch) {
        let Some((tuple, _, flags)) = fast::segment(frame) else {
            return;
        };
        if fast::is_steady(flags) {
            self.cache.prefetch(&tuple, p);
        } else {
            // Connection lifecycle segments always consult the shared table.
            let opening = flags & (SYN | ACK) == SYN;
            self.shared.conns.prefetch(&tuple, opening, p);
        }
    }

    /// Decide a batch: `verdicts[i]` for `frames[i]` (frames rewritten in place).
    pub fn process_batch<F: AsMut<[u8]>>(
        &mut self,
        iface: IfaceId,
        now: Time,
        frames: &mut [F],
        verdicts: &mut [Verdict],
    ) {
        for (frame, verdict) in frames.iter_mut().zip(verdicts.iter_mut()) {
            *verdict = self.process(iface, now, frame.as_mut());
        }
    }

    /// Decide one frame received on `iface` at `now`; a forwarded frame is rewritten
    /// in place.
    #[inline]
    pub fn process(&mut self, iface: IfaceId, now: Time, frame: &mut [u8]) -> Verdict {
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += frame.len() as u64;
        let mut cx = Cx {
            cache: &mut self.cache,
            shared: &self.shared,
            snap: &self.snap,
            stats: &mut self.stats,
            now,
            len: frame.len() as u64,
        };
        let verdict = match fast::segment(frame) {
            Some((tuple, ip, flags)) => {
                // A packet of an established connection in the flow cache.
                if fast::is_steady(flags)
                    && let Some(plan) = cx.cache.get(&tuple, now)
                {
                    cx.apply(frame, &ip, None, &plan).unwrap_or_else(|v| v)
                } else {
                    // Known to the fast reader, so it needs no general parse (and
                    // the flow cache was just asked).
                    let p = Parsed::plain(tuple, ip, flags);
                    cx.decide_parsed(iface, frame, &p, false)
                }
            }
            None => cx.decide(iface, frame, true),
        };
        match verdict {
            Verdict::Forward { .. } => self.stats.forwarded += 1,
            Verdict::Pass => self.stats.passed += 1,
            Verdict::Drop(r) => self.stats.drops[r as usize] += 1,
        }
        verdict
    }
}

/// Move connection `c` on by a packet travelling `dir` (TCP state from its flags,
/// expiry from the new state's timeout); returns the updated entry, the direction
/// and the state before.
#[inline]
fn track(
    c: &mut Conn,
    dir: Direction,
    p: &Parsed,
    snap: &Snapshot,
    now: Time,
) -> (Conn, Direction, ConnState) {
    let old = c.state();
    let new = if p.ip.protocol == TCP {
        tcp_next(old, dir == Direction::Original, p.tcp)
    } else {
        old
    };
    c.set_state(new);
    let timeouts = snap
        .services
        .dest(c.dest)
        .map(|(s, _)| s.timeouts)
        .unwrap_or_default();
    c.expires = now.after_ms(timeouts.for_state_ms(new));
    (*c, dir, old)
}

/// Everything one decision needs, borrowed for the frame.
struct Cx<'a> {
    cache: &'a mut cache::FlowCache,
    shared: &'a Shared,
    snap: &'a Snapshot,
    stats: &'a mut WorkerStats,
    now: Time,
    len: u64,
}

type Step<T> = Result<T, Verdict>;

impl Cx<'_> {
    /// The general path; `try_cache`: the flow cache was not consulted yet (the
    /// fast path did not recognise the frame, e.g. VLAN-tagged or a first fragment).
    fn decide(&mut self, iface: IfaceId, frame: &mut [u8], try_cache: bool) -> Verdict {
        match parse(frame) {
            Ok(p) => self.decide_parsed(iface, frame, &p, try_cache),
            Err(v) => v,
        }
    }

    /// [`Cx::decide`] for a frame parsed already.
    fn decide_parsed(
        &mut self,
        iface: IfaceId,
        frame: &mut [u8],
        p: &Parsed,
        try_cache: bool,
    ) -> Verdict {
        match self.try_decide_parsed(iface, frame, p, try_cache) {
            Ok(v) | Err(v) => v,
        }
    }

    fn try_decide_parsed(
        &mut self,
        iface: IfaceId,
        frame: &mut [u8],
        p: &Parsed,
        try_cache: bool,
    ) -> Step<Verdict> {
        if p.later_fragment {
            return self.forward_fragment(frame, p);
        }
        if p.icmp_error {
            self.mark_rules(iface, p)?;
            return self.icmp_error(frame, p);
        }
        if !p.ip.has_l4 {
            self.mark_rules(iface, p)?;
            return Ok(Verdict::Pass);
        }
        let tuple = p.tuple;
        let now = self.now;
        let steady = p.ip.protocol == UDP || !(p.tcp.syn || p.tcp.fin || p.tcp.rst);
        if steady
            && try_cache
            && let Some(plan) = self.cache.get(&tuple, now)
        {
            return self.apply(frame, &p.ip, p.frag_key(), &plan);
        }
        if p.ip.protocol == TCP && p.tcp.syn && !p.tcp.ack {
            return self.open(iface, frame, p);
        }
        let (shared, snap) = (self.shared, self.snap);
        let mut expired = None;
        // A SYN-ACK only comes from a server: its reply key is tried first.
        let first = if p.ip.protocol == TCP && p.tcp.syn && p.tcp.ack {
            Direction::Reply
        } else {
            Direction::Original
        };
        let hit = shared.conns.lookup_from(
            first,
            &tuple,
            now,
            |gone| expired = Some(*gone),
            |c, dir| track(c, dir, p, snap, now),
        );
        if let Some(gone) = expired {
            shared.conn_gone(&snap.services, &gone);
        }
        match hit {
            Some((conn, dir, old)) => self.known(frame, p, conn, dir, old, steady),
            None => {
                let mark = self.mark_rules(iface, p)?;
                self.new_flow(frame, p, mark, steady)
            }
        }
    }

    /// A packet of stored connection `conn` (in state `old` before this packet),
    /// travelling `dir`: forward it by the connection's plan (and cache the plan for
    /// the `steady` packets that follow).
    fn known(
        &mut self,
        frame: &mut [u8],
        p: &Parsed,
        conn: Conn,
        dir: Direction,
        old: ConnState,
        steady: bool,
    ) -> Step<Verdict> {
        self.shared.conn_changed(conn.dest, old, conn.state());
        if old != conn.state() {
            // The packets that follow must see the new state (e.g. the last
            // ACK of a close), not a plan cached while it was established.
            self.cache.forget(&conn.original_tuple());
            self.cache.forget(&conn.reply_tuple());
        }
        self.follow(frame, p, &conn, dir, steady)
    }

    /// Forward a packet travelling `dir` on connection `conn` by the connection's
    /// plan (cached for the `steady` packets that follow).
    fn follow(
        &mut self,
        frame: &mut [u8],
        p: &Parsed,
        conn: &Conn,
        dir: Direction,
        steady: bool,
    ) -> Step<Verdict> {
        let plan = self.plan(conn, dir)?;
        if steady {
            self.cache
                .put(&p.tuple, &plan, conn.state(), self.now, conn.expires);
        }
        self.apply(frame, &p.ip, p.frag_key(), &plan)
    }

    /// A client's SYN: its connection is looked up (as an original only) and, when
    /// there is none, placed and stored under one connection-shard lock
    /// (`ConnTable::open`).
    fn open(&mut self, iface: IfaceId, frame: &mut [u8], p: &Parsed) -> Step<Verdict> {
        let (shared, snap, now) = (self.shared, self.snap, self.now);
        let opened = shared.conns.open(
            &p.tuple,
            now,
            |gone| shared.conn_gone(&snap.services, gone),
            |c| track(c, Direction::Original, p, snap, now),
            || {
                let mark = self.mark_rules(iface, p)?;
                self.choose(p, mark)
            },
        )?;
        match opened {
            Opened::Found((conn, dir, old)) => self.known(frame, p, conn, dir, old, false),
            Opened::Created { conn, outcome } => self.created(frame, p, conn, outcome, false),
        }
    }

    /// Apply the mark rules: `Err` for a blocked packet, else the mark (0 = none).
    #[inline]
    fn mark_rules(&mut self, iface: IfaceId, p: &Parsed) -> Step<u32> {
        let rules = &self.snap.rules;
        if rules.is_empty() {
            return Ok(0);
        }
        let d = rules.classify(&rule_meta(&p.tuple, p.ip.has_l4, iface));
        if let Some(hits) = d
            .rule
            .and_then(|r| self.stats.rule_hits.get_mut(r as usize))
        {
            *hits += 1;
        }
        match d.action {
            Action::Drop => Err(Verdict::Drop(DropReason::Blocked)),
            Action::Mark(m) => Ok(m),
            Action::Accept => Ok(0),
        }
    }

    /// A packet of no known connection: find its service and place it (and, for a
    /// `steady` packet — UDP — cache the plan for the packets that follow).
    fn new_flow(&mut self, frame: &mut [u8], p: &Parsed, mark: u32, steady: bool) -> Step<Verdict> {
        let (shared, snap, now) = (self.shared, self.snap, self.now);
        let conn = self.choose(p, mark)?;
        let mut evicted = None;
        let outcome = shared.conns.insert(conn, now, |g| evicted = Some(*g));
        if let Some(g) = evicted {
            shared.conn_gone(&snap.services, &g);
        }
        match outcome {
            InsertOutcome::Stored(outcome) => self.created(frame, p, conn, outcome, steady),
            InsertOutcome::Existing(c) => {
                // Another worker placed this flow first: follow its choice.
                if conn.is_persistent() {
                    shared.release_template(&snap.services, &conn);
                }
                self.follow(frame, p, &c, Direction::Original, steady)
            }
        }
    }

    /// The connection a first packet opens: its service (none: the packet is not
    /// ours), its real server (through a persistence template or the scheduler) and
    /// its first state. A template taken here is held by the returned connection.
    fn choose(&mut self, p: &Parsed, mark: u32) -> Step<Conn> {
        let (shared, snap, now) = (self.shared, self.snap, self.now);
        let v6 = p.ip.v6;
        let Some(svc) = snap
            .services
            .lookup(mark, p.ip.protocol, &p.tuple.dst, v6, p.tuple.dport)
        else {
            return Err(Verdict::Pass);
        };
        let state = match p.ip.protocol {
            TCP if p.tcp.rst => return Err(Verdict::Drop(DropReason::NoConnection)),
            TCP if p.tcp.syn && !p.tcp.ack => ConnState::SynRecv,
            TCP if svc.sloppy_tcp => ConnState::Established,
            TCP => return Err(Verdict::Drop(DropReason::NoConnection)),
            _ => ConnState::Udp,
        };
        let flow = Flow {
            src: from_bytes(&p.tuple.src, v6),
            src_port: p.tuple.sport,
            dst: from_bytes(&p.tuple.dst, v6),
            dst_port: p.tuple.dport,
            protocol: p.ip.protocol,
        };
        let loads = ServiceLoads {
            service: svc,
            counters: &shared.counters,
        };
        let schedule = || {
            svc.scheduler
                .select(&flow, &loads)
                .map(|i| svc.dests[svc.active[i] as usize].id)
        };
        let (dest, persistent) = match svc.persistence {
            Some(per) => {
                let key = PersistKey::new(svc.scope, &p.tuple.src, v6, per.prefix);
                let usable = |d: DestId| {
                    snap.services
                        .dest(d)
                        .is_some_and(|(s, rs)| s.id == svc.id && s.template_usable(rs))
                };
                match shared.persist.place(
                    &key,
                    now,
                    per.timeout_secs.saturating_mul(1000),
                    usable,
                    schedule,
                ) {
                    Placement::Reused(d) => {
                        self.stats.persist_reused += 1;
                        (d, true)
                    }
                    Placement::Bound(d, outcome) => {
                        if outcome == Inserted::EvictedLive {
                            self.stats.persist_evicted += 1;
                        }
                        (d, true)
                    }
                    Placement::NoServer => return Err(Verdict::Drop(DropReason::NoServer)),
                }
            }
            None => (
                schedule().ok_or(Verdict::Drop(DropReason::NoServer))?,
                false,
            ),
        };
        let Some((_, rs)) = snap.services.dest(dest) else {
            return Err(Verdict::Drop(DropReason::DestGone));
        };
        let mut conn = Conn::new(
            &p.tuple,
            to_bytes(rs.addr),
            rs.port.unwrap_or(p.tuple.dport),
            dest,
            rs.method == Method::Nat,
            state,
        );
        conn.set_persistent(persistent);
        conn.expires = now.after_ms(svc.timeouts.for_state_ms(state));
        Ok(conn)
    }

    /// Account for connection `conn`, just stored (`outcome`: how its slot was
    /// found), and forward its first packet.
    fn created(
        &mut self,
        frame: &mut [u8],
        p: &Parsed,
        conn: Conn,
        outcome: Inserted,
        steady: bool,
    ) -> Step<Verdict> {
        self.shared.conn_added(conn.dest, conn.state());
        self.stats.conns_created += 1;
        if let Some(t) = self.stats.dests.get_mut(conn.dest.0 as usize) {
            t.conns += 1;
        }
        if outcome == Inserted::EvictedLive {
            self.stats.conns_evicted += 1;
        }
        self.follow(frame, p, &conn, Direction::Original, steady)
    }

    /// How packets travelling `dir` on connection `c` leave (fails when the next hop
    /// is unknown or the real server is gone).
    fn plan(&mut self, c: &Conn, dir: Direction) -> Step<Plan> {
        let hop = self.hop(dir, c.dest, &c.client, c.is_v6())?;
        let (arriving, nat) = match dir {
            Direction::Original => (c.original_tuple(), (End::Dst, c.daddr, c.dport)),
            Direction::Reply => (c.reply_tuple(), (End::Src, c.vaddr, c.vport)),
        };
        let mut macs = [0; 12];
        macs[..6].copy_from_slice(&hop.mac);
        macs[6..].copy_from_slice(&self.snap.net.iface_mac(hop.iface));
        Ok(Plan {
            dest: c.dest,
            dir,
            iface: hop.iface,
            macs,
            rewrite: Rewrite::new(&arriving, c.is_nat().then_some(nat)),
        })
    }

    /// Rewrite a packet of a known connection by its plan and send it on; a first
    /// fragment (`frag`) leaves the way for its followers.
    #[inline]
    fn apply(
        &mut self,
        frame: &mut [u8],
        ip: &IpInfo,
        frag: Option<FragKey>,
        plan: &Plan,
    ) -> Step<Verdict> {
        if plan.rewrite.apply(frame, ip).map_err(Verdict::Drop)? {
            self.stats.checksum_completed += 1;
        }
        frame[..12].copy_from_slice(&plan.macs);
        if let Some(key) = frag {
            let nat = plan.rewrite.nat;
            let route = FragRoute {
                dest: plan.dest,
                direction: plan.dir,
                nat: nat.is_some(),
                addr: nat.map(|n| n.addr).unwrap_or_default(),
                expires: self.now.after_ms(FRAGMENT_TIMEOUT_MS),
            };
            self.shared
                .frags
                .with_shard(&key, |s| s.insert(key, route, self.now, |_, _| {}));
        }
        if let Some(t) = self.stats.dests.get_mut(plan.dest.0 as usize) {
            if plan.dir == Direction::Original {
                t.in_packets += 1;
                t.in_bytes += self.len;
            } else {
                t.out_packets += 1;
                t.out_bytes += self.len;
            }
        }
        Ok(Verdict::Forward { iface: plan.iface })
    }

    /// A non-first fragment: follow its first fragment, or drop.
    fn forward_fragment(&mut self, frame: &mut [u8], p: &Parsed) -> Step<Verdict> {
        let Some(key) = p.frag_key() else {
            return Err(Verdict::Drop(DropReason::UnknownFragment));
        };
        let now = self.now;
        let route = self.shared.frags.with_shard(&key, |s| {
            s.get_mut(&key).filter(|r| !r.is_expired(now)).copied()
        });
        let Some(r) = route else {
            return Err(Verdict::Drop(DropReason::UnknownFragment));
        };
        let hop = self.hop(r.direction, r.dest, &p.tuple.dst, p.ip.v6)?;
        if r.nat {
            rewrite::decrement_ttl(frame, &p.ip).map_err(Verdict::Drop)?;
            let end = if r.direction == Direction::Original {
                End::Dst
            } else {
                End::Src
            };
            rewrite::rewrite_end(frame, &p.ip, end, &r.addr, None);
        }
        rewrite::set_macs(frame, self.snap.net.iface_mac(hop.iface), hop.mac);
        self.stats.fragments_forwarded += 1;
        Ok(Verdict::Forward { iface: hop.iface })
    }

    /// Where a packet travelling `dir` on a connection goes: to the real server
    /// `dest`, or back to the client.
    fn hop(&mut self, dir: Direction, dest: DestId, client: &AddrBytes, v6: bool) -> Step<NextHop> {
        match dir {
            Direction::Original => self.dest_hop(dest),
            Direction::Reply => self.route(client, v6),
        }
    }

    /// The next hop of a real server.
    fn dest_hop(&mut self, dest: DestId) -> Step<NextHop> {
        let Some((_, rs)) = self.snap.services.dest(dest) else {
            return Err(Verdict::Drop(DropReason::DestGone));
        };
        match rs.next_hop {
            Some(h) => Ok(h),
            None => {
                self.stats
                    .want_neighbour(to_bytes(rs.addr), rs.addr.is_ipv6());
                Err(Verdict::Drop(DropReason::NeighbourUnresolved))
            }
        }
    }

    /// The next hop towards a client (NAT replies).
    fn route(&mut self, dst: &AddrBytes, v6: bool) -> Step<NextHop> {
        self.snap.net.next_hop(dst, v6).map_err(|e| match e {
            HopError::NoRoute => Verdict::Drop(DropReason::NoRoute),
            HopError::Unresolved(a, f) => {
                self.stats.want_neighbour(a, f);
                Verdict::Drop(DropReason::NeighbourUnresolved)
            }
        })
    }
}

#[cfg(test)]
mod tests;
