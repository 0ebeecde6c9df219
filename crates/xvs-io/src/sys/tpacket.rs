//! # sys::tpacket — AF_PACKET sockets with a `TPACKET_V3` rx ring
//!
//! Layer: lowest, under [`crate::packet`]. A [`TpacketSocket`] is one
//! AF_PACKET `SOCK_RAW` socket bound to one interface (`ETH_P_ALL`), with
//! `PACKET_IGNORE_OUTGOING`, `PACKET_QDISC_BYPASS`, optionally a fanout group,
//! and a block-based rx ring ([`RxRing`]) mmap'd from it. Tx is `sendmmsg(2)`
//! of caller-owned bytes (no tx ring).
//!
//! The rx ring protocol (`Documentation/networking/packet_mmap.rst`): the ring
//! is `block_nr` blocks of `block_size` bytes; each block starts with a
//! `tpacket_block_desc` whose `block_status` word says who owns it. The kernel
//! fills the current block with `tpacket3_hdr`-prefixed frames and hands it over
//! by setting `TP_STATUS_USER` (when full, or when `tp_retire_blk_tov` expires
//! with at least one frame in it); userspace reads it and hands it back by
//! storing `TP_STATUS_KERNEL`. Blocks are handed over in ring order.
//!
//! Invariants:
//! - the status word is read with `Acquire` before anything else in the block
//!   and written with `Release` after the last access to it, so the kernel and
//!   userspace never touch a block at the same time;
//! - frames are handed out as they were on the wire: a VLAN tag the kernel
//!   took out into the header is put back in front of the EtherType;
//! - a `&mut [u8]` is only ever formed over the data bytes of one frame inside a
//!   user-owned block, lives only for the duration of one callback, and every
//!   offset read from the kernel is bounds-checked against the block first;
//! - nothing here blocks except [`poll_rx_any`] (with its timeout); sockets are
//!   non-blocking and sends use `MSG_DONTWAIT`;
//! - no allocation after [`TpacketSocket::open`]: send batches are built on the
//!   stack.

use std::cell::Cell;
use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Most frames handed to one `sendmmsg(2)` call.
pub const SEND_BATCH: usize = 64;

/// A failed system call: which one, and the OS error.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {source}")]
pub struct SysError {
    /// The operation, e.g. `setsockopt(PACKET_RX_RING)`.
    pub op: &'static str,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

fn sys_err(op: &'static str) -> SysError {
    SysError {
        op,
        source: io::Error::last_os_error(),
    }
}

/// Geometry of the rx ring and the fanout mode of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block: a multiple of the page size (power-of-two pages).
    pub block_size: u32,
    /// Number of blocks.
    pub block_nr: u32,
    /// The nominal frame size (`tp_frame_size`; with `TPACKET_V3` frames are
    /// packed variably, this only has to divide the block size).
    pub frame_size: u32,
    /// Block retire timeout in ms (`tp_retire_blk_tov`): the longest a
    /// partly-filled block waits before it is handed to userspace.
    pub block_timeout_ms: u32,
}

/// `PACKET_FANOUT` argument: group id in the low 16 bits, mode and flags above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fanout {
    /// Group id (per network namespace; all members on the same interface).
    pub group: u16,
    /// `PACKET_FANOUT_*` mode ORed with `PACKET_FANOUT_FLAG_*` flags.
    pub mode: u32,
}

/// What the kernel says about one received frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxMeta {
    /// `tp_status` (`TP_STATUS_CSUMNOTREADY`, `TP_STATUS_VLAN_VALID`, ...).
    pub status: u32,
    /// The frame's length on the wire (`tp_len`); more than the slice's
    /// length when the kernel truncated it (`tp_snaplen < tp_len`).
    pub wire_len: u32,
    /// The kernel had moved the frame's VLAN tag into the header
    /// (`TP_STATUS_VLAN_VALID`); it has been put back into the frame.
    pub vlan_restored: bool,
}

impl RxMeta {
    /// The kernel marked the frame `TP_STATUS_CSUMNOTREADY`: its L4 checksum is
    /// partial (pseudo-header only; local tx checksum offload, e.g. veth).
    pub fn csum_not_ready(&self) -> bool {
        self.status & libc::TP_STATUS_CSUMNOTREADY != 0
    }
}

/// Outcome of one [`TpacketSocket::send`].
#[derive(Debug, Default)]
pub struct SendOutcome {
    /// Frames the kernel took.
    pub sent: usize,
    /// Frames it did not take (never retried).
    pub dropped: usize,
    /// An error other than "no room now" / "this frame is unsendable", if any.
    pub error: Option<io::Error>,
}

/// An AF_PACKET socket bound to one interface, with a `TPACKET_V3` rx ring
/// (the ring itself is the separate [`RxRing`] so that rx of one port and tx
/// of another can be borrowed at once).
#[derive(Debug)]
pub struct TpacketSocket {
    fd: OwnedFd,
    ifindex: u32,
    /// `tp_drops` summed so far (`PACKET_STATISTICS` resets on read).
    drops: Cell<u64>,
}

fn setsockopt<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    val: &T,
    op: &'static str,
) -> Result<(), SysError> {
    // SAFETY: `val` is a valid, initialised `T` borrowed for the call with its
    // exact size; `fd` is an open socket; setsockopt(2) only reads `val`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(sys_err(op)) }
}

impl TpacketSocket {
    /// Opens a socket on `ifindex` (in the calling thread's network namespace)
    /// with an rx ring of geometry `cfg`, not seeing its own (or, in a fanout
    /// group, the group's) outgoing frames, bypassing the qdisc on tx, and
    /// joining `fanout` if given.
    pub fn open(
        ifindex: u32,
        cfg: &RingConfig,
        fanout: Option<Fanout>,
    ) -> Result<(TpacketSocket, RxRing), SysError> {
        // Protocol 0: the socket receives nothing until `bind` names the
        // interface (else it would briefly see every interface's frames).
        // SAFETY: socket(2) takes integers only; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if raw < 0 {
            return Err(sys_err("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "setsockopt(PACKET_VERSION)",
        )?;
        let one: libc::c_int = 1;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            &one,
            "setsockopt(PACKET_IGNORE_OUTGOING)",
        )?;
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_QDISC_BYPASS,
            &one,
            "setsockopt(PACKET_QDISC_BYPASS)",
        )?;
        let req = libc::tpacket_req3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_nr,
            tp_frame_size: cfg.frame_size,
            tp_frame_nr: (cfg.block_size / cfg.frame_size.max(1)) * cfg.block_nr,
            tp_retire_blk_tov: cfg.block_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "setsockopt(PACKET_RX_RING)",
        )?;
        let ring = RxRing::map(&fd, cfg)?;

        super::packet::bind_all(fd.as_fd(), ifindex).map_err(|source| SysError {
            op: "bind(sockaddr_ll)",
            source,
        })?;
        if let Some(f) = fanout {
            let arg: libc::c_int = (u32::from(f.group) | (f.mode << 16)) as libc::c_int;
            setsockopt(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_FANOUT,
                &arg,
                "setsockopt(PACKET_FANOUT)",
            )?;
        }
        Ok((
            TpacketSocket {
                fd,
                ifindex,
                drops: Cell::new(0),
            },
            ring,
        ))
    }

    /// The interface index the socket is bound to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Frames the kernel dropped for this socket so far (`tp_drops`, summed:
    /// the kernel resets its counters on each read). Should the read fail, the
    /// sum so far.
    pub fn drops(&self) -> u64 {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: `st` and `len` are valid for writes and outlive the call; `len`
        // holds `st`'s exact size; `fd` is an open AF_PACKET socket.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.drops.set(self.drops.get() + u64::from(st.tp_drops));
        }
        self.drops.get()
    }

    /// Sends `lens.len()` (≤ [`SEND_BATCH`]) frames out of the bound interface:
    /// frame `k` is `buf[k * slot..][..lens[k]]`. One `sendmmsg(2)` call when
    /// the kernel takes everything; a frame it refuses as such (too big,
    /// malformed) is skipped and the call repeated for the rest; when it has no
    /// room (`EAGAIN`, `ENOBUFS`) or the interface is gone, the rest is
    /// dropped. Every frame is either sent or dropped; never blocks.
    pub fn send(&self, buf: &[u8], slot: usize, lens: &[u32]) -> SendOutcome {
        let n = lens.len().min(SEND_BATCH);
        let mut out = SendOutcome {
            dropped: lens.len() - n,
            ..SendOutcome::default()
        };
        let empty = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        let mut iov = [empty; SEND_BATCH];
        for (k, (v, &len)) in iov.iter_mut().zip(&lens[..n]).enumerate() {
            // Out-of-range slots would be a caller bug: send an empty (refused)
            // frame rather than read outside `buf`.
            let frame = buf.get(k * slot..k * slot + len as usize).unwrap_or(&[]);
            v.iov_base = frame.as_ptr().cast_mut().cast();
            v.iov_len = frame.len();
        }
        // SAFETY: mmsghdr is plain integers and pointers; all-zero (null name,
        // no control data) is a valid value.
        let zero: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let mut msgs = [zero; SEND_BATCH];
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()) {
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut pos = 0;
        while pos < n {
            // SAFETY: `msgs[pos..n]` are valid mmsghdrs borrowed mutably for the
            // call (the kernel writes `msg_len`); each points at one iovec in
            // `iov`, which points into `buf` (readable for its length) — all
            // outlive the call; no name (the socket is bound) and no control
            // data; `fd` is an open socket.
            let r = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs[pos..].as_mut_ptr(),
                    (n - pos) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                pos += r as usize;
                out.sent += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // This frame cannot be sent: skip it, try the rest.
                Some(libc::EMSGSIZE | libc::EINVAL) => {
                    pos += 1;
                    out.dropped += 1;
                }
                // No room now or no device: drop the rest of the batch.
                Some(
                    libc::EAGAIN
                    | libc::ENOBUFS
                    | libc::ENOMEM
                    | libc::EINTR
                    | libc::ENETDOWN
                    | libc::ENXIO,
                ) => {
                    out.dropped += n - pos;
                    pos = n;
                }
                _ => {
                    out.dropped += n - pos;
                    pos = n;
                    out.error = Some(e);
                }
            }
        }
        out
    }
}

impl AsFd for TpacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Most sockets [`poll_rx_any`] waits on.
pub use super::POLL_MAX;

/// Waits up to `timeout_ms` until one of `socks` (the first [`POLL_MAX`]) has
/// a block ready; `EINTR` counts as "nothing yet".
pub fn poll_rx_any<'a>(
    socks: impl Iterator<Item = &'a TpacketSocket>,
    timeout_ms: i32,
) -> Result<bool, SysError> {
    super::poll_readable(socks.map(|s| s.fd.as_raw_fd()), timeout_ms).map_err(|source| SysError {
        op: "poll(AF_PACKET)",
        source,
    })
}

/// Offsets in `struct tpacket_block_desc` (its header union holds a
/// `tpacket_hdr_v1`).
const BLOCK_HDR: usize = offset_of!(libc::tpacket_block_desc, hdr);
const BLOCK_STATUS: usize = BLOCK_HDR + offset_of!(libc::tpacket_hdr_v1, block_status);
const BLOCK_NUM_PKTS: usize = BLOCK_HDR + offset_of!(libc::tpacket_hdr_v1, num_pkts);
const BLOCK_FIRST_PKT: usize = BLOCK_HDR + offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
const BLOCK_DESC: usize = size_of::<libc::tpacket_block_desc>();
/// Offsets in `struct tpacket3_hdr`.
const PKT_NEXT: usize = offset_of!(libc::tpacket3_hdr, tp_next_offset);
const PKT_SNAPLEN: usize = offset_of!(libc::tpacket3_hdr, tp_snaplen);
const PKT_LEN: usize = offset_of!(libc::tpacket3_hdr, tp_len);
const PKT_STATUS: usize = offset_of!(libc::tpacket3_hdr, tp_status);
const PKT_MAC: usize = offset_of!(libc::tpacket3_hdr, tp_mac);
const PKT_VLAN_TCI: usize = offset_of!(libc::tpacket3_hdr, hv1.tp_vlan_tci);
const PKT_VLAN_TPID: usize = offset_of!(libc::tpacket3_hdr, hv1.tp_vlan_tpid);
// The status word is read atomically: it must be 4-aligned in a page-aligned
// block; the layout is the kernel's (uapi/linux/if_packet.h).
const _: () = assert!(BLOCK_STATUS == 8 && BLOCK_NUM_PKTS == 12 && BLOCK_FIRST_PKT == 16);
const _: () = assert!(PKT_MAC == 24 && PKT_VLAN_TCI == 32 && PKT_VLAN_TPID == 36);
const PKT_HDR: usize = size_of::<libc::tpacket3_hdr>();

/// The mmap'd `TPACKET_V3` rx ring of one [`TpacketSocket`], with a cursor
/// (block, frame within block, offset) so that a block can be consumed over
/// several calls. The mapping holds its own reference to the socket, so it
/// stays valid (and the kernel keeps the ring) until it is unmapped, even if
/// the socket is closed first.
#[derive(Debug)]
pub struct RxRing {
    base: NonNull<u8>,
    len: usize,
    block_size: usize,
    block_nr: usize,
    /// The block to read next.
    block: usize,
    /// Frames of `block` already handed out.
    taken: u32,
    /// Offset in `block` of the next frame's header.
    offset: usize,
    /// Blocks handed back because their contents did not add up.
    bad_blocks: u64,
}

// SAFETY: an `RxRing` exclusively owns its mapping; the pointer points only into
// it, the kernel side is reached through atomics, and nothing is tied to the
// thread that created it.
unsafe impl Send for RxRing {}

impl RxRing {
    fn map(fd: &OwnedFd, cfg: &RingConfig) -> Result<RxRing, SysError> {
        let len = cfg.block_size as usize * cfg.block_nr as usize;
        // SAFETY: a fresh shared mapping of the socket's ring (just configured
        // with PACKET_RX_RING of exactly `len` bytes) at an address the kernel
        // picks; no existing memory is affected; the result is checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(sys_err("mmap(PACKET_RX_RING)"));
        }
        let Some(base) = NonNull::new(p.cast::<u8>()) else {
            return Err(SysError {
                op: "mmap(PACKET_RX_RING)",
                source: io::Error::other("mmap returned NULL"),
            });
        };
        Ok(RxRing {
            base,
            len,
            block_size: cfg.block_size as usize,
            block_nr: cfg.block_nr as usize,
            block: 0,
            taken: 0,
            offset: 0,
            bad_blocks: 0,
        })
    }

    /// Blocks handed back unread because their headers did not add up (should
    /// stay 0; a kernel/ABI mismatch otherwise).
    pub fn bad_blocks(&self) -> u64 {
        self.bad_blocks
    }

    /// The status word of block `b` (< `block_nr`).
    fn status(&self, b: usize) -> &AtomicU32 {
        let p = self
            .base
            .as_ptr()
            .wrapping_add(b * self.block_size + BLOCK_STATUS)
            .cast::<u32>();
        // SAFETY: `b < block_nr`, so `p` is inside the mapping (which lives as
        // long as `self`), 4-aligned (page-aligned blocks, offset 8), and the
        // word is only ever accessed atomically by us and by the kernel.
        unsafe { AtomicU32::from_ptr(p) }
    }

    /// Reads the u32 at byte `off` of the current block; `off + 4` must be
    /// within the block (checked by the callers).
    fn read_u32(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.block_size);
        let p = self
            .base
            .as_ptr()
            .wrapping_add(self.block * self.block_size + off)
            .cast::<u32>();
        // SAFETY: `off + 4 <= block_size`, so `p` is inside the current block of
        // the mapping (alive as long as `self`); the block is user-owned (its
        // status was loaded with Acquire), so the kernel does not write it; the
        // read is unaligned-tolerant.
        unsafe { p.read_unaligned() }
    }

    fn read_u16(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.block_size);
        let p = self
            .base
            .as_ptr()
            .wrapping_add(self.block * self.block_size + off)
            .cast::<u16>();
        // SAFETY: as in `read_u32`, for 2 bytes.
        unsafe { p.read_unaligned() }
    }

    /// Whether the next block to read is user-owned (frames are waiting).
    pub fn ready(&self) -> bool {
        self.status(self.block).load(Ordering::Acquire) & libc::TP_STATUS_USER != 0
    }

    /// Hands the current block back to the kernel and moves to the next.
    fn release(&mut self) {
        self.status(self.block)
            .store(libc::TP_STATUS_KERNEL, Ordering::Release);
        self.block = (self.block + 1) % self.block_nr;
        self.taken = 0;
        self.offset = 0;
    }

    /// Hands up to `max` received frames to `f` in order (each as a mutable
    /// slice inside the ring, valid for the call only), handing every fully
    /// read block back to the kernel. Returns how many frames `f` saw. Never
    /// blocks and makes no system call.
    pub fn rx<F>(&mut self, max: usize, mut f: F) -> usize
    where
        F: FnMut(&mut [u8], RxMeta),
    {
        let mut seen = 0;
        // At most every block once, plus the partly read one.
        for _ in 0..=self.block_nr {
            if seen >= max {
                break;
            }
            let status = self.status(self.block).load(Ordering::Acquire);
            if status & libc::TP_STATUS_USER == 0 {
                break;
            }
            let num = self.read_u32(BLOCK_NUM_PKTS);
            if self.taken == 0 {
                self.offset = self.read_u32(BLOCK_FIRST_PKT) as usize;
            }
            while self.taken < num && seen < max {
                let off = self.offset;
                if off < BLOCK_DESC || off + PKT_HDR > self.block_size {
                    self.bad_blocks += 1;
                    self.taken = num;
                    break;
                }
                let next = self.read_u32(off + PKT_NEXT) as usize;
                let snap = self.read_u32(off + PKT_SNAPLEN) as usize;
                let mut meta = RxMeta {
                    status: self.read_u32(off + PKT_STATUS),
                    wire_len: self.read_u32(off + PKT_LEN),
                    vlan_restored: false,
                };
                let mut start = off + self.read_u16(off + PKT_MAC) as usize;
                let last = self.taken + 1 == num;
                if start < off + PKT_HDR || start + snap > self.block_size || (next == 0 && !last) {
                    self.bad_blocks += 1;
                    self.taken = num;
                    break;
                }
                // The kernel moves a received frame's (outer) VLAN tag into the
                // header; put it back in front of the EtherType, in the room
                // the kernel left between the header and the frame.
                let mut len = snap;
                let mut vlan = None;
                if meta.status & libc::TP_STATUS_VLAN_VALID != 0
                    && snap >= 12
                    && start >= off + PKT_HDR + 4
                {
                    let tci = self.read_u32(off + PKT_VLAN_TCI) as u16;
                    let tpid = if meta.status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                        self.read_u16(off + PKT_VLAN_TPID)
                    } else {
                        libc::ETH_P_8021Q as u16
                    };
                    vlan = Some((tpid, tci));
                    start -= 4;
                    len += 4;
                    meta.wire_len += 4;
                    meta.vlan_restored = true;
                }
                let data = self
                    .base
                    .as_ptr()
                    .wrapping_add(self.block * self.block_size + start);
                // SAFETY: `start + len <= block_size` (the frame as checked, or
                // 4 bytes more at its front, which lie after the header), so the
                // `len` bytes at `data` lie inside the current block of the live
                // mapping; the block is user-owned (status loaded with Acquire,
                // not yet released), so the kernel neither reads nor writes
                // these bytes until `release`; no other reference to them exists
                // (headers are read by value, before and after, outside this
                // range), and the slice does not outlive this iteration.
                let frame = unsafe { std::slice::from_raw_parts_mut(data, len) };
                if let Some((tpid, tci)) = vlan {
                    frame.copy_within(4..16, 0);
                    frame[12..14].copy_from_slice(&tpid.to_be_bytes());
                    frame[14..16].copy_from_slice(&tci.to_be_bytes());
                }
                f(frame, meta);
                seen += 1;
                self.taken += 1;
                self.offset = off + next;
            }
            if self.taken >= num {
                self.release();
            }
        }
        seen
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly the mapping created in `map`, owned by
        // `self` and no longer referenced (no slice outlives an `rx` callback).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
