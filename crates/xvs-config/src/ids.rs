//! Stable ids across reloads, and the translation of a [`Config`] into the core's
//! [`ServiceSpec`]s. Layer: config (control side).
//!
//! # How ids are assigned
//!
//! The core wants `ServiceSpec::stable_id` (persistence scope of a service) and
//! `RealServer::id` ([`DestId`], index of the shared per-server counters, below
//! `TableSizes::max_dests`) to survive reloads. Hashing names would collide, so an
//! [`IdAllocator`] keeps explicit maps, and the control thread keeps one allocator
//! for the life of the process:
//!
//! - a service is identified by its **name**; a new name gets the next service id
//!   (service ids are never reused: a reused id could meet the previous owner's
//!   persistence templates);
//! - a real server is identified by **(service name, address, port)**, the sorry
//!   server by the same triple in a separate namespace ([`DestKey::sorry`]); a new
//!   one gets the lowest free [`DestId`] below the bound. Weight, method, backup
//!   or MAC changes keep the id; a changed address or port is a new server;
//! - ids are only freed by [`IdAllocator::release_unused`], which the control side
//!   calls once the servers removed from the configuration no longer carry
//!   connections (the core keeps them as `DestState::Removed` until then).
//!
//! A fresh allocator numbers services and servers 0, 1, 2, ... in file order
//! (each service's real servers, then its sorry server).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use xvs_core::service::{DestId, DestState, RealServer, ServiceSpec, quorum_lost};

use crate::error::IdError;
use crate::schema::{Config, ServiceConfig, max_dests};

/// Identity of a real (or sorry) server across reloads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    /// Service name.
    pub service: String,
    /// The service's sorry server rather than a real server.
    pub sorry: bool,
    /// Server address.
    pub address: IpAddr,
    /// Server port (`None` = keep the destination port).
    pub port: Option<u16>,
}

/// Assigns stable service ids and [`DestId`]s (see the module doc).
#[derive(Clone, Debug)]
pub struct IdAllocator {
    max_dests: usize,
    services: HashMap<String, u32>,
    next_service: u32,
    dests: HashMap<DestKey, DestId>,
    free: BTreeSet<u32>,
    next_dest: u32,
}

impl Default for IdAllocator {
    fn default() -> Self {
        IdAllocator::with_max_dests(max_dests())
    }
}

impl IdAllocator {
    /// An allocator bounded by the core's default `TableSizes::max_dests`.
    pub fn new() -> Self {
        IdAllocator::default()
    }

    /// An allocator whose [`DestId`]s stay below `max_dests`.
    pub fn with_max_dests(max_dests: usize) -> Self {
        IdAllocator {
            max_dests,
            services: HashMap::new(),
            next_service: 0,
            dests: HashMap::new(),
            free: BTreeSet::new(),
            next_dest: 0,
        }
    }

    /// The stable id of the service `name`, assigned on first use.
    pub fn service_id(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.services.get(name) {
            return id;
        }
        let id = self.next_service;
        self.next_service += 1;
        self.services.insert(name.to_owned(), id);
        id
    }

    /// The [`DestId`] of a server, assigned on first use.
    pub fn dest_id(&mut self, key: &DestKey) -> Result<DestId, IdError> {
        if let Some(&id) = self.dests.get(key) {
            return Ok(id);
        }
        let id = match self.free.pop_first() {
            Some(id) => id,
            None if (self.next_dest as usize) < self.max_dests => {
                self.next_dest += 1;
                self.next_dest - 1
            }
            None => {
                return Err(IdError::Exhausted {
                    max: self.max_dests,
                });
            }
        };
        self.dests.insert(key.clone(), DestId(id));
        Ok(DestId(id))
    }

    /// The [`DestId`] of a server if it has one.
    pub fn lookup(&self, key: &DestKey) -> Option<DestId> {
        self.dests.get(key).copied()
    }

    /// Frees the [`DestId`]s of servers that are not in `config` and for which
    /// `still_tracked` is false (no connection or template refers to them any more).
    /// Returns the freed ids. Service ids are never freed.
    pub fn release_unused(
        &mut self,
        config: &Config,
        mut still_tracked: impl FnMut(DestId) -> bool,
    ) -> Vec<DestId> {
        let live: HashSet<DestKey> = config.services.iter().flat_map(dest_keys).collect();
        let mut freed = Vec::new();
        self.dests.retain(|k, id| {
            if live.contains(k) || still_tracked(*id) {
                true
            } else {
                freed.push(*id);
                false
            }
        });
        self.free.extend(freed.iter().map(|d| d.0));
        freed.sort_unstable();
        freed
    }
}

fn dest_keys(s: &ServiceConfig) -> impl Iterator<Item = DestKey> + '_ {
    let key = |sorry, address, port| DestKey {
        service: s.name.clone(),
        sorry,
        address,
        port,
    };
    s.real_servers
        .iter()
        .map(move |r| key(false, r.address, r.port))
        .chain(
            s.sorry_server
                .iter()
                .map(move |r| key(true, r.address, r.port)),
        )
}

impl Config {
    /// The core's service specs, with ids from a fresh [`IdAllocator`] (numbered in
    /// file order). For reloads use [`Config::service_specs_with`] and keep the
    /// allocator. Every server is `DestState::Up` and has `next_hop: None` (static
    /// MACs: [`Config::static_macs`]).
    ///
    /// # Panics
    ///
    /// If the configuration has more servers than `TableSizes::max_dests`, which a
    /// [`Config`] from [`crate::parse`] never has.
    pub fn service_specs(&self) -> Vec<ServiceSpec> {
        self.service_specs_with(&mut IdAllocator::new())
            .expect("validation bounds the server count by max_dests")
    }

    /// The core's service specs, with ids from `ids` (stable across reloads).
    ///
    /// `quorum_lost` is computed for the initial state (all servers up, not lost
    /// before); the control side recomputes it as health checks report.
    pub fn service_specs_with(&self, ids: &mut IdAllocator) -> Result<Vec<ServiceSpec>, IdError> {
        let mut specs = Vec::with_capacity(self.services.len());
        for s in &self.services {
            let mut servers = Vec::with_capacity(s.real_servers.len());
            let mut keys = dest_keys(s);
            for r in &s.real_servers {
                let key = keys.next().expect("one key per server");
                servers.push(RealServer {
                    id: ids.dest_id(&key)?,
                    addr: r.address,
                    port: r.port,
                    weight: r.weight,
                    method: r.method,
                    backup: r.backup,
                    state: DestState::Up,
                    max_conns: r.max_conns,
                    next_hop: None,
                });
            }
            let sorry = match (&s.sorry_server, keys.next()) {
                (Some(r), Some(key)) => Some(RealServer {
                    id: ids.dest_id(&key)?,
                    addr: r.address,
                    port: r.port,
                    weight: 1,
                    method: s.method,
                    backup: false,
                    state: DestState::Up,
                    max_conns: 0,
                    next_hop: None,
                }),
                _ => None,
            };
            let up_weight: u64 = s
                .real_servers
                .iter()
                .filter(|r| !r.backup)
                .map(|r| u64::from(r.weight))
                .sum();
            specs.push(ServiceSpec {
                name: s.name.clone(),
                stable_id: ids.service_id(&s.name),
                key: s.key,
                sched: s.sched,
                persistence: s.persistence,
                timeouts: s.timeouts,
                sloppy_tcp: false,
                servers,
                sorry,
                quorum_lost: quorum_lost(false, up_weight, s.quorum, s.hysteresis),
            });
        }
        Ok(specs)
    }

    /// Static MACs of real servers that have one, by [`DestId`] from `ids` (call
    /// after [`Config::service_specs_with`] with the same allocator). The control
    /// side pairs each with the out interface of its route to build a `NextHop`.
    pub fn static_macs(&self, ids: &IdAllocator) -> Vec<(DestId, [u8; 6])> {
        self.services
            .iter()
            .flat_map(|s| {
                s.real_servers.iter().filter_map(|r| {
                    let key = DestKey {
                        service: s.name.clone(),
                        sorry: false,
                        address: r.address,
                        port: r.port,
                    };
                    Some((ids.lookup(&key)?, r.mac?))
                })
            })
            .collect()
    }
}
