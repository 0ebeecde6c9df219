//! IPv4 headers (RFC 791).
//!
//! Layout: version/IHL (1), DSCP/ECN (1), total length (2), identification
//! (2), flags/fragment offset (2), TTL (1), protocol (1), header checksum (2),
//! source (4), destination (4), options (IHL*4 - 20), payload.
//!
//! Invariants after [`Ipv4Packet::check_len`]: the buffer holds at least 20
//! bytes, version is 4, `20 <= header_len <= total_len <= buffer.len()`.
//! Bytes after `total_len` (Ethernet padding) are not part of the payload.
//! Variable-length accessors clamp to the buffer, so no getter or setter
//! panics afterwards even if a setter makes the length fields lie.

use std::net::Ipv4Addr;

use super::{Error, Result, be16, checksum, put16};

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A read/write view of an IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate: buffer >= 20 (`Truncated`), version 4 and IHL >= 5
    /// (`Malformed`), header_len <= buffer (`Truncated`),
    /// total_len >= header_len (`Malformed`), total_len <= buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 4 || self.header_len() < HEADER_LEN {
            return Err(Error::Malformed);
        }
        let hl = self.header_len();
        if hl > b.len() {
            return Err(Error::Truncated);
        }
        let tl = usize::from(self.total_len());
        if tl < hl {
            return Err(Error::Malformed);
        }
        if tl > b.len() {
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
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    #[inline]
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }

    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH.start)
    }

    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT.start)
    }

    #[inline]
    fn flg_off(&self) -> u16 {
        be16(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flg_off() & FLAG_DF != 0
    }

    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flg_off() & FLAG_MF != 0
    }

    /// Fragment offset in bytes.
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flg_off() & OFFSET_MASK) << 3
    }

    /// MF set or a non-zero fragment offset.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flg_off() & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    /// Alias of [`Self::ttl`].
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.ttl()
    }

    #[inline]
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// Alias of [`Self::protocol`].
    #[inline]
    pub fn next_header(&self) -> u8 {
        self.protocol()
    }

    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    /// Header bounds clamped to the buffer: (header end, payload end).
    #[inline]
    fn bounds(&self) -> (usize, usize) {
        let len = self.buffer.as_ref().len();
        let end = usize::from(self.total_len()).min(len);
        (self.header_len().max(HEADER_LEN).min(end), end)
    }

    /// The options bytes (between byte 20 and `header_len`).
    #[inline]
    pub fn options(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        let hl = self.header_len().min(b.len());
        &b[HEADER_LEN.min(hl)..hl]
    }

    /// The payload: bytes `header_len..total_len` (link-layer padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let (s, e) = self.bounds();
        &self.buffer.as_ref()[s..e]
    }

    /// The whole header (`..header_len`), clamped to the buffer.
    #[inline]
    pub fn header(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[..self.header_len().min(b.len())]
    }

    /// True when the header checksum is correct.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.header()) == 0
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (v << 4);
    }

    /// Set the header length in bytes (stored as `len / 4`).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    #[inline]
    pub fn set_dscp_ecn(&mut self, v: u8) {
        self.buffer.as_mut()[field::DSCP_ECN] = v;
    }

    #[inline]
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH.start, v);
    }

    #[inline]
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT.start, v);
    }

    #[inline]
    fn set_flg_off(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::FLG_OFF.start, v);
    }

    #[inline]
    pub fn set_dont_frag(&mut self, v: bool) {
        let f = self.flg_off() & !FLAG_DF;
        self.set_flg_off(if v { f | FLAG_DF } else { f });
    }

    #[inline]
    pub fn set_more_frags(&mut self, v: bool) {
        let f = self.flg_off() & !FLAG_MF;
        self.set_flg_off(if v { f | FLAG_MF } else { f });
    }

    /// Set the fragment offset in bytes (must be a multiple of 8; the low
    /// three bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, bytes: u16) {
        let f = self.flg_off() & !OFFSET_MASK;
        self.set_flg_off(f | (bytes >> 3));
    }

    #[inline]
    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    /// Alias of [`Self::set_ttl`].
    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.set_ttl(v);
    }

    #[inline]
    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    /// Alias of [`Self::set_protocol`].
    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.set_protocol(v);
    }

    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM.start, v);
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// The options bytes, mutable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let b = self.buffer.as_mut();
        let hl = (usize::from(b[field::VER_IHL] & 0x0f) * 4).min(b.len());
        &mut b[HEADER_LEN.min(hl)..hl]
    }

    /// The payload (`header_len..total_len`), mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (s, e) = self.bounds();
        &mut self.buffer.as_mut()[s..e]
    }

    /// Compute and store the header checksum.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::checksum(self.header());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameSpec;
    use crate::wire::ip_proto;
    use proptest::prelude::*;

    /// DNS query for example.com A, 192.168.1.100:53241 -> 8.8.8.8:53.
    const IPV4_UDP_DNS: [u8; 57] = [
        0x45, 0x00, 0x00, 0x39, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x11, 0x4c, 0x52, 0xc0, 0xa8, 0x01,
        0x64, 0x08, 0x08, 0x08, 0x08, 0xcf, 0xf9, 0x00, 0x35, 0x00, 0x25, 0xe2, 0x1d, 0xab, 0xcd,
        0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x65, 0x78, 0x61, 0x6d,
        0x70, 0x6c, 0x65, 0x03, 0x63, 0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
    ];

    /// IGMPv3 report with a Router Alert option (IHL 6, DSCP CS6, TTL 1).
    const IPV4_IGMP_RA: [u8; 40] = [
        0x46, 0xc0, 0x00, 0x28, 0x00, 0x00, 0x40, 0x00, 0x01, 0x02, 0x41, 0xed, 0xc0, 0xa8, 0x01,
        0x64, 0xe0, 0x00, 0x00, 0x16, 0x94, 0x04, 0x00, 0x00, 0x22, 0x00, 0xe9, 0xfb, 0x00, 0x00,
        0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0xef, 0x01, 0x01, 0x01,
    ];

    fn exercise<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
        let _ = (
            p.version(),
            p.header_len(),
            p.dscp_ecn(),
            p.total_len(),
            p.ident(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
        );
        let _ = (
            p.ttl(),
            p.hop_limit(),
            p.protocol(),
            p.next_header(),
            p.checksum(),
        );
        let _ = (
            p.src_addr(),
            p.dst_addr(),
            p.options(),
            p.payload(),
            p.header(),
        );
        let _ = p.verify_checksum();
    }

    #[test]
    fn parse_udp_fixture() {
        let p = Ipv4Packet::new_checked(&IPV4_UDP_DNS[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp_ecn(), 0);
        assert_eq!(p.total_len(), 57);
        assert_eq!(p.ident(), 0x1c46);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.protocol(), ip_proto::UDP);
        assert_eq!(p.next_header(), ip_proto::UDP);
        assert_eq!(
            p.checksum(),
            u16::from_be_bytes([IPV4_UDP_DNS[10], IPV4_UDP_DNS[11]])
        );
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(8, 8, 8, 8));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &IPV4_UDP_DNS[20..]);

        // Same bytes with setters.
        let mut b = [0u8; 57];
        b[20..].copy_from_slice(&IPV4_UDP_DNS[20..]);
        let mut q = Ipv4Packet::new_unchecked(&mut b[..]);
        q.set_version(4);
        q.set_header_len(20);
        q.set_total_len(57);
        q.set_ident(0x1c46);
        q.set_dont_frag(true);
        q.set_ttl(64);
        q.set_protocol(ip_proto::UDP);
        q.set_src_addr(Ipv4Addr::new(192, 168, 1, 100));
        q.set_dst_addr(Ipv4Addr::new(8, 8, 8, 8));
        q.fill_checksum();
        assert_eq!(b, IPV4_UDP_DNS);

        // And with the builder.
        let spec = FrameSpec::udp(
            "192.168.1.100:53241".parse().unwrap(),
            "8.8.8.8:53".parse().unwrap(),
        )
        .with_ident(0x1c46)
        .with_payload(&IPV4_UDP_DNS[28..]);
        assert_eq!(spec.build_ip(), IPV4_UDP_DNS);
    }

    #[test]
    fn parse_options_fixture() {
        let p = Ipv4Packet::new_checked(&IPV4_IGMP_RA[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp_ecn(), 0xc0);
        assert_eq!(p.total_len(), 40);
        assert_eq!(p.ident(), 0);
        assert!(p.dont_frag());
        assert_eq!(p.ttl(), 1);
        assert_eq!(p.protocol(), 2);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(224, 0, 0, 22));
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload(), &IPV4_IGMP_RA[24..]);
        assert!(p.verify_checksum());

        let mut b = FrameSpec::raw(
            "192.168.1.100".parse().unwrap(),
            "224.0.0.22".parse().unwrap(),
            2,
        )
        .with_ident(0)
        .with_ttl(1)
        .with_ipv4_options(&[0x94, 0x04])
        .with_payload(&IPV4_IGMP_RA[24..])
        .build_ip();
        let mut q = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        q.set_dscp_ecn(0xc0);
        q.fill_checksum();
        assert_eq!(b, IPV4_IGMP_RA);
    }

    #[test]
    fn padding_excluded_and_fragments() {
        let mut b = IPV4_UDP_DNS.to_vec();
        b.extend_from_slice(&[0xee; 7]);
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.payload().len(), 37);
        assert_eq!(p.payload_mut().len(), 37);
        p.set_more_frags(true);
        assert!(p.is_fragment() && p.more_frags() && p.dont_frag());
        p.set_more_frags(false);
        p.set_dont_frag(false);
        p.set_frag_offset(1480);
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 1480);
        assert!(!p.more_frags() && !p.dont_frag());
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        p.set_hop_limit(3);
        p.set_next_header(6);
        p.set_checksum(0);
        assert_eq!((p.ttl(), p.protocol(), p.checksum()), (3, 6, 0));
        p.options_mut();
    }

    #[test]
    fn truncation_and_malformed() {
        for n in 0..IPV4_UDP_DNS.len() {
            assert_eq!(
                Ipv4Packet::new_checked(&IPV4_UDP_DNS[..n]).unwrap_err(),
                Error::Truncated,
                "{n}"
            );
        }
        for n in 0..24 {
            assert_eq!(
                Ipv4Packet::new_checked(&IPV4_IGMP_RA[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = IPV4_UDP_DNS;
        b[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[0] = 0x4f; // 60-byte header in a 57-byte buffer
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
        let mut b = IPV4_UDP_DNS;
        b[2] = 0;
        b[3] = 19;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        b[3] = 58;
        assert_eq!(
            Ipv4Packet::new_checked(&b[..]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn lying_setters_do_not_panic() {
        let mut b = IPV4_IGMP_RA;
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        for (hl, tl) in [(60, 0), (0, 65535), (8, 3), (60, 30)] {
            p.set_header_len(hl);
            p.set_total_len(tl);
            exercise(&p);
            p.payload_mut();
            p.options_mut();
            p.fill_checksum();
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..200),
                                       hl in any::<u8>(), tl in any::<u16>(), off in any::<u16>()) {
            if !data.is_empty() && data[0] >> 4 != 4 && hl & 1 == 0 {
                data[0] = 0x40 | (data[0] & 0x0f);
            }
            if let Ok(mut p) = Ipv4Packet::new_checked(&mut data[..]) {
                exercise(&p);
                p.payload_mut();
                p.fill_checksum();
                prop_assert!(p.verify_checksum());
                p.set_header_len(usize::from(hl));
                p.set_total_len(tl);
                p.set_frag_offset(off);
                exercise(&p);
                p.payload_mut();
                p.options_mut();
                p.fill_checksum();
            }
        }
    }
}
