//! Rule-set compilation: phase-0 interval maps, RFC phase tables, bitset
//! fallback (algorithm in the parent module doc).
//!
//! # Layer
//!
//! Control side: runs on the control thread, allocates freely, but holds at
//! most [`CompileOptions::max_bytes`] of class bitsets and tables at once
//! (checked as they grow) and spends at most [`CompileOptions::max_work`]
//! word operations per phase table.
//!
//! # Invariants
//!
//! * A class is identified by its rule bitset (`⌈R/64⌉` words, bits past the
//!   last rule zero); an [`Arena`] holds each distinct bitset once, and
//!   class ids are dense `0..len`.
//! * Each node has exactly one parent; a node's bitsets are dropped exactly
//!   when its parent's table is built, so the nodes still holding bitsets at
//!   the end are the frontier the data path ANDs.
//! * Rules are validated (count, `Mark(0)`, empty port ranges) before any
//!   work; validation errors name the first offending rule.

use core::hash::BuildHasher;

use foldhash::fast::FixedState;
use hashbrown::HashTable;
use ipnet::IpNet;

use super::lookup::{
    A, B, C, Classifier, D, DPORT, DST, Frontier, IFACE, NODES, NONE, PROTO, RangeMap, SPORT, SRC,
    TRIE_PTR, Table, V4Map, V4Trie,
};
use super::{Action, CompileError, CompileOptions, MAX_RULES, PortRange, Rule};

impl Classifier {
    /// Compile `rules` with the default [`CompileOptions`].
    pub fn compile(rules: &[Rule]) -> Result<Classifier, CompileError> {
        Self::compile_with(rules, &CompileOptions::default())
    }

    /// Compile `rules` within `opts`' memory and work budget.
    pub fn compile_with(rules: &[Rule], opts: &CompileOptions) -> Result<Classifier, CompileError> {
        validate(rules)?;
        if rules.is_empty() {
            return Ok(Classifier::empty());
        }
        Builder::new(rules, opts).build()
    }
}

fn validate(rules: &[Rule]) -> Result<(), CompileError> {
    if rules.len() > MAX_RULES {
        return Err(CompileError::TooManyRules {
            count: rules.len(),
            max: MAX_RULES,
        });
    }
    for (i, r) in rules.iter().enumerate() {
        if r.action == Action::Mark(0) {
            return Err(CompileError::ZeroMark { rule: i });
        }
        for (which, set) in [("source", &r.src_ports), ("destination", &r.dst_ports)] {
            if let Some(p) = set.iter().find(|p| p.start > p.end) {
                return Err(CompileError::EmptyPortRange {
                    rule: i,
                    which,
                    start: p.start,
                    end: p.end,
                });
            }
        }
    }
    Ok(())
}

/// Deduplicated class bitsets of one node; class `c` is
/// `words[c*w .. (c+1)*w]`.
struct Arena {
    w: usize,
    words: Vec<u64>,
    index: HashTable<u32>,
    hasher: FixedState,
}

impl Arena {
    fn new(w: usize) -> Self {
        Arena {
            w,
            words: Vec::new(),
            index: HashTable::new(),
            hasher: FixedState::default(),
        }
    }

    fn len(&self) -> usize {
        self.words.len() / self.w
    }

    fn class(&self, c: usize) -> &[u64] {
        &self.words[c * self.w..(c + 1) * self.w]
    }

    fn bytes(&self) -> usize {
        self.words.capacity() * 8 + self.index.capacity() * 5
    }

    /// Class id of `bits`, adding it if new.
    fn intern(&mut self, bits: &[u64]) -> u32 {
        let Arena {
            w,
            words,
            index,
            hasher,
        } = self;
        let w = *w;
        let slot = |c: u32| c as usize * w..(c as usize + 1) * w;
        let h = hasher.hash_one(bits);
        if let Some(&c) = index.find(h, |&c| &words[slot(c)] == bits) {
            return c;
        }
        let c = (words.len() / w) as u32;
        words.extend_from_slice(bits);
        index.insert_unique(h, c, |&c| hasher.hash_one(&words[slot(c)]));
        c
    }
}

fn set_bit(bits: &mut [u64], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

/// Sweep the sorted boundaries of `ranges` (`(lo, hi, rule)`, inclusive, in
/// `0..=max`) and return the elementary intervals `(start, class)`, merged
/// where adjacent intervals share a class; the first start is 0. `base`
/// holds the rules without a criterion on this field (they match everywhere).
fn sweep(
    arena: &mut Arena,
    base: &[u64],
    ranges: &[(u128, u128, u32)],
    max: u128,
    rules: usize,
) -> Vec<(u128, u32)> {
    let mut events: Vec<(u128, bool, u32)> = Vec::with_capacity(ranges.len() * 2);
    for &(lo, hi, r) in ranges {
        events.push((lo, true, r));
        if hi < max {
            events.push((hi + 1, false, r));
        }
    }
    events.sort_unstable_by_key(|e| e.0);
    // How many of a rule's ranges cover the current point (ranges may overlap).
    let mut cover = vec![0u32; if ranges.is_empty() { 0 } else { rules }];
    let mut cur = base.to_vec();
    let mut out: Vec<(u128, u32)> = Vec::new();
    if events.first().is_none_or(|e| e.0 != 0) {
        out.push((0, arena.intern(&cur)));
    }
    let mut i = 0;
    while i < events.len() {
        let pos = events[i].0;
        while let Some(&(p, add, r)) = events.get(i)
            && p == pos
        {
            let r = r as usize;
            if add {
                cover[r] += 1;
                if cover[r] == 1 {
                    set_bit(&mut cur, r);
                }
            } else {
                cover[r] -= 1;
                if cover[r] == 0 {
                    cur[r / 64] &= !(1 << (r % 64));
                }
            }
            i += 1;
        }
        let c = arena.intern(&cur);
        if out.last().is_none_or(|&(_, last)| last != c) {
            out.push((pos, c));
        }
    }
    out
}

fn range_map<K>(intervals: &[(u128, u32)], key: impl Fn(u128) -> K) -> RangeMap<K> {
    RangeMap {
        starts: intervals.iter().map(|&(s, _)| key(s)).collect(),
        class: intervals.iter().map(|&(_, c)| c).collect(),
    }
}

/// IPv4 map for `intervals`: the trie when there are at least `min`
/// intervals and it stays within `max(1 MiB, 32 × the search map)`, else
/// the binary search.
fn v4_map(intervals: &[(u128, u32)], min: usize) -> V4Map {
    let search = range_map(intervals, |k| k as u32);
    if intervals.len() < min || intervals.iter().any(|i| i.1 >= TRIE_PTR) {
        return V4Map::Search(search);
    }
    let cap = (1usize << 20).max(32 * search.bytes());
    match v4_trie(&search, cap) {
        Some(t) => V4Map::Trie(t),
        None => V4Map::Search(search),
    }
}

/// Build the 16-8-8 trie of `m`, or `None` past `cap` bytes.
fn v4_trie(m: &RangeMap<u32>, cap: usize) -> Option<V4Trie> {
    // Interval `at` contains `lo`; queries come with nondecreasing `lo`, so
    // a forward-only cursor finds it. Returns the class if `lo..=hi` lie in
    // that one interval, and the interval's end (exclusive, as u64).
    let mut at = 0;
    let mut uniform = |lo: u32, hi: u32| {
        while m.starts.get(at + 1).is_some_and(|&s| s <= lo) {
            at += 1;
        }
        let end = m.starts.get(at + 1).map_or(1 << 32, |&s| u64::from(s));
        (end > u64::from(hi)).then_some((m.class[at], end))
    };
    let mut l1 = vec![0u32; 1 << 16];
    let (mut l2, mut l3) = (Vec::new(), Vec::new());
    let mut i1 = 0;
    while i1 < l1.len() {
        let base1 = (i1 as u32) << 16;
        if let Some((c, end)) = uniform(base1, base1 | 0xffff) {
            // Every /16 wholly below `end` is in the same interval.
            let next = ((end >> 16) as usize).max(i1 + 1);
            l1[i1..next].fill(c);
            i1 = next;
            continue;
        }
        l1[i1] = TRIE_PTR | (l2.len() >> 8) as u32;
        for i2 in 0..256u32 {
            let base2 = base1 | i2 << 8;
            if let Some((c, _)) = uniform(base2, base2 | 0xff) {
                l2.push(c);
                continue;
            }
            l2.push(TRIE_PTR | (l3.len() >> 8) as u32);
            l3.extend((0..256u32).map(|i3| m.lookup(base2 | i3)));
        }
        if ((1 << 16) + l2.len() + l3.len()) * 4 > cap {
            return None;
        }
        i1 += 1;
    }
    Some(V4Trie {
        l1: l1.into_boxed_slice(),
        l2: l2.into_boxed_slice(),
        l3: l3.into_boxed_slice(),
    })
}

/// Per-rule criterion on one field: `None` = any, else inclusive ranges.
type Criterion = Option<Vec<(u128, u128)>>;

/// One key space of a field: the per-rule criterion and the largest key.
type KeySpace<'f> = (&'f dyn Fn(&Rule) -> Criterion, u128);

/// Rules without a criterion (`base`) and all criterion ranges of one field.
fn field(
    rules: &[Rule],
    w: usize,
    f: impl Fn(&Rule) -> Criterion,
) -> (Vec<u64>, Vec<(u128, u128, u32)>) {
    let mut base = vec![0u64; w];
    let mut ranges = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        match f(r) {
            None => set_bit(&mut base, i),
            Some(v) => ranges.extend(v.into_iter().map(|(lo, hi)| (lo, hi, i as u32))),
        }
    }
    (base, ranges)
}

fn nets(set: &[IpNet], v6: bool) -> Criterion {
    (!set.is_empty()).then(|| {
        set.iter()
            .filter_map(|n| match n {
                IpNet::V4(n) if !v6 => Some((
                    u32::from(n.network()).into(),
                    u32::from(n.broadcast()).into(),
                )),
                IpNet::V6(n) if v6 => Some((u128::from(n.network()), u128::from(n.broadcast()))),
                _ => None,
            })
            .collect()
    })
}

fn ports(set: &[PortRange]) -> Criterion {
    (!set.is_empty()).then(|| set.iter().map(|p| (p.start.into(), p.end.into())).collect())
}

struct Builder<'a> {
    rules: &'a [Rule],
    opts: &'a CompileOptions,
    w: usize,
    arenas: [Option<Arena>; NODES],
    tables: [Option<Table>; NODES],
    final_table: Option<Table>,
    classes: [usize; NODES],
    /// Bytes of the phase-0 maps and the action array.
    fixed: usize,
}

impl<'a> Builder<'a> {
    fn new(rules: &'a [Rule], opts: &'a CompileOptions) -> Self {
        Builder {
            rules,
            opts,
            w: rules.len().div_ceil(64),
            arenas: Default::default(),
            tables: Default::default(),
            final_table: None,
            classes: [0; NODES],
            fixed: rules.len() * size_of::<Action>(),
        }
    }

    fn used(&self) -> usize {
        self.fixed
            + self
                .arenas
                .iter()
                .flatten()
                .map(Arena::bytes)
                .sum::<usize>()
            + self
                .tables
                .iter()
                .flatten()
                .map(Table::bytes)
                .sum::<usize>()
            + self.final_table.as_ref().map_or(0, Table::bytes)
    }

    fn check_budget(&self) -> Result<(), CompileError> {
        let needed = self.used();
        if needed > self.opts.max_bytes {
            return Err(CompileError::MemoryBudget {
                needed,
                budget: self.opts.max_bytes,
            });
        }
        Ok(())
    }

    /// Phase 0 of one field over one or two key spaces sharing class ids.
    fn leaf(&mut self, node: usize, spaces: &[KeySpace<'_>]) -> Vec<Vec<(u128, u32)>> {
        let mut arena = Arena::new(self.w);
        let mut out = Vec::new();
        for &(f, max) in spaces {
            let (base, ranges) = field(self.rules, self.w, f);
            out.push(sweep(&mut arena, &base, &ranges, max, self.rules.len()));
        }
        self.arenas[node] = Some(arena);
        out
    }

    fn build(mut self) -> Result<Classifier, CompileError> {
        let src = self.leaf(
            SRC,
            &[
                (&|r: &Rule| nets(&r.src, false), u32::MAX.into()),
                (&|r: &Rule| nets(&r.src, true), u128::MAX),
            ],
        );
        let dst = self.leaf(
            DST,
            &[
                (&|r: &Rule| nets(&r.dst, false), u32::MAX.into()),
                (&|r: &Rule| nets(&r.dst, true), u128::MAX),
            ],
        );
        let proto = self.leaf(
            PROTO,
            &[(
                &|r: &Rule| r.protocol.map(|p| vec![(p.into(), p.into())]),
                u8::MAX.into(),
            )],
        );
        let iface = self.leaf(
            IFACE,
            &[(
                &|r: &Rule| {
                    (!r.in_iface.is_empty()).then(|| {
                        r.in_iface
                            .iter()
                            .map(|i| (i.0.into(), i.0.into()))
                            .collect()
                    })
                },
                u16::MAX.into(),
            )],
        );
        let sport = self.leaf(SPORT, &[(&|r: &Rule| ports(&r.src_ports), u16::MAX.into())]);
        let dport = self.leaf(DPORT, &[(&|r: &Rule| ports(&r.dst_ports), u16::MAX.into())]);
        // "No ports": only the rules without a criterion on that port.
        let sport_none = self.no_ports(SPORT, |r| r.src_ports.is_empty());
        let dport_none = self.no_ports(DPORT, |r| r.dst_ports.is_empty());

        let mut proto_table = vec![0u32; 256];
        let p = &proto[0];
        for (k, &(start, class)) in p.iter().enumerate() {
            let end = p.get(k + 1).map_or(256, |n| n.0 as usize);
            proto_table[start as usize..end].fill(class);
        }
        let maps = (
            v4_map(&src[0], self.opts.trie_min_intervals),
            range_map(&src[1], |k| k),
            v4_map(&dst[0], self.opts.trie_min_intervals),
            range_map(&dst[1], |k| k),
            range_map(&iface[0], |k| k as u16),
            range_map(&sport[0], |k| k as u16),
            range_map(&dport[0], |k| k as u16),
        );
        self.fixed += [
            maps.0.bytes(),
            maps.2.bytes(),
            maps.4.bytes(),
            maps.5.bytes(),
            maps.6.bytes(),
        ]
        .iter()
        .sum::<usize>()
            + maps.1.bytes()
            + maps.3.bytes()
            + 256 * 4;
        for (n, a) in self.arenas.iter().enumerate() {
            self.classes[n] = a.as_ref().map_or(0, Arena::len);
        }
        self.check_budget()?;

        // Phase tables, cheapest first; a failed node leaves its children
        // (and thereby its ancestors' inputs) on the frontier.
        self.combine(B, PROTO, IFACE);
        self.combine(C, SPORT, DPORT);
        self.combine(D, B, C);
        self.combine(A, SRC, DST);
        self.combine_final();
        self.check_budget()?;

        let frontier = self
            .arenas
            .iter_mut()
            .enumerate()
            .filter_map(|(node, a)| {
                a.take().map(|a| Frontier {
                    node,
                    bits: a.words.into_boxed_slice(),
                })
            })
            .collect();
        Ok(Classifier {
            actions: self.rules.iter().map(|r| r.action).collect(),
            src4: maps.0,
            src6: maps.1,
            dst4: maps.2,
            dst6: maps.3,
            proto: proto_table.into_boxed_slice(),
            iface: maps.4,
            sport: maps.5,
            sport_none,
            dport: maps.6,
            dport_none,
            tables: self.tables,
            final_table: self.final_table,
            frontier,
            words: self.w,
            classes: self.classes,
        })
    }

    fn no_ports(&mut self, node: usize, any: impl Fn(&Rule) -> bool) -> u32 {
        let mut base = vec![0u64; self.w];
        for (i, r) in self.rules.iter().enumerate() {
            if any(r) {
                set_bit(&mut base, i);
            }
        }
        self.arenas[node].as_mut().map_or(0, |a| a.intern(&base))
    }

    /// Table entries of `left × right` if they fit the budget, with the bytes
    /// still available for the table and its classes.
    fn plan(&self, left: usize, right: usize) -> Option<(usize, usize)> {
        let (l, r) = (self.arenas[left].as_ref()?, self.arenas[right].as_ref()?);
        let entries = l.len().checked_mul(r.len())?;
        let headroom = self.opts.max_bytes.checked_sub(self.used())?;
        let work = (entries as u64).saturating_mul(self.w as u64);
        (entries.saturating_mul(4) <= headroom && work <= self.opts.max_work)
            .then_some((entries, headroom))
    }

    /// Build the table of `node = left × right`; on budget overflow leave
    /// everything as it was.
    fn combine(&mut self, node: usize, left: usize, right: usize) {
        let Some((entries, headroom)) = self.plan(left, right) else {
            return;
        };
        let (Some(l), Some(r)) = (&self.arenas[left], &self.arenas[right]) else {
            return;
        };
        let w = self.w;
        let mut out = Arena::new(w);
        let mut data = Vec::with_capacity(entries);
        let mut tmp = vec![0u64; w];
        for i in 0..l.len() {
            let x = l.class(i);
            for j in 0..r.len() {
                for ((t, a), b) in tmp.iter_mut().zip(x).zip(r.class(j)) {
                    *t = a & b;
                }
                let before = out.words.len();
                data.push(out.intern(&tmp));
                if out.words.len() != before && entries * 4 + out.bytes() > headroom {
                    return;
                }
            }
        }
        let cols = r.len();
        self.classes[node] = out.len();
        self.tables[node] = Some(Table {
            data: data.into_boxed_slice(),
            cols,
        });
        self.arenas[node] = Some(out);
        self.arenas[left] = None;
        self.arenas[right] = None;
    }

    /// Final table `A × D` → first matching rule.
    fn combine_final(&mut self) {
        let Some((entries, _)) = self.plan(A, D) else {
            return;
        };
        let (Some(l), Some(r)) = (&self.arenas[A], &self.arenas[D]) else {
            return;
        };
        let mut data = Vec::with_capacity(entries);
        for i in 0..l.len() {
            let x = l.class(i);
            for j in 0..r.len() {
                let first = x
                    .iter()
                    .zip(r.class(j))
                    .position(|(a, b)| a & b != 0)
                    .map_or(NONE, |k| {
                        k as u32 * 64 + (x[k] & r.class(j)[k]).trailing_zeros()
                    });
                data.push(first);
            }
        }
        let cols = r.len();
        self.final_table = Some(Table {
            data: data.into_boxed_slice(),
            cols,
        });
        self.arenas[A] = None;
        self.arenas[D] = None;
    }
}
