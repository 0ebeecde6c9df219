//! The probes: blocking std sockets and processes, every step bounded by the
//! attempt's deadline. Layer: binary (I/O). Run on the runner's worker threads.
//!
//! Invariants: [`Probe::run`] returns by `deadline` plus at most a few
//! milliseconds (one `try_wait` poll step, a kill and a reap); it reads at most
//! [`MAX_HTTP_RESPONSE`] bytes of an HTTP response and one datagram of a UDP reply;
//! it never panics on what a target sends.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use xvs_config::{CheckKind, HttpCheck, MiscCheck, UdpCheck};
use xvs_core::health::ProbeResult;

use super::Target;

/// Bytes of an HTTP response read at most (status line, headers and body).
pub const MAX_HTTP_RESPONSE: usize = 64 * 1024;

/// How often a running check command is polled.
const MISC_POLL: Duration = Duration::from_millis(5);

/// What one target's probe does.
#[derive(Debug)]
pub(crate) enum Probe {
    Tcp(SocketAddr),
    Http(SocketAddr, HttpCheck),
    Udp(SocketAddr, UdpCheck),
    Misc(MiscCheck),
    /// A tcp/http/udp check without a port (not from a validated config).
    NoPort,
}

fn fail(reason: impl Into<String>) -> ProbeResult {
    ProbeResult::Failure(reason.into())
}

/// Time left until `deadline`, or a failure when none is.
fn left(deadline: Instant, what: &str) -> Result<Duration, ProbeResult> {
    let d = deadline.saturating_duration_since(Instant::now());
    if d.is_zero() {
        Err(fail(format!("timeout {what}")))
    } else {
        Ok(d)
    }
}

fn io_fail(what: &str, addr: SocketAddr, e: &std::io::Error) -> ProbeResult {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => fail(format!("timeout {what} {addr}")),
        _ => fail(format!("{what} {addr}: {e}")),
    }
}

impl Probe {
    pub(crate) fn new(t: &Target) -> Probe {
        let addr = t.probe_addr();
        match (&t.check.kind, addr) {
            (CheckKind::Misc(m), _) => Probe::Misc(m.clone()),
            (_, None) => Probe::NoPort,
            (CheckKind::Tcp, Some(a)) => Probe::Tcp(a),
            (CheckKind::Http(h), Some(a)) => Probe::Http(a, h.clone()),
            (CheckKind::Udp(u), Some(a)) => Probe::Udp(a, u.clone()),
        }
    }

    /// Runs the probe, giving up at `deadline`.
    pub(crate) fn run(&self, deadline: Instant) -> ProbeResult {
        let r = match self {
            Probe::Tcp(a) => connect(*a, deadline).map(|_| ProbeResult::Success),
            Probe::Http(a, h) => http(*a, h, deadline),
            Probe::Udp(a, u) => udp(*a, u, deadline),
            Probe::Misc(m) => misc(m, deadline),
            Probe::NoPort => Err(fail("no port to probe (set connect_port)")),
        };
        r.unwrap_or_else(|e| e)
    }
}

fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, ProbeResult> {
    let t = left(deadline, "before connecting")?;
    TcpStream::connect_timeout(&addr, t).map_err(|e| io_fail("connecting to", addr, &e))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.x NNN ...` → NNN.
fn status_code(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_ascii_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

/// Lower-case hexadecimal.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn http(addr: SocketAddr, h: &HttpCheck, deadline: Instant) -> Result<ProbeResult, ProbeResult> {
    let mut s = connect(addr, deadline)?;
    let host = match &h.host {
        Some(host) => host.clone(),
        None => addr.to_string(),
    };
    // HTTP/1.0: no chunked bodies, the server closes after the response.
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: xvs-health\r\nConnection: close\r\n\r\n",
        h.path
    );
    s.set_write_timeout(Some(left(deadline, "before sending the request")?))
        .map_err(|e| io_fail("sending to", addr, &e))?;
    s.write_all(req.as_bytes())
        .map_err(|e| io_fail("sending to", addr, &e))?;
    let mut buf = Vec::with_capacity(4096);
    let mut eof = false;
    let mut code: Option<u16> = None;
    loop {
        if code.is_none()
            && let Some(end) = find(&buf, b"\r\n")
        {
            let c = status_code(&buf[..end]).ok_or_else(|| {
                fail(format!(
                    "{addr}: not an HTTP status line: {:?}",
                    String::from_utf8_lossy(&buf[..end.min(80)])
                ))
            })?;
            if !h.status_ok(c) {
                return Err(fail(format!("{addr}: HTTP status {c} not accepted")));
            }
            code = Some(c);
        }
        if let Some(c) = code {
            if let Some(want) = &h.digest {
                // The whole body is needed: read to the end (bounded).
                if !eof && buf.len() < MAX_HTTP_RESPONSE {
                    eof = read_more(&mut s, &mut buf, addr, deadline)?;
                    continue;
                }
                if !eof {
                    return Err(fail(format!(
                        "{addr}: body longer than {MAX_HTTP_RESPONSE} bytes: no digest"
                    )));
                }
                let body = find(&buf, b"\r\n\r\n").map_or(&buf[..0], |e| &buf[e + 4..]);
                let got: [u8; 16] = Md5::digest(body).into();
                if got != *want {
                    return Err(fail(format!(
                        "{addr}: body digest {} is not the expected {}",
                        hex(&got),
                        hex(want)
                    )));
                }
            }
            let Some(expect) = &h.expect_body else {
                return Ok(ProbeResult::Success);
            };
            if let Some(hdr_end) = find(&buf, b"\r\n\r\n")
                && contains(&buf[hdr_end + 4..], expect.as_bytes())
            {
                return Ok(ProbeResult::Success);
            }
            if eof || buf.len() >= MAX_HTTP_RESPONSE {
                return Err(fail(format!(
                    "{addr}: HTTP status {c} but the body does not contain {expect:?}"
                )));
            }
        } else if eof || buf.len() >= MAX_HTTP_RESPONSE {
            return Err(fail(format!("{addr}: no HTTP status line in the response")));
        }
        eof = read_more(&mut s, &mut buf, addr, deadline)?;
    }
}

/// One read of at most 4 KiB into `buf` (never past [`MAX_HTTP_RESPONSE`]),
/// bounded by `deadline`; true at the end of the stream.
fn read_more(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<bool, ProbeResult> {
    s.set_read_timeout(Some(left(deadline, &format!("reading from {addr}"))?))
        .map_err(|e| io_fail("reading from", addr, &e))?;
    let mut chunk = [0u8; 4096];
    let room = (MAX_HTTP_RESPONSE - buf.len()).min(chunk.len());
    match s.read(&mut chunk[..room]) {
        Ok(0) => Ok(true),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(false)
        }
        Err(e) if e.kind() == ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(io_fail("reading from", addr, &e)),
    }
}

fn udp(addr: SocketAddr, u: &UdpCheck, deadline: Instant) -> Result<ProbeResult, ProbeResult> {
    let local: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let s = UdpSocket::bind(local).map_err(|e| fail(format!("udp socket: {e}")))?;
    s.connect(addr)
        .map_err(|e| io_fail("connecting to", addr, &e))?;
    s.send(u.payload.as_bytes())
        .map_err(|e| io_fail("sending to", addr, &e))?;
    let mut buf = vec![0u8; 65536];
    loop {
        s.set_read_timeout(Some(left(deadline, &format!("waiting for {addr}"))?))
            .map_err(|e| io_fail("reading from", addr, &e))?;
        match s.recv(&mut buf) {
            Ok(n) => {
                return match &u.expect_body {
                    Some(x) if !contains(&buf[..n], x.as_bytes()) => {
                        Err(fail(format!("{addr}: reply does not contain {x:?}")))
                    }
                    _ => Ok(ProbeResult::Success),
                };
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                return Err(fail(format!("{addr}: port unreachable")));
            }
            Err(e) => return Err(io_fail("waiting for", addr, &e)),
        }
    }
}

/// Exit code → result (keepalived `MISC_CHECK` / `misc_dynamic`).
pub(crate) fn exit_result(code: i32, dynamic: bool) -> ProbeResult {
    match code {
        0 => ProbeResult::Success,
        2..=255 if dynamic => ProbeResult::Weight((code - 2) as u32),
        c => fail(format!("check command exited with {c}")),
    }
}

fn misc(m: &MiscCheck, deadline: Instant) -> Result<ProbeResult, ProbeResult> {
    let (prog, args) = m
        .command
        .split_first()
        .ok_or_else(|| fail("empty check command"))?;
    left(deadline, "before starting the check command")?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| fail(format!("cannot run {prog}: {e}")))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(match status.code() {
                    Some(c) => exit_result(c, m.dynamic),
                    None => fail(format!("{prog} killed by a signal ({status})")),
                });
            }
            Ok(None) => {}
            Err(e) => return Err(fail(format!("waiting for {prog}: {e}"))),
        }
        let now = Instant::now();
        if now >= deadline {
            // SIGKILL to the child's PID, then reap it.
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timeout: {prog} killed (pid {})", child.id())));
        }
        std::thread::sleep(MISC_POLL.min(deadline - now));
    }
}
