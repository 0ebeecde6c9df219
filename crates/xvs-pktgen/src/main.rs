//! `xvs-pktgen` — the packet generator's command line.
//!
//! - `xvs-pktgen selftest [--secs S] [--flows N] [--size BYTES] [--proto udp|tcp]
//!   [--rate PPS] [--batch N] [--cpu C]` builds a private lab (this process's worker
//!   thread in its own network namespace, veth `g0` → `s0`, no director),
//!   attaches the sink to `s0`, runs the generator on `g0` (with `--recirc`:
//!   the recirculating loop `r0 ══ r1`, flat out) and prints sent,
//!   delivered, Mpps, loss, the per-flow spread and latency percentiles.
//!   Addresses are from 198.18.0.0/15 and nothing leaves the namespace.
//! - `xvs-pktgen gen --dev IF --dst-mac MAC --src ADDR --dst ADDR [--dport P]
//!   [--sport P] [--flows N] [--size BYTES] [--proto udp|tcp] [--secs S]
//!   [--count N] [--rate PPS] [--batch N] [--cpu C]` sends from interface IF of the
//!   current namespace (run it under `ip netns exec`), flat out or paced.
//! - `xvs-pktgen sink --dev IF [--flows N] [--secs S] [--generic | --tc]` attaches
//!   the sink to IF (native XDP, generic XDP or tc ingress) for S seconds and
//!   prints what it counted.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use xvs_io::steer::XdpMode;
use xvs_pktgen::lab::{self, GEN_MAC, SINK_MAC, VethLab};
use xvs_pktgen::{
    Generator, GeneratorConfig, Pace, Proto, Recirculator, RecirculatorConfig, Sink, SinkAttach,
    SinkOptions, SinkReport, TemplateSpec,
};

const USAGE: &str = "usage:
  xvs-pktgen selftest [--secs S] [--flows N] [--size BYTES] [--proto udp|tcp] [--rate PPS] [--batch N] [--cpu C]
                      [--recirc]   (send from the recirculating veth loop instead of live frames: flat out only)
  xvs-pktgen gen --dev IF --dst-mac MAC --src ADDR --dst ADDR [--dport P] [--sport P] [--flows N]
                 [--size BYTES] [--proto udp|tcp] [--secs S] [--count N] [--rate PPS] [--batch N] [--cpu C]
                 [--xsk]   (send through an AF_XDP socket instead: smooth, paced or flat out, ≈ 1–1.5 Mpps)
  xvs-pktgen sink --dev IF [--flows N] [--secs S] [--generic | --tc]";

/// `--flag value` pairs (and bare `--generic`, `--tc`, `--xsk`, `--recirc`).
fn options(args: &[String]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        if !flag.starts_with("--") {
            bail!("unexpected argument {flag}\n{USAGE}");
        }
        if ["--generic", "--tc", "--xsk", "--recirc"].contains(&flag.as_str()) {
            out.insert(flag.clone(), String::new());
            continue;
        }
        let val = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        out.insert(flag.clone(), val.clone());
    }
    Ok(out)
}

fn take<T: std::str::FromStr>(
    o: &mut BTreeMap<String, String>,
    flag: &str,
    default: Option<T>,
) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match o.remove(flag) {
        Some(v) => v.parse().with_context(|| format!("{flag} {v}")),
        None => default.with_context(|| format!("{flag} is required\n{USAGE}")),
    }
}

fn no_more(o: &BTreeMap<String, String>) -> Result<()> {
    match o.keys().next() {
        Some(k) => bail!("unknown option {k}\n{USAGE}"),
        None => Ok(()),
    }
}

fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() != 6 {
        bail!("MAC address {s:?}: want xx:xx:xx:xx:xx:xx");
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16).with_context(|| format!("MAC address {s:?}"))?;
    }
    Ok(mac)
}

fn secs(v: f64) -> Result<Duration> {
    if !(v > 0.0 && v <= 3600.0) {
        bail!("--secs must be in (0, 3600]");
    }
    Ok(Duration::from_secs_f64(v))
}

#[derive(Debug, Clone)]
struct SelftestArgs {
    secs: f64,
    flows: u32,
    size: usize,
    proto: Proto,
    rate: Option<u64>,
    batch: u32,
    cpu: Option<usize>,
    /// Send with the recirculating loop instead of live frames.
    recirc: bool,
}

/// Pins the calling thread to `cpu` (the generator's CPU: the kernel sends on
/// the calling thread's CPU, and a veth peer's XDP runs there too).
fn pin(cpu: Option<usize>) -> Result<()> {
    match cpu {
        Some(id) if !core_affinity::set_for_current(core_affinity::CoreId { id }) => {
            bail!("cannot pin to cpu {id}")
        }
        _ => Ok(()),
    }
}

fn parse(args: &[String]) -> Result<SelftestArgs> {
    let mut o = options(args)?;
    let a = SelftestArgs {
        secs: take(&mut o, "--secs", Some(2.0))?,
        flows: take(&mut o, "--flows", Some(1024))?,
        size: take(&mut o, "--size", Some(64))?,
        proto: take(&mut o, "--proto", Some(Proto::Udp))?,
        rate: o
            .remove("--rate")
            .map(|v| v.parse())
            .transpose()
            .context("--rate")?,
        batch: take(&mut o, "--batch", Some(0))?,
        cpu: o
            .remove("--cpu")
            .map(|v| v.parse())
            .transpose()
            .context("--cpu")?,
        recirc: o.remove("--recirc").is_some(),
    };
    no_more(&o)?;
    secs(a.secs)?;
    if a.recirc && a.rate.is_some() {
        bail!("--recirc runs flat out only (no --rate)");
    }
    Ok(a)
}

fn gen_cmd(args: &[String]) -> Result<()> {
    let mut o = options(args)?;
    let dev: String = take(&mut o, "--dev", None)?;
    let ifindex = xvs_io::sys::if_index(&dev).with_context(|| format!("interface {dev}"))?;
    let src_mac = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
        .map_err(anyhow::Error::from)
        .and_then(|m| parse_mac(&m))
        .with_context(|| format!("MAC address of {dev}"))?;
    let dst_mac = parse_mac(&take::<String>(&mut o, "--dst-mac", None)?)?;
    let flows = take(&mut o, "--flows", Some(1024))?;
    let template = TemplateSpec {
        proto: take(&mut o, "--proto", Some(Proto::Udp))?,
        src_mac,
        dst_mac,
        src: take(&mut o, "--src", None)?,
        dst: take(&mut o, "--dst", None)?,
        base_src_port: take(&mut o, "--sport", Some(10000))?,
        dst_port: take(&mut o, "--dport", Some(9))?,
        frame_len: take(&mut o, "--size", Some(64))?,
    };
    let duration = secs(take(&mut o, "--secs", Some(2.0))?)?;
    let count = take(&mut o, "--count", Some(u64::MAX))?;
    let rate: Option<u64> = o
        .remove("--rate")
        .map(|v| v.parse())
        .transpose()
        .context("--rate")?;
    let batch_size = take(&mut o, "--batch", Some(0))?;
    let cpu: Option<usize> = o
        .remove("--cpu")
        .map(|v| v.parse())
        .transpose()
        .context("--cpu")?;
    let xsk = o.remove("--xsk").is_some();
    no_more(&o)?;
    pin(cpu)?;
    let pace = rate.map_or(Pace::FlatOut, Pace::Rate);
    if xsk {
        let start = std::time::Instant::now();
        let sent = xvs_pktgen::xsk_gen::send(&dev, &template, flows, pace, count, duration)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "sent {sent} frames through AF_XDP in {secs:.3} s: {:.3} Mpps",
            sent as f64 / secs / 1e6
        );
        return Ok(());
    }
    let generator = Generator::new(GeneratorConfig {
        template,
        flows,
        ifindex,
        batch_size,
    })?;
    let run = generator.run(pace, count, duration)?;
    println!("{run}");
    Ok(())
}

fn sink_cmd(args: &[String]) -> Result<()> {
    let mut o = options(args)?;
    let dev: String = take(&mut o, "--dev", None)?;
    let ifindex = xvs_io::sys::if_index(&dev).with_context(|| format!("interface {dev}"))?;
    let flows = take(&mut o, "--flows", Some(1024))?;
    let duration = secs(take(&mut o, "--secs", Some(10.0))?)?;
    let attach = if o.remove("--tc").is_some() {
        SinkAttach::TcIngress
    } else if o.remove("--generic").is_some() {
        SinkAttach::Xdp(XdpMode::Generic)
    } else {
        SinkAttach::Xdp(XdpMode::Native)
    };
    no_more(&o)?;
    let sink = Sink::attach(
        ifindex,
        SinkOptions {
            flows,
            attach,
            ..SinkOptions::default()
        },
    )?;
    std::thread::sleep(duration);
    let r = sink.read()?;
    println!(
        "delivered {} ({:.3} Mpps over {:.1} s), passed {}, per destination {:?}",
        r.delivered,
        r.delivered as f64 / duration.as_secs_f64() / 1e6,
        duration.as_secs_f64(),
        r.passed,
        r.per_dest
    );
    print_flows_and_latency(&r, flows);
    Ok(())
}

fn print_flows_and_latency(r: &SinkReport, flows: u32) {
    let (fmin, fmax) = r.flow_spread();
    println!(
        "flows: {}/{} seen, per flow min {} max {} (max/min {:.3})",
        r.flows_seen(),
        flows,
        fmin,
        fmax,
        if fmin > 0 {
            fmax as f64 / fmin as f64
        } else {
            f64::INFINITY
        }
    );
    println!(
        "latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us (overflow {})",
        r.latency_ns(0.5) as f64 / 1e3,
        r.latency_ns(0.99) as f64 / 1e3,
        r.latency_ns(0.999) as f64 / 1e3,
        r.latency.max() as f64 / 1e3,
        r.latency_overflow
    );
}

fn selftest(a: SelftestArgs) -> Result<()> {
    let lab = VethLab::create("g0", "s0").context("building the lab (needs root)")?;
    let sink = Sink::attach(
        lab.sink_ifindex,
        SinkOptions {
            flows: a.flows,
            ..SinkOptions::default()
        },
    )?;
    let template = TemplateSpec {
        proto: a.proto,
        src_mac: GEN_MAC,
        dst_mac: SINK_MAC,
        src: Ipv4Addr::new(198, 18, 0, 1),
        dst: Ipv4Addr::new(198, 18, 1, 1),
        base_src_port: 10000,
        dst_port: 9,
        frame_len: a.size,
    };
    let describe = |generator: String| {
        println!(
            "lab: {} -> {} (private netns); {:?} {} B, {} flows, {}",
            lab.gen_if,
            lab.sink_if,
            a.proto,
            a.size,
            a.flows,
            match a.rate {
                Some(r) => format!("rate {r} pps"),
                None => "flat out".to_owned(),
            }
        );
        println!(
            "programs: {generator}, sink {} insns ({})",
            sink.insn_count(),
            sink.verifier_stats().replace('\n', "; ")
        );
    };
    let run = if a.recirc {
        lab.add_loop("r0", "r1").context("the recirculating loop")?;
        let recirculator = Recirculator::attach(RecirculatorConfig {
            template,
            flows: a.flows,
            out_ifindex: lab.gen_ifindex,
            loop_a: "r0".into(),
            loop_b: "r1".into(),
        })?;
        describe("recirculator on the loop r0 ══ r1".into());
        pin(a.cpu)?;
        recirculator.run(u64::MAX, Duration::from_secs_f64(a.secs))?
    } else {
        let generator = Generator::new(GeneratorConfig {
            template,
            flows: a.flows,
            ifindex: lab.gen_ifindex,
            batch_size: a.batch,
        })?;
        describe(format!(
            "generator {} insns ({})",
            generator.insn_count(),
            generator.verifier_stats().replace('\n', "; ")
        ));
        pin(a.cpu)?;
        let pace = a.rate.map_or(Pace::FlatOut, Pace::Rate);
        generator.run(pace, u64::MAX, Duration::from_secs_f64(a.secs))?
    };
    sink.settle(Duration::from_millis(50), Duration::from_secs(1))?;
    let r = sink.read()?;
    let loss = if run.sent > 0 {
        100.0 * run.sent.saturating_sub(r.delivered) as f64 / run.sent as f64
    } else {
        0.0
    };
    println!("{run}");
    println!(
        "delivered {} ({:.3} Mpps over the send time), lost {} ({:.3} %), passed {}, per destination {:?}",
        r.delivered,
        r.delivered as f64 / run.elapsed.as_secs_f64() / 1e6,
        run.sent.saturating_sub(r.delivered),
        loss,
        r.passed,
        r.per_dest
    );
    print_flows_and_latency(&r, a.flows);
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("selftest") => {
            let a = parse(&args[1..])?;
            lab::run_in_private_netns(move || selftest(a))
        }
        Some("help" | "--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some("gen") => gen_cmd(&args[1..]),
        Some("sink") => sink_cmd(&args[1..]),
        Some(other) => bail!("unknown command {other}\n{USAGE}"),
    }
}
