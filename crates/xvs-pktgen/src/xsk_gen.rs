//! The smooth generator: frames sent through an AF_XDP socket (copy-mode tx),
//! in batches of at most 64, each with its flow's source port and a
//! `CLOCK_MONOTONIC` timestamp (the clock of the sink's `bpf_ktime_get_ns()`);
//! a TCP frame's checksum is updated to match.
//! Up to about 1 Mpps on this VM, but without the bursts of live frames (each
//! `BPF_PROG_RUN` call has a fixed cost of tens of ms): the source for loss and
//! latency figures at a given load, and the flat-out source where the kernel
//! refuses live frames ([`crate::GenError::live_frames_refused`]).
//!
//! Invariants: the loop is bounded by `duration` (plus at most 200 ms to let
//! the last frames leave); UMEM frames are recycled, nothing allocates per frame.

use std::time::{Duration, Instant};

use xvs_io::xsk::{Port, XskConfig, XskError};

use xvs_core::wire::checksum;

use crate::frame::{FrameError, L4_OFFSET, Proto, TCP_CHECKSUM_OFFSET, TemplateSpec};
use crate::generator::Pace;

/// Errors of the AF_XDP generator.
#[derive(Debug, thiserror::Error)]
pub enum XskGenError {
    /// The template could not be built.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The AF_XDP socket failed.
    #[error("AF_XDP on {ifname}: {source}")]
    Xsk {
        /// The interface.
        ifname: String,
        /// The socket error.
        #[source]
        source: XskError,
    },
    /// A rate of zero.
    #[error("the rate must be at least 1 frame per second")]
    Rate,
}

/// Sends up to `count` `template` frames over `flows` flows (source ports
/// `base_src_port ..`) out of `ifname` at `pace` for at most `duration`;
/// returns the frames handed to the kernel.
pub fn send(
    ifname: &str,
    template: &TemplateSpec,
    flows: u32,
    pace: Pace,
    count: u64,
    duration: Duration,
) -> Result<u64, XskGenError> {
    let rate = match pace {
        Pace::FlatOut => None,
        Pace::Rate(0) => return Err(XskGenError::Rate),
        Pace::Rate(r) => Some(r),
    };
    let xsk = |source| XskGenError::Xsk {
        ifname: ifname.to_owned(),
        source,
    };
    let mut frame = template.build()?;
    let ts_at = template.proto.timestamp_offset();
    let flows = u64::from(flows.max(1));
    let mut port = Port::open(ifname, 0, XskConfig::default()).map_err(xsk)?;
    let sock = port.socket();
    let mut batch = Vec::with_capacity(64);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < count && start.elapsed() < duration {
        sock.complete();
        let due = rate.map_or(u64::MAX, |r| {
            (start.elapsed().as_secs_f64() * r as f64) as u64
        });
        let want = due.min(count).saturating_sub(sent).min(64);
        if want == 0 {
            std::thread::sleep(Duration::from_micros(20));
            continue;
        }
        let now = xvs_io::sys::clock::monotonic_ns();
        for _ in 0..want {
            let Some(mut f) = sock.alloc() else { break };
            let flow = (sent + batch.len() as u64) % flows;
            let sport = template.base_src_port.wrapping_add(flow as u16);
            let (port, stamp) = (sport.to_be_bytes(), now.to_ne_bytes());
            if template.proto == Proto::Tcp {
                // RFC 1624 from the frame's current bytes (UDP carries checksum 0).
                let at = TCP_CHECKSUM_OFFSET;
                let mut check = u16::from_be_bytes([frame[at], frame[at + 1]]);
                check = checksum::update_bytes(check, &frame[L4_OFFSET..L4_OFFSET + 2], &port);
                check = checksum::update_bytes(check, &frame[ts_at..ts_at + 8], &stamp);
                frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
            }
            frame[L4_OFFSET..L4_OFFSET + 2].copy_from_slice(&port);
            frame[ts_at..ts_at + 8].copy_from_slice(&stamp);
            sock.write(&mut f, &frame).map_err(xsk)?;
            batch.push(f);
        }
        let queued = batch.len();
        let put = sock.tx(&mut batch).map_err(xsk)?;
        for f in batch.drain(..) {
            sock.recycle(f);
        }
        sent += put as u64;
        if put < queued || queued == 0 {
            std::thread::sleep(Duration::from_micros(20));
        }
    }
    let end = Instant::now() + Duration::from_millis(200);
    while sock.tx_outstanding() > 0 && Instant::now() < end {
        sock.kick_tx().map_err(xsk)?;
        sock.complete();
        std::thread::sleep(Duration::from_micros(100));
    }
    Ok(sent)
}
