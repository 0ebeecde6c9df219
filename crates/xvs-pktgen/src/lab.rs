//! A private lab: the calling thread's own network namespace with one veth
//! pair, generator end → sink end, nothing else. The namespace belongs to the
//! thread (`unshare(CLONE_NEWNET)` on that thread only) and disappears with it,
//! taking the veths and any attached programs along: no cleanup can be missed.
//! `ip` is run from that thread, so it acts in that namespace.

use std::io;
use std::process::Command;

/// MAC of the generator end.
pub const GEN_MAC: [u8; 6] = [0x02, 0x58, 0x56, 0x00, 0x00, 0x01];
/// MAC of the sink end.
pub const SINK_MAC: [u8; 6] = [0x02, 0x58, 0x56, 0x00, 0x00, 0x02];

/// A veth pair in the calling thread's private namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethLab {
    /// Generator end's name.
    pub gen_if: String,
    /// Sink end's name.
    pub sink_if: String,
    /// Generator end's index.
    pub gen_ifindex: u32,
    /// Sink end's index.
    pub sink_ifindex: u32,
}

fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Runs `ip ARGS` (in the calling thread's namespace).
pub fn ip(args: &[&str]) -> io::Result<String> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl VethLab {
    /// Moves the calling **thread** into a new network namespace and creates
    /// the veth pair `gen_if` ([`GEN_MAC`]) ↔ `sink_if` ([`SINK_MAC`]), both up.
    /// Call it on a thread made for the lab (see [`run_in_private_netns`]).
    pub fn create(gen_if: &str, sink_if: &str) -> io::Result<Self> {
        xvs_io::sys::unshare_net_for_thread()?;
        let links = ip(&["-o", "link"])?;
        if links.lines().count() != 1 {
            return Err(io::Error::other(format!("not a fresh namespace:\n{links}")));
        }
        let (gm, sm) = (mac_text(GEN_MAC), mac_text(SINK_MAC));
        ip(&[
            "link", "add", gen_if, "address", &gm, "type", "veth", "peer", "name", sink_if,
            "address", &sm,
        ])?;
        ip(&["link", "set", gen_if, "up"])?;
        ip(&["link", "set", sink_if, "up"])?;
        Ok(VethLab {
            gen_if: gen_if.to_owned(),
            sink_if: sink_if.to_owned(),
            gen_ifindex: xvs_io::sys::if_index(gen_if)?,
            sink_ifindex: xvs_io::sys::if_index(sink_if)?,
        })
    }

    /// Adds a second veth pair `a` ↔ `b`, both up, in the same namespace: the
    /// loop of a [`crate::Recirculator`].
    pub fn add_loop(&self, a: &str, b: &str) -> io::Result<()> {
        ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
        ip(&["link", "set", a, "up"])?;
        ip(&["link", "set", b, "up"])?;
        Ok(())
    }
}

/// Runs `f` on a new thread and returns its result (a panic in `f` is resumed
/// on the caller); `f` makes the thread's private namespace with
/// [`VethLab::create`], which then goes away with the thread.
pub fn run_in_private_netns<T, F>(f: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match std::thread::spawn(f).join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}
