//! `xvs` — the director binary. Layer: binary (argument parsing, output).
//!
//! Today it carries `xvs demo`: the decision engine of `xvs-core` driven over its
//! built-in example lab with generated traffic, then an ipvsadm-style listing of
//! where the flows went. The network-namespace lab on real sockets (AF_XDP /
//! AF_PACKET), `xvs run`, `xvs check` and the control socket commands come with the
//! data-plane and router issues.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use xvs_core::conntrack::ConnState;
use xvs_core::forward::{DropReason, WorkerStats};
use xvs_core::lab::{self, EXT};
use xvs_core::service::{Method, ServiceKey};
use xvs_core::time::Time;
use xvs_core::wire::build::FrameSpec;
use xvs_core::wire::tcp_flags::{ACK, SYN};
use xvs_core::{Director, Verdict};

const USAGE: &str = "usage: xvs demo [--clients N]   run the decision engine over the built-in example lab\n       xvs --version";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("demo") => {
            let clients = match args.get(1..) {
                Some([flag, n]) if flag == "--clients" => {
                    n.parse().context("--clients takes a number")?
                }
                Some([]) | None => 200,
                Some(other) => bail!("unexpected arguments {other:?}\n{USAGE}"),
            };
            demo(clients)
        }
        Some("--version" | "-V") => {
            println!("xvs {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command '{other}'\n{USAGE}"),
    }
}

/// Send `clients` clients' handshakes to every TCP service of the lab (and DNS
/// queries), plus a few frames that must be dropped or passed, then list.
fn demo(clients: u32) -> Result<()> {
    let mut d = lab::lab();
    let mut now = Time::from_secs(1);
    let vips: [(&str, u16); 5] = [
        ("198.18.1.1", 80),
        ("198.18.1.2", 80),
        ("198.18.1.3", 80),
        ("198.18.1.3", 443),
        ("2001:db8:1::1", 80),
    ];
    for i in 0..clients {
        let v4 = |third: u32| format!("198.18.{third}.{}", 1 + i % 250);
        for (vip, port) in vips {
            let client: IpAddr = if vip.contains(':') {
                format!("2001:db8::{:x}", 1 + i).parse()?
            } else {
                v4(0).parse()?
            };
            let c = SocketAddr::new(client, 20_000 + i as u16);
            let v = SocketAddr::new(vip.parse()?, port);
            for flags in [SYN, ACK] {
                let mut f = FrameSpec::tcp(c, v, flags)
                    .with_macs(lab::CLIENT_MAC, lab::EXT_MAC)
                    .build();
                expect_forward(&mut d, now, &mut f)?;
            }
        }
        let mut q = FrameSpec::udp(
            SocketAddr::new(v4(0).parse()?, 30_000 + i as u16),
            "198.18.1.1:53".parse()?,
        )
        .with_payload(b"query")
        .build();
        expect_forward(&mut d, now, &mut q)?;
        // A blocked subnet and a mid-flow segment with no connection.
        let mut blocked = FrameSpec::tcp(
            SocketAddr::new(v4(9).parse()?, 1000),
            "198.18.1.1:80".parse()?,
            SYN,
        )
        .build();
        d.process(EXT, now, &mut blocked);
        let mut stray = FrameSpec::tcp(
            SocketAddr::new(v4(0).parse()?, 9),
            "198.18.1.1:80".parse()?,
            ACK,
        )
        .build();
        d.process(EXT, now, &mut stray);
        now = now.after_ms(10);
    }
    print_listing(&d);
    Ok(())
}

fn expect_forward(d: &mut Director, now: Time, frame: &mut [u8]) -> Result<()> {
    match d.process(EXT, now, frame) {
        Verdict::Forward { .. } => Ok(()),
        other => bail!("the lab should forward this frame, got {other:?}"),
    }
}

/// ipvsadm -Ln shape: services, real servers, method, weight, active/inactive, then
/// this run's traffic and drops.
fn print_listing(d: &Director) {
    let stats: &WorkerStats = d.stats();
    println!("xvs demo: decision engine over the built-in lab (no sockets; see README)");
    println!("Prot LocalAddress:Port Scheduler Flags");
    println!(
        "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn   Conns  InPkts OutPkts"
    );
    for svc in d.snapshot().services.services() {
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
            let c = &d.shared().counters[rs.id.0 as usize];
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
                c.active.load(std::sync::atomic::Ordering::Relaxed),
                c.inactive.load(std::sync::atomic::Ordering::Relaxed),
                t.conns,
                t.in_packets,
                t.out_packets
            );
        }
    }
    let mut states = [0u64; 6];
    d.shared()
        .conns
        .for_each(|c| states[c.state() as usize] += 1);
    println!(
        "\nframes: {} seen, {} forwarded, {} passed, {} dropped; connections: {} ({} established, {} syn)",
        stats.rx_packets,
        stats.forwarded,
        stats.passed,
        stats.total_drops(),
        d.shared().conns.len(),
        states[ConnState::Established as usize],
        states[ConnState::SynRecv as usize]
    );
    for r in DropReason::ALL {
        if stats.drop_count(*r) > 0 {
            println!("  dropped {:<22} {}", r.name(), stats.drop_count(*r));
        }
    }
    println!(
        "persistence templates: {} (new connections placed by a template: {})",
        d.shared().persist.len(),
        stats.persist_reused
    );
}

fn fmt_ep(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}
