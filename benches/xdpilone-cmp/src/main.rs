//! CPU time per forwarded frame, AF_XDP port to port, with a UMEM shared by the
//! two sockets: xvs-io's own rings (`PortSet`) versus the `xdpilone` crate's.
//!
//! Same method as `crates/xvs-io/examples/xsk_forward_cost.rs`. Needs root. In
//! a network namespace private to the lab thread: veth pairs `xa`–`xb` and
//! `ya`–`yb`, our steering program on `xb` and `yb` (its XSKMAP holds the
//! socket of the implementation under test). Each round sends `K` frames into
//! `xa` (AF_PACKET; the XDP program and the kernel's copy into the UMEM run
//! then, outside the measurement), waits for them to sit on `xb`'s rx ring,
//! then measures the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, user +
//! kernel) while forwarding all of them out of `yb` (same chunk, no copy in
//! userspace) and reaping every tx completion back to the fill rings.
//!
//! Implementations alternate by pass (the two cannot be bound to the same
//! queue at once): per frame size, `PASSES` × (ours, xdpilone), the order
//! swapped every pass; each pass one untimed warm-up round then `ROUNDS`
//! timed rounds.
//!
//! ```text
//! sudo taskset -c 1 target/release/xdpilone-cmp [ROUNDS] [PASSES]
//! ```
//!
//! Measurement only: xdpilone is EUPL-1.2 and stays out of the xvs workspace.

use std::alloc::Layout;
use std::num::NonZeroU32;
use std::os::fd::BorrowedFd;
use std::process::Command;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use xdpilone::xdp::XdpDesc;
use xdpilone::{DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User};
use xvs_core::wire::build::FrameSpec;
use xvs_io::frames::{Fate, FrameIo};
use xvs_io::steer::{SteeringProgram, XdpMode};
use xvs_io::sys::clock::thread_cpu_time;
use xvs_io::sys::packet::PacketSocket;
use xvs_io::xsk::{PortSet, XskConfig};

/// Frames per round (they must all fit on the rx ring).
const K: usize = 512;
/// Most frames taken from one rx ring per poll (as `PortSet::poll(64, ..)`).
const BATCH: u32 = 64;
/// Same geometry for both: per socket 2048 chunks of 2048 bytes in the
/// shared UMEM, fill/completion rings of 1024, rx/tx rings of 1024.
const FRAME_COUNT: u32 = 2048;
const FRAME_SIZE: u32 = 2048;
const FILL_SIZE: u32 = 1024;
const RING_SIZE: u32 = 1024;
/// Frames kept off the fill rings (as xvs-io's `TX_RESERVE`).
const TX_RESERVE: usize = 64;

fn cfg() -> XskConfig {
    XskConfig {
        frame_count: FRAME_COUNT,
        frame_size: FRAME_SIZE,
        fill_size: FILL_SIZE,
        ring_size: RING_SIZE,
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}

/// Sends `frames` into `xa` in small bursts (the veth's XDP ring must not
/// overflow) and waits for them to reach the AF_XDP rx ring.
fn inject(xa: &PacketSocket, frames: &[Vec<u8>]) {
    for (i, f) in frames.iter().enumerate() {
        xa.send(f).expect("send on xa");
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    std::thread::sleep(Duration::from_millis(3));
}

// ---------------------------------------------------------------- ours ----

/// One round through xvs-io's shared-UMEM `PortSet`. Returns (CPU, frames).
fn ours_round(ports: &mut PortSet) -> (Duration, usize) {
    let t0 = thread_cpu_time();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fwd = 0;
    while fwd < K && Instant::now() < deadline {
        fwd += ports.poll(BATCH as usize, |_, _| Fate::Out(1)).expect("poll");
    }
    while ports.tx_in_flight() > 0 && Instant::now() < deadline {
        ports.poll(BATCH as usize, |_, _| Fate::Out(1)).expect("poll");
    }
    (thread_cpu_time() - t0, fwd)
}

// ------------------------------------------------------------ xdpilone ----

/// A page-aligned heap area for the UMEM; freed last (see `Pilone`'s fields).
struct Area {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Area {
    fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 4096).expect("layout");
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        Area {
            ptr: NonNull::new(ptr).expect("UMEM allocation"),
            layout,
        }
    }

    fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.layout.size())
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; every socket using it
        // is closed by now (`Area` is the last field of `Pilone`).
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// One socket: its fill/completion rings (`DeviceQueue`) and rx/tx rings.
struct Side {
    dev: DeviceQueue,
    rx: RingRx,
    tx: RingTx,
    _user: User,
    /// Frames decided for this side's tx ring and not yet on it.
    pending: Vec<XdpDesc>,
    /// Frames on the tx ring whose completion has not come back.
    outstanding: u32,
    /// Frames on the fill ring not yet received back.
    in_fill: u32,
}

/// xdpilone's rings, arranged as `PortSet`: sockets on `xb` and `yb`, queue 0,
/// one UMEM of 2 × `FRAME_COUNT` chunks, a free pool split over the fill rings.
/// Fields drop in order: sockets and rings, then the UMEM's socket, then the
/// memory.
struct Pilone {
    sides: [Side; 2],
    free: Vec<u64>,
    next_refill: usize,
    _umem: Umem,
    _area: Area,
}

fn if_info(name: &std::ffi::CStr) -> IfInfo {
    let mut info = IfInfo::invalid();
    info.from_name(name).expect("IfInfo::from_name");
    info.set_queue(0);
    info
}

impl Pilone {
    fn open() -> Result<Self, xdpilone::Errno> {
        let total = 2 * FRAME_COUNT as usize;
        let area = Area::new(total * FRAME_SIZE as usize);
        let ucfg = UmemConfig {
            fill_size: FILL_SIZE,
            complete_size: FILL_SIZE,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned, `total` chunks long, and outlives
        // the `Umem` and every socket (field order of `Pilone`).
        let umem = unsafe { Umem::new(ucfg, area.slice()) }?;
        let ring = NonZeroU32::new(RING_SIZE);
        // First socket: the UMEM's own descriptor, copy mode + need-wakeup.
        let sx = Socket::with_shared(&if_info(c"xb"), &umem)?;
        let dev_x = umem.fq_cq(&sx)?;
        let user_x = umem.rx_tx(
            &sx,
            &SocketConfig {
                rx_size: ring,
                tx_size: ring,
                bind_flags: SocketConfig::XDP_BIND_COPY | SocketConfig::XDP_BIND_NEED_WAKEUP,
            },
        )?;
        let (rx_x, tx_x) = (user_x.map_rx()?, user_x.map_tx()?);
        umem.bind(&user_x)?;
        // Second socket on another device: its own fill/completion rings,
        // bound XDP_SHARED_UMEM (flags are inherited; the kernel refuses any).
        let sy = Socket::new(&if_info(c"yb"))?;
        let dev_y = umem.fq_cq(&sy)?;
        let user_y = umem.rx_tx(
            &sy,
            &SocketConfig {
                rx_size: ring,
                tx_size: ring,
                bind_flags: 0,
            },
        )?;
        let (rx_y, tx_y) = (user_y.map_rx()?, user_y.map_tx()?);
        umem.bind(&user_y)?;
        let side = |dev, rx, tx, user| Side {
            dev,
            rx,
            tx,
            _user: user,
            pending: Vec::with_capacity(RING_SIZE as usize),
            outstanding: 0,
            in_fill: 0,
        };
        let mut p = Pilone {
            sides: [side(dev_x, rx_x, tx_x, user_x), side(dev_y, rx_y, tx_y, user_y)],
            free: (0..total as u64).rev().map(|i| i * u64::from(FRAME_SIZE)).collect(),
            next_refill: 0,
            _umem: umem,
            _area: area,
        };
        p.refill();
        Ok(p)
    }

    fn fd(&self, i: usize) -> BorrowedFd<'_> {
        // SAFETY: the descriptor belongs to `self.sides[i]` and stays open for
        // the borrow of `self`.
        unsafe { BorrowedFd::borrow_raw(self.sides[i].rx.as_raw_fd()) }
    }

    fn tx_in_flight(&self) -> usize {
        self.sides
            .iter()
            .map(|s| s.outstanding as usize + s.pending.len())
            .sum()
    }

    /// As `PortSet::poll(64, |_, _| Fate::Out(1))`: up to 64 frames from each
    /// rx ring go (same chunk) to socket 1's tx queue; then push tx, reap
    /// completions, refill. Returns the frames received.
    fn poll(&mut self, out: usize) -> usize {
        let mask = !u64::from(FRAME_SIZE - 1);
        let mut received = 0;
        for i in 0..2 {
            let [a, b] = &mut self.sides;
            let (src, mut dst) = match (i, out) {
                (0, 0) => (a, None),
                (0, _) => (a, Some(b)),
                (_, 0) => (b, Some(a)),
                _ => (b, None),
            };
            let mut r = src.rx.receive(BATCH);
            let n = r.capacity();
            while let Some(desc) = r.read() {
                let q = match dst {
                    Some(ref mut o) => &mut o.pending,
                    None => &mut src.pending,
                };
                if q.len() < RING_SIZE as usize {
                    q.push(desc);
                } else {
                    self.free.push(desc.addr & mask);
                }
            }
            r.release();
            drop(r);
            src.in_fill -= n.min(src.in_fill);
            received += n as usize;
        }
        self.flush();
        received
    }

    fn flush(&mut self) {
        let mask = !u64::from(FRAME_SIZE - 1);
        for s in &mut self.sides {
            if !s.pending.is_empty() {
                let mut w = s.tx.transmit(s.pending.len() as u32);
                let c = w.capacity() as usize;
                let n = w.insert(s.pending.drain(..c));
                w.commit();
                drop(w);
                s.outstanding += n;
            }
            // Kick if the kernel has not taken everything and asks for it.
            if s.tx.pending() > 0 && s.tx.needs_wakeup() {
                s.tx.wake();
            }
        }
        for s in &mut self.sides {
            let mut c = s.dev.complete(FILL_SIZE);
            let n = c.capacity();
            while let Some(addr) = c.read() {
                self.free.push(addr & mask);
            }
            c.release();
            drop(c);
            s.outstanding -= n.min(s.outstanding);
        }
        self.refill();
    }

    /// Free chunks (all but the tx reserve) to the fill rings, evened out,
    /// starting with a different ring each call; wakes a ring that asks.
    fn refill(&mut self) {
        let mut avail = self.free.len().saturating_sub(TX_RESERVE);
        let start = self.next_refill;
        self.next_refill = (start + 1) % 2;
        if avail > 0 {
            let on_rings: usize = self.sides.iter().map(|s| s.in_fill as usize).sum();
            let level = (on_rings + avail) / 2;
            for k in 0..2 {
                let s = &mut self.sides[(start + k) % 2];
                let want = level.saturating_sub(s.in_fill as usize).min(avail) as u32;
                if want == 0 {
                    continue;
                }
                let mut w = s.dev.fill(want);
                let c = w.capacity() as usize;
                let len = self.free.len();
                let n = w.insert(self.free.drain(len - c..));
                w.commit();
                drop(w);
                s.in_fill += n;
                avail -= n as usize;
            }
        }
        for s in &mut self.sides {
            if s.dev.needs_wakeup() {
                s.dev.wake();
            }
        }
    }
}

/// One round through xdpilone's rings. Returns (CPU, frames).
fn pilone_round(p: &mut Pilone) -> (Duration, usize) {
    let t0 = thread_cpu_time();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut fwd = 0;
    while fwd < K && Instant::now() < deadline {
        fwd += p.poll(1);
    }
    while p.tx_in_flight() > 0 && Instant::now() < deadline {
        p.poll(1);
    }
    (thread_cpu_time() - t0, fwd)
}

// ----------------------------------------------------------------- lab ----

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(20, |a| a.parse().expect("ROUNDS"));
    let passes: usize = args.next().map_or(5, |a| a.parse().expect("PASSES"));
    assert!((1..=1000).contains(&rounds) && (1..=100).contains(&passes));
    std::thread::spawn(move || run(rounds, passes))
        .join()
        .expect("lab thread");
}

/// Per-round ns/frame samples of one implementation at one frame size.
#[derive(Default)]
struct Samples {
    ns_per_frame: Vec<f64>,
    frames: usize,
    short_rounds: usize,
}

impl Samples {
    fn push(&mut self, (cpu, n): (Duration, usize)) {
        self.frames += n;
        if n < K {
            self.short_rounds += 1;
        }
        if n > 0 {
            self.ns_per_frame.push(cpu.as_nanos() as f64 / n as f64);
        }
    }

    /// (median, min, max, p25, p75) of the per-round ns/frame.
    fn summary(&self) -> (f64, f64, f64, f64, f64) {
        let mut v = self.ns_per_frame.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return (f64::NAN, f64::NAN, f64::NAN, f64::NAN, f64::NAN);
        }
        let m = v.len() / 2;
        let median = if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 };
        let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
        (median, v[0], v[v.len() - 1], q(0.25), q(0.75))
    }
}

fn run(rounds: usize, passes: usize) {
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

    println!(
        "{passes} passes x {rounds} timed rounds of {K} frames per implementation and frame size \
         (1 untimed warm-up round per pass)"
    );
    let mut table = Vec::new();
    for payload in [18usize, 1400] {
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
        let len = frames[0].len();
        let (mut ours, mut theirs) = (Samples::default(), Samples::default());
        for pass in 0..passes {
            // Counterbalanced order: ours first on even passes, xdpilone first
            // on odd ones (so neither always follows the other).
            for k in 0..2 {
                if (pass + k) % 2 == 0 {
                    let mut ports =
                        retry(|| PortSet::open(&["xb", "yb"], 0, cfg()).map_err(|e| e.to_string()));
                    progs[0].set_socket(0, ports.fd(0)).expect("xskmap xb");
                    progs[1].set_socket(0, ports.fd(1)).expect("xskmap yb");
                    inject(&xa, &frames);
                    ours_round(&mut ports);
                    for _ in 0..rounds {
                        inject(&xa, &frames);
                        ours.push(ours_round(&mut ports));
                    }
                } else {
                    let mut p = retry(|| Pilone::open().map_err(|e| format!("{e:?}")));
                    progs[0].set_socket(0, p.fd(0)).expect("xskmap xb");
                    progs[1].set_socket(0, p.fd(1)).expect("xskmap yb");
                    inject(&xa, &frames);
                    pilone_round(&mut p);
                    for _ in 0..rounds {
                        inject(&xa, &frames);
                        theirs.push(pilone_round(&mut p));
                    }
                }
                progs[0].clear_socket(0).expect("xskmap xb");
                progs[1].clear_socket(0).expect("xskmap yb");
            }
        }
        for (name, s) in [("xvs-io (ours)", &ours), ("xdpilone 1.3", &theirs)] {
            table.push((name, len, s.summary(), s.frames, s.short_rounds, s.ns_per_frame.len()));
        }
    }
    println!();
    println!(
        "{:<14} {:>6} {:>12} {:>16} {:>12} {:>8} {:>6}",
        "impl", "frame", "median ns/f", "range (min-max)", "IQR", "frames", "short"
    );
    for (name, len, (med, lo, hi, p25, p75), frames, short, _n) in &table {
        println!(
            "{name:<14} {len:>5}B {med:>12.0} {:>16} {:>12} {frames:>8} {short:>6}",
            format!("{lo:.0}-{hi:.0}"),
            format!("{p25:.0}-{p75:.0}")
        );
    }
    let sent = table.len() * passes * (rounds + 1) * K;
    println!(
        "check: ya received {} frames, {sent} forwarded out of yb expected (warm-ups included)",
        rx_packets("ya")
    );
    for pair in table.chunks(2) {
        let (o, t) = (pair[0].2.0, pair[1].2.0);
        println!(
            "{}B: xdpilone vs ours, median {:+.1} %",
            pair[0].1,
            (t / o - 1.0) * 100.0
        );
    }
}

/// The interface's rx packet counter (`ip -s`, run in the thread's namespace).
fn rx_packets(dev: &str) -> u64 {
    let out = Command::new("ip").args(["-j", "-s", "link", "show", dev]).output().expect("ip");
    let text = String::from_utf8_lossy(&out.stdout);
    let rx = text.find("\"rx\":").expect("rx stats");
    let after = &text[rx..];
    let p = after.find("\"packets\":").expect("rx packets") + "\"packets\":".len();
    after[p..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("packets")
}

/// Opens with `f`, retrying while the kernel still releases the sockets of
/// the previous pass on the same queue (bind: EBUSY for a moment).
fn retry<T>(mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(t) => return t,
            Err(_) if start.elapsed() < Duration::from_secs(3) => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("AF_XDP open: {e}"),
        }
    }
}
