//! A small example lab — two interfaces, NAT, DR, IPv6, UDP and a persistent mark
//! service, a blocking rule — shared by the fixture tests, the benchmarks, the
//! fuzzers and the offline demo. Layer: pure core (test and tooling support).
//!
//! ```text
//! clients 198.18.0.0/24, 2001:db8::/64 ── ext (if 0) ─ director ─ int (if 1) ── real servers 198.19.0.0/24, 2001:db8:2::/64
//! VIP 198.18.1.1 tcp/80 (NAT rr: .10, .11 port 8080), udp/53 (NAT: .12)
//! VIP 198.18.1.2 tcp/80 (DR: 198.18.2.20 on ext)
//! mark 7 = dst 198.18.1.3 tcp {80, 443} (NAT: .30, .31, persistence 300 s /24)
//! drop rule: src 198.18.9.0/24 ; VIP 2001:db8:1::1 tcp/80 (NAT: 2001:db8:2::40)
//! ```

use std::net::IpAddr;
use std::sync::Arc;

use crate::classify::{Action, Classifier, IfaceId, PortRange, Rule};
use crate::conntrack::Timeouts;
use crate::forward::{Director, Shared, Snapshot, TableSizes};
use crate::net::{Iface, NetView, Route};
use crate::sched::{SchedConfig, SchedKind};
use crate::service::{
    DestId, DestState, Method, NextHop, Persistence, RealServer, ServiceKey, ServiceSpec,
    ServiceTable,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The client-facing interface.
pub const EXT: IfaceId = IfaceId(0);
/// The server-facing interface.
pub const INT: IfaceId = IfaceId(1);
/// MAC of `ext`.
pub const EXT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// MAC of `int`.
pub const INT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
/// MAC of the clients (one L2 segment).
pub const CLIENT_MAC: [u8; 6] = [2, 0xc, 0, 0, 0, 0x10];
/// MAC of the IPv6 gateway on `ext`.
pub const GW6_MAC: [u8; 6] = [2, 0xc, 0, 0, 0, 0x66];

/// MAC of real server `id`.
pub fn mac_of(id: u32) -> [u8; 6] {
    [2, 0xa, 0, 0, 0, id as u8]
}

/// A real server of the lab.
pub fn server(
    id: u32,
    addr: &str,
    port: Option<u16>,
    method: Method,
    iface: IfaceId,
) -> RealServer {
    RealServer {
        id: DestId(id),
        addr: ip(addr),
        port,
        weight: 1,
        method,
        backup: false,
        state: DestState::Up,
        max_conns: 0,
        next_hop: Some(NextHop {
            iface,
            mac: mac_of(id),
        }),
    }
}

/// A rr service with default settings.
pub fn service(name: &str, id: u32, key: ServiceKey, servers: Vec<RealServer>) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        stable_id: id,
        key,
        sched: SchedConfig {
            kind: SchedKind::Rr,
            ..SchedConfig::default()
        },
        persistence: None,
        timeouts: Timeouts::default(),
        sloppy_tcp: false,
        servers,
        sorry: None,
        quorum_lost: false,
    }
}

/// A TCP (VIP, port) key.
pub fn tcp_key(addr: &str, port: u16) -> ServiceKey {
    ServiceKey::Tuple {
        protocol: 6,
        addr: ip(addr),
        port,
    }
}

/// The lab's services.
pub fn lab_specs() -> Vec<ServiceSpec> {
    let nat = |id, a| server(id, a, Some(8080), Method::Nat, INT);
    let mut mark = service(
        "mark7",
        5,
        ServiceKey::Mark { mark: 7, v6: false },
        vec![
            server(30, "198.19.0.30", None, Method::Nat, INT),
            server(31, "198.19.0.31", None, Method::Nat, INT),
        ],
    );
    mark.persistence = Some(Persistence {
        timeout_secs: 300,
        prefix: 24,
        expire_quiescent: false,
    });
    vec![
        service(
            "web",
            1,
            tcp_key("198.18.1.1", 80),
            vec![nat(10, "198.19.0.10"), nat(11, "198.19.0.11")],
        ),
        service(
            "dns",
            2,
            ServiceKey::Tuple {
                protocol: 17,
                addr: ip("198.18.1.1"),
                port: 53,
            },
            vec![server(12, "198.19.0.12", Some(53), Method::Nat, INT)],
        ),
        service(
            "dr",
            3,
            tcp_key("198.18.1.2", 80),
            vec![server(20, "198.18.2.20", None, Method::Dr, EXT)],
        ),
        service(
            "web6",
            4,
            tcp_key("2001:db8:1::1", 80),
            vec![server(40, "2001:db8:2::40", Some(8080), Method::Nat, INT)],
        ),
        mark,
    ]
}

/// The lab's mark rules: block 198.18.9.0/24; mark 7 for 198.18.1.3 tcp 80 and 443.
pub fn lab_rules() -> Vec<Rule> {
    let any = Rule {
        src: vec![],
        dst: vec![],
        protocol: None,
        src_ports: vec![],
        dst_ports: vec![],
        in_iface: vec![],
        action: Action::Accept,
    };
    vec![
        Rule {
            src: vec!["198.18.9.0/24".parse().unwrap()],
            action: Action::Drop,
            ..any.clone()
        },
        Rule {
            dst: vec!["198.18.1.3/32".parse().unwrap()],
            protocol: Some(6),
            dst_ports: vec![
                PortRange { start: 80, end: 80 },
                PortRange {
                    start: 443,
                    end: 443,
                },
            ],
            action: Action::Mark(7),
            ..any
        },
    ]
}

/// The lab's interfaces, routes and neighbours.
pub fn lab_net() -> NetView {
    NetView::new(
        vec![
            Iface {
                id: EXT,
                name: "ext".into(),
                mac: EXT_MAC,
            },
            Iface {
                id: INT,
                name: "int".into(),
                mac: INT_MAC,
            },
        ],
        vec![
            Route {
                prefix: "198.18.0.0/24".parse().unwrap(),
                iface: EXT,
                gateway: None,
            },
            Route {
                prefix: "2001:db8::/64".parse().unwrap(),
                iface: EXT,
                gateway: Some(ip("2001:db8::ff")),
            },
        ],
        [
            (ip("198.18.0.10"), CLIENT_MAC),
            (ip("198.18.0.11"), CLIENT_MAC),
            (ip("2001:db8::ff"), GW6_MAC),
        ],
    )
}

/// A snapshot of `specs` with the lab's rules and network.
pub fn snapshot(specs: &[ServiceSpec]) -> Arc<Snapshot> {
    Arc::new(Snapshot {
        services: ServiceTable::build(specs).unwrap(),
        rules: Classifier::compile(&lab_rules()).unwrap(),
        net: lab_net(),
    })
}

/// A director over the lab with small tables.
pub fn lab() -> Director {
    lab_with(TableSizes {
        conns: 4096,
        templates: 1024,
        fragments: 256,
        shards: 4,
        max_dests: 128,
        flow_cache: 1024,
        seed: 1,
    })
}

/// A director over the lab with tables of the given sizes.
pub fn lab_with(sizes: TableSizes) -> Director {
    Director::new(Arc::new(Shared::new(sizes)), snapshot(&lab_specs()))
}
