//! # xvs-io — the I/O layer of the xvs load-balancing director
//!
//! Everything that talks to the kernel lives here: the XDP steering program and
//! its BPF maps ([`steer`]); the workers' packet I/O behind one trait
//! ([`frames::FrameIo`]): AF_XDP ports on our own rings ([`xsk`], over
//! [`sys::xsk`]) and the AF_PACKET fallback on TPACKET_V3 rings with fanout
//! ([`packet`], over [`sys::tpacket`]); the kernel's links, addresses, routes and
//! neighbours over rtnetlink, and neighbour resolution, for the control thread
//! ([`netlink`]); GRO switching ([`sys::ethtool`]).
//!
//! Invariants:
//! - all `unsafe` lives in [`sys`] (the rest of the crate is `deny(unsafe_code)`);
//!   every `unsafe` block there names each precondition in a `// SAFETY:` comment;
//! - kernel objects (maps, programs) are owned file descriptors, released on drop;
//! - this crate does not depend on `xvs-core` (only its tests do, for frames).

#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod frames;
pub mod netlink;
pub mod packet;
pub mod steer;
#[allow(unsafe_code)]
pub mod sys;
pub mod testing;
pub mod xsk;
