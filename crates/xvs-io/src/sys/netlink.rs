//! # sys::netlink — the one socket option the rtnetlink client needs from libc
//!
//! The `netlink-sys` crate owns the `NETLINK_ROUTE` socket; it has no setter for
//! a receive timeout, so this sets `SO_RCVTIMEO` on its borrowed descriptor.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Sets the receive timeout (`SO_RCVTIMEO`) of socket `fd`. A zero duration
/// would mean "block forever" to the kernel, so it is raised to 1 µs.
pub fn set_recv_timeout(fd: BorrowedFd<'_>, t: Duration) -> io::Result<()> {
    let t = t.max(Duration::from_micros(1));
    let tv = libc::timeval {
        tv_sec: libc::time_t::try_from(t.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_usec: libc::suseconds_t::from(t.subsec_micros()),
    };
    // SAFETY: `fd` is an open descriptor borrowed for the call; `tv` is a valid
    // timeval that outlives the call, passed with its exact size; setsockopt(2)
    // only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
