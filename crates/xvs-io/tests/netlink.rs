//! rtnetlink end to end: links, routes and neighbours read back from the
//! kernel, and [`Netlink::resolve`] making the kernel ARP / solicit on its own.
//!
//! Each test runs in a thread with its own network namespace (`na`, one end of
//! a veth pair) and a second, named namespace `xvs-nl-<pid>-<n>` holding the
//! peer `nb`, so that the kernel has a real neighbour to resolve. The named
//! namespace is deleted by a guard even when the test panics.
//!
//! Only lab addresses (198.18.0.0/15, 2001:db8::/32); nothing in the root
//! namespace; every wait is bounded. Needs root; see [`privileged`].

use std::io::Write;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use xvs_io::netlink::{NeighState, Neighbour, Netlink};
use xvs_io::testing::ip;

/// Whether this test may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` and returns false — or panics when
/// `XVS_REQUIRE_PRIVILEGED=1` (CI), so that a skip cannot pass.
fn privileged(test: &str) -> bool {
    xvs_io::testing::privileged(
        test,
        "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) for veth and network namespaces",
    )
}

/// Runs `ip -batch -` with `commands` on its standard input.
fn ip_batch(commands: &str) {
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("ip -batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(commands.as_bytes())
        .expect("write batch");
    assert!(child.wait().expect("wait ip -batch").success(), "ip -batch");
}

/// Writes an IPv6 sysctl of interface `dev` in the calling thread's namespace
/// (`/proc/sys/net` is resolved against the opener's network namespace).
fn ipv6_conf(dev: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/{key}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
}

/// The MAC of `dev` as `ip -o link show` prints it (after `link/ether`).
fn mac_of(show: &str) -> [u8; 6] {
    let text = show
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .unwrap_or_else(|| panic!("no link/ether in {show}"));
    let bytes: Vec<u8> = text
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).expect("hex"))
        .collect();
    bytes.try_into().expect("6 bytes")
}

const DEADLINE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);

static LAB_SEQ: AtomicU32 = AtomicU32::new(0);

/// The lab of one test: `na` in the calling thread's (private) namespace,
/// `nb` in the named namespace `ns`, 198.18.77.1/24 + 2001:db8:77::1/64 on
/// `na`, .2 / ::2 on `nb`. Dropping it deletes `ns` (and so the veth pair).
struct Lab {
    ns: String,
    na: u32,
    na_mac: [u8; 6],
    nb_mac: [u8; 6],
}

impl Lab {
    /// Must be called from a thread that has its own network namespace.
    fn new() -> Lab {
        let ns = format!(
            "xvs-nl-{}-{}",
            std::process::id(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &ns]);
        // The guard exists from here on: a failure below still deletes `ns`.
        let mut lab = Lab {
            ns,
            na: 0,
            na_mac: [0; 6],
            nb_mac: [0; 6],
        };
        let ns = lab.ns.clone();
        ip(&["link", "add", "na", "type", "veth", "peer", "name", "nb"]);
        ip(&["link", "set", "nb", "netns", &ns]);
        // No DAD: the addresses (link-local ones too) are usable at once.
        ipv6_conf("na", "accept_dad", "0");
        ip(&[
            "netns",
            "exec",
            &ns,
            "sysctl",
            "-qw",
            "net.ipv6.conf.nb.accept_dad=0",
        ]);
        ip(&["addr", "add", "198.18.77.1/24", "dev", "na"]);
        ip(&["addr", "add", "2001:db8:77::1/64", "dev", "na", "nodad"]);
        ip(&["link", "set", "na", "up"]);
        ip(&["-n", &ns, "addr", "add", "198.18.77.2/24", "dev", "nb"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            "2001:db8:77::2/64",
            "dev",
            "nb",
            "nodad",
        ]);
        ip(&["-n", &ns, "link", "set", "nb", "up"]);
        lab.na = xvs_io::sys::if_index("na").expect("na");
        lab.na_mac = mac_of(&ip(&["-o", "link", "show", "dev", "na"]));
        lab.nb_mac = mac_of(&ip(&["-n", &ns, "-o", "link", "show", "dev", "nb"]));
        lab
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Runs `body` with a fresh [`Lab`] in a thread of its own network namespace.
fn in_lab(body: impl FnOnce(&Lab, &mut Netlink) + Send + 'static) {
    let t = std::thread::spawn(move || {
        xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
        let lab = Lab::new();
        let mut nl = Netlink::open().expect("open NETLINK_ROUTE");
        body(&lab, &mut nl);
    });
    if let Err(p) = t.join() {
        std::panic::resume_unwind(p);
    }
}

/// Polls `neighbours()` every 50 ms for at most [`DEADLINE`] until an entry
/// for `addr` on `ifindex` has a MAC; returns the last entry seen, if any.
fn wait_resolved(nl: &mut Netlink, ifindex: u32, addr: IpAddr) -> Option<Neighbour> {
    let start = Instant::now();
    let mut last = None;
    loop {
        let found = nl
            .neighbours()
            .expect("neighbours")
            .into_iter()
            .find(|n| n.ifindex == ifindex && n.addr == addr);
        if let Some(n) = &found
            && n.mac.is_some()
        {
            return found;
        }
        last = found.or(last);
        if start.elapsed() >= DEADLINE {
            return last;
        }
        std::thread::sleep(POLL);
    }
}

/// The peer namespace has a neighbour entry with na's MAC: a solicitation
/// from na reached nb (an ARP request or an NS creates an entry for its
/// sender), so the kernel did send one on `resolve`.
fn assert_peer_saw_request(lab: &Lab) {
    let mac = lab
        .na_mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let peer = ip(&["-n", &lab.ns, "neigh", "show", "dev", "nb"]);
    assert!(
        peer.contains(&mac),
        "nb's neighbours lack na ({mac}):\n{peer}"
    );
}

#[test]
fn links_have_names_macs_and_state() {
    if !privileged("netlink::links_have_names_macs_and_state") {
        return;
    }
    in_lab(|lab, nl| {
        let links = nl.links().expect("links");
        let na = links
            .iter()
            .find(|l| l.name == "na")
            .unwrap_or_else(|| panic!("na in {links:?}"));
        assert_eq!(na.index, lab.na);
        assert_eq!(na.mac, lab.na_mac, "na's MAC as `ip link` shows it");
        assert!(na.up);
        assert_eq!(na.mtu, 1500);
        let lo = links
            .iter()
            .find(|l| l.name == "lo")
            .unwrap_or_else(|| panic!("lo in {links:?}"));
        assert_eq!(lo.mac, [0; 6]);
        assert!(
            !links.iter().any(|l| l.name == "nb"),
            "nb lives in the other namespace: {links:?}"
        );
    });
}

#[test]
fn routes_of_the_main_table_v4_and_v6() {
    if !privileged("netlink::routes_of_the_main_table_v4_and_v6") {
        return;
    }
    in_lab(|lab, nl| {
        ip(&["route", "add", "198.18.200.0/24", "via", "198.18.77.2"]);
        ip(&[
            "-6",
            "route",
            "add",
            "2001:db8:200::/64",
            "via",
            "2001:db8:77::2",
        ]);
        let routes = nl.routes().expect("routes");
        let find = |dst: &str| {
            let dst: ipnet::IpNet = dst.parse().unwrap();
            routes
                .iter()
                .find(|r| r.dst == dst)
                .unwrap_or_else(|| panic!("{dst} in {routes:?}"))
                .clone()
        };
        let onlink = find("198.18.77.0/24");
        assert_eq!((onlink.oif, onlink.gateway), (lab.na, None));
        let via = find("198.18.200.0/24");
        assert_eq!(
            (via.oif, via.gateway),
            (lab.na, Some("198.18.77.2".parse().unwrap()))
        );
        let onlink6 = find("2001:db8:77::/64");
        assert_eq!((onlink6.oif, onlink6.gateway), (lab.na, None));
        let via6 = find("2001:db8:200::/64");
        assert_eq!(
            (via6.oif, via6.gateway),
            (lab.na, Some("2001:db8:77::2".parse().unwrap()))
        );
        // Local-table routes (the addresses themselves) are not unicast/main.
        let local: ipnet::IpNet = "198.18.77.1/32".parse().unwrap();
        assert!(!routes.iter().any(|r| r.dst == local), "{routes:?}");

        // A dump far larger than one datagram (~2000 routes, > 100 KiB) comes
        // back whole: multi-part handling across many recv calls.
        let batch: String = (0..2000u32)
            .map(|i| format!("route add 198.19.{}.{}/32 dev na\n", i / 256, i % 256))
            .collect();
        ip_batch(&batch);
        let routes = nl.routes().expect("routes after the batch");
        let many = routes
            .iter()
            .filter(|r| matches!(r.dst, ipnet::IpNet::V4(n) if n.prefix_len() == 32 && n.addr().octets()[1] == 19))
            .count();
        assert_eq!(many, 2000);
    });
}

#[test]
fn static_neighbour_is_permanent_with_its_mac() {
    if !privileged("netlink::static_neighbour_is_permanent_with_its_mac") {
        return;
    }
    in_lab(|lab, nl| {
        ip(&[
            "neigh",
            "add",
            "198.18.77.9",
            "lladdr",
            "02:00:00:00:00:09",
            "dev",
            "na",
        ]);
        let addr: IpAddr = "198.18.77.9".parse().unwrap();
        let neigh = nl.neighbours().expect("neighbours");
        let n = neigh
            .iter()
            .find(|n| n.addr == addr)
            .unwrap_or_else(|| panic!("198.18.77.9 in {neigh:?}"));
        assert_eq!(n.ifindex, lab.na);
        assert_eq!(n.state, NeighState::Permanent);
        assert_eq!(n.mac, Some([2, 0, 0, 0, 0, 9]));
    });
}

#[test]
fn resolve_makes_the_kernel_arp() {
    if !privileged("netlink::resolve_makes_the_kernel_arp") {
        return;
    }
    in_lab(|lab, nl| {
        let addr: IpAddr = "198.18.77.2".parse().unwrap();
        assert!(
            !nl.neighbours()
                .expect("neighbours")
                .iter()
                .any(|n| n.addr == addr),
            "no entry before resolve"
        );
        nl.resolve(lab.na, addr).expect("resolve v4");
        let n = wait_resolved(nl, lab.na, addr);
        let n = n.unwrap_or_else(|| panic!("no entry for {addr} within {DEADLINE:?}"));
        assert_eq!(n.mac, Some(lab.nb_mac), "{n:?}");
        assert!(n.state.has_mac(), "{n:?}");
        // The request really went over the wire: nb learned na from it.
        assert_peer_saw_request(lab);
        // Resolving an entry that exists (now REACHABLE) is accepted too.
        nl.resolve(lab.na, addr).expect("resolve v4 again");
    });
}

#[test]
fn resolve_makes_the_kernel_solicit_v6() {
    if !privileged("netlink::resolve_makes_the_kernel_solicit_v6") {
        return;
    }
    in_lab(|lab, nl| {
        let addr: IpAddr = "2001:db8:77::2".parse().unwrap();
        assert!(
            !nl.neighbours()
                .expect("neighbours")
                .iter()
                .any(|n| n.addr == addr),
            "no entry before resolve"
        );
        nl.resolve(lab.na, addr).expect("resolve v6");
        let n = wait_resolved(nl, lab.na, addr);
        let n = n.unwrap_or_else(|| panic!("no entry for {addr} within {DEADLINE:?}"));
        assert_eq!(n.mac, Some(lab.nb_mac), "{n:?}");
        assert!(n.state.has_mac(), "{n:?}");
        assert_peer_saw_request(lab);
    });
}

#[test]
fn kernel_errors_are_typed_and_name_the_operation() {
    if !privileged("netlink::kernel_errors_are_typed_and_name_the_operation") {
        return;
    }
    std::thread::spawn(|| {
        xvs_io::sys::unshare_net_for_thread().expect("unshare(CLONE_NEWNET)");
        let mut nl = Netlink::open().expect("open");
        // No interface 4242 in a fresh namespace.
        let err = nl
            .resolve(4242, "198.18.77.2".parse().unwrap())
            .expect_err("resolve on a missing interface");
        let text = err.to_string();
        assert!(
            matches!(err, xvs_io::netlink::NetlinkError::Kernel { .. }),
            "{err:?}"
        );
        assert!(
            text.contains("resolving 198.18.77.2 on ifindex 4242"),
            "{text}"
        );
        // The socket stays usable after an error.
        assert!(nl.links().expect("links").iter().any(|l| l.name == "lo"));
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p));
}
