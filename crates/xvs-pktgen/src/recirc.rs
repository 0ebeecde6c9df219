//! The recirculating generator: a veth loop that multiplies a few seed frames
//! inside the kernel, for kernels that refuse `BPF_PROG_RUN` live frames.
//!
//! The AF_XDP generator ([`crate::xsk_gen`]) cannot stand in for live frames
//! when measuring a forwarder's limit: its copy-mode tx builds an skb per
//! frame, the same cost the forwarder's own AF_XDP tx pays, so it tops out
//! near the forwarder's rate. This source makes its frames in XDP, like live
//! frames, with no skb and no system call per frame:
//!
//! ```text
//!  seed: AF_XDP tx, SEED frames ─→ loop_a ══ loop_b [recirculator] ─┬→ out → its peer (the forwarder)
//!                                  [bounce: XDP_TX]  ↑               └→ loop_b's tx: round again
//! ```
//!
//! Each time a frame arrives at `loop_b`, the recirculator program
//! ([`crate::program::recirculator`]) stamps it as the live-frame generator
//! does (source port = next flow, timestamp) and broadcasts it
//! (`bpf_redirect_map` with `BPF_F_BROADCAST`) to a devmap of `out` and `loop_b`:
//! a copy leaves by `out`, the frame itself goes to `loop_a`, whose program
//! sends it straight back. It all runs in the softirq of the CPU that seeded
//! the loop (each veth schedules its peer's NAPI on the sending CPU), at the
//! rate of that one core.
//!
//! Bounds: the program drops a frame (it leaves the loop) once this CPU's
//! frame counter reaches the `limit` map's value. [`Recirculator::run`] zeroes
//! the counters and sets the limit to `count` before seeding, and to 0 at its
//! deadline: the CPU running the loop emits at most `count` frames, and none
//! after the deadline plus one loop round. A frame that finds a veth ring full is lost
//! to the loop; when the count stalls, `run` seeds again.
//!
//! "Sent" counts the frames the program stamped. As with live frames, a copy
//! that `out`'s peer could not queue (its ring full) is dropped by the kernel
//! without telling us: the sink's count is the truth.

use std::time::{Duration, Instant};

use xvs_io::steer::XdpMode;
use xvs_io::sys::bpf::{self, BpfFd, Map, MapType};

use crate::generator::{GenError, GenReport, LICENSE, Pace, bpf_err, check_flows};
use crate::program::{self, RecirculatorMaps};
use crate::{TemplateSpec, xsk_gen};

/// Frames seeded into the loop (fewer than a veth ring's 256, so the first
/// round loses none).
pub const SEED: u64 = 192;
/// How often [`Recirculator::run`] looks at the counter (and how long a stall
/// lasts before it seeds again).
pub const CHECK_EVERY: Duration = Duration::from_millis(2);
/// Most seedings in one run (a loop that keeps dying is an error, not a source).
pub const MAX_SEEDINGS: u64 = 1000;

/// Where the loop is and what it sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecirculatorConfig {
    /// The frame.
    pub template: TemplateSpec,
    /// Flows: source ports `base_src_port .. base_src_port + flows`.
    pub flows: u32,
    /// The way out: frames leave by this interface (to its veth peer).
    pub out_ifindex: u32,
    /// The loop's seeded end (the bounce program goes here).
    pub loop_a: String,
    /// The loop's other end (the recirculator program goes here).
    pub loop_b: String,
}

/// The loop's programs, attached while this lives, and its maps.
#[derive(Debug)]
pub struct Recirculator {
    config: RecirculatorConfig,
    counter: Map,
    limit: Map,
    _out: Map,
    _links: [BpfFd; 2],
}

impl Recirculator {
    /// Creates the maps, loads both programs and attaches them to the loop's
    /// ends (nothing is sent yet).
    pub fn attach(config: RecirculatorConfig) -> Result<Self, GenError> {
        let base = config.template.base_src_port;
        check_flows(config.flows, base)?;
        config.template.build()?;
        let index = |name: &str| {
            xvs_io::sys::if_index(name).map_err(|e| GenError::Loop(format!("{name}: {e}")))
        };
        let (a, b) = (index(&config.loop_a)?, index(&config.loop_b)?);
        let create = |ty, name, value, entries| {
            bpf::map_create(ty, name, 4, value, entries)
                .map_err(bpf_err("creating a recirculator map"))
        };
        let counter = create(MapType::PercpuArray, "xvs_recirc_ctr", 8, 1)?;
        let limit = create(MapType::Array, "xvs_recirc_lim", 8, 1)?;
        let out = create(MapType::DevMap, "xvs_recirc_out", 4, 2)?;
        for (slot, ifindex) in [(0u32, config.out_ifindex), (1, b)] {
            bpf::map_update_elem(&out, &slot.to_ne_bytes(), &ifindex.to_ne_bytes())
                .map_err(bpf_err("filling the recirculator's devmap"))?;
        }
        let maps = RecirculatorMaps {
            counter: counter.fd().raw(),
            limit: limit.fd().raw(),
            out: out.fd().raw(),
        };
        let recirculator = bpf::prog_load(
            &program::recirculator(config.template.proto, config.flows, base, maps),
            LICENSE,
            "xvs_recirc",
        )
        .map_err(bpf_err("loading the recirculator program"))?;
        let bounce = bpf::prog_load(&program::bounce(), LICENSE, "xvs_bounce")
            .map_err(bpf_err("loading the bounce program"))?;
        let links = [
            bpf::xdp_link_create(&recirculator.fd, b, XdpMode::Native)
                .map_err(bpf_err("attaching the recirculator program"))?,
            bpf::xdp_link_create(&bounce.fd, a, XdpMode::Native)
                .map_err(bpf_err("attaching the bounce program"))?,
        ];
        Ok(Recirculator {
            config,
            counter,
            limit,
            _out: out,
            _links: links,
        })
    }

    /// The frames counted on every CPU together.
    fn count(&self) -> Result<u64, GenError> {
        let mut buf = vec![0u8; self.counter.lookup_len().map_err(bpf_err("per-CPU size"))?];
        bpf::map_lookup_elem(&self.counter, &0u32.to_ne_bytes(), &mut buf)
            .map_err(bpf_err("reading the recirculator's counter"))?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
            .sum())
    }

    /// Every CPU's counter back to 0.
    fn reset_count(&self) -> Result<(), GenError> {
        let zeros = vec![0u8; self.counter.lookup_len().map_err(bpf_err("per-CPU size"))?];
        bpf::map_update_elem(&self.counter, &0u32.to_ne_bytes(), &zeros)
            .map_err(bpf_err("resetting the recirculator's counter"))
    }

    fn set_limit(&self, limit: u64) -> Result<(), GenError> {
        bpf::map_update_elem(&self.limit, &0u32.to_ne_bytes(), &limit.to_ne_bytes())
            .map_err(bpf_err("setting the recirculator's limit"))
    }

    fn seed(&self) -> Result<(), GenError> {
        xsk_gen::send(
            &self.config.loop_a,
            &self.config.template,
            self.config.flows,
            Pace::FlatOut,
            SEED,
            Duration::from_millis(100),
        )
        .map_err(GenError::Seed)?;
        Ok(())
    }

    /// Sends up to `count` frames flat out for at most about `duration` (plus
    /// one check period). Call it on the CPU the loop should run on: the seed
    /// is sent from here, and the loop stays in this CPU's softirq. The calling
    /// thread is pinned to the CPU it is on (and stays so): seeds sent from two
    /// CPUs would start a loop on each, and each CPU's counter would let `count`
    /// frames through. `calls` in the report counts the seedings;
    /// `kernel_ns_per_frame` is the wall time per frame (the loop keeps its CPU busy).
    pub fn run(&self, count: u64, duration: Duration) -> Result<GenReport, GenError> {
        if let Some(id) = xvs_io::sys::current_cpu() {
            core_affinity::set_for_current(core_affinity::CoreId { id });
        }
        self.set_limit(0)?;
        self.reset_count()?;
        self.set_limit(count)?;
        let start = Instant::now();
        self.seed()?;
        let mut seedings = 1u64;
        let mut last = 0u64;
        let result = loop {
            std::thread::sleep(CHECK_EVERY);
            let now = self.count()?;
            if now >= count || start.elapsed() >= duration {
                break Ok(());
            }
            if now == last {
                // Every frame of the loop was lost (full rings): start it again.
                if seedings >= MAX_SEEDINGS {
                    break Err(GenError::Loop(format!(
                        "the loop died {MAX_SEEDINGS} times; are both ends up with native XDP?"
                    )));
                }
                self.seed()?;
                seedings += 1;
            }
            last = now;
        };
        self.set_limit(0)?;
        let elapsed = start.elapsed();
        // One more round drops whatever was still in the loop.
        std::thread::sleep(CHECK_EVERY);
        result?;
        let sent = self.count()?;
        Ok(GenReport {
            sent,
            elapsed,
            calls: seedings,
            kernel_ns_per_frame: elapsed.as_nanos() as f64 / sent.max(1) as f64,
        })
    }
}
