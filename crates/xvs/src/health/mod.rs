// wiring: add "mod health;" to main.rs
//! Health-check runner: drives one [`xvs_core::health::Checker`] per checked real
//! server on its own thread and runs the probes (tcp, http, udp, misc). Layer:
//! binary (threads, sockets, processes, clock).
//!
//! ## Concurrency design
//!
//! - **One runner thread** owns every `Checker` (sans-IO) and the clock. It sleeps
//!   in `recv_timeout` on a single channel until the earliest checker deadline;
//!   that channel carries both commands from the [`HealthHandle`] (replace, status,
//!   stop) and probe results, so the runner never blocks on a probe and answers
//!   commands within one loop iteration.
//! - **A small fixed pool of probe workers** (default [`DEFAULT_WORKERS`]) takes
//!   jobs from a shared queue and runs each probe with blocking std sockets /
//!   `std::process`, every step bounded by the probe's deadline
//!   (`connect_timeout` after dispatch: `connect_timeout`, read/write timeouts set
//!   to the time left, `try_wait` polling for commands, which are killed at the
//!   deadline). Why threads rather than non-blocking sockets + poll: the binary is
//!   `#![forbid(unsafe_code)]` and has no poll/epoll wrapper; HTTP, UDP and child
//!   processes are each a few lines of straight-line blocking code; and a misc
//!   check must wait for a process anyway. Why a fixed pool rather than a thread
//!   per probe: bounded thread count whatever the number of servers. The cost: at
//!   most `workers` probes run at once, so with many hung targets later jobs wait
//!   in the queue; the *checker* bounds every attempt by `connect_timeout` from
//!   dispatch (it fails the attempt itself when the deadline passes), and a worker
//!   drops a job whose deadline passed while queued, so a queue backlog shows as
//!   timeouts but never wedges anything. Size the pool to
//!   `probes per interval × connect_timeout / interval` with headroom.
//! - Workers are detached: [`HealthHandle::stop`] joins only the runner thread
//!   (prompt); a worker in the middle of a probe finishes it (bounded by its
//!   deadline) and exits when it finds the job queue closed.
//!
//! ## Output
//!
//! Every transition is sent as a [`HealthEvent`] over the `Sender` given to
//! [`HealthRunner::spawn`] and logged as a structured `tracing` event
//! (`service`, `server`, `check`, `state`/`weight`, `reason`). A newly added
//! target that starts down (`alpha`) produces a `Down` event at once so the
//! control side can take it out of the table.
//!
//! ## Reload
//!
//! [`HealthHandle::replace`] keeps the checker (state, counters, schedule) of every
//! target whose (server identity, service port, check config) is unchanged; a
//! target whose check changed gets a new checker that *inherits* the old up/down
//! state (no flap on reload, no unproven server brought up); targets no longer
//! listed are dropped (their in-flight results are ignored). It returns the status
//! of every target, to apply to the freshly built service table.

// Until `run.rs` wires the runner in, only the tests use it; remove then.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use xvs_config::{CheckConfig, Config, DestKey};
use xvs_core::health::{Action, Checker, Event, ProbeResult};
use xvs_core::service::ServiceKey;
use xvs_core::time::Time;

mod probe;
#[cfg(test)]
mod tests;

/// Probe workers of [`HealthRunner::spawn`].
pub const DEFAULT_WORKERS: usize = 8;

/// Longest the runner sleeps with nothing due (it wakes for any message anyway).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// One checked real server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Identity of the server (what [`xvs_config::IdAllocator::lookup`] takes).
    pub dest: DestKey,
    /// The service's port (used when neither `connect_port` nor the server's port
    /// is set).
    pub service_port: Option<u16>,
    /// The check.
    pub check: CheckConfig,
}

impl Target {
    /// Where the probe goes: `connect_ip` / `connect_port` overrides, else the
    /// server's address and port, else the service's port. `None` when there is no
    /// port (a validated config never has such a tcp/http/udp check).
    pub fn probe_addr(&self) -> Option<SocketAddr> {
        let ip = self.check.connect_ip.unwrap_or(self.dest.address);
        let port = self
            .check
            .connect_port
            .or(self.dest.port)
            .or(self.service_port)?;
        Some(SocketAddr::new(ip, port))
    }
}

/// The targets of a configuration: every real server with a check (own or the
/// service's).
pub fn targets(config: &Config) -> Vec<Target> {
    let mut out = Vec::new();
    for s in &config.services {
        let service_port = match s.key {
            ServiceKey::Tuple { port, .. } if port != 0 => Some(port),
            _ => None,
        };
        for r in &s.real_servers {
            if let Some(check) = &r.check {
                out.push(Target {
                    dest: DestKey {
                        service: s.name.clone(),
                        sorry: false,
                        address: r.address,
                        port: r.port,
                    },
                    service_port,
                    check: check.clone(),
                });
            }
        }
    }
    out
}

/// A transition of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthEvent {
    /// Which server.
    pub dest: DestKey,
    /// `Up`, `Down { reason }` or `Weight(n)` (dynamic misc checks).
    pub event: Event,
}

/// The current state of one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetStatus {
    /// Which server.
    pub dest: DestKey,
    /// Considered up.
    pub up: bool,
    /// Last weight reported by a dynamic check.
    pub weight: Option<u32>,
    /// Reason of the last failed attempt.
    pub reason: Option<String>,
}

/// `address:port` (or the bare address when the server keeps the packet's port).
struct ServerName<'a>(&'a DestKey);

impl fmt::Display for ServerName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.port {
            Some(p) => write!(f, "{}", SocketAddr::new(self.0.address, p)),
            None => write!(f, "{}", self.0.address),
        }
    }
}

/// Messages to the runner thread: commands and probe results on one channel.
enum Msg {
    Replace(Vec<Target>, Sender<Vec<TargetStatus>>),
    Status(Sender<Vec<TargetStatus>>),
    Stop,
    Result {
        slot: u64,
        attempt: u64,
        result: ProbeResult,
    },
}

/// A probe for a worker.
struct Job {
    slot: u64,
    attempt: u64,
    deadline: Instant,
    probe: Arc<probe::Probe>,
}

/// Spawns health runners.
#[derive(Debug)]
pub struct HealthRunner;

impl HealthRunner {
    /// Starts the runner thread and [`DEFAULT_WORKERS`] probe workers.
    pub fn spawn(targets: Vec<Target>, events: Sender<HealthEvent>) -> Result<HealthHandle> {
        Self::spawn_with(DEFAULT_WORKERS, targets, events)
    }

    /// Starts the runner thread and `workers` (at least 1) probe workers.
    pub fn spawn_with(
        workers: usize,
        targets: Vec<Target>,
        events: Sender<HealthEvent>,
    ) -> Result<HealthHandle> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for i in 0..workers.max(1) {
            let jobs = Arc::clone(&job_rx);
            let results = tx.clone();
            std::thread::Builder::new()
                .name(format!("xvs-probe-{i}"))
                .spawn(move || worker(&jobs, &results))
                .context("spawning a health probe worker")?;
        }
        let mut state = Runner {
            epoch: Instant::now(),
            entries: HashMap::new(),
            next_slot: 0,
            jobs: job_tx,
            events,
        };
        let thread = std::thread::Builder::new()
            .name("xvs-health".into())
            .spawn(move || {
                state.replace(targets);
                state.run(&rx);
            })
            .context("spawning the health runner")?;
        Ok(HealthHandle {
            tx,
            thread: Some(thread),
        })
    }
}

/// Control of a running [`HealthRunner`]; dropping it stops the runner.
#[derive(Debug)]
pub struct HealthHandle {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Msg::Replace(..) => "Replace",
            Msg::Status(_) => "Status",
            Msg::Stop => "Stop",
            Msg::Result { .. } => "Result",
        })
    }
}

impl HealthHandle {
    /// Replaces the set of targets (reload; see the module doc) and returns the
    /// status of every target afterwards. Answered within one runner iteration
    /// (the runner never waits on a probe).
    pub fn replace(&self, targets: Vec<Target>) -> Result<Vec<TargetStatus>> {
        let (tx, rx) = mpsc::channel();
        self.request(Msg::Replace(targets, tx), &rx)
    }

    /// The status of every target.
    pub fn status(&self) -> Result<Vec<TargetStatus>> {
        let (tx, rx) = mpsc::channel();
        self.request(Msg::Status(tx), &rx)
    }

    fn request(&self, msg: Msg, rx: &Receiver<Vec<TargetStatus>>) -> Result<Vec<TargetStatus>> {
        self.tx
            .send(msg)
            .map_err(|_| anyhow!("the health runner has stopped"))?;
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|e| anyhow!("the health runner did not answer: {e}"))
    }

    /// Stops the runner and waits for its thread (not for probes in flight).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the health runner thread panicked");
        }
    }
}

impl Drop for HealthHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, results: &Sender<Msg>) {
    loop {
        let job = {
            let Ok(rx) = jobs.lock() else { return };
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if Instant::now() >= job.deadline {
            // Queued past its deadline: the checker has already failed it.
            continue;
        }
        let result = job.probe.run(job.deadline);
        if results
            .send(Msg::Result {
                slot: job.slot,
                attempt: job.attempt,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

struct Entry {
    target: Target,
    probe: Arc<probe::Probe>,
    checker: Checker,
}

struct Runner {
    epoch: Instant,
    /// By slot: a number never reused, so results of a replaced checker never
    /// reach its successor.
    entries: HashMap<u64, Entry>,
    next_slot: u64,
    jobs: Sender<Job>,
    events: Sender<HealthEvent>,
}

fn seed(dest: &DestKey) -> u64 {
    let mut h = DefaultHasher::new();
    dest.hash(&mut h);
    h.finish()
}

impl Runner {
    fn now(&self) -> Time {
        Time::from_millis(self.epoch.elapsed().as_millis() as u64)
    }

    fn run(&mut self, rx: &Receiver<Msg>) {
        loop {
            let now = self.now();
            let slots: Vec<u64> = self.entries.keys().copied().collect();
            let mut next: Option<Time> = None;
            for slot in slots {
                let Some(e) = self.entries.get_mut(&slot) else {
                    continue;
                };
                e.checker.handle_timeout(now);
                self.drain(slot);
                if let Some(t) = self.entries[&slot].checker.poll_timeout()
                    && next.is_none_or(|n| n.is_after(t))
                {
                    next = Some(t);
                }
            }
            let wait = next.map_or(IDLE_WAIT, |t| {
                Duration::from_millis(u64::from(t.remaining_ms(self.now()))).min(IDLE_WAIT)
            });
            let msg = match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match msg {
                Msg::Stop => return,
                Msg::Result {
                    slot,
                    attempt,
                    result,
                } => {
                    let now = self.now();
                    if let Some(e) = self.entries.get_mut(&slot) {
                        e.checker.handle_result(now, attempt, result);
                        self.drain(slot);
                    }
                }
                Msg::Status(reply) => {
                    let _ = reply.send(self.status());
                }
                Msg::Replace(targets, reply) => {
                    self.replace(targets);
                    let _ = reply.send(self.status());
                }
            }
        }
    }

    fn status(&self) -> Vec<TargetStatus> {
        let mut v: Vec<(u64, TargetStatus)> = self
            .entries
            .iter()
            .map(|(slot, e)| {
                (
                    *slot,
                    TargetStatus {
                        dest: e.target.dest.clone(),
                        up: e.checker.is_up(),
                        weight: e.checker.weight(),
                        reason: e.checker.last_reason().map(str::to_owned),
                    },
                )
            })
            .collect();
        v.sort_by_key(|(slot, _)| *slot);
        v.into_iter().map(|(_, s)| s).collect()
    }

    fn replace(&mut self, targets: Vec<Target>) {
        let now = self.now();
        let mut old: HashMap<Target, u64> = self
            .entries
            .iter()
            .map(|(slot, e)| (e.target.clone(), *slot))
            .collect();
        let old_state: HashMap<DestKey, bool> = self
            .entries
            .values()
            .map(|e| (e.target.dest.clone(), e.checker.is_up()))
            .collect();
        let mut entries = HashMap::with_capacity(targets.len());
        let mut fresh = Vec::new();
        for t in targets {
            if let Some(slot) = old.remove(&t)
                && let Some(e) = self.entries.remove(&slot)
            {
                entries.insert(slot, e);
                continue;
            }
            if entries.values().any(|e: &Entry| e.target.dest == t.dest) {
                tracing::warn!(
                    service = %t.dest.service,
                    server = %ServerName(&t.dest),
                    "health check target listed twice; keeping the first"
                );
                continue;
            }
            let slot = self.next_slot;
            self.next_slot += 1;
            let seed = seed(&t.dest);
            let checker = match old_state.get(&t.dest) {
                Some(&up) => Checker::with_state(t.check.settings, now, seed, up),
                None => {
                    let c = Checker::new(t.check.settings, now, seed);
                    if !c.is_up() {
                        fresh.push(slot);
                    }
                    c
                }
            };
            let probe = Arc::new(probe::Probe::new(&t));
            entries.insert(
                slot,
                Entry {
                    target: t,
                    probe,
                    checker,
                },
            );
        }
        self.entries = entries;
        for slot in fresh {
            self.emit(
                slot,
                Event::Down {
                    reason: "alpha: not proven up yet".into(),
                },
            );
        }
    }

    /// Forwards the checker's actions to the workers and its events out.
    fn drain(&mut self, slot: u64) {
        let Some(e) = self.entries.get_mut(&slot) else {
            return;
        };
        let mut events = Vec::new();
        while let Some(ev) = e.checker.poll_event() {
            events.push(ev);
        }
        while let Some(Action::StartProbe { attempt }) = e.checker.poll_action() {
            let deadline = Instant::now()
                + Duration::from_millis(u64::from(e.checker.settings().connect_timeout_ms));
            let job = Job {
                slot,
                attempt,
                deadline,
                probe: Arc::clone(&e.probe),
            };
            if self.jobs.send(job).is_err() {
                tracing::error!("health probe workers are gone");
            }
        }
        for ev in events {
            self.emit(slot, ev);
        }
    }

    fn emit(&self, slot: u64, event: Event) {
        let Some(e) = self.entries.get(&slot) else {
            return;
        };
        let dest = &e.target.dest;
        let check = e.target.check.kind.name();
        match &event {
            Event::Up => tracing::info!(
                service = %dest.service,
                server = %ServerName(dest),
                check,
                state = "up",
                "real server up"
            ),
            Event::Down { reason } => tracing::warn!(
                service = %dest.service,
                server = %ServerName(dest),
                check,
                state = "down",
                reason = %reason,
                "real server down"
            ),
            Event::Weight(w) => tracing::info!(
                service = %dest.service,
                server = %ServerName(dest),
                check,
                weight = *w,
                "real server weight set by its check"
            ),
        }
        // A dropped receiver only means nobody listens any more.
        let _ = self.events.send(HealthEvent {
            dest: dest.clone(),
            event,
        });
    }
}
