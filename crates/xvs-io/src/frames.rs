//! # frames — what a worker asks of its packet I/O, whatever the backend
//!
//! Layer: I/O interface between the backends (AF_XDP [`crate::xsk::PortSet`],
//! AF_PACKET) and the worker loop. A [`FrameIo`] covers one queue of every
//! director interface; port `i` is the decision engine's interface `i`.
//!
//! Invariants every implementation keeps: `poll` never blocks; every received
//! frame ends in exactly one place (dropped/recycled, or queued for tx on one
//! port); frames that cannot be queued are counted in [`PortStats::tx_dropped`],
//! never lost silently; `wait` is the only call that sleeps.

use std::time::Instant;

/// Where a received frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Nowhere: its buffer is reused.
    Drop,
    /// Out of port `n` (in place when `n` is the receiving port; otherwise the
    /// same frame on port `n`'s tx ring when the backend shares its buffers
    /// across ports (AF_XDP), or a copy into a tx buffer of port `n` (AF_PACKET)).
    Out(usize),
}

/// Counters of a [`FrameIo`], cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Frames received.
    pub rx: u64,
    /// Frames queued for tx.
    pub tx: u64,
    /// Frames that could not be queued for tx (no free buffer, ring full, or an
    /// out port outside the set).
    pub tx_dropped: u64,
    /// Frames the kernel dropped before we saw them (AF_XDP: rx ring full or
    /// no fill buffer or too large; AF_PACKET: `tp_drops`).
    pub rx_dropped: u64,
}

impl std::ops::Add for PortStats {
    type Output = PortStats;

    /// Field-wise sum.
    fn add(self, o: PortStats) -> PortStats {
        PortStats {
            rx: self.rx + o.rx,
            tx: self.tx + o.tx,
            tx_dropped: self.tx_dropped + o.tx_dropped,
            rx_dropped: self.rx_dropped + o.rx_dropped,
        }
    }
}

/// What a worker does with the frames of one poll. `decide(port, frame)` says
/// where each goes (and may rewrite it in place); `look(port, frame)` is shown
/// every frame once, in order, before it is decided (the AF_XDP backend does so
/// `xsk::LOOK_AHEAD` frames ahead) — a chance to prefetch what deciding will touch
/// (backends that hand frames over one at a time skip it). A closure `FnMut(port, frame) -> Fate` is a `Decide`.
pub trait Decide {
    /// A first look at a frame about to be decided (default: nothing).
    #[inline]
    fn look(&mut self, _port: usize, _frame: &[u8]) {}

    /// Where the frame goes.
    fn decide(&mut self, port: usize, frame: &mut [u8]) -> Fate;
}

impl<F: FnMut(usize, &mut [u8]) -> Fate> Decide for F {
    #[inline]
    fn decide(&mut self, port: usize, frame: &mut [u8]) -> Fate {
        self(port, frame)
    }
}

/// One worker's packet I/O over all of the director's interfaces.
pub trait FrameIo {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Receives up to `max` frames from each port, asks `d` where each goes
    /// ([`Decide`]), queues them for tx and pushes tx. Returns how many frames
    /// were received. Never blocks.
    fn poll_with<D: Decide>(&mut self, max: usize, d: D) -> Result<usize, Self::Error>;

    /// [`FrameIo::poll_with`] with a closure `decide(port, frame) -> Fate`.
    #[inline]
    fn poll<F>(&mut self, max: usize, decide: F) -> Result<usize, Self::Error>
    where
        F: FnMut(usize, &mut [u8]) -> Fate,
    {
        self.poll_with(max, decide)
    }

    /// Waits up to `timeout_ms` for any port to have received frames.
    fn wait(&self, timeout_ms: i32) -> Result<bool, Self::Error>;

    /// Pushes queued tx until nothing is in flight or `deadline` passes
    /// (shutdown). Returns the frames still in flight.
    fn drain_tx(&mut self, deadline: Instant) -> usize;

    /// Counters so far.
    fn stats(&self) -> PortStats;
}
