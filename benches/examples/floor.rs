//! Profiling aid: one established NAT flow processed 10 M times, for `perf record`
//! (`cargo run --release -p xvs-benches --example floor`); prints ns per packet.
use std::time::Instant;
use xvs_benches::{ack, syn};
use xvs_core::lab::{EXT, lab};
use xvs_core::time::Time;
fn main() {
    let mut d = lab();
    let mut f = syn(1);
    d.process(EXT, Time(1), &mut f);
    let a = ack(1);
    let mut buf = a.clone();
    d.process(EXT, Time(1), &mut buf);
    let n = 10_000_000u32;
    let t = Instant::now();
    for _ in 0..n {
        buf.copy_from_slice(&a);
        std::hint::black_box(d.process(EXT, Time(2), std::hint::black_box(&mut buf)));
    }
    println!(
        "{:.1} ns/packet",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let t = Instant::now();
    for _ in 0..n {
        buf.copy_from_slice(&a);
        std::hint::black_box(
            xvs_core::wire::Ipv4Packet::new_checked(std::hint::black_box(&buf[14..]))
                .map(|p| p.verify_checksum())
                .ok(),
        );
    }
    println!(
        "{:.1} ns ipv4 parse+verify",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
