//! What `xvs list` shows, in the shapes ipvsadm users know: `-Ln` (services,
//! real servers, method, weight, active/inactive connections), `--stats`,
//! `--rate`, `-c` (connections) and `--persistent-conn` (templates), then the
//! director's own counters and drops. Layer: binary (output); renders into a
//! `String` so the same text goes to stdout at exit and over the control socket.

use std::fmt::Write;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

use xvs_core::addr::from_bytes;
use xvs_core::conntrack::ConnState;
use xvs_core::forward::{DestTraffic, DropReason, Shared, WorkerStats};
use xvs_core::service::{DestState, Method, RealServer, ServiceKey, ServiceTable};
use xvs_core::time::Time;

/// Which listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `ipvsadm -Ln`: weights and active/inactive connections.
    Plain,
    /// `--stats`: totals per server since start (or `xvs zero`).
    Stats,
    /// `--rate`: per-second rates over the last second.
    Rate,
    /// `-c`: the connection table.
    Conns,
    /// `--persistent`: the persistence templates.
    Persistent,
}

impl View {
    /// From a command-line flag.
    pub fn from_flag(flag: Option<&str>) -> Option<View> {
        Some(match flag {
            None => View::Plain,
            Some("--stats") => View::Stats,
            Some("--rate") => View::Rate,
            Some("-c" | "--connections") => View::Conns,
            Some("--persistent" | "--persistent-conn") => View::Persistent,
            Some(_) => return None,
        })
    }
}

/// The data a listing reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The current snapshot's services.
    pub services: &'a ServiceTable,
    /// The shared tables.
    pub shared: &'a Shared,
    /// Counters since start (or the last zero).
    pub totals: &'a WorkerStats,
    /// Per-server rates (per second) over the last second, by `DestId`.
    pub rates: &'a [DestTraffic],
    /// The workers' clock now (for expiry columns).
    pub now: Time,
}

/// The listing `view` of `inputs`.
pub fn render(view: View, inputs: &Inputs<'_>) -> String {
    let mut out = String::new();
    match view {
        View::Plain | View::Stats | View::Rate => services(&mut out, view, inputs),
        View::Conns => conns(&mut out, inputs),
        View::Persistent => templates(&mut out, inputs),
    }
    out
}

fn services(out: &mut String, view: View, inputs: &Inputs<'_>) {
    let _ = writeln!(out, "Prot LocalAddress:Port Scheduler Flags");
    let _ = match view {
        View::Stats => writeln!(
            out,
            "  -> RemoteAddress:Port           State    Conns   InPkts  OutPkts  InBytes OutBytes"
        ),
        View::Rate => writeln!(
            out,
            "  -> RemoteAddress:Port           State      CPS    InPPS   OutPPS    InBPS   OutBPS"
        ),
        _ => writeln!(
            out,
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn   Conns  InPkts OutPkts"
        ),
    };
    for svc in inputs.services.services() {
        let (proto, local) = match svc.key {
            ServiceKey::Tuple {
                protocol,
                addr,
                port,
            } => (
                if protocol == 6 { "TCP" } else { "UDP" },
                fmt_ep(addr, port),
            ),
            ServiceKey::Mark { mark, .. } => ("FWM", mark.to_string()),
        };
        let flags = svc
            .persistence
            .map(|p| format!("persistent {} mask /{}", p.timeout_secs, p.prefix))
            .unwrap_or_default();
        let _ = writeln!(out, "{proto:<4} {local} {} {flags}", svc.scheduler.kind());
        for rs in &svc.dests {
            let ep = server_ep(rs);
            let pick = |table: &[DestTraffic]| -> DestTraffic {
                table.get(rs.id.0 as usize).copied().unwrap_or_default()
            };
            let _ = match view {
                View::Stats | View::Rate => {
                    let t = if view == View::Stats {
                        pick(&inputs.totals.dests)
                    } else {
                        pick(inputs.rates)
                    };
                    writeln!(
                        out,
                        "  -> {ep:<29} {:<6} {:>7} {:>8} {:>8} {:>8} {:>8}",
                        state_name(rs.state),
                        t.conns,
                        t.in_packets,
                        t.out_packets,
                        t.in_bytes,
                        t.out_bytes
                    )
                }
                _ => {
                    let c = &inputs.shared.counters[rs.id.0 as usize];
                    let t = pick(&inputs.totals.dests);
                    let method = match rs.method {
                        Method::Nat => "Masq",
                        Method::Dr => "Route",
                    };
                    let weight = match rs.state {
                        DestState::Up => rs.weight.to_string(),
                        other => format!("{}({})", rs.weight, state_name(other)),
                    };
                    writeln!(
                        out,
                        "  -> {ep:<29} {method:<7} {weight:<6} {:<10} {:<9} {:>7} {:>7} {:>7}",
                        c.active.load(Ordering::Relaxed),
                        c.inactive.load(Ordering::Relaxed),
                        t.conns,
                        t.in_packets,
                        t.out_packets
                    )
                }
            };
        }
    }
    if view == View::Plain {
        counters(out, inputs);
    }
}

/// The director's own counters: frames, drops by reason, table sizes.
fn counters(out: &mut String, inputs: &Inputs<'_>) {
    let stats = inputs.totals;
    let shared = inputs.shared;
    let mut states = [0u64; 6];
    shared.conns.for_each(|c| states[c.state() as usize] += 1);
    let _ = writeln!(
        out,
        "\nframes: {} seen, {} forwarded, {} passed, {} dropped; connections: {} ({} established, {} syn)",
        stats.rx_packets,
        stats.forwarded,
        stats.passed,
        stats.total_drops(),
        shared.conns.len(),
        states[ConnState::Established as usize],
        states[ConnState::SynRecv as usize]
    );
    if stats.checksum_completed > 0 {
        let _ = writeln!(
            out,
            "  checksums completed (partial L4 checksums from offload): {}",
            stats.checksum_completed
        );
    }
    for r in DropReason::ALL {
        if stats.drop_count(*r) > 0 {
            let _ = writeln!(out, "  dropped {:<22} {}", r.name(), stats.drop_count(*r));
        }
    }
    let _ = writeln!(
        out,
        "persistence templates: {} (new connections placed by a template: {})",
        shared.persist.len(),
        stats.persist_reused
    );
}

fn conns(out: &mut String, inputs: &Inputs<'_>) {
    let _ = writeln!(
        out,
        "Pro FromIP:Port                 ToIP(VIP):Port              DestIP:Port                 State        Expires(s)"
    );
    let mut rows = Vec::new();
    inputs.shared.conns.for_each(|c| {
        let v6 = c.is_v6();
        rows.push(format!(
            "{:<3} {:<29} {:<27} {:<27} {:<12} {}",
            proto_name(c.protocol),
            fmt_ep(from_bytes(&c.client, v6), c.cport),
            fmt_ep(from_bytes(&c.vaddr, v6), c.vport),
            fmt_ep(from_bytes(&c.daddr, v6), c.dport),
            format!("{:?}", c.state()).to_uppercase(),
            c.expires.remaining_ms(inputs.now) / 1000
        ));
    });
    rows.sort();
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
}

fn templates(out: &mut String, inputs: &Inputs<'_>) {
    let _ = writeln!(
        out,
        "Scope        Client(masked)               DestIP:Port                 Controls Expires(s)"
    );
    let mut rows = Vec::new();
    inputs.shared.persist.for_each(|k, t| {
        let dest = inputs
            .services
            .dest(t.dest)
            .map(|(_, rs)| server_ep(rs))
            .unwrap_or_else(|| format!("dest#{}", t.dest.0));
        let scope = match k.scope {
            xvs_core::persist::Scope::Service(id) => format!("service {id}"),
            xvs_core::persist::Scope::Mark(m) => format!("fwmark {m}"),
        };
        rows.push(format!(
            "{scope:<12} {:<28} {dest:<27} {:<8} {}",
            from_bytes(&k.client, k.v6),
            t.controlled,
            t.expires.remaining_ms(inputs.now) / 1000
        ));
    });
    rows.sort();
    for row in rows {
        let _ = writeln!(out, "{row}");
    }
}

fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "ICMP6".into(),
        other => other.to_string(),
    }
}

fn state_name(s: DestState) -> &'static str {
    match s {
        DestState::Up => "up",
        DestState::Down => "down",
        DestState::Drained => "drain",
        DestState::Removed => "gone",
    }
}

fn server_ep(rs: &RealServer) -> String {
    rs.port.map_or_else(
        || fmt_ep(rs.addr, 0).replace(":0", ":*"),
        |p| fmt_ep(rs.addr, p),
    )
}

/// `a.b.c.d:port` or `[v6]:port`.
pub fn fmt_ep(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
