//! The director's network as the kernel knows it: interfaces, routes and
//! neighbours read over rtnetlink, turned into the core's [`NetView`], and the
//! next hop of every real server. Layer: binary (control side).
//!
//! Invariants: only routes out of the director's own interfaces enter the view
//! (frames can leave by no other way); a real server without a route or a MAC gets
//! `next_hop: None` (the core counts its frames as `neighbour_unresolved`) and is
//! listed for resolution; a static MAC from the configuration wins over the kernel.

use std::net::IpAddr;

use anyhow::{Result, bail};
use xvs_core::classify::IfaceId;
use xvs_core::net::{Iface, NetView, Route};
use xvs_core::service::{NextHop, RealServer, ServiceSpec};
use xvs_io::netlink::{Link, Netlink, RouteEntry};

/// What the kernel said, kept to notice changes.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelNet {
    /// Links.
    pub links: Vec<Link>,
    /// Main-table routes.
    pub routes: Vec<RouteEntry>,
    /// The namespace's own addresses, sorted.
    pub addresses: Vec<IpAddr>,
    /// Neighbours with a MAC: (ifindex, address, MAC), sorted (states are left
    /// out, so that REACHABLE ↔ STALE flips do not count as changes).
    pub neighbours: Vec<(u32, IpAddr, [u8; 6])>,
}

impl KernelNet {
    /// Reads links, routes and neighbours.
    pub fn read(nl: &mut Netlink) -> Result<KernelNet> {
        Ok(KernelNet {
            links: nl.links()?,
            routes: nl.routes()?,
            addresses: {
                let mut a: Vec<IpAddr> = nl.addresses()?.into_iter().map(|(_, ip)| ip).collect();
                a.sort();
                a.dedup();
                a
            },
            neighbours: {
                let mut n: Vec<_> = nl
                    .neighbours()?
                    .into_iter()
                    .filter_map(|n| Some((n.ifindex, n.addr, n.mac?)))
                    .collect();
                n.sort();
                n
            },
        })
    }

    /// The kernel interface index of each configured interface (index = `IfaceId`).
    pub fn ifindexes(&self, names: &[String]) -> Result<Vec<u32>> {
        names
            .iter()
            .map(|name| match self.links.iter().find(|l| &l.name == name) {
                Some(l) => Ok(l.index),
                None => {
                    bail!("interface {name}: not found in this network namespace (see `ip link`)")
                }
            })
            .collect()
    }

    /// The core's view over the configured interfaces `names`.
    pub fn view(&self, names: &[String]) -> Result<NetView> {
        let indexes = self.ifindexes(names)?;
        let iface_of = |index: u32| {
            indexes
                .iter()
                .position(|&i| i == index)
                .map(|p| IfaceId(p as u16))
        };
        let ifaces = names
            .iter()
            .zip(&indexes)
            .enumerate()
            .map(|(id, (name, &index))| Iface {
                id: IfaceId(id as u16),
                name: name.clone(),
                mac: self
                    .links
                    .iter()
                    .find(|l| l.index == index)
                    .map(|l| l.mac)
                    .unwrap_or_default(),
            })
            .collect();
        let routes = self
            .routes
            .iter()
            .filter_map(|r| {
                Some(Route {
                    prefix: r.dst,
                    iface: iface_of(r.oif)?,
                    gateway: r.gateway,
                })
            })
            .collect();
        let neighbours = self
            .neighbours
            .iter()
            .filter(|(index, _, _)| iface_of(*index).is_some())
            .map(|&(_, addr, mac)| (addr, mac));
        Ok(NetView::new(ifaces, routes, neighbours))
    }
}

/// An address the kernel should resolve: the next hop `addr` out of `iface`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Wanted {
    /// Out interface.
    pub iface: IfaceId,
    /// Next-hop address.
    pub addr: IpAddr,
}

/// The next hop of `addr` in `net` (route, then gateway or on-link, then MAC):
/// `Ok` with the hop, or `Err(Some(wanted))` when only the MAC is missing, or
/// `Err(None)` without a route.
pub fn hop_of(
    net: &NetView,
    addr: IpAddr,
    static_mac: Option<[u8; 6]>,
) -> Result<NextHop, Option<Wanted>> {
    let route = net.route(addr).ok_or(None)?;
    let hop = route.gateway.unwrap_or(addr);
    match static_mac.or_else(|| net.neighbour(hop)) {
        Some(mac) => Ok(NextHop {
            iface: route.iface,
            mac,
        }),
        None => Err(Some(Wanted {
            iface: route.iface,
            addr: hop,
        })),
    }
}

/// Sets `next_hop` of every real server (and sorry server) of `specs`; returns
/// the neighbours to resolve and the servers without any route.
pub fn place_servers(
    specs: &mut [ServiceSpec],
    net: &NetView,
    static_mac: impl Fn(&RealServer) -> Option<[u8; 6]>,
) -> (Vec<Wanted>, Vec<IpAddr>) {
    let mut wanted = Vec::new();
    let mut no_route = Vec::new();
    for spec in specs.iter_mut() {
        for rs in spec.servers.iter_mut().chain(spec.sorry.as_mut()) {
            rs.next_hop = match hop_of(net, rs.addr, static_mac(rs)) {
                Ok(hop) => Some(hop),
                Err(Some(w)) => {
                    if !wanted.contains(&w) {
                        wanted.push(w);
                    }
                    None
                }
                Err(None) => {
                    if !no_route.contains(&rs.addr) {
                        no_route.push(rs.addr);
                    }
                    None
                }
            };
        }
    }
    (wanted, no_route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xvs_core::service::{DestId, DestState, Method};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// ext (2) 198.18.0.1/24 with a default route via 198.18.0.254; int (3)
    /// 198.19.0.1/24; a third link (9) the director does not use.
    fn kernel() -> KernelNet {
        let link = |index, name: &str, last| Link {
            index,
            name: name.into(),
            mac: [2, 0, 0, 0, 0, last],
            mtu: 1500,
            up: true,
        };
        let route = |dst: &str, oif, gw: Option<&str>| RouteEntry {
            dst: dst.parse().unwrap(),
            oif,
            gateway: gw.map(ip),
        };
        KernelNet {
            links: vec![link(2, "ext", 1), link(3, "int", 2), link(9, "mgmt", 9)],
            routes: vec![
                route("0.0.0.0/0", 2, Some("198.18.0.254")),
                route("198.18.0.0/24", 2, None),
                route("198.19.0.0/24", 3, None),
                route("10.0.0.0/8", 9, None),
            ],
            addresses: vec![ip("198.18.0.1"), ip("198.19.0.1")],
            neighbours: vec![
                (2, ip("198.18.0.254"), [2, 0xa, 0, 0, 0, 0xfe]),
                (3, ip("198.19.0.10"), [2, 0xa, 0, 0, 0, 0x10]),
                (9, ip("10.0.0.5"), [2, 0xa, 0, 0, 0, 5]),
            ],
        }
    }

    fn server(id: u32, addr: &str) -> RealServer {
        RealServer {
            id: DestId(id),
            addr: ip(addr),
            port: Some(8080),
            weight: 1,
            method: Method::Nat,
            backup: false,
            state: DestState::Up,
            max_conns: 0,
            next_hop: None,
        }
    }

    #[test]
    fn the_view_keeps_only_the_directors_interfaces() {
        let names = ["ext".to_owned(), "int".to_owned()];
        let k = kernel();
        assert_eq!(k.ifindexes(&names).unwrap(), [2, 3]);
        let err = k.ifindexes(&["ext".into(), "nosuch".into()]).unwrap_err();
        assert!(
            err.to_string().contains("interface nosuch: not found"),
            "{err}"
        );
        let v = k.view(&names).unwrap();
        assert_eq!(v.iface_mac(IfaceId(1)), [2, 0, 0, 0, 0, 2]);
        // A route out of `mgmt` and its neighbour are not the director's.
        assert!(
            v.route(ip("10.1.2.3"))
                .is_some_and(|r| r.prefix.prefix_len() == 0)
        );
        assert_eq!(v.neighbour(ip("10.0.0.5")), None);
        assert_eq!(
            v.neighbour(ip("198.19.0.10")),
            Some([2, 0xa, 0, 0, 0, 0x10])
        );
    }

    #[test]
    fn next_hops_resolved_wanted_static_and_unroutable() {
        let v = kernel().view(&["ext".into(), "int".into()]).unwrap();
        // Known neighbour on int.
        assert_eq!(
            hop_of(&v, ip("198.19.0.10"), None),
            Ok(NextHop {
                iface: IfaceId(1),
                mac: [2, 0xa, 0, 0, 0, 0x10]
            })
        );
        // Unknown: resolve the address itself (on-link) ...
        assert_eq!(
            hop_of(&v, ip("198.19.0.11"), None),
            Err(Some(Wanted {
                iface: IfaceId(1),
                addr: ip("198.19.0.11")
            }))
        );
        // ... or its gateway; a static MAC wins over the kernel.
        assert_eq!(
            hop_of(&v, ip("203.0.113.9"), None).map(|h| h.mac),
            Ok([2, 0xa, 0, 0, 0, 0xfe])
        );
        assert_eq!(
            hop_of(&v, ip("198.19.0.11"), Some([2, 1, 1, 1, 1, 1])).map(|h| h.mac),
            Ok([2, 1, 1, 1, 1, 1])
        );
        // No IPv6 route at all.
        assert_eq!(hop_of(&v, ip("2001:db8::1"), None), Err(None));

        let mut specs = vec![xvs_core::lab::service(
            "web",
            1,
            xvs_core::lab::tcp_key("198.18.1.1", 80),
            vec![
                server(1, "198.19.0.10"),
                server(2, "198.19.0.11"),
                server(3, "198.19.0.12"),
                server(4, "2001:db8::1"),
            ],
        )];
        let (wanted, no_route) = place_servers(&mut specs, &v, |rs| {
            (rs.id == DestId(3)).then_some([2, 3, 3, 3, 3, 3])
        });
        let hops: Vec<_> = specs[0]
            .servers
            .iter()
            .map(|rs| rs.next_hop.map(|h| h.mac))
            .collect();
        assert_eq!(
            hops,
            [
                Some([2, 0xa, 0, 0, 0, 0x10]),
                None,
                Some([2, 3, 3, 3, 3, 3]),
                None
            ]
        );
        assert_eq!(
            wanted,
            [Wanted {
                iface: IfaceId(1),
                addr: ip("198.19.0.11")
            }]
        );
        assert_eq!(no_route, [ip("2001:db8::1")]);
    }
}
