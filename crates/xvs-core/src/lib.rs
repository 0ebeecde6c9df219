//! # xvs-core — the decision engine of the xvs load-balancing director
//!
//! Pure and sans-IO: no sockets, no clock, no threads, no `unsafe`. Everything the
//! director decides for a frame lives here, so that it can be tested byte for byte
//! and fuzzed:
//!
//! - [`wire`]: zero-copy packet views (Ethernet + 802.1Q, ARP, IPv4, IPv6 with
//!   extension headers, TCP, UDP, ICMP, ICMPv6), checksums, a test frame builder;
//! - [`classify`]: netfilter-style mark rules compiled for constant-ish lookup;
//! - [`service`]: the immutable service snapshot (services, real servers, states);
//! - [`sched`]: schedulers (rr, wrr, lc, wlc, sed, nq, sh, dh, mh, fo), built on the
//!   control side, selected on the data path;
//! - [`conntrack`] and [`persist`]: the shared, sharded, bounded connection and
//!   persistence tables; [`table`] is their common bounded-table machinery and
//!   [`index`] their cache-line-bucket hash index;
//! - [`net`]: interfaces, routes and neighbours as the data path sees them;
//! - [`forward`]: `Director::process` — frame in, verdict out, frame rewritten;
//! - [`health`]: keepalived-style health checkers as sans-IO state machines.
//!
//! Time enters as [`time::Time`] arguments; the tables are shared through `Arc`s by
//! the I/O layer's workers.

#![forbid(unsafe_code)]

pub mod addr;
pub mod classify;
pub mod conntrack;
pub mod forward;
pub mod health;
pub mod index;
pub mod lab;
pub mod net;
pub mod persist;
pub mod sched;
pub mod service;
pub mod table;
pub mod time;
pub mod wire;

pub use forward::{Director, DropReason, Prefetch, Shared, Snapshot, TableSizes, Verdict};
