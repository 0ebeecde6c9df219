//! # xsk — AF_XDP ports: the safe face of [`crate::sys::xsk`]
//!
//! Layer: between the rings ([`XskSet`], in `sys`) and a worker's batch loop.
//! A [`PortSet`] is one worker's AF_XDP sockets, one per interface, all on the
//! same queue number and all sharing **one UMEM**: a frame received on port `i`
//! and sent out of port `j` is the very same chunk, put on `j`'s tx ring (no
//! copy in userspace). A [`Port`] is a single socket with a UMEM of its own
//! (tests, tools). Both are in copy mode with need-wakeup. No `unsafe` here:
//! frame data is reached only through the set, which keeps the ownership
//! invariant (a chunk is with the kernel or with userspace, never both).
//!
//! Invariants:
//! - a [`Port`] / [`PortSet`] never blocks in `recv` / `send` / `poll`; the only
//!   system calls are the wake-ups the kernel asks for;
//! - every received frame ends in exactly one place per batch: the shared free
//!   pool (→ some fill ring) on drop, or the tx ring of its out port (or that
//!   port's pending queue, at most a tx ring's worth, retried on the next call
//!   while the tx ring is full; beyond that it is dropped and counted in
//!   `tx_dropped`);
//! - a tx completion comes back on the completion ring of the port that sent
//!   the frame and returns the chunk to the shared free pool; the pool is split
//!   fairly across the fill rings on every poll ([`XskSet::refill`]);
//! - frames are conserved: [`PortSet::census`] adds up to the UMEM's size;
//!   no allocation after open (batch and pending queues are sized then);
//! - dropping a [`Port`] / [`PortSet`] closes its sockets, then unmaps the UMEM
//!   (the steering program's XSKMAP entries go away with the sockets).

use std::os::fd::BorrowedFd;

use crate::frames::{Decide, Fate, FrameIo, PortStats};
pub use crate::sys::xsk::{FrameCensus, UmemFrame, XskConfig, XskError};
use crate::sys::xsk::{XskSet, XskSocket};

/// How many frames ahead of its decision a received frame is shown to
/// [`Decide::look`]. (`xvs-sidebyside --rows b --flows 65535`, NAT / bare: the whole
/// 32-frame batch first 0.82–0.83; 4 ahead 0.80–0.82; 8 ahead 0.85–0.87; 16 ahead
/// 0.86–0.88.)
pub const LOOK_AHEAD: usize = 8;
/// How many frames ahead of its decision a received frame's header is prefetched.
const HEADER_AHEAD: usize = 2 * LOOK_AHEAD;

/// What to do with a received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Give the frame back to the fill ring.
    Drop,
    /// Transmit the (possibly rewritten in place) frame out of this port.
    Tx,
}

/// One AF_XDP socket bound to `ifname`/`queue`.
#[derive(Debug)]
pub struct Port {
    sock: XskSocket,
    ifindex: u32,
    queue: u32,
    batch: Vec<UmemFrame>,
    pending_tx: Vec<UmemFrame>,
}

impl Port {
    /// Opens an AF_XDP socket on `ifname` (in the calling thread's network
    /// namespace), queue `queue`, with a UMEM sized by `cfg`.
    pub fn open(ifname: &str, queue: u32, cfg: XskConfig) -> Result<Self, XskError> {
        let ifindex = crate::sys::if_index(ifname).map_err(|source| XskError::Sys {
            op: "if_nametoindex",
            source,
        })?;
        Ok(Port {
            sock: XskSocket::new(ifindex, queue, cfg)?,
            ifindex,
            queue,
            batch: Vec::with_capacity(64),
            pending_tx: Vec::with_capacity(64),
        })
    }

    /// The socket's descriptor, for [`crate::steer::SteeringProgram::set_socket`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.fd()
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The queue id.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The underlying socket, for frame-level (handle) use.
    pub fn socket(&mut self) -> &mut XskSocket {
        &mut self.sock
    }

    /// Receives up to `max` frames, handing each to `f` (which may rewrite it in
    /// place), then recycles or transmits it as `f` says, reaps tx completions
    /// and refills the fill ring. Returns how many frames were received.
    pub fn recv<F>(&mut self, max: usize, mut f: F) -> Result<usize, XskError>
    where
        F: FnMut(&mut [u8]) -> Action,
    {
        let mut batch = std::mem::take(&mut self.batch);
        let n = self.sock.rx(max, &mut batch);
        for frame in batch.drain(..) {
            match f(self.sock.data_mut(&frame)) {
                Action::Drop => self.sock.recycle(frame),
                Action::Tx => self.pending_tx.push(frame),
            }
        }
        self.batch = batch;
        self.flush()?;
        Ok(n)
    }

    /// Copies `frame` into a free UMEM frame and queues it for tx. Returns false
    /// (and sends nothing) if no frame is free.
    pub fn send(&mut self, frame: &[u8]) -> Result<bool, XskError> {
        self.sock.complete();
        let Some(mut f) = self.sock.alloc() else {
            return Ok(false);
        };
        if let Err(e) = self.sock.write(&mut f, frame) {
            self.sock.recycle(f);
            return Err(e);
        }
        self.pending_tx.push(f);
        self.flush()?;
        Ok(true)
    }

    /// Kicks tx if frames wait on the tx ring, then reaps tx completions (their
    /// frames return to the free list); returns how many completed.
    pub fn complete(&mut self) -> Result<usize, XskError> {
        self.sock.kick_tx()?;
        Ok(self.sock.complete())
    }

    /// Frames queued for tx (on the ring or pending) and not yet completed.
    pub fn tx_in_flight(&self) -> usize {
        self.sock.tx_outstanding() as usize + self.pending_tx.len()
    }

    /// Waits up to `timeout_ms` for received frames; true if some are ready.
    pub fn poll_rx(&self, timeout_ms: i32) -> Result<bool, XskError> {
        self.sock.poll_rx(timeout_ms)
    }

    /// Pushes pending tx frames (kicking the kernel), reaps completions, refills.
    fn flush(&mut self) -> Result<(), XskError> {
        if !self.pending_tx.is_empty() {
            self.sock.tx(&mut self.pending_tx)?;
        }
        self.sock.complete();
        self.sock.refill();
        Ok(())
    }
}

/// One worker's ports, one per interface (index = the core's `IfaceId`), each
/// on the same queue number, all sharing one UMEM of `ports × frame_count`
/// frames: forwarding between ports moves the frame, it does not copy it.
#[derive(Debug)]
pub struct PortSet {
    set: XskSet,
    ifindexes: Vec<u32>,
    queue: u32,
    batch: Vec<UmemFrame>,
    /// Per port: frames decided for it and not yet on its tx ring.
    pending: Vec<Vec<UmemFrame>>,
    /// Most frames a pending queue holds (a tx ring's worth).
    pending_max: usize,
    stats: PortStats,
}

impl PortSet {
    /// Opens one AF_XDP socket per interface of `ifnames` (in the calling
    /// thread's network namespace), all on `queue`, sharing one UMEM of
    /// `ifnames.len() × cfg.frame_count` frames; port `i` is interface `i` of
    /// the decision engine. Each socket still has to be put in its interface's
    /// XSKMAP ([`PortSet::fd`]).
    pub fn open(ifnames: &[&str], queue: u32, cfg: XskConfig) -> Result<Self, XskError> {
        let ifindexes = ifnames
            .iter()
            .map(|name| crate::sys::if_index(name))
            .collect::<Result<Vec<u32>, _>>()
            .map_err(|source| XskError::Sys {
                op: "if_nametoindex",
                source,
            })?;
        let set = XskSet::new(&ifindexes, queue, cfg)?;
        let pending_max = cfg.ring_size as usize;
        Ok(PortSet {
            pending: (0..ifindexes.len())
                .map(|_| Vec::with_capacity(pending_max))
                .collect(),
            set,
            ifindexes,
            queue,
            // rx takes at most `max` per port and per call; frames beyond the
            // capacity would allocate once, then the vector keeps its size.
            batch: Vec::with_capacity(cfg.ring_size as usize),
            pending_max,
            stats: PortStats::default(),
        })
    }

    /// How many ports.
    pub fn len(&self) -> usize {
        self.ifindexes.len()
    }

    /// Whether there is no port (never: [`PortSet::open`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.ifindexes.is_empty()
    }

    /// Port `i`'s socket descriptor, for
    /// [`crate::steer::SteeringProgram::set_socket`]. Panics if `i >= len()`.
    pub fn fd(&self, i: usize) -> BorrowedFd<'_> {
        self.set.fd(i)
    }

    /// Port `i`'s interface index.
    pub fn ifindex(&self, i: usize) -> u32 {
        self.ifindexes[i]
    }

    /// The queue id (the same on every port).
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Whether the kernel gave these sockets zero-copy mode (it does where every
    /// driver offers it; veth does not: copy mode).
    pub fn zero_copy(&self) -> Result<bool, XskError> {
        self.set.zero_copy()
    }

    /// Where every frame of the shared UMEM is (frames pending for tx count as
    /// `held`): `census().accounted() == census().total` always.
    pub fn census(&self) -> FrameCensus {
        self.set.census()
    }

    /// Frames given to port `i`'s fill ring and not yet received back.
    pub fn fill_frames(&self, i: usize) -> usize {
        self.set.fill_frames(i)
    }

    /// Frames queued for tx (pending or on a tx ring) and not yet completed.
    pub fn tx_in_flight(&self) -> usize {
        (0..self.len())
            .map(|i| self.set.tx_outstanding(i) as usize + self.pending[i].len())
            .sum()
    }

    /// Pushes every port's pending tx frames (kicking the kernel), reaps every
    /// completion ring into the shared pool, refills the fill rings.
    fn flush(&mut self) -> Result<(), XskError> {
        for (i, pending) in self.pending.iter_mut().enumerate() {
            if !pending.is_empty() {
                self.set.tx(i, pending)?;
            } else {
                self.set.kick_tx(i)?;
            }
        }
        self.set.complete_all();
        self.set.refill();
        Ok(())
    }
}

impl FrameIo for PortSet {
    type Error = XskError;

    fn stats(&self) -> PortStats {
        // Copy mode: a frame dropped for lack of a fill buffer counts in both
        // `rx_dropped` and `rx_fill_ring_empty_descs` (measured: 152 drops read
        // as 304 when both were summed), one dropped for a full rx ring only in
        // `rx_ring_full`.
        let rx_dropped = (0..self.len())
            .filter_map(|i| self.set.statistics(i).ok())
            .map(|st| st.rx_dropped + st.rx_ring_full)
            .sum();
        PortStats {
            rx_dropped,
            ..self.stats
        }
    }

    /// Receives up to `max` frames from each port and asks `d` where each goes (it
    /// may rewrite the frame in place), showing it every frame [`LOOK_AHEAD`]
    /// frames before ([`Decide::look`]); queues each frame on
    /// its out port's tx ring (the same chunk, whichever port), pushes tx, reaps
    /// completions and refills. Returns how many frames were received.
    fn poll_with<D: Decide>(&mut self, max: usize, mut d: D) -> Result<usize, XskError> {
        let mut received = 0;
        for i in 0..self.len() {
            let mut batch = std::mem::take(&mut self.batch);
            received += self.set.rx(i, max, &mut batch);
            // Software pipelining: the kernel wrote these frames on another CPU, so
            // a frame's header is prefetched `HEADER_AHEAD` frames before its turn
            // and shown to `look` (which starts the decision's own misses)
            // `LOOK_AHEAD` frames before it. Looking at a whole batch at once asked
            // for more lines than the CPU can have in flight, and the prefetches
            // themselves stalled.
            for frame in batch.iter().take(HEADER_AHEAD) {
                crate::sys::prefetch_addr(self.set.data(frame).as_ptr() as usize);
            }
            for frame in batch.iter().take(LOOK_AHEAD) {
                d.look(i, self.set.data(frame));
            }
            let mut frames = batch.drain(..);
            while let Some(frame) = frames.next() {
                let ahead = frames.as_slice();
                if let Some(f) = ahead.get(HEADER_AHEAD - 1) {
                    crate::sys::prefetch_addr(self.set.data(f).as_ptr() as usize);
                }
                if let Some(f) = ahead.get(LOOK_AHEAD - 1) {
                    d.look(i, self.set.data(f));
                }
                match d.decide(i, self.set.data_mut(&frame)) {
                    Fate::Out(j) => match self.pending.get_mut(j) {
                        Some(q) if q.len() < self.pending_max => {
                            self.stats.tx += 1;
                            q.push(frame);
                        }
                        _ => {
                            self.stats.tx_dropped += 1;
                            self.set.recycle(frame);
                        }
                    },
                    Fate::Drop => self.set.recycle(frame),
                }
            }
            drop(frames);
            self.batch = batch;
        }
        self.stats.rx += received as u64;
        self.flush()?;
        Ok(received)
    }

    /// Waits up to `timeout_ms` for any port to have received frames.
    fn wait(&self, timeout_ms: i32) -> Result<bool, XskError> {
        self.set.poll_rx(timeout_ms)
    }

    /// Kicks tx and reaps completions until nothing is in flight or `deadline`
    /// passes (shutdown). Returns the frames still in flight.
    fn drain_tx(&mut self, deadline: std::time::Instant) -> usize {
        loop {
            let _ = self.flush();
            let in_flight = self.tx_in_flight();
            if in_flight == 0 || std::time::Instant::now() >= deadline {
                return in_flight;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}
