//! Fixed-size address form used by the tables: 16 bytes plus a family flag.
//! Layer: pure core. IPv4 addresses occupy the first 4 bytes, the rest are zero, so
//! equal addresses have equal bytes whatever the family; the family is stored beside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// 16 address bytes (IPv4 in the first four).
pub type AddrBytes = [u8; 16];

/// The table form of an address.
#[inline]
pub fn to_bytes(ip: IpAddr) -> AddrBytes {
    match ip {
        IpAddr::V4(v4) => v4_bytes(v4.octets()),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The table form of IPv4 octets.
#[inline]
pub fn v4_bytes(o: [u8; 4]) -> AddrBytes {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&o);
    b
}

/// The first four bytes (an IPv4 address).
#[inline]
pub fn v4_octets(b: &AddrBytes) -> [u8; 4] {
    [b[0], b[1], b[2], b[3]]
}

/// Back to an [`IpAddr`].
#[inline]
pub fn from_bytes(b: &AddrBytes, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*b))
    } else {
        IpAddr::V4(Ipv4Addr::from(v4_octets(b)))
    }
}

/// `b` with every bit after the first `prefix` bits cleared (`prefix` ≤ 32 for IPv4,
/// ≤ 128 for IPv6; larger values keep everything).
#[inline]
pub fn mask(b: &AddrBytes, v6: bool, prefix: u8) -> AddrBytes {
    let bits = u128::from_be_bytes(*b);
    let width: u32 = if v6 { 128 } else { 32 };
    let prefix = u32::from(prefix).min(width);
    // IPv4 lives in the top 32 bits of the u128 view.
    let keep = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (bits & keep).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mask() {
        let v4: IpAddr = "198.18.3.77".parse().unwrap();
        let b = to_bytes(v4);
        assert_eq!(from_bytes(&b, false), v4);
        assert_eq!(
            from_bytes(&mask(&b, false, 24), false),
            "198.18.3.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            from_bytes(&mask(&b, false, 0), false),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(mask(&b, false, 32), b);
        let v6: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let b6 = to_bytes(v6);
        assert_eq!(from_bytes(&b6, true), v6);
        assert_eq!(
            from_bytes(&mask(&b6, true, 48), true),
            "2001:db8:1::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(mask(&b6, true, 200), b6);
    }
}
