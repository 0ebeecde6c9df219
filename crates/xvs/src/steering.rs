//! Which frames the kernel hands to the workers, and which it keeps. Layer:
//! binary (control side), over the two backends:
//!
//! - **AF_XDP**: one XDP steering program per interface (its own maps; a
//!   program's XSKMAP is keyed by queue only), attached through a bpf_link —
//!   frames to a VIP and NAT replies from real servers go to the sockets,
//!   everything else to the kernel ([`xvs_io::steer`]).
//! - **AF_PACKET**: the workers see every frame (a tap), so the kernel must not
//!   *also* act on the ones the workers forward. A guard at each of the director's
//!   interfaces drops, at ingress, exactly the frames AF_XDP mode would steer:
//!   frames to a VIP (but echo requests: `ping VIP` is the kernel's) and NAT
//!   replies from real servers (not those to the director's own, multicast or
//!   broadcast addresses: health checks, ND, VRRP stay the kernel's). The guard
//!   is the steering program itself at tc ingress (a tcx link, Linux ≥ 6.6);
//!   where that cannot be attached, an nftables table `netdev xvs` with the same
//!   rules at the netdev ingress hook. AF_PACKET taps run before both hooks, so
//!   the workers still get the frames; both run before IP input, so a dropped
//!   frame costs the kernel no routing and no conntrack. The tc program is the
//!   cheaper of the two: under overload the nftables chain's set lookups took
//!   about 10 % of the worker's cpu (benches/RESULTS.md, eleventh session).
//!
//! Invariant: nothing outlives the process — XDP links close with their file
//! descriptors; the nftables table is deleted on drop (and replaced at start
//! if a crashed run left one behind).

use std::io::Write;
use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use xvs_config::PacketGuard;
use xvs_io::steer::{SteerHook, SteerLink, SteeringOptions, SteeringProgram, XdpMode};

/// The addresses that decide what the workers get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Steered {
    /// Virtual addresses: frames to them are the workers'.
    pub vips: Vec<IpAddr>,
    /// NAT real servers: their frames to non-local unicast addresses are replies.
    pub real_servers: Vec<IpAddr>,
    /// The director's own addresses.
    pub locals: Vec<IpAddr>,
}

/// The steering of one backend.
#[derive(Debug)]
pub enum Steering {
    /// Steering programs (index = interface), kept attached by their links: at
    /// XDP (AF_XDP mode) or as the tc guard (AF_PACKET mode).
    Programs {
        /// One program per interface.
        programs: Vec<SteeringProgram>,
        /// Their attachments, held only to be dropped (which detaches).
        _links: Vec<SteerLink>,
        /// What the maps hold.
        current: Steered,
    },
    /// The nftables guard of AF_PACKET mode, where the tc guard cannot be attached.
    Nftables {
        /// The director's interfaces.
        interfaces: Vec<String>,
        /// What the table holds.
        current: Steered,
    },
}

impl Steering {
    /// Loads and attaches one steering program per interface.
    pub fn xdp(
        names: &[String],
        ifindexes: &[u32],
        mode: XdpMode,
        want: &Steered,
    ) -> Result<Steering> {
        let attach = |prog: &SteeringProgram, name: &str, index| {
            prog.attach(index, mode).with_context(|| {
                format!(
                    "interface {name}: attaching XDP ({mode:?} mode); is another XDP program attached? (`ip link show {name}`)"
                )
            })
        };
        Self::programs(names, ifindexes, SteerHook::Xdp, want, attach)
    }

    /// Installs AF_PACKET mode's guard: the tc guard or the nftables one, as
    /// `guard` says (`Auto`: tc, else — an older kernel, no tcx — nftables).
    pub fn packet(
        names: &[String],
        ifindexes: &[u32],
        guard: PacketGuard,
        want: &Steered,
    ) -> Result<Steering> {
        if guard != PacketGuard::Nftables {
            let attach = |prog: &SteeringProgram, name: &str, index| {
                prog.attach_tc(index)
                    .with_context(|| format!("interface {name}: attaching the tc guard (tcx)"))
            };
            match Self::programs(names, ifindexes, SteerHook::TcGuard, want, attach) {
                Ok(steering) => {
                    tracing::info!("AF_PACKET guard: the steering program at tc ingress");
                    return Ok(steering);
                }
                Err(e) if guard == PacketGuard::Auto => {
                    tracing::info!(reason = %format!("{e:#}"), "no tc guard; using nftables");
                }
                Err(e) => return Err(e),
            }
        }
        nft(&ruleset(names, want)).context("installing the nftables guard (table netdev xvs)")?;
        tracing::info!("AF_PACKET guard: nftables table netdev xvs");
        Ok(Steering::Nftables {
            interfaces: names.to_vec(),
            current: want.clone(),
        })
    }

    /// One steering program per interface, loaded for `hook` with `want` in
    /// its maps and attached by `attach`.
    fn programs(
        names: &[String],
        ifindexes: &[u32],
        hook: SteerHook,
        want: &Steered,
        attach: impl Fn(&SteeringProgram, &str, u32) -> Result<SteerLink>,
    ) -> Result<Steering> {
        let opts = SteeringOptions {
            hook,
            ..SteeringOptions::default()
        };
        let mut programs = Vec::new();
        let mut links = Vec::new();
        for (name, &index) in names.iter().zip(ifindexes) {
            let prog = SteeringProgram::load_with(&want.vips, &want.real_servers, opts)
                .with_context(|| format!("interface {name}: loading the steering program"))?;
            for local in &want.locals {
                prog.add_local(*local)
                    .with_context(|| format!("interface {name}: steering map"))?;
            }
            links.push(attach(&prog, name, index)?);
            programs.push(prog);
        }
        Ok(Steering::Programs {
            programs,
            _links: links,
            current: want.clone(),
        })
    }

    /// Binds rx queue `queue` of interface `iface` to an AF_XDP socket (XDP only).
    pub fn bind_socket(&self, iface: usize, queue: u32, fd: BorrowedFd<'_>) -> Result<()> {
        if let Steering::Programs { programs, .. } = self {
            programs[iface]
                .set_socket(queue, fd)
                .context("XSKMAP entry")?;
        }
        Ok(())
    }

    /// What is steered now.
    pub fn current(&self) -> &Steered {
        match self {
            Steering::Programs { current, .. } | Steering::Nftables { current, .. } => current,
        }
    }

    /// Brings the maps / the guard to `want`.
    pub fn update(&mut self, want: Steered) -> Result<()> {
        if *self.current() == want {
            return Ok(());
        }
        match self {
            Steering::Programs {
                programs, current, ..
            } => {
                for prog in programs.iter() {
                    let added = |new: &[IpAddr], old: &[IpAddr]| -> Vec<IpAddr> {
                        new.iter().filter(|a| !old.contains(a)).copied().collect()
                    };
                    for a in added(&want.vips, &current.vips) {
                        prog.add_vip(a)?;
                    }
                    for a in added(&current.vips, &want.vips) {
                        prog.remove_vip(a)?;
                    }
                    for a in added(&want.real_servers, &current.real_servers) {
                        prog.add_real_server(a)?;
                    }
                    for a in added(&current.real_servers, &want.real_servers) {
                        prog.remove_real_server(a)?;
                    }
                    for a in added(&want.locals, &current.locals) {
                        prog.add_local(a)?;
                    }
                    for a in added(&current.locals, &want.locals) {
                        prog.remove_local(a)?;
                    }
                }
                *current = want;
            }
            Steering::Nftables {
                interfaces,
                current,
            } => {
                nft(&ruleset(interfaces, &want)).context("updating the nftables guard")?;
                *current = want;
            }
        }
        Ok(())
    }
}

impl Drop for Steering {
    fn drop(&mut self) {
        if let Steering::Nftables { .. } = self
            && let Err(e) = nft("delete table netdev xvs\n")
        {
            tracing::warn!(error = %format!("{e:#}"), "removing the nftables guard");
        }
    }
}

/// The guard table, replacing any previous one in one transaction.
fn ruleset(interfaces: &[String], s: &Steered) -> String {
    let set = |v6: bool, addrs: &[IpAddr]| -> String {
        let items: Vec<String> = addrs
            .iter()
            .filter(|a| a.is_ipv6() == v6)
            .map(IpAddr::to_string)
            .collect();
        if items.is_empty() {
            String::new()
        } else {
            format!("elements = {{ {} }}", items.join(", "))
        }
    };
    // One base chain per interface (a multi-device chain needs Linux 5.5).
    let hooks: String = interfaces
        .iter()
        .enumerate()
        .map(|(i, name)| {
            format!(
                "  chain in{i} {{\n    type filter hook ingress device \"{name}\" priority -500; policy accept;\n    jump guard\n  }}\n"
            )
        })
        .collect();
    format!(
        "table netdev xvs {{}}
delete table netdev xvs
table netdev xvs {{
  set vip4 {{ type ipv4_addr; {vip4} }}
  set vip6 {{ type ipv6_addr; {vip6} }}
  set rs4 {{ type ipv4_addr; {rs4} }}
  set rs6 {{ type ipv6_addr; {rs6} }}
  set local4 {{ type ipv4_addr; {local4} }}
  set local6 {{ type ipv6_addr; {local6} }}
  chain guard {{
    meta protocol vmap {{ ip : jump guard4, ip6 : jump guard6 }}
  }}
  chain guard4 {{
    ip daddr @vip4 jump vip4
    ip saddr @rs4 ip daddr != @local4 ip daddr != 224.0.0.0/3 drop
  }}
  chain vip4 {{
    icmp type echo-request accept
    drop
  }}
  chain guard6 {{
    ip6 daddr @vip6 jump vip6
    ip6 saddr @rs6 ip6 daddr != @local6 ip6 daddr != {{ ff00::/8, fe80::/10 }} drop
  }}
  chain vip6 {{
    icmpv6 type echo-request accept
    drop
  }}
{hooks}}}
",
        vip4 = set(false, &s.vips),
        vip6 = set(true, &s.vips),
        rs4 = set(false, &s.real_servers),
        rs6 = set(true, &s.real_servers),
        local4 = set(false, &s.locals),
        local6 = set(true, &s.locals),
    )
}

/// Runs `nft -f -` with `script`.
fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (install the nftables package)")?;
    child
        .stdin
        .take()
        .context("nft stdin")?
        .write_all(script.as_bytes())
        .context("writing to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// GRO turned off on the interfaces where it was on (generic XDP and AF_PACKET
/// see frames after GRO; an aggregated frame fits no AF_XDP frame or ring slot);
/// turned back on at drop.
#[derive(Debug, Default)]
pub struct GroOff {
    restore: Vec<String>,
}

impl GroOff {
    /// Turns GRO off on each of `names` that has it on.
    pub fn apply(names: &[String]) -> Result<GroOff> {
        let mut guard = GroOff::default();
        for name in names {
            let on = xvs_io::sys::ethtool::gro(name)
                .with_context(|| format!("interface {name}: reading GRO (ETHTOOL_GGRO)"))?;
            if on {
                xvs_io::sys::ethtool::set_gro(name, false)
                    .with_context(|| format!("interface {name}: turning GRO off"))?;
                tracing::warn!(interface = %name, "GRO turned off for this mode (restored at exit)");
                guard.restore.push(name.clone());
            }
        }
        Ok(guard)
    }
}

impl Drop for GroOff {
    fn drop(&mut self) {
        for name in &self.restore {
            if let Err(e) = xvs_io::sys::ethtool::set_gro(name, true) {
                tracing::warn!(interface = %name, error = %e, "could not turn GRO back on");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_table_names_each_family_and_replaces_itself() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let text = ruleset(
            &["ext".into(), "int".into()],
            &Steered {
                vips: vec![ip("198.18.1.1"), ip("2001:db8:1::1")],
                real_servers: vec![ip("198.19.0.10")],
                locals: vec![ip("198.19.0.1")],
            },
        );
        // One transaction: create (so that delete cannot fail), delete, define.
        assert!(
            text.starts_with("table netdev xvs {}\ndelete table netdev xvs\ntable netdev xvs {")
        );
        assert!(text.contains("set vip4 { type ipv4_addr; elements = { 198.18.1.1 } }"));
        assert!(text.contains("set vip6 { type ipv6_addr; elements = { 2001:db8:1::1 } }"));
        assert!(
            text.contains("set rs6 { type ipv6_addr;  }"),
            "empty sets stay declared"
        );
        // A frame to a VIP costs one set lookup: the ping test, then the drop.
        assert!(text.contains("ip daddr @vip4 jump vip4"));
        assert!(text.contains("chain vip4 {\n    icmp type echo-request accept\n    drop\n  }"));
        assert!(text.contains("chain vip6 {\n    icmpv6 type echo-request accept\n    drop\n  }"));
        for (i, name) in ["ext", "int"].iter().enumerate() {
            assert!(text.contains(&format!(
                "chain in{i} {{\n    type filter hook ingress device \"{name}\" priority -500; policy accept;\n    jump guard\n  }}"
            )));
        }
        assert!(text.contains("ip saddr @rs4 ip daddr != @local4 ip daddr != 224.0.0.0/3 drop"));
    }
}
