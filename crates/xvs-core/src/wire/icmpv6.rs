//! ICMPv6 messages (RFC 4443), including the NDP types the director hands to
//! the kernel (RFC 4861).
//!
//! Layout: type (1), code (1), checksum (2), 4 type-specific bytes (echo
//! identifier and sequence, Packet Too Big MTU, parameter-problem pointer),
//! payload. Error messages (types 1..=4) carry as much of the offending IPv6
//! packet as fits; its payload_len may exceed what is present.
//!
//! The view covers the whole ICMPv6 message: the buffer must end where the
//! IPv6 payload ends; the checksum covers the IPv6 pseudo-header and the
//! whole buffer.
//!
//! Invariants after [`Icmpv6Packet::check_len`]: buffer >= 8 bytes; accessors
//! use fixed offsets inside those 8 bytes or clamp, so no getter, setter or
//! [`Icmpv6Packet::embedded_ipv6`] panics afterwards.

use std::net::Ipv6Addr;

use super::icmp::Embedded;
use super::{Error, Result, be16, be32, checksum, ip_proto, ipv6, put16, put32};

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const IDENT: Range<usize> = 4..6;
    pub const SEQ_NO: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 4..8;
    /// RFC 4884 length of the original datagram (64-bit words).
    pub const EXT_LEN: usize = 4;
}

/// Length of the ICMPv6 header.
pub const HEADER_LEN: usize = 8;

/// ICMPv6 message types.
pub mod msg_type {
    pub const DEST_UNREACHABLE: u8 = 1;
    pub const PACKET_TOO_BIG: u8 = 2;
    pub const TIME_EXCEEDED: u8 = 3;
    pub const PARAM_PROBLEM: u8 = 4;
    pub const ECHO_REQUEST: u8 = 128;
    pub const ECHO_REPLY: u8 = 129;
    /// NDP router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// NDP router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// NDP neighbor solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// NDP neighbor advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// NDP redirect.
    pub const REDIRECT: u8 = 137;
}

/// A read/write view of an ICMPv6 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate: buffer >= 8 (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
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
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }

    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Echo identifier (bytes 4..6).
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    /// Echo sequence number (bytes 6..8).
    #[inline]
    pub fn seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SEQ_NO.start)
    }

    /// Bytes 4..8.
    #[inline]
    pub fn rest_of_header(&self) -> [u8; 4] {
        let mut a = [0; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::REST]);
        a
    }

    /// Error messages: types 1..=4.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(self.msg_type(), 1..=4)
    }

    /// NDP messages: types 133..=137.
    #[inline]
    pub fn is_ndp(&self) -> bool {
        matches!(self.msg_type(), 133..=137)
    }

    /// MTU of a Packet Too Big message (type 2).
    #[inline]
    pub fn mtu(&self) -> Option<u32> {
        if self.msg_type() == msg_type::PACKET_TOO_BIG {
            Some(be32(self.buffer.as_ref(), field::MTU.start))
        } else {
            None
        }
    }

    /// The bytes after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[HEADER_LEN.min(b.len())..]
    }

    /// Locate the IPv6 packet quoted in an error message, walking its
    /// extension headers with the same walker as `Ipv6Packet::walk_to_l4`.
    ///
    /// The walk is bounded by the embedded payload_len, the RFC 4884 length
    /// (types 1 and 3, when non-zero) and the buffer, so a quoted packet cut
    /// short is tolerated as long as its extension headers and 8 L4 bytes are
    /// present (`Truncated` otherwise; only the headers for a non-first
    /// fragment). `Malformed` if not an error message, the embedded version is
    /// not 6, or the extension chain is invalid.
    pub fn embedded_ipv6(&self) -> Result<Embedded> {
        if !self.is_error() {
            return Err(Error::Malformed);
        }
        let b = self.buffer.as_ref();
        let inner = &b[HEADER_LEN.min(b.len())..];
        let mut avail = inner.len();
        if matches!(self.msg_type(), 1 | 3) && b.len() > field::EXT_LEN {
            let l = usize::from(b[field::EXT_LEN]) * 8;
            if l != 0 {
                avail = avail.min(l);
            }
        }
        if avail < ipv6::HEADER_LEN {
            return Err(Error::Truncated);
        }
        let inner = &inner[..avail];
        if inner[0] >> 4 != 6 {
            return Err(Error::Malformed);
        }
        let end = (ipv6::HEADER_LEN + usize::from(be16(inner, 4))).min(avail);
        let l4 = ipv6::walk(inner, end)?;
        let later_fragment = l4.frag.is_some_and(|f| f.offset != 0);
        let need = if later_fragment { 0 } else { 8 };
        if l4.offset + need > end {
            return Err(Error::Truncated);
        }
        Ok(Embedded {
            ip_offset: HEADER_LEN,
            l4_offset: HEADER_LEN + l4.offset,
            protocol: l4.protocol,
            l4_len_available: end - l4.offset,
            later_fragment,
        })
    }

    /// True when the checksum (with the IPv6 pseudo-header) verifies.
    #[inline]
    pub fn verify_checksum(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let s = checksum::pseudo_header_v6(src, dst, ip_proto::ICMPV6, b.len() as u32);
        checksum::fold(checksum::combine(s, checksum::sum(b))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
    #[inline]
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }

    #[inline]
    pub fn set_msg_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT.start, v);
    }

    #[inline]
    pub fn set_seq_no(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SEQ_NO.start, v);
    }

    #[inline]
    pub fn set_rest_of_header(&mut self, v: [u8; 4]) {
        self.buffer.as_mut()[field::REST].copy_from_slice(&v);
    }

    /// Set the MTU (bytes 4..8; meaningful for Packet Too Big).
    #[inline]
    pub fn set_mtu(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::MTU.start, v);
    }

    /// The bytes after the 8-byte header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let s = HEADER_LEN.min(b.len());
        &mut b[s..]
    }

    /// Compute and store the checksum (IPv6 pseudo-header + whole buffer).
    #[inline]
    pub fn fill_checksum(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let c = checksum::tcp_udp_checksum_v6(src, dst, ip_proto::ICMPV6, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameSpec;
    use crate::wire::ipv6::Ipv6Packet;
    use crate::wire::tcp::TcpPacket;
    use proptest::prelude::*;

    /// Echo request 2001:db8::1 -> 2001:db8::2, id 0x1234 seq 7, "ping6".
    const ICMPV6_ECHO: [u8; 13] = [
        0x80, 0x00, 0xfd, 0x36, 0x12, 0x34, 0x00, 0x07, 0x70, 0x69, 0x6e, 0x67, 0x36,
    ];

    /// Packet Too Big (MTU 1280) from 2001:db8::fe to 2001:db8::1, quoting a cut TCP packet.
    const ICMPV6_PTB: [u8; 84] = [
        0x02, 0x00, 0x92, 0x22, 0x00, 0x00, 0x05, 0x00, 0x60, 0x00, 0x00, 0x00, 0x05, 0x8c, 0x06,
        0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x99, 0xc3, 0x50, 0x01, 0xbb, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02,
        0x50, 0x10, 0x00, 0x64, 0x60, 0xb6, 0x00, 0x00, 0x79, 0x79, 0x79, 0x79, 0x79, 0x79, 0x79,
        0x79, 0x79, 0x79, 0x79, 0x79, 0x79, 0x79, 0x79, 0x79,
    ];

    /// Neighbor solicitation 2001:db8::1 -> ff02::1:ff00:2 for 2001:db8::2.
    const ICMPV6_NS: [u8; 32] = [
        0x87, 0x00, 0x1c, 0x27, 0x00, 0x00, 0x00, 0x00, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00,
        0x00, 0x01,
    ];

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn exercise<T: AsRef<[u8]>>(p: &Icmpv6Packet<T>) {
        let _ = (
            p.msg_type(),
            p.msg_code(),
            p.checksum(),
            p.ident(),
            p.seq_no(),
        );
        let _ = (
            p.rest_of_header(),
            p.is_error(),
            p.is_ndp(),
            p.mtu(),
            p.payload(),
        );
        let _ = p.verify_checksum(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED);
        if let Ok(e) = p.embedded_ipv6() {
            let b = p.buffer.as_ref();
            let _ = &b[e.l4_offset..e.l4_offset + e.l4_len_available];
            assert!(e.later_fragment || e.l4_len_available >= 8);
        }
    }

    #[test]
    fn parse_echo_fixture() {
        let (s, d) = (a("2001:db8::1"), a("2001:db8::2"));
        let p = Icmpv6Packet::new_checked(&ICMPV6_ECHO[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (msg_type::ECHO_REQUEST, 0));
        assert_eq!(
            p.checksum(),
            u16::from_be_bytes([ICMPV6_ECHO[2], ICMPV6_ECHO[3]])
        );
        assert_eq!((p.ident(), p.seq_no()), (0x1234, 7));
        assert_eq!(p.rest_of_header(), [0x12, 0x34, 0, 7]);
        assert!(!p.is_error() && !p.is_ndp());
        assert_eq!(p.mtu(), None);
        assert_eq!(p.payload(), b"ping6");
        assert!(p.verify_checksum(&s, &d));
        assert!(!p.verify_checksum(&d, &d));
        assert_eq!(p.embedded_ipv6(), Err(Error::Malformed));

        let mut b = [0u8; 13];
        let mut q = Icmpv6Packet::new_unchecked(&mut b[..]);
        q.set_msg_type(128);
        q.set_ident(0x1234);
        q.set_seq_no(7);
        q.payload_mut().copy_from_slice(b"ping6");
        q.fill_checksum(&s, &d);
        assert_eq!(b, ICMPV6_ECHO);

        let ip = FrameSpec::icmp_echo(s.into(), d.into(), 0x1234, 7, false)
            .with_payload(b"ping6")
            .build_ip();
        assert_eq!(&ip[40..], ICMPV6_ECHO);
    }

    #[test]
    fn parse_packet_too_big_fixture() {
        let (s, d) = (a("2001:db8::fe"), a("2001:db8::1"));
        let p = Icmpv6Packet::new_checked(&ICMPV6_PTB[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::PACKET_TOO_BIG);
        assert!(p.is_error());
        assert_eq!(p.mtu(), Some(1280));
        assert!(p.verify_checksum(&s, &d));
        let e = p.embedded_ipv6().unwrap();
        assert_eq!(
            e,
            Embedded {
                ip_offset: 8,
                l4_offset: 48,
                protocol: ip_proto::TCP,
                l4_len_available: 36,
                later_fragment: false
            }
        );
        let inner = Ipv6Packet::new_unchecked(&ICMPV6_PTB[e.ip_offset..]);
        assert_eq!(inner.payload_len(), 1420);
        let t = TcpPacket::new_unchecked(&ICMPV6_PTB[e.l4_offset..]);
        assert_eq!((t.src_port(), t.dst_port()), (50000, 443));

        let mut b = [0u8; 84];
        let mut q = Icmpv6Packet::new_unchecked(&mut b[..]);
        q.set_msg_type(2);
        q.set_mtu(1280);
        q.payload_mut().copy_from_slice(&ICMPV6_PTB[8..]);
        q.fill_checksum(&s, &d);
        assert_eq!(b, ICMPV6_PTB);
    }

    #[test]
    fn parse_neighbor_solicitation_fixture() {
        let (s, d) = (a("2001:db8::1"), a("ff02::1:ff00:2"));
        let p = Icmpv6Packet::new_checked(&ICMPV6_NS[..]).unwrap();
        assert_eq!(p.msg_type(), msg_type::NEIGHBOR_SOLICIT);
        assert!(p.is_ndp() && !p.is_error());
        assert!(p.verify_checksum(&s, &d));
        assert_eq!(&p.payload()[..16], &a("2001:db8::2").octets());
        let mut b = [0u8; 32];
        let mut q = Icmpv6Packet::new_unchecked(&mut b[..]);
        q.set_msg_type(135);
        q.set_msg_code(0);
        q.set_rest_of_header([0; 4]);
        q.payload_mut().copy_from_slice(&ICMPV6_NS[8..]);
        q.fill_checksum(&s, &d);
        q.set_checksum(0);
        assert!(!q.verify_checksum(&s, &d));
        q.fill_checksum(&s, &d);
        assert_eq!(b, ICMPV6_NS);
    }

    #[test]
    fn embedded_with_extension_headers() {
        let orig = FrameSpec::udp(
            "[2001:db8::1]:1000".parse().unwrap(),
            "[2001:db8::2]:53".parse().unwrap(),
        )
        .with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[0; 6])
        .with_ipv6_ext(ip_proto::IPV6_FRAGMENT, &[0, 1, 0, 0, 0, 1])
        .with_payload(&[7; 2000])
        .build_ip();
        let b = FrameSpec::icmp_error(
            a("2001:db8::fe").into(),
            a("2001:db8::1").into(),
            1,
            4,
            [0; 4],
            &orig,
        )
        .build_ip();
        assert_eq!(b.len(), 1280);
        let p = Icmpv6Packet::new_checked(&b[40..]).unwrap();
        let e = p.embedded_ipv6().unwrap();
        assert_eq!((e.l4_offset, e.protocol), (8 + 40 + 16, ip_proto::UDP));
        assert_eq!(e.l4_len_available, 1240 - 8 - 56);
        // Cut inside the extension headers.
        let p = Icmpv6Packet::new_checked(&b[40..40 + 8 + 50]).unwrap();
        assert_eq!(p.embedded_ipv6(), Err(Error::Truncated));
        // Cut inside the UDP header.
        let p = Icmpv6Packet::new_checked(&b[40..40 + 8 + 60]).unwrap();
        assert_eq!(p.embedded_ipv6(), Err(Error::Truncated));
        let p = Icmpv6Packet::new_checked(&b[40..40 + 8 + 64]).unwrap();
        assert_eq!(p.embedded_ipv6().unwrap().l4_len_available, 8);
        // Wrong embedded version.
        let mut c = b[40..].to_vec();
        c[8] = 0x45;
        assert_eq!(
            Icmpv6Packet::new_unchecked(&c[..]).embedded_ipv6(),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn truncation() {
        for n in 0..8 {
            assert_eq!(
                Icmpv6Packet::new_checked(&ICMPV6_PTB[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        for n in 8..56 {
            let p = Icmpv6Packet::new_checked(&ICMPV6_PTB[..n]).unwrap();
            assert_eq!(p.embedded_ipv6(), Err(Error::Truncated), "{n}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..200),
                                       t in prop::sample::select(vec![1u8, 2, 3, 4, 128, 135])) {
            if data.len() > 8 {
                data[0] = t;
                data[8] = 0x60 | (data[8] & 0x0f);
            }
            if let Ok(mut p) = Icmpv6Packet::new_checked(&mut data[..]) {
                exercise(&p);
                p.fill_checksum(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED);
                prop_assert!(p.verify_checksum(&Ipv6Addr::LOCALHOST, &Ipv6Addr::UNSPECIFIED));
                p.set_mtu(1);
                p.payload_mut();
                exercise(&p);
            }
        }
    }
}
