//! # sys::packet — a plain AF_PACKET raw socket (one frame per call)
//!
//! Layer: lowest; today used by the tests to inject and capture frames on a
//! veth, later the seed of the AF_PACKET fallback. The socket is bound to one
//! interface (`ETH_P_ALL`), owns its fd (closed on drop), and sends or receives
//! whole Ethernet frames from / into caller-owned slices.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// An AF_PACKET `SOCK_RAW` socket bound to one interface.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

fn sockaddr_ll(ifindex: u32) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: (libc::ETH_P_ALL as u16).to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// Binds the AF_PACKET socket `fd` to interface `ifindex`, every protocol
/// (`ETH_P_ALL`).
pub(crate) fn bind_all(fd: BorrowedFd<'_>, ifindex: u32) -> io::Result<()> {
    let sa = sockaddr_ll(ifindex);
    // SAFETY: `sa` is a valid sockaddr_ll borrowed for the call with its exact
    // size; `fd` is open; bind(2) only reads `sa`.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl PacketSocket {
    /// Opens the socket and binds it to `ifindex` (all protocols).
    pub fn bind(ifindex: u32) -> io::Result<Self> {
        let proto = i32::from((libc::ETH_P_ALL as u16).to_be());
        // SAFETY: socket(2) takes integers only; the result is checked below.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        bind_all(fd.as_fd(), ifindex)?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Sends one whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        let sa = sockaddr_ll(self.ifindex);
        // SAFETY: `frame` is a valid readable slice and `sa` a valid sockaddr_ll,
        // both borrowed for the call with their exact lengths; `fd` is open.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sa as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// Sets the receive timeout (`SO_RCVTIMEO`).
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        let tv = libc::timeval {
            tv_sec: t.as_secs() as libc::time_t,
            tv_usec: t.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval borrowed for the call with its exact
        // size; `fd` is open; setsockopt(2) only reads it.
        let r = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Receives one frame into `buf`; returns its length and whether the kernel
    /// marked it outgoing (`PACKET_OUTGOING`: sent by this host, not received).
    /// Times out with `WouldBlock` after the read timeout.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut sa = sockaddr_ll(0);
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `buf` is a valid writable slice of `buf.len()` bytes, `sa`/`len`
        // are valid for writes with `len` holding `sa`'s size; all outlive the
        // call; `fd` is open.
        let r = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut sa as *mut libc::sockaddr_ll).cast(),
                &mut len,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok((r as usize, sa.sll_pkttype == libc::PACKET_OUTGOING))
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
