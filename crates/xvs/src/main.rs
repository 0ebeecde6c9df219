//! `xvs` — the director binary. Layer: binary (argument parsing, threads, output).
//!
//! - `xvs run -c FILE`: the director on AF_XDP sockets ([`run`], [`worker`]);
//! - `xvs check -c FILE`: validate a configuration, like `keepalived -t`;
//! - `xvs list|zero|drain|undrain|weight|reload`: requests to a running director
//!   over its control socket ([`ctl`]);
//! - `xvs demo`: the decision engine over the built-in example lab, no sockets.
//!
//! Exit codes: 0 success, 2 a configuration was rejected or the command line is
//! wrong, 1 any other failure (missing interface, privileges, XDP already attached).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use xvs_io::sys::hugealloc::HugePageAlloc;

mod control;
mod ctl;
mod demo;
mod health;
mod listing;
mod netview;
mod run;
mod steering;
mod worker;

/// Large allocations (the shared connection and persistence tables) on transparent
/// huge pages: fewer TLB misses per lookup in tables of millions of entries.
#[global_allocator]
static ALLOC: HugePageAlloc = HugePageAlloc;

const USAGE: &str = "usage: xvs run -c FILE        run the director on the configuration in FILE
       xvs check -c FILE      validate FILE and exit (0 valid, 2 invalid)
       xvs list [--stats|--rate|-c|--persistent|--checks]   services, servers, connections (ipvsadm -Ln), checks
       xvs zero                          reset the counters
       xvs drain SERVICE SERVER          no new flows to SERVER (ADDR[:PORT]); established ones go on
       xvs undrain SERVICE SERVER
       xvs weight SERVICE SERVER N       set the weight (0..=65535) at runtime
       xvs reload                        read the configuration again (exit 2 if it is rejected)
         (these talk to the running director: -S SOCKET, or --config FILE for its
          control_socket, else $XVS_SOCKET, else /run/xvs/xvs.sock)
       xvs demo [--clients N] run the decision engine over the built-in example lab
       xvs --version";

/// A configuration (or command line) that was rejected: exit code 2.
#[derive(Debug)]
pub struct ConfigRejected(pub xvs_config::ConfigError);

impl std::fmt::Display for ConfigRejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ConfigRejected {}

/// A bad command line: exit code 2.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{USAGE}", self.0)
    }
}

impl std::error::Error for Usage {}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("XVS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xvs: {e:#}");
            if e.is::<ConfigRejected>() || e.is::<Usage>() || e.is::<Rejected>() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn config_arg(args: &[String]) -> Result<PathBuf> {
    match args {
        [flag, file] if flag == "-c" || flag == "--config" => Ok(PathBuf::from(file)),
        _ => Err(Usage(format!("expected -c FILE, got {args:?}")).into()),
    }
}

/// Splits `-S SOCKET` / `--config FILE` off `args`; the socket to talk to.
fn socket_arg(args: &[String]) -> Result<(PathBuf, Vec<String>)> {
    let mut socket = std::env::var_os("XVS_SOCKET").map(PathBuf::from);
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-S" | "--socket" => {
                let p = it.next().ok_or_else(|| Usage("-S takes a path".into()))?;
                socket = Some(PathBuf::from(p));
            }
            "--config" => {
                let f = it
                    .next()
                    .ok_or_else(|| Usage("--config takes a file".into()))?;
                let config = xvs_config::load(std::path::Path::new(f)).map_err(ConfigRejected)?;
                socket = Some(
                    config
                        .director
                        .control_socket
                        .unwrap_or_else(|| PathBuf::from(ctl::DEFAULT_SOCKET)),
                );
            }
            _ => rest.push(a.clone()),
        }
    }
    Ok((
        socket.unwrap_or_else(|| PathBuf::from(ctl::DEFAULT_SOCKET)),
        rest,
    ))
}

/// A request to the running director; its answer on stdout.
fn remote(command: &str, args: &[String]) -> Result<()> {
    let (socket, rest) = socket_arg(args)?;
    let arity_ok = match command {
        "list" => rest.len() <= 1,
        "zero" | "reload" => rest.is_empty(),
        "drain" | "undrain" => rest.len() == 2,
        "weight" => rest.len() == 3,
        _ => false,
    };
    if !arity_ok {
        return Err(Usage(format!("wrong arguments for {command}: {rest:?}")).into());
    }
    let mut words = vec![command.to_owned()];
    words.extend(rest);
    match ctl::request(&socket, &words) {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(e) if command == "reload" => Err(Rejected(format!("{e:#}")).into()),
        Err(e) => Err(e),
    }
}

/// A reload the director rejected: exit code 2.
#[derive(Debug)]
struct Rejected(String);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "reload rejected, the running configuration keeps serving: {}",
            self.0
        )
    }
}

impl std::error::Error for Rejected {}

fn dispatch(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some(cmd @ ("list" | "zero" | "drain" | "undrain" | "weight" | "reload")) => {
            remote(cmd, &args[1..])
        }
        Some("run") => run::run(&config_arg(&args[1..])?),
        Some("check") => {
            let path = config_arg(&args[1..])?;
            let config = xvs_config::load(&path).map_err(ConfigRejected)?;
            println!(
                "{}: ok ({} services, {} mark rules)",
                path.display(),
                config.services.len(),
                config.rules.len()
            );
            Ok(())
        }
        Some("demo") => {
            let clients = match args.get(1..) {
                Some([flag, n]) if flag == "--clients" => {
                    n.parse().context("--clients takes a number")?
                }
                Some([]) | None => 200,
                Some(other) => bail!(Usage(format!("unexpected arguments {other:?}"))),
            };
            demo::demo(clients)
        }
        Some("--version" | "-V") => {
            println!("xvs {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("--help" | "-h") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(Usage(format!("unknown command '{other}'")).into()),
    }
}
