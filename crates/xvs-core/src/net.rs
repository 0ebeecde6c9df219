//! The director's view of its own network: interfaces, routes and neighbours, as the
//! control side read them from the kernel (netlink) and published in a snapshot.
//! Layer: pure core; the data path only looks up.
//!
//! Used for frames whose destination is not a configured real server — NAT replies
//! going back to clients. Real servers carry their resolved [`NextHop`] directly.
//! Invariants: routes are kept sorted by decreasing prefix length, so the first match
//! is the longest; a miss is reported, never guessed.

use std::net::IpAddr;

use crate::table::Map;
use ipnet::IpNet;

use crate::addr::{AddrBytes, from_bytes, to_bytes};
use crate::classify::IfaceId;
use crate::service::NextHop;

/// One of the director's interfaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    /// Dense id (the I/O layer's port number).
    pub id: IfaceId,
    /// Kernel name.
    pub name: String,
    /// Its MAC: the source MAC of frames it sends.
    pub mac: [u8; 6],
}

/// A route: destinations in `prefix` leave by `iface`, to `gateway` or directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix.
    pub prefix: IpNet,
    /// Out interface.
    pub iface: IfaceId,
    /// Next hop; `None` = on-link.
    pub gateway: Option<IpAddr>,
}

/// Why no next hop was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopError {
    /// No route covers the destination.
    NoRoute,
    /// The route is known but the neighbour's MAC is not (yet): the control side
    /// should resolve this address.
    Unresolved(AddrBytes, bool),
}

/// Interfaces, routes and neighbours.
#[derive(Clone, Debug, Default)]
pub struct NetView {
    ifaces: Vec<Iface>,
    routes: Vec<Route>,
    neighbours: Map<(AddrBytes, bool), [u8; 6]>,
}

impl NetView {
    /// A view from its parts (routes are sorted here).
    pub fn new(
        ifaces: Vec<Iface>,
        mut routes: Vec<Route>,
        neighbours: impl IntoIterator<Item = (IpAddr, [u8; 6])>,
    ) -> Self {
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.prefix_len()));
        let neighbours = neighbours
            .into_iter()
            .map(|(ip, mac)| ((to_bytes(ip), ip.is_ipv6()), mac))
            .collect();
        NetView {
            ifaces,
            routes,
            neighbours,
        }
    }

    /// Interfaces.
    pub fn ifaces(&self) -> &[Iface] {
        &self.ifaces
    }

    /// The MAC of interface `id` (zero when unknown).
    #[inline]
    pub fn iface_mac(&self, id: IfaceId) -> [u8; 6] {
        self.ifaces
            .iter()
            .find(|i| i.id == id)
            .map(|i| i.mac)
            .unwrap_or_default()
    }

    /// The neighbour MAC of an address, if known.
    pub fn neighbour(&self, ip: IpAddr) -> Option<[u8; 6]> {
        self.neighbours.get(&(to_bytes(ip), ip.is_ipv6())).copied()
    }

    /// The longest-prefix route covering `ip`.
    pub fn route(&self, ip: IpAddr) -> Option<&Route> {
        self.routes.iter().find(|r| r.prefix.contains(&ip))
    }

    /// Routes, longest prefix first.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Where a frame to `dst` goes.
    #[inline]
    pub fn next_hop(&self, dst: &AddrBytes, v6: bool) -> Result<NextHop, HopError> {
        let route = self.route(from_bytes(dst, v6)).ok_or(HopError::NoRoute)?;
        let (hop, hop_v6) = match route.gateway {
            Some(gw) => (to_bytes(gw), gw.is_ipv6()),
            None => (*dst, v6),
        };
        match self.neighbours.get(&(hop, hop_v6)) {
            Some(&mac) => Ok(NextHop {
                iface: route.iface,
                mac,
            }),
            None => Err(HopError::Unresolved(hop, hop_v6)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_and_gateway() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let v = NetView::new(
            vec![Iface {
                id: IfaceId(0),
                name: "ext".into(),
                mac: [2, 0, 0, 0, 0, 1],
            }],
            vec![
                Route {
                    prefix: "0.0.0.0/0".parse().unwrap(),
                    iface: IfaceId(0),
                    gateway: Some(ip("198.18.0.1")),
                },
                Route {
                    prefix: "198.18.7.0/24".parse().unwrap(),
                    iface: IfaceId(1),
                    gateway: None,
                },
            ],
            [
                (ip("198.18.0.1"), [2, 0, 0, 0, 0, 9]),
                (ip("198.18.7.5"), [2, 0, 0, 0, 0, 5]),
            ],
        );
        assert_eq!(
            v.next_hop(&to_bytes(ip("198.18.7.5")), false),
            Ok(NextHop {
                iface: IfaceId(1),
                mac: [2, 0, 0, 0, 0, 5]
            })
        );
        assert_eq!(
            v.next_hop(&to_bytes(ip("203.0.113.9")), false),
            Ok(NextHop {
                iface: IfaceId(0),
                mac: [2, 0, 0, 0, 0, 9]
            })
        );
        assert_eq!(
            v.next_hop(&to_bytes(ip("198.18.7.6")), false),
            Err(HopError::Unresolved(to_bytes(ip("198.18.7.6")), false))
        );
        assert_eq!(
            v.next_hop(&to_bytes(ip("2001:db8::1")), true),
            Err(HopError::NoRoute)
        );
        assert_eq!(v.iface_mac(IfaceId(0)), [2, 0, 0, 0, 0, 1]);
    }
}
