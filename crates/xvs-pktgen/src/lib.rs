//! # xvs-pktgen — packet generator and sink/meter for the forwarding benchmarks
//!
//! Layer: a benchmark tool beside the director, built on `xvs-core` (frame
//! builder) and `xvs-io` (the `bpf(2)` wrappers and the eBPF assembler). No
//! clang, no libbpf: both XDP programs are assembled in [`program`].
//!
//! - [`Generator`]: a template frame ([`frame`]) is sent by `BPF_PROG_RUN` with
//!   `BPF_F_TEST_XDP_LIVE_FRAMES` as if received on the generator's veth end;
//!   its XDP program rewrites the L4 source port per packet (a per-CPU counter
//!   modulo N flows), stamps `bpf_ktime_get_ns()` into the payload and returns
//!   `XDP_TX`, so the frame leaves by that veth to its peer. Flat out or paced.
//! - [`Sink`]: an XDP program on the receiving interface counts the generator's
//!   frames (recognised by a payload marker) per destination address, per flow
//!   and in a log-linear latency histogram, then drops them; every other frame
//!   (ARP!) is passed to the kernel.
//! - [`xsk_gen`]: a smooth generator through an AF_XDP socket (≤ ≈ 1 Mpps, same
//!   frames and timestamps), paced for loss and latency at a given load, flat
//!   out where the kernel refuses live frames.
//! - [`recirc`]: where the kernel refuses live frames, a veth loop whose XDP
//!   programs multiply a few seed frames (same frames and timestamps), flat out
//!   at the rate of one core.
//! - [`lab`]: a private network namespace with a veth pair, for the self-test
//!   and the tests.
//!
//! Invariants: every loop is bounded by a frame count and a deadline; lab
//! addresses come from 198.18.0.0/15 and traffic stays in namespaces we made.

#![forbid(unsafe_code)]

pub mod frame;
pub mod generator;
pub mod lab;
pub mod program;
pub mod recirc;
pub mod sink;
pub mod xsk_gen;

pub use frame::{FrameError, Proto, TemplateSpec};
pub use generator::{GenError, GenReport, Generator, GeneratorConfig, Pace};
pub use recirc::{Recirculator, RecirculatorConfig};
pub use sink::{Sink, SinkAttach, SinkError, SinkOptions, SinkReport, SinkVerdict};
pub use xsk_gen::XskGenError;
