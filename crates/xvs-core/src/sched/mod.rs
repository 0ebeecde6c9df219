//! Real-server schedulers: the IPVS algorithms rr, wrr, lc, wlc, sed, nq, sh,
//! dh, mh and fo.
//!
//! Layer: pure core (no I/O, no `unsafe`). Split in two halves:
//!
//! * **build** ([`Scheduler::build`]) runs on the control thread whenever a
//!   service's set of eligible real servers or their weights change. It
//!   validates the input, may allocate, and is O(table size) (times log n for
//!   the weighted interleave).
//! * **select** ([`Scheduler::select`]) runs on the data path once per *new*
//!   flow. It never allocates, takes no lock, never panics, and is bounded:
//!   O(1) for wrr/sh/dh/mh in the common case, O(n) for the least-connection
//!   family (like IPVS), and at worst O(len) probing when servers are
//!   overloaded.
//!
//! # Invariants
//!
//! * A [`Scheduler`] is immutable after build except the rotation cursor of
//!   rr/wrr (an `AtomicUsize`, `Relaxed`); it is `Send + Sync` and meant to be
//!   shared (e.g. behind an `Arc` swapped on reconfiguration).
//! * `select` returns `Some(i)` only with `i < len()` and only for a candidate
//!   whose [`Load::overloaded`] was false when read; `None` when the list is
//!   empty or no candidate is available (or, for sh/mh without the fallback
//!   flag and for dh, when the hashed pick is unavailable, as in IPVS).
//! * Candidates are distinct `(addr, port)` pairs with weight >= 1 (quiescent
//!   weight-0 servers are not passed in); build rejects anything else.
//! * Hashing schedulers (sh, dh, mh) are a pure function of
//!   `(config, set of candidates)`: independent of candidate order and of
//!   the machine (see [`hash`]), so two directors with the same config agree.
//!   rr/wrr/lc/wlc/sed/nq/fo are order dependent by definition (rotation
//!   order, lowest index wins ties), as in IPVS.

pub mod hash;
mod least;
pub mod maglev;
mod rr;
mod seq;
mod table;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::atomic::AtomicUsize;

pub use table::HashTable;

/// Maximum number of candidates of one service (indices are stored as u16;
/// `u16::MAX` is reserved as "empty slot" while building tables).
pub const MAX_CANDIDATES: usize = u16::MAX as usize;
/// Default (and IPVS default) Maglev table size; prime.
pub const MH_DEFAULT_TABLE_SIZE: u32 = 65537;
/// Maglev needs a table much larger than the backend count for even shares
/// and small disruption; build requires `table_size >= this * candidates`.
pub const MH_MIN_SLOTS_PER_CANDIDATE: u64 = 32;
/// Upper bound on the Maglev table size (64 Ki slots * 256; 32 MiB of u16).
pub const MH_MAX_TABLE_SIZE: u32 = 1 << 24;
/// Longest wrr sequence; longer ones are scaled down proportionally (`rr.rs`).
pub const WRR_MAX_SEQ: usize = 65536;
/// sh/mh fallback: salted rehashes tried before a linear scan.
pub const FALLBACK_REHASHES: u64 = 8;

/// The scheduling algorithm, named as in ipvsadm(8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedKind {
    /// Round robin.
    Rr,
    /// Weighted round robin.
    Wrr,
    /// Least connection.
    Lc,
    /// Weighted least connection (IPVS default).
    Wlc,
    /// Shortest expected delay.
    Sed,
    /// Never queue.
    Nq,
    /// Source hashing.
    Sh,
    /// Destination hashing.
    Dh,
    /// Maglev hashing.
    Mh,
    /// Weighted failover.
    Fo,
}

impl SchedKind {
    /// All kinds, in declaration order.
    pub const ALL: [SchedKind; 10] = [
        SchedKind::Rr,
        SchedKind::Wrr,
        SchedKind::Lc,
        SchedKind::Wlc,
        SchedKind::Sed,
        SchedKind::Nq,
        SchedKind::Sh,
        SchedKind::Dh,
        SchedKind::Mh,
        SchedKind::Fo,
    ];

    /// The IPVS name ("rr", "wrr", ...).
    pub const fn name(self) -> &'static str {
        match self {
            SchedKind::Rr => "rr",
            SchedKind::Wrr => "wrr",
            SchedKind::Lc => "lc",
            SchedKind::Wlc => "wlc",
            SchedKind::Sed => "sed",
            SchedKind::Nq => "nq",
            SchedKind::Sh => "sh",
            SchedKind::Dh => "dh",
            SchedKind::Mh => "mh",
            SchedKind::Fo => "fo",
        }
    }
}

impl fmt::Display for SchedKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SchedKind {
    type Err = SchedError;
    fn from_str(s: &str) -> Result<Self, SchedError> {
        SchedKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| SchedError::UnknownKind(s.to_owned()))
    }
}

/// IPVS scheduler flags `sh-fallback`/`mh-fallback` and `sh-port`/`mh-port`.
/// Only sh and mh read them (dh has none in IPVS); other kinds ignore them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SchedFlags {
    /// An unavailable hashed pick falls back to another available server.
    pub fallback: bool,
    /// Hash the source port too (TCP, UDP, SCTP; port 0 for other protocols).
    pub port: bool,
}

/// Everything build needs besides the candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SchedConfig {
    pub kind: SchedKind,
    pub flags: SchedFlags,
    /// Maglev lookup table size: prime, `>= MH_MIN_SLOTS_PER_CANDIDATE * n`,
    /// `<= MH_MAX_TABLE_SIZE`. Only checked (and used) for mh.
    pub mh_table_size: u32,
    /// Key of the flow and backend hashes (sh, dh, mh). Directors that must
    /// agree on picks share it.
    pub hash_seed: u64,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            kind: SchedKind::Wlc,
            flags: SchedFlags::default(),
            mh_table_size: MH_DEFAULT_TABLE_SIZE,
            hash_seed: 0,
        }
    }
}

/// One eligible real server of the service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Candidate {
    pub addr: IpAddr,
    pub port: u16,
    /// >= 1.
    pub weight: u32,
}

/// The new flow being scheduled (addresses and ports as seen by the director).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 132 SCTP, ...).
    pub protocol: u8,
}

/// Live counters of one candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    pub active: u32,
    pub inactive: u32,
    /// Upper connection threshold reached: the server takes no new flow.
    pub overloaded: bool,
}

/// Read access to the live counters of candidate `idx` (same indices as the
/// candidate slice given to build). Called on the data path: must not block.
pub trait LoadView {
    fn load(&self, idx: usize) -> Load;
}

/// A slice of loads; a missing index reads as idle.
impl LoadView for [Load] {
    #[inline]
    fn load(&self, idx: usize) -> Load {
        self.get(idx).copied().unwrap_or_default()
    }
}
impl<const N: usize> LoadView for [Load; N] {
    #[inline]
    fn load(&self, idx: usize) -> Load {
        self.as_slice().load(idx)
    }
}
impl LoadView for Vec<Load> {
    #[inline]
    fn load(&self, idx: usize) -> Load {
        self.as_slice().load(idx)
    }
}
impl<T: LoadView + ?Sized> LoadView for &T {
    #[inline]
    fn load(&self, idx: usize) -> Load {
        (**self).load(idx)
    }
}

/// Every candidate idle and available (useful for hashing schedulers and tests).
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle;
impl LoadView for Idle {
    #[inline]
    fn load(&self, _idx: usize) -> Load {
        Load::default()
    }
}

/// Adapts a closure `Fn(usize) -> Load` to [`LoadView`].
#[derive(Clone, Copy, Debug)]
pub struct LoadFn<F>(pub F);
impl<F: Fn(usize) -> Load> LoadView for LoadFn<F> {
    #[inline]
    fn load(&self, idx: usize) -> Load {
        (self.0)(idx)
    }
}

/// Why build refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    #[error("mh table size {0} is not prime")]
    MhTableSizeNotPrime(u32),
    #[error(
        "mh table size {size} is too small for {candidates} real servers: \
         need at least {min} ({MH_MIN_SLOTS_PER_CANDIDATE} slots per server)"
    )]
    MhTableTooSmall {
        size: u32,
        candidates: usize,
        min: u64,
    },
    #[error("mh table size {size} exceeds the maximum {max}")]
    MhTableTooLarge { size: u32, max: u32 },
    #[error("{count} real servers exceed the maximum of {max} per service")]
    TooManyCandidates { count: usize, max: usize },
    #[error(
        "real server {addr} port {port} (index {index}) has weight 0; \
         quiescent servers must not be passed to the scheduler"
    )]
    ZeroWeight {
        index: usize,
        addr: IpAddr,
        port: u16,
    },
    #[error("real server {addr} port {port} is listed twice (indices {first} and {second})")]
    DuplicateCandidate {
        addr: IpAddr,
        port: u16,
        first: usize,
        second: usize,
    },
    #[error("unknown scheduler {0:?} (expected rr, wrr, lc, wlc, sed, nq, sh, dh, mh or fo)")]
    UnknownKind(String),
}

/// Per-kind precomputed state.
enum Algo {
    Rr,
    Wrr {
        seq: Box<[u16]>,
    },
    Lc,
    Wlc,
    Sed,
    Nq,
    /// Candidate indices by weight, highest first (stable: lowest index first on ties).
    Fo {
        by_weight: Box<[u16]>,
    },
    /// sh, dh, mh.
    Hashed(HashTable),
}

/// A built scheduler for one service. See the module doc.
pub struct Scheduler {
    kind: SchedKind,
    flags: SchedFlags,
    seed: u64,
    weights: Box<[u32]>,
    algo: Algo,
    /// rr/wrr rotation position; unused by other kinds.
    cursor: AtomicUsize,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Scheduler");
        d.field("kind", &self.kind)
            .field("flags", &self.flags)
            .field("len", &self.len());
        match &self.algo {
            Algo::Wrr { seq } => d.field("wrr_seq_len", &seq.len()),
            Algo::Hashed(t) => d.field("table_size", &t.slots().len()),
            _ => &mut d,
        };
        d.finish_non_exhaustive()
    }
}

/// IP protocols whose first 4 L4 bytes are source and destination ports.
#[inline]
fn has_ports(protocol: u8) -> bool {
    matches!(protocol, 6 | 17 | 132)
}

/// Validates the candidate list common to all kinds.
fn validate(candidates: &[Candidate]) -> Result<(), SchedError> {
    if candidates.len() > MAX_CANDIDATES {
        return Err(SchedError::TooManyCandidates {
            count: candidates.len(),
            max: MAX_CANDIDATES,
        });
    }
    if let Some((index, c)) = candidates.iter().enumerate().find(|(_, c)| c.weight == 0) {
        return Err(SchedError::ZeroWeight {
            index,
            addr: c.addr,
            port: c.port,
        });
    }
    let mut keys: Vec<(IpAddr, u16, usize)> = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| (c.addr, c.port, i))
        .collect();
    keys.sort_unstable();
    if let Some(w) = keys
        .windows(2)
        .find(|w| (w[0].0, w[0].1) == (w[1].0, w[1].1))
    {
        return Err(SchedError::DuplicateCandidate {
            addr: w[0].0,
            port: w[0].1,
            first: w[0].2,
            second: w[1].2,
        });
    }
    Ok(())
}

impl Scheduler {
    /// Builds the scheduler for `candidates` (control side; allocates).
    pub fn build(cfg: &SchedConfig, candidates: &[Candidate]) -> Result<Scheduler, SchedError> {
        validate(candidates)?;
        let algo = match cfg.kind {
            SchedKind::Rr => Algo::Rr,
            SchedKind::Wrr => Algo::Wrr {
                seq: rr::wrr_sequence(candidates),
            },
            SchedKind::Lc => Algo::Lc,
            SchedKind::Wlc => Algo::Wlc,
            SchedKind::Sed => Algo::Sed,
            SchedKind::Nq => Algo::Nq,
            SchedKind::Fo => Algo::Fo {
                by_weight: least::fo_order(candidates),
            },
            SchedKind::Sh | SchedKind::Dh => {
                Algo::Hashed(table::bucket_table(cfg.hash_seed, candidates))
            }
            SchedKind::Mh => {
                Algo::Hashed(maglev::build(cfg.hash_seed, cfg.mh_table_size, candidates)?)
            }
        };
        Ok(Scheduler {
            kind: cfg.kind,
            flags: cfg.flags,
            seed: cfg.hash_seed,
            weights: candidates.iter().map(|c| c.weight).collect(),
            algo,
            cursor: AtomicUsize::new(0),
        })
    }

    /// The rr/wrr rotation position (control side: carried into a rebuilt
    /// scheduler with [`Scheduler::set_cursor`]).
    pub fn cursor(&self) -> usize {
        self.cursor.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sets the rotation position (taken modulo the candidates when used).
    pub fn set_cursor(&self, position: usize) {
        self.cursor
            .store(position, std::sync::atomic::Ordering::Relaxed);
    }

    /// Picks a real server for a new flow (data path: no allocation, no lock).
    /// Returns an index into the build's candidate slice.
    #[inline]
    pub fn select<L: LoadView>(&self, flow: &Flow, loads: &L) -> Option<usize> {
        let w = &self.weights;
        match &self.algo {
            Algo::Rr => rr::select_rr(&self.cursor, w.len(), loads),
            Algo::Wrr { seq } => rr::select_wrr(&self.cursor, seq, loads),
            Algo::Lc => least::select_lc(w.len(), loads),
            Algo::Wlc => least::select_wlc(w, loads),
            Algo::Sed => least::select_sed(w, loads),
            Algo::Nq => least::select_nq(w, loads),
            Algo::Fo { by_weight } => least::select_fo(by_weight, loads),
            Algo::Hashed(t) => {
                let (addr, port, fallback) = match self.kind {
                    SchedKind::Dh => (flow.dst, None, false),
                    _ => {
                        let port = self.flags.port.then_some(if has_ports(flow.protocol) {
                            flow.src_port
                        } else {
                            0
                        });
                        (flow.src, port, self.flags.fallback)
                    }
                };
                t.select(self.seed, &addr, port, fallback, loads)
            }
        }
    }

    /// The algorithm this scheduler was built for.
    pub fn kind(&self) -> SchedKind {
        self.kind
    }

    /// Number of candidates it was built with.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// True if built with no candidate (select always returns None).
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The flags it was built with.
    pub fn flags(&self) -> SchedFlags {
        self.flags
    }

    /// The precomputed wrr sequence (candidate indices), if kind is wrr.
    pub fn wrr_sequence(&self) -> Option<&[u16]> {
        match &self.algo {
            Algo::Wrr { seq } => Some(seq),
            _ => None,
        }
    }

    /// The sh/dh bucket table or mh lookup table, if kind is one of those.
    pub fn hash_table(&self) -> Option<&HashTable> {
        match &self.algo {
            Algo::Hashed(t) => Some(t),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
