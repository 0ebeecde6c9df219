//! The generator: a template frame sent by `BPF_PROG_RUN` with live frames.
//!
//! Each `bpf(BPF_PROG_TEST_RUN)` call runs the generator program
//! ([`crate::program::generator`]) `repeat` times on the template as if it had
//! been received on the generator's interface; the program's `XDP_TX` sends
//! every frame out of that interface (on a veth: to the peer, which needs an
//! XDP program or GRO on to take XDP frames). The kernel does the work on the
//! calling thread's CPU, so one call sends `repeat` frames at the rate of one
//! core.
//!
//! Each call has a fixed cost: on this VM (kernel 6.18) ≈ 24 ms of wall time,
//! mostly asleep (the live-frames page pool's setup and teardown wait for RCU),
//! whatever `repeat` is, while the frames themselves take tens to hundreds of
//! ns each. So calls must be large:
//!
//! - [`Pace::FlatOut`]: a first call of [`FLAT_FIRST`] frames measures the
//!   kernel's ns/frame; each next call is sized, at the last call's ns/frame,
//!   to 3/4 of the time left, or all of it below [`FLAT_TAIL`] (at most
//!   [`FLAT_MAX`] frames), so a 2 s run is about four calls and ends within
//!   a call's fixed cost plus the estimate's error on the last ≤ 200 ms.
//! - [`Pace::Rate`]: bursts of at least [`PACE_PERIOD`]'s worth of frames
//!   (more to catch up when a call ran late), sleeping until the schedule
//!   (`start + sent / rate`) is due: the average rate holds, but the traffic
//!   is bursty at that period — within a burst frames go at full speed.
//!
//! "Sent" counts the frames the program ran on. A frame the veth could not
//! queue to its peer (its 256-entry ring full) is dropped by the kernel without
//! telling us: the sink's count is the truth, and `sent - delivered` is the loss.
//!
//! Every run is bounded by a frame count and a duration, whichever comes first.

use std::ffi::CStr;
use std::time::{Duration, Instant};

use xvs_io::steer::Insn;
use xvs_io::sys::bpf::{self, BpfError, BpfFd, Map, MapType};

use crate::frame::{FrameError, TemplateSpec};
use crate::program;

/// Frames of the first flat-out call, which measures the per-frame time.
pub const FLAT_FIRST: u32 = 1 << 16;
/// A flat-out call is sized to 3/4 of the time left until that is below this,
/// then to all of it.
pub const FLAT_TAIL: Duration = Duration::from_millis(200);
/// The most frames in one call (≈ 1 s at 16 Mpps).
pub const FLAT_MAX: u32 = 1 << 24;
/// The pacing period of a [`Pace::Rate`] run: a call sends at least this
/// long's worth of frames, to amortise the call's fixed cost.
pub const PACE_PERIOD: Duration = Duration::from_millis(50);
pub(crate) const LICENSE: &CStr = c"Dual MIT/GPL";

/// Errors of the generator.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// The template could not be built.
    #[error("template: {0}")]
    Frame(#[from] FrameError),
    /// A flow count of 0, or flows that overflow the port space.
    #[error("{flows} flows from source port {base} do not fit in 1..=65535")]
    Flows {
        /// Flows asked for.
        flows: u32,
        /// First source port.
        base: u16,
    },
    /// A rate of 0.
    #[error("rate must be at least 1 frame/s")]
    Rate,
    /// The recirculator's loop is missing or keeps dying.
    #[error("recirculating loop: {0}")]
    Loop(String),
    /// Seeding the recirculator's loop failed.
    #[error("seeding the recirculating loop: {0}")]
    Seed(#[source] crate::xsk_gen::XskGenError),
    /// Creating the counter map, loading the program or running it failed.
    #[error("{what}: {source}")]
    Bpf {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: BpfError,
    },
}

/// Where and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorConfig {
    /// The template frame.
    pub template: TemplateSpec,
    /// Flows: source ports `base_src_port .. base_src_port + flows`.
    pub flows: u32,
    /// The generator's interface (frames leave by it, to its veth peer).
    pub ifindex: u32,
    /// Frames per redirect flush inside the kernel (0: its default, 64; ≤ 256).
    pub batch_size: u32,
}

/// How fast to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// As fast as one core can.
    FlatOut,
    /// About this many frames per second.
    Rate(u64),
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenReport {
    /// Frames run through the program (and handed to the interface).
    pub sent: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// `BPF_PROG_RUN` calls made.
    pub calls: u64,
    /// The kernel's mean time per frame over the calls, in ns.
    pub kernel_ns_per_frame: f64,
}

/// One line: frames, time, calls, rate and the kernel's time per frame.
impl std::fmt::Display for GenReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} frames in {:.3} s ({} calls): {:.3} Mpps (kernel {:.1} ns/frame)",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.calls,
            self.pps() / 1e6,
            self.kernel_ns_per_frame
        )
    }
}

impl GenReport {
    /// Achieved rate in frames per second (wall clock).
    pub fn pps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.sent as f64 / secs
        } else {
            0.0
        }
    }
}

/// A loaded generator program with its template.
#[derive(Debug)]
pub struct Generator {
    prog: BpfFd,
    _counter: Map,
    frame: Vec<u8>,
    config: GeneratorConfig,
    insn_count: usize,
    verifier_stats: String,
}

/// What [`Generator::run`] reports when its `BPF_PROG_RUN` call fails.
const SENDING: &str = "sending live frames";

impl GenError {
    /// Whether the kernel refused `BPF_PROG_RUN` with live frames (EPERM). Some
    /// guest kernels do so even to a process holding every BPF and network
    /// capability (a 6.18 Firecracker guest, 2026-12-06): a platform restriction,
    /// not a missing privilege.
    pub fn live_frames_refused(&self) -> bool {
        matches!(
            self,
            GenError::Bpf { what: SENDING, source: BpfError::Syscall { source, .. } }
                if source.kind() == std::io::ErrorKind::PermissionDenied
        )
    }
}

/// `flows` ≥ 1 source ports from `base` ≥ 1 must fit in 1..=65535.
pub(crate) fn check_flows(flows: u32, base: u16) -> Result<(), GenError> {
    if flows == 0 || base == 0 || u32::from(base) + flows - 1 > 65535 {
        return Err(GenError::Flows { flows, base });
    }
    Ok(())
}

pub(crate) fn bpf_err(what: &'static str) -> impl FnOnce(BpfError) -> GenError {
    move |source| GenError::Bpf { what, source }
}

impl Generator {
    /// Builds the template, creates the per-CPU flow counter and loads the
    /// program (nothing is sent yet).
    pub fn new(config: GeneratorConfig) -> Result<Self, GenError> {
        let base = config.template.base_src_port;
        check_flows(config.flows, base)?;
        let frame = config.template.build()?;
        let counter = bpf::map_create(MapType::PercpuArray, "xvs_pktgen_ctr", 4, 8, 1)
            .map_err(bpf_err("creating the flow counter map"))?;
        let insns: Vec<Insn> = program::generator(
            config.template.proto,
            config.flows,
            base,
            counter.fd().raw(),
        );
        let loaded = bpf::prog_load(&insns, LICENSE, "xvs_pktgen_gen")
            .map_err(bpf_err("loading the generator program"))?;
        Ok(Generator {
            prog: loaded.fd,
            _counter: counter,
            frame,
            config,
            insn_count: insns.len(),
            verifier_stats: loaded.verifier_stats,
        })
    }

    /// The template frame.
    pub fn frame(&self) -> &[u8] {
        &self.frame
    }

    /// The configuration.
    pub fn config(&self) -> &GeneratorConfig {
        &self.config
    }

    /// Instructions in the program (an `ld_imm64` counts two).
    pub fn insn_count(&self) -> usize {
        self.insn_count
    }

    /// The verifier's statistics line.
    pub fn verifier_stats(&self) -> &str {
        &self.verifier_stats
    }

    /// Runs the program once on the template without sending anything
    /// (`BPF_PROG_RUN` without live frames) and returns the rewritten frame.
    pub fn preview(&self) -> Result<Vec<u8>, GenError> {
        let run = bpf::prog_test_run(&self.prog, &self.frame)
            .map_err(bpf_err("running the generator program"))?;
        Ok(run.data_out)
    }

    fn send(&self, n: u32) -> Result<u32, GenError> {
        let run = bpf::prog_test_run_live(
            &self.prog,
            &self.frame,
            self.config.ifindex,
            0,
            n,
            self.config.batch_size,
        )
        .map_err(bpf_err(SENDING))?;
        Ok(run.duration_ns)
    }

    /// Sends up to `count` frames for at most about `duration` at `pace`.
    ///
    /// A call may overrun the duration by its fixed cost (≈ 25 ms here), and
    /// in flat-out mode by the error of the per-frame time estimate on the
    /// last call (at most [`FLAT_TAIL`] long).
    pub fn run(&self, pace: Pace, count: u64, duration: Duration) -> Result<GenReport, GenError> {
        let rate = match pace {
            Pace::FlatOut => None,
            Pace::Rate(0) => return Err(GenError::Rate),
            Pace::Rate(r) => Some(r),
        };
        let start = Instant::now();
        let mut sent = 0u64;
        let mut calls = 0u64;
        let mut kernel_ns = 0f64;
        // The kernel's ns/frame of the last call: sizes the next flat-out call.
        let mut ns_per_frame: Option<f64> = None;
        while sent < count {
            let elapsed = start.elapsed();
            if elapsed >= duration {
                break;
            }
            let left = count - sent;
            let n = match rate {
                None => match ns_per_frame {
                    None => u64::from(FLAT_FIRST),
                    Some(ns) => {
                        // Aim short of the end while much time is left, so a
                        // poor estimate is corrected by the next call.
                        let left_ns = (duration - elapsed).as_nanos() as f64;
                        let target = if left_ns > FLAT_TAIL.as_nanos() as f64 {
                            left_ns * 0.75
                        } else {
                            left_ns
                        };
                        (target / ns.max(1.0)) as u64
                    }
                }
                .clamp(1, u64::from(FLAT_MAX)),
                Some(rate) => {
                    // Due: everything scheduled up to now; wait for a burst's worth.
                    let due = (elapsed.as_secs_f64() * rate as f64) as u64;
                    let burst = (rate as f64 * PACE_PERIOD.as_secs_f64()).max(1.0) as u64;
                    if due < sent + burst.min(left) {
                        let at =
                            Duration::from_secs_f64((sent + burst.min(left)) as f64 / rate as f64);
                        std::thread::sleep(at.saturating_sub(elapsed).min(duration - elapsed));
                        continue;
                    }
                    (due - sent).clamp(1, u64::from(FLAT_MAX))
                }
            }
            .min(left) as u32;
            let ns = self.send(n)?;
            if n >= 1024 {
                ns_per_frame = Some(f64::from(ns));
            }
            kernel_ns += f64::from(ns) * f64::from(n);
            sent += u64::from(n);
            calls += 1;
        }
        Ok(GenReport {
            sent,
            elapsed: start.elapsed(),
            calls,
            kernel_ns_per_frame: if sent > 0 {
                kernel_ns / sent as f64
            } else {
                0.0
            },
        })
    }
}
