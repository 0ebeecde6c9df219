//! What the director decides for a frame, and why it drops one. Layer: pure core.

use crate::classify::IfaceId;

/// The decision for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the (rewritten in place) frame out of `iface`.
    Forward {
        /// Out interface.
        iface: IfaceId,
    },
    /// Not for the director: the kernel keeps it (ARP, ND, the host's own traffic).
    Pass,
    /// Dropped, and counted under the reason.
    Drop(DropReason),
}

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident => $label:literal,)*) => {
        /// Why a frame was dropped. Every drop is counted under one of these.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum DropReason { $($(#[$doc])* $name,)* }

        impl DropReason {
            /// Every reason, in counter order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];
            /// Number of reasons.
            pub const COUNT: usize = DropReason::ALL.len();
            /// Stable snake_case name for counters and logs.
            pub const fn name(self) -> &'static str {
                match self { $(DropReason::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// A header is cut short (frame shorter than a length field says).
    Truncated => "truncated",
    /// A header is inconsistent (bad version, IHL < 5, impossible lengths).
    Malformed => "malformed",
    /// IPv4 header checksum wrong.
    BadIpChecksum => "bad_ip_checksum",
    /// A non-first fragment of a flow whose first fragment was not seen.
    UnknownFragment => "unknown_fragment",
    /// TTL / hop limit would reach 0 when forwarding in NAT mode.
    TtlExceeded => "ttl_exceeded",
    /// A mark rule with action `drop` matched (blocking).
    Blocked => "blocked",
    /// The service has no real server that can take the flow.
    NoServer => "no_server",
    /// A TCP segment without SYN that matches no connection (and the service is not sloppy).
    NoConnection => "no_connection",
    /// No route to the destination of a NAT reply.
    NoRoute => "no_route",
    /// The next hop's MAC is not resolved yet (the control side was asked to resolve it).
    NeighbourUnresolved => "neighbour_unresolved",
    /// The connection's real server is no longer in the service snapshot.
    DestGone => "dest_gone",
}
