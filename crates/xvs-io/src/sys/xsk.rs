//! # sys::xsk — AF_XDP sockets on our own rings (libc only, no libxdp)
//!
//! Layer: the lowest one of the AF_XDP data path. An [`XskSet`] owns, and
//! releases on drop, everything a group of AF_XDP sockets sharing **one UMEM**
//! needs: the UMEM area (one anonymous, page-aligned mmap of
//! `sockets × frame_count × frame_size` bytes, registered with `XDP_UMEM_REG` by
//! the first socket), and per socket its fd and its four rings mmap'd from it:
//! fill and completion (UMEM side; every socket has its own, since Linux 5.10 a
//! socket sharing a UMEM on another interface or queue gets its own buffer pool),
//! rx and tx (socket side). The other sockets bind with `XDP_SHARED_UMEM` and the
//! first socket's fd. An [`XskSocket`] is a set of one (its own UMEM).
//!
//! Rings follow the kernel's single-producer / single-consumer protocol as in
//! libxdp's `xsk.h`: each side keeps cached indices; the producer writes
//! descriptors, then publishes with a *release* store of `producer`; the
//! consumer reads `producer` with an *acquire* load, reads the descriptors, then
//! hands them back with a *release* store of `consumer`. Indices are free-running
//! `u32`s; a slot is `index & mask`.
//!
//! Frame ownership invariant (what makes [`XskSet::data_mut`] sound): every
//! UMEM chunk is at any time in exactly one of these places:
//! - the set's one free pool (userspace, not touched by the kernel),
//! - a [`UmemFrame`] handle held by the caller (userspace; the handle is neither
//!   `Copy` nor `Clone` and can only be made here),
//! - some socket's fill or tx ring, or with the kernel (the kernel may read or
//!   write it; userspace never forms a slice over it),
//! - some socket's rx or completion ring, from which it comes back as a handle
//!   or to the free pool.
//!
//! A chunk received on socket `i` may be transmitted on socket `j` of the same
//! set as it is (no copy); its completion then comes back on `j`'s completion
//! ring, to the shared pool. The free pool never holds more than the UMEM's
//! frames (its capacity, allocated once: no allocation in steady state), and
//! [`XskSet::census`] accounts for every frame (free + held + fill + tx = total).
//!
//! A handle is tagged with its UMEM's id; using it with another set panics.
//! Dropping a handle instead of giving it back loses the chunk (a leak, not
//! unsoundness).

use std::io;
use std::marker::PhantomData;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

/// Errors of AF_XDP socket setup.
#[derive(Debug, thiserror::Error)]
pub enum XskError {
    /// `XDP_UMEM_REG` failed for lack of lockable memory.
    #[error(
        "XDP_UMEM_REG of {bytes} bytes failed ({source}): the UMEM is charged to the \
         memlock limit (RLIMIT_MEMLOCK); raise it (or grant CAP_IPC_LOCK) or make the UMEM smaller"
    )]
    Memlock {
        /// Size of the UMEM area in bytes.
        bytes: usize,
        /// ENOBUFS or ENOMEM.
        #[source]
        source: io::Error,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// The operation, e.g. `bind(AF_XDP)`.
        op: &'static str,
        /// errno as an I/O error.
        #[source]
        source: io::Error,
    },
    /// The configuration is not one the kernel accepts.
    #[error("invalid AF_XDP configuration: {0}")]
    Config(&'static str),
}

fn sys_err(op: &'static str) -> XskError {
    XskError::Sys {
        op,
        source: io::Error::last_os_error(),
    }
}

/// Sizes of the UMEM and of the rings.
///
/// `frame_count` is **per socket**: an [`XskSet`] of `n` sockets (a worker's
/// ports, one per interface) has one UMEM of `n × frame_count` frames, i.e.
/// `n × frame_count × frame_size` bytes locked in memory. A good `frame_count`
/// is `fill_size + ring_size`: every fill ring full while a full rx/tx ring's
/// worth per port is in flight. The default (2048 × 2 KiB per socket) makes
/// 4 MiB per port, 8 MiB for two ports. A UMEM is charged to RLIMIT_MEMLOCK
/// (8 MiB on the lab VM) unless the process has CAP_IPC_LOCK, and the charge is
/// per user (every UMEM of every worker counts), so a director with two
/// interfaces needs CAP_IPC_LOCK (or a higher limit) as soon as it has more
/// than one worker or anything else locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XskConfig {
    /// Number of UMEM frames (chunks) per socket.
    pub frame_count: u32,
    /// Bytes per frame: a power of two in 2048..=4096 (aligned chunk mode).
    pub frame_size: u32,
    /// Entries of each socket's fill and completion rings (power of two).
    pub fill_size: u32,
    /// Entries of each socket's rx and tx rings (power of two).
    pub ring_size: u32,
}

impl Default for XskConfig {
    /// 2048 frames × 2048 bytes = 4 MiB per socket (8 MiB for two ports);
    /// rings of 1024 entries.
    fn default() -> Self {
        XskConfig {
            frame_count: 2048,
            frame_size: 2048,
            fill_size: 1024,
            ring_size: 1024,
        }
    }
}

impl XskConfig {
    fn check(&self) -> Result<(), XskError> {
        let pow2 = |v: u32| v.is_power_of_two();
        if !(pow2(self.frame_size) && (2048..=4096).contains(&self.frame_size)) {
            return Err(XskError::Config("frame_size must be 2048 or 4096"));
        }
        if !(pow2(self.fill_size) && pow2(self.ring_size)) {
            return Err(XskError::Config("ring sizes must be powers of two"));
        }
        if self.frame_count < self.fill_size {
            return Err(XskError::Config("frame_count must be at least fill_size"));
        }
        Ok(())
    }

    /// Bytes of the UMEM of one socket (a set of `n` has `n` times this).
    pub fn umem_bytes(&self) -> usize {
        self.frame_count as usize * self.frame_size as usize
    }
}

/// A frame of the UMEM held by userspace: received (data at `addr`, `len`
/// bytes) or allocated for tx. Neither `Copy` nor `Clone`: it goes back to its
/// set with [`XskSet::recycle`] (to a fill ring, eventually) or [`XskSet::tx`]
/// (to the tx ring of any socket of the set).
#[derive(Debug, PartialEq, Eq)]
pub struct UmemFrame {
    addr: u64,
    len: u32,
    owner: u32,
}

impl UmemFrame {
    /// Offset of the frame's data in the UMEM.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length of the frame's data in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the frame holds no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An owned `mmap` region, unmapped on drop.
#[derive(Debug)]
struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mmap {
    /// Anonymous private memory of `len` bytes (page-aligned, zeroed).
    fn anonymous(len: usize) -> Result<Self, XskError> {
        // SAFETY: a NULL hint and MAP_ANONYMOUS with fd -1 create a fresh mapping
        // that aliases no existing Rust object; the kernel validates `len`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        let m = Self::from_raw(p, len, "mmap(UMEM)")?;
        // Children of a fork (e.g. `Command::spawn`) must not share or copy-on-write
        // the pages the kernel has pinned for the UMEM.
        // SAFETY: the range is exactly the mapping just created and owned by `m`;
        // MADV_DONTFORK changes only what a future fork copies.
        let r = unsafe { libc::madvise(m.ptr.as_ptr().cast(), len, libc::MADV_DONTFORK) };
        if r != 0 {
            return Err(sys_err("madvise(UMEM, MADV_DONTFORK)"));
        }
        Ok(m)
    }

    /// The ring of `fd` at page offset `pgoff`, `len` bytes, shared with the kernel.
    fn ring(fd: BorrowedFd<'_>, len: usize, pgoff: u64) -> Result<Self, XskError> {
        // SAFETY: a NULL hint creates a fresh mapping aliasing no Rust object; `fd`
        // is an open AF_XDP socket borrowed for the call; the kernel checks that
        // `pgoff` names a ring it has set up and that `len` fits it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        Self::from_raw(p, len, "mmap(AF_XDP ring)")
    }

    fn from_raw(p: *mut libc::c_void, len: usize, op: &'static str) -> Result<Self, XskError> {
        if p == libc::MAP_FAILED {
            return Err(sys_err(op));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(XskError::Config("mmap returned NULL"))?;
        Ok(Mmap { ptr, len })
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly a mapping this value created and owns;
        // every pointer derived from it lives in the same owner struct, which is
        // being dropped, so nothing uses the range afterwards.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One mmap'd ring: producer/consumer/flags words and `size` descriptors of `T`.
#[derive(Debug)]
struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<T>,
    mask: u32,
    size: u32,
    /// Producer side: next index to write. Consumer side: last seen producer.
    cached_prod: u32,
    /// Producer side: consumer + size (free limit). Consumer side: next index to read.
    cached_cons: u32,
    /// The mapping the pointers above point into (unmapped on drop).
    _map: Mmap,
    _t: PhantomData<T>,
}

impl<T: Copy> Ring<T> {
    /// Maps the ring of `fd` at `pgoff` with the kernel's `off`sets.
    fn map(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        size: u32,
        pgoff: u64,
        producer_side: bool,
    ) -> Result<Self, XskError> {
        let len = off.desc as usize + size as usize * size_of::<T>();
        // The pointers below are dereferenced on the strength of these checks:
        // each word and the descriptor array inside the mapping, and aligned.
        let fits = |o: u64, bytes: usize, align: usize| {
            usize::try_from(o)
                .is_ok_and(|o| o % align == 0 && o.checked_add(bytes).is_some_and(|e| e <= len))
        };
        let word = size_of::<AtomicU32>();
        if !(fits(off.producer, word, word)
            && fits(off.consumer, word, word)
            && fits(off.flags, word, word)
            && fits(
                off.desc,
                size as usize * size_of::<T>(),
                std::mem::align_of::<T>(),
            ))
        {
            return Err(XskError::Config("kernel ring offsets outside the ring"));
        }
        let map = Mmap::ring(fd, len, pgoff)?;
        let at = |o: u64| map.ptr.as_ptr().wrapping_add(o as usize);
        let atomic = |o: u64| NonNull::new(at(o).cast::<AtomicU32>()).expect("inside a mapping");
        let mut ring = Ring {
            producer: atomic(off.producer),
            consumer: atomic(off.consumer),
            flags: atomic(off.flags),
            desc: NonNull::new(at(off.desc).cast::<T>()).expect("inside a mapping"),
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
            _map: map,
            _t: PhantomData,
        };
        ring.cached_prod = ring.producer().load(Ordering::Relaxed);
        ring.cached_cons = ring.consumer().load(Ordering::Relaxed);
        if producer_side {
            ring.cached_cons = ring.cached_cons.wrapping_add(size);
        }
        Ok(ring)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: points into `self._map` (checked in `Ring::map`), alive as long
        // as `self`; 4-byte aligned (checked); the word is only accessed atomically (by us and
        // by the kernel), so a shared reference to an AtomicU32 is valid.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`: inside the live mapping, aligned, atomic-only.
        unsafe { self.consumer.as_ref() }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`: inside the live mapping, aligned, atomic-only.
        unsafe { self.flags.as_ref() }
    }

    /// Whether the kernel asks for a wake-up (`XDP_RING_NEED_WAKEUP`).
    fn needs_wakeup(&self) -> bool {
        self.flags().load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- producer side (fill, tx) ----

    /// Reserves up to `n` slots; returns (count, first index). The slots must be
    /// written with [`Ring::write`] and published with [`Ring::submit`].
    fn reserve(&mut self, n: u32) -> (u32, u32) {
        let mut free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free < n {
            self.cached_cons = self
                .consumer()
                .load(Ordering::Acquire)
                .wrapping_add(self.size);
            free = self.cached_cons.wrapping_sub(self.cached_prod);
        }
        let got = free.min(n);
        let first = self.cached_prod;
        self.cached_prod = self.cached_prod.wrapping_add(got);
        (got, first)
    }

    /// Writes descriptor `v` at reserved index `idx`.
    fn write(&mut self, idx: u32, v: T) {
        let p = self.desc.as_ptr().wrapping_add((idx & self.mask) as usize);
        // SAFETY: `idx & mask < size`, so `p` lies inside the descriptor array of
        // the live mapping and is aligned for `T`; the slot is reserved (between the
        // published producer and `cached_prod`), so the kernel does not read it
        // until `submit` publishes it with a release store.
        unsafe { p.write(v) };
    }

    /// Publishes every reserved slot to the kernel (release: descriptors first).
    fn submit(&mut self) {
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    // ---- consumer side (rx, completion) ----

    /// Up to `n` filled slots; returns (count, first index). Read them with
    /// [`Ring::read`], then hand them back with [`Ring::release`].
    fn peek(&mut self, n: u32) -> (u32, u32) {
        let mut avail = self.cached_prod.wrapping_sub(self.cached_cons);
        if avail == 0 {
            self.cached_prod = self.producer().load(Ordering::Acquire);
            avail = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        let got = avail.min(n);
        let first = self.cached_cons;
        self.cached_cons = self.cached_cons.wrapping_add(got);
        (got, first)
    }

    /// The descriptor at peeked index `idx`.
    fn read(&self, idx: u32) -> T {
        let p = self.desc.as_ptr().wrapping_add((idx & self.mask) as usize);
        // SAFETY: `idx & mask < size`: `p` is inside the descriptor array of the live mapping,
        // aligned for `T`; the slot was published by the kernel (acquire load of
        // `producer` in `peek`) and is not reused until `release`.
        unsafe { p.read() }
    }

    /// Gives every peeked slot back to the kernel (release: reads first).
    fn release(&mut self) {
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}

/// One AF_XDP socket of an [`XskSet`]: its descriptor and its four rings. Every
/// socket has its own fill and completion rings, also when it shares the UMEM
/// (a socket on another interface or queue gets its own buffer pool in the
/// kernel, fed by its own fill ring, completing on its own completion ring).
#[derive(Debug)]
struct Xsk {
    // Drop order: rings, then the socket.
    fill: Ring<u64>,
    comp: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    fd: OwnedFd,
    /// Frames given to the fill ring and not yet taken back from the rx ring
    /// (on the fill ring, or with the kernel on their way to the rx ring).
    in_fill: u32,
    /// Frames submitted to tx and not yet completed.
    tx_outstanding: u32,
}

// SAFETY: a `Ring` owns its mapping; its pointers point only into that mapping
// and carry no thread affinity (the kernel side is reached through atomics), so
// moving the ring to another thread moves everything it refers to.
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: `Mmap` exclusively owns its mapping; nothing about it is tied to the
// thread that created it.
unsafe impl Send for Mmap {}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// Frames of a UMEM that [`XskSet::refill`] keeps out of the fill rings, for
/// [`XskSet::alloc`] (frames built by userspace); at most a quarter of the UMEM.
pub const TX_RESERVE: usize = 64;

fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    opt: libc::c_int,
    v: &T,
    op: &'static str,
) -> Result<(), XskError> {
    // SAFETY: `v` is a valid, initialised `T` borrowed for the call and its exact
    // size is passed; `fd` is an open socket; setsockopt(2) only reads `v`.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r == 0 { Ok(()) } else { Err(sys_err(op)) }
}

impl Xsk {
    /// Creates a socket, sets up and maps its four rings and binds it to
    /// `ifindex`/`queue`. With `share == None` it registers `area` as its UMEM
    /// and binds `XDP_USE_NEED_WAKEUP` without a mode flag, so the kernel takes
    /// zero-copy where the driver offers it and falls back to copy mode (veth has
    /// none: copy); with `Some(first)` it binds
    /// `XDP_SHARED_UMEM` to the UMEM of the bound socket `first` (copy mode and
    /// need-wakeup are inherited from it; the kernel refuses flags there).
    fn open(
        ifindex: u32,
        queue: u32,
        cfg: &XskConfig,
        area: &Mmap,
        share: Option<BorrowedFd<'_>>,
    ) -> Result<Self, XskError> {
        // SAFETY: socket(2) takes integers only; the result is checked below.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys_err("socket(AF_XDP)"));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let b = fd.as_fd();
        if share.is_none() {
            let reg = libc::xdp_umem_reg {
                addr: area.ptr.as_ptr() as u64,
                len: area.len as u64,
                chunk_size: cfg.frame_size,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            if let Err(e) = setsockopt(b, libc::XDP_UMEM_REG, &reg, "XDP_UMEM_REG") {
                return Err(match e {
                    XskError::Sys { source, .. }
                        if matches!(source.raw_os_error(), Some(libc::ENOBUFS | libc::ENOMEM)) =>
                    {
                        XskError::Memlock {
                            bytes: area.len,
                            source,
                        }
                    }
                    e => e,
                });
            }
        }
        setsockopt(
            b,
            libc::XDP_UMEM_FILL_RING,
            &cfg.fill_size,
            "XDP_UMEM_FILL_RING",
        )?;
        setsockopt(
            b,
            libc::XDP_UMEM_COMPLETION_RING,
            &cfg.fill_size,
            "XDP_UMEM_COMPLETION_RING",
        )?;
        setsockopt(b, libc::XDP_RX_RING, &cfg.ring_size, "XDP_RX_RING")?;
        setsockopt(b, libc::XDP_TX_RING, &cfg.ring_size, "XDP_TX_RING")?;

        // SAFETY: xdp_mmap_offsets is plain integers; all-zero is a valid value.
        let mut off: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
        let mut optlen = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` and `optlen` are valid for writes and outlive the call;
        // `optlen` holds the buffer's exact size; `fd` is an open socket.
        let r = unsafe {
            libc::getsockopt(
                b.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                (&mut off as *mut libc::xdp_mmap_offsets).cast(),
                &mut optlen,
            )
        };
        if r != 0 {
            return Err(sys_err("getsockopt(XDP_MMAP_OFFSETS)"));
        }
        if optlen as usize != size_of::<libc::xdp_mmap_offsets>() {
            return Err(XskError::Config(
                "kernel lacks ring flags (pre-5.4 offsets)",
            ));
        }
        let fill = Ring::map(
            b,
            &off.fr,
            cfg.fill_size,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            true,
        )?;
        let comp = Ring::map(
            b,
            &off.cr,
            cfg.fill_size,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            false,
        )?;
        let rx = Ring::map(
            b,
            &off.rx,
            cfg.ring_size,
            libc::XDP_PGOFF_RX_RING as u64,
            false,
        )?;
        let tx = Ring::map(
            b,
            &off.tx,
            cfg.ring_size,
            libc::XDP_PGOFF_TX_RING as u64,
            true,
        )?;

        let (flags, shared_fd) = match share {
            None => (libc::XDP_USE_NEED_WAKEUP, 0),
            Some(first) => (libc::XDP_SHARED_UMEM, first.as_raw_fd() as u32),
        };
        let sa = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: flags,
            sxdp_ifindex: ifindex,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: shared_fd,
        };
        // SAFETY: `sa` is a valid sockaddr_xdp borrowed for the call with its exact
        // size; `fd` is an open AF_XDP socket; bind(2) only reads `sa`.
        let r = unsafe {
            libc::bind(
                b.as_raw_fd(),
                (&sa as *const libc::sockaddr_xdp).cast(),
                size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(sys_err(if share.is_none() {
                "bind(AF_XDP)"
            } else {
                "bind(AF_XDP, XDP_SHARED_UMEM)"
            }));
        }
        Ok(Xsk {
            fill,
            comp,
            rx,
            tx,
            fd,
            in_fill: 0,
            tx_outstanding: 0,
        })
    }

    /// Kicks tx processing (`sendto`) if the tx ring holds frames the kernel has
    /// not taken yet and it asks for a wake-up.
    fn kick_tx(&mut self) -> Result<bool, XskError> {
        let taken = self.tx.consumer().load(Ordering::Acquire);
        if taken == self.tx.cached_prod || !self.tx.needs_wakeup() {
            return Ok(false);
        }
        self.wake_tx()?;
        Ok(true)
    }

    fn wake_rx(&self) {
        // SAFETY: a NULL buffer of length 0 and NULL address are allowed by
        // recvfrom(2); `fd` is open. Only its side effect (a wake-up) matters;
        // EAGAIN is the normal result and is ignored.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                std::ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
    }

    fn wake_tx(&self) -> Result<(), XskError> {
        // SAFETY: a NULL buffer of length 0 and NULL address are allowed by
        // sendto(2) on AF_XDP (it only kicks tx processing); `fd` is open.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            // Busy / try again: the kernel keeps the frames; the next call kicks again.
            Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::ENETDOWN) => Ok(()),
            _ => Err(XskError::Sys {
                op: "sendto(AF_XDP kick)",
                source: e,
            }),
        }
    }

    /// Whether the kernel bound this socket in zero-copy mode (`XDP_OPTIONS`).
    fn zero_copy(&self) -> Result<bool, XskError> {
        let mut opt = libc::xdp_options { flags: 0 };
        let mut optlen = size_of::<libc::xdp_options>() as libc::socklen_t;
        // SAFETY: `opt` and `optlen` are valid for writes and outlive the call;
        // `optlen` holds the buffer's exact size; `fd` is an open AF_XDP socket.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_OPTIONS,
                (&mut opt as *mut libc::xdp_options).cast(),
                &mut optlen,
            )
        };
        if r != 0 {
            return Err(sys_err("getsockopt(XDP_OPTIONS)"));
        }
        Ok(opt.flags & libc::XDP_OPTIONS_ZEROCOPY != 0)
    }

    fn statistics(&self) -> Result<libc::xdp_statistics, XskError> {
        // SAFETY: xdp_statistics is plain integers; all-zero is a valid value.
        let mut st: libc::xdp_statistics = unsafe { std::mem::zeroed() };
        let mut optlen = size_of::<libc::xdp_statistics>() as libc::socklen_t;
        // SAFETY: `st` and `optlen` are valid for writes and outlive the call;
        // `optlen` holds the buffer's exact size (the kernel writes at most that
        // and shortens it for older layouts); `fd` is an open socket.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_STATISTICS,
                (&mut st as *mut libc::xdp_statistics).cast(),
                &mut optlen,
            )
        };
        if r != 0 {
            return Err(sys_err("getsockopt(XDP_STATISTICS)"));
        }
        Ok(st)
    }
}

/// Where the frames of an [`XskSet`]'s UMEM are ([`XskSet::census`]). Every
/// frame is in exactly one place, so the parts add up to `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCensus {
    /// Frames of the UMEM.
    pub total: usize,
    /// On the free pool (userspace, not touched by the kernel).
    pub free: usize,
    /// Held by the caller as [`UmemFrame`] handles.
    pub held: usize,
    /// Given to a fill ring and not yet taken back from an rx ring.
    pub fill: usize,
    /// Put on a tx ring and not yet completed.
    pub tx: usize,
}

impl FrameCensus {
    /// `free + held + fill + tx`: equals `total` unless a handle was dropped.
    pub fn accounted(&self) -> usize {
        self.free + self.held + self.fill + self.tx
    }
}

/// AF_XDP sockets on the same queue of one or more interfaces, sharing **one**
/// UMEM: a frame received on any socket may be transmitted on any socket (the
/// same chunk, no copy). The first socket registers the UMEM; the others bind
/// with `XDP_SHARED_UMEM`, each with its own fill and completion rings.
///
/// The UMEM holds `sockets × cfg.frame_count` frames. Free frames sit in one
/// pool; [`XskSet::refill`] splits them fairly across the fill rings and keeps
/// [`TX_RESERVE`] for [`XskSet::alloc`]; completions of any socket return to
/// the pool.
#[derive(Debug)]
pub struct XskSet {
    // Drop order: the sockets (rings, then descriptors), then the UMEM area
    // (the kernel pins the area's pages while a socket lives).
    socks: Vec<Xsk>,
    area: Mmap,
    /// The free pool; its capacity is the UMEM's frame count and it never holds
    /// more (a chunk is pushed only when it comes back from a handle or a ring).
    free: Vec<u64>,
    frame_size: u32,
    total: usize,
    reserve: usize,
    /// Handles out (received or allocated, not yet recycled or sent).
    held: usize,
    /// Socket served first by the next refill (rotates, for fairness).
    next_refill: usize,
    id: u32,
}

impl XskSet {
    /// Creates one UMEM of `ifindexes.len() × cfg.frame_count` frames and one
    /// socket per interface on `queue`, binds them (the first registers the
    /// UMEM, the others share it) and fills their fill rings.
    pub fn new(ifindexes: &[u32], queue: u32, cfg: XskConfig) -> Result<Self, XskError> {
        cfg.check()?;
        if ifindexes.is_empty() {
            return Err(XskError::Config("no interface"));
        }
        if ifindexes.len() > POLL_MAX {
            return Err(XskError::Config(
                "more interfaces than one UMEM set serves (16)",
            ));
        }
        if ifindexes
            .iter()
            .enumerate()
            .any(|(i, a)| ifindexes[..i].contains(a))
        {
            return Err(XskError::Config("the same interface twice in one set"));
        }
        let total = (cfg.frame_count as usize)
            .checked_mul(ifindexes.len())
            .filter(|&t| t <= u32::MAX as usize)
            .ok_or(XskError::Config("UMEM too large"))?;
        let bytes = total
            .checked_mul(cfg.frame_size as usize)
            .ok_or(XskError::Config("UMEM too large"))?;
        let area = Mmap::anonymous(bytes)?;
        let mut socks: Vec<Xsk> = Vec::with_capacity(ifindexes.len());
        for &ifindex in ifindexes {
            let share = socks.first().map(|s| s.fd.as_fd());
            let s = Xsk::open(ifindex, queue, &cfg, &area, share)?;
            socks.push(s);
        }
        let mut free = Vec::with_capacity(total);
        free.extend(
            (0..total as u64)
                .rev()
                .map(|i| i * u64::from(cfg.frame_size)),
        );
        let mut set = XskSet {
            socks,
            area,
            free,
            frame_size: cfg.frame_size,
            total,
            reserve: TX_RESERVE.min(total / 4),
            held: 0,
            next_refill: 0,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        };
        set.refill();
        Ok(set)
    }

    /// How many sockets.
    pub fn len(&self) -> usize {
        self.socks.len()
    }

    /// Whether the set has no socket (never: [`XskSet::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.socks.is_empty()
    }

    /// Socket `i`'s descriptor (for the steering program's XSKMAP). Panics if
    /// `i` is out of range (as do the other `i`-taking methods).
    pub fn fd(&self, i: usize) -> BorrowedFd<'_> {
        self.socks[i].fd.as_fd()
    }

    /// Frames of the UMEM.
    pub fn frame_count(&self) -> usize {
        self.total
    }

    /// Frames on the free pool (neither with the kernel nor with the caller).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    /// Frames given to socket `i`'s fill ring and not yet received back.
    pub fn fill_frames(&self, i: usize) -> usize {
        self.socks[i].in_fill as usize
    }

    /// Where every frame of the UMEM is.
    pub fn census(&self) -> FrameCensus {
        FrameCensus {
            total: self.total,
            free: self.free.len(),
            held: self.held,
            fill: self.socks.iter().map(|s| s.in_fill as usize).sum(),
            tx: self.socks.iter().map(|s| s.tx_outstanding as usize).sum(),
        }
    }

    /// Moves free frames to the fill rings, split fairly, keeping the tx
    /// reserve on the pool: first the emptiest rings are brought up to a common
    /// level (what every ring would hold if the frames on fill rings and the
    /// available ones were shared evenly), then what is left goes out in even
    /// shares, socket by socket (starting with a different one each call), each
    /// taking at most what its ring has room for, so a share one socket cannot
    /// use goes to the next. Wakes a socket's kernel side if it asks to. Returns
    /// the number of frames given. No allocation.
    pub fn refill(&mut self) -> usize {
        let n = self.socks.len();
        let mut avail = self.free.len().saturating_sub(self.reserve);
        let start = self.next_refill;
        self.next_refill = (start + 1) % n;
        let mut given = 0;
        if avail > 0 {
            let on_rings: usize = self.socks.iter().map(|s| s.in_fill as usize).sum();
            let level = (on_rings + avail) / n;
            for k in 0..n {
                let i = (start + k) % n;
                let want = level.saturating_sub(self.socks[i].in_fill as usize);
                let got = self.fill_from_pool(i, want.min(avail));
                avail -= got;
                given += got;
            }
            for k in 0..n {
                let got = self.fill_from_pool((start + k) % n, avail.div_ceil(n - k));
                avail -= got;
                given += got;
            }
        }
        for s in &self.socks {
            if s.fill.needs_wakeup() {
                s.wake_rx();
            }
        }
        given
    }

    /// Moves up to `want` frames from the pool to socket `i`'s fill ring (as
    /// many as it has room for); returns how many.
    fn fill_from_pool(&mut self, i: usize, want: usize) -> usize {
        if want == 0 {
            return 0;
        }
        let s = &mut self.socks[i];
        let want = want.min(self.free.len()).min(u32::MAX as usize) as u32;
        let (got, first) = s.fill.reserve(want);
        for j in 0..got {
            let addr = self
                .free
                .pop()
                .expect("reserved no more than the free pool holds");
            s.fill.write(first.wrapping_add(j), addr);
        }
        if got > 0 {
            s.fill.submit();
            s.in_fill += got;
        }
        got as usize
    }

    /// Takes up to `max` frames received on socket `i` into `out`; returns how
    /// many.
    pub fn rx(&mut self, i: usize, max: usize, out: &mut Vec<UmemFrame>) -> usize {
        let s = &mut self.socks[i];
        let (n, first) = s.rx.peek(max.min(u32::MAX as usize) as u32);
        for k in 0..n {
            let d = s.rx.read(first.wrapping_add(k));
            out.push(UmemFrame {
                addr: d.addr,
                len: d.len,
                owner: self.id,
            });
        }
        if n > 0 {
            s.rx.release();
            s.in_fill -= n.min(s.in_fill);
            self.held += n as usize;
        }
        n as usize
    }

    /// Gives a frame back to the free pool (and, by [`XskSet::refill`], to a
    /// fill ring).
    pub fn recycle(&mut self, frame: UmemFrame) {
        self.check(&frame);
        self.held -= 1;
        self.put_free(frame.addr);
    }

    /// A free frame for tx, with its data at the start of its chunk, length 0.
    pub fn alloc(&mut self) -> Option<UmemFrame> {
        let addr = self.free.pop()?;
        self.held += 1;
        Some(UmemFrame {
            addr,
            len: 0,
            owner: self.id,
        })
    }

    /// Puts frames from the front of `frames` on socket `i`'s tx ring (as many
    /// as fit), removes them from `frames`, and kicks the kernel if it asks to.
    /// Returns how many were queued. Their completions come back on socket
    /// `i`'s completion ring.
    pub fn tx(&mut self, i: usize, frames: &mut Vec<UmemFrame>) -> Result<usize, XskError> {
        // Check every handle before reserving: a panic must not leave reserved
        // slots unwritten (a later submit would publish stale descriptors).
        // An empty descriptor is invalid: the kernel would consume it without a
        // completion, losing the chunk.
        for f in frames.iter() {
            self.check(f);
            assert!(!f.is_empty(), "tx of an empty UmemFrame");
        }
        let s = &mut self.socks[i];
        let (n, first) = s.tx.reserve(frames.len().min(u32::MAX as usize) as u32);
        for (k, f) in frames.drain(..n as usize).enumerate() {
            let d = libc::xdp_desc {
                addr: f.addr,
                len: f.len,
                options: 0,
            };
            s.tx.write(first.wrapping_add(k as u32), d);
        }
        if n > 0 {
            s.tx.submit();
            s.tx_outstanding += n;
            self.held -= n as usize;
        }
        s.kick_tx()?;
        Ok(n as usize)
    }

    /// Kicks socket `i`'s tx processing (`sendto`) if its tx ring holds frames
    /// the kernel has not taken yet and it asks for a wake-up. In copy mode the
    /// kernel sends only on a kick, a bounded number of frames each time, so a
    /// caller waiting for completions must keep kicking. Returns whether it
    /// kicked.
    pub fn kick_tx(&mut self, i: usize) -> Result<bool, XskError> {
        self.socks[i].kick_tx()
    }

    /// Reaps socket `i`'s completion ring into the free pool; returns how many
    /// frames.
    pub fn complete(&mut self, i: usize) -> usize {
        let s = &mut self.socks[i];
        let (n, first) = s.comp.peek(u32::MAX);
        let mask = !u64::from(self.frame_size - 1);
        for k in 0..n {
            let addr = s.comp.read(first.wrapping_add(k));
            debug_assert!(self.free.len() < self.total, "free pool beyond the UMEM");
            self.free.push(addr & mask);
        }
        if n > 0 {
            s.comp.release();
            s.tx_outstanding -= n.min(s.tx_outstanding);
        }
        n as usize
    }

    /// Reaps every socket's completion ring; returns how many frames.
    pub fn complete_all(&mut self) -> usize {
        (0..self.socks.len()).map(|i| self.complete(i)).sum()
    }

    /// Frames queued for tx on socket `i` and not yet completed.
    pub fn tx_outstanding(&self, i: usize) -> u32 {
        self.socks[i].tx_outstanding
    }

    /// The frame's data.
    pub fn data(&self, frame: &UmemFrame) -> &[u8] {
        self.check(frame);
        // SAFETY: `check` proved `addr..addr+len` inside the area (alive as long as
        // `self`); the chunk is held by the caller's handle, so by the ownership
        // invariant the kernel neither reads nor writes it; the returned borrow of
        // `self` keeps `data_mut` from aliasing it.
        unsafe { std::slice::from_raw_parts(self.ptr(frame.addr), frame.len as usize) }
    }

    /// The frame's data, writable.
    pub fn data_mut(&mut self, frame: &UmemFrame) -> &mut [u8] {
        self.check(frame);
        // SAFETY: as for `data`: inside the live area, owned by the caller's handle
        // (not the kernel's); the `&mut self` borrow makes it the only slice over
        // the area for its lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(frame.addr), frame.len as usize) }
    }

    /// Sets the frame's data to `bytes` (at most the rest of its chunk).
    pub fn write(&mut self, frame: &mut UmemFrame, bytes: &[u8]) -> Result<(), XskError> {
        let room = u64::from(self.frame_size) - (frame.addr - self.chunk(frame.addr));
        if bytes.len() as u64 > room {
            return Err(XskError::Config("frame larger than a UMEM chunk"));
        }
        frame.len = bytes.len() as u32;
        self.data_mut(frame).copy_from_slice(bytes);
        Ok(())
    }

    /// Whether the sockets run in zero-copy mode (the kernel's choice at bind:
    /// zero-copy where every driver offers it, else copy).
    pub fn zero_copy(&self) -> Result<bool, XskError> {
        self.socks[0].zero_copy()
    }

    /// Socket `i`'s drop counters (`XDP_STATISTICS`): frames dropped on receive
    /// (no fill buffer, rx ring full, too large), invalid descriptors.
    pub fn statistics(&self, i: usize) -> Result<libc::xdp_statistics, XskError> {
        self.socks[i].statistics()
    }

    /// Waits up to `timeout_ms` for any socket's rx ring to have frames
    /// (poll(2) POLLIN); true if one has. No allocation.
    pub fn poll_rx(&self, timeout_ms: i32) -> Result<bool, XskError> {
        super::poll_readable(self.socks.iter().map(|s| s.fd.as_raw_fd()), timeout_ms).map_err(
            |source| XskError::Sys {
                op: "poll(AF_XDP)",
                source,
            },
        )
    }

    fn put_free(&mut self, addr: u64) {
        debug_assert!(self.free.len() < self.total, "free pool beyond the UMEM");
        let chunk = self.chunk(addr);
        self.free.push(chunk);
    }

    fn chunk(&self, addr: u64) -> u64 {
        addr & !u64::from(self.frame_size - 1)
    }

    fn ptr(&self, addr: u64) -> *mut u8 {
        self.area.ptr.as_ptr().wrapping_add(addr as usize)
    }

    /// Panics unless `frame` belongs to this UMEM and lies inside one chunk.
    fn check(&self, frame: &UmemFrame) {
        assert_eq!(frame.owner, self.id, "UmemFrame of another UMEM");
        let end = frame.addr + u64::from(frame.len);
        assert!(
            end <= self.chunk(frame.addr) + u64::from(self.frame_size)
                && end as usize <= self.area.len,
            "UmemFrame outside its chunk"
        );
    }
}

/// An AF_XDP socket bound to one queue of one interface, with a UMEM of its own
/// (`cfg.frame_count` frames): an [`XskSet`] of one socket.
#[derive(Debug)]
pub struct XskSocket {
    set: XskSet,
}

impl XskSocket {
    /// Creates the socket and UMEM, maps the rings, binds to `ifindex`/`queue`
    /// (`XDP_COPY | XDP_USE_NEED_WAKEUP`) and fills the fill ring.
    pub fn new(ifindex: u32, queue: u32, cfg: XskConfig) -> Result<Self, XskError> {
        Ok(XskSocket {
            set: XskSet::new(&[ifindex], queue, cfg)?,
        })
    }

    /// The socket's descriptor (for the steering program's XSKMAP).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.set.fd(0)
    }

    /// Frames on the free list (neither with the kernel nor with the caller).
    pub fn free_frames(&self) -> usize {
        self.set.free_frames()
    }

    /// Where every frame of the UMEM is.
    pub fn census(&self) -> FrameCensus {
        self.set.census()
    }

    /// Moves free frames (all but the tx reserve) to the fill ring; wakes the
    /// kernel if it asks to. Returns the number of frames given.
    pub fn refill(&mut self) -> usize {
        self.set.refill()
    }

    /// Takes up to `max` received frames into `out`; returns how many.
    pub fn rx(&mut self, max: usize, out: &mut Vec<UmemFrame>) -> usize {
        self.set.rx(0, max, out)
    }

    /// Gives a frame back to the free list (and, by [`XskSocket::refill`], to the
    /// fill ring).
    pub fn recycle(&mut self, frame: UmemFrame) {
        self.set.recycle(frame);
    }

    /// A free frame for tx, with its data at the start of its chunk, length 0.
    pub fn alloc(&mut self) -> Option<UmemFrame> {
        self.set.alloc()
    }

    /// Puts frames from the front of `frames` on the tx ring (as many as fit),
    /// removes them from `frames`, and kicks the kernel if it asks to. Returns
    /// how many were queued.
    pub fn tx(&mut self, frames: &mut Vec<UmemFrame>) -> Result<usize, XskError> {
        self.set.tx(0, frames)
    }

    /// See [`XskSet::kick_tx`].
    pub fn kick_tx(&mut self) -> Result<bool, XskError> {
        self.set.kick_tx(0)
    }

    /// Reaps the completion ring into the free list; returns how many frames.
    pub fn complete(&mut self) -> usize {
        self.set.complete(0)
    }

    /// Frames queued for tx and not yet completed.
    pub fn tx_outstanding(&self) -> u32 {
        self.set.tx_outstanding(0)
    }

    /// The frame's data.
    pub fn data(&self, frame: &UmemFrame) -> &[u8] {
        self.set.data(frame)
    }

    /// The frame's data, writable.
    pub fn data_mut(&mut self, frame: &UmemFrame) -> &mut [u8] {
        self.set.data_mut(frame)
    }

    /// Sets the frame's data to `bytes` (at most the rest of its chunk).
    pub fn write(&mut self, frame: &mut UmemFrame, bytes: &[u8]) -> Result<(), XskError> {
        self.set.write(frame, bytes)
    }

    /// The kernel's drop counters of this socket (`XDP_STATISTICS`).
    pub fn statistics(&self) -> Result<libc::xdp_statistics, XskError> {
        self.set.statistics(0)
    }

    /// Waits up to `timeout_ms` for the rx ring to have frames (poll(2) POLLIN).
    pub fn poll_rx(&self, timeout_ms: i32) -> Result<bool, XskError> {
        self.set.poll_rx(timeout_ms)
    }
}

/// Most sockets an [`XskSet`] holds (and [`XskSet::poll_rx`] waits on).
pub use super::POLL_MAX;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_error_names_the_limit_and_the_size() {
        let e = XskError::Memlock {
            bytes: 8 << 20,
            source: io::Error::from_raw_os_error(libc::ENOBUFS),
        };
        let msg = e.to_string();
        assert!(msg.contains("RLIMIT_MEMLOCK"), "{msg}");
        assert!(msg.contains("8388608 bytes"), "{msg}");
    }

    #[test]
    fn configs_are_checked() {
        assert!(XskConfig::default().check().is_ok());
        // Two ports fit in 8 MiB.
        assert_eq!(2 * XskConfig::default().umem_bytes(), 8 << 20);
        for bad in [
            XskConfig {
                frame_size: 1024,
                ..XskConfig::default()
            },
            XskConfig {
                frame_size: 8192,
                ..XskConfig::default()
            },
            XskConfig {
                ring_size: 1000,
                ..XskConfig::default()
            },
            XskConfig {
                frame_count: 16,
                ..XskConfig::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
