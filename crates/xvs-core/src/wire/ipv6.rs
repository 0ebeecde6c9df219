//! IPv6 headers (RFC 8200) and the extension-header walker.
//!
//! Layout: version/traffic class/flow label (4), payload length (2), next
//! header (1), hop limit (1), source (16), destination (16), payload.
//!
//! Invariants after [`Ipv6Packet::check_len`]: the buffer holds the 40-byte
//! header, version is 6 and `40 + payload_len <= buffer.len()`; bytes after
//! that (Ethernet padding) are not payload. Variable-length accessors clamp to
//! the buffer, so no getter, setter or [`Ipv6Packet::walk_to_l4`] panics.
//! Jumbograms (payload length 0 with a Jumbo option) are not supported: the
//! payload is then empty.

use std::net::Ipv6Addr;

use super::{Error, Result, be16, be32, ip_proto, put16, put32};

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    pub const PAYLOAD_LEN: Range<usize> = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC: Range<usize> = 8..24;
    pub const DST: Range<usize> = 24..40;
}

/// Length of the fixed IPv6 header.
pub const HEADER_LEN: usize = 40;
/// Maximum number of extension headers [`Ipv6Packet::walk_to_l4`] follows.
pub const MAX_EXT_HEADERS: usize = 8;

/// Fragment header information found by [`Ipv6Packet::walk_to_l4`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Frag {
    /// Identification.
    pub ident: u32,
    /// Fragment offset in bytes.
    pub offset: u16,
    /// M flag (more fragments).
    pub more: bool,
    /// Offset of the Fragment header from the start of the IPv6 header.
    pub header_offset: usize,
}

/// Result of walking the extension-header chain.
///
/// When `frag` is a non-first fragment (`offset != 0`) the walk stops right
/// after the Fragment header: `protocol` is the Fragment header's next-header
/// value and `offset` points at fragment data, not at an L4 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6L4 {
    /// The first non-extension next-header value (ESP and No Next Header are
    /// reported as-is).
    pub protocol: u8,
    /// Offset from the start of the IPv6 header to the L4 header.
    pub offset: usize,
    /// The Fragment header, if one was crossed.
    pub frag: Option<Ipv6Frag>,
}

/// Walk the extension headers of the IPv6 packet at the start of `buf`,
/// looking only at bytes before `end` (`end <= buf.len()`, `>= 40`).
pub(crate) fn walk(buf: &[u8], end: usize) -> Result<Ipv6L4> {
    let end = end.min(buf.len());
    let mut nh = buf[field::NXT_HDR];
    let mut off = HEADER_LEN;
    let mut frag = None;
    for count in 0..=MAX_EXT_HEADERS {
        let is_ext = matches!(
            nh,
            ip_proto::IPV6_HOPOPTS
                | ip_proto::IPV6_ROUTING
                | ip_proto::IPV6_DSTOPTS
                | ip_proto::AH
                | ip_proto::IPV6_FRAGMENT
        );
        if !is_ext {
            return Ok(Ipv6L4 {
                protocol: nh,
                offset: off,
                frag,
            });
        }
        if count == MAX_EXT_HEADERS {
            break;
        }
        let len = match nh {
            ip_proto::IPV6_FRAGMENT => {
                if frag.is_some() {
                    return Err(Error::Malformed);
                }
                if off + 8 > end {
                    return Err(Error::Truncated);
                }
                let fo = be16(buf, off + 2);
                let f = Ipv6Frag {
                    ident: be32(buf, off + 4),
                    offset: fo & 0xfff8,
                    more: fo & 1 != 0,
                    header_offset: off,
                };
                frag = Some(f);
                if f.offset != 0 {
                    // Non-first fragment: what follows is not a header.
                    return Ok(Ipv6L4 {
                        protocol: buf[off],
                        offset: off + 8,
                        frag,
                    });
                }
                8
            }
            _ => {
                if nh == ip_proto::IPV6_HOPOPTS && off != HEADER_LEN {
                    return Err(Error::Malformed);
                }
                if off + 2 > end {
                    return Err(Error::Truncated);
                }
                let l = usize::from(buf[off + 1]);
                if nh == ip_proto::AH {
                    (l + 2) * 4
                } else {
                    (l + 1) * 8
                }
            }
        };
        if off + len > end {
            return Err(Error::Truncated);
        }
        nh = buf[off];
        off += len;
    }
    Err(Error::Malformed)
}

/// A read/write view of an IPv6 packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate: buffer >= 40 (`Truncated`), version 6 (`Malformed`),
    /// 40 + payload_len <= buffer (`Truncated`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if self.version() != 6 {
            return Err(Error::Malformed);
        }
        if HEADER_LEN + usize::from(self.payload_len()) > b.len() {
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
        self.buffer.as_ref()[0] >> 4
    }

    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be16(self.buffer.as_ref(), 0) >> 4) as u8
    }

    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW.start) & 0x000f_ffff
    }

    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PAYLOAD_LEN.start)
    }

    #[inline]
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }

    #[inline]
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }

    #[inline]
    pub fn src_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        Ipv6Addr::from(a)
    }

    #[inline]
    pub fn dst_addr(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        Ipv6Addr::from(a)
    }

    /// End of the payload (`40 + payload_len`), clamped to the buffer.
    #[inline]
    fn end(&self) -> usize {
        let len = self.buffer.as_ref().len();
        (HEADER_LEN + usize::from(self.payload_len())).min(len)
    }

    /// The payload (`40..40 + payload_len`), extension headers included.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let e = self.end();
        &self.buffer.as_ref()[HEADER_LEN.min(e)..e]
    }

    /// Walk Hop-by-Hop, Routing, Destination Options, Fragment and AH headers
    /// to the first other header, never past `payload_len`, following at most
    /// [`MAX_EXT_HEADERS`] headers.
    ///
    /// Errors: `Truncated` if a header runs past the payload, `Malformed` for
    /// Hop-by-Hop not first, two Fragment headers, or too many headers.
    #[inline]
    pub fn walk_to_l4(&self) -> Result<Ipv6L4> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        walk(b, self.end())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    #[inline]
    pub fn set_version(&mut self, v: u8) {
        let b = &mut self.buffer.as_mut()[0];
        *b = (*b & 0x0f) | (v << 4);
    }

    #[inline]
    pub fn set_traffic_class(&mut self, v: u8) {
        let b = self.buffer.as_mut();
        let w = (be16(b, 0) & 0xf00f) | (u16::from(v) << 4);
        put16(b, 0, w);
    }

    #[inline]
    pub fn set_flow_label(&mut self, v: u32) {
        let b = self.buffer.as_mut();
        let w = (be32(b, 0) & 0xfff0_0000) | (v & 0x000f_ffff);
        put32(b, 0, w);
    }

    #[inline]
    pub fn set_payload_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PAYLOAD_LEN.start, v);
    }

    #[inline]
    pub fn set_next_header(&mut self, v: u8) {
        self.buffer.as_mut()[field::NXT_HDR] = v;
    }

    #[inline]
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::HOP_LIMIT] = v;
    }

    #[inline]
    pub fn set_src_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_dst_addr(&mut self, a: Ipv6Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a.octets());
    }

    /// The payload, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let e = self.end();
        &mut self.buffer.as_mut()[HEADER_LEN.min(e)..e]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build::FrameSpec;
    use proptest::prelude::*;

    /// TCP SYN (MSS 1440) 2001:db8::1:50000 -> 2001:db8::2:443, TC 0x28, flow 0x12345.
    const IPV6_TCP_SYN: [u8; 64] = [
        0x62, 0x81, 0x23, 0x45, 0x00, 0x18, 0x06, 0x40, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc3, 0x50, 0x01, 0xbb, 0xa1,
        0xb2, 0xc3, 0xd4, 0x00, 0x00, 0x00, 0x00, 0x60, 0x02, 0xff, 0xff, 0x12, 0x33, 0x00, 0x00,
        0x02, 0x04, 0x05, 0xa0,
    ];

    /// mDNS UDP first fragment fe80::1 -> ff02::fb behind Hop-by-Hop (router alert) and Fragment headers.
    const IPV6_HBH_FRAG_UDP: [u8; 69] = [
        0x60, 0x00, 0x00, 0x00, 0x00, 0x1d, 0x00, 0x01, 0xfe, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfb, 0x2c, 0x00, 0x05, 0x02, 0x00,
        0x00, 0x01, 0x00, 0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x14, 0xe9, 0x14, 0xe9,
        0x00, 0x0d, 0x93, 0xb0, 0x68, 0x65, 0x6c, 0x6c, 0x6f,
    ];

    fn exercise<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) {
        let _ = (
            p.version(),
            p.traffic_class(),
            p.flow_label(),
            p.payload_len(),
        );
        let _ = (
            p.next_header(),
            p.hop_limit(),
            p.src_addr(),
            p.dst_addr(),
            p.payload(),
        );
        let _ = p.walk_to_l4();
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    #[test]
    fn parse_tcp_fixture() {
        let p = Ipv6Packet::new_checked(&IPV6_TCP_SYN[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x28);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 24);
        assert_eq!(p.next_header(), ip_proto::TCP);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src_addr(), a("2001:db8::1"));
        assert_eq!(p.dst_addr(), a("2001:db8::2"));
        assert_eq!(p.payload(), &IPV6_TCP_SYN[40..]);
        assert_eq!(
            p.walk_to_l4().unwrap(),
            Ipv6L4 {
                protocol: ip_proto::TCP,
                offset: 40,
                frag: None
            }
        );

        let mut b = [0u8; 64];
        let mut q = Ipv6Packet::new_unchecked(&mut b[..]);
        q.set_version(6);
        q.set_traffic_class(0x28);
        q.set_flow_label(0x12345);
        q.set_payload_len(24);
        q.set_next_header(ip_proto::TCP);
        q.set_hop_limit(64);
        q.set_src_addr(a("2001:db8::1"));
        q.set_dst_addr(a("2001:db8::2"));
        q.payload_mut().copy_from_slice(&IPV6_TCP_SYN[40..]);
        assert_eq!(b, IPV6_TCP_SYN);
    }

    #[test]
    fn parse_ext_fixture() {
        let p = Ipv6Packet::new_checked(&IPV6_HBH_FRAG_UDP[..]).unwrap();
        assert_eq!(p.next_header(), ip_proto::IPV6_HOPOPTS);
        assert_eq!(p.hop_limit(), 1);
        assert_eq!(p.payload_len(), 29);
        assert_eq!(p.traffic_class(), 0);
        assert_eq!(p.flow_label(), 0);
        let l4 = p.walk_to_l4().unwrap();
        assert_eq!(
            l4,
            Ipv6L4 {
                protocol: ip_proto::UDP,
                offset: 56,
                frag: Some(Ipv6Frag {
                    ident: 0xdeadbeef,
                    offset: 0,
                    more: true,
                    header_offset: 48
                })
            }
        );
        let spec = FrameSpec::udp(
            "[fe80::1]:5353".parse().unwrap(),
            "[ff02::fb]:5353".parse().unwrap(),
        )
        .with_ttl(1)
        .with_ipv6_ext(ip_proto::IPV6_HOPOPTS, &[5, 2, 0, 0, 1, 0])
        .with_ipv6_ext(ip_proto::IPV6_FRAGMENT, &[0, 1, 0xde, 0xad, 0xbe, 0xef])
        .with_payload(b"hello");
        assert_eq!(spec.build_ip(), IPV6_HBH_FRAG_UDP);
    }

    #[test]
    fn walker_cases() {
        let base = FrameSpec::tcp(
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
            2,
        );
        // Routing + DstOpts + AH.
        let b = base
            .clone()
            .with_ipv6_ext(ip_proto::IPV6_ROUTING, &[4, 0, 0, 0, 0, 0])
            .with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[0; 14])
            .with_ipv6_ext(ip_proto::AH, &[0; 18])
            .build_ip();
        let l4 = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .walk_to_l4()
            .unwrap();
        assert_eq!(
            (l4.protocol, l4.offset, l4.frag),
            (ip_proto::TCP, 40 + 8 + 16 + 24, None)
        );
        // Later fragment: stop after the Fragment header.
        let b = base
            .clone()
            .with_ipv6_ext(ip_proto::IPV6_FRAGMENT, &[0x05, 0x00, 0, 0, 0, 9])
            .build_ip();
        let l4 = Ipv6Packet::new_checked(&b[..])
            .unwrap()
            .walk_to_l4()
            .unwrap();
        assert_eq!(l4.offset, 48);
        assert_eq!(
            l4.frag,
            Some(Ipv6Frag {
                ident: 9,
                offset: 0x500,
                more: false,
                header_offset: 40
            })
        );
        // ESP and No Next Header reported as-is.
        for proto in [ip_proto::ESP, ip_proto::IPV6_NONXT] {
            let b = FrameSpec::raw(a("::1").into(), a("::2").into(), proto)
                .with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[0; 6])
                .build_ip();
            let l4 = Ipv6Packet::new_checked(&b[..])
                .unwrap()
                .walk_to_l4()
                .unwrap();
            assert_eq!((l4.protocol, l4.offset), (proto, 48));
        }
        // 8 extension headers are fine, 9 are not.
        let mut s = base.clone();
        for _ in 0..8 {
            s = s.with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[]);
        }
        let b = s.clone().build_ip();
        assert_eq!(
            Ipv6Packet::new_checked(&b[..])
                .unwrap()
                .walk_to_l4()
                .unwrap()
                .offset,
            40 + 64
        );
        let b = s.with_ipv6_ext(ip_proto::IPV6_DSTOPTS, &[]).build_ip();
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().walk_to_l4(),
            Err(Error::Malformed)
        );
        // Hop-by-Hop not first, two Fragment headers.
        let b = base
            .clone()
            .with_ipv6_ext(60, &[])
            .with_ipv6_ext(0, &[])
            .build_ip();
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().walk_to_l4(),
            Err(Error::Malformed)
        );
        let b = base
            .clone()
            .with_ipv6_ext(44, &[])
            .with_ipv6_ext(44, &[])
            .build_ip();
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().walk_to_l4(),
            Err(Error::Malformed)
        );
        // A header running past payload_len.
        let mut b = base.with_ipv6_ext(60, &[0; 14]).build_ip();
        b[41] = 7;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().walk_to_l4(),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn truncation() {
        for n in 0..IPV6_TCP_SYN.len() {
            assert_eq!(
                Ipv6Packet::new_checked(&IPV6_TCP_SYN[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        // Cut the payload_len inside the extension headers.
        let mut b = IPV6_HBH_FRAG_UDP;
        b[5] = 12;
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 12);
        assert_eq!(p.walk_to_l4(), Err(Error::Truncated));
        b[5] = 1;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap().walk_to_l4(),
            Err(Error::Truncated)
        );
        let mut b = IPV6_TCP_SYN;
        b[0] = 0x45;
        assert_eq!(
            Ipv6Packet::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..200),
                                       plen in any::<u16>(), fix in any::<bool>()) {
            if fix && !data.is_empty() {
                data[0] = 0x60 | (data[0] & 0x0f);
                if data.len() >= 40 {
                    let pl = ((data.len() - 40) as u16).min(plen);
                    data[4..6].copy_from_slice(&pl.to_be_bytes());
                }
            }
            if let Ok(mut p) = Ipv6Packet::new_checked(&mut data[..]) {
                exercise(&p);
                p.set_payload_len(plen);
                exercise(&p);
                p.payload_mut();
            }
        }
    }
}
