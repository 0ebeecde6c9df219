//! Generator → sink on a veth pair in a private network namespace (one per
//! test, owned by the test's thread, gone with it): frame counts, per-flow and
//! per-destination counts, latency, pacing, checksums, and ARP passing — for the
//! live-frame generator, the AF_XDP source and the recirculating loop.
//!
//! Only lab addresses (198.18.0.0/15); nothing leaves the namespaces.
//! Needs root; see [`privileged`].

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use xvs_core::wire::{EthernetFrame, Ipv4Packet, TcpPacket, checksum};
use xvs_io::steer::XdpMode;
use xvs_io::sys::packet::PacketSocket;
use xvs_pktgen::lab::{GEN_MAC, SINK_MAC, VethLab, ip, run_in_private_netns};
use xvs_pktgen::{
    GenReport, Generator, GeneratorConfig, Pace, Proto, Recirculator, RecirculatorConfig, Sink,
    SinkAttach, SinkOptions, SinkVerdict, TemplateSpec,
};

/// Whether this test may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` and returns false — or panics when
/// `XVS_REQUIRE_PRIVILEGED=1` (CI), so that a skip cannot pass.
fn privileged(test: &str) -> bool {
    xvs_io::testing::privileged(
        test,
        "needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW) for netns, veth and XDP",
    )
}

/// Runs the generator; `None` — after a visible `SKIP:` line — when this kernel
/// refuses live frames ([`GenError::live_frames_refused`]). Any other error fails
/// the test.
fn run_or_skip(
    test: &str,
    generator: &Generator,
    pace: Pace,
    count: u64,
    limit: Duration,
) -> Option<GenReport> {
    match generator.run(pace, count, limit) {
        Ok(run) => Some(run),
        Err(e) if e.live_frames_refused() => {
            eprintln!("SKIP: {test}: this kernel refuses BPF_PROG_RUN live frames ({e})");
            None
        }
        Err(e) => panic!("run: {e:?}"),
    }
}

const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const BASE_PORT: u16 = 20000;

fn generator(lab: &VethLab, proto: Proto, flows: u32) -> Generator {
    Generator::new(GeneratorConfig {
        template: TemplateSpec {
            proto,
            src_mac: GEN_MAC,
            dst_mac: SINK_MAC,
            src: SRC,
            dst: DST,
            base_src_port: BASE_PORT,
            dst_port: 9,
            frame_len: 64,
        },
        flows,
        ifindex: lab.gen_ifindex,
        batch_size: 0,
    })
    .unwrap_or_else(|e| panic!("generator: {e}"))
}

/// The TCP segments of up to `max` IPv4 frames waiting on `pkt` (until it has
/// none for its read timeout, at most 3 s), each one's checksum asserted
/// valid (frames `SRC` → `DST`); other frames (IPv6 ND) are skipped.
fn tcp_segments_checked(pkt: &PacketSocket, max: u64) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let mut segments = Vec::new();
    let start = Instant::now();
    while (segments.len() as u64) < max && start.elapsed() < Duration::from_secs(3) {
        let n = match pkt.recv(&mut buf) {
            Ok((n, false)) => n,
            Ok((_, true)) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("recv: {e}"),
        };
        let eth = EthernetFrame::new_checked(&buf[..n]).expect("ethernet");
        let Ok(ipv4) = Ipv4Packet::new_checked(eth.payload()) else {
            continue; // IPv6 ND from the interfaces coming up
        };
        let seg = ipv4.payload();
        let tcp = TcpPacket::new_checked(seg).expect("tcp");
        let pseudo = checksum::pseudo_header_v4(SRC, DST, 6, seg.len() as u16);
        assert_eq!(
            checksum::fold(checksum::combine(pseudo, checksum::sum(seg))),
            0xffff,
            "frame {}: bad TCP checksum {:#06x}",
            segments.len(),
            tcp.checksum()
        );
        segments.push(seg.to_vec());
    }
    segments
}

fn sink(lab: &VethLab, flows: u32) -> Sink {
    let opts = SinkOptions {
        flows,
        ..SinkOptions::default()
    };
    Sink::attach(lab.sink_ifindex, opts).unwrap_or_else(|e| panic!("sink: {e}"))
}

#[test]
fn a_fixed_count_is_delivered_and_counted_per_flow_and_destination() {
    const TEST: &str = "veth::a_fixed_count_is_delivered_and_counted_per_flow_and_destination";
    if !privileged(TEST) {
        return;
    }
    run_in_private_netns(|| {
        const COUNT: u64 = 100_000;
        const FLOWS: u32 = 64;
        let lab = VethLab::create("g0", "s0").expect("lab");
        let sink = sink(&lab, FLOWS);
        let generator = generator(&lab, Proto::Udp, FLOWS);
        let Some(run) = run_or_skip(
            TEST,
            &generator,
            Pace::FlatOut,
            COUNT,
            Duration::from_secs(5),
        ) else {
            return;
        };
        assert_eq!(run.sent, COUNT, "the count bounds the run: {run:?}");
        sink.settle(Duration::from_millis(50), Duration::from_secs(1))
            .expect("settle");
        let r = sink.read().expect("read");
        let shortfall = run.sent - r.delivered.min(run.sent);
        eprintln!(
            "sent {} delivered {} (shortfall {shortfall}) in {:?}, {:.2} Mpps",
            run.sent,
            r.delivered,
            run.elapsed,
            run.pps() / 1e6
        );
        assert!(
            r.delivered <= run.sent,
            "no more than sent: {}",
            r.delivered
        );
        // veth may drop when its 256-frame ring is full; that must stay small
        // and show as a shortfall, never as phantom frames.
        assert!(
            r.delivered * 100 >= run.sent * 95,
            "delivered {} of {} (shortfall {shortfall})",
            r.delivered,
            run.sent
        );
        assert_eq!(r.delivered_bytes, r.delivered * 64, "64-byte frames");
        assert_eq!(r.per_dest.len(), 1, "{:?}", r.per_dest);
        assert_eq!(r.per_dest.get(&DST), Some(&r.delivered));
        assert_eq!(r.dest_overflow, 0);
        assert_eq!(r.per_flow.len(), FLOWS as usize);
        assert_eq!(r.per_flow.iter().sum::<u64>(), r.delivered);
        assert_eq!(
            r.flows_seen(),
            FLOWS as usize,
            "every flow: {:?}",
            r.per_flow
        );
        let (min, max) = r.flow_spread();
        assert!(max - min <= max / 10 + 2, "even spread: {min}..{max}");
        assert_eq!(r.latency.len() + r.latency_overflow, r.delivered);
        assert_eq!(r.latency_overflow, 0, "no timestamp from the future");
        let p50 = r.latency_ns(0.5);
        assert!(p50 > 0, "p50 {p50}");
        assert!(r.latency_ns(0.999) >= p50);
        eprintln!(
            "latency p50 {} ns, p99 {} ns, p99.9 {} ns",
            p50,
            r.latency_ns(0.99),
            r.latency_ns(0.999)
        );
    });
}

#[test]
fn a_paced_run_keeps_the_rate_within_20_percent() {
    const TEST: &str = "veth::a_paced_run_keeps_the_rate_within_20_percent";
    if !privileged(TEST) {
        return;
    }
    run_in_private_netns(|| {
        const RATE: u64 = 200_000;
        let lab = VethLab::create("g0", "s0").expect("lab");
        let sink = sink(&lab, 16);
        let generator = generator(&lab, Proto::Udp, 16);
        let Some(run) = run_or_skip(
            TEST,
            &generator,
            Pace::Rate(RATE),
            u64::MAX,
            Duration::from_secs(2),
        ) else {
            return;
        };
        let delivered = sink
            .settle(Duration::from_millis(50), Duration::from_secs(1))
            .expect("settle");
        let pps = run.pps();
        eprintln!(
            "asked {RATE} pps: sent {} in {:?} ({} calls) = {pps:.0} pps, delivered {delivered}",
            run.sent, run.elapsed, run.calls
        );
        assert!(
            (0.8..=1.2).contains(&(pps / RATE as f64)),
            "{pps:.0} pps for {RATE}"
        );
        assert!(
            run.elapsed < Duration::from_millis(2500),
            "{:?}",
            run.elapsed
        );
        assert!(
            delivered * 100 >= run.sent * 95,
            "{delivered} of {}",
            run.sent
        );
    });
}

/// The generator's TCP checksum update holds on frames sent live. The socket's
/// receive buffer (each frame is a page-sized skb) keeps only the first ≈ 50
/// of a burst, so this checks the first frames of a call; the update reads the
/// frame's current port, timestamp and checksum, so a page that comes back
/// with a previous frame's bytes (the sink's path) is updated the same way.
#[test]
fn live_tcp_frames_carry_valid_checksums_and_rotating_ports() {
    const TEST: &str = "veth::live_tcp_frames_carry_valid_checksums_and_rotating_ports";
    if !privileged(TEST) {
        return;
    }
    run_in_private_netns(|| {
        const COUNT: u64 = 2000;
        let lab = VethLab::create("g0", "s0").expect("lab");
        // No XDP on s0: GRO on lets it take XDP frames, for AF_PACKET to see them.
        xvs_io::sys::ethtool::set_gro(&lab.sink_if, true).expect("gro on");
        let pkt = PacketSocket::bind(lab.sink_ifindex).expect("AF_PACKET on s0");
        pkt.set_read_timeout(Duration::from_millis(100))
            .expect("SO_RCVTIMEO");
        let generator = generator(&lab, Proto::Tcp, 7);
        let preview = generator.preview().expect("preview");
        assert_eq!(preview.len(), 64);
        let Some(run) = run_or_skip(
            TEST,
            &generator,
            Pace::FlatOut,
            COUNT,
            Duration::from_secs(2),
        ) else {
            return;
        };
        assert_eq!(run.sent, COUNT);
        let segments = tcp_segments_checked(&pkt, COUNT);
        let mut ports = std::collections::BTreeSet::new();
        for seg in &segments {
            assert_ne!(&seg[22..30], &[0u8; 8], "timestamp written");
            ports.insert(u16::from_be_bytes([seg[0], seg[1]]));
        }
        let checked = segments.len();
        eprintln!("checked {checked} of {COUNT} frames; ports {ports:?}");
        assert!(checked >= 20, "received {checked} of {COUNT}");
        let want: std::collections::BTreeSet<u16> = (BASE_PORT..BASE_PORT + 7).collect();
        assert_eq!(ports, want);
    });
}

#[test]
fn the_sink_passes_arp_and_unmarked_frames() {
    if !privileged("veth::the_sink_passes_arp_and_unmarked_frames") {
        return;
    }
    run_in_private_netns(|| {
        let lab = VethLab::create("g0", "s0").expect("lab");
        ip(&["addr", "add", "198.18.0.2/24", "dev", &lab.sink_if]).expect("address on s0");
        let sink = sink(&lab, 16);
        let before = sink.read().expect("read").passed;
        let pkt = PacketSocket::bind(lab.gen_ifindex).expect("AF_PACKET on g0");
        pkt.set_read_timeout(Duration::from_millis(100))
            .expect("SO_RCVTIMEO");
        // who-has 198.18.0.2 tell 198.18.0.1, from g0.
        let mut arp = Vec::new();
        arp.extend_from_slice(&[0xff; 6]);
        arp.extend_from_slice(&GEN_MAC);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
        arp.extend_from_slice(&GEN_MAC);
        arp.extend_from_slice(&[198, 18, 0, 1]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[198, 18, 0, 2]);
        // An unmarked UDP frame to s0 (it must pass too, and not be counted).
        let udp = xvs_core::wire::build::FrameSpec::udp(
            "198.18.0.1:1000".parse().unwrap(),
            "198.18.0.2:9".parse().unwrap(),
        )
        .with_macs(GEN_MAC, SINK_MAC)
        .with_payload(b"not the generator")
        .build();
        let mut replied = false;
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        'outer: while start.elapsed() < Duration::from_secs(3) {
            pkt.send(&arp).expect("send ARP");
            pkt.send(&udp).expect("send UDP");
            let wait = Instant::now();
            while wait.elapsed() < Duration::from_millis(300) {
                match pkt.recv(&mut buf) {
                    Ok((n, false)) => {
                        // An ARP reply (op 2) from s0's MAC for 198.18.0.2.
                        let f = &buf[..n];
                        if n >= 42
                            && f[12..14] == [0x08, 0x06]
                            && f[20..22] == [0, 2]
                            && f[22..28] == SINK_MAC
                            && f[28..32] == [198, 18, 0, 2]
                        {
                            replied = true;
                            break 'outer;
                        }
                    }
                    Ok((_, true)) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        let r = sink.read().expect("read");
        assert!(replied, "s0's kernel answered ARP through the sink");
        assert!(
            r.passed >= before + 2,
            "ARP and UDP passed: {} → {}",
            before,
            r.passed
        );
        assert_eq!(r.delivered, 0, "nothing counted as the generator's");
    });
}

/// The sink's verdicts and counters on hand-made frames (`BPF_PROG_RUN`, no
/// interface), as an XDP program and as a tc one: only well-formed marked IPv4
/// UDP/TCP frames are counted and dropped.
#[test]
fn the_sink_counts_only_marked_frames() {
    if !privileged("veth::the_sink_counts_only_marked_frames") {
        return;
    }
    sink_counts_only_marked_frames(SinkAttach::Xdp(XdpMode::Native));
    sink_counts_only_marked_frames(SinkAttach::TcIngress);
}

fn sink_counts_only_marked_frames(attach: SinkAttach) {
    use xvs_core::wire::build::FrameSpec;
    let sink = Sink::load(SinkOptions {
        flows: 10,
        max_dests: 2,
        attach,
    })
    .expect("load");
    let marked = |proto, dst: Ipv4Addr, port: u16, size| {
        let mut f = TemplateSpec {
            proto,
            src_mac: GEN_MAC,
            dst_mac: SINK_MAC,
            src: SRC,
            dst,
            base_src_port: port,
            dst_port: 9,
            frame_len: size,
        }
        .build()
        .expect("template");
        // Timestamp: 1 ns after boot (CLOCK_MONOTONIC).
        f[proto.timestamp_offset()..][..8].copy_from_slice(&1u64.to_ne_bytes());
        f
    };
    let rs1 = Ipv4Addr::new(198, 18, 2, 1);
    let rs2 = Ipv4Addr::new(198, 18, 2, 2);
    let rs3 = Ipv4Addr::new(198, 18, 2, 3);
    let drop = [
        marked(Proto::Udp, rs1, 1003, 64),
        marked(Proto::Udp, rs1, 1013, 128),
        marked(Proto::Tcp, rs2, 1004, 64),
        marked(Proto::Udp, rs2, 1000, 1514),
        marked(Proto::Udp, rs3, 1000, 64), // a third destination: table full
    ];
    for f in &drop {
        assert_eq!(
            sink.test_run(f).expect("run"),
            SinkVerdict::Counted,
            "{attach:?}"
        );
    }
    let mut unmarked = marked(Proto::Udp, rs1, 1003, 64);
    unmarked[Proto::Udp.payload_offset()] = b'x';
    let mut fragment = marked(Proto::Udp, rs1, 1003, 64);
    fragment[14 + 6] |= 0x20; // MF
    let with_options = FrameSpec::udp(
        "198.18.0.1:1003".parse().unwrap(),
        "198.18.2.1:9".parse().unwrap(),
    )
    .with_ipv4_options(&[1, 1, 1, 1])
    .with_payload(&marked(Proto::Udp, rs1, 1003, 64)[42..])
    .build();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&GEN_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    arp.resize(60, 0);
    let short = marked(Proto::Udp, rs1, 1003, 64)[..51].to_vec();
    let pass = [unmarked, fragment, with_options, arp, short];
    for (i, f) in pass.iter().enumerate() {
        assert_eq!(
            sink.test_run(f).expect("run"),
            SinkVerdict::Passed,
            "{attach:?}: frame {i}"
        );
    }
    let r = sink.read().expect("read");
    assert_eq!(r.delivered, 5);
    assert_eq!(r.delivered_bytes, 64 + 128 + 64 + 1514 + 64);
    assert_eq!(r.passed, 5);
    assert_eq!(r.dest_overflow, 1);
    assert_eq!(r.per_dest.len(), 2);
    assert_eq!(r.per_dest[&rs1], 2);
    assert_eq!(r.per_dest[&rs2], 2);
    // Ports 1003, 1013, 1004, 1000, 1000 modulo 10.
    assert_eq!(r.per_flow, vec![2, 0, 0, 2, 1, 0, 0, 0, 0, 0]);
    // Latency = now − 1 ns ≈ the uptime: a regular bucket below 2^40 ns
    // (≈ 18 min), the overflow bucket above; every frame is in one of them.
    assert_eq!(r.latency.len() + r.latency_overflow, 5);
}

#[test]
fn the_af_xdp_source_is_smooth_and_timestamped() {
    if !privileged("veth::the_af_xdp_source_is_smooth_and_timestamped") {
        return;
    }
    run_in_private_netns(|| {
        const RATE: u64 = 100_000;
        const FLOWS: u32 = 32;
        let lab = VethLab::create("g0", "s0").expect("lab");
        let sink = sink(&lab, FLOWS);
        let template = generator(&lab, Proto::Udp, FLOWS).config().template.clone();
        let start = std::time::Instant::now();
        let sent = xvs_pktgen::xsk_gen::send(
            "g0",
            &template,
            FLOWS,
            Pace::Rate(RATE),
            u64::MAX,
            Duration::from_secs(1),
        )
        .expect("paced AF_XDP run");
        let took = start.elapsed();
        sink.settle(Duration::from_millis(50), Duration::from_secs(1))
            .expect("settle");
        let r = sink.read().expect("read");
        eprintln!(
            "asked {RATE} pps for 1 s: sent {sent} in {took:?}, delivered {}, p50 {} ns",
            r.delivered,
            r.latency_ns(0.5)
        );
        assert!(
            (0.8..=1.2).contains(&(sent as f64 / RATE as f64)),
            "{sent} frames for {RATE} pps × 1 s"
        );
        assert!(
            r.delivered * 100 >= sent * 95,
            "delivered {} of {sent}",
            r.delivered
        );
        assert_eq!(
            r.flows_seen(),
            FLOWS as usize,
            "every flow: {:?}",
            r.per_flow
        );
        let p50 = r.latency_ns(0.5);
        assert!(
            p50 > 0 && p50 < 10_000_000,
            "p50 {p50} ns from userspace timestamps"
        );
        assert!(took < Duration::from_millis(1500), "bounded: {took:?}");
    });
}

/// The sink at tc ingress on a real veth: frames sent by an AF_XDP socket (skbs,
/// as a forwarder's copy-mode tx makes them) are counted per flow and dropped.
#[test]
fn the_tc_sink_counts_frames_from_an_af_xdp_socket() {
    if !privileged("veth::the_tc_sink_counts_frames_from_an_af_xdp_socket") {
        return;
    }
    run_in_private_netns(|| {
        const COUNT: u64 = 10_000;
        const FLOWS: u32 = 8;
        let lab = VethLab::create("g0", "s0").expect("lab");
        let sink = Sink::attach(
            lab.sink_ifindex,
            SinkOptions {
                flows: FLOWS,
                attach: SinkAttach::TcIngress,
                ..SinkOptions::default()
            },
        )
        .expect("tc sink");
        let template = generator(&lab, Proto::Udp, FLOWS).config().template.clone();
        let sent = xvs_pktgen::xsk_gen::send(
            "g0",
            &template,
            FLOWS,
            Pace::Rate(50_000),
            COUNT,
            Duration::from_secs(2),
        )
        .expect("paced AF_XDP run");
        sink.settle(Duration::from_millis(50), Duration::from_secs(1))
            .expect("settle");
        let r = sink.read().expect("read");
        assert_eq!(sent, COUNT, "the count bounds the run");
        assert!(
            r.delivered <= sent && r.delivered * 100 >= sent * 95,
            "delivered {} of {sent}",
            r.delivered
        );
        assert_eq!(r.per_flow.iter().sum::<u64>(), r.delivered);
        assert_eq!(r.flows_seen(), FLOWS as usize, "{:?}", r.per_flow);
        assert_eq!(r.delivered_bytes, r.delivered * 64, "64-byte frames");
        assert_eq!(r.latency.len() + r.latency_overflow, r.delivered);
    });
}

#[test]
fn the_af_xdp_source_flat_out_stops_at_its_count() {
    if !privileged("veth::the_af_xdp_source_flat_out_stops_at_its_count") {
        return;
    }
    run_in_private_netns(|| {
        const COUNT: u64 = 20_000;
        const FLOWS: u32 = 16;
        let lab = VethLab::create("g0", "s0").expect("lab");
        let sink = sink(&lab, FLOWS);
        let template = generator(&lab, Proto::Udp, FLOWS).config().template.clone();
        let start = Instant::now();
        let sent = xvs_pktgen::xsk_gen::send(
            "g0",
            &template,
            FLOWS,
            Pace::FlatOut,
            COUNT,
            Duration::from_secs(5),
        )
        .expect("flat-out AF_XDP run");
        let took = start.elapsed();
        sink.settle(Duration::from_millis(50), Duration::from_secs(1))
            .expect("settle");
        let r = sink.read().expect("read");
        eprintln!(
            "flat out, {COUNT} frames: sent {sent} in {took:?} ({:.3} Mpps), delivered {}",
            sent as f64 / took.as_secs_f64() / 1e6,
            r.delivered
        );
        assert_eq!(sent, COUNT, "the count bounds a flat-out run");
        assert!(
            r.delivered * 100 >= sent * 95,
            "delivered {} of {sent}",
            r.delivered
        );
        assert_eq!(
            r.flows_seen(),
            FLOWS as usize,
            "every flow: {:?}",
            r.per_flow
        );
    });
}

/// The recirculator on a loop `r0 ══ r1` beside the lab, sending out of `g0`.
fn recirculator(lab: &VethLab, proto: Proto, flows: u32) -> Recirculator {
    lab.add_loop("r0", "r1").expect("loop veths");
    let template = generator(lab, proto, flows).config().template.clone();
    Recirculator::attach(RecirculatorConfig {
        template,
        flows,
        out_ifindex: lab.gen_ifindex,
        loop_a: "r0".into(),
        loop_b: "r1".into(),
    })
    .unwrap_or_else(|e| panic!("recirculator: {e}"))
}

#[test]
fn the_recirculating_loop_sends_exactly_its_count_then_falls_silent() {
    if !privileged("veth::the_recirculating_loop_sends_exactly_its_count_then_falls_silent") {
        return;
    }
    run_in_private_netns(|| {
        const COUNT: u64 = 300_000;
        const FLOWS: u32 = 64;
        let lab = VethLab::create("g0", "s0").expect("lab");
        let sink = sink(&lab, FLOWS);
        let loop_gen = recirculator(&lab, Proto::Udp, FLOWS);
        let run = loop_gen
            .run(COUNT, Duration::from_secs(10))
            .expect("recirculating run");
        sink.settle(Duration::from_millis(50), Duration::from_secs(1))
            .expect("settle");
        let r = sink.read().expect("read");
        eprintln!("{run}; delivered {}", r.delivered);
        assert_eq!(run.sent, COUNT, "the count bounds the loop");
        assert!(
            r.delivered <= run.sent && r.delivered * 100 >= run.sent * 95,
            "delivered {} of {}",
            r.delivered,
            run.sent
        );
        assert_eq!(r.flows_seen(), FLOWS as usize, "{:?}", r.per_flow);
        let (low, high) = r.flow_spread();
        assert!(high - low <= high / 10 + 2, "flows even: {low}..{high}");
        assert!(r.latency_ns(0.5) > 0, "timestamped");
        // Nothing is left going round: the sink sees no more frames.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(sink.delivered().expect("read"), r.delivered, "silent");
        // A second run on the same loop counts from where the first stopped.
        let again = loop_gen
            .run(1000, Duration::from_secs(5))
            .expect("second run");
        assert_eq!(again.sent, 1000);
    });
}

#[test]
fn the_recirculating_loop_stops_at_its_deadline_and_keeps_tcp_checksums() {
    if !privileged("veth::the_recirculating_loop_stops_at_its_deadline_and_keeps_tcp_checksums") {
        return;
    }
    run_in_private_netns(|| {
        const FLOWS: u32 = 7;
        let lab = VethLab::create("g0", "s0").expect("lab");
        // No XDP on s0: GRO on lets it take XDP frames, for AF_PACKET to see them.
        xvs_io::sys::ethtool::set_gro(&lab.sink_if, true).expect("gro on");
        let pkt = PacketSocket::bind(lab.sink_ifindex).expect("AF_PACKET on s0");
        pkt.set_read_timeout(Duration::from_millis(100))
            .expect("SO_RCVTIMEO");
        let loop_gen = recirculator(&lab, Proto::Tcp, FLOWS);
        let start = Instant::now();
        let run = loop_gen
            .run(u64::MAX, Duration::from_millis(300))
            .expect("recirculating run");
        let took = start.elapsed();
        eprintln!("{run} in {took:?}");
        assert!(run.sent > 1000, "it sent: {run}");
        assert!(took < Duration::from_secs(1), "bounded by time: {took:?}");
        // The socket's buffer holds the frames it could take: check them.
        let segments = tcp_segments_checked(&pkt, 10_000);
        let ports: std::collections::BTreeSet<u16> = segments
            .iter()
            .map(|seg| u16::from_be_bytes([seg[0], seg[1]]))
            .collect();
        let checked = segments.len();
        eprintln!("checked {checked} frames; ports {ports:?}");
        assert!(checked >= 20, "received {checked}");
        let want: std::collections::BTreeSet<u16> = (BASE_PORT..BASE_PORT + 7).collect();
        assert_eq!(ports, want);
    });
}
