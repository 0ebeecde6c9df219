//! The configuration schema: public, validated types and their decoding from the
//! YAML node tree. Layer: config (control side).
//!
//! Invariants of a decoded [`Config`] (all checked here, each failure reported at
//! the offending node):
//! - interface names are unique and non-empty; `IfaceId(i)` is the i-th;
//! - rules only name known interfaces, never `mark: 0`, never an empty port range;
//! - service names are unique; service keys ((protocol, VIP, port) or
//!   (mark, family)) are unique; every mark service's mark is set by some rule;
//! - every real server and sorry server has the service's address family, a port
//!   in 1..=65535 when it has one, a weight in 0..=65535, and — under DR — no port
//!   different from the service's; (address, port) pairs are unique per service;
//! - scheduler flags only on sh/mh, `mh_table_size` only on mh and prime and large
//!   enough for the servers; persistence netmasks are contiguous and prefixes fit
//!   the family;
//! - at most [`max_dests`] real and sorry servers in all, so a fresh
//!   [`crate::IdAllocator`] can always number them.
//! - every `check:` satisfies the invariants of [`crate::CheckConfig`]; a real
//!   server's effective check is its own or the service's, and a tcp/http/udp check
//!   always has a port to probe (`connect_port`, the server's or the service's).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use xvs_core::TableSizes;
use xvs_core::classify::{Action, IfaceId, PortRange, Rule};
use xvs_core::conntrack::Timeouts;
use xvs_core::sched::{
    MH_DEFAULT_TABLE_SIZE, MH_MAX_TABLE_SIZE, MH_MIN_SLOTS_PER_CANDIDATE, SchedConfig, SchedKind,
};
use xvs_core::service::{Method, Persistence, ServiceKey};

use crate::check::{CheckConfig, decode_check};
use crate::decode::{Ctx, R, Val};
use crate::yaml::Node;

/// A validated configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Director-wide settings.
    pub director: DirectorConfig,
    /// Mark and blocking rules, in order (first match wins).
    pub rules: Vec<Rule>,
    /// Virtual services, in file order.
    pub services: Vec<ServiceConfig>,
}

/// Packet I/O backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Backend {
    /// AF_XDP sockets (default).
    #[default]
    AfXdp,
    /// AF_PACKET fallback.
    AfPacket,
}

/// How the XDP steering program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum XdpMode {
    /// Native if the driver supports it, else generic (default).
    #[default]
    Auto,
    /// Driver (native) mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

/// AF_PACKET mode's guard: what keeps the kernel from also acting on the
/// frames the workers forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum PacketGuard {
    /// The tc guard where the kernel has tcx (Linux ≥ 6.6), else nftables (default).
    #[default]
    Auto,
    /// The steering program at tc ingress only.
    Tc,
    /// An nftables `netdev` ingress table only.
    Nftables,
}

/// Sizes of the shared tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TablesConfig {
    /// Connection table capacity (default 1 << 20, at least 1024).
    pub connections: usize,
    /// Persistence template capacity (default 65536).
    pub persistence: usize,
    /// Shards per table, a power of two (default 64).
    pub shards: usize,
    /// Flow cache entries per worker and address family (default 65536, 4..=1<<24).
    pub flow_cache: usize,
}

impl Default for TablesConfig {
    fn default() -> Self {
        TablesConfig {
            connections: 1 << 20,
            persistence: 65536,
            shards: 64,
            flow_cache: 1 << 16,
        }
    }
}

/// `director:` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectorConfig {
    /// Kernel interface names; index = [`IfaceId`].
    pub interfaces: Vec<String>,
    /// Packet I/O backend.
    pub backend: Backend,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// AF_PACKET mode's guard.
    pub packet_guard: PacketGuard,
    /// CPU ids of the workers (default `[0]`), unique.
    pub cores: Vec<usize>,
    /// Table sizes.
    pub tables: TablesConfig,
    /// Control socket path, if any.
    pub control_socket: Option<PathBuf>,
    /// A group whose members may use the control socket too (mode 0660);
    /// without it only the director's own user may (0600).
    pub control_group: Option<String>,
    /// What a reload does with the connections of servers it removes.
    pub removed_servers: RemovedServers,
}

/// What a reload does with the connections of a real server it removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RemovedServers {
    /// Established connections go on until they end (the server takes no new
    /// flows; IPVS keeps such servers in its trash) — the default.
    #[default]
    Keep,
    /// Established connections are dropped from the table at once (their next
    /// packets find no connection: the clients see resets or timeouts).
    Reset,
}

impl DirectorConfig {
    /// The [`IfaceId`] of an interface name.
    pub fn iface_id(&self, name: &str) -> Option<IfaceId> {
        self.interfaces
            .iter()
            .position(|n| n == name)
            .map(|i| IfaceId(i as u16))
    }

    /// The core's table sizes: `connections`, `persistence`, `shards` and
    /// `flow_cache` from the file, everything else (fragments, `max_dests`, seed) at
    /// the core's default.
    pub fn table_sizes(&self) -> TableSizes {
        TableSizes {
            conns: self.tables.connections,
            templates: self.tables.persistence,
            shards: self.tables.shards,
            flow_cache: self.tables.flow_cache,
            ..TableSizes::default()
        }
    }
}

/// One real server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RealServerConfig {
    /// Address (the service's family).
    pub address: IpAddr,
    /// Port; `None` keeps the packet's destination port.
    pub port: Option<u16>,
    /// 0..=65535; 0 = quiescent.
    pub weight: u32,
    /// Forwarding method (the service's unless overridden).
    pub method: Method,
    /// Used only while no primary is eligible.
    pub backup: bool,
    /// Connection threshold; 0 = unlimited.
    pub max_conns: u32,
    /// Static MAC (overrides the neighbour table). The core's `NextHop` also needs
    /// the out interface, which the control side derives from its routes.
    pub mac: Option<[u8; 6]>,
    /// The server's effective health check: its own `check:`, else the service's;
    /// `None`: not checked (always up).
    pub check: Option<CheckConfig>,
}

/// The sorry server: takes all new flows while the quorum is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SorryServerConfig {
    /// Address (the service's family).
    pub address: IpAddr,
    /// Port; `None` keeps the packet's destination port.
    pub port: Option<u16>,
}

/// One virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceConfig {
    /// Unique name.
    pub name: String,
    /// `(protocol, vip, port)` or `(mark, family)`.
    pub key: ServiceKey,
    /// Scheduler, flags and Maglev table size (`hash_seed` 0: not configurable yet).
    pub sched: SchedConfig,
    /// Default method of the real servers.
    pub method: Method,
    /// Persistence, if any.
    pub persistence: Option<Persistence>,
    /// Connection timeouts (core defaults for those not given).
    pub timeouts: Timeouts,
    /// Real servers (primaries and backups), in file order.
    pub real_servers: Vec<RealServerConfig>,
    /// Sorry server.
    pub sorry_server: Option<SorryServerConfig>,
    /// Minimum summed weight of up primaries (default 1; 0 = no quorum).
    pub quorum: u64,
    /// Quorum hysteresis (default 0), keepalived-style.
    pub hysteresis: u64,
    /// The service's `check:`, default of its real servers (each server's
    /// effective check is in [`RealServerConfig::check`]).
    pub check: Option<CheckConfig>,
    /// keepalived `inhibit_on_failure`: a failed server keeps its place with weight
    /// 0 (true) instead of being removed from new flows (false, default).
    pub inhibit_on_failure: bool,
}

impl ServiceConfig {
    /// IPv6 service.
    pub fn is_v6(&self) -> bool {
        key_is_v6(&self.key)
    }
}

fn key_is_v6(key: &ServiceKey) -> bool {
    match *key {
        ServiceKey::Tuple { addr, .. } => addr.is_ipv6(),
        ServiceKey::Mark { v6, .. } => v6,
    }
}

/// Upper bound on real + sorry servers in one configuration (the core's default
/// `TableSizes::max_dests`, which sizes the shared counters).
pub fn max_dests() -> usize {
    TableSizes::default().max_dests
}

const PROTOCOLS: &[(&str, u8)] = &[("tcp", 6), ("udp", 17), ("icmp", 1), ("icmpv6", 58)];
const METHODS: &[(&str, Method)] = &[("nat", Method::Nat), ("dr", Method::Dr)];
const IFNAMSIZ: usize = 16;
const SERVICE_KEYS: &[&str] = &[
    "name",
    "protocol",
    "vip",
    "port",
    "mark",
    "family",
    "scheduler",
    "scheduler_flags",
    "mh_table_size",
    "method",
    "persistence",
    "timeouts",
    "real_servers",
    "sorry_server",
    "quorum",
    "hysteresis",
    "check",
    "inhibit_on_failure",
];

fn family(v6: bool) -> &'static str {
    if v6 { "IPv6" } else { "IPv4" }
}

/// Decode and validate a whole document.
pub(crate) fn decode(ctx: &Ctx<'_>, root: Option<&Node>) -> R<Config> {
    let Some(root) = root else {
        return Err(ctx.err(
            crate::yaml::Pos { line: 1, col: 1 },
            "",
            "empty configuration: missing required key `director`",
        ));
    };
    let top = Val::root(ctx, root);
    let m = top.map(&["director", "rules", "services"])?;
    let director = decode_director(&m.req("director")?)?;
    let mut rules = Vec::new();
    if let Some(v) = m.opt("rules") {
        for r in v.seq()? {
            rules.push(decode_rule(&r, &director)?);
        }
    }
    let marks: HashSet<u32> = rules
        .iter()
        .filter_map(|r| match r.action {
            Action::Mark(m) => Some(m),
            _ => None,
        })
        .collect();
    let mut services: Vec<ServiceConfig> = Vec::new();
    if let Some(v) = m.opt("services") {
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut keys: HashMap<ServiceKey, String> = HashMap::new();
        let mut dests = 0usize;
        for s in v.seq()? {
            let (svc, name_val, key_val) = decode_service(&s, &marks, &mut dests)?;
            if let Some(line) = names.get(&svc.name) {
                return Err(name_val.err(format!(
                    "duplicate service name `{}` (first defined on line {line})",
                    svc.name
                )));
            }
            names.insert(svc.name.clone(), name_val.pos().line);
            if let Some(other) = keys.get(&svc.key) {
                return Err(key_val.err(format!(
                    "service `{}` has the same {} as service `{other}`",
                    svc.name,
                    match svc.key {
                        ServiceKey::Tuple { .. } => "protocol, vip and port",
                        ServiceKey::Mark { .. } => "mark and family",
                    }
                )));
            }
            keys.insert(svc.key, svc.name.clone());
            services.push(svc);
        }
    }
    Ok(Config {
        director,
        rules,
        services,
    })
}

fn decode_director(v: &Val<'_>) -> R<DirectorConfig> {
    let m = v.map(&[
        "interfaces",
        "backend",
        "xdp_mode",
        "packet_guard",
        "cores",
        "tables",
        "control_socket",
        "control_group",
        "removed_servers",
    ])?;
    let list = m.req("interfaces")?;
    let items = list.seq()?;
    if items.is_empty() {
        return Err(list.err("at least one interface is required"));
    }
    if items.len() > usize::from(u16::MAX) {
        return Err(list.err("too many interfaces"));
    }
    let mut interfaces: Vec<String> = Vec::new();
    for it in &items {
        let name = it.name()?;
        if name.len() >= IFNAMSIZ || name.contains(['/', ' ', ':']) {
            return Err(it.err(format!("`{name}` is not a valid interface name")));
        }
        if interfaces.iter().any(|n| n == name) {
            return Err(it.err(format!("interface `{name}` is listed twice")));
        }
        interfaces.push(name.to_owned());
    }
    let backend = match m.opt("backend") {
        Some(b) => b.one_of(&[("af_xdp", Backend::AfXdp), ("af_packet", Backend::AfPacket)])?,
        None => Backend::AfXdp,
    };
    let xdp_mode = match m.opt("xdp_mode") {
        Some(x) => x.one_of(&[
            ("auto", XdpMode::Auto),
            ("native", XdpMode::Native),
            ("generic", XdpMode::Generic),
        ])?,
        None => XdpMode::Auto,
    };
    let packet_guard = match m.opt("packet_guard") {
        Some(g) => g.one_of(&[
            ("auto", PacketGuard::Auto),
            ("tc", PacketGuard::Tc),
            ("nftables", PacketGuard::Nftables),
        ])?,
        None => PacketGuard::Auto,
    };
    let mut cores = Vec::new();
    if let Some(list) = m.opt("cores") {
        let items = list.seq()?;
        if items.is_empty() {
            return Err(list.err("at least one core is required (omit `cores` for [0])"));
        }
        for it in &items {
            let c = it.uint(0, 65535)? as usize;
            if cores.contains(&c) {
                return Err(it.err(format!("core {c} is listed twice")));
            }
            cores.push(c);
        }
    } else {
        cores.push(0);
    }
    let mut tables = TablesConfig::default();
    if let Some(t) = m.opt("tables") {
        let t = t.map(&["connections", "persistence", "shards", "flow_cache"])?;
        if let Some(c) = t.opt("connections") {
            tables.connections = c.uint(1024, 1 << 32)? as usize;
        }
        if let Some(p) = t.opt("persistence") {
            tables.persistence = p.uint(1, 1 << 32)? as usize;
        }
        if let Some(s) = t.opt("shards") {
            let n = s.uint(1, 1 << 16)?;
            if !n.is_power_of_two() {
                return Err(s.err(format!("{n} is not a power of two")));
            }
            tables.shards = n as usize;
        }
        if let Some(f) = t.opt("flow_cache") {
            tables.flow_cache = f.uint(4, 1 << 24)? as usize;
        }
    }
    let control_socket = match m.opt("control_socket") {
        Some(s) => Some(PathBuf::from(s.name()?)),
        None => None,
    };
    let control_group = match m.opt("control_group") {
        Some(g) => {
            let name = g.name()?;
            if name.is_empty() || name.contains([':', '/', ' ']) {
                return Err(g.err(format!("`{name}` is not a valid group name")));
            }
            Some(name.to_owned())
        }
        None => None,
    };
    let removed_servers = match m.opt("removed_servers") {
        Some(r) => r.one_of(&[
            ("keep", RemovedServers::Keep),
            ("reset", RemovedServers::Reset),
        ])?,
        None => RemovedServers::Keep,
    };
    Ok(DirectorConfig {
        interfaces,
        backend,
        xdp_mode,
        packet_guard,
        cores,
        tables,
        control_socket,
        control_group,
        removed_servers,
    })
}

fn decode_cidr(v: &Val<'_>) -> R<IpNet> {
    let s = v.str()?.trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>().ok()
    } else {
        s.parse::<IpAddr>().ok().map(IpNet::from)
    };
    net.map(|n| n.trunc())
        .ok_or_else(|| v.err(format!("`{s}` is not a CIDR (like 198.18.0.0/24)")))
}

fn is_plain_number(v: &Val<'_>) -> bool {
    matches!(&v.node.kind, crate::yaml::Kind::Scalar { text, plain: true }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
}

fn decode_protocol(v: &Val<'_>) -> R<u8> {
    if is_plain_number(v) {
        Ok(v.uint(0, 255)? as u8)
    } else {
        v.one_of(PROTOCOLS)
    }
}

fn decode_port_range(v: &Val<'_>) -> R<PortRange> {
    if is_plain_number(v) {
        return Ok(PortRange::single(v.uint(0, 65535)? as u16));
    }
    let s = v.str().map_err(|_| {
        v.err(format!(
            "expected a port or a range a-b, found {}",
            v.node.describe()
        ))
    })?;
    let bad = || v.err(format!("`{s}` is not a port or a port range a-b"));
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (s.trim(), s.trim()),
    };
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b {
        return Err(v.err(format!("empty port range {a}-{b}")));
    }
    Ok(PortRange::new(a, b))
}

fn decode_action(v: &Val<'_>) -> R<Action> {
    if v.is_map() {
        let m = v.map(&["mark"])?;
        let mark = m.req("mark")?.uint(1, u64::from(u32::MAX))? as u32;
        return Ok(Action::Mark(mark));
    }
    let expected = "drop, accept or {mark: N}";
    match v.str() {
        Ok("drop") => Ok(Action::Drop),
        Ok("accept") => Ok(Action::Accept),
        Ok(s) => Err(v.err(format!("unknown action `{s}` (expected {expected})"))),
        Err(_) => Err(v.err(format!("expected {expected}, found {}", v.node.describe()))),
    }
}

fn list<'a>(v: Option<Val<'a>>) -> R<Vec<Val<'a>>> {
    match v {
        Some(l) => l.seq(),
        None => Ok(Vec::new()),
    }
}

fn decode_rule(v: &Val<'_>, director: &DirectorConfig) -> R<Rule> {
    let m = v.map(&[
        "src",
        "dst",
        "protocol",
        "src_ports",
        "dst_ports",
        "in_interface",
        "action",
    ])?;
    let mut rule = Rule::new(Action::Accept);
    for it in list(m.opt("src"))? {
        rule.src.push(decode_cidr(&it)?);
    }
    for it in list(m.opt("dst"))? {
        rule.dst.push(decode_cidr(&it)?);
    }
    if let Some(p) = m.opt("protocol") {
        rule.protocol = Some(decode_protocol(&p)?);
    }
    for it in list(m.opt("src_ports"))? {
        rule.src_ports.push(decode_port_range(&it)?);
    }
    for it in list(m.opt("dst_ports"))? {
        rule.dst_ports.push(decode_port_range(&it)?);
    }
    for it in list(m.opt("in_interface"))? {
        let name = it.name()?;
        let id = director.iface_id(name).ok_or_else(|| {
            it.err(format!(
                "unknown interface `{name}` (director.interfaces: {})",
                director.interfaces.join(", ")
            ))
        })?;
        rule.in_iface.push(id);
    }
    rule.action = decode_action(&m.req("action")?)?;
    Ok(rule)
}

fn decode_mac(v: &Val<'_>) -> R<[u8; 6]> {
    let s = v.str()?;
    let bad = || {
        v.err(format!(
            "`{s}` is not a MAC address (like 02:00:00:00:00:0a)"
        ))
    };
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        if p.len() != 2 {
            return Err(bad());
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if mac[0] & 1 != 0 {
        return Err(v.err(format!("{s} is a multicast MAC address")));
    }
    if mac == [0; 6] {
        return Err(v.err("the all-zero MAC address is not a station address"));
    }
    Ok(mac)
}

fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// What a service's real servers are checked against.
struct ServerCtx<'a> {
    v6: bool,
    method: Method,
    /// The service's port when it has a single nonzero one.
    service_port: Option<u16>,
    /// The service's `check:` and its node (for errors about it).
    check: Option<(CheckConfig, Val<'a>)>,
}

/// Address with the family check.
fn decode_address(v: &Val<'_>, sc: &ServerCtx<'_>) -> R<IpAddr> {
    let a = v.ip()?;
    if a.is_ipv6() != sc.v6 {
        return Err(v.err(format!(
            "{a} is {} but the service is {}",
            family(a.is_ipv6()),
            family(sc.v6)
        )));
    }
    Ok(a)
}

/// Optional server port: 1..=65535, and under DR equal to the service port.
fn decode_server_port(v: Option<Val<'_>>, method: Method, sc: &ServerCtx<'_>) -> R<Option<u16>> {
    let Some(v) = v else { return Ok(None) };
    let p = v.uint(0, 65535)? as u16;
    if p == 0 {
        return Err(v.err(
            "port 0 is not a port a server listens on (omit `port` to keep the destination port)",
        ));
    }
    if method == Method::Dr && Some(p) != sc.service_port {
        return Err(v.err(match sc.service_port {
            Some(sp) => format!(
                "DR cannot rewrite ports: port {p} differs from the service port {sp} (omit `port`)"
            ),
            None => format!(
                "DR cannot rewrite ports: port {p} on a mark or all-ports service (omit `port`)"
            ),
        }));
    }
    Ok(Some(p))
}

fn decode_real_server(v: &Val<'_>, sc: &ServerCtx<'_>) -> R<RealServerConfig> {
    let m = v.map(&[
        "address",
        "port",
        "weight",
        "method",
        "backup",
        "max_conns",
        "mac",
        "check",
    ])?;
    let address = decode_address(&m.req("address")?, sc)?;
    let method = match m.opt("method") {
        Some(x) => x.one_of(METHODS)?,
        None => sc.method,
    };
    let port = decode_server_port(m.opt("port"), method, sc)?;
    let weight = match m.opt("weight") {
        Some(w) => w.uint(0, 65535)? as u32,
        None => 1,
    };
    let backup = match m.opt("backup") {
        Some(b) => b.bool()?,
        None => false,
    };
    let max_conns = match m.opt("max_conns") {
        Some(x) => x.uint(0, u64::from(u32::MAX))? as u32,
        None => 0,
    };
    let mac = match m.opt("mac") {
        Some(x) => Some(decode_mac(&x)?),
        None => None,
    };
    let check = match m.opt("check") {
        Some(c) => Some((decode_check(&c)?, c)),
        None => sc.check.clone(),
    };
    if let Some((c, at)) = &check
        && c.kind.needs_port()
        && c.connect_port.or(port).or(sc.service_port).is_none()
    {
        return Err(at.err(format!(
            "a {} check needs a port: real server {address} has no `port` and the service none; set `connect_port`",
            c.kind.name()
        )));
    }
    let check = check.map(|(c, _)| c);
    Ok(RealServerConfig {
        address,
        port,
        weight,
        method,
        backup,
        max_conns,
        mac,
        check,
    })
}

fn decode_persistence(v: &Val<'_>, v6: bool) -> R<Persistence> {
    let m = v.map(&["timeout", "netmask", "prefix", "expire_quiescent"])?;
    let timeout_secs = match m.opt("timeout") {
        Some(t) => t.uint(1, u64::from(u32::MAX))? as u32,
        None => 300,
    };
    let netmask = m.opt("netmask");
    let prefix = m.opt("prefix");
    let max = if v6 { 128 } else { 32 };
    let prefix = match (netmask, prefix) {
        (Some(_), Some(p)) => {
            return Err(p.err("`netmask` and `prefix` are mutually exclusive"));
        }
        (Some(n), None) => {
            if v6 {
                return Err(n.err("`netmask` is for IPv4 services; use `prefix` for IPv6"));
            }
            let s = n.str()?;
            let mask: Ipv4Addr = s
                .parse()
                .map_err(|_| n.err(format!("`{s}` is not an IPv4 netmask")))?;
            let bits = u32::from(mask);
            if bits.leading_ones() + bits.trailing_zeros() != 32 {
                return Err(n.err(format!("{s} is not a contiguous netmask")));
            }
            bits.leading_ones() as u8
        }
        (None, Some(p)) => p.uint(0, max)? as u8,
        (None, None) => max as u8,
    };
    let expire_quiescent = match m.opt("expire_quiescent") {
        Some(b) => b.bool()?,
        None => false,
    };
    Ok(Persistence {
        timeout_secs,
        prefix,
        expire_quiescent,
    })
}

fn decode_timeouts(v: &Val<'_>) -> R<Timeouts> {
    let m = v.map(&["tcp_syn", "tcp", "tcp_fin", "tcp_close", "udp"])?;
    let mut t = Timeouts::default();
    for (key, slot) in [
        ("tcp_syn", &mut t.tcp_syn),
        ("tcp", &mut t.tcp_established),
        ("tcp_fin", &mut t.tcp_fin),
        ("tcp_close", &mut t.tcp_close),
        ("udp", &mut t.udp),
    ] {
        if let Some(x) = m.opt(key) {
            *slot = x.uint(1, u64::from(u32::MAX))? as u32;
        }
    }
    Ok(t)
}

/// One service; also returns the nodes its duplicate checks point at (name, key).
fn decode_service<'a>(
    v: &Val<'a>,
    marks: &HashSet<u32>,
    dests: &mut usize,
) -> R<(ServiceConfig, Val<'a>, Val<'a>)> {
    let m = v.map(SERVICE_KEYS)?;
    let name_val = m.req("name")?;
    let name = name_val.name()?.to_owned();
    let protocol = m.opt("protocol");
    let vip = m.opt("vip");
    let port = m.opt("port");
    let mark = m.opt("mark");
    let fam = m.opt("family");
    let (key, key_val) = match (vip, mark) {
        (Some(_), Some(mk)) => {
            return Err(mk.err("`vip` and `mark` are mutually exclusive"));
        }
        (None, None) => {
            return Err(m
                .val()
                .err("a service needs either `vip` (with `protocol` and `port`) or `mark`"));
        }
        (Some(vip), None) => {
            let addr = vip.ip()?;
            let protocol = protocol
                .ok_or_else(|| {
                    m.val()
                        .err("missing required key `protocol` (required with `vip`)")
                })?
                .one_of(&PROTOCOLS[..2])?;
            let port = port
                .ok_or_else(|| {
                    m.val()
                        .err("missing required key `port` (required with `vip`; 0 = all ports)")
                })?
                .uint(0, 65535)? as u16;
            if let Some(f) = fam {
                return Err(f.err("`family` is only allowed with `mark` (a VIP has its own)"));
            }
            (
                ServiceKey::Tuple {
                    protocol,
                    addr,
                    port,
                },
                vip,
            )
        }
        (None, Some(mk)) => {
            if let Some(p) = protocol {
                return Err(
                    p.err("`protocol` is not allowed with `mark` (the rules select packets)")
                );
            }
            if let Some(p) = port {
                return Err(p.err("`port` is not allowed with `mark` (the rules select packets)"));
            }
            let mark = mk.uint(1, u64::from(u32::MAX))? as u32;
            if !marks.contains(&mark) {
                return Err(mk.err(format!(
                    "no rule sets mark {mark} (add a rule with `action: {{mark: {mark}}}`)"
                )));
            }
            let v6 = match fam {
                Some(f) => f.one_of(&[("ipv4", false), ("ipv6", true)])?,
                None => false,
            };
            (ServiceKey::Mark { mark, v6 }, mk)
        }
    };
    let v6 = key_is_v6(&key);
    let mut sched = SchedConfig::default();
    let sched_val = m.opt("scheduler");
    if let Some(s) = &sched_val {
        let kinds: Vec<(&str, SchedKind)> = SchedKind::ALL.iter().map(|k| (k.name(), *k)).collect();
        sched.kind = s.one_of(&kinds)?;
    }
    let hashing = matches!(sched.kind, SchedKind::Sh | SchedKind::Mh);
    if let Some(flags) = m.opt("scheduler_flags") {
        if !hashing {
            return Err(flags.err(format!(
                "scheduler_flags only apply to the sh and mh schedulers (this service uses {})",
                sched.kind
            )));
        }
        for f in flags.seq()? {
            match f.one_of(&[("fallback", 0), ("port", 1)])? {
                0 => sched.flags.fallback = true,
                _ => sched.flags.port = true,
            }
        }
    }
    let mh_val = m.opt("mh_table_size");
    if let Some(t) = &mh_val {
        if sched.kind != SchedKind::Mh {
            return Err(t.err(format!(
                "mh_table_size only applies to the mh scheduler (this service uses {})",
                sched.kind
            )));
        }
        let n = t.uint(1, u64::from(MH_MAX_TABLE_SIZE))?;
        if !is_prime(n) {
            return Err(t.err(format!("{n} is not prime (the Maglev table size must be)")));
        }
        sched.mh_table_size = n as u32;
    }
    let method = match m.opt("method") {
        Some(x) => x.one_of(METHODS)?,
        None => Method::Nat,
    };
    let service_port = match key {
        ServiceKey::Tuple { port, .. } if port != 0 => Some(port),
        _ => None,
    };
    let check = match m.opt("check") {
        Some(c) => Some((decode_check(&c)?, c)),
        None => None,
    };
    let inhibit_on_failure = match m.opt("inhibit_on_failure") {
        Some(b) => b.bool()?,
        None => false,
    };
    let sc = ServerCtx {
        v6,
        method,
        service_port,
        check,
    };
    let persistence = match m.opt("persistence") {
        Some(p) => Some(decode_persistence(&p, v6)?),
        None => None,
    };
    let timeouts = match m.opt("timeouts") {
        Some(t) => decode_timeouts(&t)?,
        None => Timeouts::default(),
    };
    let max = max_dests();
    let mut real_servers: Vec<RealServerConfig> = Vec::new();
    let rs_list = m.opt("real_servers");
    if let Some(list) = &rs_list {
        for it in list.seq()? {
            let rs = decode_real_server(&it, &sc)?;
            if real_servers
                .iter()
                .any(|o| o.address == rs.address && o.port.unwrap_or(0) == rs.port.unwrap_or(0))
            {
                return Err(it.err(format!(
                    "real server {} (port {}) is listed twice",
                    rs.address,
                    rs.port.map_or("unset".to_owned(), |p| p.to_string())
                )));
            }
            *dests += 1;
            if *dests > max {
                return Err(it.err(format!("too many real servers in all (at most {max})")));
            }
            real_servers.push(rs);
        }
    }
    let sorry_server = match m.opt("sorry_server") {
        Some(s) => {
            let sm = s.map(&["address", "port"])?;
            let address = decode_address(&sm.req("address")?, &sc)?;
            let port = decode_server_port(sm.opt("port"), method, &sc)?;
            *dests += 1;
            if *dests > max {
                return Err(s.err(format!("too many real servers in all (at most {max})")));
            }
            Some(SorryServerConfig { address, port })
        }
        None => None,
    };
    if real_servers.is_empty() && sorry_server.is_none() {
        return Err(match &rs_list {
            Some(l) => l.err("at least one real server is required (or a `sorry_server`)"),
            None => m.val().err("missing required key `real_servers`"),
        });
    }
    if sched.kind == SchedKind::Mh {
        let primaries = real_servers.iter().filter(|r| !r.backup).count();
        let n = primaries.max(real_servers.len() - primaries) as u64;
        if u64::from(sched.mh_table_size) < MH_MIN_SLOTS_PER_CANDIDATE * n {
            let at = mh_val.as_ref().or(sched_val.as_ref()).unwrap_or(&key_val);
            return Err(at.err(format!(
                "Maglev table size {} is too small for {n} servers (needs at least {} slots per server; default {})",
                sched.mh_table_size, MH_MIN_SLOTS_PER_CANDIDATE, MH_DEFAULT_TABLE_SIZE
            )));
        }
    }
    let quorum = match m.opt("quorum") {
        Some(q) => q.uint(0, u64::from(u32::MAX))?,
        None => 1,
    };
    let hysteresis = match m.opt("hysteresis") {
        Some(h) => h.uint(0, u64::from(u32::MAX))?,
        None => 0,
    };
    Ok((
        ServiceConfig {
            name,
            key,
            sched,
            method,
            persistence,
            timeouts,
            real_servers,
            sorry_server,
            quorum,
            hysteresis,
            check: sc.check.map(|(c, _)| c),
            inhibit_on_failure,
        },
        name_val,
        key_val,
    ))
}
