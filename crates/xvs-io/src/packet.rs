//! # packet — the AF_PACKET backend: the safe face of [`crate::sys::tpacket`]
//!
//! Layer: between AF_PACKET sockets (in `sys`) and a worker's batch loop; the
//! fallback to [`crate::xsk`] where AF_XDP is not available. A
//! [`PacketPortSet`] holds one socket per director interface for one worker,
//! each with a `TPACKET_V3` rx ring; it implements [`FrameIo`]. No `unsafe`
//! here.
//!
//! - **rx**: frames are handed to `decide` as slices inside the mmap'd ring and
//!   rewritten there; a block goes back to the kernel as soon as its last frame
//!   has been decided (a block may span two `poll`s when `max` cuts it).
//! - **tx**: a frame sent out of port `j` is copied into port `j`'s tx arena
//!   (64 slots, allocated at open); the arena is sent with one `sendmmsg(2)`
//!   at the end of the `poll` (or when it fills up). What the kernel does not
//!   take is counted in [`PortStats::tx_dropped`] and never retried.
//! - **sockets**: bound to their interface with `ETH_P_ALL`, not seeing their
//!   own tx (`PACKET_IGNORE_OUTGOING`, and the fanout group's
//!   `PACKET_FANOUT_FLAG_IGNORE_OUTGOING`), qdisc bypassed on tx, and with a
//!   fanout group, sharing the interface with the other workers by flow hash
//!   (`PACKET_FANOUT_HASH`): a flow stays on one worker and in order.
//! - frames reach `decide` as they were on the wire: the kernel moves a
//!   received frame's VLAN tag out of the frame, the ring puts it back.
//! - AF_PACKET is a tap: the kernel also processes every frame received.
//!   Keep it from answering for the VIPs (e.g. a netfilter drop rule after the
//!   tap), as the lab notes describe.
//!
//! Invariants:
//! - [`FrameIo::poll`] never blocks (non-blocking sends, no waiting on rx);
//!   [`FrameIo::wait`] is the only call that sleeps;
//! - every received frame ends in exactly one place: dropped (its block goes
//!   back to the kernel), sent, or counted in `tx_dropped` (out port outside
//!   the set, larger than a tx slot, or refused by the kernel); a frame the
//!   kernel truncated is not decided on and counted in `rx_dropped`;
//! - every ring block read to its end is returned to the kernel in the same
//!   call;
//! - no allocation after [`PacketPortSet::open`] (arenas and their length
//!   vectors are reused; send batches are built on the stack), except to name
//!   the interface in an error.

use std::io;
use std::time::Instant;

use crate::frames::{Decide, Fate, FrameIo, PortStats};
use crate::sys::tpacket::{self, Fanout, RingConfig, RxRing, SEND_BATCH, TpacketSocket};

/// An AF_PACKET backend error; names the interface and the operation.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// A system call on the socket of `ifname` failed.
    #[error("interface {ifname}: {op}: {source}")]
    Sys {
        /// The interface.
        ifname: String,
        /// The operation, e.g. `setsockopt(PACKET_RX_RING)`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The configuration cannot work.
    #[error("AF_PACKET configuration: {0}")]
    Config(&'static str),
}

/// Geometry of each socket's rx ring and tx arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketConfig {
    /// Bytes per rx ring block (a power-of-two multiple of the page size).
    pub block_size: u32,
    /// Rx ring blocks per socket.
    pub block_nr: u32,
    /// Nominal rx frame size (`tp_frame_size`): divides `block_size`.
    pub frame_size: u32,
    /// Longest wait, in ms, before a partly-filled block is handed over (the
    /// added latency at low rates).
    pub block_timeout_ms: u32,
    /// Bytes per tx arena slot: the largest frame that can be sent.
    pub tx_slot: u32,
}

impl Default for PacketConfig {
    /// 64 blocks × 64 KiB = 4 MiB per socket (≈ 29 000 minimum-size frames,
    /// ≈ 22 ms at 1.3 Mpps), 2048-byte frames, 2 ms block timeout, 2048-byte
    /// tx slots (an MTU 1500 frame with room to spare).
    fn default() -> Self {
        PacketConfig {
            block_size: 64 << 10,
            block_nr: 64,
            frame_size: 2048,
            block_timeout_ms: 2,
            tx_slot: 2048,
        }
    }
}

/// Counters of the AF_PACKET backend beyond [`PortStats`], cumulative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketStats {
    /// Frames received with `TP_STATUS_CSUMNOTREADY` (partial L4 checksum),
    /// passed on as they are: the core completes them.
    pub csum_partial: u64,
    /// Frames the kernel truncated (larger than a ring block allows); not
    /// decided on, counted in `rx_dropped`.
    pub truncated: u64,
    /// Frames larger than a tx slot; counted in `tx_dropped`.
    pub tx_oversize: u64,
    /// Ring blocks returned unread because their headers did not add up.
    pub bad_blocks: u64,
    /// Frames whose VLAN tag the kernel had moved out of the frame (it always
    /// does on rx) and that got it back before `decide` saw them.
    pub vlan_restored: u64,
}

/// The frames queued for tx on one port: `lens.len()` slots of `slot` bytes.
#[derive(Debug)]
struct TxArena {
    buf: Vec<u8>,
    lens: Vec<u32>,
    slot: usize,
}

impl TxArena {
    fn new(slot: usize) -> Self {
        TxArena {
            buf: vec![0; slot * SEND_BATCH],
            lens: Vec::with_capacity(SEND_BATCH),
            slot,
        }
    }

    fn is_full(&self) -> bool {
        self.lens.len() >= SEND_BATCH
    }

    /// Copies `frame` (≤ `slot` bytes; the arena not full) into the next slot.
    fn push(&mut self, frame: &[u8]) {
        let at = self.lens.len() * self.slot;
        self.buf[at..at + frame.len()].copy_from_slice(frame);
        self.lens.push(frame.len() as u32);
    }
}

/// Sends what `tx` holds on `sock` and empties it; counts into `stats`; keeps
/// the first hard error in `error`.
fn flush(
    sock: &TpacketSocket,
    name: &str,
    tx: &mut TxArena,
    stats: &mut PortStats,
    error: &mut Option<PacketError>,
) {
    if tx.lens.is_empty() {
        return;
    }
    let out = sock.send(&tx.buf, tx.slot, &tx.lens);
    tx.lens.clear();
    stats.tx += out.sent as u64;
    stats.tx_dropped += out.dropped as u64;
    if let Some(source) = out.error
        && error.is_none()
    {
        *error = Some(PacketError::Sys {
            ifname: name.to_owned(),
            op: "sendmmsg",
            source,
        });
    }
}

/// One worker's AF_PACKET sockets, one per interface (index = the core's
/// interface id).
#[derive(Debug)]
pub struct PacketPortSet {
    names: Vec<String>,
    socks: Vec<TpacketSocket>,
    rings: Vec<RxRing>,
    txs: Vec<TxArena>,
    stats: PortStats,
    extra: PacketStats,
}

impl PacketPortSet {
    /// Opens one socket per interface of `ifnames` (in the calling thread's
    /// network namespace) with [`PacketConfig::default`]. With `fanout_group`,
    /// each socket joins fanout group `fanout_group + ifindex` (mod 2¹⁶) of its
    /// interface in `PACKET_FANOUT_HASH` mode: every worker passing the same
    /// base shares each interface with the others, by flow.
    pub fn open(ifnames: &[&str], fanout_group: Option<u16>) -> Result<Self, PacketError> {
        Self::open_with(ifnames, fanout_group, PacketConfig::default())
    }

    /// [`PacketPortSet::open`] with an explicit geometry.
    pub fn open_with(
        ifnames: &[&str],
        fanout_group: Option<u16>,
        cfg: PacketConfig,
    ) -> Result<Self, PacketError> {
        if ifnames.len() > tpacket::POLL_MAX {
            return Err(PacketError::Config(
                "more interfaces than poll_rx_any waits on (16)",
            ));
        }
        if cfg.tx_slot < 60 {
            return Err(PacketError::Config(
                "tx_slot below a minimum Ethernet frame",
            ));
        }
        if cfg.frame_size == 0
            || cfg.block_nr == 0
            || !cfg.block_size.is_multiple_of(cfg.frame_size)
        {
            return Err(PacketError::Config(
                "frame_size must divide block_size, block_nr must be positive",
            ));
        }
        let ring = RingConfig {
            block_size: cfg.block_size,
            block_nr: cfg.block_nr,
            frame_size: cfg.frame_size,
            block_timeout_ms: cfg.block_timeout_ms,
        };
        let mut set = PacketPortSet {
            names: Vec::with_capacity(ifnames.len()),
            socks: Vec::with_capacity(ifnames.len()),
            rings: Vec::with_capacity(ifnames.len()),
            txs: Vec::with_capacity(ifnames.len()),
            stats: PortStats::default(),
            extra: PacketStats::default(),
        };
        for &name in ifnames {
            let err = |op: &'static str, source: io::Error| PacketError::Sys {
                ifname: name.to_owned(),
                op,
                source,
            };
            let ifindex = crate::sys::if_index(name).map_err(|e| err("if_nametoindex", e))?;
            let fanout = fanout_group.map(|base| Fanout {
                group: base.wrapping_add(ifindex as u16),
                // Hash, not CPU: on veth (and with RPS) the CPU is the sender's,
                // which would put a whole generator on one worker; the flow hash
                // spreads flows and keeps each on one worker, in order. The
                // group's hook replaces the sockets' own, so it needs its own
                // IGNORE_OUTGOING flag. No DEFRAG: non-first (and, by default,
                // first) fragments hash on addresses only, so a datagram's
                // fragments already meet on one worker, and a reassembled
                // datagram could not be forwarded as one frame anyway.
                mode: libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_IGNORE_OUTGOING,
            });
            let (sock, rx) =
                TpacketSocket::open(ifindex, &ring, fanout).map_err(|e| err(e.op, e.source))?;
            set.names.push(name.to_owned());
            set.socks.push(sock);
            set.rings.push(rx);
            set.txs.push(TxArena::new(cfg.tx_slot as usize));
        }
        Ok(set)
    }

    /// The interface names, by port.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The backend's own counters.
    pub fn packet_stats(&self) -> PacketStats {
        PacketStats {
            bad_blocks: self.rings.iter().map(RxRing::bad_blocks).sum(),
            ..self.extra
        }
    }
}

impl FrameIo for PacketPortSet {
    type Error = PacketError;

    fn poll_with<D: Decide>(&mut self, max: usize, mut d: D) -> Result<usize, PacketError> {
        let PacketPortSet {
            names,
            socks,
            rings,
            txs,
            stats,
            extra,
        } = self;
        let mut received = 0usize;
        let mut error = None;
        for (i, ring) in rings.iter_mut().enumerate() {
            ring.rx(max, |frame, meta| {
                if meta.wire_len as usize > frame.len() {
                    extra.truncated += 1;
                    return;
                }
                received += 1;
                if meta.csum_not_ready() {
                    extra.csum_partial += 1;
                }
                if meta.vlan_restored {
                    extra.vlan_restored += 1;
                }
                let Fate::Out(j) = d.decide(i, frame) else {
                    return;
                };
                let Some(tx) = txs.get_mut(j) else {
                    stats.tx_dropped += 1;
                    return;
                };
                if frame.len() > tx.slot {
                    extra.tx_oversize += 1;
                    stats.tx_dropped += 1;
                    return;
                }
                if tx.is_full() {
                    flush(&socks[j], &names[j], tx, stats, &mut error);
                }
                tx.push(frame);
            });
        }
        for ((sock, name), tx) in socks.iter().zip(names.iter()).zip(txs.iter_mut()) {
            flush(sock, name, tx, stats, &mut error);
        }
        stats.rx += received as u64;
        match error {
            Some(e) => Err(e),
            None => Ok(received),
        }
    }

    fn wait(&self, timeout_ms: i32) -> Result<bool, PacketError> {
        if self.rings.iter().any(RxRing::ready) {
            return Ok(true);
        }
        tpacket::poll_rx_any(self.socks.iter(), timeout_ms).map_err(|e| PacketError::Sys {
            ifname: self.names.join(","),
            op: e.op,
            source: e.source,
        })
    }

    /// Sends are synchronous (`sendmmsg` at the end of each `poll`): this only
    /// sends what an interrupted `poll` may have left queued. Returns 0.
    fn drain_tx(&mut self, _deadline: Instant) -> usize {
        let mut error = None;
        for ((sock, name), tx) in self.socks.iter().zip(&self.names).zip(&mut self.txs) {
            flush(sock, name, tx, &mut self.stats, &mut error);
        }
        self.txs.iter().map(|t| t.lens.len()).sum()
    }

    fn stats(&self) -> PortStats {
        let kernel: u64 = self.socks.iter().map(TpacketSocket::drops).sum();
        PortStats {
            rx_dropped: kernel + self.extra.truncated,
            ..self.stats
        }
    }
}
