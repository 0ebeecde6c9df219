//! Compiled classifier and its per-packet lookup.
//!
//! # Layer
//!
//! Data path: [`Classifier::classify`] does no allocation, takes no lock and
//! cannot panic for any [`PacketMeta`] (every index it computes is a class
//! id produced by compile for that very node, in bounds by construction).
//! The structure is immutable after compile (`Send + Sync`).
//!
//! # Invariants (established by `compile`)
//!
//! * `RangeMap`: `starts` is strictly increasing, `starts[0] == 0`, and
//!   `class.len() == starts.len()`; interval `i` is `starts[i]..starts[i+1]`.
//! * `V4Trie`: `l1` has 65536 entries, `l2`/`l3` whole 256-entry chunks;
//!   an entry with [`TRIE_PTR`] set names an existing chunk of the next
//!   level, `l3` holds only class ids, and every key maps to the class the
//!   binary search over the same intervals would give.
//! * `Table`: `data.len() == rows * cols`, indexed by `(left, right)` class
//!   ids of the node's children; entries are class ids of the node, or in
//!   the final table a rule index or [`NONE`].
//! * A node's table is present only if both children's tables are (or the
//!   children are phase-0 fields).
//! * If there is no final table, `frontier` lists every highest built node,
//!   each with one `words`-word bitset per class; otherwise it is empty.
//! * `actions.is_empty()` exactly when the classifier is empty; then nothing
//!   else is read.

use std::net::IpAddr;

use super::{Action, Decision, PacketMeta};

/// "No matching rule" in the final table.
pub(super) const NONE: u32 = u32::MAX;

// Node ids: phase-0 fields, then combining nodes.
pub(super) const SRC: usize = 0;
pub(super) const DST: usize = 1;
pub(super) const PROTO: usize = 2;
pub(super) const IFACE: usize = 3;
pub(super) const SPORT: usize = 4;
pub(super) const DPORT: usize = 5;
pub(super) const A: usize = 6;
pub(super) const B: usize = 7;
pub(super) const C: usize = 8;
pub(super) const D: usize = 9;
pub(super) const NODES: usize = 10;

/// Combining nodes `(node, left child, right child)` in evaluation order.
pub(super) const COMBOS: [(usize, usize, usize); 4] = [
    (B, PROTO, IFACE),
    (C, SPORT, DPORT),
    (D, B, C),
    (A, SRC, DST),
];

/// Sorted elementary intervals of one field → class id.
#[derive(Clone, Debug, Default)]
pub(super) struct RangeMap<K> {
    pub(super) starts: Box<[K]>,
    pub(super) class: Box<[u32]>,
}

impl<K: Copy + Ord> RangeMap<K> {
    #[inline]
    pub(super) fn lookup(&self, key: K) -> u32 {
        // starts[0] == 0 <= key, so the partition point is >= 1.
        let i = self.starts.partition_point(|&s| s <= key);
        self.class[i.saturating_sub(1)]
    }

    pub(super) fn bytes(&self) -> usize {
        self.starts.len() * size_of::<K>() + self.class.len() * 4
    }
}

/// IPv4 phase-0 map: a binary search for few intervals, a 16-8-8 multibit
/// trie (three dependent loads at most) for many.
#[derive(Clone, Debug)]
pub(super) enum V4Map {
    Search(RangeMap<u32>),
    Trie(V4Trie),
}

impl Default for V4Map {
    fn default() -> Self {
        V4Map::Search(RangeMap::default())
    }
}

impl V4Map {
    #[inline]
    fn lookup(&self, key: u32) -> u32 {
        match self {
            V4Map::Search(m) => m.lookup(key),
            V4Map::Trie(t) => t.lookup(key),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        match self {
            V4Map::Search(m) => m.bytes(),
            V4Map::Trie(t) => t.bytes(),
        }
    }
}

/// Entry flag: the rest of the entry is a chunk index of the next level
/// (else it is a class id, always `< TRIE_PTR`).
pub(super) const TRIE_PTR: u32 = 1 << 31;

/// 16-8-8 multibit trie over IPv4 keys. `l1` has 65536 entries, `l2` and
/// `l3` are chunks of 256 entries; every pointer entry names an existing
/// chunk, every `l3` entry is a class id.
#[derive(Clone, Debug)]
pub(super) struct V4Trie {
    pub(super) l1: Box<[u32]>,
    pub(super) l2: Box<[u32]>,
    pub(super) l3: Box<[u32]>,
}

impl V4Trie {
    #[inline]
    fn lookup(&self, key: u32) -> u32 {
        let e = self.l1[(key >> 16) as usize];
        if e & TRIE_PTR == 0 {
            return e;
        }
        let e = self.l2[((e & !TRIE_PTR) as usize) << 8 | ((key >> 8) & 0xff) as usize];
        if e & TRIE_PTR == 0 {
            return e;
        }
        self.l3[((e & !TRIE_PTR) as usize) << 8 | (key & 0xff) as usize]
    }

    pub(super) fn bytes(&self) -> usize {
        (self.l1.len() + self.l2.len() + self.l3.len()) * 4
    }
}

/// A phase table indexed by a pair of class ids.
#[derive(Clone, Debug)]
pub(super) struct Table {
    pub(super) data: Box<[u32]>,
    pub(super) cols: usize,
}

impl Table {
    #[inline]
    fn get(&self, left: u32, right: u32) -> u32 {
        self.data[left as usize * self.cols + right as usize]
    }

    pub(super) fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// Class bitsets of one frontier node, class-major, `words` words each.
#[derive(Clone, Debug)]
pub(super) struct Frontier {
    pub(super) node: usize,
    pub(super) bits: Box<[u64]>,
}

/// A compiled, immutable rule set. Build with [`Classifier::compile`].
#[derive(Clone)]
pub struct Classifier {
    pub(super) actions: Box<[Action]>,
    pub(super) src4: V4Map,
    pub(super) src6: RangeMap<u128>,
    pub(super) dst4: V4Map,
    pub(super) dst6: RangeMap<u128>,
    /// 256 entries when non-empty.
    pub(super) proto: Box<[u32]>,
    pub(super) iface: RangeMap<u16>,
    pub(super) sport: RangeMap<u16>,
    pub(super) sport_none: u32,
    pub(super) dport: RangeMap<u16>,
    pub(super) dport_none: u32,
    pub(super) tables: [Option<Table>; NODES],
    pub(super) final_table: Option<Table>,
    pub(super) frontier: Box<[Frontier]>,
    /// Bitset words per class, `⌈rules / 64⌉`.
    pub(super) words: usize,
    /// Number of classes per node (statistics).
    pub(super) classes: [usize; NODES],
}

/// Size and shape of a compiled classifier (for logs and capacity planning).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifierStats {
    pub rules: usize,
    /// Approximate heap bytes of the compiled classifier.
    pub memory_bytes: usize,
    /// Classes of the source and destination address fields (both families).
    pub src_classes: usize,
    pub dst_classes: usize,
    /// Classes of the (src, dst) node, if its table was built.
    pub address_classes: Option<usize>,
    /// Classes of the (protocol, iface, ports) node, if its table was built.
    pub l4_classes: Option<usize>,
    /// Whether every phase table was built (constant-time lookup).
    pub fully_precomputed: bool,
    /// Worst-case bitset words ANDed per packet (0 when fully precomputed).
    pub and_words_per_packet: usize,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Classifier {
    /// A classifier with no rules: every packet gets [`Decision::NO_MATCH`].
    pub fn empty() -> Classifier {
        Classifier {
            actions: Box::default(),
            src4: V4Map::default(),
            src6: RangeMap::default(),
            dst4: V4Map::default(),
            dst6: RangeMap::default(),
            proto: Box::default(),
            iface: RangeMap::default(),
            sport: RangeMap::default(),
            sport_none: 0,
            dport: RangeMap::default(),
            dport_none: 0,
            tables: Default::default(),
            final_table: None,
            frontier: Box::default(),
            words: 0,
            classes: [0; NODES],
        }
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Number of rules compiled in.
    pub fn rule_count(&self) -> usize {
        self.actions.len()
    }

    /// First matching rule for `pkt`, exactly as [`super::classify_linear`].
    /// No allocation, no lock.
    #[inline]
    pub fn classify(&self, pkt: &PacketMeta) -> Decision {
        if self.actions.is_empty() {
            return Decision::NO_MATCH;
        }
        let mut id = [0u32; NODES];
        id[SRC] = match pkt.src {
            IpAddr::V4(a) => self.src4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.src6.lookup(u128::from(a)),
        };
        id[DST] = match pkt.dst {
            IpAddr::V4(a) => self.dst4.lookup(u32::from(a)),
            IpAddr::V6(a) => self.dst6.lookup(u128::from(a)),
        };
        id[PROTO] = self.proto[usize::from(pkt.protocol)];
        id[IFACE] = self.iface.lookup(pkt.iface.0);
        (id[SPORT], id[DPORT]) = match pkt.ports {
            Some((s, d)) => (self.sport.lookup(s), self.dport.lookup(d)),
            None => (self.sport_none, self.dport_none),
        };
        for (node, left, right) in COMBOS {
            if let Some(t) = &self.tables[node] {
                id[node] = t.get(id[left], id[right]);
            }
        }
        match &self.final_table {
            Some(f) => self.decision(f.get(id[A], id[D])),
            None => self.and_frontier(&id),
        }
    }

    /// Fallback: AND the frontier nodes' class bitsets, first non-zero word.
    fn and_frontier(&self, id: &[u32; NODES]) -> Decision {
        let w = self.words;
        for k in 0..w {
            let mut x = u64::MAX;
            for f in &self.frontier {
                x &= f.bits[id[f.node] as usize * w + k];
                if x == 0 {
                    break;
                }
            }
            if x != 0 {
                return self.decision(k as u32 * 64 + x.trailing_zeros());
            }
        }
        Decision::NO_MATCH
    }

    #[inline]
    fn decision(&self, rule: u32) -> Decision {
        match self.actions.get(rule as usize) {
            Some(&action) => Decision {
                action,
                rule: Some(rule),
            },
            None => Decision::NO_MATCH,
        }
    }

    /// Size and shape of the compiled form.
    pub fn stats(&self) -> ClassifierStats {
        let fully = self.final_table.is_some() || self.is_empty();
        ClassifierStats {
            rules: self.rule_count(),
            memory_bytes: self.memory_bytes(),
            src_classes: self.classes[SRC],
            dst_classes: self.classes[DST],
            address_classes: self.tables[A].as_ref().map(|_| self.classes[A]),
            l4_classes: self.tables[D].as_ref().map(|_| self.classes[D]),
            fully_precomputed: fully,
            and_words_per_packet: if fully {
                0
            } else {
                self.frontier.len() * self.words
            },
        }
    }

    /// Approximate heap bytes used by the compiled form.
    pub fn memory_bytes(&self) -> usize {
        self.actions.len() * size_of::<Action>()
            + self.src4.bytes()
            + self.src6.bytes()
            + self.dst4.bytes()
            + self.dst6.bytes()
            + self.proto.len() * 4
            + self.iface.bytes()
            + self.sport.bytes()
            + self.dport.bytes()
            + self
                .tables
                .iter()
                .flatten()
                .map(Table::bytes)
                .sum::<usize>()
            + self.final_table.as_ref().map_or(0, Table::bytes)
            + self
                .frontier
                .iter()
                .map(|f| f.bits.len() * 8)
                .sum::<usize>()
    }
}
