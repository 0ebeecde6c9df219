//! # netlink — the kernel's links, routes and neighbours over rtnetlink
//!
//! Layer: I/O, used by the control thread only (never by a worker). One
//! `NETLINK_ROUTE` socket ([`netlink_sys::Socket`]) in the network namespace of
//! the thread that opened it; messages are built and parsed by
//! `netlink-packet-route`/`netlink-packet-core`. Everything is synchronous.
//!
//! What it offers: dumps of the links, the interfaces' addresses, the main
//! table's unicast routes (IPv4 and IPv6) and the ARP/ND neighbour table, and [`Netlink::resolve`], which asks the
//! kernel to resolve a neighbour (ARP / ND) without sending a packet of our own.
//!
//! Invariants:
//! - a dump reads until `NLMSG_DONE`, across as many datagrams and multi-part
//!   messages as the kernel sends; an `NLMSG_ERROR` (or a `NLMSG_DONE` carrying
//!   an error code) ends it with [`NetlinkError::Kernel`]; a dump the kernel
//!   marks inconsistent (`NLM_F_DUMP_INTR`, the table changed while it was read)
//!   is retried a bounded number of times, then reported as
//!   [`NetlinkError::Interrupted`];
//! - every request carries a fresh sequence number; replies to any other
//!   sequence (left over from an earlier request that failed or timed out) are
//!   discarded, so one failed request never corrupts the next;
//! - every error names the [`Operation`] it belongs to;
//! - nothing hangs: the socket has `SO_RCVTIMEO` = the timeout, and each
//!   request also has an overall deadline of the same length, checked before
//!   every receive; so a request that gets no complete reply fails with
//!   [`NetlinkError::Timeout`] in less than twice the timeout;
//! - no `unsafe` here: the one socket option that needs libc is in
//!   [`crate::sys::netlink`].

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourHeader, NeighbourMessage,
    NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteType, RouteVia,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

/// How long a request may take unless [`Netlink::set_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times a dump interrupted by a concurrent change is tried in all.
const DUMP_ATTEMPTS: u32 = 3;

/// A network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Hardware address; all zeros when the link has none of 6 bytes
    /// (loopback has zeros anyway; tunnels, for instance, have none).
    pub mac: [u8; 6],
    /// MTU in bytes (0 if the kernel did not say).
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// A unicast route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    /// Destination prefix (`0.0.0.0/0` or `::/0` for a default route).
    pub dst: IpNet,
    /// Output interface index.
    pub oif: u32,
    /// Next hop; `None` for an on-link route.
    pub gateway: Option<IpAddr>,
}

/// State of a neighbour entry (`NUD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeighState {
    /// Resolution under way, no address yet.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Valid but unconfirmed.
    Stale,
    /// Waiting before probing.
    Delay,
    /// Probing.
    Probe,
    /// Resolution failed.
    Failed,
    /// No resolution needed (e.g. point-to-point, multicast).
    Noarp,
    /// Static entry.
    Permanent,
    /// No state (`NUD_NONE`).
    None,
    /// A state word this code does not know (or a combination of bits).
    Other(u16),
}

impl NeighState {
    /// Whether an entry in this state carries a usable link-layer address
    /// (`NUD_VALID`).
    pub fn has_mac(self) -> bool {
        matches!(
            self,
            Self::Reachable
                | Self::Stale
                | Self::Delay
                | Self::Probe
                | Self::Noarp
                | Self::Permanent
        )
    }
}

impl From<NeighbourState> for NeighState {
    fn from(s: NeighbourState) -> Self {
        match s {
            NeighbourState::Incomplete => Self::Incomplete,
            NeighbourState::Reachable => Self::Reachable,
            NeighbourState::Stale => Self::Stale,
            NeighbourState::Delay => Self::Delay,
            NeighbourState::Probe => Self::Probe,
            NeighbourState::Failed => Self::Failed,
            NeighbourState::Noarp => Self::Noarp,
            NeighbourState::Permanent => Self::Permanent,
            NeighbourState::None => Self::None,
            other => Self::Other(u16::from(other)),
        }
    }
}

/// An entry of the ARP (IPv4) or ND (IPv6) neighbour table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    /// Interface index.
    pub ifindex: u32,
    /// Protocol address.
    pub addr: IpAddr,
    /// Link-layer address; `None` unless [`NeighState::has_mac`] (so always
    /// `None` for INCOMPLETE and FAILED) and the address is 6 bytes long.
    pub mac: Option<[u8; 6]>,
    /// Entry state.
    pub state: NeighState,
}

/// The request an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Opening or configuring the socket.
    Socket,
    /// `RTM_GETLINK` dump.
    Links,
    /// `RTM_GETROUTE` dump.
    Routes,
    /// `RTM_GETNEIGH` dump.
    Neighbours,
    /// `RTM_GETADDR` dump.
    Addresses,
    /// `RTM_NEWNEIGH` with `NTF_USE` for `addr` on `ifindex`.
    Resolve {
        /// Interface index.
        ifindex: u32,
        /// Address to resolve.
        addr: IpAddr,
    },
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Socket => f.write_str("setting up the NETLINK_ROUTE socket"),
            Self::Links => f.write_str("dumping links (RTM_GETLINK)"),
            Self::Routes => f.write_str("dumping routes (RTM_GETROUTE)"),
            Self::Neighbours => f.write_str("dumping neighbours (RTM_GETNEIGH)"),
            Self::Addresses => f.write_str("dumping addresses (RTM_GETADDR)"),
            Self::Resolve { ifindex, addr } => write!(
                f,
                "resolving {addr} on ifindex {ifindex} (RTM_NEWNEIGH, NTF_USE)"
            ),
        }
    }
}

/// Errors of the rtnetlink client; each names its [`Operation`].
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// A socket call failed (socket, bind, connect, setsockopt, send, recv).
    #[error("{op}: {what}: {source}")]
    Io {
        /// The request.
        op: Operation,
        /// Which call.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// No complete reply within the timeout.
    #[error("{op}: no complete reply within {timeout:?}")]
    Timeout {
        /// The request.
        op: Operation,
        /// The timeout in force.
        timeout: Duration,
    },
    /// The kernel answered with an error (`NLMSG_ERROR`, or `NLMSG_DONE` with
    /// a negative code).
    #[error("{op}: the kernel answered: {source}")]
    Kernel {
        /// The request.
        op: Operation,
        /// The positive errno.
        errno: i32,
        /// The errno as an `io::Error`.
        source: io::Error,
    },
    /// The kernel dropped messages for us (`NLMSG_OVERRUN`).
    #[error("{op}: the kernel reported an overrun")]
    Overrun {
        /// The request.
        op: Operation,
    },
    /// A reply could not be parsed.
    #[error("{op}: malformed reply: {detail}")]
    Decode {
        /// The request.
        op: Operation,
        /// What went wrong.
        detail: String,
    },
    /// The dump was marked inconsistent (`NLM_F_DUMP_INTR`) on every attempt.
    #[error("{op}: the table changed during the dump on each of {attempts} attempts")]
    Interrupted {
        /// The request.
        op: Operation,
        /// Attempts made.
        attempts: u32,
    },
    /// The caller passed something that cannot be sent.
    #[error("{op}: invalid argument: {detail}")]
    Invalid {
        /// The request.
        op: Operation,
        /// Why.
        detail: &'static str,
    },
}

/// A synchronous rtnetlink client on one `NETLINK_ROUTE` socket, in the network
/// namespace of the thread that called [`Netlink::open`].
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
    timeout: Duration,
}

/// What one request collected.
struct Reply {
    messages: Vec<RouteNetlinkMessage>,
    interrupted: bool,
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket with [`DEFAULT_TIMEOUT`].
    pub fn open() -> Result<Self, NetlinkError> {
        let op = Operation::Socket;
        let io = |what| move |source| NetlinkError::Io { op, what, source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(io("socket"))?;
        socket.bind_auto().map_err(io("bind"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(io("connect"))?;
        let mut nl = Self {
            socket,
            seq: 0,
            timeout: DEFAULT_TIMEOUT,
        };
        nl.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(nl)
    }

    /// Sets how long one request (a whole dump, or a request and its
    /// acknowledgement) may take; also the socket's receive timeout.
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), NetlinkError> {
        crate::sys::netlink::set_recv_timeout(self.socket.as_fd(), timeout).map_err(|source| {
            NetlinkError::Io {
                op: Operation::Socket,
                what: "setsockopt(SO_RCVTIMEO)",
                source,
            }
        })?;
        self.timeout = timeout;
        Ok(())
    }

    /// All links of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let op = Operation::Links;
        let msgs = self.dump(op, RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_of(l)),
                _ => None,
            })
            .collect())
    }

    /// The unicast routes of the main table, IPv4 and IPv6. A multipath route
    /// gives one entry per next hop.
    pub fn routes(&mut self) -> Result<Vec<RouteEntry>, NetlinkError> {
        let op = Operation::Routes;
        let msgs = self.dump(op, RouteNetlinkMessage::GetRoute(RouteMessage::default()))?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                routes_of(&r, &mut out);
            }
        }
        Ok(out)
    }

    /// The ARP and ND neighbour tables (proxy entries excluded).
    pub fn neighbours(&mut self) -> Result<Vec<Neighbour>, NetlinkError> {
        let op = Operation::Neighbours;
        let msgs = self.dump(
            op,
            RouteNetlinkMessage::GetNeighbour(NeighbourMessage::default()),
        )?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => neighbour_of(n),
                _ => None,
            })
            .collect())
    }

    /// The addresses configured on the namespace's interfaces, IPv4 and IPv6:
    /// (interface index, local address).
    pub fn addresses(&mut self) -> Result<Vec<(u32, IpAddr)>, NetlinkError> {
        let op = Operation::Addresses;
        let msgs = self.dump(
            op,
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        let mut out = Vec::new();
        for m in msgs {
            if let RouteNetlinkMessage::NewAddress(a) = m {
                // IPv4 point-to-point links carry the local address in `Local`;
                // elsewhere `Address` is the local one.
                let local = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let address = a.attributes.iter().find_map(|attr| match attr {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = local.or(address) {
                    out.push((a.header.index, ip));
                }
            }
        }
        Ok(out)
    }

    /// Asks the kernel to resolve `addr` on `ifindex` (ARP for IPv4, neighbour
    /// solicitation for IPv6); we send nothing on the wire ourselves.
    ///
    /// Sends `RTM_NEWNEIGH` with `NLM_F_CREATE` and `NTF_USE`, state
    /// `NUD_NONE`, no link-layer address. The kernel's `neigh_add()` creates the
    /// entry if it is missing (not `PERMANENT`, so it stays subject to garbage
    /// collection) and, because of `NTF_USE`, calls `neigh_event_send()` on it
    /// instead of updating it: an entry that is NONE/FAILED goes INCOMPLETE and
    /// the kernel solicits; STALE goes DELAY then PROBE; REACHABLE and
    /// PERMANENT entries are left alone. Returns once the kernel acknowledged;
    /// the answer shows up later in [`Netlink::neighbours`] (an unanswered
    /// one as INCOMPLETE, then FAILED). The kernel solicits for any `addr`,
    /// on-link or not: resolving the right next hop (from [`Netlink::routes`])
    /// is the caller's business.
    pub fn resolve(&mut self, ifindex: u32, addr: IpAddr) -> Result<(), NetlinkError> {
        let op = Operation::Resolve { ifindex, addr };
        if ifindex == 0 {
            return Err(NetlinkError::Invalid {
                op,
                detail: "interface index 0",
            });
        }
        let mut msg = NeighbourMessage::default();
        msg.header = NeighbourHeader {
            family: match addr {
                IpAddr::V4(_) => AddressFamily::Inet,
                IpAddr::V6(_) => AddressFamily::Inet6,
            },
            ifindex,
            state: NeighbourState::None,
            flags: NeighbourFlags::Use,
            ..NeighbourHeader::default()
        };
        msg.attributes
            .push(NeighbourAttribute::Destination(NeighbourAddress::from(
                addr,
            )));
        self.request(
            op,
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_ACK | NLM_F_CREATE,
            false,
        )?;
        Ok(())
    }

    /// A dump, retried while the kernel marks it interrupted.
    fn dump(
        &mut self,
        op: Operation,
        msg: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        for _ in 0..DUMP_ATTEMPTS {
            let reply = self.request(op, msg.clone(), NLM_F_DUMP, true)?;
            if !reply.interrupted {
                return Ok(reply.messages);
            }
        }
        Err(NetlinkError::Interrupted {
            op,
            attempts: DUMP_ATTEMPTS,
        })
    }

    /// Sends `msg` with `NLM_F_REQUEST | flags` and collects the reply: until
    /// `NLMSG_DONE` for a dump, until the acknowledgement otherwise.
    fn request(
        &mut self,
        op: Operation,
        msg: RouteNetlinkMessage,
        flags: u16,
        dump: bool,
    ) -> Result<Reply, NetlinkError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|source| NetlinkError::Io {
                op,
                what: "send",
                source,
            })?;

        let deadline = Instant::now() + self.timeout;
        let mut reply = Reply {
            messages: Vec::new(),
            interrupted: false,
        };
        loop {
            if Instant::now() >= deadline {
                return Err(NetlinkError::Timeout {
                    op,
                    timeout: self.timeout,
                });
            }
            let datagram = match self.socket.recv_from_full() {
                Ok((d, _)) => d,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(NetlinkError::Timeout {
                        op,
                        timeout: self.timeout,
                    });
                }
                Err(source) => {
                    return Err(NetlinkError::Io {
                        op,
                        what: "recv",
                        source,
                    });
                }
            };
            if handle_datagram(op, seq, dump, &datagram, &mut reply)? {
                return Ok(reply);
            }
        }
    }
}

/// Walks the netlink messages of one datagram; returns `Ok(true)` once the
/// request `seq` is complete.
fn handle_datagram(
    op: Operation,
    seq: u32,
    dump: bool,
    datagram: &[u8],
    reply: &mut Reply,
) -> Result<bool, NetlinkError> {
    let decode = |detail: String| NetlinkError::Decode { op, detail };
    let mut offset = 0;
    while offset < datagram.len() {
        let rest = &datagram[offset..];
        let len = NetlinkBuffer::new_checked(rest)
            .map_err(|e| decode(e.to_string()))?
            .length() as usize;
        if len == 0 {
            return Err(decode("netlink message of length 0".into()));
        }
        let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len])
            .map_err(|e| decode(e.to_string()))?;
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        offset += (len + 3) & !3;
        if msg.header.sequence_number != seq {
            continue; // a late reply to an earlier request
        }
        if msg.header.flags & NLM_F_DUMP_INTR != 0 {
            reply.interrupted = true;
        }
        match msg.payload {
            NetlinkPayload::InnerMessage(m) => reply.messages.push(m),
            NetlinkPayload::Done(d) => {
                if d.code < 0 {
                    return Err(kernel(op, d.code));
                }
                return Ok(true);
            }
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => return Err(kernel(op, code.get())),
                // An ACK: the end of a non-dump request.
                None if !dump => return Ok(true),
                None => {}
            },
            NetlinkPayload::Overrun(_) => return Err(NetlinkError::Overrun { op }),
            _ => {}
        }
    }
    Ok(false)
}

fn kernel(op: Operation, code: i32) -> NetlinkError {
    let errno = code.saturating_abs();
    NetlinkError::Kernel {
        op,
        errno,
        source: io::Error::from_raw_os_error(errno),
    }
}

fn mac6(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.try_into().ok()
}

fn link_of(l: LinkMessage) -> Link {
    let mut link = Link {
        index: l.header.index,
        name: String::new(),
        mac: [0; 6],
        mtu: 0,
        up: l.header.flags.contains(LinkFlags::Up),
    };
    for a in l.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = mac6(&a).unwrap_or([0; 6]),
            LinkAttribute::Mtu(m) => link.mtu = m,
            _ => {}
        }
    }
    link
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn via_ip(v: &RouteVia) -> Option<IpAddr> {
    match v {
        RouteVia::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteVia::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The gateway named by `Gateway` or `Via` (an IPv4 route via an IPv6 next hop).
fn gateway_of(attrs: &[RouteAttribute]) -> Option<IpAddr> {
    attrs.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => route_ip(g),
        RouteAttribute::Via(v) => via_ip(v),
        _ => None,
    })
}

/// Appends the entries of route message `r` if it is a unicast route of the
/// main table: one entry, or one per next hop of a multipath route.
fn routes_of(r: &RouteMessage, out: &mut Vec<RouteEntry>) {
    let h = &r.header;
    if h.kind != RouteType::Unicast {
        return;
    }
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(h.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return;
    }
    let dst_addr = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => route_ip(d),
        _ => None,
    });
    let dst_addr = match (dst_addr, h.address_family) {
        (Some(a), _) => a,
        (None, AddressFamily::Inet) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        (None, AddressFamily::Inet6) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        (None, _) => return,
    };
    let Ok(dst) = IpNet::new(dst_addr, h.destination_prefix_length) else {
        return;
    };
    let oif = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    if let Some(oif) = oif {
        out.push(RouteEntry {
            dst,
            oif,
            gateway: gateway_of(&r.attributes),
        });
    }
    for a in &r.attributes {
        if let RouteAttribute::MultiPath(hops) = a {
            out.extend(hops.iter().map(|hop| RouteEntry {
                dst,
                oif: hop.interface_index,
                gateway: gateway_of(&hop.attributes),
            }));
        }
    }
}

fn neighbour_of(n: NeighbourMessage) -> Option<Neighbour> {
    let h = &n.header;
    if !matches!(h.family, AddressFamily::Inet | AddressFamily::Inet6)
        || h.flags.contains(NeighbourFlags::Proxy)
    {
        return None;
    }
    let state = NeighState::from(h.state);
    let mut addr = None;
    let mut mac = None;
    for a in &n.attributes {
        match a {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                addr = Some(IpAddr::V4(*v4));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                addr = Some(IpAddr::V6(*v6));
            }
            NeighbourAttribute::LinkLayerAddress(l) => mac = mac6(l),
            _ => {}
        }
    }
    Some(Neighbour {
        ifindex: h.ifindex,
        addr: addr?,
        mac: if state.has_mac() { mac } else { None },
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_with_a_mac() {
        assert!(NeighState::Reachable.has_mac());
        assert!(NeighState::Permanent.has_mac());
        assert!(!NeighState::Incomplete.has_mac());
        assert!(!NeighState::Failed.has_mac());
        assert_eq!(
            NeighState::from(NeighbourState::from(0x82u16)),
            NeighState::Other(0x82)
        );
    }

    #[test]
    fn error_names_the_operation() {
        let e = kernel(
            Operation::Resolve {
                ifindex: 7,
                addr: "198.18.77.2".parse().unwrap(),
            },
            -libc::ENODEV,
        );
        let s = e.to_string();
        assert!(s.contains("resolving 198.18.77.2 on ifindex 7"), "{s}");
        assert!(matches!(e, NetlinkError::Kernel { errno, .. } if errno == libc::ENODEV));
    }

    #[test]
    fn truncated_datagram_is_a_decode_error() {
        let mut reply = Reply {
            messages: Vec::new(),
            interrupted: false,
        };
        let r = handle_datagram(Operation::Links, 1, true, &[1, 2, 3], &mut reply);
        assert!(matches!(r, Err(NetlinkError::Decode { .. })));
    }
}
