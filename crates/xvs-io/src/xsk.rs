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
