//! TCP segments (RFC 9293).
//!
//! Layout: source port (2), destination port (2), sequence number (4),
//! acknowledgment number (4), data offset (4 bits) / reserved (3 bits) /
//! flags (9 bits), window (2), checksum (2), urgent pointer (2), options
//! (data offset * 4 - 20), payload.
//!
//! The view covers one whole segment: the buffer must end where the IP
//! payload ends, since TCP has no length field of its own.
//!
//! Invariants after [`TcpPacket::check_len`]: buffer >= 20 bytes and
//! `20 <= header_len <= buffer.len()`; variable-length accessors clamp to the
//! buffer, so no getter or setter panics afterwards.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{Error, Result, be16, be32, checksum, ip_proto, put16, put32};

mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    pub const FLAGS: Range<usize> = 12..14;
    pub const WIN_SIZE: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;

/// TCP flag bits as returned by [`TcpPacket::flags`].
pub mod flags {
    pub const FIN: u16 = 0x001;
    pub const SYN: u16 = 0x002;
    pub const RST: u16 = 0x004;
    pub const PSH: u16 = 0x008;
    pub const ACK: u16 = 0x010;
    pub const URG: u16 = 0x020;
    pub const ECE: u16 = 0x040;
    pub const CWR: u16 = 0x080;
    /// ECN nonce (RFC 3540, historic); now AE (accurate ECN).
    pub const NS: u16 = 0x100;
}

/// A read/write view of a TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate: buffer >= 20 (`Truncated`), data offset >= 5 (`Malformed`),
    /// header_len <= buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if hl > b.len() {
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

    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM.start)
    }

    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM.start)
    }

    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::FLAGS.start] >> 4) * 4
    }

    /// The 9 flag bits (see [`flags`]).
    #[inline]
    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLAGS.start) & 0x01ff
    }

    #[inline]
    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }

    #[inline]
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }

    #[inline]
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }

    #[inline]
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }

    #[inline]
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }

    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WIN_SIZE.start)
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT.start)
    }

    #[inline]
    fn hl_clamped(&self) -> usize {
        self.header_len().min(self.buffer.as_ref().len())
    }

    /// The options bytes (`20..header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let hl = self.hl_clamped();
        &self.buffer.as_ref()[HEADER_LEN.min(hl)..hl]
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len().max(HEADER_LEN).min(b.len())..]
    }

    /// True when the checksum over the whole buffer verifies (IPv4).
    #[inline]
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let b = self.buffer.as_ref();
        let s = checksum::pseudo_header_v4(src, dst, ip_proto::TCP, b.len() as u16);
        checksum::fold(checksum::combine(s, checksum::sum(b))) == 0xffff
    }

    /// True when the checksum over the whole buffer verifies (IPv6).
    #[inline]
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let s = checksum::pseudo_header_v6(src, dst, ip_proto::TCP, b.len() as u32);
        checksum::fold(checksum::combine(s, checksum::sum(b))) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT.start, v);
    }

    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT.start, v);
    }

    #[inline]
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ_NUM.start, v);
    }

    #[inline]
    pub fn set_ack_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::ACK_NUM.start, v);
    }

    /// Set the header length in bytes (stored as `len / 4`).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::FLAGS.start];
        *b = (*b & 0x0f) | (((len / 4) as u8) << 4);
    }

    /// Set the 9 flag bits, keeping the data offset.
    #[inline]
    pub fn set_flags(&mut self, f: u16) {
        let b = self.buffer.as_mut();
        let w = (be16(b, field::FLAGS.start) & 0xfe00) | (f & 0x01ff);
        put16(b, field::FLAGS.start, w);
    }

    #[inline]
    pub fn set_window_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::WIN_SIZE.start, v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    #[inline]
    pub fn set_urgent_at(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::URGENT.start, v);
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len().max(HEADER_LEN);
        let b = self.buffer.as_mut();
        let start = start.min(b.len());
        &mut b[start..]
    }

    /// Compute and store the checksum over the whole buffer (IPv4).
    #[inline]
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let c = checksum::tcp_udp_checksum_v4(src, dst, ip_proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }

    /// Compute and store the checksum over the whole buffer (IPv6).
    #[inline]
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let c = checksum::tcp_udp_checksum_v6(src, dst, ip_proto::TCP, self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameSpec;
    use crate::wire::ipv4::Ipv4Packet;
    use proptest::prelude::*;

    /// Linux-style SYN 10.0.0.1:45678 -> 10.0.0.2:80 with MSS, SACK-permitted,
    /// timestamps, NOP and window scale options (IPv4 header included).
    const IPV4_TCP_SYN: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0xbe, 0xef, 0x40, 0x00, 0x40, 0x06, 0x67, 0xca, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02, 0xb2, 0x6e, 0x00, 0x50, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00,
        0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x3b, 0x60, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
        0x02, 0x08, 0x0a, 0x00, 0x01, 0xe2, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    fn exercise<T: AsRef<[u8]>>(p: &TcpPacket<T>) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.header_len(),
        );
        let _ = (p.flags(), p.syn(), p.ack(), p.fin(), p.rst(), p.psh());
        let _ = (
            p.window_len(),
            p.checksum(),
            p.urgent_at(),
            p.options(),
            p.payload(),
        );
        let _ = p.verify_checksum_v4(Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST);
        let _ = p.verify_checksum_v6(&Ipv6Addr::LOCALHOST, &Ipv6Addr::LOCALHOST);
    }

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn parse_syn_fixture() {
        let seg = &IPV4_TCP_SYN[20..];
        let p = TcpPacket::new_checked(seg).unwrap();
        assert_eq!(p.src_port(), 45678);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 0x12345678);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), flags::SYN);
        assert!(p.syn() && !p.ack() && !p.fin() && !p.rst() && !p.psh());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.checksum(), u16::from_be_bytes([seg[16], seg[17]]));
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options(), &seg[20..40]);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum_v4(SRC, DST));
        assert!(!p.verify_checksum_v4(DST, DST));

        let mut b = [0u8; 40];
        b[20..].copy_from_slice(&seg[20..]);
        let mut q = TcpPacket::new_unchecked(&mut b[..]);
        q.set_src_port(45678);
        q.set_dst_port(80);
        q.set_seq_number(0x12345678);
        q.set_ack_number(0);
        q.set_header_len(40);
        q.set_flags(flags::SYN);
        q.set_window_len(64240);
        q.set_urgent_at(0);
        q.fill_checksum_v4(SRC, DST);
        assert_eq!(&b[..], seg);

        // Builder (no options) then grafting the options gives the same bytes.
        let mut ip = FrameSpec::tcp(
            "10.0.0.1:45678".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
            flags::SYN,
        )
        .with_ident(0xbeef)
        .with_payload(&seg[20..])
        .build_ip();
        let mut t = TcpPacket::new_checked(&mut ip[20..]).unwrap();
        t.set_seq_number(0x12345678);
        t.set_header_len(40);
        t.fill_checksum_v4(SRC, DST);
        assert_eq!(ip, IPV4_TCP_SYN);
        assert!(Ipv4Packet::new_checked(&ip[..]).unwrap().verify_checksum());
    }

    #[test]
    fn flags_and_v6_checksum() {
        let mut b = IPV4_TCP_SYN[20..].to_vec();
        b.extend_from_slice(b"data");
        let mut p = TcpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload(), b"data");
        p.payload_mut()[0] = b'D';
        p.set_flags(flags::ACK | flags::PSH | flags::FIN | flags::RST | flags::NS | flags::CWR);
        assert_eq!(p.header_len(), 40);
        assert!(p.ack() && p.psh() && p.fin() && p.rst() && !p.syn());
        assert_eq!(p.flags() & flags::NS, flags::NS);
        let (s, d) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
        );
        p.fill_checksum_v6(&s, &d);
        assert!(p.verify_checksum_v6(&s, &d));
        p.set_checksum(p.checksum() ^ 1);
        assert!(!p.verify_checksum_v6(&s, &d));
    }

    #[test]
    fn truncation_and_malformed() {
        let seg = &IPV4_TCP_SYN[20..];
        for n in 0..40 {
            assert_eq!(
                TcpPacket::new_checked(&seg[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = seg.to_vec();
        b[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..200),
                                       hl in any::<u8>()) {
            if let Ok(mut p) = TcpPacket::new_checked(&mut data[..]) {
                exercise(&p);
                p.fill_checksum_v4(SRC, DST);
                prop_assert!(p.verify_checksum_v4(SRC, DST));
                p.set_header_len(usize::from(hl));
                p.set_flags(0x1ff);
                exercise(&p);
                p.payload_mut();
            }
        }
    }
}
