//! CPU time per forwarded frame, AF_XDP port to port: one UMEM per socket with
//! a copy into the out port's UMEM (what `PortSet` did before) versus one UMEM
//! shared by both sockets (`PortSet` now: the same chunk goes to the out port's
//! tx ring).
//!
//! Needs root. In a private network namespace of its own thread: veth pairs
//! `xa`–`xb` and `ya`–`yb`, a steering program on `xb` and `yb`. Each round
//! sends `K` frames into `xa` (AF_PACKET; the XDP program and the kernel's copy
//! into the UMEM run then, in this thread, outside the measurement), waits for
//! them to sit on `xb`'s rx ring, then measures the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) while forwarding all of them out of `yb` and
//! reaping every tx completion. Modes alternate (copy, shared, copy, shared...).
//!
//! ```text
//! sudo taskset -c 1 target/release/examples/xsk_forward_cost [ROUNDS] [PAYLOAD]
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use xvs_core::wire::build::FrameSpec;
use xvs_io::frames::{Fate, FrameIo};
use xvs_io::steer::{SteeringProgram, XdpMode};
use xvs_io::sys::clock::thread_cpu_time;
use xvs_io::sys::packet::PacketSocket;
use xvs_io::xsk::{Port, PortSet, UmemFrame, XskConfig};

/// Frames per round (they must all fit on the rx ring).
const K: usize = 512;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

fn cfg() -> XskConfig {
    XskConfig {
        frame_count: 2048,
        frame_size: 2048,
        fill_size: 1024,
        ring_size: 1024,
    }
}

/// Sends `frames` into `xa`, in small bursts so that the veth's XDP ring does
/// not overflow, and waits for them to reach the AF_XDP rx ring.
fn inject(xa: &PacketSocket, frames: &[Vec<u8>]) {
    for (i, f) in frames.iter().enumerate() {
        xa.send(f).expect("send on xa");
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    std::thread::sleep(Duration::from_millis(3));
}

/// One round with separate UMEMs: rx on `a`, copy into a free frame of `b`,
/// tx on `b`, as the former `PortSet::copy_out`. Returns (CPU, frames).
fn copy_round(
    a: &mut Port,
    b: &mut Port,
    batch: &mut Vec<UmemFrame>,
    pending: &mut Vec<UmemFrame>,
) -> (Duration, usize) {
    let t0 = thread_cpu_time();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fwd = 0;
    while (fwd < K || b.tx_in_flight() > 0 || !pending.is_empty()) && Instant::now() < deadline {
        let sa = a.socket();
        fwd += sa.rx(64, batch);
        for f in batch.drain(..) {
            let sa = a.socket();
            let sb = b.socket();
            let out = sb.alloc().or_else(|| {
                sb.complete();
                sb.alloc()
            });
            if let Some(mut out) = out {
                sb.write(&mut out, sa.data(&f)).expect("fits");
                pending.push(out);
            }
            sa.recycle(f);
        }
        let sb = b.socket();
        if !pending.is_empty() {
            sb.tx(pending).expect("tx");
        } else {
            sb.kick_tx().expect("kick");
        }
        sb.complete();
        sb.refill();
        let sa = a.socket();
        sa.complete();
        sa.refill();
    }
    (thread_cpu_time() - t0, fwd)
}

/// One round through the shared-UMEM `PortSet`. Returns (CPU, frames).
fn shared_round(ports: &mut PortSet) -> (Duration, usize) {
    let t0 = thread_cpu_time();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fwd = 0;
    while fwd < K && Instant::now() < deadline {
        fwd += ports.poll(64, |_, _| Fate::Out(1)).expect("poll");
    }
    while ports.tx_in_flight() > 0 && Instant::now() < deadline {
        ports.poll(64, |_, _| Fate::Out(1)).expect("poll");
    }
    (thread_cpu_time() - t0, fwd)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(100, |a| a.parse().expect("ROUNDS"));
    let payload: usize = args.next().map_or(18, |a| a.parse().expect("PAYLOAD"));
    std::thread::spawn(move || run(rounds, payload))
        .join()
        .expect("lab thread");
}

fn run(rounds: usize, payload: usize) {
    xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
    for (a, b) in [("xa", "xb"), ("ya", "yb")] {
        ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        ip(&["link", "set", a, "up"]);
        ip(&["link", "set", b, "up"]);
    }
    let idx = |n: &str| xvs_io::sys::if_index(n).expect("ifindex");
    let vip = "198.18.1.1";
    let progs: Vec<SteeringProgram> = (0..2)
        .map(|_| SteeringProgram::load(&[vip.parse().unwrap()], &[]).expect("load"))
        .collect();
    let _links: Vec<_> = ["xb", "yb"]
        .iter()
        .zip(&progs)
        .map(|(n, p)| p.attach(idx(n), XdpMode::Native).expect("attach"))
        .collect();
    let xa = PacketSocket::bind(idx("xa")).expect("AF_PACKET on xa");
    let body = vec![0x5a; payload];
    let frames: Vec<Vec<u8>> = (0..K as u16)
        .map(|i| {
            FrameSpec::udp(
                format!("198.18.0.10:{}", 1000 + i).parse().unwrap(),
                format!("{vip}:53").parse().unwrap(),
            )
            .with_payload(&body)
            .build()
        })
        .collect();
    println!(
        "{rounds} rounds of {K} frames of {} bytes per mode and pass",
        frames[0].len()
    );
    let mut totals = [(Duration::ZERO, 0usize); 2];
    for pass in 0..2 {
        {
            let mut a = retry(|| Port::open("xb", 0, cfg()));
            let mut b = retry(|| Port::open("yb", 0, cfg()));
            progs[0].set_socket(0, a.fd()).expect("xskmap xb");
            progs[1].set_socket(0, b.fd()).expect("xskmap yb");
            let mut batch = Vec::with_capacity(64);
            let mut pending = Vec::with_capacity(1024);
            let (mut cpu, mut n) = (Duration::ZERO, 0);
            for _ in 0..rounds {
                inject(&xa, &frames);
                let (c, f) = copy_round(&mut a, &mut b, &mut batch, &mut pending);
                cpu += c;
                n += f;
            }
            report(pass, "copy (UMEM per socket)", cpu, n, rounds);
            totals[0].0 += cpu;
            totals[0].1 += n;
        }
        {
            let mut ports = retry(|| PortSet::open(&["xb", "yb"], 0, cfg()));
            progs[0].set_socket(0, ports.fd(0)).expect("xskmap xb");
            progs[1].set_socket(0, ports.fd(1)).expect("xskmap yb");
            let (mut cpu, mut n) = (Duration::ZERO, 0);
            for _ in 0..rounds {
                inject(&xa, &frames);
                let (c, f) = shared_round(&mut ports);
                cpu += c;
                n += f;
            }
            report(pass, "shared UMEM", cpu, n, rounds);
            totals[1].0 += cpu;
            totals[1].1 += n;
        }
    }
    let per = |(c, n): (Duration, usize)| c.as_nanos() as f64 / n.max(1) as f64;
    println!(
        "total: copy {:.0} ns/frame, shared {:.0} ns/frame ({:+.1} %)",
        per(totals[0]),
        per(totals[1]),
        (per(totals[1]) / per(totals[0]) - 1.0) * 100.0
    );
}

/// Opens with `f`, retrying while the kernel still releases the sockets of
/// the previous mode on the same queue (bind: EBUSY for a moment).
fn retry<T>(mut f: impl FnMut() -> Result<T, xvs_io::xsk::XskError>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) if start.elapsed() < Duration::from_secs(3) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("AF_XDP: {e}"),
        }
    }
}

fn report(pass: usize, mode: &str, cpu: Duration, n: usize, rounds: usize) {
    println!(
        "pass {pass} {mode:>24}: {n} of {} frames forwarded, {:.0} ns CPU per frame",
        rounds * K,
        cpu.as_nanos() as f64 / n.max(1) as f64
    );
}
