//! The two XDP programs, assembled with `xvs_io::steer::{Insn, Asm}`.
//!
//! ## Generator (`xvs_pktgen_gen`)
//!
//! Runs under `BPF_PROG_RUN` with live frames on the template ([`crate::frame`]):
//!
//! 1. bounds check up to the end of the timestamp (else `XDP_TX` unchanged);
//! 2. `n = counter[0]++` (per-CPU array, one `u64`: no atomics needed, a
//!    test run stays on one CPU);
//! 3. source port = `base + n % flows` (network order);
//! 4. timestamp = `bpf_ktime_get_ns()`, stored at the payload's offset 2;
//! 5. TCP only: checksum updated incrementally (RFC 1624) from the values the
//!    frame held before (a live frame's page is reused with the previous run's
//!    bytes in it, so the update is always from the frame's current state);
//!    UDP carries checksum 0;
//! 6. `XDP_TX`: the frame leaves by the interface it "arrived" on.
//!
//! ## Sink (`xvs_pktgen_sink`)
//!
//! Attached to the receiving interface, at XDP or at tc ingress (an XDP or a tc
//! classifier program, [`ProgType`]: the same steps, only the context's packet
//! pointers and the verdicts differ):
//!
//! 1. Ethernet / IPv4 with IHL 5, not a fragment, UDP or TCP (20-byte header),
//!    long enough for the marker, payload starting with [`crate::frame::MAGIC`]
//!    — else `stats[1]` counts it and it is passed (`XDP_PASS` / `TC_ACT_OK`: ARP, ...);
//! 2. latency = `bpf_ktime_get_ns()` − the frame's timestamp, into
//!    `hist[bucket(latency)]` (see [`bucket_of`]);
//! 3. `flows[sport % flows]` += 1;
//! 4. `dests[ip.dst]` += 1 (per-CPU hash: lookup, else insert then lookup; a
//!    full table counts into `stats[2]`);
//! 5. `stats[0]` += (1 frame, IP total length + 14 bytes); dropped (`XDP_DROP` /
//!    `TC_ACT_SHOT`).
//!
//! All maps are per-CPU (userspace sums the CPUs), so the programs take no
//! lock and do no atomic operation.
//!
//! ## Latency histogram: log-linear, 3 sub-bucket bits
//!
//! Values 0..8 ns have one bucket each; a value `v ≥ 8` with `e = ⌊log2 v⌋`
//! falls into bucket `(e − 2) · 8 + ((v >> (e − 3)) & 7)`: eight buckets per
//! power of two, each 1/8 of it wide (≤ 12.5 % of the value, so the bucket's
//! midpoint is within 6.25 %). [`HIST_BUCKETS`] = 305: 304 cover everything below 2^40 ns
//! (≈ 18 min); larger values, and "negative" latencies (a timestamp from the
//! future, which should not happen with one monotonic clock), land in the last
//! bucket, which [`bucket_value`] reports as overflow.

use xvs_io::steer::{
    Asm, Insn, MD_DATA, MD_DATA_END, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Reg, XdpAction,
    be16, helper,
};
use xvs_io::sys::bpf::ProgType;

use crate::frame::{ETH_LEN, L4_OFFSET, MAGIC, Proto, TCP_CHECKSUM_OFFSET};

/// Buckets of the latency histogram.
pub const HIST_BUCKETS: u32 = 305;
/// Sub-bucket bits of the latency histogram.
const SUB_BITS: u32 = 3;
/// Entries of the sink's `stats` array.
pub const STATS_ENTRIES: u32 = 3;
/// `stats` index: the generator's frames, counted and dropped.
pub const STAT_DELIVERED: u32 = 0;
/// `stats` index: other frames, passed to the kernel.
pub const STAT_PASSED: u32 = 1;
/// `stats` index: frames whose destination did not fit the `dests` table.
pub const STAT_DEST_OVERFLOW: u32 = 2;

const XDP_DROP: i32 = XdpAction::Drop.retval();
const XDP_TX: i32 = XdpAction::Tx.retval();

/// `BPF_NOEXIST` for `bpf_map_update_elem`.
const NOEXIST: i32 = 1;

const fn off(v: usize) -> i16 {
    v as i16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum G {
    /// The frame leaves as it came (generator: `XDP_TX`; recirculator: dropped).
    AsIs,
}

/// The generator program: `flows` ≥ 1 source ports from `base_port`,
/// `counter` a per-CPU array map of one `u64`.
///
/// # Panics
/// If `flows` is 0 or `base_port + flows - 1` exceeds 65535.
pub fn generator(proto: Proto, flows: u32, base_port: u16, counter: i32) -> Vec<Insn> {
    let mut a = Asm::new();
    stamp(&mut a, proto, flows, base_port, counter, None);
    // Stamped or not, the frame leaves by the interface it "arrived" on.
    a.label(G::AsIs)
        .emit([Insn::mov64_imm(R0, XDP_TX), Insn::exit()]);
    a.finish()
}

/// `BPF_F_BROADCAST` for `bpf_redirect_map`: to every device of a devmap.
const BROADCAST: i32 = 1 << 3;

/// The recirculator's maps (descriptors).
#[derive(Debug, Clone, Copy)]
pub struct RecirculatorMaps {
    /// Per-CPU array of one `u64`: frames emitted (the flow counter).
    pub counter: i32,
    /// Array of one `u64`: the count at which frames stop (0 stops at once).
    pub limit: i32,
    /// Devmap of two devices: the way out and the loop's other end.
    pub out: i32,
}

/// The recirculator program ([`crate::recirc`]), on one end of a veth loop: every
/// frame that comes round, while the counter is below the limit, is stamped like
/// the generator's and broadcast to both devices of `maps.out` (the copy for the
/// way out, the original round the loop again); at or past the limit, or when
/// shorter than the template, it is dropped and leaves the loop.
///
/// # Panics
/// As [`generator`].
pub fn recirculator(proto: Proto, flows: u32, base_port: u16, maps: RecirculatorMaps) -> Vec<Insn> {
    let mut a = Asm::new();
    stamp(
        &mut a,
        proto,
        flows,
        base_port,
        maps.counter,
        Some(maps.limit),
    );
    a.emit(Insn::ld_map_fd(R1, maps.out)).emit([
        Insn::mov64_imm(R2, 0),
        Insn::mov64_imm(R3, BROADCAST),
        Insn::call(helper::REDIRECT_MAP),
        Insn::exit(),
    ]);
    a.label(G::AsIs)
        .emit([Insn::mov64_imm(R0, XDP_DROP), Insn::exit()]);
    a.finish()
}

/// The loop's other end: every frame goes back (`XDP_TX`).
pub fn bounce() -> Vec<Insn> {
    vec![Insn::mov64_imm(R0, XDP_TX), Insn::exit()]
}

/// Emits the generator's per-frame work: bounds check up to the end of the
/// timestamp, `n = counter[0]++`, source port `base_port + n % flows`,
/// timestamp, the TCP checksum update. With a `limit` map (the recirculator),
/// only IPv4 frames of `proto` carrying the marker are taken, and not once `n`
/// is at or past `limit[0]`. Continues at [`G::AsIs`] when the
/// frame is short, a lookup fails or the limit is reached; else falls through.
fn stamp(
    a: &mut Asm<G>,
    proto: Proto,
    flows: u32,
    base_port: u16,
    counter: i32,
    limit: Option<i32>,
) {
    assert!(
        flows >= 1 && u32::from(base_port) + flows - 1 <= 65535,
        "flows {flows} from port {base_port} do not fit in 16 bits"
    );
    let ts = off(proto.timestamp_offset());
    let sport = off(L4_OFFSET);
    a.emit([
        Insn::ldx_w(R7, R1, MD_DATA),           // r7 = data
        Insn::ldx_w(R8, R1, MD_DATA_END),       // r8 = data_end
        Insn::mov64_reg(R2, R7),                // r2 = data
        Insn::add64_imm(R2, i32::from(ts) + 8), // r2 = end of the timestamp
    ])
    .jump(Insn::jgt_reg(R2, R8, 0), G::AsIs) // shorter than the template
    .emit([Insn::st_w(R10, -4, 0)]); // key = 0 (helpers leave the stack alone)
    if let Some(limit) = limit {
        // Only the template's frames go round (not the loop's own IPv6 chatter).
        a.emit([Insn::ldx_h(R2, R7, off(ETH_LEN - 2))]) // ethertype
            .jump(Insn::jne_imm(R2, be16(0x0800), 0), G::AsIs)
            .emit([Insn::ldx_b(R2, R7, off(ETH_LEN + 9))]) // ip.protocol
            .jump(Insn::jne_imm(R2, i32::from(proto.number()), 0), G::AsIs)
            .emit([Insn::ldx_h(R2, R7, off(proto.payload_offset()))])
            .jump(
                Insn::jne_imm(R2, be16(u16::from_be_bytes(MAGIC)), 0),
                G::AsIs,
            );
        lookup_first(a, limit); // r0 = &limit[0]
        a.emit([Insn::ldx_dw(R6, R0, 0)]); // r6 = limit
    }
    lookup_first(a, counter); // r0 = &counter[0] (this CPU's)
    a.emit([Insn::ldx_dw(R9, R0, 0)]); // r9 = n
    if limit.is_some() {
        a.jump(Insn::jge_reg(R9, R6, 0), G::AsIs); // n ≥ limit: the run is over
    }
    a.emit([
        Insn::mov64_reg(R1, R9),                   // r1 = n
        Insn::add64_imm(R1, 1),                    // r1 = n + 1
        Insn::stx_dw(R0, 0, R1),                   // counter[0] = n + 1
        Insn::mod64_imm(R9, flows as i32),         // r9 = n % flows
        Insn::add64_imm(R9, i32::from(base_port)), // r9 = source port
        Insn::to_be(R9, 16),                       // r9 = source port, network order
        Insn::ldx_w(R6, R7, sport),                // r6 = old ports word (TCP checksum)
        Insn::stx_h(R7, sport, R9),                // tcp/udp.src_port = r9
        Insn::call(helper::KTIME_GET_NS),          // r0 = now (ns)
        Insn::ldx_w(R1, R7, ts),                   // r1 = old timestamp, first word
        Insn::ldx_w(R2, R7, ts + 4),               // r2 = old timestamp, second word
        Insn::stx_dw(R7, ts, R0),                  // payload timestamp = now
    ]);
    if proto == Proto::Tcp {
        // RFC 1624 eqn 3, HC' = ~(~HC + Σ~m + Σm'), over 32-bit words in host
        // order (one's-complement sums are byte-order independent, and 32-bit
        // words fold to the same 16-bit sum); every word starts at an even
        // offset of the segment.
        let csum = off(TCP_CHECKSUM_OFFSET);
        a.emit([
            Insn::ldx_h(R3, R7, csum),   // r3 = HC
            Insn::xor32_imm(R3, 0xffff), // r3 = ~HC (16 bits)
            Insn::xor32_imm(R6, -1),     // r6 = ~old ports word
            Insn::add64_reg(R3, R6),
            Insn::ldx_w(R4, R7, sport), // r4 = new ports word
            Insn::add64_reg(R3, R4),
            Insn::xor32_imm(R1, -1), // ~old timestamp words
            Insn::add64_reg(R3, R1),
            Insn::xor32_imm(R2, -1),
            Insn::add64_reg(R3, R2),
            Insn::ldx_w(R4, R7, ts), // new timestamp words
            Insn::add64_reg(R3, R4),
            Insn::ldx_w(R4, R7, ts + 4),
            Insn::add64_reg(R3, R4), // r3 < 2^35
            Insn::mov64_reg(R4, R3), // fold 64 → 33 bits
            Insn::rsh64_imm(R4, 32),
            Insn::mov32_reg(R3, R3),
            Insn::add64_reg(R3, R4),
        ]);
        for _ in 0..3 {
            // fold to 16 bits: 33 → 18 → 17 → 16
            a.emit([
                Insn::mov64_reg(R4, R3),
                Insn::rsh64_imm(R4, 16),
                Insn::and64_imm(R3, 0xffff),
                Insn::add64_reg(R3, R4),
            ]);
        }
        a.emit([
            Insn::xor32_imm(R3, 0xffff), // r3 = HC'
            Insn::stx_h(R7, csum, R3),
        ]);
    }
}

/// Emits `r0 = map[0]` (the key 0 already at fp-4); continues at [`G::AsIs`]
/// if the lookup fails. Clobbers r1..r5.
fn lookup_first(a: &mut Asm<G>, map: i32) {
    a.emit([Insn::mov64_reg(R2, R10), Insn::add64_imm(R2, -4)]) // r2 = &key
        .emit(Insn::ld_map_fd(R1, map))
        .emit([Insn::call(helper::MAP_LOOKUP_ELEM)])
        .jump(Insn::jeq_imm(R0, 0, 0), G::AsIs);
}

/// The sink's maps (descriptors).
#[derive(Debug, Clone, Copy)]
pub struct SinkMaps {
    /// Per-CPU array, [`STATS_ENTRIES`] × `{frames: u64, bytes: u64}`.
    pub stats: i32,
    /// Per-CPU array, `flows` × `u64`.
    pub flows: i32,
    /// Per-CPU hash, IPv4 destination (4 bytes, network order) → `u64`.
    pub dests: i32,
    /// Per-CPU array, [`HIST_BUCKETS`] × `u64`.
    pub hist: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum S {
    Udp,
    Marked,
    Big,
    Bucketed,
    HistDone,
    FlowDone,
    DestInc,
    DestFull,
    Done,
    Drop,
    Pass,
    PassNow,
}

/// Emits `stats[index] += {1, bytes}` (`bytes` a callee-saved register, or
/// `None` to count frames only); clobbers r0..r5 and the stack key at fp-4;
/// continues at `skip` if the lookup fails, else falls through.
fn count_stat(a: &mut Asm<S>, stats: i32, index: u32, bytes: Option<Reg>, skip: S) {
    a.emit([
        Insn::st_w(R10, -4, index as i32),
        Insn::mov64_reg(R2, R10),
        Insn::add64_imm(R2, -4),
    ])
    .emit(Insn::ld_map_fd(R1, stats))
    .emit([Insn::call(helper::MAP_LOOKUP_ELEM)])
    .jump(Insn::jeq_imm(R0, 0, 0), skip)
    .emit([
        Insn::ldx_dw(R1, R0, 0),
        Insn::add64_imm(R1, 1),
        Insn::stx_dw(R0, 0, R1),
    ]);
    if let Some(r) = bytes {
        a.emit([
            Insn::ldx_dw(R1, R0, 8),
            Insn::add64_reg(R1, r),
            Insn::stx_dw(R0, 8, R1),
        ]);
    }
}

/// Emits `map[key] += 1` for an array map with the `u32` key in `key`;
/// clobbers r0..r5 and fp-4; continues at `next`.
fn count_index(a: &mut Asm<S>, map: i32, key: Reg, next: S) {
    a.emit([
        Insn::stx_w(R10, -4, key),
        Insn::mov64_reg(R2, R10),
        Insn::add64_imm(R2, -4),
    ])
    .emit(Insn::ld_map_fd(R1, map))
    .emit([Insn::call(helper::MAP_LOOKUP_ELEM)])
    .jump(Insn::jeq_imm(R0, 0, 0), next)
    .emit([
        Insn::ldx_dw(R1, R0, 0),
        Insn::add64_imm(R1, 1),
        Insn::stx_dw(R0, 0, R1),
    ]);
}

/// The sink program for `flows` ≥ 1 flow counters, as a program of type `ty`
/// (XDP, or a tc classifier for tc ingress; see the module docs).
///
/// # Panics
/// If `flows` is 0 or above `i32::MAX`.
pub fn sink(maps: SinkMaps, flows: u32, ty: ProgType) -> Vec<Insn> {
    assert!(flows >= 1 && flows <= i32::MAX as u32, "flows {flows}");
    let udp = Proto::Udp;
    let tcp = Proto::Tcp;
    let (data, data_end) = ty.packet();
    let (drop, pass) = ty.verdicts();
    let mut a = Asm::new();
    // --- parse ----------------------------------------------------------------
    a.emit([
        Insn::ldx_w(R2, R1, data),     // r2 = data
        Insn::ldx_w(R3, R1, data_end), // r3 = data_end
        Insn::mov64_reg(R4, R2),
        Insn::add64_imm(R4, udp.min_frame_len() as i32), // r4 = data + 52
    ])
    .jump(Insn::jgt_reg(R4, R3, 0), S::Pass) // too short for any marked frame
    .emit([Insn::ldx_h(R5, R2, 12)]) // ethertype
    .jump(Insn::jne_imm(R5, be16(0x0800), 0), S::Pass) // not IPv4 (ARP!): pass
    .emit([Insn::ldx_b(R5, R2, off(ETH_LEN))]) // version / IHL
    .jump(Insn::jne_imm(R5, 0x45, 0), S::Pass)
    .emit([
        Insn::ldx_h(R5, R2, off(ETH_LEN + 6)), // flags / fragment offset
        Insn::and64_imm(R5, be16(0x3fff)),     // MF | offset
    ])
    .jump(Insn::jne_imm(R5, 0, 0), S::Pass) // a fragment: pass
    .emit([Insn::ldx_b(R5, R2, off(ETH_LEN + 9))]) // protocol
    .jump(Insn::jeq_imm(R5, i32::from(udp.number()), 0), S::Udp)
    .jump(Insn::jne_imm(R5, i32::from(tcp.number()), 0), S::Pass)
    // TCP: marker at 54, timestamp at 56
    .emit([
        Insn::mov64_reg(R4, R2),
        Insn::add64_imm(R4, tcp.min_frame_len() as i32), // r4 = data + 64
    ])
    .jump(Insn::jgt_reg(R4, R3, 0), S::Pass)
    .emit([Insn::ldx_h(R5, R2, off(tcp.payload_offset()))])
    .jump(
        Insn::jne_imm(R5, be16(u16::from_be_bytes(MAGIC)), 0),
        S::Pass,
    )
    .emit([Insn::ldx_dw(R7, R2, off(tcp.timestamp_offset()))]) // r7 = timestamp
    .jump(Insn::ja(0), S::Marked)
    // UDP: marker at 42, timestamp at 44 (bounds checked above)
    .label(S::Udp)
    .emit([Insn::ldx_h(R5, R2, off(udp.payload_offset()))])
    .jump(
        Insn::jne_imm(R5, be16(u16::from_be_bytes(MAGIC)), 0),
        S::Pass,
    )
    .emit([Insn::ldx_dw(R7, R2, off(udp.timestamp_offset()))]) // r7 = timestamp
    .label(S::Marked)
    .emit([
        Insn::ldx_h(R6, R2, off(L4_OFFSET)),    // source port
        Insn::to_be(R6, 16),                    // r6 = source port (host order)
        Insn::ldx_w(R8, R2, off(ETH_LEN + 16)), // r8 = ip.dst (network order)
        Insn::ldx_h(R9, R2, off(ETH_LEN + 2)),  // total length
        Insn::to_be(R9, 16),
        Insn::add64_imm(R9, ETH_LEN as i32), // r9 = frame bytes
        Insn::call(helper::KTIME_GET_NS),    // r0 = now
        Insn::mov64_reg(R1, R0),
        Insn::sub64_reg(R1, R7), // r1 = latency (ns; wraps if negative)
        Insn::mov64_reg(R2, R1), // r2 = bucket for v < 8
    ]);
    // --- latency bucket (r1 = v → r2) -------------------------------------------
    a.jump(Insn::jgt_imm(R1, (1 << SUB_BITS) - 1, 0), S::Big)
        .jump(Insn::ja(0), S::Bucketed)
        .label(S::Big)
        .emit([Insn::mov64_imm(R2, 0), Insn::mov64_reg(R3, R1)]); // r2 = e = 0, r3 = v
    for shift in [32, 16, 8, 4, 2, 1] {
        // if (r3 >> shift) { r3 >>= shift; e += shift }
        a.emit([
            Insn::mov64_reg(R4, R3),
            Insn::rsh64_imm(R4, shift),
            Insn::jeq_imm(R4, 0, 2),
            Insn::mov64_reg(R3, R4),
            Insn::add64_imm(R2, shift),
        ]);
    }
    a.emit([
        Insn::mov64_reg(R4, R2),
        Insn::add64_imm(R4, -(SUB_BITS as i32)), // r4 = e - 3
        Insn::mov64_reg(R5, R1),
        Insn::rsh64_reg(R5, R4),                     // r5 = v >> (e - 3)
        Insn::and64_imm(R5, (1 << SUB_BITS) - 1),    // r5 = sub-bucket
        Insn::add64_imm(R2, -(SUB_BITS as i32 - 1)), // r2 = e - 2
        Insn::lsh64_imm(R2, SUB_BITS as i32),        // r2 = (e - 2) * 8
        Insn::add64_reg(R2, R5),                     // r2 = bucket
    ])
    .label(S::Bucketed)
    .emit([
        Insn::mov64_imm(R3, HIST_BUCKETS as i32 - 1),
        Insn::jgt_reg(R3, R2, 1), // last bucket > bucket: keep it
        Insn::mov64_reg(R2, R3),  // else: the overflow bucket
    ]);
    count_index(&mut a, maps.hist, R2, S::HistDone);
    a.label(S::HistDone);
    // --- per flow ----------------------------------------------------------------
    a.emit([Insn::mod64_imm(R6, flows as i32)]); // r6 = source port % flows
    count_index(&mut a, maps.flows, R6, S::FlowDone);
    a.label(S::FlowDone);
    // --- per destination (lookup, else insert and look up again) -----------------
    let lookup_dest = |a: &mut Asm<S>| {
        a.emit([Insn::mov64_reg(R2, R10), Insn::add64_imm(R2, -8)]) // r2 = &dst
            .emit(Insn::ld_map_fd(R1, maps.dests))
            .emit([Insn::call(helper::MAP_LOOKUP_ELEM)]);
    };
    a.emit([Insn::stx_w(R10, -8, R8)]); // key = ip.dst
    lookup_dest(&mut a);
    a.jump(Insn::jne_imm(R0, 0, 0), S::DestInc)
        .emit([
            Insn::st_dw(R10, -16, 0), // value = 0
            Insn::mov64_reg(R2, R10),
            Insn::add64_imm(R2, -8), // r2 = &dst
            Insn::mov64_reg(R3, R10),
            Insn::add64_imm(R3, -16), // r3 = &zero
            Insn::mov64_imm(R4, NOEXIST),
        ])
        .emit(Insn::ld_map_fd(R1, maps.dests))
        .emit([Insn::call(helper::MAP_UPDATE_ELEM)]); // result ignored: EEXIST is fine
    lookup_dest(&mut a);
    a.jump(Insn::jeq_imm(R0, 0, 0), S::DestFull)
        .label(S::DestInc)
        .emit([
            Insn::ldx_dw(R1, R0, 0),
            Insn::add64_imm(R1, 1),
            Insn::stx_dw(R0, 0, R1),
        ])
        .jump(Insn::ja(0), S::Done);
    a.label(S::DestFull);
    count_stat(&mut a, maps.stats, STAT_DEST_OVERFLOW, None, S::Done);
    // --- delivered ------------------------------------------------------------------
    a.label(S::Done);
    count_stat(&mut a, maps.stats, STAT_DELIVERED, Some(R9), S::Drop);
    a.label(S::Drop)
        .emit([Insn::mov64_imm(R0, drop), Insn::exit()]);
    // --- everything else: counted, then the kernel --------------------------------
    a.label(S::Pass);
    count_stat(&mut a, maps.stats, STAT_PASSED, None, S::PassNow);
    a.label(S::PassNow)
        .emit([Insn::mov64_imm(R0, pass), Insn::exit()]);
    a.finish()
}

/// The bucket of latency `ns` (the program's computation, for tests and docs).
pub fn bucket_of(ns: u64) -> u32 {
    let sub = 1u64 << SUB_BITS;
    let b = if ns < sub {
        ns
    } else {
        let e = u64::from(63 - ns.leading_zeros());
        (e - u64::from(SUB_BITS - 1)) * sub + ((ns >> (e - u64::from(SUB_BITS))) & (sub - 1))
    };
    b.min(u64::from(HIST_BUCKETS - 1)) as u32
}

/// What bucket `b` stands for: `Some(midpoint ns)` (the exact value below 8),
/// or `None` for the last bucket (overflow, ≥ 2^40 ns or a bad timestamp).
pub fn bucket_value(b: u32) -> Option<u64> {
    let sub = 1u64 << SUB_BITS;
    let b = u64::from(b);
    if b >= u64::from(HIST_BUCKETS - 1) {
        None
    } else if b < sub {
        Some(b)
    } else {
        let e = b / sub + u64::from(SUB_BITS - 1);
        let shift = e - u64::from(SUB_BITS);
        let low = (sub + b % sub) << shift;
        Some(low + ((1u64 << shift) >> 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_log_linear() {
        for v in 0..8 {
            assert_eq!(bucket_of(v), v as u32);
            assert_eq!(bucket_value(v as u32), Some(v));
        }
        assert_eq!(bucket_of(8), 8);
        assert_eq!(bucket_of(15), 15);
        assert_eq!(bucket_of(16), 16);
        assert_eq!(bucket_of(17), 16);
        assert_eq!(bucket_of(18), 17);
        // Every value lies in its bucket, and the midpoint is within 6.25 %.
        for v in (8u64..1 << 39)
            .step_by(999_983)
            .chain([1000, 1_000_000, (1 << 40) - 1])
        {
            let b = bucket_of(v);
            let mid = bucket_value(b).expect("not overflow") as f64;
            assert!(
                (mid - v as f64).abs() / v as f64 <= 0.0625 + 1e-9,
                "{v} -> {b} -> {mid}"
            );
        }
        assert_eq!(bucket_of(1 << 40), HIST_BUCKETS - 1);
        assert_eq!(bucket_of(u64::MAX), HIST_BUCKETS - 1);
        assert_eq!(bucket_value(HIST_BUCKETS - 1), None);
        assert_eq!(bucket_of((1 << 40) - 1), HIST_BUCKETS - 2);
    }

    #[test]
    fn programs_are_small_and_end_in_exit() {
        for proto in [Proto::Udp, Proto::Tcp] {
            let g = generator(proto, 1024, 10000, 3);
            assert!(g.len() < 100, "{}", g.len());
            assert_eq!(g.last(), Some(&Insn::exit()));
            let maps = RecirculatorMaps {
                counter: 3,
                limit: 4,
                out: 5,
            };
            let r = recirculator(proto, 1024, 10000, maps);
            assert!(r.len() < 120, "{}", r.len());
            assert_eq!(r.last(), Some(&Insn::exit()));
        }
        let maps = SinkMaps {
            stats: 3,
            flows: 4,
            dests: 5,
            hist: 6,
        };
        for ty in [ProgType::Xdp, ProgType::SchedCls] {
            let s = sink(maps, 1024, ty);
            assert!(s.len() < 200, "{}", s.len());
            assert_eq!(s.last(), Some(&Insn::exit()));
        }
    }
}
