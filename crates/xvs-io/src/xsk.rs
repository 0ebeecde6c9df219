//! # xsk — AF_XDP ports: the safe face of [`crate::sys::xsk`]
//!
//! Layer: between the rings ([`XskSocket`], in `sys`) and a worker's batch loop.
//! A [`Port`] is one AF_XDP socket on one queue of one interface, with its own
//! UMEM, in copy mode with need-wakeup. It has no `unsafe`: frame data is reached
//! only through the socket, which keeps the ownership invariant (a chunk is with
//! the kernel or with userspace, never both).
//!
//! Invariants:
//! - a [`Port`] never blocks in [`Port::recv`] / [`Port::send`]; the only system
//!   calls are the wake-ups the kernel asks for;
//! - every received frame ends in exactly one place per batch: the free list
//!   (→ fill ring) on [`Action::Drop`], the tx ring on [`Action::Tx`] (or a
//!   pending queue retried on the next call while the tx ring is full);
//! - dropping a [`Port`] unmaps its rings and UMEM and closes its socket (the
//!   steering program's XSKMAP entry for the socket goes away with it).

use std::os::fd::BorrowedFd;

use crate::frames::{Fate, FrameIo, PortStats};
use crate::sys::xsk::XskSocket;
pub use crate::sys::xsk::{UmemFrame, XskConfig, XskError};

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
/// on the same queue number. Forwarding between ports copies the frame into the
/// out port's UMEM (each port has its own; copy mode copies anyway).
#[derive(Debug)]
pub struct PortSet {
    ports: Vec<Port>,
    batch: Vec<UmemFrame>,
    stats: PortStats,
}

impl PortSet {
    /// A set over `ports`; port `i` is interface `i` of the decision engine.
    pub fn new(ports: Vec<Port>) -> Self {
        PortSet {
            ports,
            batch: Vec::with_capacity(256),
            stats: PortStats::default(),
        }
    }

    /// The ports.
    pub fn ports(&self) -> &[Port] {
        &self.ports
    }

    /// Copies `frame` of port `from` into a free frame of port `to`, queued for
    /// tx; false when `to` is not in the set or has no free frame.
    fn copy_out(&mut self, from: usize, to: usize, frame: &UmemFrame) -> bool {
        let Ok([src, dst]) = self.ports.get_disjoint_mut([from, to]) else {
            return false;
        };
        let Some(mut out) = dst.sock.alloc().or_else(|| {
            dst.sock.complete();
            dst.sock.alloc()
        }) else {
            return false;
        };
        if dst.sock.write(&mut out, src.sock.data(frame)).is_err() {
            dst.sock.recycle(out);
            return false;
        }
        dst.pending_tx.push(out);
        true
    }
}

impl FrameIo for PortSet {
    type Error = XskError;

    fn stats(&self) -> PortStats {
        let rx_dropped = self
            .ports
            .iter()
            .filter_map(|p| p.sock.statistics().ok())
            .map(|st| st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs)
            .sum();
        PortStats {
            rx_dropped,
            ..self.stats
        }
    }

    /// Receives up to `max` frames from each port, asks `decide(port, frame)`
    /// (which may rewrite the frame in place) where each goes, sends them, reaps
    /// completions and refills. Returns how many frames were received.
    fn poll<F>(&mut self, max: usize, mut decide: F) -> Result<usize, XskError>
    where
        F: FnMut(usize, &mut [u8]) -> Fate,
    {
        let mut received = 0;
        for i in 0..self.ports.len() {
            let mut batch = std::mem::take(&mut self.batch);
            received += self.ports[i].sock.rx(max, &mut batch);
            for frame in batch.drain(..) {
                match decide(i, self.ports[i].sock.data_mut(&frame)) {
                    Fate::Out(j) if j == i => {
                        self.stats.tx += 1;
                        self.ports[i].pending_tx.push(frame);
                    }
                    Fate::Out(j) => {
                        if self.copy_out(i, j, &frame) {
                            self.stats.tx += 1;
                        } else {
                            self.stats.tx_dropped += 1;
                        }
                        self.ports[i].sock.recycle(frame);
                    }
                    Fate::Drop => self.ports[i].sock.recycle(frame),
                }
            }
            self.batch = batch;
        }
        self.stats.rx += received as u64;
        for port in &mut self.ports {
            port.flush()?;
        }
        Ok(received)
    }

    /// Waits up to `timeout_ms` for any port to have received frames.
    fn wait(&self, timeout_ms: i32) -> Result<bool, XskError> {
        crate::sys::xsk::poll_rx_any(self.ports.iter().map(|p| &p.sock), timeout_ms)
    }

    /// Kicks tx and reaps completions until nothing is in flight or `deadline`
    /// passes (shutdown). Returns the frames still in flight.
    fn drain_tx(&mut self, deadline: std::time::Instant) -> usize {
        loop {
            let mut in_flight = 0;
            for port in &mut self.ports {
                let _ = port.flush();
                let _ = port.complete();
                in_flight += port.tx_in_flight();
            }
            if in_flight == 0 || std::time::Instant::now() >= deadline {
                return in_flight;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}
