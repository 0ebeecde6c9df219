//! The service table: an immutable snapshot of virtual services and their real
//! servers, built by the control thread and only read by workers. Layer: pure core.
//!
//! Invariants:
//! - services are found by firewall mark (when the packet carries one), then by
//!   (protocol, VIP, port), then by (protocol, VIP, port 0 = all ports) — IPVS order;
//! - a service's scheduler was built over its *eligible* servers: primaries that are
//!   up with weight > 0; when none is, its backups; when the quorum is lost, its sorry
//!   server alone. Quiescent (weight 0), drained, down and removed servers get no new
//!   flows, but their established connections keep flowing (the connection table
//!   still names them and [`ServiceTable::dest`] still resolves them);
//! - [`DestId`]s are stable across snapshots (assigned by the control side) and index
//!   the shared per-server counters, so live counts survive a reload.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::table::Map;

use crate::addr::{AddrBytes, to_bytes};
use crate::classify::IfaceId;
use crate::conntrack::Timeouts;
use crate::persist::Scope;
use crate::sched::{Candidate, Load, LoadView, SchedConfig, SchedError, SchedKind, Scheduler};

/// Stable identity of a real server of a service (indexes shared counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestId(pub u32);

/// Dense index of a service within one snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServiceId(pub u32);

/// How packets reach a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// Masquerading: destination rewritten on the way in, source on the way back.
    Nat,
    /// Direct routing: MAC rewrite only; the real server answers the client itself.
    Dr,
}

/// Health and administrative state of a real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DestState {
    /// Passing its checks.
    Up,
    /// Failing its checks (or `alpha` and not yet proven up).
    Down,
    /// Drained by the operator: no new flows, established ones continue.
    Drained,
    /// No longer configured; kept while its connections end.
    Removed,
}

/// Where to send frames for a real server: the director's interface and the MAC of the
/// server (or its next hop), resolved by the control side or given statically.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// Out interface.
    pub iface: IfaceId,
    /// Destination MAC.
    pub mac: [u8; 6],
}

/// One real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealServer {
    /// Stable id (see [`DestId`]).
    pub id: DestId,
    /// Address.
    pub addr: IpAddr,
    /// Port; `None` keeps the packet's destination port (mark and all-port services).
    pub port: Option<u16>,
    /// Weight 0..=65535; 0 = quiescent.
    pub weight: u32,
    /// Forwarding method.
    pub method: Method,
    /// Used only while no primary is eligible.
    pub backup: bool,
    /// Health / admin state.
    pub state: DestState,
    /// Upper connection threshold (IPVS `-x`); 0 = none.
    pub max_conns: u32,
    /// Resolved next hop; `None` until the neighbour is known.
    pub next_hop: Option<NextHop>,
}

impl RealServer {
    /// Up with a weight: may take new flows.
    pub fn is_eligible(&self) -> bool {
        self.state == DestState::Up && self.weight > 0
    }
}

/// How a service is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// (protocol, VIP, port); port 0 = all ports.
    Tuple {
        /// IP protocol (6 TCP, 17 UDP).
        protocol: u8,
        /// Virtual address.
        addr: IpAddr,
        /// Port, 0 for all ports.
        port: u16,
    },
    /// Firewall mark, per address family (IPVS `-f`).
    Mark {
        /// The mark set by a mark rule.
        mark: u32,
        /// IPv6 service.
        v6: bool,
    },
}

/// Persistence settings (ipvsadm `-p timeout -M netmask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Persistence {
    /// Seconds a client sticks to its server after its last new connection.
    pub timeout_secs: u32,
    /// Prefix length grouping client addresses (IPv4 netmask as a length, or IPv6).
    pub prefix: u8,
    /// IPVS `expire_quiescent_template`: drop templates of weight-0 servers at once.
    pub expire_quiescent: bool,
}

/// Input to [`ServiceTable::build`]: one service as the control side sees it.
#[derive(Clone, Debug)]
pub struct ServiceSpec {
    /// Name for listings and logs.
    pub name: String,
    /// Stable id across reloads (persistence scope of non-mark services).
    pub stable_id: u32,
    /// How it is matched.
    pub key: ServiceKey,
    /// Scheduler.
    pub sched: SchedConfig,
    /// Persistence, if any.
    pub persistence: Option<Persistence>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Schedule TCP packets without SYN that match no connection (IPVS `sloppy_tcp`).
    pub sloppy_tcp: bool,
    /// Real servers (primaries and backups).
    pub servers: Vec<RealServer>,
    /// Sorry server: answers alone while the quorum is lost.
    pub sorry: Option<RealServer>,
    /// Quorum lost (decided by the control side with hysteresis, see [`quorum_lost`]).
    pub quorum_lost: bool,
}

/// Which servers currently take new flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveSet {
    /// Eligible primaries.
    Primaries,
    /// No primary is eligible: the eligible backups.
    Backups,
    /// Quorum lost (or nothing else eligible) and a sorry server is configured.
    Sorry,
    /// Nothing can take new flows.
    Nothing,
}

/// A built service.
#[derive(Debug)]
pub struct Service {
    /// Dense id in this snapshot.
    pub id: ServiceId,
    /// Name.
    pub name: String,
    /// Stable id across snapshots (from the spec).
    pub stable_id: u32,
    /// Match key.
    pub key: ServiceKey,
    /// Persistence scope (mark for mark services, else the stable id).
    pub scope: Scope,
    /// Persistence settings.
    pub persistence: Option<Persistence>,
    /// Connection timeouts.
    pub timeouts: Timeouts,
    /// Sloppy TCP.
    pub sloppy_tcp: bool,
    /// Every server (primaries, backups, then the sorry server if any).
    pub dests: Vec<RealServer>,
    /// What takes new flows now.
    pub active_set: ActiveSet,
    /// Scheduler over the active servers.
    pub scheduler: Scheduler,
    /// Scheduler candidate i → index in `dests`.
    pub active: Vec<u32>,
    /// Index of the sorry server in `dests`.
    pub sorry: Option<u32>,
}

/// Errors building a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Two services with the same key.
    #[error("service '{0}' duplicates the key of service '{1}'")]
    Duplicate(String, String),
    /// Real server of the wrong address family.
    #[error("service '{service}': real server {addr} is not of the service's address family")]
    Family {
        /// Service name.
        service: String,
        /// Offending address.
        addr: IpAddr,
    },
    /// A weight above 65535.
    #[error("service '{service}': real server {addr} has weight {weight} (0..=65535)")]
    Weight {
        /// Service name.
        service: String,
        /// Server.
        addr: IpAddr,
        /// Weight given.
        weight: u32,
    },
    /// A persistence prefix longer than the family allows.
    #[error("service '{service}': persistence prefix /{prefix} is too long for the family")]
    Prefix {
        /// Service name.
        service: String,
        /// Prefix given.
        prefix: u8,
    },
    /// Same DestId used twice.
    #[error("real server id {0:?} used twice")]
    DuplicateDest(DestId),
    /// Scheduler build failure.
    #[error("service '{service}': {source}")]
    Sched {
        /// Service name.
        service: String,
        /// Cause.
        source: SchedError,
    },
}

/// Where a [`DestId`] lives in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct DestRef {
    service: u32,
    index: u32,
}

/// Live per-server connection counts, shared by workers and snapshots.
#[derive(Debug, Default)]
pub struct DestCounters {
    /// Established connections.
    pub active: AtomicU32,
    /// Other tracked connections.
    pub inactive: AtomicU32,
}

impl DestCounters {
    /// Current load as the schedulers see it (`max_conns` 0 = no threshold).
    #[inline]
    pub fn load(&self, max_conns: u32) -> Load {
        let active = self.active.load(Ordering::Relaxed);
        let inactive = self.inactive.load(Ordering::Relaxed);
        Load {
            active,
            inactive,
            overloaded: max_conns != 0 && active.saturating_add(inactive) >= max_conns,
        }
    }
}

/// The immutable service snapshot.
#[derive(Debug, Default)]
pub struct ServiceTable {
    services: Vec<Service>,
    by_tuple: Map<(u8, AddrBytes, bool, u16), u32>,
    by_mark: Map<(u32, bool), u32>,
    dests: Vec<Option<DestRef>>,
}

/// keepalived-style quorum with hysteresis: lost when the up weight falls below
/// `quorum - hysteresis`, regained when it reaches `quorum + hysteresis`.
pub fn quorum_lost(was_lost: bool, up_weight: u64, quorum: u64, hysteresis: u64) -> bool {
    if quorum == 0 {
        return false;
    }
    if was_lost {
        up_weight < quorum + hysteresis
    } else {
        up_weight < quorum.saturating_sub(hysteresis)
    }
}

impl ServiceTable {
    /// Build a snapshot from specs (control side; allocates).
    pub fn build(specs: &[ServiceSpec]) -> Result<ServiceTable, ServiceError> {
        let mut t = ServiceTable::default();
        for spec in specs {
            let id = t.services.len() as u32;
            let v6 = match spec.key {
                ServiceKey::Tuple {
                    protocol,
                    addr,
                    port,
                } => {
                    let k = (protocol, to_bytes(addr), addr.is_ipv6(), port);
                    if let Some(&other) = t.by_tuple.get(&k) {
                        return Err(ServiceError::Duplicate(
                            spec.name.clone(),
                            t.services[other as usize].name.clone(),
                        ));
                    }
                    t.by_tuple.insert(k, id);
                    addr.is_ipv6()
                }
                ServiceKey::Mark { mark, v6 } => {
                    if let Some(&other) = t.by_mark.get(&(mark, v6)) {
                        return Err(ServiceError::Duplicate(
                            spec.name.clone(),
                            t.services[other as usize].name.clone(),
                        ));
                    }
                    t.by_mark.insert((mark, v6), id);
                    v6
                }
            };
            let service = build_service(spec, ServiceId(id), v6)?;
            for (index, d) in service.dests.iter().enumerate() {
                let slot = d.id.0 as usize;
                if t.dests.len() <= slot {
                    t.dests.resize(slot + 1, None);
                }
                if t.dests[slot].is_some() {
                    return Err(ServiceError::DuplicateDest(d.id));
                }
                t.dests[slot] = Some(DestRef {
                    service: id,
                    index: index as u32,
                });
            }
            t.services.push(service);
        }
        Ok(t)
    }

    /// Carry the rr/wrr rotation of each service over from `old` (same stable id,
    /// same scheduler kind), so that a rebuilt snapshot — a neighbour learned, a
    /// weight changed — continues the rotation instead of restarting it at the
    /// first server.
    pub fn carry_over(&self, old: &ServiceTable) {
        for svc in &self.services {
            if let Some(prev) = old.services.iter().find(|o| {
                o.stable_id == svc.stable_id && o.scheduler.kind() == svc.scheduler.kind()
            }) {
                svc.scheduler.set_cursor(prev.scheduler.cursor());
            }
        }
    }

    /// All services, by dense id.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// True when no service is configured.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The service for a packet: mark service first (when `mark` is non-zero), then
    /// exact (protocol, VIP, port), then (protocol, VIP, 0).
    #[inline]
    pub fn lookup(
        &self,
        mark: u32,
        protocol: u8,
        dst: &AddrBytes,
        v6: bool,
        dport: u16,
    ) -> Option<&Service> {
        if mark != 0
            && let Some(&i) = self.by_mark.get(&(mark, v6))
        {
            return Some(&self.services[i as usize]);
        }
        let i = self
            .by_tuple
            .get(&(protocol, *dst, v6, dport))
            .or_else(|| self.by_tuple.get(&(protocol, *dst, v6, 0)))?;
        Some(&self.services[*i as usize])
    }

    /// The service and server of a [`DestId`].
    #[inline]
    pub fn dest(&self, id: DestId) -> Option<(&Service, &RealServer)> {
        let r = (*self.dests.get(id.0 as usize)?)?;
        let s = &self.services[r.service as usize];
        Some((s, &s.dests[r.index as usize]))
    }

    /// Highest [`DestId`] + 1 (counters must cover it).
    pub fn dest_id_bound(&self) -> usize {
        self.dests.len()
    }
}

fn build_service(spec: &ServiceSpec, id: ServiceId, v6: bool) -> Result<Service, ServiceError> {
    let mut dests: Vec<RealServer> = spec.servers.clone();
    dests.extend(spec.sorry.iter().cloned());
    for d in &dests {
        if d.addr.is_ipv6() != v6 {
            return Err(ServiceError::Family {
                service: spec.name.clone(),
                addr: d.addr,
            });
        }
        if d.weight > 65535 {
            return Err(ServiceError::Weight {
                service: spec.name.clone(),
                addr: d.addr,
                weight: d.weight,
            });
        }
    }
    if let Some(p) = spec.persistence
        && p.prefix > if v6 { 128 } else { 32 }
    {
        return Err(ServiceError::Prefix {
            service: spec.name.clone(),
            prefix: p.prefix,
        });
    }
    let n_servers = spec.servers.len();
    let pick = |backup: bool| -> Vec<u32> {
        (0..n_servers as u32)
            .filter(|&i| dests[i as usize].backup == backup && dests[i as usize].is_eligible())
            .collect()
    };
    let primaries = pick(false);
    let sorry = spec.sorry.as_ref().map(|_| n_servers as u32);
    let (active_set, active) = match (spec.quorum_lost, sorry) {
        (true, Some(s)) => (ActiveSet::Sorry, vec![s]),
        _ if !primaries.is_empty() && !spec.quorum_lost => (ActiveSet::Primaries, primaries),
        _ => {
            let backups = pick(true);
            match (backups.is_empty(), sorry) {
                (false, _) => (ActiveSet::Backups, backups),
                (true, Some(s)) => (ActiveSet::Sorry, vec![s]),
                (true, None) => (ActiveSet::Nothing, Vec::new()),
            }
        }
    };
    let candidates: Vec<Candidate> = active
        .iter()
        .map(|&i| {
            let d = &dests[i as usize];
            // The sorry server is used even at weight 0 (it is the last resort).
            Candidate {
                addr: d.addr,
                port: d.port.unwrap_or(0),
                weight: d.weight.max(1),
            }
        })
        .collect();
    let scheduler =
        Scheduler::build(&spec.sched, &candidates).map_err(|source| ServiceError::Sched {
            service: spec.name.clone(),
            source,
        })?;
    let scope = match spec.key {
        ServiceKey::Mark { mark, .. } => Scope::Mark(mark),
        ServiceKey::Tuple { .. } => Scope::Service(spec.stable_id),
    };
    Ok(Service {
        id,
        name: spec.name.clone(),
        stable_id: spec.stable_id,
        key: spec.key,
        scope,
        persistence: spec.persistence,
        timeouts: spec.timeouts,
        sloppy_tcp: spec.sloppy_tcp,
        dests,
        active_set,
        scheduler,
        active,
        sorry,
    })
}

/// Scheduler load view over a service's active servers and the shared counters.
#[derive(Debug)]
pub struct ServiceLoads<'a> {
    /// The service.
    pub service: &'a Service,
    /// Shared counters indexed by [`DestId`].
    pub counters: &'a [DestCounters],
}

impl LoadView for ServiceLoads<'_> {
    #[inline]
    fn load(&self, idx: usize) -> Load {
        let d = &self.service.dests[self.service.active[idx] as usize];
        self.counters
            .get(d.id.0 as usize)
            .map(|c| c.load(d.max_conns))
            .unwrap_or_default()
    }
}

impl Service {
    /// True when this service's scheduler hashes flows (sh, dh, mh): consistent choice
    /// without state, which is what sloppy TCP relies on.
    pub fn is_hashing(&self) -> bool {
        matches!(
            self.scheduler.kind(),
            SchedKind::Sh | SchedKind::Dh | SchedKind::Mh
        )
    }

    /// Whether a persistence template pointing at `dest` may still place new
    /// connections (IPVS `ip_vs_check_template`): the server must be up and in the
    /// group that takes new flows now; a quiescent (weight 0) server keeps its clients
    /// unless `expire_quiescent` is set.
    pub fn template_usable(&self, dest: &RealServer) -> bool {
        let in_active_group = match self.active_set {
            ActiveSet::Primaries => !dest.backup && Some(dest.id) != self.sorry_id(),
            ActiveSet::Backups => dest.backup,
            ActiveSet::Sorry => Some(dest.id) == self.sorry_id(),
            ActiveSet::Nothing => false,
        };
        let quiescent_expires =
            dest.weight == 0 && self.persistence.is_some_and(|p| p.expire_quiescent);
        dest.state == DestState::Up && in_active_group && !quiescent_expires
    }

    /// The sorry server's id, if one is configured.
    pub fn sorry_id(&self) -> Option<DestId> {
        self.sorry.map(|i| self.dests[i as usize].id)
    }
}

#[cfg(test)]
mod tests;
