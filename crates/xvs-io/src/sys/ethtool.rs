//! GRO on or off through the `SIOCETHTOOL` ioctl (`ETHTOOL_GGRO` /
//! `ETHTOOL_SGRO`), for the modes that must see frames as they were on the wire
//! (generic XDP and AF_PACKET see frames after GRO, and an aggregated frame does
//! not fit an AF_XDP frame or an AF_PACKET ring slot).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ETHTOOL_GGRO: u32 = 0x0000_002b;
const ETHTOOL_SGRO: u32 = 0x0000_002c;

/// `struct ethtool_value`.
#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes integer arguments only.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2), is open and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn ethtool(ifname: &str, cmd: u32, data: u32) -> io::Result<u32> {
    let name = CString::new(ifname).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let bytes = name.as_bytes_with_nul();
    if bytes.len() > libc::IFNAMSIZ {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    let mut value = EthtoolValue { cmd, data };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    ifr.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    let sock = control_socket()?;
    // SAFETY: `ifr` is a valid ifreq whose name is NUL-terminated within
    // IFNAMSIZ and whose data pointer points at `value`, a live ethtool_value
    // that outlives the call; SIOCETHTOOL reads and writes only those.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut ifr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value.data)
}

/// Whether GRO is on for `ifname`.
pub fn gro(ifname: &str) -> io::Result<bool> {
    ethtool(ifname, ETHTOOL_GGRO, 0).map(|v| v != 0)
}

/// Turns GRO on or off for `ifname`.
pub fn set_gro(ifname: &str, on: bool) -> io::Result<()> {
    ethtool(ifname, ETHTOOL_SGRO, u32::from(on)).map(|_| ())
}
