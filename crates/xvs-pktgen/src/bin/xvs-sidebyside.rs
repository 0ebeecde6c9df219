//! `xvs-sidebyside`: the side-by-side forwarding benchmark (issue 4/4).
//!
//! One run builds a lab of three network namespaces —
//!
//! ```text
//!  gen: g0 198.18.0.10 ══ ext 198.18.0.1 ─ dir ─ int 198.19.0.1 ══ s0 198.19.0.10, .11 :sink
//!       (XDP live-frame generator, cpu 0)     (the forwarder, cpu 1)       (XDP sink/meter)
//! ```
//!
//! — and, at the same frame size and flow counts (1k and 64k), measures in turn:
//! (a) a bare AF_XDP forwarder from `xvs-io` that takes no decision (MACs
//! rewritten, ext → int): the limit of this path; (b) `xvs run` NAT; (c) `xvs
//! run` DR; (d) the kernel's nftables DNAT `numgen` load balancer; (e) `xvs
//! run` on AF_PACKET. Each row: flat-out delivered Mpps and its ratio to (a),
//! loss % when offered 80 % of (a)'s rate, and latency p50 / p99 at that load
//! (from the generator's timestamps, read by the sink). It prints one table and
//! appends it, with date, commit and command, to `benches/RESULTS.md`.
//!
//! Flat out, frames come from `BPF_PROG_RUN` live frames (≈ 6 Mpps); where the
//! kernel refuses those (some guest kernels do, to root), from the recirculating
//! XDP veth loop ([`xvs_pktgen::recirc`], `r0 ══ r1` in the generator's
//! namespace: also XDP frames, no skb per frame), and only if that fails too from
//! the AF_XDP tx generator (≈ 1 Mpps, about what the forwarders' own AF_XDP tx
//! costs, so it may be the limit). The table's header names the source. Loss and
//! latency at 80 % always come from the AF_XDP generator: it is smooth.
//!
//! The sink is part of what cpu 1 does: a frame sent on `int` is received by
//! `s0` in the sending cpu's softirq (threaded NAPI pinned to cpu 0 does not
//! help: the flat-out generator's softirqs there starve the thread). With the
//! XDP sink (the default) that receive work is about 60 % of the bare
//! forwarder's cpu, including a copy that only the AF_XDP rows pay (their skbs
//! lack XDP's headroom). `--sink tc` counts at tc ingress instead: no copy, but
//! the frames then share cpu 1's backlog queue with the frames RPS hands the
//! kernel's own forwarding, (d) and (e). Neither hook is neutral: compare both
//! (benches/RESULTS.md has such a pair).
//!
//! Paired measurement: a shared VM's speed drifts by tens of percent within
//! minutes, so (a) is measured again right before every other row, and that row's
//! ratio and 80 % load come from this neighbouring (a); with `--repeat N` each
//! figure (ratios included) is the median over the rounds.
//!
//! Safety: lab addresses only (198.18.0.0/15), namespaces made and deleted by
//! this run (also on Ctrl-C / SIGTERM, checked between phases), every loop
//! bounded in frames and time, children ended by their PID.

#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use xvs_io::frames::{Fate, FrameIo};
use xvs_io::steer::{SteeringProgram, XdpMode};
use xvs_io::xsk::{PortSet, XskConfig};
use xvs_pktgen::program::bucket_value;
use xvs_pktgen::{
    GenError, Generator, GeneratorConfig, Pace, Proto, Recirculator, RecirculatorConfig, Sink,
    SinkAttach, SinkOptions, TemplateSpec,
};

const USAGE: &str =
    "usage: xvs-sidebyside [--seconds S] [--size BYTES] [--flows N,N] [--rows abcde] [--repeat N] [--flow-cache N] [--sink xdp|tc] [--xvs PATH] [--no-append] [--force]
  builds a namespace lab and measures: bare AF_XDP forwarder, xvs NAT, xvs DR,
  nftables DNAT numgen, xvs on AF_PACKET; prints a table and appends it to benches/RESULTS.md
  --rows picks some of the rows (a) to (e); (a) is always measured, right before each other
  row (its reference: ratios and the 80 % load are against the (a) just before)
  --repeat N measures every row N times (default 3), rounds interleaved, and reports each
  figure's median (one round on a shared VM can be off by 30 %)
  --flow-cache N sets xvs's per-worker flow cache (director.tables.flow_cache; default 262144)
  --sink xdp|tc: where the sink counts on the far veth (default xdp; see the module docs)";

/// The xvs rows' flow cache unless `--flow-cache` says otherwise.
const DEFAULT_FLOW_CACHE: usize = 262_144;

/// Frames per second of the warm-up before each row (well below what any
/// forwarder here delivers, ≈ 0.3 Mpps at the least).
const WARM_UP_RATE: u64 = 150_000;

/// Rounds per row unless `--repeat` says otherwise (one round on a shared VM can be
/// off by 30 %; the median of three is steadier).
const DEFAULT_REPEAT: usize = 3;

const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
const SERVERS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 19, 0, 10), Ipv4Addr::new(198, 19, 0, 11)];
const PORT: u16 = 9;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    XvsNat,
    XvsDr,
    Nftables,
    XvsAfPacket,
}

impl Variant {
    const ALL: [Variant; 5] = [
        Variant::Bare,
        Variant::XvsNat,
        Variant::XvsDr,
        Variant::Nftables,
        Variant::XvsAfPacket,
    ];

    fn letter(self) -> char {
        match self {
            Variant::Bare => 'a',
            Variant::XvsNat => 'b',
            Variant::XvsDr => 'c',
            Variant::Nftables => 'd',
            Variant::XvsAfPacket => 'e',
        }
    }

    fn label(self) -> &'static str {
        match self {
            Variant::Bare => "(a) bare AF_XDP forwarder",
            Variant::XvsNat => "(b) xvs NAT (AF_XDP)",
            Variant::XvsDr => "(c) xvs DR (AF_XDP)",
            Variant::Nftables => "(d) nftables DNAT numgen",
            Variant::XvsAfPacket => "(e) xvs NAT (AF_PACKET)",
        }
    }
}

#[derive(Debug, Clone)]
struct Options {
    seconds: f64,
    size: usize,
    flows: Vec<u32>,
    rows: Vec<Variant>,
    repeat: usize,
    flow_cache: usize,
    sink: SinkAttach,
    xvs: PathBuf,
    append: bool,
    force: bool,
}

/// Where the generator's frames come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`: bursts, ≈ 6 Mpps.
    LiveFrames,
    /// The recirculating veth loop ([`xvs_pktgen::recirc`]): flat out only,
    /// where the kernel refuses live frames.
    Recirc,
    /// AF_XDP tx ([`xvs_pktgen::xsk_gen`]): smooth, ≈ 1 Mpps.
    Xsk,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::LiveFrames => "XDP live frames",
            Source::Recirc => {
                "the recirculating XDP veth loop, as this kernel refuses BPF_PROG_RUN live frames"
            }
            Source::Xsk => "AF_XDP tx",
        }
    }
}

/// What one generator run sent.
#[derive(Debug, Clone, Copy)]
struct Sent {
    frames: u64,
    elapsed: Duration,
}

impl Sent {
    fn pps(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One measured row.
#[derive(Debug, Clone, Copy)]
struct Row {
    variant: Variant,
    flows: u32,
    offered_mpps: f64,
    delivered_mpps: f64,
    /// `delivered_mpps` over that of the (a) measured just before (1 for (a)).
    ratio: f64,
    loss_at_80: f64,
    p50_us: f64,
    p99_us: f64,
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("xvs-sidebyside: {e:#}");
            std::process::exit(1);
        }
    }
}

fn parse_args() -> Result<Options> {
    let mut o = Options {
        seconds: 3.0,
        size: 64,
        // 64k flows: every source port but 0.
        flows: vec![1024, 65535],
        rows: Variant::ALL.to_vec(),
        repeat: DEFAULT_REPEAT,
        flow_cache: DEFAULT_FLOW_CACHE,
        sink: SinkAttach::Xdp(XdpMode::Native),
        xvs: std::env::current_exe()?
            .parent()
            .map(|d| d.join("xvs"))
            .unwrap_or_else(|| PathBuf::from("xvs")),
        append: true,
        force: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .with_context(|| format!("{a} takes a value\n{USAGE}"))
        };
        match a.as_str() {
            "--seconds" => o.seconds = val()?.parse().context("--seconds")?,
            "--size" => o.size = val()?.parse().context("--size")?,
            "--flows" => {
                o.flows = val()?
                    .split(',')
                    .map(|f| f.parse().context("--flows"))
                    .collect::<Result<_>>()?
            }
            "--rows" => {
                let picked = val()?;
                if let Some(c) = picked.chars().find(|&c| !"abcde".contains(c)) {
                    bail!("--rows: no row {c:?} (rows are a to e)\n{USAGE}");
                }
                o.rows = Variant::ALL
                    .into_iter()
                    .filter(|v| *v == Variant::Bare || picked.contains(v.letter()))
                    .collect();
            }
            "--repeat" => o.repeat = val()?.parse().context("--repeat")?,
            "--flow-cache" => o.flow_cache = val()?.parse().context("--flow-cache")?,
            "--sink" => {
                o.sink = match val()?.as_str() {
                    "xdp" => SinkAttach::Xdp(XdpMode::Native),
                    "tc" => SinkAttach::TcIngress,
                    other => bail!("--sink {other}: xdp or tc\n{USAGE}"),
                }
            }
            "--xvs" => o.xvs = PathBuf::from(val()?),
            "--no-append" => o.append = false,
            "--force" => o.force = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{USAGE}"),
        }
    }
    if !(0.5..=60.0).contains(&o.seconds) {
        bail!("--seconds must be within 0.5..=60");
    }
    if !(1..=9).contains(&o.repeat) {
        bail!("--repeat must be within 1..=9");
    }
    Ok(o)
}

/// What the run needs from the machine, checked before anything is built.
fn preconditions(o: &Options) -> Result<()> {
    if !xvs_io::sys::effective_uid_is_root() {
        bail!("needs root (network namespaces, XDP, BPF_PROG_RUN live frames)");
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        bail!("needs 2 CPUs (generator on cpu 0, forwarder on cpu 1); this machine has {cpus}");
    }
    if !o.xvs.is_file() {
        bail!(
            "no xvs binary at {} (build it: cargo build --release -p xvs, or pass --xvs PATH)",
            o.xvs.display()
        );
    }
    let busy = cpu_busy(1, Duration::from_millis(300))?;
    if busy > 0.3 && !o.force {
        bail!(
            "cpu 1 is {:.0} % busy: the forwarders need it to themselves (stop other work, or --force)",
            busy * 100.0
        );
    }
    for tool in ["ip", "nft"] {
        let ok = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !ok {
            bail!("`{tool}` not found (scripts/setup.sh installs it)");
        }
    }
    Ok(())
}

/// The busy share of `cpu` over `window`, from /proc/stat.
fn cpu_busy(cpu: usize, window: Duration) -> Result<f64> {
    let sample = || -> Result<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let name = format!("cpu{cpu} ");
        let line = stat
            .lines()
            .find(|l| l.starts_with(&name))
            .with_context(|| format!("no cpu{cpu} in /proc/stat"))?;
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Ok((idle, v.iter().sum()))
    };
    let (i0, t0) = sample()?;
    std::thread::sleep(window);
    let (i1, t1) = sample()?;
    let total = t1.saturating_sub(t0).max(1);
    Ok(1.0 - i1.saturating_sub(i0) as f64 / total as f64)
}

fn run() -> Result<()> {
    let o = parse_args()?;
    preconditions(&o)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // Everything but the forwarder under test stays on cpu 0 (reading the sink's
    // maps between phases included); threads and children inherit this.
    core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
    let mut lab = Lab::build()?;
    // Kernel features: the sink's hook (native XDP on veth, or tcx) and live frames
    // (Linux ≥ 5.18).
    drop(
        lab.sink(1024, o.sink)
            .context("attaching the sink (native XDP on veth, or tcx: Linux ≥ 6.6)")?,
    );
    let probe = lab.generator(64, o.size)?.send(
        Source::LiveFrames,
        Pace::Rate(1000),
        10,
        Duration::from_millis(100),
    );
    match probe {
        Ok(_) => {}
        Err(e)
            if e.downcast_ref::<GenError>()
                .is_some_and(GenError::live_frames_refused) =>
        {
            let recirc = lab.generator(64, o.size)?.send(
                Source::Recirc,
                Pace::FlatOut,
                10_000,
                Duration::from_millis(200),
            );
            let failed = match recirc {
                Ok(sent) if sent.frames > 0 => None,
                Ok(_) => Some("it sent nothing".to_owned()),
                Err(e) => Some(format!("{e:#}")),
            };
            lab.source = if let Some(why) = failed {
                eprintln!(
                    "note: {e}: this kernel refuses BPF_PROG_RUN live frames, and the recirculating loop failed ({why}); flat-out rows use the AF_XDP tx generator (≈ 1 Mpps, it may be the limit)"
                );
                Source::Xsk
            } else {
                eprintln!(
                    "note: {e}: this kernel refuses BPF_PROG_RUN live frames; flat-out rows use the recirculating XDP veth loop"
                );
                Source::Recirc
            };
        }
        Err(e) => {
            return Err(e.context(
                "the kernel's BPF_PROG_RUN live frames (BPF_F_TEST_XDP_LIVE_FRAMES, Linux ≥ 5.18)",
            ));
        }
    }
    let mut rows = Vec::new();
    for &flows in &o.flows {
        let sink = lab.sink(flows.max(1024), o.sink)?;
        let mut bare_rounds: Vec<Row> = Vec::new();
        let mut rounds: Vec<Vec<Row>> = Vec::new();
        let others: Vec<Variant> = o
            .rows
            .iter()
            .copied()
            .filter(|&v| v != Variant::Bare)
            .collect();
        let measure_one = |variant: Variant, round: usize, bare: Option<&Row>| {
            if stop.load(Ordering::Relaxed) {
                bail!("interrupted; the lab is torn down");
            }
            eprintln!(
                "measuring {} with {flows} flows (round {round} of {}) ...",
                variant.label(),
                o.repeat
            );
            let mut row = measure(
                &lab,
                &o,
                &sink,
                variant,
                flows,
                bare.map(|b| b.delivered_mpps),
                &stop,
            )
            .with_context(|| format!("{} with {flows} flows", variant.label()))?;
            if let Some(b) = bare {
                row.ratio = row.delivered_mpps / b.delivered_mpps.max(f64::MIN_POSITIVE);
            }
            eprintln!(
                "  {:.3} Mpps delivered (offered {:.2}, {:.2} × the (a) before it), loss at 80 % {:.2} %, p50 {:.1} µs, p99 {:.1} µs",
                row.delivered_mpps,
                row.offered_mpps,
                row.ratio,
                row.loss_at_80,
                row.p50_us,
                row.p99_us
            );
            Ok(row)
        };
        for round in 1..=o.repeat {
            let mut measured = Vec::new();
            // (a) right before each other row (once when it is the only row).
            if others.is_empty() {
                bare_rounds.push(measure_one(Variant::Bare, round, None)?);
            }
            for &variant in &others {
                let bare = measure_one(Variant::Bare, round, None)?;
                bare_rounds.push(bare);
                measured.push(measure_one(variant, round, Some(&bare))?);
            }
            rounds.push(measured);
        }
        rows.push(median_row(bare_rounds.into_iter()));
        rows.extend((0..others.len()).map(|i| median_row(rounds.iter().map(|r| r[i]))));
    }
    let table = render(&o, lab.source, &rows);
    print!("{table}");
    if o.append {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/RESULTS.md");
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push('\n');
        text.push_str(&table);
        std::fs::write(&path, text).with_context(|| format!("appending to {}", path.display()))?;
        eprintln!("appended to {}", path.display());
    }
    Ok(())
}

/// Measures one variant: flat out, then at 80 % of the bare forwarder's rate.
fn measure(
    lab: &Lab,
    o: &Options,
    sink: &Sink,
    variant: Variant,
    flows: u32,
    bare_mpps: Option<f64>,
    stop: &AtomicBool,
) -> Result<Row> {
    let forwarder = lab.start(variant, o)?;
    let generator = lab.generator(flows, o.size)?;
    let duration = Duration::from_secs_f64(o.seconds);
    // Warm-up: every flow's connection created (each flow twice), neighbours
    // resolved, caches warm — so that the flat-out phase measures established
    // flows in every row. From the smooth source, which every kernel allows, at
    // a rate every forwarder keeps up with.
    let warm_up = (2 * u64::from(flows)).max(20_000);
    generator.send(
        Source::Xsk,
        Pace::Rate(WARM_UP_RATE),
        warm_up,
        Duration::from_secs_f64(warm_up as f64 / WARM_UP_RATE as f64 + 0.5),
    )?;
    sink.settle(Duration::from_millis(200), Duration::from_secs(2))?;

    let before = sink.read()?;
    let flat = generator.send(lab.source, Pace::FlatOut, u64::MAX, duration)?;
    sink.settle(Duration::from_millis(200), Duration::from_secs(3))?;
    let after = sink.read()?;
    let delivered = after.delivered - before.delivered;
    let delivered_mpps = delivered as f64 / flat.elapsed.as_secs_f64() / 1e6;
    if stop.load(Ordering::Relaxed) {
        bail!("interrupted");
    }

    // Loss and latency at 80 % of the bare forwarder's rate, from a smooth
    // source: live frames come in bursts (each BPF_PROG_RUN call has a fixed
    // cost of tens of ms), which would measure ring overflow, not the path.
    let target = bare_mpps.unwrap_or(delivered_mpps) * 0.8;
    let before = sink.read()?;
    let sent = generator
        .send(
            Source::Xsk,
            Pace::Rate((target * 1e6).max(1.0) as u64),
            u64::MAX,
            duration,
        )?
        .frames;
    sink.settle(Duration::from_millis(200), Duration::from_secs(3))?;
    let after = sink.read()?;
    let got = after.delivered - before.delivered;
    let loss = if sent == 0 {
        0.0
    } else {
        100.0 * (sent.saturating_sub(got)) as f64 / sent as f64
    };
    let buckets: Vec<u64> = after
        .buckets
        .iter()
        .zip(&before.buckets)
        .map(|(a, b)| a - b)
        .collect();
    drop(forwarder);
    Ok(Row {
        variant,
        flows,
        offered_mpps: flat.pps() / 1e6,
        delivered_mpps,
        ratio: 1.0,
        loss_at_80: loss,
        p50_us: quantile(&buckets, 0.50) as f64 / 1e3,
        p99_us: quantile(&buckets, 0.99) as f64 / 1e3,
    })
}

/// Each figure's median over the rounds of one row (the upper one of an even count).
fn median_row(rounds: impl Iterator<Item = Row>) -> Row {
    let rounds: Vec<Row> = rounds.collect();
    let median = |f: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Row {
        offered_mpps: median(|r| r.offered_mpps),
        delivered_mpps: median(|r| r.delivered_mpps),
        ratio: median(|r| r.ratio),
        loss_at_80: median(|r| r.loss_at_80),
        p50_us: median(|r| r.p50_us),
        p99_us: median(|r| r.p99_us),
        ..rounds[0]
    }
}

/// Quantile `q` of a bucket histogram, in ns (bucket midpoints).
fn quantile(buckets: &[u64], q: f64) -> u64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0;
    }
    let want = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (b, &n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= want {
            return bucket_value(b as u32).unwrap_or(u64::MAX);
        }
    }
    0
}

fn render(o: &Options, lab_source: Source, rows: &[Row]) -> String {
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    let (sink_flag, sink_label) = match o.sink {
        SinkAttach::TcIngress => (" --sink tc", "tc-ingress"),
        SinkAttach::Xdp(_) => ("", "XDP"),
    };
    let mut t = String::new();
    let _ = writeln!(
        t,
        "## Side-by-side forwarding run ({date}, commit `{commit}`)\n\nCommand: `scripts/sidebyside.sh --seconds {} --size {} --flows {}{}` — {}-byte UDP frames, generator ({}) on cpu 0, forwarder on cpu 1, sink = {} counter on the far veth. (a) is measured again right before every other row: each row's ratio, and its loss and latency at 80 %, are against that (a) (this VM's speed drifts within minutes).{}\n",
        o.seconds,
        o.size,
        o.flows
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        if o.rows.len() == Variant::ALL.len() {
            String::new()
        } else {
            format!(
                " --rows {}",
                o.rows.iter().map(|v| v.letter()).collect::<String>()
            )
        } + &if o.repeat == DEFAULT_REPEAT {
            String::new()
        } else {
            format!(" --repeat {}", o.repeat)
        } + &if o.flow_cache == DEFAULT_FLOW_CACHE {
            String::new()
        } else {
            format!(" --flow-cache {}", o.flow_cache)
        } + sink_flag,
        o.size,
        lab_source.label(),
        sink_label,
        if o.repeat > 1 {
            format!(
                " Every row measured {} times (rounds interleaved); each figure, ratios included, is the median.",
                o.repeat
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        t,
        "| path | flows | offered Mpps | delivered Mpps | ratio to (a) | loss % at 80 % of (a) | p50 µs | p99 µs |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {:.2} | {:.3} | {:.2} | {:.2} | {:.1} | {:.1} |",
            r.variant.label(),
            r.flows,
            r.offered_mpps,
            r.delivered_mpps,
            r.ratio,
            r.loss_at_80,
            r.p50_us,
            r.p99_us
        );
    }
    for &flows in &o.flows {
        // Through the paired ratios to (a): drift between rows cancels.
        let get = |v: Variant| {
            rows.iter()
                .find(|r| r.flows == flows && r.variant == v)
                .map(|r| r.ratio.max(f64::MIN_POSITIVE))
        };
        let ratio = |a: Variant, b: Variant| match (get(a), get(b)) {
            (Some(x), Some(y)) => format!("{:.2}", x / y),
            _ => "—".to_owned(),
        };
        let (nat, dr, bare, nft) = (
            Variant::XvsNat,
            Variant::XvsDr,
            Variant::Bare,
            Variant::Nftables,
        );
        let _ = writeln!(
            t,
            "\n{flows} flows: NAT / bare = {}, DR / bare = {} (target ≥ 0.9); NAT / nftables = {}, DR / nftables = {} (target ≥ {})",
            ratio(nat, bare),
            ratio(dr, bare),
            ratio(nat, nft),
            ratio(dr, nft),
            if flows >= 65535 { "1.5" } else { "1.25" }
        );
    }
    t
}

// ---------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------

/// The three namespaces; deleted on drop.
struct Lab {
    prefix: String,
    dir: PathBuf,
    ext_mac: [u8; 6],
    g0_mac: [u8; 6],
    int_mac: [u8; 6],
    s0_mac: [u8; 6],
    /// The flat-out generator (live frames unless the kernel refuses them).
    source: Source,
}

fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("{args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn mac_of(ns: &str, iface: &str) -> Result<[u8; 6]> {
    let text = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "cat",
        &format!("/sys/class/net/{iface}/address"),
    ])?;
    let bytes: Vec<u8> = text
        .trim()
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .context("MAC address")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("MAC of {iface}: {text}"))
}

/// Runs `f` on a thread inside namespace `ns`, pinned to `cpu`.
fn in_ns<T: Send + 'static>(
    ns: &str,
    cpu: usize,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        xvs_io::sys::enter_netns(&ns).with_context(|| format!("entering {ns}"))?;
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("a lab thread panicked"))?
}

impl Lab {
    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn build() -> Result<Lab> {
        let prefix = format!("xvsbench{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            prefix,
            dir,
            ext_mac: [0; 6],
            g0_mac: [0; 6],
            int_mac: [0; 6],
            s0_mac: [0; 6],
            source: Source::LiveFrames,
        };
        for short in ["gen", "dir", "sink"] {
            sh(&["ip", "netns", "add", &lab.ns(short)])?;
        }
        let (g, d, s) = (lab.ns("gen"), lab.ns("dir"), lab.ns("sink"));
        sh(&[
            "ip", "link", "add", "g0", "netns", &g, "type", "veth", "peer", "name", "ext", "netns",
            &d,
        ])?;
        sh(&[
            "ip", "link", "add", "int", "netns", &d, "type", "veth", "peer", "name", "s0", "netns",
            &s,
        ])?;
        let cmds: [(&str, &str); 15] = [
            (&g, "link set lo up"),
            (&g, "link set g0 up"),
            // The recirculating generator's loop (used where live frames are refused).
            (&g, "link add r0 type veth peer name r1"),
            (&g, "link set r0 up"),
            (&g, "link set r1 up"),
            (&g, "addr add 198.18.0.10/24 dev g0"),
            (&d, "link set lo up"),
            (&d, "link set ext up"),
            (&d, "link set int up"),
            (&d, "addr add 198.18.0.1/24 dev ext"),
            (&d, "addr add 198.19.0.1/24 dev int"),
            (&s, "link set lo up"),
            (&s, "link set s0 up"),
            (&s, "addr add 198.19.0.10/24 dev s0"),
            (&s, "addr add 198.19.0.11/24 dev s0"),
        ];
        for (ns, cmd) in cmds {
            let mut args = vec!["ip", "netns", "exec", ns, "ip"];
            args.extend(cmd.split_whitespace());
            sh(&args)?;
        }
        // The kernel's share of the work (nftables, AF_PACKET taps) on cpu 1,
        // like the forwarders: frames the generator hands to `ext` would
        // otherwise be processed on its own cpu 0.
        sh(&[
            "ip",
            "netns",
            "exec",
            &d,
            "sh",
            "-c",
            "echo 2 > /sys/class/net/ext/queues/rx-0/rps_cpus",
        ])?;
        lab.ext_mac = mac_of(&d, "ext")?;
        lab.int_mac = mac_of(&d, "int")?;
        lab.g0_mac = mac_of(&g, "g0")?;
        lab.s0_mac = mac_of(&s, "s0")?;
        Ok(lab)
    }

    /// The sink on `s0`, counting up to `flows` flows.
    fn sink(&self, flows: u32, attach: SinkAttach) -> Result<Sink> {
        in_ns(&self.ns("sink"), 0, move || {
            let index = xvs_io::sys::if_index("s0")?;
            Ok(Sink::attach(
                index,
                SinkOptions {
                    flows,
                    max_dests: 16,
                    attach,
                },
            )?)
        })
    }

    /// A generator on `g0` for `flows` flows of `size`-byte UDP frames to the VIP.
    fn generator(&self, flows: u32, size: usize) -> Result<GenHandle> {
        Ok(GenHandle {
            ns: self.ns("gen"),
            config: GeneratorConfig {
                template: TemplateSpec {
                    proto: Proto::Udp,
                    src_mac: self.g0_mac,
                    dst_mac: self.ext_mac,
                    src: CLIENT,
                    dst: VIP,
                    // Flow i uses base + i; keep the range inside 1..=65535.
                    base_src_port: u16::try_from(65536 - flows.min(65535)).unwrap_or(1),
                    dst_port: PORT,
                    frame_len: size,
                },
                flows,
                ifindex: 0,
                batch_size: 0,
            },
        })
    }

    /// Starts the forwarder of `variant` in the director's namespace.
    fn start(&self, variant: Variant, o: &Options) -> Result<Forwarder> {
        let d = self.ns("dir");
        match variant {
            Variant::Bare => {
                let stop = Arc::new(AtomicBool::new(false));
                let (ready_tx, ready) = std::sync::mpsc::channel();
                let (int_mac, s0_mac) = (self.int_mac, self.s0_mac);
                let flag = stop.clone();
                let ns = d.clone();
                let thread = std::thread::spawn(move || -> Result<()> {
                    xvs_io::sys::enter_netns(&ns)?;
                    core_affinity::set_for_current(core_affinity::CoreId { id: 1 });
                    bare_forwarder(&flag, int_mac, s0_mac, &ready_tx)
                });
                ready
                    .recv_timeout(Duration::from_secs(5))
                    .context("the bare forwarder did not start")?;
                Ok(Forwarder::Thread(stop, Some(thread)))
            }
            Variant::XvsNat | Variant::XvsDr | Variant::XvsAfPacket => {
                let (io, method) = match variant {
                    Variant::XvsNat => ("xdp_mode: native", "nat"),
                    Variant::XvsDr => ("xdp_mode: native", "dr"),
                    _ => ("backend: af_packet", "nat"),
                };
                let port = if method == "nat" {
                    format!(", port: {PORT}")
                } else {
                    String::new()
                };
                let config = format!(
                    "director:\n  interfaces: [ext, int]\n  {io}\n  cores: [1]\n  control_socket: {sock}\n  tables: {{connections: 262144, persistence: 1024, shards: 64, flow_cache: {flow_cache}}}\nservices:\n  - name: bench\n    protocol: udp\n    vip: {VIP}\n    port: {PORT}\n    scheduler: rr\n    method: {method}\n    real_servers:\n      - {{address: {}{port}}}\n      - {{address: {}{port}}}\n",
                    SERVERS[0],
                    SERVERS[1],
                    sock = self.dir.join("xvs.sock").display(),
                    flow_cache = o.flow_cache,
                );
                let path = self.dir.join("xvs.yaml");
                std::fs::write(&path, config)?;
                // AF_PACKET mode has no XDP program on ext, but the generator's
                // frames need one there (or GRO) to be received: a pass-all one.
                let pass = if variant == Variant::XvsAfPacket {
                    Some(self.pass_program()?)
                } else {
                    None
                };
                let err = self.dir.join("xvs.err");
                let child = Command::new("ip")
                    .args(["netns", "exec", &d])
                    .arg(&o.xvs)
                    .args(["run", "-c"])
                    .arg(&path)
                    .env("XVS_LOG", "info")
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&err)?)
                    .spawn()
                    .context("starting xvs")?;
                let mut fwd = Forwarder::Process { child, _pass: pass };
                let start = Instant::now();
                loop {
                    let log = std::fs::read_to_string(&err).unwrap_or_default();
                    if log.contains("next hops resolved") {
                        break;
                    }
                    if let Forwarder::Process { child: c, .. } = &mut fwd
                        && let Ok(Some(status)) = c.try_wait()
                    {
                        bail!("xvs exited ({status}):\n{log}");
                    }
                    if start.elapsed() > Duration::from_secs(10) {
                        bail!("xvs did not resolve its real servers within 10 s:\n{log}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(fwd)
            }
            Variant::Nftables => {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &d,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ])?;
                let rules = format!(
                    "table ip lb {{\n  chain pre {{ type nat hook prerouting priority dstnat;\n    ip daddr {VIP} udp dport {PORT} dnat to numgen inc mod 2 map {{ 0 : {}, 1 : {} }}\n  }}\n}}\n",
                    SERVERS[0], SERVERS[1]
                );
                let path = self.dir.join("lb.nft");
                std::fs::write(&path, rules)?;
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &d,
                    "nft",
                    "-f",
                    &path.to_string_lossy(),
                ])?;
                let pass = self.pass_program()?;
                Ok(Forwarder::Nftables { ns: d, _pass: pass })
            }
        }
    }

    /// A steering program with no VIPs attached to `ext`: passes everything,
    /// which lets XDP-injected frames be received there.
    fn pass_program(&self) -> Result<PassAll> {
        in_ns(&self.ns("dir"), 0, || {
            let prog = SteeringProgram::load(&[], &[])?;
            let link = prog.attach(xvs_io::sys::if_index("ext")?, XdpMode::Native)?;
            Ok((prog, link))
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for short in ["gen", "dir", "sink"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(short)])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The generator, created and run on a thread in the generator's namespace
/// pinned to cpu 0 (it needs `g0` by index there).
struct GenHandle {
    ns: String,
    config: GeneratorConfig,
}

impl GenHandle {
    /// Sends up to `count` frames at `pace` for at most `duration` from `source`
    /// (the AF_XDP one: smooth, up to about 1 Mpps).
    fn send(&self, source: Source, pace: Pace, count: u64, duration: Duration) -> Result<Sent> {
        let mut config = self.config.clone();
        in_ns(&self.ns, 0, move || match source {
            Source::LiveFrames => {
                config.ifindex = xvs_io::sys::if_index("g0")?;
                let run = Generator::new(config)?.run(pace, count, duration)?;
                Ok(Sent {
                    frames: run.sent,
                    elapsed: run.elapsed,
                })
            }
            Source::Recirc => {
                if pace != Pace::FlatOut {
                    bail!("the recirculating loop runs flat out only");
                }
                let run = Recirculator::attach(RecirculatorConfig {
                    template: config.template,
                    flows: config.flows,
                    out_ifindex: xvs_io::sys::if_index("g0")?,
                    loop_a: "r0".into(),
                    loop_b: "r1".into(),
                })?
                .run(count, duration)?;
                Ok(Sent {
                    frames: run.sent,
                    elapsed: run.elapsed,
                })
            }
            Source::Xsk => {
                let start = Instant::now();
                let frames = xvs_pktgen::xsk_gen::send(
                    "g0",
                    &config.template,
                    config.flows,
                    pace,
                    count,
                    duration,
                )?;
                Ok(Sent {
                    frames,
                    elapsed: start.elapsed(),
                })
            }
        })
    }
}

/// A pass-all XDP program attached to `ext` (held only to stay attached).
type PassAll = (SteeringProgram, xvs_io::steer::SteerLink);

/// A running forwarder; stopped on drop.
enum Forwarder {
    Thread(Arc<AtomicBool>, Option<std::thread::JoinHandle<Result<()>>>),
    /// `xvs run`, and the pass-all program its AF_PACKET mode needs on `ext`.
    Process {
        child: Child,
        _pass: Option<PassAll>,
    },
    /// The nftables table in namespace `ns`, and the pass-all program.
    Nftables {
        ns: String,
        _pass: PassAll,
    },
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        match self {
            Forwarder::Thread(stop, thread) => {
                stop.store(true, Ordering::Relaxed);
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Forwarder::Process { child, .. } => {
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .output();
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(5) {
                    if let Ok(Some(_)) = child.try_wait() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
            Forwarder::Nftables { ns, .. } => {
                let _ = Command::new("ip")
                    .args(["netns", "exec", ns, "nft", "delete", "table", "ip", "lb"])
                    .output();
                let _ = Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        "net.ipv4.ip_forward=0",
                    ])
                    .output();
            }
        }
    }
}

/// (a): AF_XDP rx on `ext`, MACs rewritten, tx on `int` — no decision at all.
fn bare_forwarder(
    stop: &AtomicBool,
    int_mac: [u8; 6],
    s0_mac: [u8; 6],
    ready: &std::sync::mpsc::Sender<()>,
) -> Result<()> {
    let ext = xvs_io::sys::if_index("ext")?;
    let prog = SteeringProgram::load(&[VIP.into()], &[])?;
    let _link = prog.attach(ext, XdpMode::Native)?;
    let mut ports = PortSet::open(&["ext", "int"], 0, XskConfig::default())?;
    prog.set_socket(0, ports.fd(0))?;
    let _ = ready.send(());
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let n = ports.poll(64, |_, frame| {
            frame[0..6].copy_from_slice(&s0_mac);
            frame[6..12].copy_from_slice(&int_mac);
            Fate::Out(1)
        })?;
        if n == 0 {
            idle += 1;
            if idle > 256 {
                ports.wait(10)?;
            }
        } else {
            idle = 0;
        }
    }
    ports.drain_tx(Instant::now() + Duration::from_millis(200));
    Ok(())
}
