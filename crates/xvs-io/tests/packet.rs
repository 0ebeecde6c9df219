//! The AF_PACKET backend end to end on veth pairs in private network
//! namespaces: frames sent into `pa` reach [`PacketPortSet::poll`] on `pb`
//! byte for byte and go back out of `pb` (rewritten in place) or across to
//! another port; a socket does not see its own tx; fanout splits an interface
//! between workers; partial checksums are flagged; a missing interface is named.
//!
//! Only lab addresses (198.18.0.0/15); the traffic stays on veths in each test
//! thread's own namespace, which disappears with the thread.
//! Needs root; see [`privileged`].

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use xvs_core::wire::build::FrameSpec;
use xvs_io::frames::{Fate, FrameIo};
use xvs_io::packet::{PacketError, PacketPortSet};
use xvs_io::sys::packet::PacketSocket;
use xvs_io::testing::ip;

/// Whether this test may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` and returns false — or panics when
/// `XVS_REQUIRE_PRIVILEGED=1` (CI), so that a skip cannot pass.
fn privileged(test: &str) -> bool {
    xvs_io::testing::privileged(
        test,
        "needs root (CAP_NET_ADMIN, CAP_NET_RAW) for network namespaces, veth and AF_PACKET",
    )
}

/// Runs `f` on a thread in a fresh network namespace (IPv6 off, so the
/// kernel adds no chatter of its own to the veths).
fn in_netns(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(move || {
        xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
        for p in ["all", "default"] {
            // /proc/sys/net is the opening task's namespace; best effort.
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{p}/disable_ipv6"), "1");
        }
        f();
    })
    .join()
    .expect("netns thread");
}

/// Creates veth pair `a`/`b`, both up; returns `a`'s index.
fn veth(a: &str, b: &str) -> u32 {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ip(&["link", "set", a, "up"]);
    ip(&["link", "set", b, "up"]);
    xvs_io::sys::if_index(a).expect("veth index")
}

/// An injector/capture socket on `ifindex`.
fn tap(ifindex: u32) -> PacketSocket {
    let s = PacketSocket::bind(ifindex).expect("AF_PACKET socket");
    s.set_read_timeout(Duration::from_millis(20))
        .expect("SO_RCVTIMEO");
    s
}

/// A UDP frame from 198.18.0.10:`port` to 198.18.1.1:53.
fn frame(port: u16) -> Vec<u8> {
    FrameSpec::udp(
        format!("198.18.0.10:{port}").parse().unwrap(),
        "198.18.1.1:53".parse().unwrap(),
    )
    .build()
}

/// Receives (non-outgoing) frames on `s` until `want` matches one or `d` passes.
fn recv_match(s: &PacketSocket, d: Duration, mut want: impl FnMut(&[u8]) -> bool) -> bool {
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while start.elapsed() < d {
        match s.recv(&mut buf) {
            Ok((n, false)) if want(&buf[..n]) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    false
}

const DEADLINE: Duration = Duration::from_secs(2);

#[test]
fn rx_and_tx_in_place() {
    if !privileged("packet::rx_and_tx_in_place") {
        return;
    }
    in_netns(|| {
        let pa = veth("pa", "pb");
        let mut ports = PacketPortSet::open(&["pb"], None).expect("open pb");
        let inject = tap(pa);

        let sent = frame(1000);
        assert_eq!(inject.send(&sent).expect("send on pa"), sent.len());
        // Rewritten in place: the reply swaps the MACs (as DR would).
        let mut expect_back = sent.clone();
        expect_back[..6].copy_from_slice(&sent[6..12]);
        expect_back[6..12].copy_from_slice(&sent[..6]);
        let mut got = Vec::new();
        let start = Instant::now();
        while got.is_empty() && start.elapsed() < DEADLINE {
            ports.wait(50).expect("wait");
            ports
                .poll(64, |port, f| {
                    if port == 0 && f == &sent[..] {
                        got.push(f.to_vec());
                        let (dst, src) = f.split_at_mut(6);
                        dst.swap_with_slice(&mut src[..6]);
                        Fate::Out(0)
                    } else {
                        Fate::Drop
                    }
                })
                .expect("poll");
        }
        assert_eq!(got, vec![sent.clone()], "received on pb byte for byte");
        assert!(
            recv_match(&inject, DEADLINE, |f| f == &expect_back[..]),
            "sent back out of pb, rewritten, and received on pa"
        );
        let st = ports.stats();
        assert!(st.rx >= 1 && st.tx == 1 && st.tx_dropped == 0, "{st:?}");
        assert_eq!(ports.drain_tx(Instant::now()), 0);
    });
}

#[test]
fn forward_across_ports() {
    if !privileged("packet::forward_across_ports") {
        return;
    }
    in_netns(|| {
        let pa = veth("pa", "pb");
        let qa = veth("qa", "qb");
        let mut ports = PacketPortSet::open(&["pb", "qb"], None).expect("open pb, qb");
        let inject = tap(pa);
        let capture = tap(qa);
        let ours = |f: &[u8]| f.len() == frame(0).len() && f[..30] == frame(0)[..30];

        // One frame, intact.
        let one = frame(999);
        inject.send(&one).expect("send on pa");
        let start = Instant::now();
        let mut seen = 0;
        while seen == 0 && start.elapsed() < DEADLINE {
            ports.wait(50).expect("wait");
            ports
                .poll(64, |port, f| {
                    if port == 0 && f == &one[..] {
                        seen += 1;
                        Fate::Out(1)
                    } else {
                        Fate::Drop
                    }
                })
                .expect("poll");
        }
        assert_eq!(seen, 1);
        assert!(
            recv_match(&capture, DEADLINE, |f| f == &one[..]),
            "forwarded to qb and received on qa"
        );

        // 1000 frames in bursts, bounded by 5 s; in order.
        const N: u16 = 1000;
        const BURST: u16 = 50;
        let before = ports.stats();
        let start = Instant::now();
        let mut next_in = 0u16;
        let mut next_out = 0u16;
        let mut buf = [0u8; 2048];
        while next_in < N && start.elapsed() < Duration::from_secs(5) {
            let end = (next_in + BURST).min(N);
            for i in next_in..end {
                inject.send(&frame(i)).expect("send on pa");
            }
            next_in = end;
            let burst_start = Instant::now();
            while next_out < next_in && burst_start.elapsed() < Duration::from_millis(500) {
                ports.wait(5).expect("wait");
                ports
                    .poll(64, |port, f| {
                        if port == 0 && ours(f) {
                            Fate::Out(1)
                        } else {
                            Fate::Drop
                        }
                    })
                    .expect("poll");
                loop {
                    match capture.recv(&mut buf) {
                        Ok((n, false)) if ours(&buf[..n]) => {
                            assert_eq!(&buf[..n], &frame(next_out)[..], "frame {next_out}");
                            next_out += 1;
                        }
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("recv on qa: {e}"),
                    }
                }
            }
        }
        let st = ports.stats();
        let lost = u64::from(N - next_out);
        let accounted = (st.rx_dropped - before.rx_dropped) + (st.tx_dropped - before.tx_dropped);
        let _ = writeln!(
            std::io::stderr(),
            "forwarded {next_out}/{N} in {:?}; {st:?}",
            start.elapsed()
        );
        assert_eq!(next_in, N, "all frames injected in time");
        assert!(
            lost <= accounted,
            "{lost} frames lost, only {accounted} accounted for: {st:?}"
        );
        assert!(st.tx - before.tx >= u64::from(next_out));
    });
}

/// Injects `f` into `pa`, sends it back out of `pb` once, and counts how often
/// `ports` (on `pb`) sees it within 300 ms after.
fn echo_once_and_count(ports: &mut PacketPortSet, inject: &PacketSocket, f: &[u8]) -> usize {
    inject.send(f).expect("send on pa");
    let mut seen = 0;
    let mut first: Option<Instant> = None;
    let start = Instant::now();
    while start.elapsed() < DEADLINE
        && first.is_none_or(|t| t.elapsed() < Duration::from_millis(300))
    {
        ports.wait(20).expect("wait");
        ports
            .poll(64, |_, g| {
                if g == f {
                    seen += 1;
                    first.get_or_insert_with(Instant::now);
                    Fate::Out(0)
                } else {
                    Fate::Drop
                }
            })
            .expect("poll");
    }
    assert!(
        recv_match(inject, DEADLINE, |g| g == f),
        "the echo reached pa"
    );
    seen
}

/// Sends `g` out of `pb` through the kernel's ordinary (qdisc) path, from
/// another socket, and counts how often `ports` (on `pb`) sees it.
fn host_tx_seen(
    ports: &mut PacketPortSet,
    other: &PacketSocket,
    inject: &PacketSocket,
    g: &[u8],
) -> usize {
    other.send(g).expect("send on pb");
    assert!(recv_match(inject, DEADLINE, |h| h == g), "reached pa");
    let mut seen = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        ports.wait(20).expect("wait");
        ports
            .poll(64, |_, h| {
                seen += usize::from(h == g);
                Fate::Drop
            })
            .expect("poll");
    }
    seen
}

#[test]
fn own_tx_is_not_received_back() {
    if !privileged("packet::own_tx_is_not_received_back") {
        return;
    }
    in_netns(|| {
        let pa = veth("pa", "pb");
        let pb = xvs_io::sys::if_index("pb").expect("pb");
        let inject = tap(pa);
        let other = tap(pb);
        // Alone, then in a fanout group (whose hook replaces the socket's own).
        for fanout in [None, Some(40)] {
            let mut ports = PacketPortSet::open(&["pb"], fanout).expect("open pb");
            let f = frame(2000 + fanout.unwrap_or(0));
            let seen = echo_once_and_count(&mut ports, &inject, &f);
            assert_eq!(seen, 1, "fanout {fanout:?}: our own tx came back");
            let st = ports.stats();
            assert_eq!(st.tx, 1, "fanout {fanout:?}: {st:?}");
            // Our tx bypasses the qdisc and with it the taps; frames the host
            // sends out of pb the usual way are taps' business: not seen either.
            let g = frame(2100 + fanout.unwrap_or(0));
            let seen = host_tx_seen(&mut ports, &other, &inject, &g);
            assert_eq!(seen, 0, "fanout {fanout:?}: outgoing frames seen");
        }
    });
}

#[test]
fn fanout_shares_an_interface_between_workers() {
    if !privileged("packet::fanout_shares_an_interface_between_workers") {
        return;
    }
    in_netns(|| {
        let pa = veth("pa", "pb");
        let inject = tap(pa);
        let mut w0 = PacketPortSet::open(&["pb"], Some(7)).expect("worker 0");
        let mut w1 = PacketPortSet::open(&["pb"], Some(7)).expect("worker 1");
        const N: u16 = 200;
        for i in 0..N {
            inject.send(&frame(3000 + i)).expect("send on pa");
        }
        let mut got = [0u32; N as usize];
        let mut per = [0u32; 2];
        let start = Instant::now();
        while per.iter().sum::<u32>() < u32::from(N) && start.elapsed() < DEADLINE {
            for (w, ports) in [&mut w0, &mut w1].into_iter().enumerate() {
                ports.wait(5).expect("wait");
                ports
                    .poll(64, |_, f| {
                        if let Some(i) = (0..N).find(|&i| f == &frame(3000 + i)[..]) {
                            got[usize::from(i)] += 1;
                            per[w] += 1;
                        }
                        Fate::Drop
                    })
                    .expect("poll");
            }
        }
        assert!(
            got.iter().all(|&c| c == 1),
            "each frame exactly once: {got:?}"
        );
        assert!(per[0] > 0 && per[1] > 0, "both workers got flows: {per:?}");
    });
}

#[test]
fn partial_checksums_are_counted_and_passed_on() {
    if !privileged("packet::partial_checksums_are_counted_and_passed_on") {
        return;
    }
    in_netns(|| {
        veth("pa", "pb");
        ip(&["addr", "add", "198.18.0.1/24", "dev", "pa"]);
        ip(&[
            "neigh",
            "add",
            "198.18.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "pa",
            "nud",
            "permanent",
        ]);
        let mut ports = PacketPortSet::open(&["pb"], None).expect("open pb");
        let udp = std::net::UdpSocket::bind("198.18.0.1:0").expect("udp bind");
        let is_ours = |f: &[u8]| f.len() > 42 && f[12..14] == [8, 0] && f[36..38] == [0, 9];
        let count = |ports: &mut PacketPortSet| {
            udp.send_to(b"partial?", "198.18.0.2:9").expect("udp send");
            let mut seen = 0;
            let start = Instant::now();
            while seen == 0 && start.elapsed() < DEADLINE {
                ports.wait(20).expect("wait");
                ports
                    .poll(64, |_, f| {
                        seen += usize::from(is_ours(f));
                        Fate::Drop
                    })
                    .expect("poll");
            }
            assert_eq!(seen, 1, "the datagram reached pb");
            ports.packet_stats().csum_partial
        };
        assert_eq!(count(&mut ports), 1, "tx checksum offload on: partial");
        let off = Command::new("ethtool")
            .args(["-K", "pa", "tx", "off"])
            .output();
        if off.is_ok_and(|o| o.status.success()) {
            assert_eq!(count(&mut ports), 1, "tx checksum offload off: complete");
        } else {
            let _ = writeln!(
                std::io::stderr(),
                "ethtool -K pa tx off failed; half tested"
            );
        }
    });
}

#[test]
fn a_missing_interface_is_named() {
    // A worker's I/O moves to the worker's thread.
    fn send<T: Send>() {}
    send::<PacketPortSet>();
    // Unprivileged: if_nametoindex fails before any socket is made.
    let e = PacketPortSet::open(&["xvs-nosuch0"], None).expect_err("no such interface");
    assert!(
        matches!(&e, PacketError::Sys { ifname, op: "if_nametoindex", .. } if ifname == "xvs-nosuch0"),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(
        msg.starts_with("interface xvs-nosuch0: if_nametoindex: "),
        "{msg}"
    );
    if !privileged("packet::a_missing_interface_is_named") {
        return;
    }
    in_netns(|| {
        veth("pa", "pb");
        let e = PacketPortSet::open(&["pb", "qb"], None).expect_err("qb is missing");
        assert!(e.to_string().starts_with("interface qb: "), "{e}");
    });
}

#[test]
fn a_block_is_read_over_several_polls_and_overflow_is_counted() {
    if !privileged("packet::a_block_is_read_over_several_polls_and_overflow_is_counted") {
        return;
    }
    in_netns(|| {
        let pa = veth("pa", "pb");
        let inject = tap(pa);
        // Large blocks: 300 frames fit one or two; `max` = 7 cuts them.
        let mut ports = PacketPortSet::open(&["pb"], None).expect("open pb");
        const N: u16 = 300;
        for i in 0..N {
            inject.send(&frame(4000 + i)).expect("send on pa");
        }
        let mut next = 0u16;
        let start = Instant::now();
        while next < N && start.elapsed() < DEADLINE {
            ports.wait(5).expect("wait");
            let n = ports
                .poll(7, |_, f| {
                    if next < N && f == &frame(4000 + next)[..] {
                        next += 1;
                    }
                    Fate::Drop
                })
                .expect("poll");
            assert!(n <= 7, "poll took {n} > max");
        }
        assert_eq!(next, N, "every frame, in order");
        drop(ports);

        // A tiny ring (2 × 4 KiB, ≈ 56 small frames), not read while 500
        // frames arrive: the kernel's drops show in rx_dropped, and rx +
        // rx_dropped adds up to what was sent.
        let cfg = xvs_io::packet::PacketConfig {
            block_size: 4096,
            block_nr: 2,
            frame_size: 2048,
            ..Default::default()
        };
        let mut ports = PacketPortSet::open_with(&["pb"], None, cfg).expect("tiny ring");
        const M: u16 = 500;
        for i in 0..M {
            inject.send(&frame(5000 + i)).expect("send on pa");
        }
        let start = Instant::now();
        let mut quiet = 0;
        while quiet < 20 && start.elapsed() < DEADLINE {
            let n = ports.poll(64, |_, _| Fate::Drop).expect("poll");
            quiet = if n == 0 { quiet + 1 } else { 0 };
            std::thread::sleep(Duration::from_millis(5));
        }
        let st = ports.stats();
        assert!(st.rx_dropped > 0, "{st:?}");
        assert_eq!(st.rx + st.rx_dropped, u64::from(M), "{st:?}");
    });
}

#[test]
fn vlan_tags_are_put_back() {
    if !privileged("packet::vlan_tags_are_put_back") {
        return;
    }
    in_netns(|| {
        let pa = veth("pa", "pb");
        let inject = tap(pa);
        let mut ports = PacketPortSet::open(&["pb"], None).expect("open pb");
        // A plain socket reads frames without their tag: capture on pa with
        // a port set too.
        let mut capture = PacketPortSet::open(&["pa"], None).expect("open pa");
        let tagged = FrameSpec::udp(
            "198.18.0.10:6000".parse().unwrap(),
            "198.18.1.1:53".parse().unwrap(),
        )
        .with_vlan(Some(100))
        .build();
        assert_eq!(
            tagged[12..16],
            [0x81, 0x00, 0x00, 100],
            "802.1Q tag, VID 100"
        );
        inject.send(&tagged).expect("send on pa");
        let mut got = Vec::new();
        let start = Instant::now();
        while got.is_empty() && start.elapsed() < DEADLINE {
            ports.wait(20).expect("wait");
            ports
                .poll(64, |_, f| {
                    if f.len() == tagged.len() && f[..12] == tagged[..12] {
                        got.push(f.to_vec());
                        Fate::Out(0)
                    } else {
                        Fate::Drop
                    }
                })
                .expect("poll");
        }
        assert_eq!(got, vec![tagged.clone()], "tag in place, byte for byte");
        assert_eq!(ports.packet_stats().vlan_restored, 1);
        let mut back = 0;
        let start = Instant::now();
        while back == 0 && start.elapsed() < DEADLINE {
            capture.wait(20).expect("wait");
            capture
                .poll(64, |_, f| {
                    back += usize::from(f == &tagged[..]);
                    Fate::Drop
                })
                .expect("poll");
        }
        assert_eq!(back, 1, "sent back out of pb with its tag");
    });
}
