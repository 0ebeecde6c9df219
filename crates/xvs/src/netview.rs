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
