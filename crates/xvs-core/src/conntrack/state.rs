//! Connection states and their timeouts, IPVS style. Layer: pure core.
//!
//! TCP state follows the flags seen. In NAT mode both directions pass the director;
//! in DR mode only the client's direction does (IPVS's "input only" table), so every
//! transition here is reachable from client packets alone.

/// State of a tracked connection (4 bits in [`super::Conn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnState {
    /// TCP: a SYN was seen, the handshake is not complete.
    SynRecv = 0,
    /// TCP: the handshake completed (an ACK from the client after its SYN).
    Established = 1,
    /// TCP: one side sent FIN.
    FinWait = 2,
    /// TCP: both sides sent FIN.
    TimeWait = 3,
    /// TCP: RST seen.
    Close = 4,
    /// UDP (or another datagram protocol): one state.
    Udp = 5,
}

impl ConnState {
    /// Decode the 4-bit form (unknown values read as `Close`, the shortest timeout).
    pub const fn from_bits(b: u8) -> ConnState {
        match b {
            0 => ConnState::SynRecv,
            1 => ConnState::Established,
            2 => ConnState::FinWait,
            3 => ConnState::TimeWait,
            5 => ConnState::Udp,
            _ => ConnState::Close,
        }
    }

    /// IPVS counts only established TCP connections as active; the rest are inactive.
    pub const fn is_active(self) -> bool {
        matches!(self, ConnState::Established)
    }

    /// The name ipvsadm prints.
    pub const fn name(self) -> &'static str {
        match self {
            ConnState::SynRecv => "SYN_RECV",
            ConnState::Established => "ESTABLISHED",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::Udp => "UDP",
        }
    }
}

/// Per-state timeouts in seconds (ipvsadm --set tcp tcpfin udp, and IPVS's syn/close).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Handshake not complete (default 60 s).
    pub tcp_syn: u32,
    /// Established (default 900 s).
    pub tcp_established: u32,
    /// After a FIN (default 120 s).
    pub tcp_fin: u32,
    /// After a RST (default 10 s).
    pub tcp_close: u32,
    /// UDP (default 300 s).
    pub udp: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn: 60,
            tcp_established: 900,
            tcp_fin: 120,
            tcp_close: 10,
            udp: 300,
        }
    }
}

impl Timeouts {
    /// Timeout of `state`, in milliseconds.
    pub const fn for_state_ms(&self, state: ConnState) -> u32 {
        let secs = match state {
            ConnState::SynRecv => self.tcp_syn,
            ConnState::Established => self.tcp_established,
            ConnState::FinWait | ConnState::TimeWait => self.tcp_fin,
            ConnState::Close => self.tcp_close,
            ConnState::Udp => self.udp,
        };
        secs.saturating_mul(1000)
    }
}

/// TCP flags relevant to the state machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK.
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
}

impl TcpFlags {
    /// The flags of a segment whose flag bits (`wire::tcp_flags`) are `bits`.
    #[inline]
    pub const fn from_bits(bits: u16) -> TcpFlags {
        use crate::wire::tcp_flags::{ACK, FIN, RST, SYN};
        TcpFlags {
            syn: bits & SYN != 0,
            ack: bits & ACK != 0,
            fin: bits & FIN != 0,
            rst: bits & RST != 0,
        }
    }
}

/// Next TCP state after a segment with `flags`; `from_client` tells the direction.
pub const fn tcp_next(state: ConnState, from_client: bool, f: TcpFlags) -> ConnState {
    use ConnState::*;
    if f.rst {
        return Close;
    }
    if f.syn {
        // A client SYN on a closed/closing entry is a new connection on the same tuple.
        return match (state, from_client, f.ack) {
            (Close | TimeWait, true, false) => SynRecv,
            (SynRecv, _, _) => SynRecv,
            (s, _, _) => s,
        };
    }
    if f.fin {
        return match state {
            SynRecv | Established => FinWait,
            FinWait | TimeWait => TimeWait,
            s => s,
        };
    }
    match (state, from_client, f.ack) {
        (SynRecv, true, true) => Established,
        (s, _, _) => s,
    }
}

#[cfg(test)]
mod tests {
    use super::ConnState::*;
    use super::*;

    const SYN: TcpFlags = TcpFlags {
        syn: true,
        ack: false,
        fin: false,
        rst: false,
    };
    const SYNACK: TcpFlags = TcpFlags {
        syn: true,
        ack: true,
        fin: false,
        rst: false,
    };
    const ACK: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: false,
        rst: false,
    };
    const FIN: TcpFlags = TcpFlags {
        syn: false,
        ack: true,
        fin: true,
        rst: false,
    };
    const RST: TcpFlags = TcpFlags {
        syn: false,
        ack: false,
        fin: false,
        rst: true,
    };

    #[test]
    fn nat_handshake_and_close() {
        let mut s = SynRecv;
        s = tcp_next(s, false, SYNACK);
        assert_eq!(s, SynRecv);
        s = tcp_next(s, false, ACK); // server ACK does not establish
        assert_eq!(s, SynRecv);
        s = tcp_next(s, true, ACK);
        assert_eq!(s, Established);
        s = tcp_next(s, true, ACK);
        assert_eq!(s, Established);
        s = tcp_next(s, false, FIN);
        assert_eq!(s, FinWait);
        s = tcp_next(s, true, FIN);
        assert_eq!(s, TimeWait);
        assert_eq!(tcp_next(s, true, SYN), SynRecv);
    }

    #[test]
    fn dr_client_only_and_reset() {
        let s = tcp_next(SynRecv, true, ACK);
        assert_eq!(s, Established);
        assert_eq!(tcp_next(s, true, FIN), FinWait);
        assert_eq!(tcp_next(s, true, RST), Close);
        assert_eq!(tcp_next(Established, true, SYN), Established);
    }

    #[test]
    fn timeouts_and_activity() {
        let t = Timeouts::default();
        assert_eq!(t.for_state_ms(SynRecv), 60_000);
        assert_eq!(t.for_state_ms(Established), 900_000);
        assert_eq!(t.for_state_ms(FinWait), 120_000);
        assert_eq!(t.for_state_ms(Close), 10_000);
        assert_eq!(t.for_state_ms(Udp), 300_000);
        assert!(Established.is_active());
        assert!(!SynRecv.is_active() && !Udp.is_active());
        for b in 0..16 {
            let s = ConnState::from_bits(b);
            assert!(b > 5 || s as u8 == b);
        }
    }
}
