//! Schema tests: every validation error with its exact position and message, and
//! a full example translated into core specs.

use std::net::IpAddr;

use xvs_core::classify::{Action, IfaceId, PortRange};
use xvs_core::sched::SchedKind;
use xvs_core::service::{DestId, DestState, Method, ServiceKey, ServiceTable};

use crate::{
    Backend, CheckKind, ConfigError, IdAllocator, PacketGuard, StatusRange, XdpMode, parse,
};

const F: &str = "t.yaml";

/// Lines 1–3: a director with `ext`, `int` and an empty `services:` header.
const HEAD: &str = "director:\n  interfaces: [ext, int]\nservices:\n";

/// Lines 1–8: HEAD plus one tcp/80 NAT service up to `real_servers:` (line 8);
/// the first real server starts on line 9.
fn web(tail: &str) -> String {
    format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    real_servers:\n{tail}"
    )
}

fn err(text: &str) -> ConfigError {
    match parse(text, F) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_err(text: &str, expected: &str) {
    let e = err(text);
    assert_eq!(e.to_string(), expected, "for:\n{text}");
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn minimal_service_parses_with_defaults() {
    let c = parse(&web("      - address: 198.19.0.10\n"), F).unwrap();
    assert_eq!(c.director.interfaces, ["ext", "int"]);
    assert_eq!(c.director.backend, Backend::AfXdp);
    assert_eq!(c.director.xdp_mode, XdpMode::Auto);
    assert_eq!(c.director.packet_guard, PacketGuard::Auto);
    assert_eq!(c.director.cores, [0]);
    assert_eq!(c.director.tables.connections, 1 << 20);
    assert_eq!(c.director.tables.shards, 64);
    assert_eq!(c.director.table_sizes().flow_cache, 1 << 16);
    let s = &c.services[0];
    assert_eq!(s.sched.kind, SchedKind::Wlc);
    assert_eq!(s.method, Method::Nat);
    assert_eq!(s.quorum, 1);
    assert_eq!(s.real_servers[0].weight, 1);
    assert_eq!(s.real_servers[0].port, None);
}

// ---- syntax and types -------------------------------------------------------

#[test]
fn syntax_error_has_position() {
    let e = err("director:\n  interfaces: [ext, int\nservices: []\n");
    assert!(matches!(e, ConfigError::Syntax { .. }), "{e}");
    let (line, _) = e.location().unwrap();
    assert!((2..=3).contains(&line), "{e}");
    assert!(e.to_string().starts_with(&format!("t.yaml:{line}:")), "{e}");
}

#[test]
fn duplicate_yaml_key_is_a_syntax_error() {
    assert_err(
        "director:\n  interfaces: [ext]\n  interfaces: [int]\n",
        "t.yaml:3:3: duplicate key `interfaces`",
    );
}

#[test]
fn wrong_type_quoted_number() {
    assert_err(
        &web("      - address: 198.19.0.10\n        port: \"8080\"\n"),
        "t.yaml:10:15: services[0].real_servers[0].port: expected an integer, found the string \"8080\"",
    );
}

#[test]
fn wrong_type_list_for_scalar() {
    assert_err(
        &web("      - address: [198.19.0.10]\n"),
        "t.yaml:9:18: services[0].real_servers[0].address: expected an IP address, found a list",
    );
}

#[test]
fn unknown_key_in_real_server() {
    assert_err(
        &web("      - address: 198.19.0.10\n        wieght: 3\n"),
        "t.yaml:10:9: services[0].real_servers[0].wieght: unknown key `wieght` (expected one of: \
         address, port, weight, method, backup, max_conns, mac, check)",
    );
}

#[test]
fn unknown_key_at_top_level_and_in_director() {
    assert_err(
        "director:\n  interfaces: [ext]\nservice: []\n",
        "t.yaml:3:1: service: unknown key `service` (expected one of: director, rules, services)",
    );
    let e = err("director:\n  interfaces: [ext]\n  tables: {conections: 2048}\n");
    assert_eq!(e.location(), Some((3, 12)));
    assert_eq!(e.path(), Some("director.tables.conections"));
}

#[test]
fn empty_file() {
    assert_err(
        "# nothing\n",
        "t.yaml:1:1: (top level): empty configuration: missing required key `director`",
    );
}

// ---- director ---------------------------------------------------------------

#[test]
fn empty_interfaces() {
    assert_err(
        "director:\n  interfaces: []\n",
        "t.yaml:2:15: director.interfaces: at least one interface is required",
    );
}

#[test]
fn duplicate_interface() {
    assert_err(
        "director:\n  interfaces: [ext, int, ext]\n",
        "t.yaml:2:26: director.interfaces[2]: interface `ext` is listed twice",
    );
}

#[test]
fn shards_power_of_two_and_connections_minimum() {
    assert_err(
        "director:\n  interfaces: [ext]\n  tables:\n    shards: 48\n",
        "t.yaml:4:13: director.tables.shards: 48 is not a power of two",
    );
    assert_err(
        "director:\n  interfaces: [ext]\n  tables:\n    connections: 100\n",
        "t.yaml:4:18: director.tables.connections: 100 is out of range 1024..=4294967296",
    );
    assert_err(
        "director:\n  interfaces: [ext]\n  tables:\n    flow_cache: 2\n",
        "t.yaml:4:17: director.tables.flow_cache: 2 is out of range 4..=16777216",
    );
}

#[test]
fn http_digest_is_md5_hex() {
    let svc = |digest: &str| {
        format!(
            "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    \
             check: {{type: http, digest: {digest}}}\n    real_servers: [{{address: 198.19.0.10, port: 8080}}]\n"
        )
    };
    let c = parse(&svc("444bcb3a3fcf8389296c49467f27e1d6"), F).unwrap();
    match &c.services[0].check.as_ref().unwrap().kind {
        CheckKind::Http(h) => assert_eq!(h.digest.unwrap()[..2], [0x44, 0x4b]),
        other => panic!("{other:?}"),
    }
    let e = err(&svc("444bcb3a")).to_string();
    assert!(
        e.starts_with("t.yaml:8:") && e.contains("is not an MD5 digest"),
        "{e}"
    );
}

#[test]
fn control_group_and_removed_servers() {
    let c = parse(
        "director:\n  interfaces: [ext]\n  control_group: xvsadm\n  removed_servers: reset\n",
        F,
    )
    .unwrap();
    assert_eq!(c.director.control_group.as_deref(), Some("xvsadm"));
    assert_eq!(c.director.removed_servers, crate::RemovedServers::Reset);
    let d = parse("director:\n  interfaces: [ext]\n", F).unwrap();
    assert_eq!(
        (d.director.control_group, d.director.removed_servers),
        (None, crate::RemovedServers::Keep)
    );
    assert_err(
        "director:\n  interfaces: [ext]\n  removed_servers: drop\n",
        "t.yaml:3:20: director.removed_servers: unknown value `drop` (expected one of: keep, reset)",
    );
    assert_err(
        "director:\n  interfaces: [ext]\n  control_group: 'a b'\n",
        "t.yaml:3:18: director.control_group: `a b` is not a valid group name",
    );
}

#[test]
fn unknown_enum_value() {
    assert_err(
        "director:\n  interfaces: [ext]\n  backend: dpdk\n",
        "t.yaml:3:12: director.backend: unknown value `dpdk` (expected one of: af_xdp, af_packet)",
    );
}

#[test]
fn duplicate_core() {
    assert_err(
        "director:\n  interfaces: [ext]\n  cores: [1, 1]\n",
        "t.yaml:3:14: director.cores[1]: core 1 is listed twice",
    );
}

// ---- rules ------------------------------------------------------------------

#[test]
fn rule_unknown_interface() {
    assert_err(
        "director:\n  interfaces: [ext, int]\nrules:\n  - in_interface: [ext, wan]\n    action: drop\n",
        "t.yaml:4:25: rules[0].in_interface[1]: unknown interface `wan` (director.interfaces: ext, int)",
    );
}

#[test]
fn rule_bad_values() {
    let head = "director:\n  interfaces: [ext]\nrules:\n";
    assert_err(
        &format!("{head}  - action: {{mark: 0}}\n"),
        "t.yaml:4:20: rules[0].action.mark: 0 is out of range 1..=4294967295",
    );
    assert_err(
        &format!("{head}  - dst_ports: [443-80]\n    action: drop\n"),
        "t.yaml:4:17: rules[0].dst_ports[0]: empty port range 443-80",
    );
    assert_err(
        &format!("{head}  - src: [198.18.0.0/33]\n    action: drop\n"),
        "t.yaml:4:11: rules[0].src[0]: `198.18.0.0/33` is not a CIDR (like 198.18.0.0/24)",
    );
    assert_err(
        &format!("{head}  - action: mark\n"),
        "t.yaml:4:13: rules[0].action: unknown action `mark` (expected drop, accept or {mark: N})",
    );
    assert_err(
        &format!("{head}  - protocol: sctpx\n    action: drop\n"),
        "t.yaml:4:15: rules[0].protocol: unknown value `sctpx` (expected one of: tcp, udp, icmp, icmpv6)",
    );
    assert_err(
        &format!("{head}  - src: [198.18.0.0/24]\n"),
        "t.yaml:4:5: rules[0]: missing required key `action`",
    );
}

#[test]
fn rules_decode() {
    let c = parse(
        "director:\n  interfaces: [ext, int]\nrules:\n\
         \x20 - src: [198.18.9.7/24, 2001:db8::1]\n    protocol: 132\n\
         \x20   src_ports: [1024-65535, \"7\"]\n    dst_ports: [80, 443]\n\
         \x20   in_interface: [int]\n    action: {mark: 9}\n  - action: accept\n",
        F,
    )
    .unwrap();
    let r = &c.rules[0];
    assert_eq!(r.src[0].to_string(), "198.18.9.0/24");
    assert_eq!(r.src[1].to_string(), "2001:db8::1/128");
    assert_eq!(r.protocol, Some(132));
    assert_eq!(
        r.src_ports,
        [PortRange::new(1024, 65535), PortRange::single(7)]
    );
    assert_eq!(r.dst_ports, [PortRange::single(80), PortRange::single(443)]);
    assert_eq!(r.in_iface, [IfaceId(1)]);
    assert_eq!(r.action, Action::Mark(9));
    assert_eq!(c.rules[1].action, Action::Accept);
}

// ---- services ---------------------------------------------------------------

#[test]
fn weight_out_of_range() {
    assert_err(
        &web("      - address: 198.19.0.10\n      - address: 198.19.0.11\n        weight: 70000\n"),
        "t.yaml:11:17: services[0].real_servers[1].weight: 70000 is out of range 0..=65535",
    );
}

#[test]
fn real_server_port_zero() {
    assert_err(
        &web("      - address: 198.19.0.10\n        port: 0\n"),
        "t.yaml:10:15: services[0].real_servers[0].port: port 0 is not a port a server listens on \
         (omit `port` to keep the destination port)",
    );
}

#[test]
fn sorry_server_port_zero() {
    assert_err(
        &format!(
            "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    sorry_server: {{address: 198.19.0.9, port: 0}}\n"
        ),
        "t.yaml:8:47: services[0].sorry_server.port: port 0 is not a port a server listens on \
         (omit `port` to keep the destination port)",
    );
}

#[test]
fn family_mismatch() {
    assert_err(
        &web("      - address: 2001:db8:2::10\n"),
        "t.yaml:9:18: services[0].real_servers[0].address: 2001:db8:2::10 is IPv6 but the service is IPv4",
    );
    // Mark services are IPv4 unless `family: ipv6`.
    assert_err(
        "director:\n  interfaces: [ext]\nrules:\n  - action: {mark: 7}\nservices:\n\
         \x20 - name: m\n    mark: 7\n    family: ipv6\n    real_servers: [{address: 198.19.0.1}]\n",
        "t.yaml:9:30: services[0].real_servers[0].address: 198.19.0.1 is IPv4 but the service is IPv6",
    );
    assert_err(
        &format!(
            "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    sorry_server: {{address: \"2001:db8::9\"}}\n"
        ),
        "t.yaml:8:29: services[0].sorry_server.address: 2001:db8::9 is IPv6 but the service is IPv4",
    );
}

#[test]
fn netmask_must_be_contiguous() {
    let text = format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n\
         \x20   persistence: {{netmask: 255.0.255.0}}\n    real_servers: [{{address: 198.19.0.1}}]\n"
    );
    assert_err(
        &text,
        "t.yaml:8:28: services[0].persistence.netmask: 255.0.255.0 is not a contiguous netmask",
    );
}

#[test]
fn persistence_prefix_and_netmask_rules() {
    let svc = |vip: &str, p: &str| {
        format!(
            "{HEAD}  - name: web\n    protocol: tcp\n    vip: \"{vip}\"\n    port: 80\n\
             \x20   persistence: {p}\n    real_servers: [{{address: \"{}\"}}]\n",
            if vip.contains(':') {
                "2001:db8:2::1"
            } else {
                "198.19.0.1"
            }
        )
    };
    assert_err(
        &svc("198.18.1.1", "{prefix: 33}"),
        "t.yaml:8:27: services[0].persistence.prefix: 33 is out of range 0..=32",
    );
    assert_err(
        &svc("2001:db8:1::1", "{netmask: 255.255.255.0}"),
        "t.yaml:8:28: services[0].persistence.netmask: `netmask` is for IPv4 services; use `prefix` for IPv6",
    );
    assert_err(
        &svc("198.18.1.1", "{netmask: 255.255.255.0, prefix: 24}"),
        "t.yaml:8:51: services[0].persistence.prefix: `netmask` and `prefix` are mutually exclusive",
    );
    assert_err(
        &svc("198.18.1.1", "{timeout: 0}"),
        "t.yaml:8:28: services[0].persistence.timeout: 0 is out of range 1..=4294967295",
    );
    let c = parse(&svc("2001:db8:1::1", "{prefix: 64}"), F).unwrap();
    assert_eq!(c.services[0].persistence.unwrap().prefix, 64);
    let c = parse(&svc("198.18.1.1", "{netmask: 255.255.255.0}"), F).unwrap();
    let p = c.services[0].persistence.unwrap();
    assert_eq!(
        (p.prefix, p.timeout_secs, p.expire_quiescent),
        (24, 300, false)
    );
}

#[test]
fn duplicate_service_name() {
    let text = format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    real_servers: [{{address: 198.19.0.1}}]\n\
         \x20 - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 443\n    real_servers: [{{address: 198.19.0.1}}]\n"
    );
    assert_err(
        &text,
        "t.yaml:9:11: services[1].name: duplicate service name `web` (first defined on line 4)",
    );
}

#[test]
fn duplicate_service_key() {
    let text = format!(
        "{HEAD}  - name: a\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    real_servers: [{{address: 198.19.0.1}}]\n\
         \x20 - name: b\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    real_servers: [{{address: 198.19.0.2}}]\n"
    );
    assert_err(
        &text,
        "t.yaml:11:10: services[1].vip: service `b` has the same protocol, vip and port as service `a`",
    );
    // Same port, other protocol: fine.
    parse(&text.replace("protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    real_servers: [{address: 198.19.0.2}]", "protocol: udp\n    vip: 198.18.1.1\n    port: 80\n    real_servers: [{address: 198.19.0.2}]"), F).unwrap();
    let marks = "director:\n  interfaces: [ext]\nrules:\n  - action: {mark: 7}\nservices:\n\
                 \x20 - name: a\n    mark: 7\n    real_servers: [{address: 198.19.0.1}]\n\
                 \x20 - name: b\n    mark: 7\n    family: ipv4\n    real_servers: [{address: 198.19.0.2}]\n";
    assert_err(
        marks,
        "t.yaml:10:11: services[1].mark: service `b` has the same mark and family as service `a`",
    );
    // The IPv6 group of the same mark is another service.
    parse(
        &marks.replace(
            "family: ipv4\n    real_servers: [{address: 198.19.0.2}]",
            "family: ipv6\n    real_servers: [{address: \"2001:db8:2::2\"}]",
        ),
        F,
    )
    .unwrap();
}

#[test]
fn mark_service_needs_a_rule() {
    assert_err(
        "director:\n  interfaces: [ext]\nrules:\n  - action: {mark: 7}\nservices:\n\
         \x20 - name: m\n    mark: 8\n    real_servers: [{address: 198.19.0.1}]\n",
        "t.yaml:7:11: services[0].mark: no rule sets mark 8 (add a rule with `action: {mark: 8}`)",
    );
}

#[test]
fn vip_and_mark_shapes() {
    assert_err(
        &format!("{HEAD}  - name: x\n    real_servers: [{{address: 198.19.0.1}}]\n"),
        "t.yaml:4:5: services[0]: a service needs either `vip` (with `protocol` and `port`) or `mark`",
    );
    assert_err(
        &format!(
            "{HEAD}  - name: x\n    vip: 198.18.1.1\n    protocol: tcp\n    real_servers: [{{address: 198.19.0.1}}]\n"
        ),
        "t.yaml:4:5: services[0]: missing required key `port` (required with `vip`; 0 = all ports)",
    );
    assert_err(
        &format!(
            "{HEAD}  - name: x\n    vip: 198.18.1.1\n    port: 53\n    protocol: icmp\n    real_servers: [{{address: 198.19.0.1}}]\n"
        ),
        "t.yaml:7:15: services[0].protocol: unknown value `icmp` (expected one of: tcp, udp)",
    );
    assert_err(
        "director:\n  interfaces: [ext]\nrules:\n  - action: {mark: 7}\nservices:\n\
         \x20 - name: m\n    mark: 7\n    protocol: tcp\n    real_servers: [{address: 198.19.0.1}]\n",
        "t.yaml:8:15: services[0].protocol: `protocol` is not allowed with `mark` (the rules select packets)",
    );
}

#[test]
fn real_servers_required_unless_sorry() {
    assert_err(
        &web("      []\n").replace("real_servers:\n      []", "real_servers: []"),
        "t.yaml:8:19: services[0].real_servers: at least one real server is required (or a `sorry_server`)",
    );
    let c = parse(
        &format!("{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    sorry_server: {{address: 198.19.0.9}}\n"),
        F,
    )
    .unwrap();
    assert!(c.services[0].real_servers.is_empty());
}

#[test]
fn duplicate_real_server() {
    assert_err(
        &web(
            "      - address: 198.19.0.10\n        port: 80\n      - {address: 198.19.0.10, port: 80}\n",
        ),
        "t.yaml:11:9: services[0].real_servers[1]: real server 198.19.0.10 (port 80) is listed twice",
    );
}

#[test]
fn scheduler_flags_only_for_sh_mh() {
    let text = format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n\
         \x20   scheduler: rr\n    scheduler_flags: [fallback]\n    real_servers: [{{address: 198.19.0.1}}]\n"
    );
    assert_err(
        &text,
        "t.yaml:9:22: services[0].scheduler_flags: scheduler_flags only apply to the sh and mh schedulers (this service uses rr)",
    );
    let c = parse(&text.replace("scheduler: rr", "scheduler: sh"), F).unwrap();
    assert!(c.services[0].sched.flags.fallback);
    assert!(!c.services[0].sched.flags.port);
}

#[test]
fn mh_table_size_prime_and_mh_only() {
    let text = format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n\
         \x20   scheduler: mh\n    mh_table_size: 65536\n    real_servers: [{{address: 198.19.0.1}}]\n"
    );
    assert_err(
        &text,
        "t.yaml:9:20: services[0].mh_table_size: 65536 is not prime (the Maglev table size must be)",
    );
    assert_err(
        &text.replace("scheduler: mh", "scheduler: sh"),
        "t.yaml:9:20: services[0].mh_table_size: mh_table_size only applies to the mh scheduler (this service uses sh)",
    );
    assert_err(
        &text.replace("65536", "31"),
        "t.yaml:9:20: services[0].mh_table_size: Maglev table size 31 is too small for 1 servers \
         (needs at least 32 slots per server; default 65537)",
    );
    let c = parse(&text.replace("65536", "251"), F).unwrap();
    assert_eq!(c.services[0].sched.mh_table_size, 251);
}

#[test]
fn dr_cannot_rewrite_ports() {
    let text = format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n    method: dr\n\
         \x20   real_servers:\n      - address: 198.18.2.20\n        port: 8080\n"
    );
    assert_err(
        &text,
        "t.yaml:11:15: services[0].real_servers[0].port: DR cannot rewrite ports: port 8080 differs \
         from the service port 80 (omit `port`)",
    );
    // The same port is allowed, and a NAT override is too.
    parse(&text.replace("8080", "80"), F).unwrap();
    parse(
        &text.replace("port: 8080", "port: 8080\n        method: nat"),
        F,
    )
    .unwrap();
    // All-ports service: no port at all under DR.
    assert_err(
        &text.replace("port: 80\n", "port: 0\n"),
        "t.yaml:11:15: services[0].real_servers[0].port: DR cannot rewrite ports: port 8080 on a mark \
         or all-ports service (omit `port`)",
    );
}

#[test]
fn bad_mac() {
    assert_err(
        &web("      - address: 198.19.0.10\n        mac: 01:00:5e:00:00:01\n"),
        "t.yaml:10:14: services[0].real_servers[0].mac: 01:00:5e:00:00:01 is a multicast MAC address",
    );
    assert_err(
        &web("      - address: 198.19.0.10\n        mac: 02:00:00:00:0a\n"),
        "t.yaml:10:14: services[0].real_servers[0].mac: `02:00:00:00:0a` is not a MAC address (like 02:00:00:00:00:0a)",
    );
}

#[test]
fn timeouts() {
    let text = format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n\
         \x20   timeouts: {{tcp: 60, udp: 0}}\n    real_servers: [{{address: 198.19.0.1}}]\n"
    );
    assert_err(
        &text,
        "t.yaml:8:30: services[0].timeouts.udp: 0 is out of range 1..=4294967295",
    );
    let c = parse(&text.replace("udp: 0", "tcp_fin: 5"), F).unwrap();
    let t = c.services[0].timeouts;
    assert_eq!((t.tcp_established, t.tcp_fin, t.tcp_syn), (60, 5, 60));
}

// ---- translation into core specs ----------------------------------------------

const FULL: &str = "\
director:
  interfaces: [ext, int]
  backend: af_packet
  xdp_mode: generic
  packet_guard: nftables
  cores: [1, 0]
  tables: {connections: 4096, persistence: 1024, shards: 16}
  control_socket: /run/xvs/xvs.sock
rules:
  - src: [198.18.9.0/24]
    action: drop
  - dst: [198.18.1.3/32]
    protocol: tcp
    dst_ports: [80, 443]
    in_interface: [ext]
    action: {mark: 7}
services:
  - name: web
    protocol: tcp
    vip: 198.18.1.1
    port: 80
    scheduler: rr
    real_servers:
      - {address: 198.19.0.10, port: 8080, mac: 02:0a:00:00:00:0a}
      - {address: 198.19.0.11, port: 8080, weight: 3, max_conns: 100}
      - {address: 198.19.0.12, port: 8080, backup: true}
    sorry_server: {address: 198.19.0.99, port: 8080}
    quorum: 2
  - name: web-dr
    protocol: tcp
    vip: 198.18.1.2
    port: 80
    method: dr
    real_servers:
      - {address: 198.18.2.20}
      - {address: 198.18.2.21, port: 80, method: nat}
  - name: mark7
    mark: 7
    scheduler: mh
    scheduler_flags: [port]
    mh_table_size: 251
    persistence: {timeout: 60, prefix: 24, expire_quiescent: true}
    timeouts: {tcp_syn: 30, tcp: 600, tcp_fin: 60, tcp_close: 5, udp: 100}
    real_servers:
      - address: 198.19.0.30
      - address: 198.19.0.31
  - name: web6
    protocol: tcp
    vip: 2001:db8:1::1
    port: 80
    real_servers: [{address: '2001:db8:2::40', port: 8080}]
";

#[test]
fn full_example_round_trips_into_specs() {
    let c = parse(FULL, F).unwrap();
    assert_eq!(c.director.backend, Backend::AfPacket);
    assert_eq!(c.director.xdp_mode, XdpMode::Generic);
    assert_eq!(c.director.packet_guard, PacketGuard::Nftables);
    assert_eq!(c.director.cores, [1, 0]);
    let sizes = c.director.table_sizes();
    assert_eq!(
        (sizes.conns, sizes.templates, sizes.shards),
        (4096, 1024, 16)
    );
    assert_eq!(
        c.director.control_socket.as_deref(),
        Some(std::path::Path::new("/run/xvs/xvs.sock"))
    );
    assert_eq!(c.director.iface_id("int"), Some(IfaceId(1)));
    assert_eq!(c.rules.len(), 2);
    assert_eq!(c.rules[0].action, Action::Drop);
    assert_eq!(c.rules[1].in_iface, [IfaceId(0)]);

    let mut ids = IdAllocator::new();
    let specs = c.service_specs_with(&mut ids).unwrap();
    assert_eq!(specs.len(), 4);
    let web = &specs[0];
    assert_eq!(web.stable_id, 0);
    assert_eq!(
        web.key,
        ServiceKey::Tuple {
            protocol: 6,
            addr: ip("198.18.1.1"),
            port: 80
        }
    );
    assert_eq!(web.sched.kind, SchedKind::Rr);
    let ids_of: Vec<u32> = web.servers.iter().map(|s| s.id.0).collect();
    assert_eq!(ids_of, [0, 1, 2]);
    assert_eq!(web.servers[1].weight, 3);
    assert_eq!(web.servers[1].max_conns, 100);
    assert!(web.servers[2].backup);
    assert!(
        web.servers
            .iter()
            .all(|s| s.state == DestState::Up && s.next_hop.is_none() && s.port == Some(8080))
    );
    let sorry = web.sorry.as_ref().unwrap();
    assert_eq!(
        (sorry.id, sorry.addr, sorry.port),
        (DestId(3), ip("198.19.0.99"), Some(8080))
    );
    assert!(!web.quorum_lost, "up primary weight 4 >= quorum 2");

    let dr = &specs[1];
    assert_eq!(dr.servers[0].method, Method::Dr);
    assert_eq!(dr.servers[0].port, None);
    assert_eq!(dr.servers[1].method, Method::Nat);

    let mark = &specs[2];
    assert_eq!(mark.key, ServiceKey::Mark { mark: 7, v6: false });
    assert_eq!(mark.sched.kind, SchedKind::Mh);
    assert!(mark.sched.flags.port && !mark.sched.flags.fallback);
    assert_eq!(mark.sched.mh_table_size, 251);
    let p = mark.persistence.unwrap();
    assert_eq!(
        (p.timeout_secs, p.prefix, p.expire_quiescent),
        (60, 24, true)
    );
    let t = mark.timeouts;
    assert_eq!(
        (t.tcp_syn, t.tcp_established, t.tcp_fin, t.tcp_close, t.udp),
        (30, 600, 60, 5, 100)
    );
    assert!(specs[3].servers[0].addr.is_ipv6());

    assert_eq!(c.static_macs(&ids), [(DestId(0), [2, 0xa, 0, 0, 0, 0xa])]);

    // The core accepts the specs.
    let table = ServiceTable::build(&specs).unwrap();
    assert_eq!(table.services().len(), 4);
    assert_eq!(c.service_specs().len(), 4);
}

#[test]
fn quorum_lost_initially_when_weights_cannot_reach_it() {
    let c = parse(&FULL.replace("quorum: 2", "quorum: 5"), F).unwrap();
    assert!(c.service_specs()[0].quorum_lost);
}

#[test]
fn ids_are_stable_across_reloads() {
    let c1 = parse(FULL, F).unwrap();
    let mut ids = IdAllocator::new();
    let s1 = c1.service_specs_with(&mut ids).unwrap();
    // Reload: `web` loses 198.19.0.11, gains .13, and a service is added first.
    let text = FULL
        .replace(
            "      - {address: 198.19.0.11, port: 8080, weight: 3, max_conns: 100}\n",
            "      - {address: 198.19.0.13, port: 8080}\n",
        )
        .replace(
            "services:\n",
            "services:\n  - {name: new, protocol: udp, vip: 198.18.1.9, port: 53, real_servers: [{address: 198.19.0.53}]}\n",
        );
    let c2 = parse(&text, F).unwrap();
    let s2 = c2.service_specs_with(&mut ids).unwrap();
    let by_name = |s: &[xvs_core::service::ServiceSpec], n: &str| {
        s.iter().find(|x| x.name == n).cloned().unwrap()
    };
    for name in ["web", "web-dr", "mark7", "web6"] {
        assert_eq!(by_name(&s1, name).stable_id, by_name(&s2, name).stable_id);
    }
    assert_eq!(by_name(&s2, "new").stable_id, 4);
    let (w1, w2) = (by_name(&s1, "web"), by_name(&s2, "web"));
    assert_eq!(w1.servers[0].id, w2.servers[0].id);
    assert_eq!(w1.servers[2].id, w2.servers[2].id);
    assert_eq!(w1.sorry.unwrap().id, w2.sorry.unwrap().id);
    // Removed .11 keeps its id reserved until released: new servers got fresh ids.
    let all1: Vec<DestId> = s1
        .iter()
        .flat_map(|s| s.servers.iter().map(|d| d.id))
        .collect();
    assert!(!all1.contains(&w2.servers[1].id));
    let removed = w1.servers[1].id;
    // Still carrying connections: not freed; then freed.
    assert!(ids.release_unused(&c2, |id| id == removed).is_empty());
    assert_eq!(ids.release_unused(&c2, |_| false), [removed]);
    let c3 = parse(
        &text.replace(
            "real_servers: [{address: 198.19.0.53}]",
            "real_servers: [{address: 198.19.0.53}, {address: 198.19.0.54}]",
        ),
        F,
    )
    .unwrap();
    let s3 = c3.service_specs_with(&mut ids).unwrap();
    assert_eq!(
        by_name(&s3, "new").servers[1].id,
        removed,
        "lowest free id reused"
    );
    ServiceTable::build(&s3).unwrap();
}

#[test]
fn id_allocator_is_bounded() {
    let c = parse(FULL, F).unwrap();
    let mut ids = IdAllocator::with_max_dests(3);
    assert_eq!(
        c.service_specs_with(&mut ids).unwrap_err(),
        crate::IdError::Exhausted { max: 3 }
    );
}

#[test]
fn error_accessors() {
    let e = err(&web("      - address: 198.19.0.10\n        weight: -1\n"));
    assert_eq!(e.location(), Some((10, 17)));
    assert_eq!(e.path(), Some("services[0].real_servers[0].weight"));
    assert_eq!(e.message(), "expected an integer, found `-1`");
}

#[test]
fn load_names_the_file() {
    let e = crate::load(std::path::Path::new("/nonexistent/xvs.yaml")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("/nonexistent/xvs.yaml: cannot read:"),
        "{e}"
    );
}

// ---- health checks ----------------------------------------------------------

/// HEAD plus a tcp/80 service whose line 8 is `line8` (e.g. a service `check:`),
/// `real_servers:` on line 9 and the servers from line 10.
fn web_with(line8: &str, servers: &str) -> String {
    format!(
        "{HEAD}  - name: web\n    protocol: tcp\n    vip: 198.18.1.1\n    port: 80\n{line8}\n    real_servers:\n{servers}"
    )
}

fn check_err(check: &str, expected: &str) {
    assert_err(
        &web_with(
            &format!("    check: {check}"),
            "      - address: 198.19.0.10\n",
        ),
        expected,
    );
}

#[test]
fn no_check_by_default() {
    let c = parse(&web("      - address: 198.19.0.10\n"), F).unwrap();
    assert_eq!(c.services[0].check, None);
    assert!(!c.services[0].inhibit_on_failure);
    assert_eq!(c.services[0].real_servers[0].check, None);
}

#[test]
fn http_check_with_every_key() {
    let text = web_with(
        "    inhibit_on_failure: true\n    check:\n      type: http\n      interval: 2\n      connect_timeout: 0.5\n\
         \x20     retry: 2\n      delay_before_retry: 0.25\n      rise: 3\n      fall: 4\n      warmup: 1.5\n\
         \x20     alpha: true\n      connect_ip: 198.19.0.100\n      connect_port: 8081\n      path: /healthz?full=1\n\
         \x20     host: example.test\n      status: [200, 300-399, \"404\"]\n      expect_body: ok",
        "      - address: 198.19.0.10\n",
    );
    let c = parse(&text, F).unwrap();
    let svc = &c.services[0];
    assert!(svc.inhibit_on_failure);
    let check = svc.check.as_ref().unwrap();
    assert_eq!(
        check.settings,
        xvs_core::health::Settings {
            interval_ms: 2000,
            connect_timeout_ms: 500,
            retry: 2,
            delay_before_retry_ms: 250,
            rise: 3,
            fall: 4,
            warmup_ms: 1500,
            alpha: true,
        }
    );
    assert_eq!(check.connect_ip, Some(ip("198.19.0.100")));
    assert_eq!(check.connect_port, Some(8081));
    let CheckKind::Http(h) = &check.kind else {
        panic!("{check:?}")
    };
    assert_eq!(h.path, "/healthz?full=1");
    assert_eq!(h.host.as_deref(), Some("example.test"));
    assert_eq!(
        h.status,
        [
            StatusRange { lo: 200, hi: 200 },
            StatusRange { lo: 300, hi: 399 },
            StatusRange { lo: 404, hi: 404 },
        ]
    );
    assert!(h.status_ok(404) && h.status_ok(302) && !h.status_ok(201));
    assert_eq!(h.expect_body.as_deref(), Some("ok"));
    // The server inherits the service's check.
    assert_eq!(svc.real_servers[0].check.as_ref(), Some(check));
}

#[test]
fn check_defaults() {
    let c = parse(
        &web_with("    check: {type: http}", "      - address: 198.19.0.10\n"),
        F,
    )
    .unwrap();
    let check = c.services[0].check.as_ref().unwrap();
    assert_eq!(check.settings, xvs_core::health::Settings::default());
    assert_eq!(
        check.kind,
        CheckKind::Http(crate::HttpCheck {
            digest: None,
            path: "/".into(),
            host: None,
            status: vec![StatusRange { lo: 200, hi: 299 }],
            expect_body: None,
        })
    );
    assert_eq!((check.connect_ip, check.connect_port), (None, None));
}

#[test]
fn server_check_replaces_the_services() {
    let c = parse(
        &web_with(
            "    check: {type: tcp, rise: 2}",
            "      - address: 198.19.0.10\n      - address: 198.19.0.11\n        check: {type: udp, payload: ping, expect_body: pong}\n\
             \x20     - address: 198.19.0.12\n        check: {type: misc, command: [/bin/check, -v], dynamic: true}\n",
        ),
        F,
    )
    .unwrap();
    let rs = &c.services[0].real_servers;
    assert_eq!(rs[0].check.as_ref().unwrap().kind, CheckKind::Tcp);
    assert_eq!(rs[0].check.as_ref().unwrap().settings.rise, 2);
    let c1 = rs[1].check.as_ref().unwrap();
    assert_eq!(
        c1.kind,
        CheckKind::Udp(crate::UdpCheck {
            payload: "ping".into(),
            expect_body: Some("pong".into()),
        })
    );
    assert_eq!(c1.settings.rise, 1, "no key-by-key merge");
    assert_eq!(
        rs[2].check.as_ref().unwrap().kind,
        CheckKind::Misc(crate::MiscCheck {
            command: vec!["/bin/check".into(), "-v".into()],
            dynamic: true,
        })
    );
}

#[test]
fn check_bad_type() {
    check_err(
        "{type: icmp}",
        "t.yaml:8:19: services[0].check.type: unknown value `icmp` (expected one of: tcp, http, udp, misc)",
    );
    check_err(
        "{interval: 2}",
        "t.yaml:8:12: services[0].check: missing required key `type`",
    );
    check_err(
        "tcp",
        "t.yaml:8:12: services[0].check: expected a mapping, found `tcp`",
    );
}

#[test]
fn check_status_out_of_range() {
    check_err(
        "{type: http, status: [200, 600]}",
        "t.yaml:8:39: services[0].check.status[1]: HTTP status 600 is out of range 100..=599",
    );
    check_err(
        "{type: http, status: [300-600]}",
        "t.yaml:8:34: services[0].check.status[0]: HTTP status 600 is out of range 100..=599",
    );
    check_err(
        "{type: http, status: [399-300]}",
        "t.yaml:8:34: services[0].check.status[0]: empty status range 399-300",
    );
    check_err(
        "{type: http, status: [2xx]}",
        "t.yaml:8:34: services[0].check.status[0]: `2xx` is not a status code or a range a-b",
    );
    check_err(
        "{type: http, status: []}",
        "t.yaml:8:33: services[0].check.status: at least one status code is required",
    );
}

#[test]
fn check_unknown_and_misplaced_keys() {
    check_err(
        "{type: tcp, intreval: 2}",
        "t.yaml:8:24: services[0].check.intreval: unknown key `intreval` (expected one of: type, \
         interval, connect_timeout, retry, delay_before_retry, rise, fall, warmup, alpha, \
         connect_ip, connect_port, path, host, status, expect_body, digest, payload, command, dynamic)",
    );
    check_err(
        "{type: tcp, path: /}",
        "t.yaml:8:24: services[0].check.path: `path` only applies to http checks (this check is tcp)",
    );
    check_err(
        "{type: misc, command: [x], expect_body: ok}",
        "t.yaml:8:39: services[0].check.expect_body: `expect_body` only applies to http and udp checks (this check is misc)",
    );
    assert_err(
        &web_with(
            "    inhibit_on_failure: 1",
            "      - address: 198.19.0.10\n",
        ),
        "t.yaml:8:25: services[0].inhibit_on_failure: expected true or false, found `1`",
    );
}

#[test]
fn check_durations_and_counts() {
    let c = parse(
        &web_with(
            "    check: {type: tcp, interval: 0.1, connect_timeout: .05, delay_before_retry: 0}",
            "      - address: 198.19.0.10\n",
        ),
        F,
    )
    .unwrap();
    let st = c.services[0].check.as_ref().unwrap().settings;
    assert_eq!(
        (
            st.interval_ms,
            st.connect_timeout_ms,
            st.delay_before_retry_ms
        ),
        (100, 50, 0)
    );
    check_err(
        "{type: tcp, interval: 0}",
        "t.yaml:8:34: services[0].check.interval: 0 s is out of range 0.001..=2147483 s",
    );
    check_err(
        "{type: tcp, interval: 1.0005}",
        "t.yaml:8:34: services[0].check.interval: `1.0005`: at most millisecond precision (3 decimals)",
    );
    check_err(
        "{type: tcp, interval: 2s}",
        "t.yaml:8:34: services[0].check.interval: `2s` is not a number of seconds (like 2 or 0.5)",
    );
    check_err(
        "{type: tcp, interval: \"2\"}",
        "t.yaml:8:34: services[0].check.interval: expected a number of seconds, found the string \"2\"",
    );
    check_err(
        "{type: tcp, rise: 0}",
        "t.yaml:8:30: services[0].check.rise: 0 is out of range 1..=65535",
    );
    check_err(
        "{type: tcp, connect_port: 0}",
        "t.yaml:8:38: services[0].check.connect_port: 0 is out of range 1..=65535",
    );
}

#[test]
fn check_http_path_host_and_misc_command() {
    check_err(
        "{type: http, path: healthz}",
        "t.yaml:8:31: services[0].check.path: path `healthz` must start with `/`",
    );
    check_err(
        "{type: http, host: \"a b\"}",
        "t.yaml:8:31: services[0].check.host: a host must not contain whitespace or control characters",
    );
    check_err(
        "{type: misc}",
        "t.yaml:8:12: services[0].check: missing required key `command`",
    );
    check_err(
        "{type: misc, command: []}",
        "t.yaml:8:34: services[0].check.command: the command needs at least a program",
    );
}

#[test]
fn check_needs_a_port_to_probe() {
    let text = "director:\n  interfaces: [ext]\nrules:\n  - action: {mark: 7}\nservices:\n\
                \x20 - name: m\n    mark: 7\n    check: {type: tcp}\n    real_servers:\n      - address: 198.19.0.1\n";
    assert_err(
        text,
        "t.yaml:8:12: services[0].check: a tcp check needs a port: real server 198.19.0.1 has no `port` \
         and the service none; set `connect_port`",
    );
    parse(
        &text.replace("{type: tcp}", "{type: tcp, connect_port: 80}"),
        F,
    )
    .unwrap();
    parse(
        &text.replace("{type: tcp}", "{type: misc, command: [/bin/true]}"),
        F,
    )
    .unwrap();
    parse(
        &text.replace("198.19.0.1\n", "198.19.0.1\n        port: 80\n"),
        F,
    )
    .unwrap();
    // A server's own check is blamed at its own node.
    let own = text
        .replace("    check: {type: tcp}\n", "")
        .replace("198.19.0.1\n", "198.19.0.1\n        check: {type: udp}\n");
    assert_err(
        &own,
        "t.yaml:10:16: services[0].real_servers[0].check: a udp check needs a port: real server 198.19.0.1 \
         has no `port` and the service none; set `connect_port`",
    );
    // A tuple service's port is enough.
    parse(
        &web_with("    check: {type: tcp}", "      - address: 198.19.0.10\n"),
        F,
    )
    .unwrap();
}
