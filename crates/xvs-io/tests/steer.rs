//! The steering program through the kernel verifier, with verdicts checked by
//! `BPF_PROG_RUN` on hand-built frames (no network traffic).
//!
//! The program is loaded with [`Fallback::Drop`]: the XSKMAP is empty under
//! `BPF_PROG_RUN`, so `bpf_redirect_map` returns its fallback, and `XDP_DROP`
//! here means "would redirect to userspace", distinct from `XDP_PASS`.
//!
//! Needs root (CAP_BPF / CAP_SYS_ADMIN); see [`privileged`].

use std::io::Write;
use std::net::IpAddr;

use xvs_core::wire::build::FrameSpec;
use xvs_io::steer::{Fallback, SteerHook, SteeringOptions, SteeringProgram, XdpAction, XdpMode};

/// "Would redirect" under `BPF_PROG_RUN` with [`Fallback::Drop`].
const REDIRECT: XdpAction = XdpAction::Drop;
const PASS: XdpAction = XdpAction::Pass;
const SYN: u16 = 0x02;

/// Whether this test may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` (past the test harness's capture) and returns false — or
/// panics when `XVS_REQUIRE_PRIVILEGED=1` (CI), so that a skip cannot pass.
fn privileged(test: &str) -> bool {
    xvs_io::testing::privileged(
        test,
        "needs root (CAP_BPF/CAP_SYS_ADMIN) to load and run BPF programs",
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address literal")
}

const VIP4: &str = "198.18.1.1";
const VIP6: &str = "2001:db8:1::1";
const RS4: &str = "198.18.2.10";
const RS6: &str = "2001:db8:2::10";
const CLIENT4: &str = "198.18.0.10";
const CLIENT6: &str = "2001:db8::10";
const LOCAL4: &str = "198.18.2.1";
const LOCAL6: &str = "2001:db8:2::1";

/// The program for `hook` with the VIPs, real servers and locals [`cases`] expects
/// (and [`Fallback::Drop`], which matters at XDP only).
fn load(hook: SteerHook) -> SteeringProgram {
    let opts = SteeringOptions {
        fallback: Fallback::Drop,
        hook,
        ..SteeringOptions::default()
    };
    let p = SteeringProgram::load_with(&[ip(VIP4), ip(VIP6)], &[ip(RS4), ip(RS6)], opts)
        .unwrap_or_else(|e| panic!("load: {e}"));
    p.add_local(ip(LOCAL4)).expect("local4");
    p.add_local(ip(LOCAL6)).expect("local6");
    p
}

fn tcp(src: &str, dst: &str) -> FrameSpec {
    FrameSpec::tcp(
        format!("{}:40000", bracket(src)).parse().expect("src"),
        format!("{}:80", bracket(dst)).parse().expect("dst"),
        SYN,
    )
}

fn bracket(a: &str) -> String {
    if a.contains(':') {
        format!("[{a}]")
    } else {
        a.to_owned()
    }
}

fn run(p: &SteeringProgram, frame: &[u8]) -> XdpAction {
    p.test_run(frame)
        .unwrap_or_else(|e| panic!("test run: {e}"))
}

#[test]
fn verdicts() {
    if !privileged("steer::verdicts") {
        return;
    }
    let p = load(SteerHook::Xdp);
    let _ = writeln!(
        std::io::stderr(),
        "steering program: {} instructions; verifier: {}",
        p.insn_count(),
        p.verifier_stats().replace('\n', "; ")
    );

    let mut failures = Vec::new();
    for (what, frame, want) in &cases() {
        let got = run(&p, frame);
        if got != *want {
            failures.push(format!("{what}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// AF_PACKET mode's guard is the same program at tc ingress: it drops exactly
/// the frames the XDP program would hand to the workers, and lets the rest on.
#[test]
fn the_tc_guard_drops_what_xdp_steers() {
    if !privileged("steer::the_tc_guard_drops_what_xdp_steers") {
        return;
    }
    let p = load(SteerHook::TcGuard);
    let mut failures = Vec::new();
    let mut refused = Vec::new();
    for (what, frame, want) in &cases() {
        // The kernel's skb test run refuses a frame without a whole IP header
        // (EINVAL); the XDP program passes them.
        let Ok(dropped) = p.test_run_guard(frame) else {
            refused.push(*what);
            continue;
        };
        if dropped != (*want == REDIRECT) {
            failures.push(format!("{what}: dropped {dropped}, XDP verdict {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        refused
            .iter()
            .all(|w| w.contains("truncated inside the IP header") || *w == "bare Ethernet header"),
        "refused by the test run: {refused:?}"
    );
}

/// Frames and the XDP program's verdict for them (with [`load`]'s maps).
fn cases() -> Vec<(&'static str, Vec<u8>, XdpAction)> {
    let mut arp = tcp(CLIENT4, VIP4).build();
    arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());

    let ipv4_to_vip = tcp(CLIENT4, VIP4).build();
    vec![
        ("IPv4 to a VIP", ipv4_to_vip.clone(), REDIRECT),
        (
            "IPv4 UDP to a VIP",
            FrameSpec::udp(
                "198.18.0.10:5353".parse().unwrap(),
                "198.18.1.1:53".parse().unwrap(),
            )
            .build(),
            REDIRECT,
        ),
        (
            "IPv4 not to a VIP",
            tcp(CLIENT4, "198.18.1.2").build(),
            PASS,
        ),
        (
            "IPv4 to the client from a VIP",
            tcp(VIP4, CLIENT4).build(),
            PASS,
        ),
        (
            "IPv4 reply from a real server",
            tcp(RS4, CLIENT4).build(),
            REDIRECT,
        ),
        ("ARP", arp, PASS),
        ("IPv6 to a v6 VIP", tcp(CLIENT6, VIP6).build(), REDIRECT),
        (
            "IPv6 not to a VIP",
            tcp(CLIENT6, "2001:db8:1::2").build(),
            PASS,
        ),
        (
            "IPv6 reply from a real server",
            tcp(RS6, CLIENT6).build(),
            REDIRECT,
        ),
        (
            "IPv4-sized VIP bytes in IPv6 are not a VIP",
            tcp(CLIENT6, "::ffff:198.18.1.1").build(),
            PASS,
        ),
        (
            "VLAN-tagged IPv4 to a VIP",
            tcp(CLIENT4, VIP4).with_vlan(Some(100)).build(),
            REDIRECT,
        ),
        (
            "VLAN-tagged IPv4 not to a VIP",
            tcp(CLIENT4, "198.18.1.2").with_vlan(Some(100)).build(),
            PASS,
        ),
        (
            "VLAN-tagged IPv6 to a VIP",
            tcp(CLIENT6, VIP6).with_vlan(Some(7)).build(),
            REDIRECT,
        ),
        (
            "VLAN-tagged reply from a real server",
            tcp(RS4, CLIENT4).with_vlan(Some(7)).build(),
            REDIRECT,
        ),
        (
            "IPv4 to a VIP truncated inside the IP header",
            ipv4_to_vip[..14 + 19].to_vec(),
            PASS,
        ),
        (
            "IPv4 to a VIP cut right after the header",
            ipv4_to_vip[..14 + 20].to_vec(),
            REDIRECT,
        ),
        (
            "IPv6 truncated inside the IP header",
            tcp(CLIENT6, VIP6).build()[..14 + 39].to_vec(),
            PASS,
        ),
        (
            "VLAN tag truncated",
            tcp(CLIENT4, VIP4).with_vlan(Some(5)).build()[..16].to_vec(),
            PASS,
        ),
        ("bare Ethernet header", ipv4_to_vip[..14].to_vec(), PASS),
        (
            "ping (ICMP echo request) to a VIP: the kernel answers",
            FrameSpec::icmp_echo(ip(CLIENT4), ip(VIP4), 7, 1, false).build(),
            PASS,
        ),
        (
            "ICMPv6 echo request to a v6 VIP: the kernel answers",
            FrameSpec::icmp_echo(ip(CLIENT6), ip(VIP6), 7, 1, false).build(),
            PASS,
        ),
        (
            "ICMP echo reply to a VIP (a NAT'd ping answered): userspace",
            FrameSpec::icmp_echo(ip(CLIENT4), ip(VIP4), 7, 1, true).build(),
            REDIRECT,
        ),
        (
            "ICMP error to a VIP (e.g. fragmentation needed): userspace",
            FrameSpec::icmp_error(
                ip(CLIENT4),
                ip(VIP4),
                3,
                4,
                [0, 0, 5, 220],
                &tcp(VIP4, CLIENT4).build_ip(),
            )
            .build(),
            REDIRECT,
        ),
        (
            "ICMP echo with IPv4 options to a VIP: userspace decides",
            FrameSpec::icmp_echo(ip(CLIENT4), ip(VIP4), 7, 1, false)
                .with_ipv4_options(&[1, 1, 1, 1])
                .build(),
            REDIRECT,
        ),
        (
            "ping to a VIP cut inside the ICMP header: userspace (it counts it)",
            FrameSpec::icmp_echo(ip(CLIENT4), ip(VIP4), 7, 1, false).build()[..14 + 20].to_vec(),
            REDIRECT,
        ),
        (
            "IPv4 from a real server to the director itself (health check)",
            tcp(RS4, LOCAL4).build(),
            PASS,
        ),
        (
            "IPv6 from a real server to the director itself",
            tcp(RS6, LOCAL6).build(),
            PASS,
        ),
        (
            "IPv6 from a real server to a multicast group (ND solicitation)",
            tcp(RS6, "ff02::1:ff00:1").build(),
            PASS,
        ),
        (
            "IPv6 from a real server to a link-local address (ND answer)",
            tcp(RS6, "fe80::1").build(),
            PASS,
        ),
        (
            "IPv4 from a real server to a multicast group",
            tcp(RS4, "224.0.0.18").build(),
            PASS,
        ),
        (
            "IPv4 from a real server to broadcast",
            tcp(RS4, "255.255.255.255").build(),
            PASS,
        ),
    ]
}

#[test]
fn maps_follow_the_control_plane() {
    if !privileged("steer::maps_follow_the_control_plane") {
        return;
    }
    let opts = SteeringOptions {
        fallback: Fallback::Drop,
        ..SteeringOptions::default()
    };
    let p = SteeringProgram::load_with(&[], &[], opts).unwrap_or_else(|e| panic!("load: {e}"));
    let to_vip = tcp(CLIENT4, VIP4).build();
    let to_vip6 = tcp(CLIENT6, VIP6).build();
    let reply = tcp(RS4, CLIENT4).build();
    assert_eq!(run(&p, &to_vip), PASS);
    assert_eq!(run(&p, &reply), PASS);

    p.add_vip(ip(VIP4)).unwrap();
    p.add_vip(ip(VIP4)).unwrap(); // idempotent
    p.add_real_server(ip(RS4)).unwrap();
    assert_eq!(run(&p, &to_vip), REDIRECT);
    assert_eq!(run(&p, &to_vip6), PASS, "v4 VIP does not leak into v6");
    assert_eq!(run(&p, &reply), REDIRECT);

    assert!(p.remove_vip(ip(VIP4)).unwrap());
    assert!(
        !p.remove_vip(ip(VIP4)).unwrap(),
        "second removal finds nothing"
    );
    assert!(p.remove_real_server(ip(RS4)).unwrap());
    assert_eq!(run(&p, &to_vip), PASS);
    assert_eq!(run(&p, &reply), PASS);

    // The XSKMAP takes AF_XDP sockets only, and only for its queues.
    p.clear_socket(0).unwrap();
    assert!(p.set_socket(0, p.prog_fd()).is_err(), "not a socket");
    assert!(p.clear_socket(u32::MAX).is_err(), "no such queue");
}

#[test]
fn production_fallback_passes_when_no_socket_is_bound() {
    if !privileged("steer::production_fallback_passes_when_no_socket_is_bound") {
        return;
    }
    let p = SteeringProgram::load(&[ip(VIP4)], &[]).unwrap_or_else(|e| panic!("load: {e}"));
    assert_eq!(run(&p, &tcp(CLIENT4, VIP4).build()), PASS);
}

#[test]
fn attaches_to_an_interface_and_detaches_on_drop() {
    if !privileged("steer::attaches_to_an_interface_and_detaches_on_drop") {
        return;
    }
    // A thread in a fresh network namespace: its only interface is its own `lo`,
    // so nothing on the host is touched, and no frame is sent.
    std::thread::spawn(|| {
        xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
        let lo = xvs_io::sys::if_index("lo").expect("lo in the new namespace");
        let p = SteeringProgram::load(&[ip(VIP4)], &[]).unwrap_or_else(|e| panic!("load: {e}"));
        let link = p
            .attach(lo, XdpMode::Generic)
            .unwrap_or_else(|e| panic!("attach: {e}"));
        assert_eq!(link.ifindex(), lo);
        let again = p.attach(lo, XdpMode::Generic);
        assert!(
            again.is_err(),
            "a second XDP link on one interface is EBUSY"
        );
        drop(link);
        let relinked = p.attach(lo, XdpMode::Generic);
        assert!(
            relinked.is_ok(),
            "dropping the link detached the program: {relinked:?}"
        );
    })
    .join()
    .expect("attach thread");
}

#[test]
fn a_rejected_program_returns_the_verifier_log() {
    use xvs_io::steer::{Insn, R0, R1, R2};
    use xvs_io::sys::bpf::{BpfError, prog_load};
    if !privileged("steer::a_rejected_program_returns_the_verifier_log") {
        return;
    }
    // Reads the ethertype with no bounds check against data_end.
    let unchecked = [
        Insn::ldx_w(R2, R1, 0),  // r2 = ctx->data
        Insn::ldx_h(R0, R2, 12), // r0 = *(u16 *)(data + 12): not proven in bounds
        Insn::exit(),
    ];
    match prog_load(&unchecked, c"Dual MIT/GPL", "xvs_bad") {
        Err(BpfError::Verifier { log, .. }) => {
            assert!(log.contains("invalid access to packet"), "log:\n{log}")
        }
        other => panic!("expected a verifier error, got {other:?}"),
    }
}
