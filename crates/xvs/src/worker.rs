//! Worker loops. Layer: binary (threads around the pure core and the I/O layer).
//!
//! One worker per configured core, pinned to it, owning one AF_XDP queue of every
//! director interface ([`PortSet`]) and its own [`Director`] over the shared tables.
//! Per iteration: a newer service snapshot if one was published (one atomic
//! load to know), one clock read, a batch from every port, `Director::process`
//! on each frame, tx. Every [`FLUSH_EVERY`] it hands its counters to the control
//! thread. (Table expiry sweeps run on the control thread.)
//!
//! Invariants: a worker never blocks while frames arrive (it sleeps in poll(2)
//! only after [`SPIN_ROUNDS`] empty rounds, at most [`IDLE_WAIT_MS`]); it takes no
//! lock except the shard locks inside the core and the snapshot cell's lock when
//! the generation changed; on stop it drains tx before returning.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xvs_core::classify::IfaceId;
use xvs_core::forward::{Snapshot, WorkerStats};
use xvs_core::time::Time;
use xvs_core::{Director, Prefetch, Verdict};
use xvs_io::frames::{Decide, Fate, FrameIo, PortStats};

/// Frames taken from each port per round.
pub const BATCH: usize = 64;
/// Empty rounds before the worker sleeps in poll(2).
pub const SPIN_ROUNDS: u32 = 256;
/// Longest sleep in poll(2) when idle (bounds the reaction to stop and reload).
pub const IDLE_WAIT_MS: i32 = 10;
/// How often counters are flushed and housekeeping runs.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The latest service snapshot, published by the control thread, and which
/// generation each worker has taken.
#[derive(Debug)]
pub struct SnapshotCell {
    generation: AtomicU64,
    snap: Mutex<Arc<Snapshot>>,
    taken: Box<[AtomicU64]>,
}

impl SnapshotCell {
    /// A cell holding `snap` (generation 0) for `workers` workers.
    pub fn new(snap: Arc<Snapshot>, workers: usize) -> Self {
        SnapshotCell {
            generation: AtomicU64::new(0),
            snap: Mutex::new(snap),
            taken: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Replace the snapshot; workers take it before their next batch. Returns
    /// its generation.
    pub fn publish(&self, snap: Arc<Snapshot>) -> u64 {
        *self.snap.lock().unwrap_or_else(|p| p.into_inner()) = snap;
        self.generation.fetch_add(1, Ordering::Release) + 1
    }

    /// Worker `worker` now decides with generation `generation`.
    fn taken(&self, worker: usize, generation: u64) {
        if let Some(t) = self.taken.get(worker) {
            t.store(generation, Ordering::Release);
        }
    }

    /// Waits (sleeping, at most `limit`) until every worker decides with
    /// generation `generation` or newer; false if one did not in time. An idle
    /// worker notices within its poll(2) timeout.
    pub fn wait_taken(&self, generation: u64, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self
                .taken
                .iter()
                .all(|t| t.load(Ordering::Acquire) >= generation)
            {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The current snapshot.
    pub fn load(&self) -> Arc<Snapshot> {
        self.snap.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Bumped on every publish.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// What a worker hands to the control thread.
#[derive(Debug)]
pub struct Report {
    /// Worker number.
    pub worker: usize,
    /// Decision counters since the last report.
    pub stats: WorkerStats,
    /// Cumulative I/O counters.
    pub io: PortStats,
}

/// What every worker shares with the control thread.
#[derive(Debug, Clone)]
pub struct Links {
    /// Where new snapshots appear.
    pub snapshots: Arc<SnapshotCell>,
    /// Set by the control thread to stop.
    pub stop: Arc<AtomicBool>,
    /// Counters go here.
    pub reports: Sender<Report>,
    /// Time zero of the core's clock (shared by all workers).
    pub epoch: Instant,
}

/// Everything a worker owns; `P` is its packet I/O (AF_XDP or AF_PACKET).
#[derive(Debug)]
pub struct Worker<P> {
    /// Worker number (= the queue it serves on every interface).
    pub id: usize,
    /// CPU to pin to, if any.
    pub core: Option<usize>,
    /// Its ports, index = `IfaceId`.
    pub ports: P,
    /// Its decision engine.
    pub director: Director,
    /// Its links to the control thread.
    pub links: Links,
}

/// A batch's decisions: the engine, at the batch's time.
struct Decisions<'a> {
    director: &'a mut Director,
    now: Time,
}

/// The CPU's prefetch hint, for the engine.
struct CpuPrefetch;

impl Prefetch for CpuPrefetch {
    #[inline]
    fn prefetch_addr(&self, addr: usize) {
        xvs_io::sys::prefetch_addr(addr);
    }
}

impl Decide for Decisions<'_> {
    #[inline]
    fn look(&mut self, _port: usize, frame: &[u8]) {
        self.director.prefetch(frame, &CpuPrefetch);
    }

    #[inline]
    fn decide(&mut self, port: usize, frame: &mut [u8]) -> Fate {
        match self.director.process(IfaceId(port as u16), self.now, frame) {
            Verdict::Forward { iface } => Fate::Out(iface.0 as usize),
            Verdict::Pass | Verdict::Drop(_) => Fate::Drop,
        }
    }
}

impl<P: FrameIo> Worker<P> {
    /// The loop; returns when `stop` is set (after draining tx) or on an I/O error.
    pub fn run(mut self) -> Result<()> {
        if let Some(core) = self.core
            && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
        {
            tracing::warn!(
                worker = self.id,
                core,
                "could not pin the worker to its core"
            );
        }
        tracing::info!(worker = self.id, core = ?self.core, "worker started");
        let mut generation = self.links.snapshots.generation();
        let mut last_flush = Instant::now();
        let mut idle_rounds = 0u32;
        while !self.links.stop.load(Ordering::Relaxed) {
            let current = self.links.snapshots.generation();
            if current != generation {
                generation = current;
                self.director.set_snapshot(self.links.snapshots.load());
                self.links.snapshots.taken(self.id, generation);
            }
            let wall = Instant::now();
            let now = Time::from_millis(wall.duration_since(self.links.epoch).as_millis() as u64);
            let decisions = Decisions {
                director: &mut self.director,
                now,
            };
            let received = self
                .ports
                .poll_with(BATCH, decisions)
                .with_context(|| format!("worker {}: packet I/O", self.id))?;
            if received == 0 {
                idle_rounds = idle_rounds.saturating_add(1);
                if idle_rounds > SPIN_ROUNDS {
                    self.ports
                        .wait(IDLE_WAIT_MS)
                        .with_context(|| format!("worker {}: poll", self.id))?;
                }
            } else {
                idle_rounds = 0;
            }
            if wall.duration_since(last_flush) >= FLUSH_EVERY {
                last_flush = wall;
                self.flush();
            }
        }
        let left = self
            .ports
            .drain_tx(Instant::now() + Duration::from_millis(200));
        if left > 0 {
            tracing::warn!(worker = self.id, frames = left, "tx not drained at stop");
        }
        self.flush();
        tracing::info!(worker = self.id, "worker stopped");
        Ok(())
    }

    fn flush(&mut self) {
        let report = Report {
            worker: self.id,
            stats: self.director.take_stats(),
            io: self.ports.stats(),
        };
        // The control thread gone means we are stopping anyway.
        let _ = self.links.reports.send(report);
    }
}
