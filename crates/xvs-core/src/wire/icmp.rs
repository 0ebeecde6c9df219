//! ICMPv4 messages (RFC 792), and the shared [`Embedded`] description of the
//! packet quoted inside ICMP/ICMPv6 error messages.
//!
//! Layout: type (1), code (1), checksum (2), rest of header (4: identifier and
//! sequence number for echo, next-hop MTU for "fragmentation needed", ...),
//! payload. For error messages the payload is the original IP header plus at
//! least 8 bytes of its L4 header; it may be cut short (the embedded
//! `total_len` then exceeds what is present) and may be followed by RFC 4884
//! extensions.
//!
//! The view covers the whole ICMP message: the buffer must end where the IP
//! payload ends (the checksum covers the whole buffer).
//!
//! Invariants after [`IcmpPacket::check_len`]: buffer >= 8 bytes; every
//! accessor uses fixed offsets inside those 8 bytes or clamps, so no getter,
//! setter or [`IcmpPacket::embedded_ipv4`] panics afterwards.

use super::{Error, Result, be16, checksum, put16};

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    pub const REST: Range<usize> = 4..8;
    pub const IDENT: Range<usize> = 4..6;
    pub const SEQ_NO: Range<usize> = 6..8;
    pub const MTU: Range<usize> = 6..8;
    /// RFC 4884 length of the original datagram (32-bit words).
    pub const EXT_LEN: usize = 5;
}

/// Length of the ICMP header.
pub const HEADER_LEN: usize = 8;

/// ICMPv4 message types.
pub mod msg_type {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
}

/// Destination-unreachable codes.
pub mod unreach_code {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
}

/// Where the packet quoted in an ICMP/ICMPv6 error message lies. Offsets are
/// relative to the start of the ICMP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded {
    /// Offset of the embedded IP header (always 8).
    pub ip_offset: usize,
    /// Offset of the embedded L4 header (after IPv4 options / IPv6 extension
    /// headers).
    pub l4_offset: usize,
    /// Protocol of the embedded L4 header.
    pub protocol: u8,
    /// Bytes of the embedded L4 segment present in the message (bounded by
    /// the embedded length field, the RFC 4884 length, and the buffer). At
    /// least 8 unless `later_fragment`.
    pub l4_len_available: usize,
    /// The embedded packet is a non-first fragment: `l4_offset` points at
    /// fragment data, not at an L4 header.
    pub later_fragment: bool,
}

/// A read/write view of an ICMPv4 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpPacket<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        IcmpPacket { buffer }
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

    /// Destination unreachable, source quench, redirect, time exceeded or
    /// parameter problem.
    #[inline]
    pub fn is_error(&self) -> bool {
        matches!(self.msg_type(), 3 | 4 | 5 | 11 | 12)
    }

    /// Next-hop MTU of a "fragmentation needed" message (type 3 code 4).
    #[inline]
    pub fn next_hop_mtu(&self) -> Option<u16> {
        if self.msg_type() == msg_type::DEST_UNREACHABLE
            && self.msg_code() == unreach_code::FRAG_NEEDED
        {
            Some(be16(self.buffer.as_ref(), field::MTU.start))
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

    /// Locate the IPv4 packet quoted in an error message.
    ///
    /// Errors: `Malformed` if this is not an error message, the embedded
    /// version is not 4, IHL < 5 or total_len < header_len; `Truncated` if
    /// the embedded header plus 8 L4 bytes are not present (for a non-first
    /// fragment only the header is required). The available region is
    /// bounded by the embedded total_len, by the RFC 4884 length (types 3, 11,
    /// 12, when non-zero) and by the buffer. Callers may parse the embedded
    /// header with `Ipv4Packet::new_unchecked` on `&buf[ip_offset..]` and must
    /// only read `l4_offset + l4_len_available` bytes.
    pub fn embedded_ipv4(&self) -> Result<Embedded> {
        if !self.is_error() {
            return Err(Error::Malformed);
        }
        let b = self.buffer.as_ref();
        let inner = &b[HEADER_LEN.min(b.len())..];
        let mut avail = inner.len();
        if matches!(self.msg_type(), 3 | 11 | 12) && b.len() > field::EXT_LEN {
            let l = usize::from(b[field::EXT_LEN]) * 4;
            if l != 0 {
                avail = avail.min(l);
            }
        }
        if avail < 20 {
            return Err(Error::Truncated);
        }
        if inner[0] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let hl = usize::from(inner[0] & 0x0f) * 4;
        let tl = usize::from(be16(inner, 2));
        if hl < 20 || tl < hl {
            return Err(Error::Malformed);
        }
        let end = tl.min(avail);
        let later_fragment = be16(inner, 6) & 0x1fff != 0;
        let need = if later_fragment { 0 } else { 8 };
        if hl + need > end {
            return Err(Error::Truncated);
        }
        Ok(Embedded {
            ip_offset: HEADER_LEN,
            l4_offset: HEADER_LEN + hl,
            protocol: inner[9],
            l4_len_available: end - hl,
            later_fragment,
        })
    }

    /// True when the checksum over the whole buffer verifies.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IcmpPacket<T> {
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

    /// Set the next-hop MTU (bytes 6..8; meaningful for type 3 code 4).
    #[inline]
    pub fn set_next_hop_mtu(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::MTU.start, v);
    }

    /// The bytes after the 8-byte header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let s = HEADER_LEN.min(b.len());
        &mut b[s..]
    }

    /// Compute and store the checksum over the whole buffer.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameSpec;
    use crate::wire::ipv4::Ipv4Packet;
    use crate::wire::{ip_proto, udp::UdpPacket};
    use proptest::prelude::*;

    /// Windows-style ping 192.168.1.100 -> 192.168.1.1, id 1 seq 1, TTL 128
    /// (IPv4 header included).
    const IPV4_ICMP_ECHO: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x3a, 0x1f, 0x00, 0x00, 0x80, 0x01, 0x7c, 0xec, 0xc0, 0xa8, 0x01,
        0x64, 0xc0, 0xa8, 0x01, 0x01, 0x08, 0x00, 0x4d, 0x5a, 0x00, 0x01, 0x00, 0x01, 0x61, 0x62,
        0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71,
        0x72, 0x73, 0x74, 0x75, 0x76, 0x77, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69,
    ];

    /// Port unreachable quoting the whole DNS query 192.168.1.100:53241 -> 8.8.8.8:53.
    const ICMP_PORT_UNREACH: [u8; 65] = [
        0x03, 0x03, 0xcf, 0x4f, 0x00, 0x00, 0x00, 0x00, 0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40,
        0x00, 0x40, 0x11, 0x4c, 0x52, 0xc0, 0xa8, 0x01, 0x64, 0x08, 0x08, 0x08, 0x08, 0xcf, 0xf9,
        0x00, 0x35, 0x00, 0x25, 0xe2, 0x1d, 0xab, 0xcd, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d,
        0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    /// Fragmentation needed (MTU 1400) quoting a TCP packet cut to header + 8 bytes.
    const ICMP_FRAG_NEEDED: [u8; 36] = [
        0x03, 0x04, 0x3f, 0x54, 0x00, 0x00, 0x05, 0x78, 0x45, 0x00, 0x05, 0xdc, 0x42, 0x42, 0x40,
        0x00, 0x40, 0x06, 0xbe, 0x9e, 0x0a, 0x00, 0x00, 0x01, 0xc6, 0x33, 0x64, 0x07, 0xb2, 0x6e,
        0x01, 0xbb, 0x01, 0x02, 0x03, 0x04,
    ];

    fn exercise<T: AsRef<[u8]>>(p: &IcmpPacket<T>) {
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
            p.next_hop_mtu(),
            p.payload(),
        );
        let _ = p.verify_checksum();
        if let Ok(e) = p.embedded_ipv4() {
            let b = p.buffer.as_ref();
            // The promised region is present.
            let _ = &b[e.l4_offset..e.l4_offset + e.l4_len_available];
            assert!(e.later_fragment || e.l4_len_available >= 8);
            let ip = Ipv4Packet::new_unchecked(&b[e.ip_offset..]);
            assert_eq!(ip.protocol(), e.protocol);
        }
    }

    #[test]
    fn parse_echo_fixture() {
        let m = &IPV4_ICMP_ECHO[20..];
        let p = IcmpPacket::new_checked(m).unwrap();
        assert_eq!(p.msg_type(), msg_type::ECHO_REQUEST);
        assert_eq!(p.msg_code(), 0);
        assert_eq!(p.checksum(), u16::from_be_bytes([m[2], m[3]]));
        assert_eq!(p.ident(), 1);
        assert_eq!(p.seq_no(), 1);
        assert_eq!(p.rest_of_header(), [0, 1, 0, 1]);
        assert!(!p.is_error());
        assert_eq!(p.next_hop_mtu(), None);
        assert_eq!(p.payload(), b"abcdefghijklmnopqrstuvwabcdefghi");
        assert!(p.verify_checksum());
        assert_eq!(p.embedded_ipv4(), Err(Error::Malformed));

        let mut b = [0u8; 40];
        let mut q = IcmpPacket::new_unchecked(&mut b[..]);
        q.set_msg_type(msg_type::ECHO_REQUEST);
        q.set_msg_code(0);
        q.set_ident(1);
        q.set_seq_no(1);
        q.payload_mut()
            .copy_from_slice(b"abcdefghijklmnopqrstuvwabcdefghi");
        q.fill_checksum();
        assert_eq!(&b[..], m);

        let ip = FrameSpec::icmp_echo(
            "192.168.1.100".parse().unwrap(),
            "192.168.1.1".parse().unwrap(),
            1,
            1,
            false,
        )
        .with_ttl(128)
        .with_ident(0x3a1f)
        .with_dont_frag(false)
        .with_payload(b"abcdefghijklmnopqrstuvwabcdefghi")
        .build_ip();
        assert_eq!(ip, IPV4_ICMP_ECHO);
    }

    #[test]
    fn parse_port_unreachable_fixture() {
        let p = IcmpPacket::new_checked(&ICMP_PORT_UNREACH[..]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code()), (3, unreach_code::PORT));
        assert!(p.is_error());
        assert!(p.verify_checksum());
        assert_eq!(p.next_hop_mtu(), None);
        assert_eq!(p.rest_of_header(), [0; 4]);
        let e = p.embedded_ipv4().unwrap();
        assert_eq!(
            e,
            Embedded {
                ip_offset: 8,
                l4_offset: 28,
                protocol: ip_proto::UDP,
                l4_len_available: 37,
                later_fragment: false
            }
        );
        let u = UdpPacket::new_checked(&ICMP_PORT_UNREACH[e.l4_offset..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (53241, 53));

        let mut b = vec![0u8; ICMP_PORT_UNREACH.len()];
        let mut q = IcmpPacket::new_unchecked(&mut b[..]);
        q.set_msg_type(3);
        q.set_msg_code(3);
        q.set_rest_of_header([0; 4]);
        q.payload_mut().copy_from_slice(&ICMP_PORT_UNREACH[8..]);
        q.fill_checksum();
        assert_eq!(b, ICMP_PORT_UNREACH);

        let ip = FrameSpec::icmp_error(
            "8.8.8.8".parse().unwrap(),
            "192.168.1.100".parse().unwrap(),
            3,
            3,
            [0; 4],
            &ICMP_PORT_UNREACH[8..],
        )
        .build_ip();
        assert_eq!(&ip[20..], ICMP_PORT_UNREACH);
    }

    #[test]
    fn parse_frag_needed_fixture() {
        let p = IcmpPacket::new_checked(&ICMP_FRAG_NEEDED[..]).unwrap();
        assert_eq!(p.next_hop_mtu(), Some(1400));
        assert!(p.verify_checksum());
        let e = p.embedded_ipv4().unwrap();
        assert_eq!(
            (e.l4_offset, e.protocol, e.l4_len_available),
            (28, ip_proto::TCP, 8)
        );
        // The embedded total_len exceeds what is there.
        let ip = Ipv4Packet::new_unchecked(&ICMP_FRAG_NEEDED[e.ip_offset..]);
        assert_eq!(ip.total_len(), 1500);
        assert_eq!(
            Ipv4Packet::new_checked(&ICMP_FRAG_NEEDED[8..]).unwrap_err(),
            Error::Truncated
        );

        let mut b = [0u8; 36];
        let mut q = IcmpPacket::new_unchecked(&mut b[..]);
        q.set_msg_type(3);
        q.set_msg_code(4);
        q.set_next_hop_mtu(1400);
        q.payload_mut().copy_from_slice(&ICMP_FRAG_NEEDED[8..]);
        q.fill_checksum();
        assert_eq!(b, ICMP_FRAG_NEEDED);
    }

    #[test]
    fn embedded_errors() {
        // Cut inside the quoted L4 header.
        let p = IcmpPacket::new_checked(&ICMP_FRAG_NEEDED[..35]).unwrap();
        assert_eq!(p.embedded_ipv4(), Err(Error::Truncated));
        let p = IcmpPacket::new_checked(&ICMP_FRAG_NEEDED[..27]).unwrap();
        assert_eq!(p.embedded_ipv4(), Err(Error::Truncated));
        let mut b = ICMP_FRAG_NEEDED;
        b[8] = 0x65;
        assert_eq!(
            IcmpPacket::new_unchecked(&b[..]).embedded_ipv4(),
            Err(Error::Malformed)
        );
        b[8] = 0x44;
        assert_eq!(
            IcmpPacket::new_unchecked(&b[..]).embedded_ipv4(),
            Err(Error::Malformed)
        );
        // RFC 4884 length bounds the quoted datagram.
        let mut b = ICMP_PORT_UNREACH.to_vec();
        b[5] = 8; // 32 bytes
        let e = IcmpPacket::new_unchecked(&b[..]).embedded_ipv4().unwrap();
        assert_eq!(e.l4_len_available, 12);
        // Non-first fragment: only the header is required.
        let mut b = ICMP_FRAG_NEEDED[..28].to_vec();
        b[14] = 0x00;
        b[15] = 0xb9;
        let e = IcmpPacket::new_unchecked(&b[..]).embedded_ipv4().unwrap();
        assert!(e.later_fragment);
        assert_eq!(e.l4_len_available, 0);
    }

    #[test]
    fn truncation() {
        for n in 0..8 {
            assert_eq!(
                IcmpPacket::new_checked(&ICMP_FRAG_NEEDED[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let p = IcmpPacket::new_checked(&ICMP_FRAG_NEEDED[..8]).unwrap();
        assert!(p.payload().is_empty());
        assert_eq!(p.embedded_ipv4(), Err(Error::Truncated));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..200),
                                       t in prop::sample::select(vec![0u8, 3, 4, 5, 8, 11, 12])) {
            if data.len() > 8 {
                data[0] = t;
                data[8] = 0x40 | (data[8] & 0x0f);
            }
            if let Ok(mut p) = IcmpPacket::new_checked(&mut data[..]) {
                exercise(&p);
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
                p.set_rest_of_header([1, 2, 3, 4]);
                p.payload_mut();
                exercise(&p);
            }
        }
    }
}
