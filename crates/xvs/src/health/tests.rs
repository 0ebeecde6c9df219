//! Runner tests against real sockets and processes on 127.0.0.1 (nothing leaves
//! the machine). Intervals ≤ 100 ms; every wait is bounded.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use xvs_config::{CheckConfig, CheckKind, DestKey, HttpCheck, MiscCheck, StatusRange, UdpCheck};
use xvs_core::health::{Event, ProbeResult, Settings};

use super::probe::exit_result;
use super::*;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Longest any single expected event may take.
const WAIT: Duration = Duration::from_secs(5);

fn fast(alpha: bool) -> Settings {
    Settings {
        interval_ms: 40,
        connect_timeout_ms: 150,
        retry: 0,
        delay_before_retry_ms: 10,
        rise: 1,
        fall: 1,
        warmup_ms: 0,
        alpha,
    }
}

fn target(port: u16, kind: CheckKind, settings: Settings) -> Target {
    Target {
        dest: DestKey {
            service: "svc".into(),
            sorry: false,
            address: LO,
            port: Some(port),
        },
        service_port: None,
        check: CheckConfig {
            kind,
            settings,
            connect_ip: None,
            connect_port: None,
        },
    }
}

/// The next event, within [`WAIT`].
#[track_caller]
fn next(rx: &Receiver<HealthEvent>) -> HealthEvent {
    rx.recv_timeout(WAIT).expect("no health event in time")
}

#[track_caller]
fn expect_down(rx: &Receiver<HealthEvent>, needle: &str) -> String {
    match next(rx).event {
        Event::Down { reason } => {
            assert!(
                reason.contains(needle),
                "reason {reason:?} lacks {needle:?}"
            );
            reason
        }
        other => panic!("expected Down, got {other:?}"),
    }
}

#[track_caller]
fn expect_up(rx: &Receiver<HealthEvent>) {
    assert_eq!(next(rx).event, Event::Up);
}

/// No event for `ms`.
#[track_caller]
fn quiet(rx: &Receiver<HealthEvent>, ms: u64) {
    if let Ok(e) = rx.recv_timeout(Duration::from_millis(ms)) {
        panic!("unexpected event {e:?}");
    }
}

fn unused_port() -> u16 {
    TcpListener::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_up_and_down_with_a_listener() {
    let l = TcpListener::bind((LO, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(vec![target(port, CheckKind::Tcp, fast(true))], tx).unwrap();
    expect_down(&rx, "alpha");
    expect_up(&rx);
    quiet(&rx, 150);
    drop(l);
    expect_down(&rx, "refused");
    let st = h.status().unwrap();
    assert_eq!(st.len(), 1);
    assert!(!st[0].up);
    let _l = TcpListener::bind((LO, port)).unwrap();
    expect_up(&rx);
    h.stop();
}

#[test]
fn connect_ip_and_port_overrides_are_probed() {
    let l = TcpListener::bind((LO, 0)).unwrap();
    let mut t = target(unused_port(), CheckKind::Tcp, fast(true));
    t.dest.address = "198.18.255.1".parse().unwrap(); // never contacted
    t.check.connect_ip = Some(LO);
    t.check.connect_port = Some(l.local_addr().unwrap().port());
    assert_eq!(t.probe_addr(), Some(l.local_addr().unwrap()));
    let (tx, rx) = mpsc::channel();
    let _h = HealthRunner::spawn(vec![t], tx).unwrap();
    expect_down(&rx, "alpha");
    expect_up(&rx);
}

/// A tiny HTTP server answering `status` and `body` (shared, changeable).
struct Http {
    port: u16,
    status: Arc<AtomicU16>,
    body: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<String>>>,
}

fn http_server() -> Http {
    let l = TcpListener::bind((LO, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let status = Arc::new(AtomicU16::new(200));
    let body = Arc::new(Mutex::new("ok".to_owned()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (st, bd, sn) = (status.clone(), body.clone(), seen.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&b[..n]),
                }
            }
            sn.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&req).into_owned());
            let body = bd.lock().unwrap().clone();
            let _ = write!(
                s,
                "HTTP/1.0 {} X\r\nContent-Length: {}\r\n\r\n{body}",
                st.load(Ordering::SeqCst),
                body.len()
            );
        }
    });
    Http {
        port,
        status,
        body,
        seen,
    }
}

fn http_kind(expect_body: Option<&str>) -> CheckKind {
    CheckKind::Http(HttpCheck {
        path: "/healthz".into(),
        host: Some("example.test".into()),
        status: vec![
            StatusRange { lo: 200, hi: 299 },
            StatusRange { lo: 404, hi: 404 },
        ],
        expect_body: expect_body.map(str::to_owned),
        digest: None,
    })
}

#[test]
fn http_status_and_body() {
    let srv = http_server();
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(
        vec![target(srv.port, http_kind(Some("ok")), fast(true))],
        tx,
    )
    .unwrap();
    expect_down(&rx, "alpha");
    expect_up(&rx);
    {
        let seen = srv.seen.lock().unwrap();
        let req = &seen[0];
        assert!(req.starts_with("GET /healthz HTTP/1.0\r\n"), "{req:?}");
        assert!(req.contains("\r\nHost: example.test\r\n"), "{req:?}");
    }
    srv.status.store(500, Ordering::SeqCst);
    expect_down(&rx, "status 500");
    srv.status.store(404, Ordering::SeqCst); // accepted by the list
    expect_up(&rx);
    *srv.body.lock().unwrap() = "nope".into();
    expect_down(&rx, "body does not contain \"ok\"");
    *srv.body.lock().unwrap() = "all is ok here".into();
    expect_up(&rx);
    h.stop();
}

#[test]
fn a_server_answering_garbage_fails_the_http_check() {
    // Answers every connection with bytes that are not HTTP, then closes.
    let l = TcpListener::bind((LO, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"\x00\xffSSH-2.0-garbage\r\n\r\nmore");
        }
    });
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(vec![target(port, http_kind(None), fast(false))], tx).unwrap();
    expect_down(&rx, "not an HTTP status line");
    h.stop();
}

#[test]
fn http_body_digest_like_keepalived() {
    let srv = http_server();
    // md5("ok") = 444bcb3a3fcf8389296c49467f27e1d6 (as `md5sum` prints it).
    let mut kind = http_kind(None);
    if let CheckKind::Http(h) = &mut kind {
        h.digest = Some([
            0x44, 0x4b, 0xcb, 0x3a, 0x3f, 0xcf, 0x83, 0x89, 0x29, 0x6c, 0x49, 0x46, 0x7f, 0x27,
            0xe1, 0xd6,
        ]);
    }
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(vec![target(srv.port, kind, fast(true))], tx).unwrap();
    expect_down(&rx, "alpha");
    expect_up(&rx);
    *srv.body.lock().unwrap() = "ok!".into();
    expect_down(&rx, "digest");
    *srv.body.lock().unwrap() = "ok".into();
    expect_up(&rx);
    h.stop();
}

#[test]
fn hung_server_fails_by_timeout_and_the_runner_stays_responsive() {
    // Accepts and never answers (keeps every connection open).
    let l = TcpListener::bind((LO, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (held, stop) = (held.clone(), stop.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(s) = s {
                    held.lock().unwrap().push(s);
                }
            }
        });
    }
    let ok = TcpListener::bind((LO, 0)).unwrap();
    let mut good = target(ok.local_addr().unwrap().port(), CheckKind::Tcp, fast(true));
    good.dest.service = "other".into();
    let (tx, rx) = mpsc::channel();
    // Two workers only: the hung probes must not starve the other target.
    let h = HealthRunner::spawn_with(
        2,
        vec![target(port, http_kind(None), fast(false)), good],
        tx,
    )
    .unwrap();
    let t0 = Instant::now();
    let mut down = None;
    let mut good_up = false;
    while down.is_none() || !good_up {
        let e = next(&rx);
        match (&e.dest.service[..], e.event) {
            ("svc", Event::Down { reason }) => down = Some(reason),
            ("other", Event::Up) => good_up = true,
            ("other", Event::Down { .. }) => {} // alpha
            (_, other) => panic!("unexpected {other:?}"),
        }
    }
    let reason = down.unwrap();
    assert!(
        reason.contains("timeout") || reason.contains("no answer"),
        "{reason}"
    );
    // Failed at about connect_timeout (150 ms), not much later.
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // Responsive while probes hang.
    for _ in 0..5 {
        let t = Instant::now();
        let st = h.status().unwrap();
        assert_eq!(st.len(), 2);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    let t = Instant::now();
    h.stop();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    stop.store(true, Ordering::SeqCst);
    let _ = TcpStream::connect((LO, port));
}

fn udp_echo() -> u16 {
    let s = UdpSocket::bind((LO, 0)).unwrap();
    let port = s.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut b = [0u8; 1500];
        while let Ok((n, from)) = s.recv_from(&mut b) {
            let mut reply = b"echo:".to_vec();
            reply.extend_from_slice(&b[..n]);
            let _ = s.send_to(&reply, from);
        }
    });
    port
}

fn udp_kind(expect: Option<&str>) -> CheckKind {
    CheckKind::Udp(UdpCheck {
        payload: "ping".into(),
        expect_body: expect.map(str::to_owned),
    })
}

#[test]
fn udp_echo_reply_and_expectation() {
    let port = udp_echo();
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(
        vec![target(port, udp_kind(Some("echo:ping")), fast(true))],
        tx,
    )
    .unwrap();
    expect_down(&rx, "alpha");
    expect_up(&rx);
    // Expecting something the echo never says: down (non-alpha starts up).
    let st = h
        .replace(vec![target(port, udp_kind(Some("pong")), fast(false))])
        .unwrap();
    assert!(st[0].up, "state inherited across the check change");
    expect_down(&rx, "does not contain \"pong\"");
    // A closed port: ICMP port unreachable or a timeout.
    let closed = UdpSocket::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut t = target(closed, udp_kind(None), fast(false));
    t.dest.service = "closed".into();
    h.replace(vec![t]).unwrap();
    let r = expect_down(&rx, "");
    assert!(
        r.contains("unreachable") || r.contains("timeout") || r.contains("no answer"),
        "{r}"
    );
    h.stop();
}

/// A fresh directory under the system temp dir (removed on drop).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "xvs-health-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// An executable `sh` script `check.sh` with `body`.
    fn script(&self, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = self.0.join("check.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn misc_kind(cmd: Vec<String>, dynamic: bool) -> CheckKind {
    CheckKind::Misc(MiscCheck {
        command: cmd,
        dynamic,
    })
}

#[test]
fn misc_exit_codes_and_dynamic_weight() {
    let dir = TempDir::new("misc");
    let code = dir.0.join("code");
    std::fs::write(&code, "0").unwrap();
    let script = dir.script(&format!("exit $(cat '{}')", code.display()));
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(
        vec![target(
            1,
            misc_kind(vec![script.clone()], false),
            fast(true),
        )],
        tx,
    )
    .unwrap();
    expect_down(&rx, "alpha");
    expect_up(&rx);
    std::fs::write(&code, "1").unwrap();
    expect_down(&rx, "exited with 1");
    std::fs::write(&code, "7").unwrap(); // not dynamic: any nonzero code fails
    quiet(&rx, 200);
    // Dynamic: 7 → weight 5 and up.
    h.replace(vec![target(
        1,
        misc_kind(vec![script.clone()], true),
        fast(true),
    )])
    .unwrap();
    assert_eq!(next(&rx).event, Event::Weight(5));
    expect_up(&rx);
    std::fs::write(&code, "2").unwrap();
    assert_eq!(next(&rx).event, Event::Weight(0));
    std::fs::write(&code, "1").unwrap();
    expect_down(&rx, "exited with 1");
    std::fs::write(&code, "0").unwrap(); // up, weight kept
    expect_up(&rx);
    assert_eq!(h.status().unwrap()[0].weight, Some(0));
    h.stop();
}

#[test]
fn misc_hung_command_is_killed_at_the_timeout() {
    let dir = TempDir::new("hang");
    // exec: the shell becomes sleep, so killing the child's PID kills the sleep.
    let script = dir.script("exec sleep 3");
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    let h = HealthRunner::spawn(
        vec![target(1, misc_kind(vec![script], false), fast(false))],
        tx,
    )
    .unwrap();
    let r = expect_down(&rx, "");
    assert!(r.contains("killed") || r.contains("no answer"), "{r}");
    // Well before the 3 s sleep would have ended.
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "{:?}",
        t0.elapsed()
    );
    h.stop();
    assert_eq!(exit_result(0, true), ProbeResult::Success);
    assert_eq!(exit_result(255, true), ProbeResult::Weight(253));
    assert!(matches!(exit_result(1, true), ProbeResult::Failure(_)));
    assert!(matches!(exit_result(3, false), ProbeResult::Failure(_)));
}

#[test]
fn missing_command_fails() {
    let (tx, rx) = mpsc::channel();
    let _h = HealthRunner::spawn(
        vec![target(
            1,
            misc_kind(vec!["/nonexistent/xvs-check".into()], false),
            fast(false),
        )],
        tx,
    )
    .unwrap();
    expect_down(&rx, "cannot run /nonexistent/xvs-check");
}

#[test]
fn replace_keeps_unchanged_checkers_and_drops_removed_ones() {
    let l = TcpListener::bind((LO, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let dead = unused_port();
    let a = target(port, CheckKind::Tcp, fast(true));
    let mut b = target(dead, CheckKind::Tcp, fast(false));
    b.dest.service = "b".into();
    let (tx, rx) = mpsc::channel();
    let h = HealthRunner::spawn(vec![a.clone(), b.clone()], tx).unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = next(&rx);
        got.push((e.dest.service.clone(), e.event));
    }
    assert!(got.contains(&("svc".into(), Event::Up)), "{got:?}");
    assert!(
        got.iter()
            .any(|(s, e)| s == "b" && matches!(e, Event::Down { .. })),
        "{got:?}"
    );
    // Same targets: no event, same states.
    let st = h.replace(vec![a.clone(), b.clone()]).unwrap();
    assert_eq!(st.iter().map(|s| s.up).collect::<Vec<_>>(), [true, false]);
    quiet(&rx, 200);
    // A new target with alpha: reported down at once; a removed one is gone.
    let mut c = target(port, CheckKind::Tcp, fast(true));
    c.dest.service = "c".into();
    let st = h.replace(vec![a, c]).unwrap();
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].dest.service, "svc");
    assert!(st[0].up);
    let e = next(&rx);
    assert_eq!(e.dest.service, "c");
    assert!(matches!(e.event, Event::Down { .. }));
    let e = next(&rx);
    assert_eq!((e.dest.service.as_str(), e.event), ("c", Event::Up));
    quiet(&rx, 150);
    h.stop();
}

#[test]
fn targets_from_a_config() {
    let text = "director:\n  interfaces: [ext]\nservices:\n  - name: web\n    protocol: tcp\n    \
                vip: 198.18.1.1\n    port: 80\n    check: {type: tcp, interval: 0.05}\n    real_servers:\n      \
                - address: 198.19.0.10\n      - address: 198.19.0.11\n        port: 8080\n        \
                check: {type: http, path: /h}\n  - name: plain\n    protocol: tcp\n    vip: 198.18.1.1\n    \
                port: 81\n    real_servers: [{address: 198.19.0.12}]\n";
    let c = xvs_config::parse(text, "t.yaml").unwrap();
    let ts = targets(&c);
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].probe_addr(), Some("198.19.0.10:80".parse().unwrap()));
    assert_eq!(ts[0].check.settings.interval_ms, 50);
    assert_eq!(
        ts[1].probe_addr(),
        Some("198.19.0.11:8080".parse().unwrap())
    );
    assert_eq!(ts[1].dest.port, Some(8080));
    assert!(matches!(ts[1].check.kind, CheckKind::Http(_)));
    let _: SocketAddr = ts[0].probe_addr().unwrap();
}
