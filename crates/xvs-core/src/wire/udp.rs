//! UDP datagrams (RFC 768).
//!
//! Layout: source port (2), destination port (2), length (2, header
//! included), checksum (2), payload.
//!
//! Invariants after [`UdpPacket::check_len`]: buffer >= 8 bytes and
//! `8 <= len <= buffer.len()`; the payload is bounded by `len` (bytes after
//! it are ignored). Accessors clamp to the buffer, so no getter or setter
//! panics afterwards. UDP jumbograms (length 0) are rejected as `Malformed`.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Error, Result, be16, checksum, ip_proto, put16};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const LENGTH: Range<usize> = 4..6;
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// A read/write view of a UDP datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate: buffer >= 8 (`Truncated`), len >= 8 (`Malformed`),
    /// len <= buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let l = usize::from(self.len());
        if l < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if l > b.len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Return the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }

    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }

    /// The length field (header + payload).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// End of the datagram (`len`), clamped to the buffer.
    #[inline]
    fn end(&self) -> usize {
        usize::from(self.len()).min(self.buffer.as_ref().len())
    }

    /// The datagram, header included (`..len`).
    #[inline]
    pub fn datagram(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.end()]
    }

    /// The payload (`8..len`).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let e = self.end();
        &self.buffer.as_ref()[HEADER_LEN.min(e)..e]
    }

    /// True when the checksum verifies over `..len` (IPv4; a zero checksum
    /// means "none" and verifies).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let d = self.datagram();
        let s = checksum::pseudo_header_v4(src, dst, ip_proto::UDP, d.len() as u16);
        checksum::fold(checksum::combine(s, checksum::sum(d))) == 0xffff
    }

    /// True when the checksum verifies over `..len` (IPv6; zero is invalid).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let d = self.datagram();
        let s = checksum::pseudo_header_v6(src, dst, ip_proto::UDP, d.len() as u32);
        self.checksum() != 0 && checksum::fold(checksum::combine(s, checksum::sum(d))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    #[inline]
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    /// The payload (`8..len`), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let e = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(e)..e]
    }

    /// Compute and store the checksum over `..len` (IPv4).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = checksum::tcp_udp_checksum_v4(src, dst, ip_proto::UDP, self.datagram());
        self.set_checksum(c);
    }

    /// Compute and store the checksum over `..len` (IPv6).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let c = checksum::tcp_udp_checksum_v6(src, dst, ip_proto::UDP, self.datagram());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// DNS query for example.com A, 192.168.1.100:53241 -> 8.8.8.8:53
    /// (IPv4 header included).
    const IPV4_UDP_DNS: [u8; 57] = [
        0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x4c, 0x52, 0xc0, 0xa8, 0x01,
        0x64, 0x08, 0x08, 0x08, 0x08, 0xcf, 0xf9, 0x00, 0x35, 0x00, 0x25, 0xe2, 0x1d, 0xab, 0xcd,
        0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d,
        0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 100);
    const DST: Ipv4Addr = Ipv4Addr::new(8, 8, 8, 8);

    fn exercise<T: AsRef<[u8]>>(p: &UdpPacket<T>) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.checksum(),
            p.payload(),
            p.datagram(),
        );
        let _ = p.verify_checksum_v4(SRC, DST);
        let _ = p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
    }

    #[test]
    fn parse_dns_fixture() {
        let d = &IPV4_UDP_DNS[20..];
        let p = UdpPacket::new_checked(d).unwrap();
        assert_eq!(p.src_port(), 53241);
        assert_eq!(p.dst_port(), 53);
        assert_eq!(p.len(), 37);
        assert_eq!(p.checksum(), u16::from_be_bytes([d[6], d[7]]));
        assert_eq!(&p.payload()[..4], &[0xab, 0xcd, 0x01, 0x00]);
        assert_eq!(p.payload().len(), 29);
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(SRC, SRC));

        let mut b = [0u8; 37];
        let mut q = UdpPacket::new_unchecked(&mut b[..]);
        q.set_src_port(53241);
        q.set_dst_port(53);
        q.set_len(37);
        q.payload_mut().copy_from_slice(&d[8..]);
        q.fill_checksum_v4(SRC, DST);
        assert_eq!(&b[..], d);
    }

    #[test]
    fn len_bounds_payload_and_zero_checksum() {
        let mut b = IPV4_UDP_DNS[20..].to_vec();
        b.extend_from_slice(&[0; 5]);
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload().len(), 29);
        assert!(p.verify_checksum_v4(SRC, DST));
        p.set_checksum(0);
        assert!(p.verify_checksum_v4(SRC, DST));
        let (s, d) = ("fe80::1".parse().unwrap(), "ff02::fb".parse().unwrap());
        assert!(!p.verify_checksum_v6(&s, &d));
        p.fill_checksum_v6(&s, &d);
        assert!(p.verify_checksum_v6(&s, &d));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Find a payload word that makes the checksum compute to zero.
        let mut b = [0u8; 10];
        b[4..6].copy_from_slice(&10u16.to_be_bytes());
        let s = checksum::combine(
            checksum::pseudo_header_v4(SRC, DST, 17, 10),
            checksum::sum(&b),
        );
        let w = checksum::fold(s);
        // Adding !w..: choose data so that the folded sum becomes 0xffff.
        b[8..10].copy_from_slice(&(!w).to_be_bytes());
        let mut p = UdpPacket::new_checked(&mut b[..]).unwrap();
        p.fill_checksum_v4(SRC, DST);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC, DST));
    }

    #[test]
    fn truncation_and_malformed() {
        let d = &IPV4_UDP_DNS[20..];
        for n in 0..d.len() {
            assert_eq!(
                UdpPacket::new_checked(&d[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = d.to_vec();
        b[4] = 0;
        b[5] = 7;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[5] = 0;
        assert_eq!(
            UdpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..200),
                                       len in any::<u16>()) {
            if data.len() >= 8 {
                let l = (data.len() as u16).min(len.max(8));
                data[4..6].copy_from_slice(&l.to_be_bytes());
            }
            if let Ok(mut p) = UdpPacket::new_checked(&mut data[..]) {
                exercise(&p);
                p.fill_checksum_v4(SRC, DST);
                prop_assert!(p.verify_checksum_v4(SRC, DST));
                p.set_len(len);
                exercise(&p);
                p.payload_mut();
                p.fill_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
            }
        }
    }
}
