//! Parse cost: xvs's own views (as `Director` uses them) against pnet's packet types
//! on the same frames — the reason the hot path has its own views.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pnet_packet::Packet;
use pnet_packet::ethernet::EthernetPacket;
use pnet_packet::ipv4::Ipv4Packet as PnetIpv4;
use pnet_packet::ipv6::Ipv6Packet as PnetIpv6;
use pnet_packet::tcp::TcpPacket as PnetTcp;
use xvs_core::wire::build::FrameSpec;
use xvs_core::wire::tcp_flags::SYN;
use xvs_core::wire::{EthernetFrame, Ipv4Packet, Ipv6Packet, TcpPacket};

fn xvs_v4(frame: &[u8]) -> Option<(u16, u16, bool)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if !ip.verify_checksum() {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((tcp.src_port(), tcp.dst_port(), tcp.syn()))
}

fn pnet_v4(frame: &[u8]) -> Option<(u16, u16, bool)> {
    let eth = EthernetPacket::new(frame)?;
    let ip = PnetIpv4::new(eth.payload())?;
    if pnet_packet::ipv4::checksum(&ip) != ip.get_checksum() {
        return None;
    }
    let tcp = PnetTcp::new(ip.payload())?;
    Some((
        tcp.get_source(),
        tcp.get_destination(),
        tcp.get_flags() & 2 != 0,
    ))
}

fn xvs_v6(frame: &[u8]) -> Option<(u16, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
    let l4 = ip.walk_to_l4().ok()?;
    let tcp = TcpPacket::new_checked(&eth.payload()[l4.offset..]).ok()?;
    Some((tcp.src_port(), tcp.dst_port()))
}

fn pnet_v6(frame: &[u8]) -> Option<(u16, u16)> {
    let eth = EthernetPacket::new(frame)?;
    let ip = PnetIpv6::new(eth.payload())?;
    let tcp = PnetTcp::new(ip.payload())?;
    Some((tcp.get_source(), tcp.get_destination()))
}

fn parse(c: &mut Criterion) {
    let v4 = FrameSpec::tcp(
        "198.18.0.10:40000".parse().unwrap(),
        "198.18.1.1:80".parse().unwrap(),
        SYN,
    )
    .build();
    let v6 = FrameSpec::tcp(
        "[2001:db8::10]:40000".parse().unwrap(),
        "[2001:db8:1::1]:80".parse().unwrap(),
        SYN,
    )
    .build();
    assert_eq!(xvs_v4(&v4), pnet_v4(&v4));
    assert_eq!(xvs_v6(&v6), pnet_v6(&v6));
    let mut g = c.benchmark_group("parse");
    g.bench_function("xvs/eth-ipv4-tcp", |b| b.iter(|| xvs_v4(black_box(&v4))));
    g.bench_function("pnet/eth-ipv4-tcp", |b| b.iter(|| pnet_v4(black_box(&v4))));
    g.bench_function("xvs/eth-ipv6-tcp", |b| b.iter(|| xvs_v6(black_box(&v6))));
    g.bench_function("pnet/eth-ipv6-tcp", |b| b.iter(|| pnet_v6(black_box(&v6))));
    g.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
