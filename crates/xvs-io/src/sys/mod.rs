//! # sys — the one room of the crate where `unsafe` lives
//!
//! Thin, typed wrappers over system calls. Callers outside `sys` never see a raw
//! pointer: buffers go in as slices, kernel objects come out as owned fds.
//! Every `unsafe` block carries a `// SAFETY:` comment naming each precondition.

pub mod bpf;
pub mod clock;
pub mod ethtool;
pub mod netlink;
pub mod packet;
pub mod tpacket;
pub mod xsk;

use std::ffi::CString;
use std::io;

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
