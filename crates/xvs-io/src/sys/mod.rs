//! # sys — the one room of the crate where `unsafe` lives
//!
//! Thin, typed wrappers over system calls. Callers outside `sys` never see a raw
//! pointer: buffers go in as slices, kernel objects come out as owned fds.
//! Every `unsafe` block carries a `// SAFETY:` comment naming each precondition.

pub mod bpf;
pub mod clock;
pub mod ethtool;
pub mod hugealloc;
pub mod netlink;
pub mod packet;
pub mod tpacket;
pub mod xsk;

use std::ffi::CString;
use std::io;

/// Most descriptors [`poll_readable`] waits on (AF_XDP and AF_PACKET port sets
/// hold at most this many sockets).
pub const POLL_MAX: usize = 16;

/// Waits up to `timeout_ms` until one of `fds` (the first [`POLL_MAX`]) is
/// readable (poll(2) POLLIN); true if one is. `EINTR` counts as "nothing yet".
/// No allocation.
pub fn poll_readable(
    fds: impl Iterator<Item = std::os::fd::RawFd>,
    timeout_ms: i32,
) -> io::Result<bool> {
    let idle = libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    };
    let mut set = [idle; POLL_MAX];
    let mut n = 0;
    for (slot, fd) in set.iter_mut().zip(fds) {
        slot.fd = fd;
        slot.events = libc::POLLIN;
        n += 1;
    }
    // SAFETY: `set[..n]` is a valid array of `n` pollfds, borrowed mutably for
    // the call; the caller keeps the descriptors open for its duration.
    let r = unsafe { libc::poll(set.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(r > 0)
}

/// Whether the process runs with effective uid 0 (privileged tests check this).
pub fn effective_uid_is_root() -> bool {
    // SAFETY: geteuid(2) takes no arguments, touches no memory and cannot fail.
    let uid = unsafe { libc::geteuid() };
    uid == 0
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string that outlives the call;
    // if_nametoindex(3) only reads it.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(index)
    }
}

/// Moves the calling **thread** into a new, empty network namespace (only `lo`,
/// down). For tests and labs: a thread that calls this sees nothing of the
/// host's interfaces, and its namespace disappears with its last user.
pub fn unshare_net_for_thread() -> io::Result<()> {
    // SAFETY: unshare(2) takes a flag word and touches no memory of ours;
    // CLONE_NEWNET affects only the calling thread's namespace set.
    let ret = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling **thread** into the named network namespace
/// (`/run/netns/NAME`, as created by `ip netns add`). For tests and labs: the
/// thread's sockets then live in that namespace.
pub fn enter_netns(name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(std::path::Path::new("/run/netns").join(name))?;
    // SAFETY: `ns` is an open namespace file descriptor for the duration of the
    // call; setns(2) touches no memory of ours and affects only this thread.
    let ret = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The CPU the calling thread is running on (`sched_getcpu(3)`), if the kernel says.
pub fn current_cpu() -> Option<usize> {
    // SAFETY: sched_getcpu takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    usize::try_from(cpu).ok()
}

/// Asks the CPU to start loading the cache line at `addr` (a hint for data about to
/// be used: the loads of many lines then overlap) — any address: a prefetch never
/// faults. No effect off x86_64.
#[inline]
pub fn prefetch_addr(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: PREFETCHT0 is only a hint: it never faults and changes nothing the
        // program can observe, whatever the address; SSE is part of the x86_64
        // baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(addr as *const i8) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}
