//! AF_XDP sockets end to end on veth pairs in a private network namespace:
//! a frame sent into `xa` by an AF_PACKET socket reaches the AF_XDP rx ring on
//! `xb` (through the steering program) byte for byte, and a frame transmitted
//! from the AF_XDP socket on `xb` is received on `xa`. A [`PortSet`] over `xb`
//! and `yb` shares one UMEM: frames received on `xb` leave by `yb` (the same
//! chunk) and reach `ya` byte for byte, frames sent back out of `xb` in place
//! reach `xa`, and every frame of the UMEM is accounted for afterwards.
//!
//! Only lab addresses (198.18.0.0/15); the traffic stays on the veth in the
//! test thread's own namespace, which disappears with the thread.
//! Needs root; see [`privileged`].

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use xvs_core::wire::build::FrameSpec;
use xvs_io::frames::{Decide, Fate, FrameIo};
use xvs_io::steer::SteerLink;
use xvs_io::steer::{SteeringProgram, XdpMode};
use xvs_io::sys::packet::PacketSocket;
use xvs_io::testing::ip;
use xvs_io::xsk::{Action, LOOK_AHEAD, Port, PortSet, XskConfig, XskError};

/// Whether this test may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` and returns false — or panics when
/// `XVS_REQUIRE_PRIVILEGED=1` (CI), so that a skip cannot pass.
fn privileged(test: &str) -> bool {
    xvs_io::testing::privileged(
        test,
        "needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW, CAP_IPC_LOCK) for veth, XDP and AF_XDP",
    )
}

const DEADLINE: Duration = Duration::from_secs(2);

/// A small UMEM: 256 × 2048 bytes.
fn small() -> XskConfig {
    XskConfig {
        frame_count: 256,
        frame_size: 2048,
        fill_size: 128,
        ring_size: 128,
    }
}

#[test]
fn veth_rx_and_tx_through_af_xdp() {
    if !privileged("xsk::veth_rx_and_tx_through_af_xdp") {
        return;
    }
    std::thread::spawn(|| {
        xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
        // `lo` only: proves the children of this thread share its namespace.
        let before = ip(&["-o", "link"]);
        assert!(
            before.lines().count() == 1 && before.contains("lo:"),
            "fresh namespace:\n{before}"
        );
        ip(&["link", "add", "xa", "type", "veth", "peer", "name", "xb"]);
        ip(&["link", "set", "xa", "up"]);
        ip(&["link", "set", "xb", "up"]);
        let links = ip(&["-o", "link"]);
        assert!(
            links.contains("xa@xb") && links.contains("xb@xa"),
            "veth pair in the test namespace:\n{links}"
        );
        let xa = xvs_io::sys::if_index("xa").expect("xa");
        let xb = xvs_io::sys::if_index("xb").expect("xb");

        let prog = SteeringProgram::load(&["198.18.1.1".parse().unwrap()], &[])
            .unwrap_or_else(|e| panic!("load: {e}"));
        let _link = prog
            .attach(xb, XdpMode::Native)
            .unwrap_or_else(|e| panic!("attach native on xb: {e}"));
        let mut port = match Port::open("xb", 0, small()) {
            Ok(p) => p,
            Err(e @ XskError::Memlock { .. }) => panic!("{e}"),
            Err(e) => panic!("AF_XDP socket on xb/0: {e}"),
        };
        prog.set_socket(0, port.fd())
            .unwrap_or_else(|e| panic!("XSKMAP: {e}"));

        let pkt = PacketSocket::bind(xa).expect("AF_PACKET on xa");
        pkt.set_read_timeout(Duration::from_millis(100))
            .expect("SO_RCVTIMEO");

        // rx: AF_PACKET into xa → veth → XDP on xb → AF_XDP rx ring.
        let to_vip = FrameSpec::udp(
            "198.18.0.10:1000".parse().unwrap(),
            "198.18.1.1:53".parse().unwrap(),
        )
        .build();
        assert_eq!(pkt.send(&to_vip).expect("send on xa"), to_vip.len());
        let mut got: Vec<Vec<u8>> = Vec::new();
        let start = Instant::now();
        while got.is_empty() && start.elapsed() < DEADLINE {
            port.poll_rx(100).expect("poll");
            port.recv(64, |f| {
                got.push(f.to_vec());
                Action::Drop
            })
            .expect("recv");
        }
        assert_eq!(got.len(), 1, "one frame on the AF_XDP rx ring");
        assert_eq!(got[0], to_vip, "received byte for byte");

        // tx: AF_XDP on xb → veth → xa → AF_PACKET.
        let from_vip = FrameSpec::udp(
            "198.18.1.1:53".parse().unwrap(),
            "198.18.0.10:1000".parse().unwrap(),
        )
        .build();
        assert!(port.send(&from_vip).expect("AF_XDP tx"), "a free frame");
        let mut buf = [0u8; 2048];
        let mut seen = false;
        let start = Instant::now();
        while !seen && start.elapsed() < DEADLINE {
            match pkt.recv(&mut buf) {
                Ok((n, outgoing)) => seen = !outgoing && buf[..n] == from_vip[..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv on xa: {e}"),
            }
        }
        assert!(seen, "the AF_XDP frame arrived on xa");
        let start = Instant::now();
        while port.tx_in_flight() > 0 && start.elapsed() < DEADLINE {
            port.complete().expect("complete");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(port.tx_in_flight(), 0, "tx completion came back");

        // Ring wrap-around: many more frames than ring entries (128) or UMEM
        // frames (256), in bursts of 64, each way; ports numbered to check order.
        let frame = |i: u16| {
            FrameSpec::udp(
                format!("198.18.0.10:{}", 1000 + i).parse().unwrap(),
                "198.18.1.1:53".parse().unwrap(),
            )
            .build()
        };
        const BURSTS: u16 = 32;
        const BURST: u16 = 64;
        let start = Instant::now();
        let mut next = 0u16;
        for b in 0..BURSTS {
            for i in 0..BURST {
                pkt.send(&frame(b * BURST + i)).expect("send on xa");
            }
            while next < (b + 1) * BURST && start.elapsed() < DEADLINE {
                port.recv(64, |f| {
                    assert_eq!(f, &frame(next)[..], "frame {next} in order");
                    next += 1;
                    Action::Drop
                })
                .expect("recv");
            }
        }
        assert_eq!(next, BURSTS * BURST, "every frame received");

        let start = Instant::now();
        let mut sent = 0u16;
        let mut got = 0u16;
        while got < BURSTS * BURST && start.elapsed() < DEADLINE {
            while sent < BURSTS * BURST && sent - got < BURST {
                if !port.send(&frame(sent)).expect("AF_XDP tx") {
                    break;
                }
                sent += 1;
            }
            match pkt.recv(&mut buf) {
                Ok((n, false)) if buf[..n] == frame(got)[..] => got += 1,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv on xa: {e}"),
            }
        }
        assert_eq!(
            got,
            BURSTS * BURST,
            "every AF_XDP frame arrived on xa, in order"
        );
    })
    .join()
    .expect("veth thread");
}

#[test]
fn bad_configs_are_refused() {
    let bad = XskConfig {
        frame_size: 3000,
        ..XskConfig::default()
    };
    assert!(matches!(Port::open("lo", 0, bad), Err(XskError::Config(_))));
    let bad = XskConfig {
        fill_size: 100,
        ..XskConfig::default()
    };
    assert!(matches!(Port::open("lo", 0, bad), Err(XskError::Config(_))));
}

/// Runs itself again under `setpriv` without CAP_IPC_LOCK, where a UMEM larger
/// than RLIMIT_MEMLOCK must fail with [`XskError::Memlock`] naming the limit.
#[test]
fn a_umem_over_the_memlock_limit_says_so() {
    const CHILD: &str = "XVS_XSK_MEMLOCK_CHILD";
    const NAME: &str = "a_umem_over_the_memlock_limit_says_so";
    // 64 MiB: above this VM's 8 MiB limit.
    let big = XskConfig {
        frame_count: 32768,
        ..XskConfig::default()
    };
    if std::env::var(CHILD).as_deref() == Ok("1") {
        let limits = std::fs::read_to_string("/proc/self/limits").expect("limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max locked memory"))
            .expect("memlock line");
        let soft = line.split_whitespace().nth(3).expect("soft limit");
        if soft.parse::<u64>().map_or(true, |l| l >= 64 << 20) {
            let _ = writeln!(std::io::stderr(), "SKIP: {NAME}: memlock limit {soft}");
            return;
        }
        match Port::open("lo", 0, big) {
            Err(e @ XskError::Memlock { bytes, .. }) => {
                assert_eq!(bytes, 64 << 20);
                let msg = e.to_string();
                let _ = writeln!(std::io::stderr(), "without CAP_IPC_LOCK: {msg}");
                assert!(
                    msg.contains("RLIMIT_MEMLOCK") && msg.contains("67108864"),
                    "{msg}"
                );
            }
            other => panic!("want a memlock error, got {other:?}"),
        }
        return;
    }
    if !privileged(&format!("xsk::{NAME}")) {
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("setpriv")
        .args([
            "--bounding-set",
            "-ipc_lock",
            "--inh-caps",
            "-ipc_lock",
            "--",
        ])
        .arg(exe)
        .args([NAME, "--exact", "--nocapture"])
        .env(CHILD, "1")
        .output()
        .expect("setpriv (util-linux)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child:\n{text}"
    );
}

/// Two veth pairs `xa`–`xb` and `ya`–`yb` in the calling thread's (fresh)
/// namespace, a steering program on each of `xb` and `yb` (an XSKMAP is keyed by
/// queue only, so one program per interface), a shared-UMEM [`PortSet`] over
/// `xb` (port 0) and `yb` (port 1), and AF_PACKET sockets on `xa` and `ya`.
struct Lab {
    ports: PortSet,
    xa: PacketSocket,
    ya: PacketSocket,
    _links: Vec<SteerLink>,
    _progs: Vec<SteeringProgram>,
}

const VIP: &str = "198.18.1.1";

fn two_pairs(cfg: XskConfig) -> Lab {
    xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
    for (a, b) in [("xa", "xb"), ("ya", "yb")] {
        ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        ip(&["link", "set", a, "up"]);
        ip(&["link", "set", b, "up"]);
    }
    let idx = |n: &str| xvs_io::sys::if_index(n).unwrap_or_else(|e| panic!("{n}: {e}"));
    let mut progs = Vec::new();
    let mut links = Vec::new();
    for b in ["xb", "yb"] {
        let prog = SteeringProgram::load(&[VIP.parse().unwrap()], &[])
            .unwrap_or_else(|e| panic!("load: {e}"));
        links.push(
            prog.attach(idx(b), XdpMode::Native)
                .unwrap_or_else(|e| panic!("attach native on {b}: {e}")),
        );
        progs.push(prog);
    }
    let ports = match PortSet::open(&["xb", "yb"], 0, cfg) {
        Ok(p) => p,
        Err(e) => panic!("shared-UMEM PortSet on xb, yb: {e}"),
    };
    for (i, prog) in progs.iter().enumerate() {
        prog.set_socket(0, ports.fd(i))
            .unwrap_or_else(|e| panic!("XSKMAP {i}: {e}"));
    }
    let packet = |n: &str| {
        let s = PacketSocket::bind(idx(n)).unwrap_or_else(|e| panic!("AF_PACKET on {n}: {e}"));
        s.set_read_timeout(Duration::from_millis(1))
            .expect("SO_RCVTIMEO");
        s
    };
    Lab {
        ports,
        xa: packet("xa"),
        ya: packet("ya"),
        _links: links,
        _progs: progs,
    }
}

/// Frame number `i` to the VIP (UDP source port 1000 + i).
fn numbered(i: u16) -> Vec<u8> {
    FrameSpec::udp(
        format!("198.18.0.10:{}", 1000 + i).parse().unwrap(),
        format!("{VIP}:53").parse().unwrap(),
    )
    .build()
}

/// The number of a frame made by [`numbered`] (Ethernet + 20-byte IPv4 header).
fn number_of(f: &[u8]) -> Option<usize> {
    let sport = u16::from_be_bytes(f.get(34..36)?.try_into().ok()?);
    sport.checked_sub(1000).map(usize::from)
}

/// Reads everything `sock` has received (not sent) now; calls `f` on each frame.
fn drain_incoming(sock: &PacketSocket, mut f: impl FnMut(&[u8])) {
    let mut buf = [0u8; 2048];
    for _ in 0..256 {
        match sock.recv(&mut buf) {
            Ok((n, false)) => f(&buf[..n]),
            Ok((_, true)) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("AF_PACKET recv: {e}"),
        }
    }
}

/// 256 frames × 2 KiB per port: one UMEM of 512 frames (1 MiB) for two ports.
fn small_shared() -> XskConfig {
    XskConfig {
        frame_count: 256,
        frame_size: 2048,
        fill_size: 128,
        ring_size: 128,
    }
}

/// Asserts that every frame of the UMEM is free or on a fill ring (nothing
/// held, nothing in tx), and that both fill rings got frames.
fn assert_conserved(ports: &PortSet, what: &str) {
    let c = ports.census();
    assert_eq!(c.accounted(), c.total, "{what}: census adds up: {c:?}");
    assert_eq!(
        (c.held, c.tx),
        (0, 0),
        "{what}: nothing held or in tx: {c:?}"
    );
    assert_eq!(c.free + c.fill, c.total, "{what}: free + in kernel = total");
    assert!(
        ports.fill_frames(0) > 0 && ports.fill_frames(1) > 0,
        "{what}: both fill rings fed ({} / {})",
        ports.fill_frames(0),
        ports.fill_frames(1)
    );
}

#[test]
fn shared_umem_forwards_between_interfaces() {
    if !privileged("xsk::shared_umem_forwards_between_interfaces") {
        return;
    }
    std::thread::spawn(|| {
        // (`_links`, `_progs` bound, not `..`: they must live to the end.)
        let Lab {
            mut ports,
            xa,
            ya,
            _links,
            _progs,
        } = two_pairs(small_shared());
        let c = ports.census();
        assert_eq!(c.total, 512, "one UMEM for both ports: {c:?}");
        // Bound without a mode flag: the kernel would take zero-copy if the
        // driver offered it; veth does not, so this is copy mode.
        assert_eq!(ports.zero_copy().ok(), Some(false), "veth: copy mode");
        assert_eq!(
            (ports.fill_frames(0), ports.fill_frames(1)),
            (128, 128),
            "both fill rings full after open"
        );

        // 1000 frames into xa → XDP on xb → AF_XDP port 0 → Out(1): the same
        // chunk on yb's tx ring → ya. At most 64 in flight; bounded in time.
        const N: usize = 1000;
        const IN_FLIGHT: usize = 64;
        let frames: Vec<Vec<u8>> = (0..N as u16).map(numbered).collect();
        let mut seen = vec![false; N];
        let (mut sent, mut got) = (0usize, 0usize);
        let mut wrong_port = 0;
        let start = Instant::now();
        let lost = |ports: &PortSet| {
            let st = ports.stats();
            (st.rx_dropped + st.tx_dropped) as usize
        };
        while got + lost(&ports) < N && start.elapsed() < Duration::from_secs(5) {
            while sent < N && sent - got - lost(&ports).min(sent - got) < IN_FLIGHT {
                xa.send(&frames[sent]).expect("send on xa");
                sent += 1;
            }
            ports
                .poll(64, |port, _| {
                    if port != 0 {
                        wrong_port += 1;
                    }
                    Fate::Out(1)
                })
                .expect("poll");
            drain_incoming(&ya, |f| {
                if let Some(i) = number_of(f).filter(|&i| i < N && f == frames[i]) {
                    assert!(!seen[i], "frame {i} twice");
                    seen[i] = true;
                    got += 1;
                }
            });
        }
        let st = ports.stats();
        eprintln!(
            "shared UMEM forward: sent {sent}, arrived {got} on ya in {:?}; {st:?}; {:?}",
            start.elapsed(),
            ports.census()
        );
        assert_eq!(wrong_port, 0, "frames came in on xb only");
        assert_eq!(sent, N);
        assert_eq!(got + lost(&ports), N, "every frame arrived or is counted");
        assert!(
            got >= N * 9 / 10,
            "most frames arrived byte for byte ({got})"
        );
        assert_eq!(st.rx as usize, N - st.rx_dropped as usize, "{st:?}");
        assert_eq!(
            ports.drain_tx(Instant::now() + DEADLINE),
            0,
            "every tx completed (on yb's completion ring)"
        );
        assert_conserved(&ports, "after 1000 forwarded frames");
    })
    .join()
    .expect("veth thread");
}

#[test]
fn shared_umem_in_place_tx_drop_and_bad_port() {
    if !privileged("xsk::shared_umem_in_place_tx_drop_and_bad_port") {
        return;
    }
    std::thread::spawn(|| {
        // (`_links`, `_progs` bound, not `..`: they must live to the end.)
        let Lab {
            mut ports,
            xa,
            ya,
            _links,
            _progs,
        } = two_pairs(small_shared());
        // Frame i: i % 4 == 0 → back out of xb (MACs swapped in place),
        // 1 → out of yb, 2 → dropped, 3 → a port outside the set.
        const N: usize = 200;
        let frames: Vec<Vec<u8>> = (0..N as u16).map(numbered).collect();
        let swapped = |f: &[u8]| {
            let mut g = f.to_vec();
            g[..6].copy_from_slice(&f[6..12]);
            g[6..12].copy_from_slice(&f[..6]);
            g
        };
        let (mut back, mut across) = (vec![false; N], vec![false; N]);
        let mut sent = 0;
        let start = Instant::now();
        let done = |back: &[bool], across: &[bool]| {
            (0..N).all(|i| match i % 4 {
                0 => back[i],
                1 => across[i],
                _ => true,
            })
        };
        while !done(&back, &across) && start.elapsed() < Duration::from_secs(5) {
            for _ in 0..16 {
                if sent < N {
                    xa.send(&frames[sent]).expect("send on xa");
                    sent += 1;
                }
            }
            ports
                .poll(64, |port, f| {
                    assert_eq!(port, 0);
                    match number_of(f).expect("numbered") % 4 {
                        0 => {
                            let (dst, src) = f.split_at_mut(6);
                            dst.swap_with_slice(&mut src[..6]);
                            Fate::Out(0)
                        }
                        1 => Fate::Out(1),
                        2 => Fate::Drop,
                        _ => Fate::Out(7),
                    }
                })
                .expect("poll");
            drain_incoming(&xa, |f| {
                if let Some(i) = number_of(f).filter(|&i| i < N && f == swapped(&frames[i])) {
                    back[i] = true;
                }
            });
            drain_incoming(&ya, |f| {
                if let Some(i) = number_of(f).filter(|&i| i < N && f == frames[i]) {
                    across[i] = true;
                }
            });
        }
        let st = ports.stats();
        eprintln!("in place / across / drop / bad port: {st:?}");
        assert_eq!(st.rx_dropped, 0, "no kernel drop at this pace");
        assert!(
            done(&back, &across),
            "every in-place and forwarded frame arrived"
        );
        assert_eq!(back.iter().filter(|&&b| b).count(), N / 4);
        assert_eq!(across.iter().filter(|&&b| b).count(), N / 4);
        assert_eq!(st.rx as usize, N);
        assert_eq!(st.tx as usize, N / 2, "in place + across");
        assert_eq!(st.tx_dropped as usize, N / 4, "the port outside the set");
        assert_eq!(ports.drain_tx(Instant::now() + DEADLINE), 0);
        assert_conserved(&ports, "after the mixed burst");
    })
    .join()
    .expect("veth thread");
}

/// Records what `poll_with` shows a decider: `(true, n)` for a look at frame `n`,
/// `(false, n)` for its decision.
struct Recorder<'a>(&'a mut Vec<(bool, usize)>);

impl Decide for Recorder<'_> {
    fn look(&mut self, _port: usize, frame: &[u8]) {
        self.0.push((true, number_of(frame).expect("numbered")));
    }

    fn decide(&mut self, _port: usize, frame: &mut [u8]) -> Fate {
        self.0.push((false, number_of(frame).expect("numbered")));
        Fate::Drop
    }
}

/// The pipelined rx loop shows every frame to `look` once, in order, before its
/// decision and at most `LOOK_AHEAD` decisions earlier — for batches shorter
/// than, as long as and longer than the look-ahead.
#[test]
fn every_frame_is_looked_at_once_and_ahead_of_its_decision() {
    if !privileged("xsk::every_frame_is_looked_at_once_and_ahead_of_its_decision") {
        return;
    }
    std::thread::spawn(|| {
        let Lab {
            mut ports,
            xa,
            ya: _ya,
            _links,
            _progs,
        } = two_pairs(small_shared());
        let mut next = 0u16;
        for burst in [
            1,
            LOOK_AHEAD - 1,
            LOOK_AHEAD,
            LOOK_AHEAD + 1,
            3 * LOOK_AHEAD + 5,
        ] {
            let first = usize::from(next);
            for _ in 0..burst {
                xa.send(&numbered(next)).expect("send on xa");
                next += 1;
            }
            let mut events = Vec::new();
            let start = Instant::now();
            while events.iter().filter(|e: &&(bool, usize)| !e.0).count() < burst
                && start.elapsed() < Duration::from_secs(2)
            {
                ports.poll_with(64, Recorder(&mut events)).expect("poll");
            }
            let looks: Vec<usize> = events.iter().filter(|e| e.0).map(|e| e.1).collect();
            let decisions: Vec<usize> = events.iter().filter(|e| !e.0).map(|e| e.1).collect();
            let expected: Vec<usize> = (first..first + burst).collect();
            assert_eq!(
                decisions, expected,
                "burst {burst}: every frame decided, in order"
            );
            assert_eq!(
                looks, expected,
                "burst {burst}: every frame looked at once, in order"
            );
            for n in expected {
                let look = events.iter().position(|&e| e == (true, n)).unwrap();
                let decision = events.iter().position(|&e| e == (false, n)).unwrap();
                let between = events[look..decision].iter().filter(|e| !e.0).count();
                assert!(
                    look < decision && between <= LOOK_AHEAD,
                    "burst {burst}, frame {n}: looked at {between} decisions ahead"
                );
            }
        }
        assert_conserved(&ports, "after the bursts");
    })
    .join()
    .expect("veth thread");
}

/// Sends `n` numbered frames on `xa` while nobody polls (in groups of 16, 2 ms
/// apart), then reads the kernel's rx drops and polls (dropping) for 300 ms.
/// Returns (frames received, frames the kernel dropped).
fn burst_unpolled(ports: &mut PortSet, xa: &PacketSocket, n: usize) -> (usize, usize) {
    for i in 0..n as u16 {
        xa.send(&numbered(i)).expect("send on xa");
        if i % 16 == 15 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    std::thread::sleep(Duration::from_millis(20));
    let dropped = ports.stats().rx_dropped as usize;
    let mut received = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        received += ports.poll(64, |_, _| Fate::Drop).expect("poll");
    }
    (received, dropped)
}

/// A UMEM smaller than the fill rings: the pool is split fairly between the
/// two fill rings (a reserve kept for tx), a burst the fill ring cannot take
/// shows up as kernel rx drops, and the frame count is conserved.
#[test]
fn scarce_shared_umem_is_split_fairly_and_conserved() {
    if !privileged("xsk::scarce_shared_umem_is_split_fairly_and_conserved") {
        return;
    }
    std::thread::spawn(|| {
        // 64 frames per port, fill rings of 64: 128 frames for two rings of 64
        // each plus the tx reserve (32 = a quarter of the UMEM).
        let cfg = XskConfig {
            frame_count: 64,
            frame_size: 2048,
            fill_size: 64,
            ring_size: 64,
        };
        let Lab {
            mut ports,
            xa,
            _links,
            _progs,
            ..
        } = two_pairs(cfg);
        let c = ports.census();
        assert_eq!((c.total, c.free), (128, 32), "{c:?}");
        assert_eq!((ports.fill_frames(0), ports.fill_frames(1)), (48, 48));

        // 200 frames while nobody polls: 48 fit (port 0's fill ring), the rest
        // are dropped by the kernel for lack of fill buffers.
        const N: usize = 200;
        let (received, dropped) = burst_unpolled(&mut ports, &xa, N);
        let st = ports.stats();
        eprintln!(
            "scarce: received {received}, rx_dropped {dropped}, then {st:?}, census {:?}, \
             fill {} / {}",
            ports.census(),
            ports.fill_frames(0),
            ports.fill_frames(1)
        );
        assert_eq!(received, 48, "one fill ring's share");
        assert!(dropped > 0, "the kernel's drops show in rx_dropped");
        assert_eq!(
            received + dropped,
            N,
            "every frame received or counted once as dropped (fill ring empty)"
        );
        assert_conserved(&ports, "after the burst");
        // The refill brought port 0's ring back to the level of port 1's.
        assert_eq!((ports.fill_frames(0), ports.fill_frames(1)), (48, 48));
    })
    .join()
    .expect("veth thread");
}

/// An rx ring smaller than the fill ring: a burst nobody polls overflows the rx
/// ring, and the kernel's drops show (once each) in `rx_dropped`.
#[test]
fn rx_ring_full_shows_in_rx_dropped() {
    if !privileged("xsk::rx_ring_full_shows_in_rx_dropped") {
        return;
    }
    std::thread::spawn(|| {
        let cfg = XskConfig {
            frame_count: 256,
            frame_size: 2048,
            fill_size: 128,
            ring_size: 32,
        };
        let Lab {
            mut ports,
            xa,
            _links,
            _progs,
            ..
        } = two_pairs(cfg);
        const N: usize = 200;
        let (received, dropped) = burst_unpolled(&mut ports, &xa, N);
        eprintln!("rx ring full: received {received}, rx_dropped {dropped}");
        assert_eq!(received, 32, "an rx ring's worth");
        assert_eq!(received + dropped, N, "the rest counted once as dropped");
        assert_conserved(&ports, "after the overflow");
    })
    .join()
    .expect("veth thread");
}
