//! Mark rules: netfilter-style "first match wins" packet classification
//! (what `iptables -j MARK --set-mark` does for IPVS firewall-mark services,
//! plus blocking rules), compiled into a form whose per-packet cost does not
//! grow linearly with the number of rules.
//!
//! # Layer
//!
//! Pure core, no I/O, no `unsafe`.
//! * **Compile** ([`Classifier::compile`], [`Classifier::compile_with`],
//!   module `compile`) is control side: it runs on the control thread, may
//!   allocate, and is bounded by a [`CompileOptions`] memory and work budget.
//! * **Classify** ([`Classifier::classify`], module `lookup`) is data path: no
//!   allocation, no lock, no panic on any input, reads only immutable data.
//!   A [`Classifier`] is `Send + Sync` and never mutated after compile; the
//!   control thread swaps whole classifiers (e.g. behind an `Arc`).
//!
//! # Semantics
//!
//! Rules are ordered, the first matching rule wins. A [`Rule`] matches when
//! every present criterion matches; an empty `Vec` (or `None` protocol) means
//! "any". CIDR criteria are sets (any member matches); an IPv4 CIDR never
//! matches an IPv6 address and vice versa, so a rule whose `src` holds only
//! IPv6 CIDRs never matches an IPv4 packet. A port criterion never matches a
//! packet without ports ([`PacketMeta::ports`] `== None`, e.g. ICMP). The
//! action is [`Action::Mark`] (nonzero), [`Action::Drop`] or
//! [`Action::Accept`] (stop evaluating, no mark). No matching rule gives
//! [`Decision::NO_MATCH`] (accept, no mark, `rule: None`).
//! [`classify_linear`] is the executable specification; the compiled
//! classifier returns exactly what it returns, for every packet (property
//! tested, including mixed-family `PacketMeta`s that cannot occur on a wire).
//!
//! # Algorithm: Recursive Flow Classification with a bitset fallback
//!
//! Gupta & McKeown's RFC, with the phase tree
//!
//! ```text
//! phase 0 (one lookup per field)   phase 1          phase 2     phase 3
//! src addr  ─┐
//! dst addr  ─┴──────────────────── A ─────────────────────────┐
//! protocol  ─┐                                                ├─ F → rule
//! in_iface  ─┴──────────────────── B ─┐                       │
//! src port  ─┐                        ├──────────── D ────────┘
//! dst port  ─┴──────────────────── C ─┘
//! ```
//!
//! * **Phase 0.** Every field's value space is cut into elementary intervals
//!   at the boundaries of the rules' ranges (a CIDR is a range of the `u32`
//!   / `u128` key, a port set is a set of `u16` ranges, a protocol or an
//!   interface a range of one). A sweep over the sorted boundaries computes
//!   each interval's set of matching rules as a bitset; identical bitsets
//!   are deduplicated into an **equivalence-class id**. Lookup is a binary
//!   search over the sorted interval starts (addresses: one map per family,
//!   both families sharing one class-id space; ports: one map plus a "no
//!   ports" class = the rules without that port criterion), or a 256-entry
//!   table (protocol). An IPv4 address field with many intervals (default
//!   ≥ 64) uses a 16-8-8 multibit trie instead (≤ 3 dependent loads;
//!   256 KiB + 1 KiB per /16 or /24 that holds a boundary, capped at
//!   `max(1 MiB, 32 ×` the search map`)`, else the binary search stays):
//!   the binary search over ~20 000 boundaries was the one cost that grew
//!   with the rule count.
//! * **Phases 1–3.** Each combining node is a table indexed by the pair of its
//!   children's class ids, precomputed at compile time: the entry for
//!   `(x, y)` is the class id of `bits(x) & bits(y)` (deduplicated again), and
//!   in the last phase directly the index of the lowest set bit, i.e. the
//!   first matching rule. A full RFC lookup is therefore 6 phase-0 lookups
//!   (IPv4 trie: ≤ 3 loads; IPv6, ports, interface: `O(log intervals)`
//!   binary searches) plus 5 table reads, independent of the rule count
//!   except for the `log`s.
//!
//! **Budget and fallback.** RFC tables are products of class counts and can
//! blow up on adversarial rule sets (e.g. thousands of rules with distinct
//! source *and* destination CIDRs). Nodes are built bottom-up in the order
//! B, C, D, A, F; a node whose table (or whose class bitsets, counted while
//! they are built) would overflow [`CompileOptions::max_bytes`], or whose
//! construction would exceed [`CompileOptions::max_work`], is not built.
//! The packet then ends on the *frontier* — the highest built node of each
//! branch (at worst the six phase-0 fields) — and the classifier ANDs the
//! frontier classes' rule bitsets word by word, stopping at the first
//! non-zero word (whose lowest bit is the first matching rule).
//!
//! Why RFC rather than a decision tree or tuple-space search: the realistic
//! rule sets (one rule per client prefix or per VIP/port pair) make every
//! field's class count small except the addresses, the phase-1 products stay
//! near `R` entries, and the lookup is branch-light with a fixed number of
//! memory reads; the bitset fallback gives a hard, documented bound where
//! RFC does not fit.
//!
//! **Worst case per packet**: phase-0 binary searches, `O(log R)` each, plus,
//! when the final table could not be built, at most `k · ⌈R/64⌉` word reads
//! with `k ≤ 6` frontier nodes (a packet that matches nothing and shares no
//! zero word early). With the default budget that happens only for rule
//! sets whose RFC tables exceed 256 MiB; the realistic shape of the bench
//! (10 000 rules: distinct sources, a few VIPs, port sets) compiles fully and
//! classifies in ~constant time. If even the phase-0 bitsets do not fit the
//! budget, compile fails with [`CompileError::MemoryBudget`].
//!
//! # Invariants
//!
//! * At most [`MAX_RULES`] rules; rule indices fit `u32`; `Mark(0)` and
//!   empty port ranges are rejected at compile time.
//! * Every phase-0 map starts at key 0 and covers its whole key space; every
//!   table entry is a valid class id of its node (or a rule index / "none" in
//!   the final table); frontier bitsets hold exactly one `⌈R/64⌉`-word bitset
//!   per class of their node. Bits past the last rule are zero.
//! * For every packet, `Classifier::compile(r)?.classify(p) ==
//!   classify_linear(r, p)`.

mod compile;
mod lookup;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use ipnet::IpNet;

pub use lookup::{Classifier, ClassifierStats};

/// Largest accepted rule set ([`CompileError::TooManyRules`] beyond it).
pub const MAX_RULES: usize = 1 << 20;

/// Input interface of a packet (dense interface index assigned by the daemon).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfaceId(pub u16);

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Set this firewall mark (nonzero) and stop evaluating.
    Mark(u32),
    /// Drop the packet (blocking rule).
    Drop,
    /// Stop evaluating, no mark.
    Accept,
}

/// Inclusive port range; a single port is a range of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// All ports `0..=65535`.
    pub const ALL: PortRange = PortRange::new(0, u16::MAX);

    /// `start..=end` (validated by compile: `start <= end`).
    pub const fn new(start: u16, end: u16) -> Self {
        PortRange { start, end }
    }

    /// The single port `port`.
    pub const fn single(port: u16) -> Self {
        PortRange::new(port, port)
    }

    /// Whether `port` is in the range.
    pub const fn contains(&self, port: u16) -> bool {
        self.start <= port && port <= self.end
    }
}

/// One mark rule. An empty `Vec` (or `protocol: None`) means "any".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    /// Source CIDRs (any of them).
    pub src: Vec<IpNet>,
    /// Destination CIDRs (any of them).
    pub dst: Vec<IpNet>,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...).
    pub protocol: Option<u8>,
    /// Source port set; never matches a packet without ports.
    pub src_ports: Vec<PortRange>,
    /// Destination port set; never matches a packet without ports.
    pub dst_ports: Vec<PortRange>,
    /// Input interfaces (any of them).
    pub in_iface: Vec<IfaceId>,
    /// What to do on match.
    pub action: Action,
}

impl Rule {
    /// A rule matching every packet, with `action`.
    pub fn new(action: Action) -> Self {
        Rule {
            src: Vec::new(),
            dst: Vec::new(),
            protocol: None,
            src_ports: Vec::new(),
            dst_ports: Vec::new(),
            in_iface: Vec::new(),
            action,
        }
    }

    /// Whether this rule matches `pkt` (the linear reference semantics).
    pub fn matches(&self, pkt: &PacketMeta) -> bool {
        fn nets(set: &[IpNet], addr: IpAddr) -> bool {
            set.is_empty() || set.iter().any(|n| n.contains(&addr))
        }
        fn ports(set: &[PortRange], port: Option<u16>) -> bool {
            set.is_empty() || port.is_some_and(|p| set.iter().any(|r| r.contains(p)))
        }
        nets(&self.src, pkt.src)
            && nets(&self.dst, pkt.dst)
            && self.protocol.is_none_or(|p| p == pkt.protocol)
            && ports(&self.src_ports, pkt.ports.map(|p| p.0))
            && ports(&self.dst_ports, pkt.ports.map(|p| p.1))
            && (self.in_iface.is_empty() || self.in_iface.contains(&pkt.iface))
    }
}

/// The packet fields mark rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PacketMeta {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    /// `(source, destination)` ports for TCP/UDP/SCTP, `None` otherwise.
    pub ports: Option<(u16, u16)>,
    pub iface: IfaceId,
}

/// Result of classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Index of the matching rule (for per-rule counters), `None` if none.
    pub rule: Option<u32>,
}

impl Decision {
    /// No rule matched: accept, no mark.
    pub const NO_MATCH: Decision = Decision {
        action: Action::Accept,
        rule: None,
    };
}

/// Compile limits. Exceeding them makes compile fall back to bitset ANDs for
/// the affected phases (see the module doc), or fail with
/// [`CompileError::MemoryBudget`] if even phase 0 does not fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Bytes the compiled classifier may use, and that compile may hold in
    /// class bitsets and tables at any one time. Default 256 MiB.
    pub max_bytes: usize,
    /// Bitset word operations compile may spend building one phase table
    /// (bounds compile time). Default 2^31 (about a second).
    pub max_work: u64,
    /// IPv4 address fields with at least this many elementary intervals use
    /// a 16-8-8 multibit trie (≤ 3 loads; 256 KiB plus 1 KiB per split /16
    /// or /24, capped at `max(1 MiB, 32 × the binary-search map)`) instead
    /// of a binary search. Default 64.
    pub trie_min_intervals: usize,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            max_bytes: 256 << 20,
            max_work: 1 << 31,
            trie_min_intervals: 64,
        }
    }
}

/// Why a rule set was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("too many rules: {count} (at most {max})")]
    TooManyRules { count: usize, max: usize },
    #[error("rule {rule}: Mark(0) is not a mark (0 means unmarked)")]
    ZeroMark { rule: usize },
    #[error("rule {rule}: empty {which} port range {start}..={end}")]
    EmptyPortRange {
        rule: usize,
        /// `"source"` or `"destination"`.
        which: &'static str,
        start: u16,
        end: u16,
    },
    #[error("memory budget exceeded: {needed} bytes needed, budget {budget}")]
    MemoryBudget { needed: usize, budget: usize },
}

/// Reference classifier: the obvious first-match loop, `O(rules)`.
/// This is the specification the compiled [`Classifier`] is tested against.
pub fn classify_linear(rules: &[Rule], pkt: &PacketMeta) -> Decision {
    rules
        .iter()
        .position(|r| r.matches(pkt))
        .map_or(Decision::NO_MATCH, |i| Decision {
            action: rules[i].action,
            rule: Some(i as u32),
        })
}
