//! ARP packets for Ethernet/IPv4 (RFC 826).
//!
//! Layout (28 bytes): hardware type (2), protocol type (2), hardware length
//! (1), protocol length (1), operation (2), sender MAC (6), sender IPv4 (4),
//! target MAC (6), target IPv4 (4).
//!
//! Invariant: [`ArpPacket::check_len`] accepts only buffers of at least 28
//! bytes whose hardware length is 6 and protocol length is 4; all accessors use
//! fixed offsets inside those 28 bytes, so none panics afterwards.

use std::net::Ipv4Addr;

use super::{Error, Result, be16, put16};

mod field {
    use core::ops::Range;
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type for Ethernet.
pub const HARDWARE_ETHERNET: u16 = 1;

/// ARP operations.
pub mod operation {
    pub const REQUEST: u16 = 1;
    pub const REPLY: u16 = 2;
}

/// A read/write view of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Wrap a buffer without validation.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    /// Wrap a buffer and validate it with [`Self::check_len`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// At least 28 bytes (`Truncated`), hlen 6 and plen 4 (`Malformed`).
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < PACKET_LEN {
            return Err(Error::Truncated);
        }
        if b[field::HLEN] != 6 || b[field::PLEN] != 4 {
            return Err(Error::Malformed);
        }
        Ok(())
    }

    /// Return the underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    #[inline]
    pub fn hardware_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::HTYPE.start)
    }

    #[inline]
    pub fn protocol_type(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PTYPE.start)
    }

    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    #[inline]
    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER.start)
    }

    #[inline]
    fn mac(&self, r: core::ops::Range<usize>) -> [u8; 6] {
        let mut a = [0; 6];
        a.copy_from_slice(&self.buffer.as_ref()[r]);
        a
    }

    #[inline]
    fn ip(&self, r: core::ops::Range<usize>) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[r];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    #[inline]
    pub fn sender_hw_addr(&self) -> [u8; 6] {
        self.mac(field::SHA)
    }

    #[inline]
    pub fn sender_proto_addr(&self) -> Ipv4Addr {
        self.ip(field::SPA)
    }

    #[inline]
    pub fn target_hw_addr(&self) -> [u8; 6] {
        self.mac(field::THA)
    }

    #[inline]
    pub fn target_proto_addr(&self) -> Ipv4Addr {
        self.ip(field::TPA)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    #[inline]
    pub fn set_hardware_type(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::HTYPE.start, v);
    }

    #[inline]
    pub fn set_protocol_type(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::PTYPE.start, v);
    }

    #[inline]
    pub fn set_hardware_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::HLEN] = v;
    }

    #[inline]
    pub fn set_protocol_len(&mut self, v: u8) {
        self.buffer.as_mut()[field::PLEN] = v;
    }

    #[inline]
    pub fn set_operation(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::OPER.start, v);
    }

    #[inline]
    pub fn set_sender_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&a);
    }

    #[inline]
    pub fn set_sender_proto_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&a.octets());
    }

    #[inline]
    pub fn set_target_hw_addr(&mut self, a: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&a);
    }

    #[inline]
    pub fn set_target_proto_addr(&mut self, a: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&a.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ARP reply: 192.168.1.2 is at 52:54:00:ab:cd:ef, to 192.168.1.1.
    const REPLY: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef, 0xc0,
        0xa8, 0x01, 0x02, 0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e, 0xc0, 0xa8, 0x01, 0x01,
    ];

    #[test]
    fn parse_and_emit() {
        let p = ArpPacket::new_checked(&REPLY[..]).unwrap();
        assert_eq!(p.hardware_type(), HARDWARE_ETHERNET);
        assert_eq!(p.protocol_type(), 0x0800);
        assert_eq!(p.hardware_len(), 6);
        assert_eq!(p.protocol_len(), 4);
        assert_eq!(p.operation(), operation::REPLY);
        assert_eq!(p.sender_hw_addr(), [0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        assert_eq!(p.sender_proto_addr(), Ipv4Addr::new(192, 168, 1, 2));
        assert_eq!(p.target_hw_addr(), [0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
        assert_eq!(p.target_proto_addr(), Ipv4Addr::new(192, 168, 1, 1));

        let mut b = [0u8; 28];
        let mut q = ArpPacket::new_unchecked(&mut b[..]);
        q.set_hardware_type(HARDWARE_ETHERNET);
        q.set_protocol_type(0x0800);
        q.set_hardware_len(6);
        q.set_protocol_len(4);
        q.set_operation(operation::REPLY);
        q.set_sender_hw_addr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        q.set_sender_proto_addr(Ipv4Addr::new(192, 168, 1, 2));
        q.set_target_hw_addr([0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e]);
        q.set_target_proto_addr(Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(q.into_inner(), &REPLY[..]);
    }

    #[test]
    fn truncation_and_malformed() {
        for n in 0..28 {
            assert_eq!(
                ArpPacket::new_checked(&REPLY[..n]).unwrap_err(),
                Error::Truncated
            );
        }
        let mut b = REPLY;
        b[4] = 16;
        assert_eq!(
            ArpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        let mut b = REPLY;
        b[5] = 16;
        assert_eq!(
            ArpPacket::new_checked(&b[..]).unwrap_err(),
            Error::Malformed
        );
        // Trailing Ethernet padding is fine.
        let mut padded = [0u8; 46];
        padded[..28].copy_from_slice(&REPLY);
        assert!(ArpPacket::new_checked(&padded[..]).is_ok());
    }
}
