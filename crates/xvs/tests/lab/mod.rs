//! Network-namespace labs for the end-to-end tests: namespaces joined by veth
//! pairs (and a bridge namespace where one L2 segment is needed), real servers
//! (python's http.server, UDP echo on kernel sockets), real clients (curl), and
//! the real `xvs` binary in the director's namespace.
//!
//! Safety rules kept here: addresses only from 198.18.0.0/15 and 2001:db8::/32;
//! every namespace is created by the lab under a name unique to this process and
//! deleted by `Drop` (also when a test fails); processes are ended by the PID the
//! lab started; every wait is bounded.

#![allow(dead_code)]

use std::fs;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// End-to-end labs run one at a time: on two cores, parallel directors and
/// servers make the timing of every test noisy.
static SERIAL: Mutex<()> = Mutex::new(());
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Whether privileged tests may run: true as root. Otherwise prints a visible
/// `SKIP: <reason>` and returns false — or panics when `XVS_REQUIRE_PRIVILEGED=1`.
pub fn privileged(test: &str) -> bool {
    xvs_io::testing::privileged(test, "needs root (network namespaces, XDP, AF_XDP)")
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command on the host (root namespace), asserting success.
pub fn host(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    check(&format!("{args:?}"), out)
}

/// A running `xvs run`.
#[derive(Debug)]
pub struct DirectorProc {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

/// A lab: namespaces, children, a scratch directory. Torn down on drop.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    pub dir: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl Lab {
    /// A new, empty lab (waits for any other lab of this process to finish).
    pub fn new(tag: &str) -> Lab {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("xvs{}-{n}{tag}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("lab scratch directory");
        Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            dir,
            _serial: serial,
        }
    }

    /// Creates namespace `short` (full name returned) with `lo` up.
    pub fn ns(&mut self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        host(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        self.sh(&name, &["ip", "link", "set", "lo", "up"]);
        name
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up.
    pub fn veth(&self, (a, a_if): (&str, &str), (b, b_if): (&str, &str)) {
        host(&[
            "ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if, "netns", b,
        ]);
        self.sh(a, &["ip", "link", "set", a_if, "up"]);
        self.sh(b, &["ip", "link", "set", b_if, "up"]);
    }

    /// `ip netns exec NS args...`, output on success; panics otherwise.
    pub fn sh(&self, ns: &str, args: &[&str]) -> String {
        check(&format!("[{ns}] {args:?}"), self.try_sh(ns, args))
    }

    /// `ip netns exec NS args...`, whatever its outcome.
    pub fn try_sh(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("[{ns}] {args:?}: {e}"))
    }

    /// Several `ip` commands in `ns` (one per line of `script`, `ip` omitted).
    pub fn ip(&self, ns: &str, script: &str) {
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let args: Vec<&str> = std::iter::once("ip")
                .chain(line.split_whitespace())
                .collect();
            self.sh(ns, &args);
        }
    }

    /// Writes `text` to `name` in the scratch directory; returns the path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("scratch subdirectory");
        }
        fs::write(&path, text).expect("scratch file");
        path
    }

    /// Starts `args` in `ns` in the background, output into scratch files;
    /// the lab ends it on drop.
    pub fn spawn(&mut self, ns: &str, log: &str, args: &[&str]) -> u32 {
        let out = fs::File::create(self.dir.join(format!("{log}.log"))).expect("log file");
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("[{ns}] {args:?}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// An HTTP server (python's http.server) on `addr:port` in `ns` whose file
    /// `/who` contains `name`; returns its PID once it accepts connections.
    pub fn http_server(&mut self, ns: &str, name: &str, addr: &str, port: u16) -> u32 {
        let root = self.dir.join(format!("www-{name}"));
        fs::create_dir_all(&root).expect("web root");
        fs::write(root.join("who"), name).expect("who");
        // A larger file for long transfers and payload checks.
        fs::write(root.join("big"), big_body()).expect("big");
        let port_s = port.to_string();
        let root_s = root.to_string_lossy().into_owned();
        let pid = self.spawn(
            ns,
            &format!("http-{name}-{port}"),
            &[
                "python3",
                "-m",
                "http.server",
                "--bind",
                addr,
                "--directory",
                &root_s,
                &port_s,
            ],
        );
        let target: SocketAddr = if addr.contains(':') {
            format!("[{addr}]:{port}")
        } else {
            format!("{addr}:{port}")
        }
        .parse()
        .expect("server address");
        let ready = in_netns(ns, move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        });
        assert!(ready, "http server {name} on {target} did not start");
        pid
    }

    /// Ends the lab's child `pid` (SIGKILL) and reaps it.
    pub fn kill(&mut self, pid: u32) {
        let i = self
            .children
            .iter()
            .position(|c| c.id() == pid)
            .expect("a child of this lab");
        let mut child = self.children.remove(i);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A UDP echo server on `addr` in `ns` that prefixes replies with `name:`;
    /// serves until the lab's namespace goes (bounded by `lifetime`).
    pub fn udp_echo(&self, ns: &str, name: &str, addr: SocketAddr, lifetime: Duration) {
        let ns = ns.to_owned();
        let name = name.to_owned();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            xvs_io::sys::enter_netns(&ns).expect("setns");
            let sock = UdpSocket::bind(addr).expect("udp echo bind");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            tx.send(()).expect("ready");
            let start = Instant::now();
            let mut buf = [0u8; 2048];
            while start.elapsed() < lifetime {
                if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                    let mut reply = format!("{name}:").into_bytes();
                    reply.extend_from_slice(&buf[..n]);
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("udp echo started");
    }

    /// `curl` in `ns` (3 s limit); the body on success, the error otherwise.
    pub fn curl(&self, ns: &str, url: &str, extra: &[&str]) -> Result<String, String> {
        self.curl_bytes(ns, url, extra, 3)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// `curl` in `ns` with a limit of `secs`; the raw body on success.
    pub fn curl_bytes(
        &self,
        ns: &str,
        url: &str,
        extra: &[&str],
        secs: u32,
    ) -> Result<Vec<u8>, String> {
        let secs = secs.to_string();
        let mut args = vec!["curl", "-sS", "--max-time", &secs, "--connect-timeout", "2"];
        args.extend_from_slice(extra);
        args.push(url);
        let out = self.try_sh(ns, &args);
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Starts `xvs run -c CONFIG` in `ns` and waits until it runs.
    pub fn director(&mut self, ns: &str, config: &Path) -> DirectorProc {
        let stdout = self.dir.join("xvs.out");
        let stderr = self.dir.join("xvs.err");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_xvs"), "run", "-c"])
            .arg(config)
            .env(
                "XVS_LOG",
                std::env::var("XVS_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).expect("stdout file"))
            .stderr(fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn xvs");
        let mut d = DirectorProc {
            child,
            stdout,
            stderr,
        };
        let start = Instant::now();
        loop {
            let running = fs::read_to_string(&d.stdout)
                .unwrap_or_default()
                .contains("running on");
            let resolved = fs::read_to_string(&d.stderr)
                .unwrap_or_default()
                .contains("next hops resolved");
            if running && resolved {
                return d;
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("xvs exited at start ({status}):\n{}", d.logs());
            }
            if start.elapsed() > Duration::from_secs(15) {
                let _ = d.child.kill();
                panic!("xvs did not start within 15 s:\n{}", d.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The names of this lab's namespaces.
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }
}

impl DirectorProc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "HUP") to it.
    pub fn signal(&self, signal: &str) {
        host(&["kill", &format!("-{signal}"), &self.child.id().to_string()]);
    }

    /// stdout and stderr so far.
    pub fn logs(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            fs::read_to_string(&self.stdout).unwrap_or_default(),
            fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// SIGTERM, then wait (≤ 10 s, then SIGKILL); returns the exit status and stdout.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("xvs did not stop on SIGTERM:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, self.logs())
    }
}

impl Drop for DirectorProc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Stop it first so that its final listing (counters, drops) shows.
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .output();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(3) {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("xvs logs at the failure:\n{}", self.logs());
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Runs `f` on a thread inside namespace `ns` and returns its result.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_owned();
    std::thread::spawn(move || {
        xvs_io::sys::enter_netns(&ns).expect("setns");
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Checksum error counters (TCP, UDP) of namespace `ns`, from /proc/net/snmp.
pub fn csum_errors(lab: &Lab, ns: &str) -> (u64, u64) {
    let snmp = lab.sh(ns, &["cat", "/proc/net/snmp"]);
    let field = |proto: &str| -> u64 {
        let mut lines = snmp.lines().filter(|l| l.starts_with(&format!("{proto}:")));
        let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "InCsumErrors")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Tcp"), field("Udp"))
}

/// The body of every server's `/big`: 4 MiB of a pattern that no shifted or
/// corrupted copy matches.
pub fn big_body() -> Vec<u8> {
    (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(7) % 251) as u8)
        .collect()
}

/// The NAT topology's namespaces.
#[derive(Debug, Clone)]
pub struct NatLab {
    /// Clients: 198.18.0.10, .11, 198.18.3.10, 198.18.9.10 and 2001:db8::10 on `c0`.
    pub client: String,
    /// The director: `ext` 198.18.0.1/24, 198.18.3.1/24, 2001:db8::1/64;
    /// `int` 198.19.0.1/24, 2001:db8:2::1/64.
    pub director: String,
    /// Real servers rs1 (198.19.0.10, 2001:db8:2::10) and rs2 (.11, ::11),
    /// on a bridge behind `int`; their default route is the director.
    pub servers: [String; 2],
    /// The bridge: `br0` over `s0` (to `int`), `s1`, `s2` (to the servers).
    pub switch: String,
}

/// Real server addresses of [`nat_lab`].
pub const RS_V4: [&str; 2] = ["198.19.0.10", "198.19.0.11"];
/// IPv6 real server addresses of [`nat_lab`].
pub const RS_V6: [&str; 2] = ["2001:db8:2::10", "2001:db8:2::11"];

/// Builds the NAT topology with HTTP servers on `ports` (v4 and v6) on both
/// real servers answering `/who` with `rs1` / `rs2`. `client_tx_csum` says
/// whether the client's veth keeps tx checksum offload (partial checksums).
pub fn nat_lab(lab: &mut Lab, client_tx_csum: bool, ports: &[u16]) -> NatLab {
    let client = lab.ns("cl");
    let director = lab.ns("dir");
    let switch = lab.ns("sw");
    let servers = [lab.ns("rs1"), lab.ns("rs2")];
    lab.veth((&client, "c0"), (&director, "ext"));
    lab.veth((&director, "int"), (&switch, "s0"));
    lab.ip(
        &switch,
        "link add br0 type bridge
         link set br0 up
         link set s0 master br0",
    );
    for (i, rs) in servers.iter().enumerate() {
        let port = format!("s{}", i + 1);
        lab.veth((rs, "r0"), (&switch, &port));
        lab.sh(&switch, &["ip", "link", "set", &port, "master", "br0"]);
        lab.ip(
            rs,
            &format!(
                "addr add {}/24 dev r0
                 addr add {}/64 dev r0 nodad
                 route add default via 198.19.0.1
                 -6 route add default via 2001:db8:2::1",
                RS_V4[i], RS_V6[i]
            ),
        );
    }
    lab.ip(
        &client,
        "addr add 198.18.0.10/24 dev c0
         addr add 198.18.0.11/24 dev c0
         addr add 198.18.3.10/24 dev c0
         addr add 198.18.9.10/24 dev c0
         addr add 2001:db8::10/64 dev c0 nodad
         route add default via 198.18.0.1
         -6 route add default via 2001:db8::1",
    );
    lab.ip(
        &director,
        "addr add 198.18.0.1/24 dev ext
         addr add 198.18.3.1/24 dev ext
         addr add 2001:db8::1/64 dev ext nodad
         addr add 198.19.0.1/24 dev int
         addr add 2001:db8:2::1/64 dev int nodad",
    );
    if !client_tx_csum {
        lab.sh(&client, &["ethtool", "-K", "c0", "tx", "off"]);
    }
    for (i, rs) in servers.iter().enumerate() {
        for &port in ports {
            lab.http_server(rs, &format!("rs{}", i + 1), "::", port);
        }
    }
    NatLab {
        client,
        director,
        servers,
        switch,
    }
}

/// A download running in the background (ended by PID on drop).
#[derive(Debug)]
pub struct Download {
    child: Child,
    out: PathBuf,
}

impl Lab {
    /// Starts `curl` in `ns` fetching `url` at `rate` (e.g. "1M") into a file.
    pub fn download(&self, ns: &str, url: &str, src: &str, rate: &str) -> Download {
        let out = self
            .dir
            .join(format!("dl-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "30"])
            .args(["--limit-rate", rate, "--interface", src, "-o"])
            .arg(&out)
            .arg(url)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn curl");
        Download { child, out }
    }
}

impl Download {
    /// Waits for the download (bounded by curl's own 30 s limit); its bytes.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        let status = self.child.wait().map_err(|e| e.to_string())?;
        if !status.success() {
            let mut err = String::new();
            if let Some(mut e) = self.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return Err(format!("{status}: {err}"));
        }
        fs::read(&self.out).map_err(|e| e.to_string())
    }

    /// Bytes received so far.
    pub fn progress(&self) -> u64 {
        fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
