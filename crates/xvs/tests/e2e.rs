//! End to end on real sockets: the `xvs` binary in a namespace lab forwards real
//! curl / UDP traffic to real servers by NAT (IPv4, IPv6) and DR, with mark
//! services, persistence and blocking rules, on AF_XDP native and generic mode.
//! Needs root (see `lab::privileged`); every lab is torn down on drop.

mod lab;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use lab::{Lab, big_body, csum_errors, in_netns, nat_lab, privileged};

/// The NAT suite's configuration (`MODE` = native | generic).
const NAT_CONFIG: &str = r#"
director:
  interfaces: [ext, int]
  xdp_mode: MODE
  cores: [1]
  tables: {connections: 65536, persistence: 4096, shards: 16}
rules:
  - src: [198.18.9.0/24]
    action: drop
  - dst: [198.18.1.3/32]
    protocol: tcp
    dst_ports: [80, 443]
    action: {mark: 7}
services:
  - name: web
    protocol: tcp
    vip: 198.18.1.1
    port: 80
    scheduler: rr
    real_servers:
      - {address: 198.19.0.10, port: 8080}
      - {address: 198.19.0.11, port: 8080}
  - name: web-wrr
    protocol: tcp
    vip: 198.18.1.2
    port: 80
    scheduler: wrr
    real_servers:
      - {address: 198.19.0.10, port: 8080, weight: 3}
      - {address: 198.19.0.11, port: 8080, weight: 1}
  - name: echo
    protocol: udp
    vip: 198.18.1.1
    port: 53
    scheduler: rr
    real_servers:
      - {address: 198.19.0.10, port: 5353}
      - {address: 198.19.0.11, port: 5353}
  - name: web6
    protocol: tcp
    vip: 2001:db8:1::1
    port: 80
    scheduler: rr
    real_servers:
      - {address: "2001:db8:2::10", port: 8080}
      - {address: "2001:db8:2::11", port: 8080}
  - name: shop
    mark: 7
    scheduler: rr
    persistence: {timeout: 300, netmask: 255.255.255.0}
    real_servers:
      - {address: 198.19.0.10}
      - {address: 198.19.0.11}
"#;

fn count(bodies: &[String], who: &str) -> usize {
    bodies.iter().filter(|b| b.as_str() == who).count()
}

/// `n` requests to `url` from `src`; the bodies (each must succeed).
fn requests(lab: &Lab, ns: &str, url: &str, src: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            lab.curl(ns, url, &["--interface", src])
                .unwrap_or_else(|e| panic!("request {i} to {url} from {src}: {e}"))
        })
        .collect()
}

/// One UDP datagram from a fresh socket on `src` to `to`; the reply and its source.
fn udp_ask(lab: &Lab, ns: &str, src: &str, to: &str, payload: &str) -> (String, SocketAddr) {
    let src: SocketAddr = format!("{src}:0").parse().unwrap();
    let to: SocketAddr = to.parse().unwrap();
    let payload = payload.to_owned();
    let _ = lab;
    in_netns(ns, move || {
        let sock = UdpSocket::bind(src).expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        for _ in 0..4 {
            sock.send_to(payload.as_bytes(), to).expect("send");
            if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                return (String::from_utf8_lossy(&buf[..n]).into_owned(), peer);
            }
        }
        panic!("no UDP reply from {to}");
    })
}

fn nat_suite(mode: &str, client_tx_csum: bool) {
    let mut lab = Lab::new(&format!("nat{}", &mode[..3]));
    let net = nat_lab(&mut lab, client_tx_csum, &[8080, 80, 443]);
    for (i, rs) in net.servers.iter().enumerate() {
        let addr: SocketAddr = format!("{}:5353", lab::RS_V4[i]).parse().unwrap();
        lab.udp_echo(rs, &format!("rs{}", i + 1), addr, Duration::from_secs(60));
    }
    if mode != "native" {
        // Generic XDP and AF_PACKET see a veth peer's GSO super-frames whole (up
        // to 64 KiB), which no UMEM frame / ring slot holds; a physical wire
        // carries MTU-sized frames. Make the lab's wires behave so (README:
        // generic mode). Native XDP on veth turns the peer's GSO off itself.
        lab.sh(
            &net.client,
            &["ethtool", "-K", "c0", "tso", "off", "gso", "off"],
        );
        lab.sh(
            &net.switch,
            &["ethtool", "-K", "s0", "tso", "off", "gso", "off"],
        );
    }
    let io = if mode == "af_packet" {
        "backend: af_packet".to_owned()
    } else {
        format!("xdp_mode: {mode}")
    };
    let config = lab.file("xvs.yaml", &NAT_CONFIG.replace("xdp_mode: MODE", &io));
    // The director's kernel learns the clients' MACs from their ARP / ND for
    // the gateway; a refused connection to it is enough.
    let _ = lab.curl(&net.client, "http://198.18.0.1:9/", &[]);
    let _ = lab.curl(&net.client, "http://[2001:db8::1]:9/", &[]);
    let director = lab.director(&net.director, &config);
    let c = &net.client;

    // rr over two servers: strictly alternating.
    let rr = requests(&lab, c, "http://198.18.1.1/who", "198.18.0.10", 6);
    assert_eq!((count(&rr, "rs1"), count(&rr, "rs2")), (3, 3), "rr: {rr:?}");
    assert!(rr.windows(2).all(|w| w[0] != w[1]), "rr alternates: {rr:?}");
    // wrr 3:1: 6 and 2 out of 8.
    let wrr = requests(&lab, c, "http://198.18.1.2/who", "198.18.0.10", 8);
    assert_eq!(
        (count(&wrr, "rs1"), count(&wrr, "rs2")),
        (6, 2),
        "wrr: {wrr:?}"
    );

    // UDP echo through NAT: the reply comes from the VIP, rr over both servers.
    let mut who = Vec::new();
    for i in 0..4 {
        let (reply, peer) = udp_ask(&lab, c, "198.18.0.10", "198.18.1.1:53", &format!("q{i}"));
        assert_eq!(peer, "198.18.1.1:53".parse().unwrap(), "UDP reply source");
        let (name, echoed) = reply.split_once(':').expect("name:payload");
        assert_eq!(echoed, format!("q{i}"));
        who.push(name.to_owned());
    }
    assert_eq!(
        (count(&who, "rs1"), count(&who, "rs2")),
        (2, 2),
        "udp rr: {who:?}"
    );

    // IPv6 NAT.
    let v6 = requests(&lab, c, "http://[2001:db8:1::1]/who", "2001:db8::10", 2);
    assert_eq!((count(&v6, "rs1"), count(&v6, "rs2")), (1, 1), "v6: {v6:?}");

    // Mark service 80 + 443 with /24 persistence: every connection of the
    // 198.18.0.0/24 clients, to either port, reaches one server.
    let mut shop = requests(&lab, c, "http://198.18.1.3/who", "198.18.0.10", 2);
    shop.extend(requests(
        &lab,
        c,
        "http://198.18.1.3:443/who",
        "198.18.0.10",
        2,
    ));
    shop.extend(requests(
        &lab,
        c,
        "http://198.18.1.3:443/who",
        "198.18.0.11",
        2,
    ));
    shop.extend(requests(&lab, c, "http://198.18.1.3/who", "198.18.0.11", 2));
    assert!(
        shop.iter().all(|s| *s == shop[0]),
        "persistent mark service: {shop:?}"
    );
    // Another /24: the scheduler's next choice (rr), the other server.
    let other = requests(&lab, c, "http://198.18.1.3:443/who", "198.18.3.10", 1);
    assert_ne!(
        other[0], shop[0],
        "a client of another /24 is scheduled anew"
    );

    // Blocking: 198.18.9.0/24 gets nothing; the others are still served.
    let blocked = lab.curl(
        c,
        "http://198.18.1.1/who",
        &["--interface", "198.18.9.10", "--max-time", "2"],
    );
    assert!(
        blocked.is_err(),
        "a blocked client is not answered: {blocked:?}"
    );
    requests(&lab, c, "http://198.18.1.1/who", "198.18.0.10", 1);

    // Malformed frames from the wire are counted by reason; the worker goes on.
    malformed_frames(&lab, &net);
    requests(&lab, c, "http://198.18.1.1/who", "198.18.0.10", 2);

    // A 4 MiB transfer arrives intact; no checksum errors anywhere.
    let body = lab
        .curl_bytes(
            c,
            "http://198.18.1.1/big",
            &["--interface", "198.18.0.10"],
            20,
        )
        .expect("big transfer");
    assert!(
        body == big_body(),
        "4 MiB body intact ({} bytes)",
        body.len()
    );
    for ns in net.servers.iter().chain([&net.client]) {
        assert_eq!(
            csum_errors(&lab, ns),
            (0, 0),
            "TCP/UDP InCsumErrors in {ns}"
        );
    }

    let (status, logs) = director.stop();
    assert!(status.success(), "xvs exits 0 on SIGTERM: {status}\n{logs}");
    if mode == "af_packet" {
        assert!(
            logs.contains("AF_PACKET guard: the steering program at tc ingress"),
            "the tc guard on this kernel:\n{logs}"
        );
    }
    assert!(
        logs.contains("dropped blocked"),
        "blocked drops counted:\n{logs}"
    );
    for reason in ["truncated", "bad_ip_checksum", "malformed"] {
        assert!(
            logs.contains(&format!("dropped {reason}")),
            "{reason} counted:\n{logs}"
        );
    }
    if client_tx_csum {
        assert!(
            logs.contains("checksums completed"),
            "partial checksums were completed:\n{logs}"
        );
    }
    // Nothing left attached: no XDP program, no nftables guard.
    let links = lab.sh(&net.director, &["ip", "link", "show", "ext"]);
    assert!(!links.contains("xdp"), "XDP detached at exit:\n{links}");
    let tables = lab.sh(&net.director, &["nft", "list", "tables"]);
    assert!(
        !tables.contains("xvs"),
        "guard table removed at exit:\n{tables}"
    );
}

/// Sends, from the client's side of the wire, frames to the VIP that are cut
/// short, carry a wrong IPv4 header checksum, or claim an impossible header length.
fn malformed_frames(lab: &Lab, net: &lab::NatLab) {
    let ext_mac = lab.sh(&net.director, &["cat", "/sys/class/net/ext/address"]);
    let mac: Vec<u8> = ext_mac
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let dst: [u8; 6] = mac.try_into().unwrap();
    let good = xvs_core::wire::build::FrameSpec::tcp(
        "198.18.0.10:40999".parse().unwrap(),
        "198.18.1.1:80".parse().unwrap(),
        0x02,
    )
    .with_macs([2, 0, 0, 0, 0, 0x99], dst)
    .build();
    let truncated = good[..14 + 20 + 8].to_vec(); // TCP header cut in half
    let mut bad_sum = good.clone();
    bad_sum[14 + 10] ^= 0xff; // IPv4 header checksum
    let mut bad_ihl = good.clone();
    bad_ihl[14] = 0x43; // IHL 3 < 5
    let frames = vec![truncated, bad_sum, bad_ihl];
    in_netns(&net.client, move || {
        let c0 = xvs_io::sys::if_index("c0").expect("c0");
        let sock = xvs_io::sys::packet::PacketSocket::bind(c0).expect("AF_PACKET on c0");
        for f in &frames {
            for _ in 0..3 {
                sock.send(f).expect("send");
            }
        }
    });
}

#[test]
fn nat_suite_af_xdp_native() {
    if privileged("e2e::nat_suite_af_xdp_native") {
        nat_suite("native", true);
    }
}

#[test]
fn nat_suite_af_packet() {
    if privileged("e2e::nat_suite_af_packet") {
        nat_suite("af_packet", true);
    }
}

#[test]
fn nat_suite_af_xdp_generic_without_tx_offload() {
    if privileged("e2e::nat_suite_af_xdp_generic_without_tx_offload") {
        nat_suite("generic", false);
    }
}

/// Persistence with a short timeout: within it a /24 sticks to one server;
/// after it (and after its connections ended) the scheduler chooses again.
#[test]
fn persistence_expires_into_a_fresh_choice() {
    if !privileged("e2e::persistence_expires_into_a_fresh_choice") {
        return;
    }
    let mut lab = Lab::new("persist");
    let net = nat_lab(&mut lab, true, &[8080]);
    let config = lab.file(
        "xvs.yaml",
        r#"
director:
  interfaces: [ext, int]
  cores: [1]
services:
  - name: sticky
    protocol: tcp
    vip: 198.18.1.1
    port: 80
    scheduler: rr
    persistence: {timeout: 2, netmask: 255.255.255.0}
    timeouts: {tcp_fin: 1, tcp_close: 1}
    real_servers:
      - {address: 198.19.0.10, port: 8080}
      - {address: 198.19.0.11, port: 8080}
"#,
    );
    let _ = lab.curl(&net.client, "http://198.18.0.1:9/", &[]);
    let director = lab.director(&net.director, &config);
    let c = &net.client;
    let url = "http://198.18.1.1/who";
    let mut group = requests(&lab, c, url, "198.18.0.10", 2);
    group.extend(requests(&lab, c, url, "198.18.0.11", 2));
    assert!(
        group.iter().all(|s| *s == group[0]),
        "one /24, one server: {group:?}"
    );
    let other = requests(&lab, c, url, "198.18.3.10", 1).remove(0);
    assert_ne!(
        other, group[0],
        "another /24: the scheduler's (rr) next choice"
    );
    // Templates expire 2 s after their last connection is gone (FIN/close 1 s).
    std::thread::sleep(Duration::from_millis(4500));
    let again = requests(&lab, c, url, "198.18.3.10", 1).remove(0);
    assert_ne!(
        again, other,
        "after the timeout rr chooses afresh: {other} then {again}"
    );
    let (status, logs) = director.stop();
    assert!(status.success(), "{logs}");
}

#[test]
fn direct_routing_on_a_shared_segment_af_xdp() {
    if privileged("e2e::direct_routing_on_a_shared_segment_af_xdp") {
        direct_routing("xdp_mode: auto");
    }
}

#[test]
fn direct_routing_on_a_shared_segment_af_packet() {
    if privileged("e2e::direct_routing_on_a_shared_segment_af_packet") {
        // The nftables guard here, the tc guard (the default) in the NAT suite.
        direct_routing("backend: af_packet\n  packet_guard: nftables");
    }
}

/// Direct routing on one L2 segment: the real servers hold the VIP on `lo`
/// (arp_ignore / arp_announce) and answer the client themselves. `io` is the
/// backend line of the configuration.
fn direct_routing(io: &str) {
    let mut lab = Lab::new("dr");
    let client = lab.ns("cl");
    let dir = lab.ns("dir");
    let switch = lab.ns("sw");
    let servers = [lab.ns("rs1"), lab.ns("rs2")];
    lab.ip(&switch, "link add br0 type bridge\nlink set br0 up");
    lab.veth((&client, "c0"), (&switch, "s0"));
    lab.veth((&dir, "ext"), (&switch, "s1"));
    for (i, rs) in servers.iter().enumerate() {
        lab.veth((rs, "r0"), (&switch, &format!("s{}", i + 2)));
    }
    for port in ["s0", "s1", "s2", "s3"] {
        lab.sh(&switch, &["ip", "link", "set", port, "master", "br0"]);
    }
    lab.ip(
        &client,
        "addr add 198.18.0.10/24 dev c0
         route add 198.18.1.0/24 dev c0",
    );
    lab.ip(
        &dir,
        "addr add 198.18.0.1/24 dev ext
         addr add 198.18.1.2/32 dev ext",
    );
    for (i, rs) in servers.iter().enumerate() {
        lab.ip(
            rs,
            &format!(
                "addr add 198.18.0.{}/24 dev r0
                 addr add 198.18.1.2/32 dev lo",
                20 + i
            ),
        );
        for key in ["all", "r0"] {
            lab.sh(
                rs,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{key}.arp_ignore=1"),
                ],
            );
            lab.sh(
                rs,
                &[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{key}.arp_announce=2"),
                ],
            );
        }
        lab.http_server(rs, &format!("rs{}", i + 1), "198.18.1.2", 80);
    }
    let config = lab.file(
        "xvs.yaml",
        &r#"
director:
  interfaces: [ext]
  cores: [1]
  IO
services:
  - name: dr
    protocol: tcp
    vip: 198.18.1.2
    port: 80
    scheduler: rr
    method: dr
    real_servers:
      - {address: 198.18.0.20}
      - {address: 198.18.0.21}
"#
        .replace("IO", io),
    );
    let director = lab.director(&dir, &config);
    let got = requests(&lab, &client, "http://198.18.1.2/who", "198.18.0.10", 4);
    assert_eq!(
        (count(&got, "rs1"), count(&got, "rs2")),
        (2, 2),
        "dr rr: {got:?}"
    );
    let (status, logs) = director.stop();
    assert!(status.success(), "{logs}");
    if io.contains("packet_guard: nftables") {
        assert!(
            logs.contains("AF_PACKET guard: nftables"),
            "the configured guard:\n{logs}"
        );
    }
    // The replies went from the real servers straight to the client: the
    // director saw no packet in the server → client direction.
    let dests: Vec<&str> = logs.lines().filter(|l| l.contains("Route")).collect();
    assert_eq!(dests.len(), 2, "two DR servers listed:\n{logs}");
    for line in dests {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (in_pkts, out_pkts) = (cols[cols.len() - 2], cols[cols.len() - 1]);
        assert!(
            in_pkts.parse::<u64>().unwrap() > 0,
            "client packets forwarded: {line}"
        );
        assert_eq!(out_pkts, "0", "no reply crossed the director: {line}");
    }
    for rs in &servers {
        let neigh = lab.sh(rs, &["ip", "neigh", "show", "198.18.0.10"]);
        assert!(
            neigh.contains("lladdr"),
            "{rs} reached the client directly: {neigh}"
        );
    }
}

/// Runs `xvs ARGS` in `ns` to completion (bounded by xvs itself: these calls
/// fail at start-up); returns (exit code, stdout + stderr).
fn xvs_once(lab: &Lab, ns: &str, args: &[&str]) -> (i32, String) {
    let mut all = vec![env!("CARGO_BIN_EXE_xvs")];
    all.extend_from_slice(args);
    let out = lab.try_sh(ns, &all);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Runs `wrapper... xvs run -c CONFIG` in `ns`, which must fail at start-up
/// with exit code 1; its stderr.
fn refused_at_start(lab: &Lab, ns: &str, wrapper: &[&str], config: &str) -> String {
    let mut args = wrapper.to_vec();
    args.extend([env!("CARGO_BIN_EXE_xvs"), "run", "-c", config]);
    let out = lab.try_sh(ns, &args);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    text
}

/// No XDP program on the director's interfaces.
fn nothing_attached(lab: &Lab, ns: &str) {
    for iface in ["ext", "int"] {
        let link = lab.sh(ns, &["ip", "link", "show", iface]);
        assert!(
            !link.contains("xdp"),
            "nothing left attached on {iface}:\n{link}"
        );
    }
}

/// Bad input at start-up: a clear error naming the interface / file position
/// and the cause, a non-zero exit, nothing left attached, and a running
/// director is not disturbed.
#[test]
fn bad_input_is_refused_clearly() {
    if !privileged("e2e::bad_input_is_refused_clearly") {
        return;
    }
    let mut lab = Lab::new("bad");
    let net = nat_lab(&mut lab, true, &[8080]);
    let d = &net.director;
    let good = NAT_CONFIG.replace("MODE", "auto");
    let config = lab.file("good.yaml", &good);
    let config_s = config.to_string_lossy().into_owned();

    // A configuration error: exit 2 with file:line:column, for `check` and `run`.
    let bad = lab.file(
        "bad.yaml",
        &good.replace("port: 8080, weight: 3", "port: 8080, weight: 70000"),
    );
    let bad_s = bad.to_string_lossy().into_owned();
    let line = 1 + good.lines().position(|l| l.contains("weight: 3")).unwrap();
    for cmd in ["check", "run"] {
        let (code, out) = xvs_once(&lab, d, &[cmd, "-c", &bad_s]);
        assert_eq!(code, 2, "xvs {cmd} on a bad file exits 2:\n{out}");
        assert!(
            out.contains(&format!("{bad_s}:{line}:")) && out.contains("70000"),
            "error names file:line and the value:\n{out}"
        );
    }
    let (code, out) = xvs_once(&lab, d, &["check", "-c", &config_s]);
    assert_eq!(code, 0, "{out}");

    // A missing interface.
    let missing = lab.file(
        "missing.yaml",
        &good.replace("[ext, int]", "[ext, nosuch0]"),
    );
    let (code, out) = xvs_once(&lab, d, &["run", "-c", &missing.to_string_lossy()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nosuch0") && out.contains("not found"),
        "{out}"
    );

    // Missing privileges (uid 65534, no capabilities).
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ];
    let text = refused_at_start(&lab, d, &nobody, &config_s);
    assert!(
        text.contains("interface ext") && text.contains("not permitted"),
        "names the interface and the cause:\n{text}"
    );

    // A UMEM over the memlock limit (no CAP_IPC_LOCK, a 4 MiB limit; a worker's
    // shared UMEM for two interfaces is 8 MiB).
    let tight = [
        "setpriv",
        "--bounding-set=-ipc_lock",
        "--inh-caps=-ipc_lock",
        "--",
        "prlimit",
        "--memlock=4194304:4194304",
        "--",
    ];
    let text = refused_at_start(&lab, d, &tight, &config_s);
    assert!(
        text.contains("\"ext\", \"int\"") && text.contains("RLIMIT_MEMLOCK"),
        "names the interfaces and the memlock limit:\n{text}"
    );
    nothing_attached(&lab, d);

    // XDP already attached: a second director on the same interfaces fails and
    // the first keeps serving.
    let _ = lab.curl(&net.client, "http://198.18.0.1:9/", &[]);
    let first = lab.director(d, &config);
    let (code, out) = xvs_once(&lab, d, &["run", "-c", &config_s]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("interface ext") && out.contains("attach"),
        "{out}"
    );
    requests(&lab, &net.client, "http://198.18.1.1/who", "198.18.0.10", 2);
    let (status, logs) = first.stop();
    assert!(status.success(), "{logs}");
    nothing_attached(&lab, d);
}

/// `xvs list|drain|undrain|weight|reload|zero` against a running director: a
/// drained server keeps its long transfer while new connections go elsewhere;
/// a reload during a transfer keeps it; a broken file on reload changes nothing.
#[test]
fn operator_cli_drain_weight_and_reload() {
    if !privileged("e2e::operator_cli_drain_weight_and_reload") {
        return;
    }
    let mut lab = Lab::new("cli");
    let net = nat_lab(&mut lab, true, &[8080]);
    let sock = lab.dir.join("xvs.sock").to_string_lossy().into_owned();
    let base = format!(
        r#"
director:
  interfaces: [ext, int]
  cores: [1]
  control_socket: {sock}
services:
  - name: web
    protocol: tcp
    vip: 198.18.1.1
    port: 80
    scheduler: rr
    real_servers:
      - {{address: 198.19.0.10, port: 8080}}
      - {{address: 198.19.0.11, port: 8080}}
"#
    );
    let config = lab.file("xvs.yaml", &base);
    let _ = lab.curl(&net.client, "http://198.18.0.1:9/", &[]);
    let director = lab.director(&net.director, &config);
    let c = &net.client;
    let d = &net.director;
    let cli = |args: &[&str]| -> (i32, String) {
        let mut all = args.to_vec();
        all.extend(["-S", &sock]);
        xvs_once(&lab, d, &all)
    };
    let url = "http://198.18.1.1/who";

    let (code, list) = cli(&["list"]);
    assert_eq!(code, 0, "{list}");
    assert!(
        list.contains("TCP  198.18.1.1:80 rr")
            && list.contains("198.19.0.10:8080")
            && list.contains("198.19.0.11:8080"),
        "{list}"
    );
    let socket_mode = std::fs::metadata(&sock)
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777);
    assert_eq!(socket_mode.ok(), Some(0o600), "owner-only control socket");

    // A long transfer (4 MiB at 1 MB/s) goes to rs1 (rr starts there); drain rs1.
    let long = lab.download(c, "http://198.18.1.1/big", "198.18.0.10", "1M");
    std::thread::sleep(Duration::from_millis(500));
    assert!(long.progress() > 0, "the transfer started");
    let (code, out) = cli(&["drain", "web", "198.19.0.10:8080"]);
    assert_eq!(code, 0, "{out}");
    let after = requests(&lab, c, url, "198.18.0.10", 4);
    assert_eq!(
        count(&after, "rs2"),
        4,
        "new connections avoid the drained server: {after:?}"
    );
    let (_, list) = cli(&["list"]);
    assert!(list.contains("(drain)"), "listing shows the drain:\n{list}");
    let body = long
        .finish()
        .expect("the drained server's transfer completes");
    assert!(
        body == big_body(),
        "intact after the drain ({} bytes)",
        body.len()
    );

    // Undrain, then weight 0 on rs2: everything to rs1.
    assert_eq!(cli(&["undrain", "web", "198.19.0.10"]).0, 0);
    let back = requests(&lab, c, url, "198.18.0.10", 2);
    assert_eq!(
        (count(&back, "rs1"), count(&back, "rs2")),
        (1, 1),
        "{back:?}"
    );
    assert_eq!(cli(&["weight", "web", "198.19.0.11:8080", "0"]).0, 0);
    let w = requests(&lab, c, url, "198.18.0.10", 3);
    assert_eq!(count(&w, "rs1"), 3, "weight 0 takes no new flows: {w:?}");
    let (code, out) = cli(&["weight", "web", "198.19.0.11:8080", "70000"]);
    assert_ne!(code, 0, "{out}");
    assert_eq!(cli(&["weight", "web", "198.19.0.11:8080", "1"]).0, 0);

    // Reload during a transfer: a new service appears, the transfer goes on.
    let long = lab.download(c, "http://198.18.1.1/big", "198.18.0.10", "1M");
    std::thread::sleep(Duration::from_millis(500));
    let more = base.clone()
        + r#"  - name: web2
    protocol: tcp
    vip: 198.18.1.2
    port: 80
    scheduler: rr
    real_servers:
      - {address: 198.19.0.11, port: 8080}
"#;
    lab.file("xvs.yaml", &more);
    let (code, out) = cli(&["reload"]);
    assert_eq!(code, 0, "{out}");
    let two = requests(&lab, c, "http://198.18.1.2/who", "198.18.0.10", 2);
    assert_eq!(count(&two, "rs2"), 2, "{two:?}");
    // A broken file: exit 2, nothing changes, the transfer goes on.
    lab.file("xvs.yaml", &more.replace("port: 8080}", "port: 0}"));
    let (code, out) = cli(&["reload"]);
    assert_eq!(code, 2, "a rejected reload exits 2:\n{out}");
    assert!(out.contains("xvs.yaml:"), "names the file position:\n{out}");
    requests(&lab, c, "http://198.18.1.2/who", "198.18.0.10", 1);
    let body = long.finish().expect("transfer across reloads");
    assert!(
        body == big_body(),
        "intact across reloads ({} bytes)",
        body.len()
    );

    // The other views and zero.
    for (flag, header) in [
        ("--stats", "InBytes"),
        ("--rate", "CPS"),
        ("-c", "FromIP"),
        ("--persistent", "Scope"),
    ] {
        let (code, out) = cli(&["list", flag]);
        assert!(code == 0 && out.contains(header), "list {flag}:\n{out}");
    }
    let (_, conns) = cli(&["list", "-c"]);
    assert!(
        conns.contains("198.18.0.10:") && conns.contains("198.19.0.1"),
        "{conns}"
    );
    assert_eq!(cli(&["zero"]).0, 0);
    let (_, stats) = cli(&["list", "--stats"]);
    let rs_lines: Vec<&str> = stats
        .lines()
        .filter(|l| l.contains("->") && l.contains(":8080"))
        .collect();
    assert!(
        rs_lines
            .iter()
            .all(|l| l.split_whitespace().nth(3) == Some("0")),
        "zeroed conns:\n{stats}"
    );
    let (status, logs) = director.stop();
    assert!(status.success(), "{logs}");
    assert!(
        !std::path::Path::new(&sock).exists(),
        "control socket removed at exit"
    );
}

/// Polls `f` every 100 ms until it returns true or `limit` passes; the time it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// One request to `vip` from 198.18.0.10.
fn ask(lab: &Lab, client: &str, vip: &str) -> Result<String, String> {
    lab.curl(
        client,
        &format!("http://{vip}/who"),
        &["--interface", "198.18.0.10"],
    )
}

/// Four requests to `vip`, all answered by `who`.
fn all_from(lab: &Lab, client: &str, vip: &str, who: &str) -> bool {
    (0..4).all(|_| ask(lab, client, vip).as_deref() == Ok(who))
}

/// `xvs ARGS -S SOCKET` in the director's namespace.
fn cli(lab: &Lab, ns: &str, sock: &str, args: &[&str]) -> (i32, String) {
    let mut all = args.to_vec();
    all.extend(["-S", sock]);
    xvs_once(lab, ns, &all)
}

/// Health checks drive failover: a stopped server leaves within interval × fall
/// and comes back after rise; backups take over while no primary is up; below
/// quorum the sorry server answers; a misc check follows its script; a reload
/// that removes a server keeps that server's open transfer.
#[test]
fn health_checks_failover_backup_sorry_and_reload() {
    if !privileged("e2e::health_checks_failover_backup_sorry_and_reload") {
        return;
    }
    let mut lab = Lab::new("health");
    let net = nat_lab(&mut lab, true, &[]);
    let mut pid = std::collections::HashMap::new();
    for (i, rs) in net.servers.iter().enumerate() {
        for port in [8080, 8081, 8082] {
            let p = lab.http_server(rs, &format!("rs{}", i + 1), "::", port);
            pid.insert((i + 1, port), p);
        }
    }
    lab.http_server(&net.servers[1], "sorry", "::", 8083);
    let state = lab.file("misc-state", "0");
    let script = lab.file("check.sh", &format!("exit $(cat {})\n", state.display()));
    let sock = lab.dir.join("xvs.sock").to_string_lossy().into_owned();
    let fast = "interval: 0.2, connect_timeout: 0.5, fall: 2, rise: 2";
    let config = |dl_server: &str, removed: &str| {
        format!(
            r#"
director:
  interfaces: [ext, int]
  cores: [1]
  control_socket: {sock}
  removed_servers: {removed}
services:
  - name: web
    protocol: tcp
    vip: 198.18.1.1
    port: 80
    scheduler: rr
    check: {{type: http, path: /who, status: [200], {fast}}}
    real_servers:
      - {{address: 198.19.0.10, port: 8080}}
      - {{address: 198.19.0.11, port: 8080}}
  - name: backed
    protocol: tcp
    vip: 198.18.1.2
    port: 80
    scheduler: rr
    check: {{type: tcp, {fast}}}
    real_servers:
      - {{address: 198.19.0.10, port: 8081}}
      - {{address: 198.19.0.11, port: 8081, backup: true}}
  - name: quorum
    protocol: tcp
    vip: 198.18.1.3
    port: 80
    scheduler: rr
    quorum: 2
    check: {{type: tcp, {fast}}}
    sorry_server: {{address: 198.19.0.11, port: 8083}}
    real_servers:
      - {{address: 198.19.0.10, port: 8082}}
      - {{address: 198.19.0.11, port: 8082}}
  - name: scripted
    protocol: tcp
    vip: 198.18.1.4
    port: 80
    scheduler: rr
    check: {{type: misc, command: [sh, "{script}"], {fast}}}
    real_servers:
      - {{address: 198.19.0.11, port: 8081}}
  - name: dl
    protocol: tcp
    vip: 198.18.1.5
    port: 80
    scheduler: rr
    real_servers:
      - {{address: {dl_server}, port: 8081}}
"#,
            script = script.display()
        )
    };
    let path = lab.file("xvs.yaml", &config("198.19.0.11", "keep"));
    let _ = lab.curl(&net.client, "http://198.18.0.1:9/", &[]);
    let director = lab.director(&net.director, &path);
    let c = &net.client;
    let d = &net.director;
    // Give the first checks a round.
    std::thread::sleep(Duration::from_millis(600));
    let both = requests(&lab, c, "http://198.18.1.1/who", "198.18.0.10", 4);
    assert_eq!(
        (count(&both, "rs1"), count(&both, "rs2")),
        (2, 2),
        "{both:?}"
    );

    // A stopped server leaves (interval 0.2 s × fall 2 + probe timeouts).
    lab.kill(pid[&(1, 8080)]);
    let out = within(Duration::from_secs(4), || {
        all_from(&lab, c, "198.18.1.1", "rs2")
    });
    assert!(out.is_some(), "rs1 taken out after it stopped");
    let (_, checks) = cli(&lab, d, &sock, &["list", "--checks"]);
    assert!(
        checks
            .lines()
            .any(|l| l.starts_with("web") && l.contains("198.19.0.10:8080") && l.contains("down")),
        "checks listing shows rs1 down:\n{checks}"
    );
    // ... and comes back after rise successes.
    lab.http_server(&net.servers[0], "rs1", "::", 8080);
    let back = within(Duration::from_secs(4), || {
        let r = requests(&lab, c, "http://198.18.1.1/who", "198.18.0.10", 2);
        count(&r, "rs1") == 1
    });
    assert!(back.is_some(), "rs1 back in the rotation after rise");

    // No primary up → the backup answers.
    assert!(
        all_from(&lab, c, "198.18.1.2", "rs1"),
        "the primary serves while up"
    );
    lab.kill(pid[&(1, 8081)]);
    assert!(
        within(Duration::from_secs(4), || all_from(
            &lab,
            c,
            "198.18.1.2",
            "rs2"
        ))
        .is_some(),
        "the backup takes over"
    );

    // A misc check: the script's exit code decides (0 up, 1 down).
    assert!(all_from(&lab, c, "198.18.1.4", "rs2"), "script says up");
    std::fs::write(&state, "1").unwrap();
    assert!(
        within(Duration::from_secs(4), || ask(&lab, c, "198.18.1.4")
            .is_err())
        .is_some(),
        "script says down: no server for new flows"
    );
    std::fs::write(&state, "0").unwrap();
    assert!(
        within(Duration::from_secs(4), || all_from(
            &lab,
            c,
            "198.18.1.4",
            "rs2"
        ))
        .is_some(),
        "script says up again"
    );

    // Quorum 2 with one of two servers down → the sorry server.
    assert!(
        within(Duration::from_secs(2), || {
            let r = requests(&lab, c, "http://198.18.1.3/who", "198.18.0.10", 2);
            count(&r, "rs1") == 1 && count(&r, "rs2") == 1
        })
        .is_some()
    );
    lab.kill(pid[&(1, 8082)]);
    assert!(
        within(Duration::from_secs(4), || all_from(
            &lab,
            c,
            "198.18.1.3",
            "sorry"
        ))
        .is_some(),
        "below quorum the sorry server answers"
    );

    // Reload removing dl's only server during a transfer from it: the transfer
    // goes on; new connections go to the new server.
    let long = lab.download(c, "http://198.18.1.5/big", "198.18.0.10", "1M");
    std::thread::sleep(Duration::from_millis(500));
    assert!(long.progress() > 0);
    lab.file("xvs.yaml", &config("198.19.0.10", "keep"));
    lab.http_server(&net.servers[0], "rs1", "::", 8081);
    let (code, out) = cli(&lab, d, &sock, &["reload"]);
    assert_eq!(code, 0, "{out}");
    let (_, list) = cli(&lab, d, &sock, &["list"]);
    assert!(
        list.contains("(gone)"),
        "the removed server is listed until its connections end:\n{list}"
    );
    let body = long.finish().expect("transfer from a removed server");
    assert!(body == big_body(), "intact ({} bytes)", body.len());
    assert!(
        within(Duration::from_secs(3), || all_from(
            &lab,
            c,
            "198.18.1.5",
            "rs1"
        ))
        .is_some()
    );

    // With `removed_servers: reset`, a reload removing the busy server cuts
    // its transfer at once (SIGHUP this time).
    let long = lab.download(c, "http://198.18.1.5/big", "198.18.0.10", "1M");
    std::thread::sleep(Duration::from_millis(500));
    assert!(long.progress() > 0);
    lab.file("xvs.yaml", &config("198.19.0.11", "reset"));
    director.signal("HUP");
    std::thread::sleep(Duration::from_millis(500));
    let stalled_at = long.progress();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        long.progress(),
        stalled_at,
        "the transfer stopped with its connection"
    );
    assert!(stalled_at < 4 << 20, "cut before the end");
    drop(long);
    assert!(
        within(Duration::from_secs(3), || all_from(
            &lab,
            c,
            "198.18.1.5",
            "rs2"
        ))
        .is_some()
    );

    let (status, logs) = director.stop();
    assert!(status.success(), "{logs}");
    assert!(
        logs.contains("quorum lost"),
        "quorum transition logged:\n{logs}"
    );
}
