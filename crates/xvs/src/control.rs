//! The control loop's state and work between ticks: the workers' counters,
//! neighbour resolution, the kernel's network view, table sweeps, snapshots
//! (configuration + network + operator overrides), the steering maps, reloads
//! and the control-socket requests. Layer: binary (control side).
//!
//! Invariants: the control thread computes, workers only look up — every
//! change reaches them as a new immutable snapshot; a rejected configuration
//! changes nothing; operator overrides are keyed by (service, address, port)
//! and so survive reloads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xvs_config::{Config, DestKey, DirectorConfig, IdAllocator, RemovedServers};
use xvs_core::addr::from_bytes;
use xvs_core::classify::{Action as RuleAction, Classifier};
use xvs_core::forward::{DestTraffic, Shared, Snapshot, WorkerStats};
use xvs_core::health::Event as HealthChange;
use xvs_core::service::{
    DestId, DestState, Method, RealServer, ServiceKey, ServiceSpec, ServiceTable, quorum_lost,
};
use xvs_core::time::Time;
use xvs_io::frames::PortStats;
use xvs_io::netlink::Netlink;

use crate::health::{self, HealthEvent, HealthHandle};
use crate::listing::{self, View};
use crate::netview::{self, KernelNet, Wanted};
use crate::steering::{Steered, Steering};
use crate::worker::{Report, SnapshotCell};

/// Operator overrides of one real server (`xvs drain`, `xvs weight`), kept
/// across reloads by (service name, address, port).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Override {
    /// Drained: no new flows, established ones continue.
    pub drained: bool,
    /// Weight set at runtime (instead of the configured one).
    pub weight: Option<u32>,
}

/// Longest wait for the workers to take a new snapshot.
const PUBLISH_WAIT: Duration = Duration::from_millis(250);

/// A real server as the operator names it: (service name, address, port).
pub type ServerKey = (String, IpAddr, Option<u16>);

/// Overrides by server.
pub type Overrides = HashMap<ServerKey, Override>;

/// A health checker's verdict on one real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    /// Passing its checks.
    pub up: bool,
    /// Weight set by a dynamic check (keepalived `misc_dynamic`).
    pub weight: Option<u32>,
}

/// Per-server and per-service state that the configuration file does not hold.
#[derive(Debug, Default)]
pub struct Runtime {
    /// Operator overrides.
    pub overrides: Overrides,
    /// Health verdicts (servers without a check are absent: up).
    pub health: HashMap<ServerKey, Health>,
    /// Services whose quorum is lost (the hysteresis needs the last verdict).
    pub quorum_lost: HashMap<String, bool>,
    /// The specs of the published snapshot: servers that leave the
    /// configuration stay (as `Removed`, no new flows) while they carry
    /// connections, so that a reload never cuts an established flow.
    pub published: Vec<ServiceSpec>,
}

/// Everything the control loop keeps between ticks.
pub(crate) struct Control {
    pub(crate) path: PathBuf,
    pub(crate) config: Config,
    pub(crate) ids: IdAllocator,
    pub(crate) netlink: Netlink,
    pub(crate) kernel: KernelNet,
    pub(crate) ifindexes: Vec<u32>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) snapshots: Arc<SnapshotCell>,
    pub(crate) steering: Steering,
    pub(crate) totals: WorkerStats,
    /// Per-server rates over the last second, and the totals they start from.
    pub(crate) rates: Vec<DestTraffic>,
    pub(crate) rate_base: (Instant, Vec<DestTraffic>),
    pub(crate) runtime: Runtime,
    /// The health checkers (their own threads) and their verdicts.
    pub(crate) health: Option<HealthHandle>,
    pub(crate) health_events: mpsc::Receiver<HealthEvent>,
    pub(crate) io: Vec<PortStats>,
    pub(crate) asked: Vec<(Wanted, Instant)>,
    /// Whether every real server had a next hop at the last snapshot.
    pub(crate) resolved: bool,
    /// Time zero of the workers' clock.
    pub(crate) epoch: Instant,
    /// Sweep budget per shard per tick (a full pass every second).
    pub(crate) sweep_budget: usize,
}

/// The snapshot of `config` over the network `kernel` describes, with the
/// runtime state applied (overrides, health, quorum, removed servers that still
/// carry connections in `shared`); returns it and the neighbours to resolve, and
/// records its specs in `rt.published`.
pub(crate) fn build_snapshot(
    config: &Config,
    ids: &mut IdAllocator,
    kernel: &KernelNet,
    rt: &mut Runtime,
    shared: Option<&Shared>,
) -> Result<(Arc<Snapshot>, Vec<Wanted>)> {
    let net = kernel.view(&config.director.interfaces)?;
    let mut specs: Vec<ServiceSpec> = config
        .service_specs_with(ids)
        .context("assigning real server ids")?;
    for spec in &mut specs {
        let inhibit = config
            .services
            .iter()
            .find(|s| s.name == spec.name)
            .is_some_and(|s| s.inhibit_on_failure);
        for rs in &mut spec.servers {
            let key = (spec.name.clone(), rs.addr, rs.port);
            if let Some(h) = rt.health.get(&key) {
                if let Some(w) = h.weight {
                    rs.weight = w;
                }
                if !h.up {
                    // keepalived: removed from new flows, or kept with weight 0.
                    if inhibit {
                        rs.weight = 0;
                    } else {
                        rs.state = DestState::Down;
                    }
                }
            }
            if let Some(o) = rt.overrides.get(&key) {
                if o.drained && rs.state == DestState::Up {
                    rs.state = DestState::Drained;
                }
                if let Some(w) = o.weight {
                    rs.weight = w;
                }
            }
        }
    }
    if let Some(shared) = shared
        && config.director.removed_servers == RemovedServers::Keep
    {
        keep_removed_servers(&mut specs, &rt.published, shared);
    }
    for spec in &mut specs {
        let Some(svc) = config.services.iter().find(|s| s.name == spec.name) else {
            continue;
        };
        let up_weight: u64 = spec
            .servers
            .iter()
            .filter(|rs| !rs.backup && rs.is_eligible())
            .map(|rs| u64::from(rs.weight))
            .sum();
        let was = rt.quorum_lost.get(&spec.name).copied().unwrap_or(false);
        let lost = quorum_lost(was, up_weight, svc.quorum, svc.hysteresis);
        if lost != was {
            if lost {
                tracing::warn!(service = %spec.name, up_weight, quorum = svc.quorum, "quorum lost: the sorry server (if any) answers");
            } else {
                tracing::info!(service = %spec.name, up_weight, quorum = svc.quorum, "quorum regained");
            }
        }
        rt.quorum_lost.insert(spec.name.clone(), lost);
        spec.quorum_lost = lost;
    }
    let macs = config.static_macs(ids);
    let static_mac = |rs: &RealServer| macs.iter().find(|(id, _)| *id == rs.id).map(|m| m.1);
    let (wanted, no_route) = netview::place_servers(&mut specs, &net, static_mac);
    for addr in no_route {
        tracing::warn!(%addr, "real server has no route through the director's interfaces");
    }
    let services = ServiceTable::build(&specs).context("building the service table")?;
    let rules = Classifier::compile(&config.rules).context("compiling the mark rules")?;
    rt.published = specs;
    Ok((
        Arc::new(Snapshot {
            services,
            rules,
            net,
        }),
        wanted,
    ))
}

/// Puts back, as `Removed` (no new flows), every server of `published` that is
/// not in `specs` but still carries connections; a service that left the
/// configuration stays with those servers only. (IPVS keeps such destinations
/// in its trash until their connections end.)
fn keep_removed_servers(specs: &mut Vec<ServiceSpec>, published: &[ServiceSpec], shared: &Shared) {
    let live = |rs: &RealServer| {
        shared.counters.get(rs.id.0 as usize).is_some_and(|c| {
            c.active.load(std::sync::atomic::Ordering::Relaxed)
                + c.inactive.load(std::sync::atomic::Ordering::Relaxed)
                > 0
        })
    };
    for old in published {
        let lingering: Vec<RealServer> = old
            .servers
            .iter()
            .filter(|rs| {
                live(rs)
                    && !specs
                        .iter()
                        .any(|s| s.servers.iter().any(|n| n.id == rs.id))
            })
            .map(|rs| RealServer {
                state: DestState::Removed,
                ..rs.clone()
            })
            .collect();
        if lingering.is_empty() {
            continue;
        }
        for rs in &lingering {
            tracing::info!(service = %old.name, server = %rs.addr, "removed server kept until its connections end");
        }
        match specs
            .iter_mut()
            .find(|s| s.name == old.name && s.key == old.key)
        {
            Some(spec) => spec.servers.extend(lingering),
            None => {
                let mut gone = old.clone();
                gone.servers = lingering;
                gone.sorry = None;
                specs.push(gone);
            }
        }
    }
}

/// Whether a published snapshot still holds removed servers that no longer
/// carry connections (then it is time to publish without them).
pub(crate) fn removed_servers_done(published: &[ServiceSpec], shared: &Shared) -> bool {
    published.iter().flat_map(|s| &s.servers).any(|rs| {
        rs.state == DestState::Removed
            && shared.counters.get(rs.id.0 as usize).is_some_and(|c| {
                c.active.load(std::sync::atomic::Ordering::Relaxed)
                    + c.inactive.load(std::sync::atomic::Ordering::Relaxed)
                    == 0
            })
    })
}

/// The runtime key of a server the config layer names.
pub(crate) fn server_key(d: &DestKey) -> ServerKey {
    (d.service.clone(), d.address, d.port)
}

/// The first verdicts, before any probe ran: servers whose check has `alpha`
/// start down (keepalived), the others up.
pub(crate) fn initial_health(targets: &[health::Target]) -> HashMap<ServerKey, Health> {
    targets
        .iter()
        .filter(|t| t.check.settings.alpha)
        .map(|t| {
            (
                server_key(&t.dest),
                Health {
                    up: false,
                    weight: None,
                },
            )
        })
        .collect()
}

/// `ADDR`, `ADDR:PORT` or `[V6]:PORT`.
fn parse_server(s: &str) -> Result<(IpAddr, Option<u16>)> {
    if let Ok(addr) = s.parse::<IpAddr>() {
        return Ok((addr, None));
    }
    let ep: std::net::SocketAddr = s
        .parse()
        .with_context(|| format!("server '{s}': expected ADDR, ADDR:PORT or [V6]:PORT"))?;
    Ok((ep.ip(), Some(ep.port())))
}

/// What the kernel must hand to the workers: VIPs (of tuple services, and the
/// single-address destinations of rules that set a mark), the NAT real servers
/// (their replies) plus `keep` (servers steered before: connections to a removed
/// server may still be open), and the director's own addresses `locals`.
pub(crate) fn steered_addresses(
    config: &Config,
    services: &ServiceTable,
    locals: &[IpAddr],
    keep: &[IpAddr],
) -> Steered {
    let mut vips = Vec::new();
    let mut real = keep.to_vec();
    for svc in services.services() {
        if let ServiceKey::Tuple { addr, .. } = svc.key {
            vips.push(addr);
        }
        for rs in svc.dests.iter() {
            if rs.method == Method::Nat {
                real.push(rs.addr);
            }
        }
    }
    for rule in &config.rules {
        if let RuleAction::Mark(_) = rule.action {
            for net in &rule.dst {
                if net.prefix_len() == net.max_prefix_len() {
                    vips.push(net.addr());
                } else {
                    tracing::warn!(%net, "mark rule destination is a range: only single addresses are steered");
                }
            }
        }
    }
    vips.sort();
    vips.dedup();
    real.sort();
    real.dedup();
    Steered {
        vips,
        real_servers: real,
        locals: locals.to_vec(),
    }
}

impl Control {
    /// Expire connections, templates and fragment entries (bounded per tick).
    pub(crate) fn maintain(&self) {
        let now = Time::from_millis(self.epoch.elapsed().as_millis() as u64);
        let snap = self.snapshots.load();
        self.shared.maintain(&snap.services, now, self.sweep_budget);
    }

    /// Merge the workers' reports; return the neighbours they missed.
    pub(crate) fn collect(&mut self, reports: &mpsc::Receiver<Report>) -> Vec<Wanted> {
        let mut missed = Vec::new();
        for report in reports.try_iter() {
            self.totals.merge(&report.stats);
            if self.io.len() <= report.worker {
                self.io.resize(report.worker + 1, PortStats::default());
            }
            self.io[report.worker] = report.io;
            let net = &self.snapshots.load().net;
            for &(addr, v6) in report.stats.unresolved.iter().flatten() {
                let addr = from_bytes(&addr, v6);
                if let Some(route) = net.route(addr) {
                    let w = Wanted {
                        iface: route.iface,
                        addr,
                    };
                    if !missed.contains(&w) {
                        missed.push(w);
                    }
                }
            }
        }
        missed
    }

    /// Ask the kernel to resolve `wanted` (each address at most once a second).
    pub(crate) fn resolve(&mut self, wanted: &[Wanted]) {
        self.asked
            .retain(|(_, at)| at.elapsed() < Duration::from_secs(1));
        for w in wanted {
            if self.asked.iter().any(|(a, _)| a == w) {
                continue;
            }
            self.asked.push((*w, Instant::now()));
            let index = self.ifindexes[w.iface.0 as usize];
            match self.netlink.resolve(index, w.addr) {
                Ok(()) => {
                    tracing::debug!(addr = %w.addr, ifindex = index, "neighbour resolution asked")
                }
                Err(e) => tracing::warn!(addr = %w.addr, error = %e, "neighbour resolution failed"),
            }
        }
    }

    /// Re-read the kernel's network; publish a new snapshot if it changed.
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let kernel = KernelNet::read(&mut self.netlink)?;
        if kernel == self.kernel {
            return Ok(());
        }
        tracing::debug!(neighbours = ?kernel.neighbours, "network changed");
        self.kernel = kernel;
        self.publish(self.config.clone())
    }

    /// SIGHUP / `xvs reload`: read the file again; keep the running
    /// configuration if it is bad.
    pub(crate) fn reload(&mut self) -> Result<()> {
        let outcome = xvs_config::load(&self.path)
            .map_err(anyhow::Error::from)
            .and_then(|config| {
                if config.director != self.config.director {
                    tracing::warn!("reload: director settings (interfaces, cores, tables) change only on restart");
                }
                // Checkers of unchanged servers keep their state; the new
                // set's verdicts replace the old ones.
                let statuses = match &self.health {
                    Some(h) => h.replace(health::targets(&config))?,
                    None => Vec::new(),
                };
                let before = std::mem::replace(
                    &mut self.runtime.health,
                    statuses
                        .into_iter()
                        .map(|st| (server_key(&st.dest), Health { up: st.up, weight: st.weight }))
                        .collect(),
                );
                let published = self.publish(config);
                if published.is_err() {
                    // Back to the running configuration's checkers.
                    self.runtime.health = before;
                    if let Some(h) = &self.health {
                        let _ = h.replace(health::targets(&self.config));
                    }
                }
                published
            });
        match &outcome {
            Ok(()) => tracing::info!(config = %self.path.display(), "reloaded"),
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "reload rejected; the running configuration keeps serving"
            ),
        }
        outcome
    }

    /// Applies the health checkers' verdicts; publishes if any changed. Also
    /// publishes when removed servers no longer carry connections.
    pub(crate) fn apply_health(&mut self) -> Result<()> {
        let mut changed = false;
        for ev in self.health_events.try_iter() {
            let entry = self
                .runtime
                .health
                .entry(server_key(&ev.dest))
                .or_insert(Health {
                    up: true,
                    weight: None,
                });
            match ev.event {
                HealthChange::Up => entry.up = true,
                HealthChange::Down { .. } => entry.up = false,
                HealthChange::Weight(w) => entry.weight = Some(w),
            }
            changed = true;
        }
        if changed || removed_servers_done(&self.runtime.published, &self.shared) {
            self.publish(self.config.clone())?;
        }
        Ok(())
    }

    /// `xvs list --checks`: every checked server, its verdict and why.
    fn render_checks(&self) -> Result<String> {
        let Some(h) = &self.health else {
            bail!("health checkers stopped");
        };
        let mut rows: Vec<String> = h
            .status()?
            .into_iter()
            .map(|st| {
                let server = match st.dest.port {
                    Some(p) => listing::fmt_ep(st.dest.address, p),
                    None => st.dest.address.to_string(),
                };
                format!(
                    "{:<16} {:<29} {:<5} {:<7} {}",
                    st.dest.service,
                    server,
                    if st.up { "up" } else { "down" },
                    st.weight.map_or("-".into(), |w| w.to_string()),
                    st.reason.unwrap_or_default()
                )
            })
            .collect();
        rows.sort();
        let mut out = format!(
            "{:<16} {:<29} {:<5} {:<7} {}\n",
            "Service", "Server", "State", "Weight", "Last failure"
        );
        for r in rows {
            out.push_str(&r);
            out.push('\n');
        }
        Ok(out)
    }

    /// A listing of the current state.
    pub(crate) fn render(&self, view: View) -> String {
        let snap = self.snapshots.load();
        listing::render(
            view,
            &listing::Inputs {
                services: &snap.services,
                shared: &self.shared,
                totals: &self.totals,
                rates: &self.rates,
                now: Time::from_millis(self.epoch.elapsed().as_millis() as u64),
            },
        )
    }

    /// Once a second: per-server rates from the change of the totals.
    pub(crate) fn update_rates(&mut self) {
        let (since, base) = &self.rate_base;
        let dt = since.elapsed().as_secs_f64();
        if dt < 1.0 {
            return;
        }
        let per_sec = |now: u64, then: u64| (now.saturating_sub(then) as f64 / dt).round() as u64;
        self.rates = self
            .totals
            .dests
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let b = base.get(i).copied().unwrap_or_default();
                DestTraffic {
                    conns: per_sec(t.conns, b.conns),
                    in_packets: per_sec(t.in_packets, b.in_packets),
                    in_bytes: per_sec(t.in_bytes, b.in_bytes),
                    out_packets: per_sec(t.out_packets, b.out_packets),
                    out_bytes: per_sec(t.out_bytes, b.out_bytes),
                }
            })
            .collect();
        self.rate_base = (Instant::now(), self.totals.dests.clone());
    }

    /// One control-socket request.
    pub(crate) fn handle(&mut self, words: &[&str]) -> Result<String> {
        match words {
            ["list", "--checks"] => self.render_checks(),
            ["list", rest @ ..] if rest.len() <= 1 => {
                let view = View::from_flag(rest.first().copied()).with_context(|| {
                    format!(
                        "list takes --stats, --rate, -c, --persistent or --checks, not {rest:?}"
                    )
                })?;
                Ok(self.render(view))
            }
            ["zero"] => {
                self.totals = WorkerStats::default();
                self.rates.clear();
                self.rate_base = (Instant::now(), Vec::new());
                Ok("counters zeroed\n".into())
            }
            ["drain", service, server] => self.set_override(service, server, |o| o.drained = true),
            ["undrain", service, server] => {
                self.set_override(service, server, |o| o.drained = false)
            }
            ["weight", service, server, weight] => {
                let w: u32 = weight
                    .parse()
                    .ok()
                    .filter(|w| *w <= 65_535)
                    .with_context(|| format!("weight {weight}: expected 0..=65535"))?;
                self.set_override(service, server, |o| o.weight = Some(w))
            }
            ["reload"] => self.reload().map(|()| "reloaded\n".into()),
            _ => bail!(
                "unknown request {words:?} (list [--stats|--rate|-c|--persistent|--checks], zero, drain S R, undrain S R, weight S R N, reload)"
            ),
        }
    }

    /// Changes the override of `server` (`ADDR` or `ADDR:PORT`, `[V6]:PORT`) of
    /// `service` and publishes the result.
    fn set_override(
        &mut self,
        service: &str,
        server: &str,
        change: impl FnOnce(&mut Override),
    ) -> Result<String> {
        let svc = self
            .config
            .services
            .iter()
            .find(|s| s.name == service)
            .with_context(|| format!("no service named '{service}'"))?;
        let (addr, port) = parse_server(server)?;
        let matching: Vec<_> = svc
            .real_servers
            .iter()
            .filter(|rs| rs.address == addr && (port.is_none() || rs.port == port))
            .collect();
        let rs = match matching.as_slice() {
            [one] => *one,
            [] => bail!("service '{service}' has no real server {server}"),
            _ => bail!("{server} is ambiguous in service '{service}': give the port"),
        };
        let key = (service.to_owned(), rs.address, rs.port);
        let mut o = self
            .runtime
            .overrides
            .get(&key)
            .copied()
            .unwrap_or_default();
        change(&mut o);
        self.runtime.overrides.insert(key, o);
        self.publish(self.config.clone())?;
        tracing::info!(service, server, drained = o.drained, weight = ?o.weight, "operator override");
        Ok(format!(
            "{service} {server}: {}{}\n",
            if o.drained { "drained" } else { "in service" },
            o.weight
                .map(|w| format!(", weight {w}"))
                .unwrap_or_default()
        ))
    }

    /// Build and publish the snapshot of `config`; update the steering maps.
    fn publish(&mut self, config: Config) -> Result<()> {
        let mut director_cfg = config;
        // Interfaces, cores, tables and the backend change only on restart.
        director_cfg.director = DirectorConfig {
            removed_servers: director_cfg.director.removed_servers,
            ..self.config.director.clone()
        };
        let old = self.snapshots.load();
        let before: Vec<DestId> = self
            .runtime
            .published
            .iter()
            .flat_map(|s| s.servers.iter().map(|rs| rs.id))
            .collect();
        let (snap, wanted) = build_snapshot(
            &director_cfg,
            &mut self.ids,
            &self.kernel,
            &mut self.runtime,
            Some(&self.shared),
        )?;
        snap.services.carry_over(&old.services);
        let want = steered_addresses(
            &director_cfg,
            &snap.services,
            &self.kernel.addresses,
            &self.steering.current().real_servers,
        );
        let rules_changed = director_cfg.rules != self.config.rules;
        self.config = director_cfg;
        self.swap(&snap);
        // Steer new VIPs only now that the workers know their services.
        self.steering.update(want)?;
        let mut removed = 0;
        if rules_changed {
            let purged = self.shared.purge_blocked(&snap);
            removed += purged;
            tracing::info!(
                purged,
                "mark rules changed: connections now blocked were removed"
            );
        }
        if self.config.director.removed_servers == RemovedServers::Reset {
            let now: Vec<DestId> = self
                .runtime
                .published
                .iter()
                .flat_map(|s| s.servers.iter().map(|rs| rs.id))
                .collect();
            let gone: Vec<DestId> = before.into_iter().filter(|id| !now.contains(id)).collect();
            if !gone.is_empty() {
                let shared = &self.shared;
                let cut = shared.conns.retain(
                    |c| !gone.contains(&c.dest),
                    |c| shared.conn_gone(&old.services, c),
                );
                shared.persist.forget_dests(|id| gone.contains(&id));
                removed += cut;
                tracing::info!(
                    servers = gone.len(),
                    connections = cut,
                    "removed servers: connections reset"
                );
            }
        }
        if removed > 0 {
            // Between the first swap and the removal, a worker may have cached the
            // plan of a connection just removed (its steady packets still found the
            // shared entry): a second swap empties the flow caches again, so the cut
            // holds at once.
            self.swap(&snap);
        }
        self.note_servers(&wanted);
        Ok(())
    }

    /// Hand `snap` to the workers (each empties its flow cache as it takes it) and
    /// wait, briefly, until every worker decides with it: operators expect `xvs
    /// drain` or a reload to hold once it returns.
    fn swap(&self, snap: &Arc<Snapshot>) {
        let generation = self.snapshots.publish(snap.clone());
        if !self.snapshots.wait_taken(generation, PUBLISH_WAIT) {
            tracing::warn!(
                generation,
                "a worker did not take the new snapshot within 250 ms"
            );
        }
    }

    /// Logs when every real server's next hop becomes known (or stops being),
    /// and asks the kernel for the missing ones.
    pub(crate) fn note_servers(&mut self, wanted: &[Wanted]) {
        match (self.resolved, wanted.is_empty()) {
            (false, true) => tracing::info!("next hops resolved: every real server has a MAC"),
            (true, false) => tracing::warn!(missing = wanted.len(), "real servers without a MAC"),
            _ => {}
        }
        self.resolved = wanted.is_empty();
        self.resolve(wanted);
    }
}
