//! The ipvsadm -Ln shaped listing: services, real servers, method, weight,
//! active/inactive connections, then traffic and drops. Layer: binary (output).

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use xvs_core::conntrack::ConnState;
use xvs_core::forward::{DropReason, Shared, WorkerStats};
use xvs_core::service::{Method, ServiceKey, ServiceTable};

/// ipvsadm -Ln shape: services, real servers, method, weight, active/inactive, then
/// this run's traffic and drops.
pub fn print(title: &str, services: &ServiceTable, shared: &Shared, stats: &WorkerStats) {
    println!("{title}");
    println!("Prot LocalAddress:Port Scheduler Flags");
    println!(
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn   Conns  InPkts OutPkts"
    );
    for svc in services.services() {
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
        println!("{proto:<4} {local} {} {flags}", svc.scheduler.kind());
        for rs in &svc.dests {
            let c = &shared.counters[rs.id.0 as usize];
            let t = stats
                .dests
                .get(rs.id.0 as usize)
                .copied()
                .unwrap_or_default();
            let method = match rs.method {
                Method::Nat => "Masq",
                Method::Dr => "Route",
            };
            let ep = rs.port.map_or_else(
                || fmt_ep(rs.addr, 0).replace(":0", ":*"),
                |p| fmt_ep(rs.addr, p),
            );
            println!(
                "  -> {ep:<29} {method:<7} {:<6} {:<10} {:<9} {:>7} {:>7} {:>7}",
                rs.weight,
                c.active.load(Ordering::Relaxed),
                c.inactive.load(Ordering::Relaxed),
                t.conns,
                t.in_packets,
                t.out_packets
            );
        }
    }
    let mut states = [0u64; 6];
    shared.conns.for_each(|c| states[c.state() as usize] += 1);
    println!(
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
        println!(
            "  checksums completed (partial L4 checksums from offload): {}",
            stats.checksum_completed
        );
    }
    for r in DropReason::ALL {
        if stats.drop_count(*r) > 0 {
            println!("  dropped {:<22} {}", r.name(), stats.drop_count(*r));
        }
    }
    println!(
        "persistence templates: {} (new connections placed by a template: {})",
        shared.persist.len(),
        stats.persist_reused
    );
}

fn fmt_ep(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
