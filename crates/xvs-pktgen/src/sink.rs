//! The sink / meter: a program on the receiving interface — at XDP, or at tc
//! ingress ([`SinkAttach`]) — that counts the generator's frames and drops them,
//! and passes everything else (ARP!) on.
//!
//! See [`crate::program`] for the program and the histogram's buckets.
//! [`Sink::read`] sums the per-CPU maps into a [`SinkReport`]; the latency
//! percentiles come from an `hdrhistogram` filled with each bucket's midpoint
//! and count (so they carry the buckets' ≤ 6.25 % error).

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use xvs_io::steer::XdpMode;
use xvs_io::sys::bpf::{self, BpfError, BpfFd, Map, MapType, ProgType};

use crate::program::{
    self, HIST_BUCKETS, STAT_DELIVERED, STAT_DEST_OVERFLOW, STAT_PASSED, STATS_ENTRIES, SinkMaps,
};

const LICENSE: &CStr = c"Dual MIT/GPL";

/// Errors of the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A flow count of 0 or over `i32::MAX`, or a destination table of 0.
    #[error("bad sink options: {0}")]
    Options(&'static str),
    /// A `bpf(2)` call failed.
    #[error("{what}: {source}")]
    Bpf {
        /// What was being done.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: BpfError,
    },
    /// The histogram could not be built.
    #[error("histogram: {0}")]
    Histogram(String),
}

fn bpf_err(what: &'static str) -> impl FnOnce(BpfError) -> SinkError {
    move |source| SinkError::Bpf { what, source }
}

/// Sizes of the sink's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkOptions {
    /// Flow counters: a frame counts for `source port % flows`.
    pub flows: u32,
    /// Distinct destination addresses counted (more go to `dest_overflow`).
    pub max_dests: u32,
    /// Where to attach.
    pub attach: SinkAttach,
}

/// Where the sink's program runs.
///
/// On a veth neither is cheaper for every sender. At XDP, a frame that arrives
/// as an skb with less than 256 bytes of headroom (every frame an AF_XDP socket
/// sends in copy mode) is first copied into a fresh page; a forwarded skb has
/// the headroom. At tc ingress nothing is copied, but without an XDP program
/// the veth hands its skbs to the receiving cpu's backlog queue — the queue RPS
/// fills too — instead of its own NAPI ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkAttach {
    /// An XDP link (veth: native).
    Xdp(XdpMode),
    /// A tcx ingress link (Linux ≥ 6.6).
    TcIngress,
}

impl SinkAttach {
    /// The program type the sink loads for this attachment.
    fn prog_type(self) -> ProgType {
        match self {
            SinkAttach::Xdp(_) => ProgType::Xdp,
            SinkAttach::TcIngress => ProgType::SchedCls,
        }
    }
}

/// What the sink's program did with a frame ([`Sink::test_run`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkVerdict {
    /// A generator frame: counted and dropped.
    Counted,
    /// Anything else: passed on to the kernel.
    Passed,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            flows: 1024,
            max_dests: 1024,
            attach: SinkAttach::Xdp(XdpMode::Native),
        }
    }
}

/// The sink's counters, summed over the CPUs.
#[derive(Debug, Clone)]
pub struct SinkReport {
    /// The generator's frames received (counted and dropped).
    pub delivered: u64,
    /// Their bytes (IP total length + 14).
    pub delivered_bytes: u64,
    /// Other frames, passed to the kernel.
    pub passed: u64,
    /// Generator frames whose destination did not fit the table.
    pub dest_overflow: u64,
    /// Frames per destination address.
    pub per_dest: BTreeMap<Ipv4Addr, u64>,
    /// Frames per flow (`source port % flows`).
    pub per_flow: Vec<u64>,
    /// Frames per latency bucket ([`program::bucket_value`]).
    pub buckets: Vec<u64>,
    /// Latency in ns (bucket midpoints), without the overflow bucket.
    pub latency: Histogram<u64>,
    /// Frames in the overflow bucket (≥ 2^40 ns, or a timestamp from the future).
    pub latency_overflow: u64,
}

impl SinkReport {
    /// Latency quantile `q` (0..=1) in ns; 0 when empty.
    pub fn latency_ns(&self, q: f64) -> u64 {
        self.latency.value_at_quantile(q)
    }

    /// Flows that received at least one frame.
    pub fn flows_seen(&self) -> usize {
        self.per_flow.iter().filter(|&&c| c > 0).count()
    }

    /// (min, max) frames over the flows.
    pub fn flow_spread(&self) -> (u64, u64) {
        let min = self.per_flow.iter().copied().min().unwrap_or(0);
        let max = self.per_flow.iter().copied().max().unwrap_or(0);
        (min, max)
    }
}

/// The loaded sink program, its maps, and its attachment.
#[derive(Debug)]
pub struct Sink {
    link: Option<BpfFd>,
    prog: BpfFd,
    stats: Map,
    flows: Map,
    dests: Map,
    hist: Map,
    options: SinkOptions,
    insn_count: usize,
    verifier_stats: String,
}

/// Sums the `u64` at `offset` of each CPU's value in a per-CPU lookup buffer.
fn sum_percpu(buf: &[u8], stride: usize, offset: usize) -> u64 {
    buf.chunks_exact(stride)
        .map(|v| u64::from_ne_bytes(v[offset..offset + 8].try_into().expect("8 bytes")))
        .sum()
}

impl Sink {
    /// Creates the maps, loads the program and attaches it to `ifindex`; it
    /// stays attached while the `Sink` lives.
    pub fn attach(ifindex: u32, options: SinkOptions) -> Result<Self, SinkError> {
        let mut sink = Self::load(options)?;
        let link = match options.attach {
            SinkAttach::Xdp(mode) => bpf::xdp_link_create(&sink.prog, ifindex, mode),
            SinkAttach::TcIngress => bpf::tcx_ingress_link_create(&sink.prog, ifindex),
        }
        .map_err(bpf_err("attaching the sink program"))?;
        sink.link = Some(link);
        Ok(sink)
    }

    /// Creates the maps and loads the program without attaching it (for
    /// [`Sink::test_run`]).
    pub fn load(options: SinkOptions) -> Result<Self, SinkError> {
        if options.flows == 0 || options.flows > i32::MAX as u32 {
            return Err(SinkError::Options("flows must be in 1..=2^31-1"));
        }
        if options.max_dests == 0 {
            return Err(SinkError::Options("max_dests must be at least 1"));
        }
        let create = |ty, name, key, value, max| {
            bpf::map_create(ty, name, key, value, max).map_err(bpf_err("creating a sink map"))
        };
        let stats = create(MapType::PercpuArray, "xvs_sink_stats", 4, 16, STATS_ENTRIES)?;
        let flows = create(MapType::PercpuArray, "xvs_sink_flows", 4, 8, options.flows)?;
        let dests = create(
            MapType::PercpuHash,
            "xvs_sink_dests",
            4,
            8,
            options.max_dests,
        )?;
        let hist = create(MapType::PercpuArray, "xvs_sink_hist", 4, 8, HIST_BUCKETS)?;
        let maps = SinkMaps {
            stats: stats.fd().raw(),
            flows: flows.fd().raw(),
            dests: dests.fd().raw(),
            hist: hist.fd().raw(),
        };
        let ty = options.attach.prog_type();
        let insns = program::sink(maps, options.flows, ty);
        let loaded = bpf::prog_load_as(ty, &insns, LICENSE, "xvs_pktgen_sink")
            .map_err(bpf_err("loading the sink program"))?;
        Ok(Sink {
            link: None,
            prog: loaded.fd,
            stats,
            flows,
            dests,
            hist,
            options,
            insn_count: insns.len(),
            verifier_stats: loaded.verifier_stats,
        })
    }

    /// Instructions in the program (an `ld_imm64` counts two).
    pub fn insn_count(&self) -> usize {
        self.insn_count
    }

    /// The verifier's statistics line.
    pub fn verifier_stats(&self) -> &str {
        &self.verifier_stats
    }

    /// Whether the program is attached to an interface.
    pub fn is_attached(&self) -> bool {
        self.link.is_some()
    }

    /// Runs the program once on `frame` with `BPF_PROG_RUN` (no live frames:
    /// nothing is sent; the maps are updated as for a received frame).
    pub fn test_run(&self, frame: &[u8]) -> Result<SinkVerdict, SinkError> {
        let run = bpf::prog_test_run(&self.prog, frame).map_err(bpf_err("running the sink"))?;
        let (drop, _) = self.options.attach.prog_type().verdicts();
        Ok(if run.retval as i32 == drop {
            SinkVerdict::Counted
        } else {
            SinkVerdict::Passed
        })
    }

    /// The options the sink was made with.
    pub fn options(&self) -> SinkOptions {
        self.options
    }

    fn array(map: &Map, entries: u32, offset: usize) -> Result<Vec<u64>, SinkError> {
        let mut buf = vec![0u8; map.lookup_len().map_err(bpf_err("per-CPU size"))?];
        let stride = map.value_size().next_multiple_of(8);
        let mut out = Vec::with_capacity(entries as usize);
        for i in 0..entries {
            bpf::map_lookup_elem(map, &i.to_ne_bytes(), &mut buf)
                .map_err(bpf_err("reading a sink map"))?;
            out.push(sum_percpu(&buf, stride, offset));
        }
        Ok(out)
    }

    /// Delivered frames only (one map read per CPU value: cheap to poll).
    pub fn delivered(&self) -> Result<u64, SinkError> {
        let mut buf = vec![0u8; self.stats.lookup_len().map_err(bpf_err("per-CPU size"))?];
        bpf::map_lookup_elem(&self.stats, &STAT_DELIVERED.to_ne_bytes(), &mut buf)
            .map_err(bpf_err("reading the sink stats"))?;
        Ok(sum_percpu(&buf, 16, 0))
    }

    /// Waits until the delivered count stops changing for `quiet` (frames still
    /// in a veth ring or a pending NAPI poll), at most `max`; returns it.
    pub fn settle(&self, quiet: Duration, max: Duration) -> Result<u64, SinkError> {
        let start = Instant::now();
        let mut last = self.delivered()?;
        let mut since = Instant::now();
        while start.elapsed() < max {
            std::thread::sleep(quiet / 5);
            let now = self.delivered()?;
            if now != last {
                last = now;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        Ok(last)
    }

    /// Reads and sums every counter.
    pub fn read(&self) -> Result<SinkReport, SinkError> {
        let frames = Self::array(&self.stats, STATS_ENTRIES, 0)?;
        let bytes = Self::array(&self.stats, STATS_ENTRIES, 8)?;
        let per_flow = Self::array(&self.flows, self.options.flows, 0)?;
        let buckets = Self::array(&self.hist, HIST_BUCKETS, 0)?;

        let mut per_dest = BTreeMap::new();
        let mut buf = vec![0u8; self.dests.lookup_len().map_err(bpf_err("per-CPU size"))?];
        let mut key: Option<[u8; 4]> = None;
        let mut next = [0u8; 4];
        // Bounded: a hash of max_dests entries (+1 in case of a concurrent insert).
        for _ in 0..=self.options.max_dests {
            let more = bpf::map_get_next_key(&self.dests, key.as_ref().map(|k| &k[..]), &mut next)
                .map_err(bpf_err("walking the destinations"))?;
            if !more {
                break;
            }
            if bpf::map_lookup_elem(&self.dests, &next, &mut buf)
                .map_err(bpf_err("reading a destination"))?
            {
                per_dest.insert(Ipv4Addr::from(next), sum_percpu(&buf, 8, 0));
            }
            key = Some(next);
        }

        let mut latency = Histogram::<u64>::new_with_bounds(1, 1 << 41, 3)
            .map_err(|e| SinkError::Histogram(e.to_string()))?;
        let mut latency_overflow = 0;
        for (b, &count) in buckets.iter().enumerate() {
            if count == 0 {
                continue;
            }
            match program::bucket_value(b as u32) {
                Some(v) => latency
                    .record_n(v.max(1), count)
                    .map_err(|e| SinkError::Histogram(e.to_string()))?,
                None => latency_overflow += count,
            }
        }
        Ok(SinkReport {
            delivered: frames[STAT_DELIVERED as usize],
            delivered_bytes: bytes[STAT_DELIVERED as usize],
            passed: frames[STAT_PASSED as usize],
            dest_overflow: frames[STAT_DEST_OVERFLOW as usize],
            per_dest,
            per_flow,
            buckets,
            latency,
            latency_overflow,
        })
    }
}
