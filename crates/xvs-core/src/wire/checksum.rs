//! Internet checksum (RFC 1071) and incremental update (RFC 1624).
//!
//! All running sums are `u32` values that are *congruent modulo 0xffff* to the
//! one's-complement sum of the big-endian 16-bit words of the data; only
//! [`fold`] turns such a running sum into the final 16-bit value. Running sums
//! of separately summed pieces may be added with [`combine`] as long as every
//! piece except the last has an even length (an odd piece is padded with a
//! zero byte, which would misalign the next one).
//!
//! # CHECKSUM_PARTIAL
//! Frames coming from veth/virtio with transmit checksum offload carry, in the
//! TCP/UDP checksum field, the *non-complemented* folded pseudo-header sum and
//! expect the device to finish the job. [`is_partial_v4`]/[`is_partial_v6`]
//! detect that form. When it is detected the director recomputes the full
//! checksum (e.g. with [`tcp_udp_checksum_v4`]); that is also correct in the
//! 1-in-65536 case where a complete, valid checksum happens to equal the
//! pseudo-header value, because recomputing a correct checksum yields the
//! same value.
//!
//! Nothing here allocates or panics.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ip_proto;

/// One's-complement running sum of `data` as big-endian 16-bit words; an odd
/// trailing byte is padded with a zero byte. Processes 8 bytes at a time.
#[inline]
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        // Sum as two 32-bit words; 2^32 == 1 (mod 0xffff) so this is
        // congruent to the 16-bit word sum. Cannot overflow before 2^31 chunks.
        acc += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc += u64::from(u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let Some(&b) = rest.first() {
        acc += u64::from(b) << 8;
    }
    fold64(acc)
}

#[inline]
fn fold64(mut acc: u64) -> u32 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc as u32
}

/// Fold a running sum into 16 bits (end-around carry). Not complemented.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = (sum & 0xffff) + (sum >> 16);
    let s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The Internet checksum of `data`: `!fold(sum(data))`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Add two running sums (end-around carry).
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    let (s, c) = a.overflowing_add(b);
    s + u32::from(c)
}

/// Running sum of the IPv4 pseudo-header (RFC 793/768): source, destination,
/// zero, protocol, L4 length.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u32 {
    let acc = u64::from(src.to_bits())
        + u64::from(dst.to_bits())
        + u64::from(protocol)
        + u64::from(length);
    fold64(acc)
}

/// Running sum of the IPv6 pseudo-header (RFC 8200 §8.1): source,
/// destination, 32-bit upper-layer length, 24 zero bits, next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, protocol: u8, length: u32) -> u32 {
    const LO: u128 = u64::MAX as u128;
    let (s, d) = (src.to_bits(), dst.to_bits());
    // Four 64-bit halves plus two small terms: < 2^67, no overflow.
    let mut acc =
        (s >> 64) + (s & LO) + (d >> 64) + (d & LO) + u128::from(protocol) + u128::from(length);
    // 2^64 == 1 (mod 0xffff): fold twice into 64 bits.
    acc = (acc & LO) + (acc >> 64);
    acc = (acc & LO) + (acc >> 64);
    fold64(acc as u64)
}

/// Incremental update of checksum `check` when a 16-bit word changes from
/// `old` to `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// For UDP, callers must leave a zero checksum (no checksum, IPv4 only)
/// untouched and map a result of 0 to 0xffff; see [`update_bytes_udp`].
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let s = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(s)
}

/// Incremental update of checksum `check` when the bytes `old` are replaced
/// by `new` at the same (even) offset. Intended for equal, even lengths:
/// 4 bytes for IPv4 addresses, 16 for IPv6 addresses, 2 for ports. Never
/// panics; odd lengths are padded as in [`sum`].
#[inline]
pub fn update_bytes(check: u16, old: &[u8], new: &[u8]) -> u16 {
    let s = combine(u32::from(!check), u32::from(!fold(sum(old))));
    !fold(combine(s, sum(new)))
}

/// [`update_bytes`] with UDP semantics: a zero checksum (IPv4 "no checksum")
/// stays zero, and a computed zero is transmitted as 0xffff.
#[inline]
pub fn update_bytes_udp(check: u16, old: &[u8], new: &[u8]) -> u16 {
    if check == 0 {
        return 0;
    }
    match update_bytes(check, old, new) {
        0 => 0xffff,
        c => c,
    }
}

/// True when the L4 checksum field `check` holds the CHECKSUM_PARTIAL value:
/// the folded, non-complemented IPv4 pseudo-header sum.
#[inline]
pub fn is_partial_v4(check: u16, src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4_len: u16) -> bool {
    check == fold(pseudo_header_v4(src, dst, protocol, l4_len))
}

/// True when the L4 checksum field `check` holds the CHECKSUM_PARTIAL value:
/// the folded, non-complemented IPv6 pseudo-header sum.
#[inline]
pub fn is_partial_v6(
    check: u16,
    src: &Ipv6Addr,
    dst: &Ipv6Addr,
    protocol: u8,
    l4_len: u32,
) -> bool {
    check == fold(pseudo_header_v6(src, dst, protocol, l4_len))
}

/// Offset of the checksum field inside an L4 header of `protocol`, if known.
#[inline]
fn check_offset(protocol: u8) -> Option<usize> {
    match protocol {
        ip_proto::TCP => Some(16),
        ip_proto::UDP => Some(6),
        ip_proto::ICMPV6 | ip_proto::ICMP => Some(2),
        _ => None,
    }
}

/// Running sum of `l4`, treating the checksum field of `protocol` as zero
/// (the field is skipped when `l4` is long enough to contain it).
#[inline]
fn sum_skipping_check(protocol: u8, l4: &[u8]) -> u32 {
    match check_offset(protocol) {
        Some(off) if l4.len() >= off + 2 => combine(sum(&l4[..off]), sum(&l4[off + 2..])),
        _ => sum(l4),
    }
}

#[inline]
fn finish(protocol: u8, s: u32) -> u16 {
    let c = !fold(s);
    if protocol == ip_proto::UDP && c == 0 {
        0xffff
    } else {
        c
    }
}

/// Full TCP/UDP (or any pseudo-header protocol) checksum over IPv4.
///
/// `l4` is the whole L4 segment (header and payload). The checksum field is
/// **skipped** (treated as zero) for TCP (offset 16) and UDP (offset 6), so the
/// caller need not zero it first; for other protocols the whole buffer is
/// summed and the caller must zero the field. For UDP a computed 0 is returned
/// as 0xffff. The pseudo-header length is `l4.len()` truncated to 16 bits.
#[inline]
pub fn tcp_udp_checksum_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, l4: &[u8]) -> u16 {
    let ph = pseudo_header_v4(src, dst, protocol, l4.len() as u16);
    finish(protocol, combine(ph, sum_skipping_check(protocol, l4)))
}

/// Full TCP/UDP/ICMPv6 checksum over IPv6; same conventions as
/// [`tcp_udp_checksum_v4`] (the ICMPv6 field at offset 2 is skipped too).
#[inline]
pub fn tcp_udp_checksum_v6(src: &Ipv6Addr, dst: &Ipv6Addr, protocol: u8, l4: &[u8]) -> u16 {
    let ph = pseudo_header_v6(src, dst, protocol, l4.len() as u32);
    finish(protocol, combine(ph, sum_skipping_check(protocol, l4)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_sum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        let mut i = 0;
        while i < data.len() {
            let hi = u32::from(data[i]) << 8;
            let lo = data.get(i + 1).copied().map_or(0, u32::from);
            s += hi | lo;
            s = (s & 0xffff) + (s >> 16);
            i += 2;
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
        let d = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&d)), 0xddf2);
        assert_eq!(checksum(&d), !0xddf2);
        // Byte-swapped order gives the byte-swapped sum (§2 (B)).
        let sw = [0x01, 0x00, 0x03, 0xf2, 0xf5, 0xf4, 0xf7, 0xf6];
        assert_eq!(fold(sum(&sw)), 0xf2dd);
    }

    #[test]
    fn ipv4_header_example() {
        // Wikipedia IPv4 header checksum example.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        let mut h2 = h;
        h2[10] = 0xb8;
        h2[11] = 0x61;
        assert_eq!(checksum(&h2), 0);
    }

    #[test]
    fn empty_and_odd() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(checksum(&[]), 0xffff);
        assert_eq!(fold(sum(&[0xab])), 0xab00);
        assert_eq!(fold(sum(&[0xff; 3])), naive_sum(&[0xff; 3]));
    }

    #[test]
    fn combine_and_fold_edges() {
        assert_eq!(combine(u32::MAX, 1), 1);
        assert_eq!(fold(u32::MAX), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(update16(0x1234, 0, 0), 0x1234);
        assert_eq!(update16(0x1234, 0x0001, 0x0001), 0x1234);
        assert_eq!(update_bytes_udp(0, &[1, 2], &[3, 4]), 0);
    }

    #[test]
    fn pseudo_headers_match_naive() {
        let s4 = Ipv4Addr::new(192, 168, 1, 10);
        let d4 = Ipv4Addr::new(10, 255, 0, 1);
        let mut b = Vec::new();
        b.extend_from_slice(&s4.octets());
        b.extend_from_slice(&d4.octets());
        b.extend_from_slice(&[0, 6, 0x05, 0xdc]);
        assert_eq!(fold(pseudo_header_v4(s4, d4, 6, 1500)), naive_sum(&b));

        let s6: Ipv6Addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let d6: Ipv6Addr = "2001:db8::ffff:1".parse().unwrap();
        let mut b = Vec::new();
        b.extend_from_slice(&s6.octets());
        b.extend_from_slice(&d6.octets());
        b.extend_from_slice(&0x0001_2345u32.to_be_bytes());
        b.extend_from_slice(&[0, 0, 0, 17]);
        assert_eq!(
            fold(pseudo_header_v6(&s6, &d6, 17, 0x1_2345)),
            naive_sum(&b)
        );
    }

    fn segment(protocol: u8, src_port: u16, dst_port: u16, body: &[u8]) -> Vec<u8> {
        let mut l4 = Vec::new();
        l4.extend_from_slice(&src_port.to_be_bytes());
        l4.extend_from_slice(&dst_port.to_be_bytes());
        if protocol == ip_proto::TCP {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            l4.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
        l4.extend_from_slice(body);
        l4
    }

    fn put_check(protocol: u8, l4: &mut [u8], c: u16) {
        let off = check_offset(protocol).unwrap();
        l4[off..off + 2].copy_from_slice(&c.to_be_bytes());
    }

    fn get_check(protocol: u8, l4: &[u8]) -> u16 {
        let off = check_offset(protocol).unwrap();
        u16::from_be_bytes([l4[off], l4[off + 1]])
    }

    proptest! {
        #[test]
        fn sum_equals_naive(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            prop_assert_eq!(fold(sum(&data)), naive_sum(&data));
        }

        #[test]
        fn split_sums_combine(data in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..150) {
            let cut = (cut * 2).min(data.len() & !1);
            prop_assert_eq!(fold(combine(sum(&data[..cut]), sum(&data[cut..]))), naive_sum(&data));
        }

        #[test]
        fn update16_matches_recompute(data in proptest::collection::vec(any::<u8>(), 2..100), idx in 0usize..50, new in any::<u16>()) {
            let mut data = data;
            let i = (idx * 2) % (data.len() & !1);
            let c = checksum(&data);
            let old = u16::from_be_bytes([data[i], data[i + 1]]);
            data[i..i + 2].copy_from_slice(&new.to_be_bytes());
            // Compare folded sums, which have a unique 0 except the all-zero case.
            let inc = update16(c, old, new);
            let full = checksum(&data);
            prop_assert!(inc == full || (inc == 0xffff && full == 0) || (inc == 0 && full == 0xffff));
        }

        #[test]
        fn incremental_v4(tcp in any::<bool>(), s in any::<[u8; 4]>(), d in any::<[u8; 4]>(),
                          ns in any::<[u8; 4]>(), nd in any::<[u8; 4]>(),
                          sp in any::<u16>(), dp in any::<u16>(), nsp in any::<u16>(), ndp in any::<u16>(),
                          body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
            let (s, d, ns, nd) = (Ipv4Addr::from(s), Ipv4Addr::from(d), Ipv4Addr::from(ns), Ipv4Addr::from(nd));
            let mut l4 = segment(proto, sp, dp, &body);
            let c = tcp_udp_checksum_v4(s, d, proto, &l4);
            put_check(proto, &mut l4, c);
            let upd = |c: u16, o: &[u8], n: &[u8]| if tcp { update_bytes(c, o, n) } else { update_bytes_udp(c, o, n) };
            let mut c = upd(c, &s.octets(), &ns.octets());
            c = upd(c, &d.octets(), &nd.octets());
            c = upd(c, &sp.to_be_bytes(), &nsp.to_be_bytes());
            if tcp { c = update16(c, dp, ndp); } else { c = upd(c, &dp.to_be_bytes(), &ndp.to_be_bytes()); }
            l4[0..2].copy_from_slice(&nsp.to_be_bytes());
            l4[2..4].copy_from_slice(&ndp.to_be_bytes());
            put_check(proto, &mut l4, c);
            let full = tcp_udp_checksum_v4(ns, nd, proto, &l4);
            prop_assert_eq!(get_check(proto, &l4), full);
            // And it verifies: sum over pseudo header + segment folds to 0xffff.
            let v = combine(pseudo_header_v4(ns, nd, proto, l4.len() as u16), sum(&l4));
            prop_assert_eq!(fold(v), 0xffff);
        }

        #[test]
        fn incremental_v6(tcp in any::<bool>(), s in any::<[u8; 16]>(), d in any::<[u8; 16]>(),
                          ns in any::<[u8; 16]>(), nd in any::<[u8; 16]>(),
                          sp in any::<u16>(), dp in any::<u16>(), nsp in any::<u16>(), ndp in any::<u16>(),
                          body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let proto = if tcp { ip_proto::TCP } else { ip_proto::UDP };
            let (s, d, ns, nd) = (Ipv6Addr::from(s), Ipv6Addr::from(d), Ipv6Addr::from(ns), Ipv6Addr::from(nd));
            let mut l4 = segment(proto, sp, dp, &body);
            let c = tcp_udp_checksum_v6(&s, &d, proto, &l4);
            put_check(proto, &mut l4, c);
            let upd = |c: u16, o: &[u8], n: &[u8]| if tcp { update_bytes(c, o, n) } else { update_bytes_udp(c, o, n) };
            let mut c = upd(c, &s.octets(), &ns.octets());
            c = upd(c, &d.octets(), &nd.octets());
            c = upd(c, &sp.to_be_bytes(), &nsp.to_be_bytes());
            c = upd(c, &dp.to_be_bytes(), &ndp.to_be_bytes());
            l4[0..2].copy_from_slice(&nsp.to_be_bytes());
            l4[2..4].copy_from_slice(&ndp.to_be_bytes());
            put_check(proto, &mut l4, c);
            prop_assert_eq!(get_check(proto, &l4), tcp_udp_checksum_v6(&ns, &nd, proto, &l4));
            let v = combine(pseudo_header_v6(&ns, &nd, proto, l4.len() as u32), sum(&l4));
            prop_assert_eq!(fold(v), 0xffff);
        }

        #[test]
        fn partial_detection(s in any::<[u8; 4]>(), d in any::<[u8; 4]>(), len in any::<u16>(),
                             s6 in any::<[u8; 16]>(), d6 in any::<[u8; 16]>(), len6 in any::<u32>()) {
            let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
            let p = fold(pseudo_header_v4(s, d, 6, len));
            prop_assert!(is_partial_v4(p, s, d, 6, len));
            prop_assert!(!is_partial_v4(p ^ 1, s, d, 6, len));
            let (s6, d6) = (Ipv6Addr::from(s6), Ipv6Addr::from(d6));
            let p = fold(pseudo_header_v6(&s6, &d6, 17, len6));
            prop_assert!(is_partial_v6(p, &s6, &d6, 17, len6));
            prop_assert!(!is_partial_v6(p ^ 0x100, &s6, &d6, 17, len6));
        }
    }
}
