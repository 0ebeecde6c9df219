//! Zero-copy packet views for the xvs data path.
//!
//! Every view (`EthernetFrame`, `ArpPacket`, `Ipv4Packet`, `Ipv6Packet`,
//! `TcpPacket`, `UdpPacket`, `IcmpPacket`, `Icmpv6Packet`) wraps a buffer
//! `T: AsRef<[u8]>` without copying. Invariants shared by all of them:
//!
//! * `new_unchecked` performs no validation; getters on such a view may panic
//!   if the buffer is shorter than the fixed header.
//! * `new_checked` / `check_len` validate the buffer. Once `check_len` has
//!   succeeded, **no getter or setter panics**, whatever the bytes say (length
//!   fields that lie are clamped to the buffer).
//! * All multi-byte fields are big-endian (network order).
//! * Nothing in this module allocates, except the test/tooling builder in
//!   [`build`].

use core::fmt;

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;

pub use arp::ArpPacket;
pub use build::{FrameSpec, L4Spec, fragment_ipv4, fragment_ipv6};
pub use ethernet::EthernetFrame;
pub use icmp::msg_type as icmp_type;
pub use icmp::{Embedded, IcmpPacket};
pub use icmpv6::Icmpv6Packet;
pub use icmpv6::msg_type as icmpv6_type;
pub use ipv4::Ipv4Packet;
pub use ipv6::{Ipv6Frag, Ipv6L4, Ipv6Packet};
pub use tcp::TcpPacket;
pub use tcp::flags as tcp_flags;
pub use udp::UdpPacket;

/// EtherType values (IEEE 802.3).
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86DD;
}

/// IP protocol numbers / IPv6 next-header values (IANA).
pub mod ip_proto {
    pub const IPV6_HOPOPTS: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTING: u8 = 43;
    pub const IPV6_FRAGMENT: u8 = 44;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_DSTOPTS: u8 = 60;
}

/// Parse error of a packet view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The buffer is shorter than the header (or a length field) requires.
    Truncated,
    /// A field has a value that makes the packet unparseable.
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::Malformed => f.write_str("malformed packet"),
        }
    }
}

impl std::error::Error for Error {}

/// Result type of the packet views.
pub type Result<T> = core::result::Result<T, Error>;

/// Read a big-endian u16 at `at` (caller guarantees bounds).
#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Read a big-endian u32 at `at` (caller guarantees bounds).
#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
pub(crate) fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
pub(crate) fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display() {
        assert_eq!(Error::Truncated.to_string(), "truncated packet");
        assert_eq!(Error::Malformed.to_string(), "malformed packet");
        let e: Box<dyn std::error::Error> = Box::new(Error::Malformed);
        assert!(e.source().is_none());
    }

    #[test]
    fn be_helpers() {
        let mut b = [0u8; 6];
        put16(&mut b, 0, 0x1234);
        put32(&mut b, 2, 0xdeadbeef);
        assert_eq!(b, [0x12, 0x34, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(be16(&b, 0), 0x1234);
        assert_eq!(be32(&b, 2), 0xdeadbeef);
    }
}
