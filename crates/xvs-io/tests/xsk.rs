//! AF_XDP sockets end to end on a veth pair in a private network namespace:
//! a frame sent into `xa` by an AF_PACKET socket reaches the AF_XDP rx ring on
//! `xb` (through the steering program) byte for byte, and a frame transmitted
//! from the AF_XDP socket on `xb` is received on `xa`.
//!
//! Only lab addresses (198.18.0.0/15); the traffic stays on the veth in the
//! test thread's own namespace, which disappears with the thread.
//! Needs root; see [`privileged`].

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use xvs_core::wire::build::FrameSpec;
use xvs_io::steer::{SteeringProgram, XdpMode};
use xvs_io::sys::packet::PacketSocket;
use xvs_io::xsk::{Action, Port, XskConfig, XskError};

/// Whether this test may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` and returns false — or panics when
/// `XVS_REQUIRE_PRIVILEGED=1` (CI), so that a skip cannot pass.
fn privileged(test: &str) -> bool {
    if xvs_io::sys::effective_uid_is_root() {
        return true;
    }
    let reason =
        "needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW, CAP_IPC_LOCK) for veth, XDP and AF_XDP";
    if std::env::var("XVS_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{test}: {reason}, and XVS_REQUIRE_PRIVILEGED=1 forbids skipping");
    }
    let _ = writeln!(std::io::stderr(), "SKIP: {test}: {reason}");
    false
}

/// Runs `ip ARGS` from the calling thread (so in its network namespace).
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
