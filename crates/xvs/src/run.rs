//! `xvs run`: the director on real sockets. Layer: binary (start-up, the control
//! loop, shutdown).
//!
//! Start-up: configuration → the kernel's view of the network (rtnetlink) →
//! next hops of the real servers → the first snapshot → the steering of the
//! backend ([`crate::steering`]: an XDP program per interface, or for AF_PACKET
//! the tc guard — the nftables one on kernels without tcx) → per worker one socket per interface on the worker's
//! queue (AF_XDP) or fanout group (AF_PACKET) → workers → the control socket.
//! Then the control loop ([`crate::control`]), every [`TICK`]: sweeps, the
//! workers' counters, neighbour resolution, the network re-read and a new
//! snapshot when it changed, SIGHUP reloads, control-socket requests.
//! SIGTERM / SIGINT stop the workers (they drain tx), the final counters are
//! listed, and the steering goes with the process.
//!
//! Invariant: nothing stays attached after exit — links, sockets and maps are
//! file descriptors owned by this process; the guard table and GRO settings
//! are restored by their owners' `Drop`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use xvs_config::{Backend, IdAllocator, XdpMode as XdpModeConfig};
use xvs_core::Director;
use xvs_core::forward::{Shared, WorkerStats};
use xvs_io::frames::FrameIo;
use xvs_io::frames::PortStats;
use xvs_io::netlink::Netlink;
use xvs_io::packet::PacketPortSet;
use xvs_io::steer::XdpMode;
use xvs_io::xsk::{PortSet, XskConfig};

use crate::control::{Control, Runtime, build_snapshot, initial_health, steered_addresses};
use crate::ctl::{self, ControlSocket};
use crate::health::{self, HealthRunner};
use crate::listing::View;
use crate::netview::KernelNet;
use crate::steering::{GroOff, Steering};
use crate::worker::{Links, Report, SnapshotCell, Worker};

/// Period of the control loop.
pub const TICK: Duration = Duration::from_millis(100);
/// Period of the full re-read of links, routes and neighbours.
const REFRESH: Duration = Duration::from_millis(500);

/// Runs the director on `path` until SIGTERM / SIGINT.
pub fn run(path: &Path) -> Result<()> {
    let config = xvs_config::load(path).map_err(crate::ConfigRejected)?;
    let mut netlink = Netlink::open().context("rtnetlink")?;
    let kernel = KernelNet::read(&mut netlink).context("reading links, routes and neighbours")?;
    let names = &config.director.interfaces;
    let ifindexes = kernel.ifindexes(names)?;
    let mut ids = IdAllocator::new();
    let targets = health::targets(&config);
    let mut runtime = Runtime {
        health: initial_health(&targets),
        ..Runtime::default()
    };
    let (snap, wanted) = build_snapshot(&config, &mut ids, &kernel, &mut runtime, None)?;
    let config_sizes = config.director.table_sizes();
    let shared = Arc::new(Shared::new(config_sizes));
    let snapshots = Arc::new(SnapshotCell::new(snap.clone(), config.director.cores.len()));
    let want = steered_addresses(&config, &snap.services, &kernel.addresses, &[]);
    let backend = config.director.backend;
    let _gro = match (backend, config.director.xdp_mode) {
        (Backend::AfXdp, XdpModeConfig::Native | XdpModeConfig::Auto) => GroOff::default(),
        _ => GroOff::apply(names)?,
    };
    let steering = match backend {
        Backend::AfXdp => {
            let mode = match config.director.xdp_mode {
                XdpModeConfig::Auto => XdpMode::Auto,
                XdpModeConfig::Native => XdpMode::Native,
                XdpModeConfig::Generic => XdpMode::Generic,
            };
            Steering::xdp(names, &ifindexes, mode, &want)?
        }
        Backend::AfPacket => {
            Steering::packet(names, &ifindexes, config.director.packet_guard, &want)?
        }
    };
    let socket_path = config
        .director
        .control_socket
        .clone()
        .unwrap_or_else(|| PathBuf::from(ctl::DEFAULT_SOCKET));
    let socket = ControlSocket::bind(&socket_path, config.director.control_group.as_deref())?;
    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("installing signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("installing the SIGHUP handler")?;

    let (reports_tx, reports) = mpsc::channel::<Report>();
    let (health_tx, health_events) = mpsc::channel();
    let epoch = Instant::now();
    let links = Links {
        snapshots: snapshots.clone(),
        stop: stop.clone(),
        reports: reports_tx,
        epoch,
    };
    let mut workers = Vec::new();
    for (id, &core) in config.director.cores.iter().enumerate() {
        let director = Director::new(shared.clone(), snap.clone());
        let handle = match backend {
            Backend::AfXdp => {
                let ifs: Vec<&str> = names.iter().map(String::as_str).collect();
                let ports =
                    PortSet::open(&ifs, id as u32, XskConfig::default()).with_context(|| {
                        format!("AF_XDP sockets on queue {id} of {ifs:?} (one shared UMEM)")
                    })?;
                for (i, name) in names.iter().enumerate() {
                    steering
                        .bind_socket(i, id as u32, ports.fd(i))
                        .with_context(|| format!("interface {name}: queue {id}"))?;
                }
                tracing::info!(
                    worker = id,
                    zero_copy = ports.zero_copy().unwrap_or(false),
                    "AF_XDP sockets bound (zero-copy where the drivers offer it, else copy)"
                );
                spawn(id, core, ports, director, &links)?
            }
            Backend::AfPacket => {
                let ifs: Vec<&str> = names.iter().map(String::as_str).collect();
                let ports =
                    PacketPortSet::open(&ifs, Some(fanout_group())).context("AF_PACKET sockets")?;
                spawn(id, core, ports, director, &links)?
            }
        };
        workers.push(handle);
    }
    drop(links);
    tracing::info!(
        config = %path.display(),
        interfaces = ?names,
        workers = workers.len(),
        services = snap.services.services().len(),
        "director running"
    );
    println!(
        "xvs: running on {} with {} worker(s); SIGTERM or SIGINT stops",
        names.join(", "),
        workers.len()
    );

    let mut control = Control {
        path: path.to_owned(),
        config,
        ids,
        netlink,
        kernel,
        ifindexes,
        shared,
        snapshots,
        steering,
        totals: WorkerStats::default(),
        rates: Vec::new(),
        rate_base: (Instant::now(), Vec::new()),
        runtime,
        health: Some(
            HealthRunner::spawn(targets, health_tx).context("starting the health checkers")?,
        ),
        health_events,
        io: Vec::new(),
        asked: Vec::new(),
        resolved: false,
        epoch,
        sweep_budget: Shared::budget_for(
            &config_sizes,
            (Duration::from_secs(1).as_millis() / TICK.as_millis()) as usize,
        ),
    };
    control.note_servers(&wanted);
    let mut last_refresh = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(TICK);
        if workers.iter().any(|w| w.is_finished()) {
            break;
        }
        control.maintain();
        let missed = control.collect(&reports);
        control.resolve(&missed);
        if !missed.is_empty() || last_refresh.elapsed() >= REFRESH {
            last_refresh = Instant::now();
            if let Err(e) = control.refresh() {
                tracing::warn!(error = %format!("{e:#}"), "network refresh failed");
            }
        }
        if reload.swap(false, Ordering::Relaxed) {
            let _ = control.reload();
        }
        if let Err(e) = control.apply_health() {
            tracing::error!(error = %format!("{e:#}"), "applying health verdicts");
        }
        control.update_rates();
        socket.serve(|words| control.handle(words));
    }
    drop(socket);
    if let Some(h) = control.health.take() {
        h.stop();
    }
    stop.store(true, Ordering::Relaxed);
    let mut failed = None;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = Some(e),
            Err(_) => failed = Some(anyhow::anyhow!("a worker panicked")),
        }
    }
    control.collect(&reports);
    println!("xvs: stopped");
    print!("{}", control.render(View::Plain));
    let io = control.io.iter().fold(PortStats::default(), |a, b| a + *b);
    println!(
        "io: rx {} tx {} tx_dropped {} rx_dropped_by_kernel {}",
        io.rx, io.tx, io.tx_dropped, io.rx_dropped
    );
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Starts worker `id`, pinned to `core`, on its own thread.
fn spawn<P: FrameIo + Send + 'static>(
    id: usize,
    core: usize,
    ports: P,
    director: Director,
    links: &Links,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let worker = Worker {
        id,
        core: Some(core),
        ports,
        director,
        links: links.clone(),
    };
    std::thread::Builder::new()
        .name(format!("xvs-worker-{id}"))
        .spawn(move || worker.run())
        .context("spawning a worker")
}

/// The AF_PACKET fanout group of this process (one group per interface socket
/// set; unique per process so two directors never share one).
fn fanout_group() -> u16 {
    (std::process::id() & 0xffff) as u16
}
