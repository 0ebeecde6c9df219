//! The generator's template frame and the payload layout both programs share.
//!
//! Frames are Ethernet / IPv4 (20-byte header, DF, no options) / UDP or TCP
//! (20-byte header, SYN). Their L4 payload starts with a marker:
//!
//! | payload offset | bytes | content |
//! |---|---|---|
//! | 0 | 2 | [`MAGIC`] `"XV"` |
//! | 2 | 8 | send timestamp, `bpf_ktime_get_ns()` (CLOCK_MONOTONIC), host byte order |
//! | 10 | … | zero padding up to the frame size |
//!
//! so the smallest frame is 52 bytes for UDP and 64 for TCP (lengths without
//! the FCS). The marker is deliberately short so that a 64-byte TCP SYN still
//! carries it; the sink also requires IPv4 with IHL 5, no fragment, and the
//! protocol, so a false positive needs a frame shaped exactly like ours.
//!
//! UDP frames carry checksum 0 ("none", legal for IPv4): the generator
//! rewrites the source port and the timestamp per packet without touching it.
//! TCP frames start with a correct checksum that the generator updates
//! incrementally (RFC 1624) for each rewrite.

use std::net::{Ipv4Addr, SocketAddr};

use xvs_core::wire::build::FrameSpec;
use xvs_core::wire::tcp_flags;

/// The payload marker, first two payload bytes.
pub const MAGIC: [u8; 2] = *b"XV";
/// Marker plus timestamp.
pub const MARKER_LEN: usize = 10;
/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// IPv4 header length (no options).
pub const IPV4_LEN: usize = 20;
/// Offset of the L4 header in a frame.
pub const L4_OFFSET: usize = ETH_LEN + IPV4_LEN;
/// Offset of a TCP frame's checksum.
pub const TCP_CHECKSUM_OFFSET: usize = L4_OFFSET + 16;
/// The largest frame: a 1500-byte MTU plus the Ethernet header.
pub const MAX_FRAME_LEN: usize = 1514;

/// The L4 protocol of the generated frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// UDP, checksum 0.
    Udp,
    /// TCP SYN, checksum updated incrementally.
    Tcp,
}

impl Proto {
    /// The L4 header length.
    pub const fn l4_len(self) -> usize {
        match self {
            Proto::Udp => 8,
            Proto::Tcp => 20,
        }
    }

    /// Offset of the L4 payload (the marker) in a frame.
    pub const fn payload_offset(self) -> usize {
        L4_OFFSET + self.l4_len()
    }

    /// Offset of the timestamp in a frame.
    pub const fn timestamp_offset(self) -> usize {
        self.payload_offset() + MAGIC.len()
    }

    /// The smallest frame that carries the marker.
    pub const fn min_frame_len(self) -> usize {
        self.payload_offset() + MARKER_LEN
    }

    /// The IP protocol number.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Udp => 17,
            Proto::Tcp => 6,
        }
    }
}

impl std::str::FromStr for Proto {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "udp" => Ok(Proto::Udp),
            "tcp" => Ok(Proto::Tcp),
            _ => Err(FrameError::Proto(s.to_owned())),
        }
    }
}

/// Errors building a template.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame size is outside `min_frame_len ..= MAX_FRAME_LEN`.
    #[error("frame size {size} out of range {min}..={max} for {proto:?}")]
    Size {
        /// The size asked for.
        size: usize,
        /// The protocol's minimum.
        min: usize,
        /// [`MAX_FRAME_LEN`].
        max: usize,
        /// The protocol.
        proto: Proto,
    },
    /// Not `udp` or `tcp`.
    #[error("unknown protocol {0:?} (udp or tcp)")]
    Proto(String),
}

/// What the template frame looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSpec {
    /// UDP or TCP SYN.
    pub proto: Proto,
    /// Source MAC (the generator's interface).
    pub src_mac: [u8; 6],
    /// Destination MAC (the next hop: the director or the sink).
    pub dst_mac: [u8; 6],
    /// Source address (the "client").
    pub src: Ipv4Addr,
    /// Destination address (the VIP, or the sink).
    pub dst: Ipv4Addr,
    /// The source port of flow 0; flow `i` uses `base_src_port + i`.
    pub base_src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Frame length without FCS (64 is the classic minimum frame).
    pub frame_len: usize,
}

impl TemplateSpec {
    /// The template frame: marker in place, timestamp zero.
    pub fn build(&self) -> Result<Vec<u8>, FrameError> {
        let min = self.proto.min_frame_len();
        if !(min..=MAX_FRAME_LEN).contains(&self.frame_len) {
            return Err(FrameError::Size {
                size: self.frame_len,
                min,
                max: MAX_FRAME_LEN,
                proto: self.proto,
            });
        }
        let mut payload = vec![0u8; self.frame_len - self.proto.payload_offset()];
        payload[..MAGIC.len()].copy_from_slice(&MAGIC);
        let src = SocketAddr::from((self.src, self.base_src_port));
        let dst = SocketAddr::from((self.dst, self.dst_port));
        let spec = match self.proto {
            Proto::Udp => FrameSpec::udp(src, dst),
            Proto::Tcp => FrameSpec::tcp(src, dst, tcp_flags::SYN),
        };
        let mut frame = spec
            .with_macs(self.src_mac, self.dst_mac)
            .with_payload(&payload)
            .build();
        if self.proto == Proto::Udp {
            // Checksum 0: none (RFC 768), so per-packet rewrites need no fix-up.
            frame[L4_OFFSET + 6..L4_OFFSET + 8].fill(0);
        }
        debug_assert_eq!(frame.len(), self.frame_len);
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_core::wire::{EthernetFrame, Ipv4Packet, TcpPacket, UdpPacket};

    fn spec(proto: Proto, frame_len: usize) -> TemplateSpec {
        TemplateSpec {
            proto,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: Ipv4Addr::new(198, 18, 0, 1),
            dst: Ipv4Addr::new(198, 18, 1, 1),
            base_src_port: 10000,
            dst_port: 80,
            frame_len,
        }
    }

    #[test]
    fn udp_template_has_marker_and_no_checksum() {
        let f = spec(Proto::Udp, 64).build().unwrap();
        assert_eq!(f.len(), 64);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert_eq!(ip.header_len(), 20);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.src_port(), 10000);
        assert_eq!(udp.checksum(), 0);
        assert_eq!(&f[Proto::Udp.payload_offset()..][..2], b"XV");
        assert_eq!(Proto::Udp.timestamp_offset(), 44);
    }

    #[test]
    fn tcp_template_is_a_64_byte_syn() {
        let f = spec(Proto::Tcp, 64).build().unwrap();
        assert_eq!(f.len(), 64);
        let eth = EthernetFrame::new_checked(&f[..]).unwrap();
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.src_port(), 10000);
        assert_ne!(tcp.checksum(), 0);
        assert_eq!(&f[54..56], b"XV");
        assert_eq!(Proto::Tcp.timestamp_offset(), 56);
    }

    #[test]
    fn sizes_are_checked() {
        assert!(spec(Proto::Tcp, 63).build().is_err());
        assert!(spec(Proto::Udp, 51).build().is_err());
        assert!(spec(Proto::Udp, 52).build().is_ok());
        assert!(spec(Proto::Udp, 1514).build().is_ok());
        assert!(spec(Proto::Udp, 1515).build().is_err());
    }
}
