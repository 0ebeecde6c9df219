//! Shared helpers for the criterion benches of the xvs decision engine: frames and
//! flows of the example lab (`xvs_core::lab`), generated deterministically.
//!
//! Every bench links this library, so its global allocator is theirs: large tables
//! on transparent huge pages, as in the `xvs` binary.

use std::net::SocketAddr;

use xvs_core::Shared;
use xvs_core::addr::to_bytes;
use xvs_core::classify::IfaceId;
use xvs_core::conntrack::{Conn, ConnState, Tuple};
use xvs_core::service::{DestId, ServiceTable};
use xvs_core::time::Time;
use xvs_core::wire::build::FrameSpec;
use xvs_core::wire::tcp_flags::{ACK, SYN};
use xvs_core::{Director, Prefetch, TableSizes};
use xvs_io::sys::hugealloc::HugePageAlloc;
use xvs_io::xsk::LOOK_AHEAD;

#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

/// Client `i` of the lab: 198.18.0.0/24 hosts × ports 1024.. (≈ 16 M distinct).
pub fn client(i: u32) -> SocketAddr {
    let host = 1 + (i % 250);
    let port = 1024 + (i / 250) % 64_000;
    let third = (i / (250 * 64_000)) % 256;
    format!("198.18.{third}.{host}:{port}").parse().unwrap()
}

/// The tables of the `process` bench's case: room for 100k live connections and
/// the new flows timed on top of them.
pub fn live_sizes() -> TableSizes {
    TableSizes {
        conns: 1 << 18,
        templates: 1 << 18,
        fragments: 1024,
        shards: 64,
        max_dests: 1024,
        flow_cache: 1 << 16,
        seed: 7,
    }
}

/// Remove the connections of clients from port 2000 up (`client(i)` for i ≥ 244 000):
/// the new flows a bench timed (numbered from 1 000 000), not its live ones
/// (numbered below 100 000, ports below 2000).
pub fn remove_new_connections(shared: &Shared, services: &ServiceTable) {
    shared
        .conns
        .retain(|c| c.cport < 2000, |c| shared.conn_gone(services, c));
}

/// A client SYN to the lab's NAT web VIP.
pub fn syn(i: u32) -> Vec<u8> {
    FrameSpec::tcp(client(i), "198.18.1.1:80".parse().unwrap(), SYN).build()
}

/// A client ACK (64-byte frame class) to the lab's NAT web VIP.
pub fn ack(i: u32) -> Vec<u8> {
    FrameSpec::tcp(client(i), "198.18.1.1:80".parse().unwrap(), ACK).build()
}

/// A client SYN to the lab's persistent mark service (198.18.1.3:443).
pub fn syn_persistent(i: u32) -> Vec<u8> {
    FrameSpec::tcp(client(i), "198.18.1.3:443".parse().unwrap(), SYN).build()
}

/// The tuple of client `i` to a VIP, as the connection table sees it.
pub fn tuple(i: u32) -> Tuple {
    let c = client(i);
    Tuple {
        src: to_bytes(c.ip()),
        dst: to_bytes("198.18.1.1".parse().unwrap()),
        sport: c.port(),
        dport: 80,
        protocol: 6,
        v6: false,
    }
}

/// A NAT connection for tuple `i` (expiring far in the future).
pub fn conn(i: u32) -> Conn {
    let mut c = Conn::new(
        &tuple(i),
        to_bytes("198.19.0.10".parse().unwrap()),
        8080,
        DestId(10),
        true,
        ConnState::Established,
    );
    c.expires = Time(1 << 30);
    c
}

/// A cheap deterministic permutation-ish index stream (xorshift) for random access.
pub fn scramble(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Decide `frames` received on `iface` the AF_XDP worker's way
/// (`xvs_io::xsk::LOOK_AHEAD`): each frame is shown to `Director::prefetch` that
/// many frames before it is decided.
pub fn decide_pipelined<F: AsMut<[u8]>>(
    d: &mut Director,
    iface: IfaceId,
    now: Time,
    frames: &mut [F],
) {
    for f in frames.iter_mut().take(LOOK_AHEAD) {
        d.prefetch(f.as_mut(), &CpuPrefetch);
    }
    for k in 0..frames.len() {
        if let Some(f) = frames.get_mut(k + LOOK_AHEAD) {
            d.prefetch(f.as_mut(), &CpuPrefetch);
        }
        std::hint::black_box(d.process(iface, now, std::hint::black_box(frames[k].as_mut())));
    }
}

/// The CPU's prefetch hint, as the workers pass it to the engine.
#[derive(Clone, Copy, Debug)]
pub struct CpuPrefetch;

impl Prefetch for CpuPrefetch {
    #[inline]
    fn prefetch_addr(&self, addr: usize) {
        xvs_io::sys::prefetch_addr(addr);
    }
}
