//! ICMP / ICMPv6 errors that belong to a tracked connection (destination
//! unreachable, fragmentation needed / packet too big, time exceeded, parameter
//! problem). Layer: pure core, hot path (errors are rare; the ICMP checksum is
//! recomputed in full).
//!
//! The quoted packet inside the error was sent by the party receiving the error, so
//! its reversed tuple is the tuple of that party's traffic:
//! - quoted VIP → client (the client side complains about our NAT'd reply, or about a
//!   DR server's reply): reversed, it is the connection's original tuple; the error
//!   goes to the real server (NAT: outer destination and quoted source rewritten to
//!   the real server; DR: MAC rewrite only);
//! - quoted client → real server (the server side complains about a packet we sent):
//!   reversed, it is the reply tuple; the error goes to the client with the outer
//!   source and the quoted destination rewritten back to the VIP (as IPVS does).
//!
//! Errors that match no connection are the kernel's business: `Pass`.

use super::rewrite::{self, End, IpInfo};
use super::{Cx, Parsed, Step, Verdict};
use crate::addr::AddrBytes;
use crate::conntrack::{Direction, Tuple};
use crate::wire::ip_proto::{TCP, UDP};
use crate::wire::{IcmpPacket, Icmpv6Packet};

impl Cx<'_> {
    pub(super) fn icmp_error(&mut self, frame: &mut [u8], p: &Parsed) -> Step<Verdict> {
        let (at, len) = (p.ip.l4, p.ip.l4_len);
        let msg = &frame[at..at + len];
        let embedded = if p.ip.v6 {
            Icmpv6Packet::new_checked(msg).and_then(|m| m.embedded_ipv6())
        } else {
            IcmpPacket::new_checked(msg).and_then(|m| m.embedded_ipv4())
        };
        let Ok(e) = embedded else {
            return Ok(Verdict::Pass);
        };
        if e.later_fragment || !matches!(e.protocol, TCP | UDP) || e.l4_len_available < 4 {
            return Ok(Verdict::Pass);
        }
        let inner = IpInfo {
            l3: at + e.ip_offset,
            l4: at + e.l4_offset,
            l4_len: e.l4_len_available,
            v6: p.ip.v6,
            protocol: e.protocol,
            fragment: true, // never "complete" a quoted checksum
            has_l4: true,
        };
        let addr = |end: End| -> AddrBytes {
            let mut a = [0u8; 16];
            let r = rewrite::addr_range(&inner, end);
            a[..r.len()].copy_from_slice(&frame[r]);
            a
        };
        let port =
            |off: usize| u16::from_be_bytes([frame[inner.l4 + off], frame[inner.l4 + off + 1]]);
        let reversed = Tuple {
            src: addr(End::Dst),
            dst: addr(End::Src),
            sport: port(2),
            dport: port(0),
            protocol: e.protocol,
            v6: p.ip.v6,
        };
        let Some((c, dir)) =
            self.shared
                .conns
                .lookup(&reversed, self.now, |_| {}, |c, dir| (*c, dir))
        else {
            return Ok(Verdict::Pass);
        };
        let hop = self.hop(dir, c.dest, &c.client, c.is_v6())?;
        if c.is_nat() {
            rewrite::decrement_ttl(frame, &p.ip).map_err(Verdict::Drop)?;
            match dir {
                Direction::Original => {
                    rewrite::rewrite_end(frame, &p.ip, End::Dst, &c.daddr, None);
                    rewrite::rewrite_end(frame, &inner, End::Src, &c.daddr, Some(c.dport));
                }
                Direction::Reply => {
                    rewrite::rewrite_end(frame, &p.ip, End::Src, &c.vaddr, None);
                    rewrite::rewrite_end(frame, &inner, End::Dst, &c.vaddr, Some(c.vport));
                }
            }
            if p.ip.v6 {
                let (src, dst) = rewrite::addrs_v6(frame, &p.ip);
                Icmpv6Packet::new_unchecked(&mut frame[at..at + len]).fill_checksum(&src, &dst);
            } else {
                IcmpPacket::new_unchecked(&mut frame[at..at + len]).fill_checksum();
            }
        }
        rewrite::set_macs(frame, self.snap.net.iface_mac(hop.iface), hop.mac);
        Ok(Verdict::Forward { iface: hop.iface })
    }
}
