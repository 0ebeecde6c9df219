//! # steer — the XDP steering program and its maps
//!
//! The steering program decides, per received frame, whether the frame is for
//! the userspace data path (an AF_XDP socket) or for the kernel:
//!
//! - Ethernet, optionally one 802.1Q tag, then IPv4 or IPv6 (fixed header only);
//! - if the **destination** address is a VIP (but not an ICMP/ICMPv6 echo request:
//!   `ping VIP` is the kernel's, as with keepalived), or the **source** address is a real
//!   server (NAT replies) and the destination is neither multicast / broadcast /
//!   link-local nor one of the director's own addresses (so health-check answers
//!   and neighbour discovery from real servers stay with the kernel):
//!   `return bpf_redirect_map(&xsks, ctx->rx_queue_index, FALLBACK)`;
//! - everything else (ARP, ND, SSH, health checks, VRRP, truncated frames): `XDP_PASS`.
//!
//! The same program also serves AF_PACKET mode as a guard at tc ingress
//! ([`SteerHook::TcGuard`]): there the workers' taps have already copied every
//! frame, so a frame that would be steered is dropped (`TC_ACT_SHOT`, the kernel
//! must not act on it too) and everything else goes on (`TC_ACT_OK`). tc sees the
//! frame after the kernel has taken out a VLAN tag, so it looks untagged there.
//!
//! The program is carried as instructions, written with a tiny assembler
//! ([`Insn`] and its constructors, [`Asm`] for forward labels), so the project
//! needs no clang, no ELF loader and no libbpf. Every bounds check the verifier
//! demands is spelled out next to the load it protects.
//!
//! ## Maps (one per table and family — the packet bytes are the key as-is)
//!
//! | map | type | key | value |
//! |---|---|---|---|
//! | `xvs_vip4` / `xvs_vip6` | hash | IPv4 (4 bytes) / IPv6 (16 bytes) address, network order | `u32` 1 (unused) |
//! | `xvs_rs4` / `xvs_rs6` | hash | real server address, as above | `u32` 1 (unused) |
//! | `xvs_local4` / `xvs_local6` | hash | the director's own addresses, as above | `u32` 1 (unused) |
//! | `xvs_xsks` | XSKMAP | `u32` rx queue index | AF_XDP socket fd |
//!
//! Separate maps per family let the program pass a pointer *into the packet* as
//! the lookup key (no stack copy, no family byte), which keeps it short.
//!
//! ## Fallback action
//!
//! `bpf_redirect_map` returns the low bits of its flags argument when the
//! XSKMAP has no socket for the queue. In production that is `XDP_PASS` (a queue
//! without a worker still reaches the kernel). Tests load the program with
//! [`Fallback::Drop`] so that "would redirect" (`XDP_DROP` under
//! `BPF_PROG_RUN`, where the XSKMAP is empty) is distinct from "pass".

use std::ffi::CStr;
use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::sys::bpf::{self, BpfError, BpfFd, Map, MapType, ProgType};
pub use crate::sys::bpf::{MD_DATA, MD_DATA_END, XdpMode};

// ---------------------------------------------------------------------------
// The assembler
// ---------------------------------------------------------------------------

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class | size/op | source.
    pub code: u8,
    /// `dst_reg:4` and `src_reg:4` (bit-field order follows the target's endianness).
    pub regs: u8,
    /// Signed offset (memory access, jump).
    pub off: i16,
    /// Signed immediate.
    pub imm: i32,
}

/// An eBPF register `r0`..`r10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reg(u8);

/// Return value / helper result.
pub const R0: Reg = Reg(0);
/// Argument 1 (the context on entry).
pub const R1: Reg = Reg(1);
/// Argument 2.
pub const R2: Reg = Reg(2);
/// Argument 3.
pub const R3: Reg = Reg(3);
/// Argument 4.
pub const R4: Reg = Reg(4);
/// Argument 5.
pub const R5: Reg = Reg(5);
/// Callee-saved.
pub const R6: Reg = Reg(6);
/// Callee-saved.
pub const R7: Reg = Reg(7);
/// Callee-saved.
pub const R8: Reg = Reg(8);
/// Callee-saved.
pub const R9: Reg = Reg(9);
/// The read-only frame pointer (top of the program's 512-byte stack).
pub const R10: Reg = Reg(10);

/// Opcode pieces (`linux/bpf_common.h`, `linux/bpf.h`).
mod op {
    pub const LD: u8 = 0x00;
    pub const LDX: u8 = 0x01;
    pub const ST: u8 = 0x02;
    pub const STX: u8 = 0x03;
    pub const ALU: u8 = 0x04;
    pub const JMP: u8 = 0x05;
    pub const ALU64: u8 = 0x07;

    pub const W: u8 = 0x00;
    pub const H: u8 = 0x08;
    pub const B: u8 = 0x10;
    pub const DW: u8 = 0x18;

    pub const IMM: u8 = 0x00;
    pub const MEM: u8 = 0x60;

    pub const ADD: u8 = 0x00;
    pub const SUB: u8 = 0x10;
    pub const AND: u8 = 0x50;
    pub const LSH: u8 = 0x60;
    pub const RSH: u8 = 0x70;
    pub const MOD: u8 = 0x90;
    pub const XOR: u8 = 0xa0;
    pub const MOV: u8 = 0xb0;
    pub const END: u8 = 0xd0;

    /// `BPF_TO_BE` (with `END`): convert to big-endian.
    pub const TO_BE: u8 = 0x08;

    pub const JA: u8 = 0x00;
    pub const JEQ: u8 = 0x10;
    pub const JGT: u8 = 0x20;
    pub const JGE: u8 = 0x30;
    pub const JNE: u8 = 0x50;
    pub const CALL: u8 = 0x80;
    pub const EXIT: u8 = 0x90;

    pub const K: u8 = 0x00;
    pub const X: u8 = 0x08;

    /// `BPF_PSEUDO_MAP_FD`: the `ld_imm64` immediate is a map fd.
    pub const PSEUDO_MAP_FD: u8 = 1;
}

/// Helper function ids (`enum bpf_func_id`).
pub mod helper {
    /// `void *bpf_map_lookup_elem(map, key)`.
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    /// `long bpf_map_update_elem(map, key, value, flags)`.
    pub const MAP_UPDATE_ELEM: i32 = 2;
    /// `u64 bpf_ktime_get_ns(void)`: CLOCK_MONOTONIC in ns.
    pub const KTIME_GET_NS: i32 = 5;
    /// `long bpf_redirect_map(map, key, flags)`.
    pub const REDIRECT_MAP: i32 = 51;
}

const fn regs(dst: Reg, src: u8) -> u8 {
    if cfg!(target_endian = "little") {
        dst.0 | (src << 4)
    } else {
        (dst.0 << 4) | src
    }
}

impl Insn {
    const fn new(code: u8, dst: Reg, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: regs(dst, src),
            off,
            imm,
        }
    }

    /// `dst = imm` (64-bit).
    pub const fn mov64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU64 | op::MOV | op::K, dst, 0, 0, imm)
    }

    /// `dst = src` (64-bit).
    pub const fn mov64_reg(dst: Reg, src: Reg) -> Self {
        Self::new(op::ALU64 | op::MOV | op::X, dst, src.0, 0, 0)
    }

    /// `dst += imm` (64-bit).
    pub const fn add64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU64 | op::ADD | op::K, dst, 0, 0, imm)
    }

    /// `dst += src` (64-bit).
    pub const fn add64_reg(dst: Reg, src: Reg) -> Self {
        Self::new(op::ALU64 | op::ADD | op::X, dst, src.0, 0, 0)
    }

    /// `dst -= src` (64-bit).
    pub const fn sub64_reg(dst: Reg, src: Reg) -> Self {
        Self::new(op::ALU64 | op::SUB | op::X, dst, src.0, 0, 0)
    }

    /// `dst &= imm` (64-bit; `imm` is sign-extended).
    pub const fn and64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU64 | op::AND | op::K, dst, 0, 0, imm)
    }

    /// `dst <<= imm` (64-bit).
    pub const fn lsh64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU64 | op::LSH | op::K, dst, 0, 0, imm)
    }

    /// `dst >>= imm` (64-bit, logical).
    pub const fn rsh64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU64 | op::RSH | op::K, dst, 0, 0, imm)
    }

    /// `dst >>= src` (64-bit, logical; the shift is taken modulo 64).
    pub const fn rsh64_reg(dst: Reg, src: Reg) -> Self {
        Self::new(op::ALU64 | op::RSH | op::X, dst, src.0, 0, 0)
    }

    /// `dst %= imm` (64-bit, unsigned; `imm` must not be 0).
    pub const fn mod64_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU64 | op::MOD | op::K, dst, 0, 0, imm)
    }

    /// `dst = (u32)src` (32-bit move: the upper half is zeroed).
    pub const fn mov32_reg(dst: Reg, src: Reg) -> Self {
        Self::new(op::ALU | op::MOV | op::X, dst, src.0, 0, 0)
    }

    /// `dst = (u32)(dst ^ imm)` (32-bit: the upper half is zeroed).
    pub const fn xor32_imm(dst: Reg, imm: i32) -> Self {
        Self::new(op::ALU | op::XOR | op::K, dst, 0, 0, imm)
    }

    /// `dst = htobe{bits}(dst)` (`bits` 16, 32 or 64; the result is
    /// zero-extended): on a little-endian host a byte swap, so a value loaded
    /// from network-order bytes becomes its host-order number and back.
    pub const fn to_be(dst: Reg, bits: i32) -> Self {
        Self::new(op::ALU | op::END | op::TO_BE, dst, 0, 0, bits)
    }

    /// `dst = *(u64 *)(src + off)`.
    pub const fn ldx_dw(dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(op::LDX | op::MEM | op::DW, dst, src.0, off, 0)
    }

    /// `*(u64 *)(dst + off) = src`.
    pub const fn stx_dw(dst: Reg, off: i16, src: Reg) -> Self {
        Self::new(op::STX | op::MEM | op::DW, dst, src.0, off, 0)
    }

    /// `*(u32 *)(dst + off) = src`.
    pub const fn stx_w(dst: Reg, off: i16, src: Reg) -> Self {
        Self::new(op::STX | op::MEM | op::W, dst, src.0, off, 0)
    }

    /// `*(u16 *)(dst + off) = src`.
    pub const fn stx_h(dst: Reg, off: i16, src: Reg) -> Self {
        Self::new(op::STX | op::MEM | op::H, dst, src.0, off, 0)
    }

    /// `*(u32 *)(dst + off) = imm`.
    pub const fn st_w(dst: Reg, off: i16, imm: i32) -> Self {
        Self::new(op::ST | op::MEM | op::W, dst, 0, off, imm)
    }

    /// `*(u64 *)(dst + off) = imm` (sign-extended).
    pub const fn st_dw(dst: Reg, off: i16, imm: i32) -> Self {
        Self::new(op::ST | op::MEM | op::DW, dst, 0, off, imm)
    }

    /// `dst = *(u32 *)(src + off)`.
    pub const fn ldx_w(dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(op::LDX | op::MEM | op::W, dst, src.0, off, 0)
    }

    /// `dst = *(u16 *)(src + off)`.
    pub const fn ldx_h(dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(op::LDX | op::MEM | op::H, dst, src.0, off, 0)
    }

    /// `dst = *(u8 *)(src + off)`.
    pub const fn ldx_b(dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(op::LDX | op::MEM | op::B, dst, src.0, off, 0)
    }

    /// `goto +off`.
    pub const fn ja(off: i16) -> Self {
        Self::new(op::JMP | op::JA, R0, 0, off, 0)
    }

    /// `if dst == imm goto +off`.
    pub const fn jeq_imm(dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(op::JMP | op::JEQ | op::K, dst, 0, off, imm)
    }

    /// `if dst != imm goto +off`.
    pub const fn jne_imm(dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(op::JMP | op::JNE | op::K, dst, 0, off, imm)
    }

    /// `if dst >= imm goto +off` (unsigned).
    pub const fn jge_imm(dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(op::JMP | op::JGE | op::K, dst, 0, off, imm)
    }

    /// `if dst > imm goto +off` (unsigned).
    pub const fn jgt_imm(dst: Reg, imm: i32, off: i16) -> Self {
        Self::new(op::JMP | op::JGT | op::K, dst, 0, off, imm)
    }

    /// `if dst >= src goto +off` (unsigned).
    pub const fn jge_reg(dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(op::JMP | op::JGE | op::X, dst, src.0, off, 0)
    }

    /// `if dst > src goto +off` (unsigned).
    pub const fn jgt_reg(dst: Reg, src: Reg, off: i16) -> Self {
        Self::new(op::JMP | op::JGT | op::X, dst, src.0, off, 0)
    }

    /// `call helper` (arguments in r1..r5, result in r0; r1..r5 clobbered).
    pub const fn call(helper: i32) -> Self {
        Self::new(op::JMP | op::CALL, R0, 0, 0, helper)
    }

    /// `exit` (returns r0).
    pub const fn exit() -> Self {
        Self::new(op::JMP | op::EXIT, R0, 0, 0, 0)
    }

    /// `dst = map` — the two-slot `BPF_LD_IMM64` with `BPF_PSEUDO_MAP_FD`,
    /// which the verifier turns into the map's address.
    pub const fn ld_map_fd(dst: Reg, fd: i32) -> [Self; 2] {
        [
            Self::new(op::LD | op::DW | op::IMM, dst, op::PSEUDO_MAP_FD, 0, fd),
            Self::new(0, R0, 0, 0, 0),
        ]
    }

    /// Whether this is a jump whose offset an [`Asm`] label may patch.
    const fn is_jump(&self) -> bool {
        self.code & 0x07 == op::JMP && self.code & 0xf0 != op::CALL && self.code & 0xf0 != op::EXIT
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, regs: {:#04x}, off: {}, imm: {} }}",
            self.code, self.regs, self.off, self.imm
        )
    }
}

/// A minimal assembler: appends instructions, resolves forward and backward
/// jumps to labels of type `L` when [`Asm::finish`] is called.
#[derive(Debug)]
pub struct Asm<L> {
    insns: Vec<Insn>,
    labels: Vec<(L, usize)>,
    fixups: Vec<(usize, L)>,
}

impl<L: Copy + PartialEq + fmt::Debug> Default for Asm<L> {
    fn default() -> Self {
        Self::new()
    }
}

impl<L: Copy + PartialEq + fmt::Debug> Asm<L> {
    /// An empty program.
    pub fn new() -> Self {
        Asm {
            insns: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }

    /// Appends instructions.
    pub fn emit(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Self {
        self.insns.extend(insns);
        self
    }

    /// Appends a jump (built with offset 0) whose target is `label`.
    ///
    /// # Panics
    /// If `insn` is not a jump.
    pub fn jump(&mut self, insn: Insn, label: L) -> &mut Self {
        assert!(insn.is_jump(), "not a jump: {insn:?}");
        self.fixups.push((self.insns.len(), label));
        self.insns.push(insn);
        self
    }

    /// Binds `label` to the next instruction.
    ///
    /// # Panics
    /// If `label` is already bound.
    pub fn label(&mut self, label: L) -> &mut Self {
        assert!(
            self.labels.iter().all(|(l, _)| *l != label),
            "label {label:?} bound twice"
        );
        self.labels.push((label, self.insns.len()));
        self
    }

    /// The program with every jump resolved.
    ///
    /// # Panics
    /// If a jump targets an unbound label or is out of `i16` range.
    pub fn finish(mut self) -> Vec<Insn> {
        for &(at, label) in &self.fixups {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == label)
                .map(|&(_, pc)| pc)
                .unwrap_or_else(|| panic!("label {label:?} never bound"));
            let delta = target as isize - (at as isize + 1);
            self.insns[at].off = i16::try_from(delta).expect("jump within i16 range");
        }
        self.insns
    }
}

// ---------------------------------------------------------------------------
// The program
// ---------------------------------------------------------------------------

/// XDP actions (`enum xdp_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAction {
    /// `XDP_ABORTED` (0).
    Aborted,
    /// `XDP_DROP` (1).
    Drop,
    /// `XDP_PASS` (2).
    Pass,
    /// `XDP_TX` (3).
    Tx,
    /// `XDP_REDIRECT` (4).
    Redirect,
    /// Any other return value.
    Other(u32),
}

impl XdpAction {
    /// The return value a program gives for this action (`Other(v)`: `v`).
    pub const fn retval(self) -> i32 {
        match self {
            XdpAction::Aborted => 0,
            XdpAction::Drop => 1,
            XdpAction::Pass => 2,
            XdpAction::Tx => 3,
            XdpAction::Redirect => 4,
            XdpAction::Other(v) => v as i32,
        }
    }

    /// From a program's return value.
    pub fn from_retval(v: u32) -> Self {
        match v {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            v => XdpAction::Other(v),
        }
    }
}

/// What `bpf_redirect_map` returns when the XSKMAP has no socket for the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// `XDP_PASS`: production — a queue without a socket still reaches the kernel.
    #[default]
    Pass,
    /// `XDP_DROP`: tests — makes "would redirect" visible under `BPF_PROG_RUN`.
    Drop,
}

impl Fallback {
    fn action(self) -> i32 {
        match self {
            Fallback::Pass => XdpAction::Pass.retval(),
            Fallback::Drop => XdpAction::Drop.retval(),
        }
    }
}

/// Where the program runs, and what it does with the frames it steers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SteerHook {
    /// XDP (AF_XDP mode): steered frames go to the rx queue's AF_XDP socket.
    #[default]
    Xdp,
    /// tc ingress (AF_PACKET mode's guard, Linux ≥ 6.6 for the tcx link):
    /// steered frames are dropped, the rest go on.
    TcGuard,
}

impl SteerHook {
    /// The program type this hook loads.
    pub const fn prog_type(self) -> ProgType {
        match self {
            SteerHook::Xdp => ProgType::Xdp,
            SteerHook::TcGuard => ProgType::SchedCls,
        }
    }
}

/// The map descriptors the program refers to.
#[derive(Debug, Clone, Copy)]
pub struct ProgramMaps {
    /// IPv4 VIPs (key: 4 bytes).
    pub vip4: i32,
    /// IPv6 VIPs (key: 16 bytes).
    pub vip6: i32,
    /// IPv4 real servers (key: 4 bytes).
    pub rs4: i32,
    /// IPv6 real servers (key: 16 bytes).
    pub rs6: i32,
    /// The director's own IPv4 addresses (key: 4 bytes).
    pub local4: i32,
    /// The director's own IPv6 addresses (key: 16 bytes).
    pub local6: i32,
    /// XSKMAP (key: rx queue index).
    pub xsks: i32,
}

/// A 16-bit constant as an XDP program sees it after a `ldx_h` of network-order
/// bytes (for comparisons in hand-assembled programs, here and in the pktgen's).
pub const fn be16(v: u16) -> i32 {
    u16::from_ne_bytes(v.to_be_bytes()) as i32
}

const ETH_HLEN: i32 = 14;
const VLAN_HLEN: i32 = 4;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV4_HLEN: i32 = 20;
const IPV6_HLEN: i32 = 40;
/// `struct xdp_md`: `rx_queue_index`.
const MD_RX_QUEUE_INDEX: i16 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L {
    Untagged,
    Ipv4,
    Ipv6,
    Vip4,
    Vip6,
    Redirect,
    Pass,
}

/// The steering program at `hook` for the given maps (see the module
/// documentation; `fallback` only matters at XDP).
pub fn program(maps: ProgramMaps, fallback: Fallback, hook: SteerHook) -> Vec<Insn> {
    let (data, data_end) = hook.prog_type().packet();
    let (drop, pass) = hook.prog_type().verdicts();
    let mut a = Asm::new();
    // --- Ethernet -----------------------------------------------------------
    a.emit([
        Insn::mov64_reg(R6, R1),       // r6 = ctx (callee-saved across helper calls)
        Insn::ldx_w(R2, R6, data),     // r2 = ctx->data
        Insn::ldx_w(R3, R6, data_end), // r3 = ctx->data_end
        Insn::mov64_reg(R4, R2),       // r4 = data
        Insn::add64_imm(R4, ETH_HLEN), // r4 = data + 14
    ])
    .jump(Insn::jgt_reg(R4, R3, 0), L::Pass) // shorter than an Ethernet header: pass
    .emit([Insn::ldx_h(R5, R2, 12)]) // r5 = ethertype (network order)
    .jump(Insn::jne_imm(R5, be16(ETH_P_8021Q), 0), L::Untagged)
    // --- one 802.1Q tag -----------------------------------------------------
    .emit([
        Insn::mov64_reg(R4, R2),                   // r4 = data
        Insn::add64_imm(R4, ETH_HLEN + VLAN_HLEN), // r4 = data + 18
    ])
    .jump(Insn::jgt_reg(R4, R3, 0), L::Pass) // truncated tag: pass
    .emit([
        Insn::ldx_h(R5, R2, 16),        // r5 = inner ethertype
        Insn::add64_imm(R2, VLAN_HLEN), // r2 = data + 4: L3 is at r2 + 14 on both paths
    ])
    .label(L::Untagged)
    .jump(Insn::jeq_imm(R5, be16(ETH_P_IP), 0), L::Ipv4)
    .jump(Insn::jeq_imm(R5, be16(ETH_P_IPV6), 0), L::Ipv6)
    .jump(Insn::ja(0), L::Pass); // ARP, LLDP, anything else: pass

    // --- IPv4: src at L3+12, dst at L3+16 ------------------------------------
    a.label(L::Ipv4);
    family(
        &mut a,
        Family::V4,
        maps.vip4,
        maps.local4,
        maps.rs4,
        data_end,
    );
    // --- IPv6: src at L3+8, dst at L3+24 -------------------------------------
    a.label(L::Ipv6);
    family(
        &mut a,
        Family::V6,
        maps.vip6,
        maps.local6,
        maps.rs6,
        data_end,
    );

    // --- to userspace -------------------------------------------------------
    a.label(L::Redirect);
    match hook {
        SteerHook::Xdp => {
            a.emit([Insn::ldx_w(R2, R6, MD_RX_QUEUE_INDEX)]); // r2 = ctx->rx_queue_index
            a.emit(Insn::ld_map_fd(R1, maps.xsks)); // r1 = &xsks
            a.emit([
                Insn::mov64_imm(R3, fallback.action()), // r3 = flags: action if no socket on the queue
                Insn::call(helper::REDIRECT_MAP), // r0 = bpf_redirect_map(&xsks, queue, flags)
                Insn::exit(),                     // return r0
            ]);
        }
        // The workers' taps have it already.
        SteerHook::TcGuard => {
            a.emit([Insn::mov64_imm(R0, drop), Insn::exit()]);
        }
    }
    // --- to the kernel ------------------------------------------------------
    a.label(L::Pass);
    a.emit([
        Insn::mov64_imm(R0, pass), // r0 = XDP_PASS / TC_ACT_OK
        Insn::exit(),              // return r0
    ]);
    a.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// One address family: bounds-check the fixed header; a destination in `vips`
/// goes to userspace; a multicast / broadcast (IPv4 ≥ 224.0.0.0, IPv6 ff00::/8)
/// or link-local (fe80::/10, by its first byte) destination, or one of the
/// director's own addresses (`locals`: health-check answers, ND, SSH from a real
/// server) goes to the kernel; otherwise a source in `real_servers` (a NAT reply)
/// goes to userspace and everything else to the kernel. On entry r2 = frame
/// start (+ tag), r3 = data_end.
fn family(
    a: &mut Asm<L>,
    family: Family,
    vips: i32,
    locals: i32,
    real_servers: i32,
    data_end: i16,
) {
    let (hlen, src_off, dst_off) = match family {
        Family::V4 => (IPV4_HLEN, 12, 16),
        Family::V6 => (IPV6_HLEN, 8, 24),
    };
    a.emit([
        Insn::mov64_reg(R4, R2),              // r4 = frame start (+ tag)
        Insn::add64_imm(R4, ETH_HLEN + hlen), // r4 = end of the fixed IP header
    ])
    .jump(Insn::jgt_reg(R4, R3, 0), L::Pass) // truncated IP header: pass
    .emit([
        Insn::mov64_reg(R7, R2),                 // r7 = frame start (+ tag)
        Insn::add64_imm(R7, ETH_HLEN + dst_off), // r7 = &ip.dst (callee-saved)
        Insn::mov64_reg(R8, R2),                 // r8 = frame start (+ tag)
        Insn::add64_imm(R8, ETH_HLEN + src_off), // r8 = &ip.src (callee-saved)
    ])
    .emit(Insn::ld_map_fd(R1, vips)) // r1 = &vips
    .emit([
        Insn::mov64_reg(R2, R7), // r2 = key: the packet's destination address
        Insn::call(helper::MAP_LOOKUP_ELEM), // r0 = bpf_map_lookup_elem(&vips, &ip.dst)
    ])
    .jump(
        Insn::jne_imm(R0, 0, 0),
        match family {
            Family::V4 => L::Vip4,
            Family::V6 => L::Vip6,
        },
    ) // to a VIP: userspace, unless a ping (below)
    .emit([Insn::ldx_b(R4, R7, 0)]); // r4 = first byte of ip.dst (inside the checked header)
    match family {
        Family::V4 => a.jump(Insn::jge_imm(R4, 0xe0, 0), L::Pass), // multicast, class E, broadcast
        Family::V6 => a
            .jump(Insn::jeq_imm(R4, 0xff, 0), L::Pass) // multicast (ND solicitations)
            .jump(Insn::jeq_imm(R4, 0xfe, 0), L::Pass), // link-local (ND answers)
    };
    a.emit(Insn::ld_map_fd(R1, locals)) // r1 = &locals
        .emit([
            Insn::mov64_reg(R2, R7), // r2 = key: the packet's destination address
            Insn::call(helper::MAP_LOOKUP_ELEM), // r0 = bpf_map_lookup_elem(&locals, &ip.dst)
        ])
        .jump(Insn::jne_imm(R0, 0, 0), L::Pass) // to the director itself: the kernel
        .emit(Insn::ld_map_fd(R1, real_servers)) // r1 = &real_servers
        .emit([
            Insn::mov64_reg(R2, R8),             // r2 = key: the packet's source address
            Insn::call(helper::MAP_LOOKUP_ELEM), // r0 = bpf_map_lookup_elem(&real_servers, &ip.src)
        ])
        .jump(Insn::jne_imm(R0, 0, 0), L::Redirect) // a reply from a real server: userspace
        .jump(Insn::ja(0), L::Pass); // anything else: the kernel
    // --- to a VIP: an echo request is the kernel's (the VIP is one of its
    // addresses, as with keepalived: `ping VIP` works); everything else, ICMP
    // errors included, is the workers'. r7 = &ip.dst; r1..r5 were clobbered by
    // the lookup, so data_end is read again.
    a.label(match family {
        Family::V4 => L::Vip4,
        Family::V6 => L::Vip6,
    })
    .emit([Insn::ldx_w(R3, R6, data_end)]); // r3 = ctx->data_end
    match family {
        Family::V4 => a
            .emit([Insn::ldx_b(R4, R7, -16)]) // r4 = version | IHL
            .jump(Insn::jne_imm(R4, 0x45, 0), L::Redirect) // options: the workers decide
            .emit([Insn::ldx_b(R4, R7, -7)]) // r4 = protocol (L3 + 9)
            .jump(Insn::jne_imm(R4, 1, 0), L::Redirect) // not ICMP
            .emit([
                Insn::mov64_reg(R5, R7),
                Insn::add64_imm(R5, 5), // r5 = L3 + 21: past the ICMP type
            ])
            .jump(Insn::jgt_reg(R5, R3, 0), L::Redirect) // truncated
            .emit([Insn::ldx_b(R4, R7, 4)]) // r4 = ICMP type (L3 + 20)
            .jump(Insn::jeq_imm(R4, 8, 0), L::Pass), // echo request
        Family::V6 => a
            .emit([Insn::ldx_b(R4, R7, -18)]) // r4 = next header (L3 + 6)
            .jump(Insn::jne_imm(R4, 58, 0), L::Redirect) // not ICMPv6 (or an extension)
            .emit([
                Insn::mov64_reg(R5, R7),
                Insn::add64_imm(R5, 17), // r5 = L3 + 41: past the ICMPv6 type
            ])
            .jump(Insn::jgt_reg(R5, R3, 0), L::Redirect) // truncated
            .emit([Insn::ldx_b(R4, R7, 16)]) // r4 = ICMPv6 type (L3 + 40)
            .jump(Insn::jeq_imm(R4, 128, 0), L::Pass), // echo request
    };
    a.jump(Insn::ja(0), L::Redirect);
}

// ---------------------------------------------------------------------------
// The loaded program and its maps
// ---------------------------------------------------------------------------

/// The license string: the helpers used are not GPL-only; this one is GPL-compatible
/// and matches the project's MIT option.
const LICENSE: &CStr = c"Dual MIT/GPL";
/// Map value: presence is all that matters (kept 4 bytes for future flags).
const PRESENT: [u8; 4] = 1u32.to_ne_bytes();

/// Errors of the steering program.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    /// Creating or updating map `map` failed.
    #[error("map {map}: {source}")]
    Map {
        /// The map's name.
        map: &'static str,
        /// The underlying error.
        #[source]
        source: BpfError,
    },
    /// Attaching the program to an interface failed.
    #[error("attaching the steering program: {0}")]
    Attach(#[source] BpfError),
    /// Loading or running the program failed.
    #[error("steering program: {0}")]
    Prog(#[source] BpfError),
}

/// Capacities and fallback of a [`SteeringProgram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SteeringOptions {
    /// Capacity of each VIP map (per family).
    pub max_vips: u32,
    /// Capacity of each real-server map (per family).
    pub max_real_servers: u32,
    /// Entries of the XSKMAP (rx queues).
    pub max_queues: u32,
    /// Action when the XSKMAP has no socket for the frame's queue (XDP).
    pub fallback: Fallback,
    /// XDP, or tc ingress as AF_PACKET mode's guard.
    pub hook: SteerHook,
}

impl Default for SteeringOptions {
    fn default() -> Self {
        SteeringOptions {
            max_vips: 1024,
            max_real_servers: 4096,
            max_queues: 64,
            fallback: Fallback::Pass,
            hook: SteerHook::Xdp,
        }
    }
}

/// A steering program attached to an interface (an XDP or a tcx link);
/// dropping it detaches the program.
#[derive(Debug)]
pub struct SteerLink {
    fd: BpfFd,
    ifindex: u32,
}

impl SteerLink {
    /// The interface the program is attached to.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The link's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }
}

/// The loaded steering program with its maps; [`SteeringProgram::attach`] puts it
/// on an interface.
#[derive(Debug)]
pub struct SteeringProgram {
    prog: BpfFd,
    vip4: Map,
    vip6: Map,
    rs4: Map,
    rs6: Map,
    local4: Map,
    local6: Map,
    xsks: Map,
    insn_count: usize,
    verifier_stats: String,
}

fn create(
    name: &'static str,
    ty: MapType,
    key: usize,
    value: usize,
    max: u32,
) -> Result<Map, SteerError> {
    bpf::map_create(ty, name, key, value, max)
        .map_err(|source| SteerError::Map { map: name, source })
}

fn addr_key(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

impl SteeringProgram {
    /// Creates the maps, fills them with `vips` and `real_servers`, and loads the
    /// program (default [`SteeringOptions`]).
    pub fn load(vips: &[IpAddr], real_servers: &[IpAddr]) -> Result<Self, SteerError> {
        Self::load_with(vips, real_servers, SteeringOptions::default())
    }

    /// As [`SteeringProgram::load`], with explicit options.
    pub fn load_with(
        vips: &[IpAddr],
        real_servers: &[IpAddr],
        opts: SteeringOptions,
    ) -> Result<Self, SteerError> {
        let v = PRESENT.len();
        let vip4 = create("xvs_vip4", MapType::Hash, 4, v, opts.max_vips)?;
        let vip6 = create("xvs_vip6", MapType::Hash, 16, v, opts.max_vips)?;
        let rs4 = create("xvs_rs4", MapType::Hash, 4, v, opts.max_real_servers)?;
        let rs6 = create("xvs_rs6", MapType::Hash, 16, v, opts.max_real_servers)?;
        let local4 = create("xvs_local4", MapType::Hash, 4, v, opts.max_vips)?;
        let local6 = create("xvs_local6", MapType::Hash, 16, v, opts.max_vips)?;
        let xsks = create("xvs_xsks", MapType::XskMap, 4, 4, opts.max_queues)?;
        let maps = ProgramMaps {
            vip4: vip4.fd().raw(),
            vip6: vip6.fd().raw(),
            rs4: rs4.fd().raw(),
            rs6: rs6.fd().raw(),
            local4: local4.fd().raw(),
            local6: local6.fd().raw(),
            xsks: xsks.fd().raw(),
        };
        let insns = program(maps, opts.fallback, opts.hook);
        let loaded = bpf::prog_load_as(opts.hook.prog_type(), &insns, LICENSE, "xvs_steer")
            .map_err(SteerError::Prog)?;
        let this = SteeringProgram {
            prog: loaded.fd,
            vip4,
            vip6,
            rs4,
            rs6,
            local4,
            local6,
            xsks,
            insn_count: insns.len(),
            verifier_stats: loaded.verifier_stats,
        };
        for vip in vips {
            this.add_vip(*vip)?;
        }
        for rs in real_servers {
            this.add_real_server(*rs)?;
        }
        Ok(this)
    }

    fn vip_map(&self, addr: &IpAddr) -> (&'static str, &Map) {
        match addr {
            IpAddr::V4(_) => ("xvs_vip4", &self.vip4),
            IpAddr::V6(_) => ("xvs_vip6", &self.vip6),
        }
    }

    fn rs_map(&self, addr: &IpAddr) -> (&'static str, &Map) {
        match addr {
            IpAddr::V4(_) => ("xvs_rs4", &self.rs4),
            IpAddr::V6(_) => ("xvs_rs6", &self.rs6),
        }
    }

    fn local_map(&self, addr: &IpAddr) -> (&'static str, &Map) {
        match addr {
            IpAddr::V4(_) => ("xvs_local4", &self.local4),
            IpAddr::V6(_) => ("xvs_local6", &self.local6),
        }
    }

    fn insert((map, m): (&'static str, &Map), addr: &IpAddr) -> Result<(), SteerError> {
        bpf::map_update_elem(m, &addr_key(addr), &PRESENT)
            .map_err(|source| SteerError::Map { map, source })
    }

    fn remove((map, m): (&'static str, &Map), addr: &IpAddr) -> Result<bool, SteerError> {
        bpf::map_delete_elem(m, &addr_key(addr)).map_err(|source| SteerError::Map { map, source })
    }

    /// Steers frames to `vip` to userspace.
    pub fn add_vip(&self, vip: IpAddr) -> Result<(), SteerError> {
        Self::insert(self.vip_map(&vip), &vip)
    }

    /// Stops steering frames to `vip`; `Ok(false)` if it was not there.
    pub fn remove_vip(&self, vip: IpAddr) -> Result<bool, SteerError> {
        Self::remove(self.vip_map(&vip), &vip)
    }

    /// Steers frames from real server `addr` (NAT replies) to userspace.
    pub fn add_real_server(&self, addr: IpAddr) -> Result<(), SteerError> {
        Self::insert(self.rs_map(&addr), &addr)
    }

    /// Stops steering frames from `addr`; `Ok(false)` if it was not there.
    pub fn remove_real_server(&self, addr: IpAddr) -> Result<bool, SteerError> {
        Self::remove(self.rs_map(&addr), &addr)
    }

    /// Keeps frames to `addr` (one of the director's own addresses) with the
    /// kernel even when they come from a real server.
    pub fn add_local(&self, addr: IpAddr) -> Result<(), SteerError> {
        Self::insert(self.local_map(&addr), &addr)
    }

    /// Undoes [`SteeringProgram::add_local`]; false if `addr` was not there.
    pub fn remove_local(&self, addr: IpAddr) -> Result<bool, SteerError> {
        Self::remove(self.local_map(&addr), &addr)
    }

    /// Binds rx queue `queue` to the AF_XDP socket `xsk`.
    pub fn set_socket(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), SteerError> {
        let fd = xsk.as_raw_fd() as u32;
        bpf::map_update_elem(&self.xsks, &queue.to_ne_bytes(), &fd.to_ne_bytes()).map_err(
            |source| SteerError::Map {
                map: "xvs_xsks",
                source,
            },
        )
    }

    /// Unbinds rx queue `queue` (the XSKMAP is an array: clearing an empty
    /// slot succeeds; a queue past `max_queues` is an error).
    pub fn clear_socket(&self, queue: u32) -> Result<(), SteerError> {
        match bpf::map_delete_elem(&self.xsks, &queue.to_ne_bytes()) {
            Ok(_) => Ok(()),
            Err(source) => Err(SteerError::Map {
                map: "xvs_xsks",
                source,
            }),
        }
    }

    /// The XSKMAP (rx queue → AF_XDP socket).
    pub fn xsks_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.xsks.fd().as_fd()
    }

    /// The program (for attaching to an interface).
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.prog.as_fd()
    }

    /// Attaches the program (loaded for [`SteerHook::Xdp`]) to interface
    /// `ifindex` through `BPF_LINK_CREATE`. The program stays attached while the
    /// returned [`SteerLink`] lives.
    pub fn attach(&self, ifindex: u32, mode: XdpMode) -> Result<SteerLink, SteerError> {
        let fd = bpf::xdp_link_create(&self.prog, ifindex, mode).map_err(SteerError::Attach)?;
        Ok(SteerLink { fd, ifindex })
    }

    /// Attaches the program (loaded for [`SteerHook::TcGuard`]) at the tc ingress
    /// of interface `ifindex` (a tcx link), while the returned link lives.
    pub fn attach_tc(&self, ifindex: u32) -> Result<SteerLink, SteerError> {
        let fd = bpf::tcx_ingress_link_create(&self.prog, ifindex).map_err(SteerError::Attach)?;
        Ok(SteerLink { fd, ifindex })
    }

    /// Number of instructions loaded (an `ld_imm64` counts two).
    pub fn insn_count(&self) -> usize {
        self.insn_count
    }

    /// The verifier's statistics for this program (`processed N insns ...`).
    pub fn verifier_stats(&self) -> &str {
        &self.verifier_stats
    }

    /// Runs the program once on `frame` with `BPF_PROG_RUN` (rx queue 0);
    /// no packet leaves the machine.
    pub fn test_run(&self, frame: &[u8]) -> Result<XdpAction, SteerError> {
        let run = bpf::prog_test_run(&self.prog, frame).map_err(SteerError::Prog)?;
        Ok(XdpAction::from_retval(run.retval))
    }

    /// For a program loaded as [`SteerHook::TcGuard`]: runs it once on `frame`
    /// (`BPF_PROG_RUN`) and says whether it drops the frame (`TC_ACT_SHOT`).
    pub fn test_run_guard(&self, frame: &[u8]) -> Result<bool, SteerError> {
        let run = bpf::prog_test_run(&self.prog, frame).map_err(SteerError::Prog)?;
        Ok(run.retval as i32 == ProgType::SchedCls.verdicts().0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_to_labels() {
        #[derive(Debug, Clone, Copy, PartialEq)]
        enum T {
            End,
        }
        let mut a = Asm::new();
        a.jump(Insn::ja(0), T::End)
            .emit([Insn::mov64_imm(R0, 1)])
            .emit(Insn::ld_map_fd(R1, 7))
            .label(T::End)
            .emit([Insn::exit()]);
        let p = a.finish();
        assert_eq!(p.len(), 5);
        assert_eq!(p[0].off, 3);
        assert_eq!(p[2].imm, 7);
        assert_eq!(p[2].code, 0x18);
    }

    #[test]
    fn encodings_match_the_kernel() {
        // Reference encodings (as in the kernel's filter.h macros, little-endian regs).
        assert_eq!(Insn::mov64_reg(R6, R1).code, 0xbf);
        assert_eq!(Insn::mov64_imm(R0, 2).code, 0xb7);
        assert_eq!(Insn::add64_imm(R4, 14).code, 0x07);
        assert_eq!(Insn::ldx_w(R2, R6, 0).code, 0x61);
        assert_eq!(Insn::ldx_h(R5, R2, 12).code, 0x69);
        assert_eq!(Insn::ldx_b(R5, R2, 12).code, 0x71);
        assert_eq!(Insn::jgt_reg(R4, R3, 0).code, 0x2d);
        assert_eq!(Insn::jne_imm(R5, 0, 0).code, 0x55);
        assert_eq!(Insn::jeq_imm(R5, 0, 0).code, 0x15);
        assert_eq!(Insn::ja(0).code, 0x05);
        assert_eq!(Insn::call(1).code, 0x85);
        assert_eq!(Insn::exit().code, 0x95);
        assert_eq!(Insn::add64_reg(R1, R2).code, 0x0f);
        assert_eq!(Insn::sub64_reg(R1, R2).code, 0x1f);
        assert_eq!(Insn::and64_imm(R1, 7).code, 0x57);
        assert_eq!(Insn::lsh64_imm(R1, 3).code, 0x67);
        assert_eq!(Insn::rsh64_imm(R1, 3).code, 0x77);
        assert_eq!(Insn::rsh64_reg(R1, R2).code, 0x7f);
        assert_eq!(Insn::mod64_imm(R1, 3).code, 0x97);
        assert_eq!(Insn::mov32_reg(R1, R2).code, 0xbc);
        assert_eq!(Insn::xor32_imm(R1, -1).code, 0xa4);
        assert_eq!(Insn::to_be(R1, 16).code, 0xdc);
        assert_eq!(Insn::ldx_dw(R1, R2, 0).code, 0x79);
        assert_eq!(Insn::stx_dw(R1, 0, R2).code, 0x7b);
        assert_eq!(Insn::stx_w(R1, 0, R2).code, 0x63);
        assert_eq!(Insn::stx_h(R1, 0, R2).code, 0x6b);
        assert_eq!(Insn::st_w(R10, -4, 0).code, 0x62);
        assert_eq!(Insn::st_dw(R10, -8, 0).code, 0x7a);
        assert_eq!(Insn::jgt_imm(R1, 0, 0).code, 0x25);
        assert_eq!(Insn::jge_reg(R1, R2, 0).code, 0x3d);
        if cfg!(target_endian = "little") {
            assert_eq!(Insn::mov64_reg(R6, R1).regs, 0x16);
            assert_eq!(Insn::ld_map_fd(R1, 3)[0].regs, 0x11);
        }
    }

    #[test]
    fn program_is_small_and_ends_in_exit() {
        let maps = ProgramMaps {
            vip4: 3,
            vip6: 4,
            rs4: 5,
            rs6: 6,
            local4: 8,
            local6: 9,
            xsks: 7,
        };
        for hook in [SteerHook::Xdp, SteerHook::TcGuard] {
            let p = program(maps, Fallback::Pass, hook);
            assert!(p.len() < 100, "{hook:?}: {} instructions", p.len());
            assert_eq!(p.last(), Some(&Insn::exit()));
        }
    }
}
