//! Writes the committed seed corpora `fuzz/corpus/<target>/seed-NNN`:
//!
//! - `parse`: frames built with `wire::build::FrameSpec` (every protocol and family,
//!   VLAN, IPv4 options, IPv6 extension headers, fragments, ICMP errors, ARP,
//!   truncations) and a few bare IP packets (the target also runs the views at
//!   offset 0);
//! - `process`: the same kind of frames, addressed to and from the lab's VIPs, real
//!   servers and clients, each behind the target's two control bytes;
//! - `process_structured`: scenarios (`xvs_fuzz::Scenario`) — handshakes, replies,
//!   ICMP errors, fragment trains, timeouts — encoded with `Scenario::encode`.
//!
//! Run from `fuzz/`: `cargo run --release --bin seeds` (deterministic: running it
//! again rewrites the same files). Existing `seed-*` files of the three targets are
//! removed first; other corpus files are left alone.

use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use xvs_core::lab::{CLIENT_MAC, EXT_MAC, INT_MAC, mac_of};
use xvs_core::wire::ip_proto::{AH, IPV6_DSTOPTS, IPV6_FRAGMENT, IPV6_HOPOPTS, IPV6_ROUTING};
use xvs_core::wire::tcp_flags::{ACK, FIN, PSH, RST, SYN};
use xvs_core::wire::{FrameSpec, fragment_ipv4, fragment_ipv6};
use xvs_fuzz::{Scenario, Step};

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn client(spec: FrameSpec) -> FrameSpec {
    spec.with_macs(CLIENT_MAC, EXT_MAC)
}

fn server(spec: FrameSpec, id: u32) -> FrameSpec {
    spec.with_macs(mac_of(id), INT_MAC)
}

/// A gratuitous ARP request for 198.18.1.1 (Ethernet + ARP).
fn arp_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 198, 18, 1, 1]);
    f
}

/// Frames of the lab, as `(name, frame)`; used for both raw targets.
fn lab_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = Vec::new();
    let syn = client(FrameSpec::tcp(
        sa("198.18.0.10:40000"),
        sa("198.18.1.1:80"),
        SYN,
    ));
    v.push(("tcp4 SYN to NAT VIP", syn.build()));
    v.push((
        "tcp4 SYN-ACK from real server",
        server(
            FrameSpec::tcp(sa("198.19.0.10:8080"), sa("198.18.0.10:40000"), SYN | ACK),
            10,
        )
        .build(),
    ));
    v.push((
        "tcp4 ACK+data, VLAN 7",
        client(FrameSpec::tcp(
            sa("198.18.0.10:40000"),
            sa("198.18.1.1:80"),
            ACK | PSH,
        ))
        .with_payload(b"GET / HTTP/1.0\r\n\r\n")
        .with_vlan(Some(7))
        .build(),
    ));
    v.push((
        "tcp4 FIN",
        client(FrameSpec::tcp(
            sa("198.18.0.10:40000"),
            sa("198.18.1.1:80"),
            FIN | ACK,
        ))
        .build(),
    ));
    v.push((
        "tcp4 RST",
        client(FrameSpec::tcp(
            sa("198.18.0.11:40001"),
            sa("198.18.1.1:80"),
            RST,
        ))
        .build(),
    ));
    v.push((
        "tcp4 SYN partial checksum",
        client(FrameSpec::tcp(
            sa("198.18.0.11:40002"),
            sa("198.18.1.1:80"),
            SYN,
        ))
        .with_partial_checksum(true)
        .build(),
    ));
    v.push((
        "tcp4 SYN to DR VIP",
        client(FrameSpec::tcp(
            sa("198.18.0.10:40003"),
            sa("198.18.1.2:80"),
            SYN,
        ))
        .build(),
    ));
    v.push((
        "tcp4 SYN to mark VIP 443",
        client(FrameSpec::tcp(
            sa("198.18.0.10:40004"),
            sa("198.18.1.3:443"),
            SYN,
        ))
        .build(),
    ));
    v.push((
        "tcp4 SYN to mark VIP 80 with IPv4 options",
        client(FrameSpec::tcp(
            sa("198.18.0.11:40005"),
            sa("198.18.1.3:80"),
            SYN,
        ))
        .with_ipv4_options(&[0x94, 4, 0, 0, 7, 7, 4, 0])
        .build(),
    ));
    v.push((
        "tcp4 SYN from blocked client",
        client(FrameSpec::tcp(
            sa("198.18.9.1:40006"),
            sa("198.18.1.1:80"),
            SYN,
        ))
        .build(),
    ));
    v.push((
        "tcp4 SYN TTL 1",
        client(FrameSpec::tcp(
            sa("198.18.0.10:40007"),
            sa("198.18.1.1:80"),
            SYN,
        ))
        .with_ttl(1)
        .build(),
    ));
    v.push((
        "udp4 DNS query",
        client(FrameSpec::udp(sa("198.18.0.10:5353"), sa("198.18.1.1:53")))
            .with_payload(&[0xab; 29])
            .build(),
    ));
    v.push((
        "udp4 DNS answer from server",
        server(
            FrameSpec::udp(sa("198.19.0.12:53"), sa("198.18.0.10:5353")),
            12,
        )
        .with_payload(&[0xcd; 45])
        .build(),
    ));
    v.push((
        "udp4 partial checksum",
        client(FrameSpec::udp(sa("198.18.0.11:5354"), sa("198.18.1.1:53")))
            .with_partial_checksum(true)
            .with_payload(b"q")
            .build(),
    ));
    v.push((
        "icmp4 echo to VIP",
        client(FrameSpec::icmp_echo(
            ip("198.18.0.10"),
            ip("198.18.1.1"),
            7,
            1,
            false,
        ))
        .with_payload(&[0; 56])
        .build(),
    ));
    let quoted = FrameSpec::tcp(sa("198.18.1.1:80"), sa("198.18.0.10:40000"), SYN | ACK)
        .with_ttl(63)
        .build_ip();
    v.push((
        "icmp4 port unreachable about a reply",
        client(FrameSpec::icmp_error(
            ip("198.18.0.10"),
            ip("198.18.1.1"),
            3,
            3,
            [0; 4],
            &quoted,
        ))
        .build(),
    ));
    let quoted = FrameSpec::tcp(sa("198.18.0.10:40000"), sa("198.19.0.10:8080"), ACK)
        .with_ttl(63)
        .with_payload(&[1; 1400])
        .build_ip();
    v.push((
        "icmp4 frag needed from server side",
        server(
            FrameSpec::icmp_error(
                ip("198.19.0.1"),
                ip("198.18.0.10"),
                3,
                4,
                [0, 0, 5, 0x78],
                &quoted,
            ),
            10,
        )
        .build(),
    ));
    let big = client(FrameSpec::udp(sa("198.18.0.10:5355"), sa("198.18.1.1:53")))
        .with_payload(&[0x11; 1800])
        .with_dont_frag(false)
        .build();
    let f = fragment_ipv4(&big, 576);
    v.push(("udp4 first fragment", f[0].clone()));
    v.push(("udp4 second fragment", f[1].clone()));
    v.push(("udp4 last fragment", f[f.len() - 1].clone()));
    let syn6 = client(FrameSpec::tcp(
        sa("[2001:db8::10]:40000"),
        sa("[2001:db8:1::1]:80"),
        SYN,
    ));
    v.push(("tcp6 SYN to VIP", syn6.clone().build()));
    v.push((
        "tcp6 SYN-ACK from server",
        server(
            FrameSpec::tcp(
                sa("[2001:db8:2::40]:8080"),
                sa("[2001:db8::10]:40000"),
                SYN | ACK,
            ),
            40,
        )
        .build(),
    ));
    v.push((
        "tcp6 SYN with HBH, DstOpts, Routing, AH",
        syn6.clone()
            .with_ipv6_ext(IPV6_HOPOPTS, &[5, 2, 0, 0, 1, 0])
            .with_ipv6_ext(IPV6_DSTOPTS, &[])
            .with_ipv6_ext(IPV6_ROUTING, &[4, 0, 0, 0, 0, 0])
            .with_ipv6_ext(AH, &[0; 10])
            .build(),
    ));
    v.push((
        "tcp6 atomic fragment",
        syn6.clone()
            .with_ipv6_ext(IPV6_FRAGMENT, &[0, 0, 0, 0, 0, 9])
            .with_vlan(Some(100))
            .build(),
    ));
    let big6 = client(FrameSpec::tcp(
        sa("[2001:db8::11]:40001"),
        sa("[2001:db8:1::1]:80"),
        ACK,
    ))
    .with_payload(&[0x22; 3000])
    .build();
    let f6 = fragment_ipv6(&big6, 1280);
    v.push(("tcp6 first fragment", f6[0].clone()));
    v.push(("tcp6 later fragment", f6[1].clone()));
    v.push((
        "icmp6 echo",
        client(FrameSpec::icmp_echo(
            ip("2001:db8::10"),
            ip("2001:db8:1::1"),
            9,
            2,
            false,
        ))
        .build(),
    ));
    let q6 = FrameSpec::tcp(sa("[2001:db8:1::1]:80"), sa("[2001:db8::10]:40000"), ACK)
        .with_payload(&[3; 1300])
        .build_ip();
    v.push((
        "icmp6 packet too big",
        client(FrameSpec::icmp_error(
            ip("2001:db8::ff"),
            ip("2001:db8:1::1"),
            2,
            0,
            [0, 0, 5, 0],
            &q6,
        ))
        .build(),
    ));
    v.push((
        "raw GRE over IPv4",
        client(FrameSpec::raw(ip("198.18.0.10"), ip("198.18.1.1"), 47))
            .with_payload(&[0; 24])
            .build(),
    ));
    v.push(("arp request", arp_frame()));
    let mut cut = syn.build();
    cut.truncate(14 + 20 + 10);
    v.push(("tcp4 SYN truncated inside TCP", cut));
    let mut cut6 = syn6.build();
    cut6.truncate(14 + 30);
    v.push(("tcp6 SYN truncated inside IPv6", cut6));
    v
}

/// Scenarios for `process_structured` (see `xvs_fuzz::Step` for the fields).
fn scenarios() -> Vec<(&'static str, Scenario)> {
    let st = |kind: u8, target: u8, dir: u8, flags: u8| Step {
        kind,
        target,
        dir,
        flags,
        ..Step::default()
    };
    // flags: index into TCP_FLAGS: 0 SYN, 1 SYN|ACK, 2 ACK, 3 ACK|PSH, 4 FIN|ACK, 5 RST, 6 RST|ACK.
    let handshake = |target: u8| {
        vec![
            st(0, target, 0, 0),
            st(0, target, 1, 1),
            st(0, target, 0, 2),
            st(0, target, 0, 3),
            st(0, target, 1, 3),
        ]
    };
    let mut out: Vec<(&'static str, Scenario)> = Vec::new();
    for (name, t) in [
        ("web handshake", 0u8),
        ("DR handshake", 2),
        ("mark 80 handshake", 3),
        ("mark 443 handshake", 4),
        ("web6 handshake", 5),
    ] {
        out.push((
            name,
            Scenario {
                steps: handshake(t),
            },
        ));
    }
    let mut close = handshake(0);
    close.extend([st(0, 0, 0, 4), st(0, 0, 1, 4), st(0, 0, 0, 2)]);
    close.push(Step {
        advance: 12,
        ..st(0, 0, 0, 2)
    });
    out.push(("web open, close, expire", Scenario { steps: close }));
    out.push((
        "dns query and answer",
        Scenario {
            steps: vec![
                st(1, 1, 0, 0),
                st(1, 1, 1, 0),
                Step {
                    advance: 13,
                    ..st(1, 1, 1, 0)
                },
            ],
        },
    ));
    out.push((
        "echo to VIPs",
        Scenario {
            steps: vec![st(2, 0, 0, 0), st(2, 5, 0, 0), st(2, 0, 1, 0)],
        },
    ));
    // ICMP errors: client side (dir 0) about a reply, server side (dir 1) about a request.
    for (name, t, icmp) in [
        ("icmp4 unreachable client side", 0u8, 0u8),
        ("icmp4 frag needed router", 0, 0x41),
        ("icmp6 too big", 5, 1),
        ("icmp4 about UDP", 1, 0x08),
        ("icmp4 short quote", 3, 0x10),
        ("icmp DR", 2, 2),
    ] {
        let svc_kind = if t == 1 { 1 } else { 0 };
        let mut steps = vec![st(svc_kind, t, 0, 0), st(svc_kind, t, 1, 1)];
        steps.push(Step {
            icmp,
            ..st(3, t, 0, 0)
        });
        steps.push(Step {
            icmp,
            ..st(3, t, 1, 0)
        });
        out.push((name, Scenario { steps }));
    }
    // Fragment trains: MTU class, order (0 in order, 1 reversed, 2 first only, 3 without first).
    for (name, t, kind, frag, opts) in [
        ("udp4 fragments in order", 1u8, 1u8, 0x01u8, 0u8),
        ("udp4 fragments reversed", 1, 1, 0x05, 2),
        ("tcp4 first fragment only", 0, 0, 0x08, 3),
        ("tcp4 without first fragment", 0, 0, 0x0c, 7),
        ("tcp6 fragments", 5, 0, 0x02, 4),
        ("tcp6 fragments with AH", 5, 0, 0x03, 5),
    ] {
        let mut steps = vec![Step {
            frag,
            opts,
            payload: 200,
            ..st(kind, t, 0, 0)
        }];
        steps.push(Step {
            frag,
            opts,
            payload: 250,
            ..st(kind, t, 1, 1)
        });
        steps.push(Step {
            frag,
            payload: 180,
            advance: 10,
            ..st(kind, t, 0, 2)
        });
        out.push((name, Scenario { steps }));
    }
    // VLAN, partial checksums, TTL 1, blocked client, unresolved client, other interface.
    out.push((
        "vlan + partial checksum",
        Scenario {
            steps: vec![
                Step {
                    vlan: 3,
                    partial: 1,
                    ..st(0, 0, 0, 0)
                },
                Step {
                    vlan: 3,
                    partial: 1,
                    ..st(0, 0, 1, 1)
                },
                Step {
                    partial: 1,
                    ..st(1, 1, 0, 0)
                },
            ],
        },
    ));
    out.push((
        "ttl 1",
        Scenario {
            steps: vec![
                Step {
                    ttl: 1,
                    ..st(0, 0, 0, 0)
                },
                Step {
                    ttl: 1,
                    ..st(0, 2, 0, 0)
                },
                Step {
                    ttl: 2,
                    ..st(0, 5, 0, 0)
                },
            ],
        },
    ));
    out.push((
        "blocked and unresolved clients",
        Scenario {
            steps: vec![
                Step {
                    client: 3,
                    ..st(0, 0, 0, 0)
                },
                Step {
                    client: 2,
                    ..st(0, 0, 0, 0)
                },
                Step {
                    client: 2,
                    ..st(0, 0, 1, 1)
                },
            ],
        },
    ));
    out.push((
        "other interface + maintain",
        Scenario {
            steps: vec![
                Step {
                    iface: 1,
                    ..st(0, 3, 0, 0)
                },
                Step {
                    advance: 0x80 | 11,
                    ..st(0, 3, 0, 2)
                },
                Step {
                    advance: 0x80 | 14,
                    ..st(0, 4, 0, 0)
                },
            ],
        },
    ));
    out.push((
        "not a service",
        Scenario {
            steps: vec![st(0, 6, 0, 0), st(1, 7, 0, 0), st(1, 0, 0, 0)],
        },
    ));
    out.push((
        "persistence across ports",
        Scenario {
            steps: vec![
                st(0, 3, 0, 0),
                Step {
                    client: 1,
                    ..st(0, 4, 0, 0)
                },
                Step {
                    cport: 1,
                    ..st(0, 3, 0, 0)
                },
                Step {
                    advance: 13,
                    cport: 2,
                    ..st(0, 4, 0, 0)
                },
            ],
        },
    ));
    out.push((
        "mutated SYN and cut",
        Scenario {
            steps: vec![
                Step {
                    mutations: vec![(14 + 9, 17)],
                    ..st(0, 0, 0, 0)
                },
                Step {
                    cut: 100,
                    ..st(0, 5, 0, 0)
                },
                Step {
                    mutations: vec![(14 + 20 + 13, 0x12), (0, 0)],
                    ..st(0, 0, 1, 1)
                },
            ],
        },
    ));
    out
}

fn write_dir(dir: &Path, files: &[Vec<u8>]) {
    fs::create_dir_all(dir).unwrap();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("seed-"))
        {
            fs::remove_file(p).unwrap();
        }
    }
    for (i, f) in files.iter().enumerate() {
        fs::write(dir.join(format!("seed-{i:03}")), f).unwrap();
    }
    println!("{}: {} seeds", dir.display(), files.len());
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let frames = lab_frames();

    // parse: the frames, plus bare IP packets (offset 0 views).
    let mut parse: Vec<Vec<u8>> = frames.iter().map(|(_, f)| f.clone()).collect();
    let strip = |f: &Vec<u8>| f[14..].to_vec();
    parse.push(strip(&frames[0].1));
    parse.push(strip(&frames[15].1)); // ICMP error
    parse.push(strip(&frames[22].1)); // IPv6 with extension headers
    write_dir(&root.join("parse"), &parse);

    // process: two control bytes (interface, time advance) + frame.
    let process: Vec<Vec<u8>> = frames
        .iter()
        .enumerate()
        .map(|(i, (name, f))| {
            let from_server = name.contains("from server")
                || name.contains("from real server")
                || name.contains("server side");
            let mut b = vec![u8::from(from_server), [0x00, 0x41, 0x85, 0xc2][i % 4]];
            b.extend_from_slice(f);
            b
        })
        .collect();
    write_dir(&root.join("process"), &process);

    // process_structured: encoded scenarios; check they decode to themselves and that
    // building their frames does not panic.
    let mut structured = Vec::new();
    for (name, sc) in scenarios() {
        let bytes = sc.encode();
        let back = Scenario::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(back, sc, "{name}: encoding does not round-trip");
        for s in &sc.steps {
            let _ = s.frames();
        }
        structured.push(bytes);
    }
    write_dir(&root.join("process_structured"), &structured);
}
