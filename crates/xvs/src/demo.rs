//! `xvs demo`: the decision engine of `xvs-core` over its built-in example lab,
//! with generated frames and no sockets, then the listing. Layer: binary.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Result, bail};
use xvs_core::lab::{self, EXT};
use xvs_core::time::Time;
use xvs_core::wire::build::FrameSpec;
use xvs_core::wire::tcp_flags::{ACK, SYN};
use xvs_core::{Director, Verdict};

use crate::listing;

/// Send `clients` clients' handshakes to every TCP service of the lab (and DNS
/// queries), plus a few frames that must be dropped or passed, then list.
pub fn demo(clients: u32) -> Result<()> {
    let mut d = lab::lab();
    let mut now = Time::from_secs(1);
    let vips: [(&str, u16); 5] = [
        ("198.18.1.1", 80),
        ("198.18.1.2", 80),
        ("198.18.1.3", 80),
        ("198.18.1.3", 443),
        ("2001:db8:1::1", 80),
    ];
    for i in 0..clients {
        let v4 = |third: u32| format!("198.18.{third}.{}", 1 + i % 250);
        for (vip, port) in vips {
            let client: IpAddr = if vip.contains(':') {
                format!("2001:db8::{:x}", 1 + i).parse()?
            } else {
                v4(0).parse()?
            };
            let c = SocketAddr::new(client, 20_000 + i as u16);
            let v = SocketAddr::new(vip.parse()?, port);
            for flags in [SYN, ACK] {
                let mut f = FrameSpec::tcp(c, v, flags)
                    .with_macs(lab::CLIENT_MAC, lab::EXT_MAC)
                    .build();
                expect_forward(&mut d, now, &mut f)?;
            }
        }
        let mut q = FrameSpec::udp(
            SocketAddr::new(v4(0).parse()?, 30_000 + i as u16),
            "198.18.1.1:53".parse()?,
        )
        .with_payload(b"query")
        .build();
        expect_forward(&mut d, now, &mut q)?;
        // A blocked subnet and a mid-flow segment with no connection.
        let mut blocked = FrameSpec::tcp(
            SocketAddr::new(v4(9).parse()?, 1000),
            "198.18.1.1:80".parse()?,
            SYN,
        )
        .build();
        d.process(EXT, now, &mut blocked);
        let mut stray = FrameSpec::tcp(
            SocketAddr::new(v4(0).parse()?, 9),
            "198.18.1.1:80".parse()?,
            ACK,
        )
        .build();
        d.process(EXT, now, &mut stray);
        now = now.after_ms(10);
    }
    println!("xvs demo: decision engine over the built-in lab (no sockets; see README)");
    print!(
        "{}",
        listing::render(
            listing::View::Plain,
            &listing::Inputs {
                services: &d.snapshot().services,
                shared: d.shared(),
                totals: d.stats(),
                rates: &[],
                now,
            }
        )
    );
    Ok(())
}

fn expect_forward(d: &mut Director, now: Time, frame: &mut [u8]) -> Result<()> {
    match d.process(EXT, now, frame) {
        Verdict::Forward { .. } => Ok(()),
        other => bail!("the lab should forward this frame, got {other:?}"),
    }
}
