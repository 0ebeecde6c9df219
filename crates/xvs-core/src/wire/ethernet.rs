//! Ethernet II frames with at most one IEEE 802.1Q tag.
//!
//! Layout: destination MAC (6), source MAC (6), EtherType (2), or with a tag:
//! destination, source, 0x8100, TCI (2), inner EtherType (2). Only one tag is
//! parsed: with stacked tags (QinQ 0x88a8, or 0x8100 inside 0x8100)
//! [`EthernetFrame::ethertype`] reports the inner tag's type, which callers
//! treat as unknown.
//!
//! Invariant: after [`EthernetFrame::check_len`] succeeds the buffer holds the
//! whole header (14 bytes, 18 when tagged), so no getter or setter panics.
//! Even without it, the tag is only honoured when the buffer is long enough
//! for it (a frame too short for its tag reports ethertype 0x8100).

use super::{Error, Result, be16, ethertype, put16};

mod field {
    use core::ops::Range;
    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const VLAN_TCI: Range<usize> = 14..16;
}

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of an Ethernet header with one 802.1Q tag.
pub const VLAN_HEADER_LEN: usize = 18;

/// A read/write view of an Ethernet II frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        EthernetFrame { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Ensure the buffer holds the whole header, including a VLAN tag.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if be16(b, field::ETHERTYPE.start) == ethertype::VLAN && b.len() < VLAN_HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// Return the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::DST]);
        a
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[field::SRC]);
        a
    }

    #[inline]
    fn tagged(&self) -> bool {
        let b = self.buffer.as_ref();
        be16(b, field::ETHERTYPE.start) == ethertype::VLAN && b.len() >= VLAN_HEADER_LEN
    }

    /// The outer EtherType (0x8100 for a tagged frame).
    #[inline]
    pub fn outer_ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// The full 802.1Q TCI (PCP, DEI, VID) when tagged.
    #[inline]
    pub fn vlan_tci(&self) -> Option<u16> {
        if self.tagged() {
            Some(be16(self.buffer.as_ref(), field::VLAN_TCI.start))
        } else {
            None
        }
    }

    /// The VLAN id (`TCI & 0x0fff`) of a single 802.1Q tag.
    #[inline]
    pub fn vlan_id(&self) -> Option<u16> {
        self.vlan_tci().map(|t| t & 0x0fff)
    }

    /// The EtherType of the payload, after an optional 802.1Q tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), self.header_len() - 2)
    }

    /// Header length: 14, or 18 with an 802.1Q tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        if self.tagged() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        }
    }

    /// The bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.header_len().min(b.len())..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Set the destination MAC address.
    #[inline]
    pub fn set_dst_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Set the source MAC address.
    #[inline]
    pub fn set_src_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    /// Set the payload EtherType (the inner one when tagged).
    #[inline]
    pub fn set_ethertype(&mut self, v: u16) {
        let at = self.header_len() - 2;
        put16(self.buffer.as_mut(), at, v);
    }

    /// Set the VLAN id of a tagged frame, keeping PCP and DEI. Does nothing on
    /// an untagged frame (use [`Self::emit_header`] to add a tag).
    #[inline]
    pub fn set_vlan_id(&mut self, id: u16) {
        if let Some(tci) = self.vlan_tci() {
            put16(
                self.buffer.as_mut(),
                field::VLAN_TCI.start,
                (tci & 0xf000) | (id & 0x0fff),
            );
        }
    }

    /// Write a complete header: addresses, an optional tag (`TCI = vlan & 0x0fff`)
    /// and the payload EtherType. Fails with `Truncated` if the buffer is too
    /// short for that header.
    pub fn emit_header(
        &mut self,
        dst: [u8; 6],
        src: [u8; 6],
        vlan: Option<u16>,
        ethertype: u16,
    ) -> Result<()> {
        let need = if vlan.is_some() {
            VLAN_HEADER_LEN
        } else {
            HEADER_LEN
        };
        let b = self.buffer.as_mut();
        if b.len() < need {
            return Err(Error::Truncated);
        }
        b[field::DST].copy_from_slice(&dst);
        b[field::SRC].copy_from_slice(&src);
        match vlan {
            Some(v) => {
                put16(b, field::ETHERTYPE.start, self::ethertype::VLAN);
                put16(b, field::VLAN_TCI.start, v & 0x0fff);
                put16(b, 16, ethertype);
            }
            None => put16(b, field::ETHERTYPE.start, ethertype),
        }
        Ok(())
    }

    /// The bytes after the header, mutable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let b = self.buffer.as_mut();
        let start = start.min(b.len());
        &mut b[start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Broadcast ARP request, 192.168.1.1 asking for 192.168.1.2 (padded to 60).
    const ARP_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0x08, 0x06, //
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0xc0,
        0xa8, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x01, 0x02,
    ];

    /// 802.1Q VLAN 100 (PCP 0) frame carrying the first bytes of an IPv4 header.
    const VLAN_FRAME: [u8; 22] = [
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x02, 0x42, 0xac, 0x11, 0x00, 0x02, 0x81, 0x00, 0x00,
        0x64, 0x08, 0x00, 0x45, 0x00, 0x00, 0x54,
    ];

    #[test]
    fn parse_untagged() {
        let f = EthernetFrame::new_checked(&ARP_FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [0xff; 6]);
        assert_eq!(f.src_addr(), [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.vlan_tci(), None);
        assert_eq!(f.ethertype(), ethertype::ARP);
        assert_eq!(f.outer_ethertype(), ethertype::ARP);
        assert_eq!(f.header_len(), 14);
        assert_eq!(f.payload(), &ARP_FRAME[14..]);

        let mut b = [0u8; 42];
        b[14..].copy_from_slice(&ARP_FRAME[14..]);
        let mut g = EthernetFrame::new_unchecked(&mut b[..]);
        g.set_dst_addr([0xff; 6]);
        g.set_src_addr([0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
        g.set_ethertype(ethertype::ARP);
        assert_eq!(b, ARP_FRAME);

        let mut c = [0u8; 42];
        let mut g = EthernetFrame::new_unchecked(&mut c[..]);
        g.emit_header(
            [0xff; 6],
            [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e],
            None,
            ethertype::ARP,
        )
        .unwrap();
        g.payload_mut().copy_from_slice(&ARP_FRAME[14..]);
        assert_eq!(c, ARP_FRAME);
    }

    #[test]
    fn parse_tagged() {
        let f = EthernetFrame::new_checked(&VLAN_FRAME[..]).unwrap();
        assert_eq!(f.dst_addr(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(f.src_addr(), [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_eq!(f.vlan_id(), Some(100));
        assert_eq!(f.outer_ethertype(), ethertype::VLAN);
        assert_eq!(f.ethertype(), ethertype::IPV4);
        assert_eq!(f.header_len(), 18);
        assert_eq!(f.payload(), &[0x45, 0x00, 0x00, 0x54]);

        let mut b = [0u8; 22];
        let mut g = EthernetFrame::new_unchecked(&mut b[..]);
        g.emit_header(f.dst_addr(), f.src_addr(), Some(100), ethertype::IPV4)
            .unwrap();
        g.payload_mut().copy_from_slice(&[0x45, 0x00, 0x00, 0x54]);
        assert_eq!(b, VLAN_FRAME);
        let mut g = EthernetFrame::new_unchecked(&mut b[..]);
        g.set_vlan_id(0xfff7);
        assert_eq!(g.vlan_id(), Some(0x0ff7));
    }

    #[test]
    fn qinq_reports_inner_tag() {
        let mut b = VLAN_FRAME;
        b[12] = 0x88;
        b[13] = 0xa8;
        b[16] = 0x81;
        b[17] = 0x00;
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.vlan_id(), None);
        assert_eq!(f.ethertype(), 0x88a8);
        let mut b = VLAN_FRAME;
        b[16] = 0x81;
        b[17] = 0x00;
        let f = EthernetFrame::new_checked(&b[..]).unwrap();
        assert_eq!(f.ethertype(), ethertype::VLAN);
    }

    #[test]
    fn truncation() {
        for n in 0..14 {
            assert_eq!(
                EthernetFrame::new_checked(&ARP_FRAME[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        assert!(EthernetFrame::new_checked(&ARP_FRAME[..14]).is_ok());
        for n in 0..18 {
            assert_eq!(
                EthernetFrame::new_checked(&VLAN_FRAME[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let f = EthernetFrame::new_checked(&VLAN_FRAME[..18]).unwrap();
        assert!(f.payload().is_empty());
        // Too short for the tag: unchecked view still does not panic.
        let f = EthernetFrame::new_unchecked(&VLAN_FRAME[..15]);
        assert_eq!(f.ethertype(), ethertype::VLAN);
        assert_eq!(f.header_len(), 14);
        let mut small = [0u8; 14];
        let mut g = EthernetFrame::new_unchecked(&mut small[..]);
        assert_eq!(
            g.emit_header([0; 6], [0; 6], Some(1), 0x0800),
            Err(Error::Truncated)
        );
    }
}
