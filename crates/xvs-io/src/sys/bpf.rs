//! # sys::bpf — thin wrappers over the `bpf(2)` system call
//!
//! Just the commands the steering program and the packet generator need:
//! create a map (hash, array, their per-CPU variants, XSKMAP), update / delete /
//! look up an element and walk the keys, load an XDP program (with the
//! verifier's log), run a program on a buffer (`BPF_PROG_TEST_RUN`), and send
//! live frames through a program ([`prog_test_run_live`],
//! `BPF_F_TEST_XDP_LIVE_FRAMES`).
//!
//! The `bpf_attr` union is modelled as a `#[repr(C)]` union of the per-command
//! structs (prefixes of the kernel UAPI layout, `linux/bpf.h`) and a 128-byte raw
//! arm; every call starts from an all-zero attr, as the kernel requires unused
//! tail bytes to be zero. The arms have no implicit padding (explicit `_pad`
//! fields instead): assigning a struct leaves its padding bytes undefined, and
//! the kernel rejects an attr with non-zero bytes past the fields it knows.
//!
//! Kernel objects come back as [`BpfFd`], which closes the descriptor on drop.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::steer::Insn;

/// `enum bpf_cmd` values used here.
mod cmd {
    pub const MAP_CREATE: u32 = 0;
    pub const MAP_LOOKUP_ELEM: u32 = 1;
    pub const MAP_UPDATE_ELEM: u32 = 2;
    pub const MAP_DELETE_ELEM: u32 = 3;
    pub const MAP_GET_NEXT_KEY: u32 = 4;
    pub const PROG_LOAD: u32 = 5;
    pub const PROG_TEST_RUN: u32 = 10;
    pub const LINK_CREATE: u32 = 28;
}

/// Program types (`enum bpf_prog_type`) this crate loads: what the program's
/// context is and where it may be attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ProgType {
    /// `BPF_PROG_TYPE_SCHED_CLS`: a tc classifier (context `struct __sk_buff`),
    /// attached with [`tcx_ingress_link_create`].
    SchedCls = 3,
    /// `BPF_PROG_TYPE_XDP` (context `struct xdp_md`), attached with
    /// [`xdp_link_create`].
    Xdp = 6,
}

/// `struct xdp_md` field offsets: `data`.
pub const MD_DATA: i16 = 0;
/// `struct xdp_md`: `data_end`.
pub const MD_DATA_END: i16 = 4;
/// `struct __sk_buff` field offsets: `data` (at tc ingress: the Ethernet header).
const SKB_DATA: i16 = 76;
/// `struct __sk_buff`: `data_end`.
const SKB_DATA_END: i16 = 80;

impl ProgType {
    /// Offsets of the context's `data` and `data_end` pointers.
    pub const fn packet(self) -> (i16, i16) {
        match self {
            ProgType::Xdp => (MD_DATA, MD_DATA_END),
            ProgType::SchedCls => (SKB_DATA, SKB_DATA_END),
        }
    }

    /// The return values that drop a frame and that let it go on:
    /// (`XDP_DROP`, `XDP_PASS`), (`TC_ACT_SHOT`, `TC_ACT_OK`).
    pub const fn verdicts(self) -> (i32, i32) {
        match self {
            ProgType::Xdp => (1, 2),
            ProgType::SchedCls => (2, 0),
        }
    }
}

/// `BPF_ANY`: create or update.
const UPDATE_ANY: u64 = 0;
/// `BPF_LOG_LEVEL1`: the verifier's full trace.
const LOG_LEVEL_TRACE: u32 = 1;
/// `BPF_LOG_STATS`: only the verifier's statistics (instruction count, ...).
const LOG_LEVEL_STATS: u32 = 4;
/// Size of the log buffer for statistics on a successful load.
const STATS_LOG_SIZE: usize = 4096;
/// Size of the log buffer for the trace of a rejected program.
const TRACE_LOG_SIZE: usize = 1 << 20;
/// `BPF_MAXINSNS`: the instruction limit for unprivileged-size programs; ours is far below.
const MAX_INSNS: usize = 4096;

/// Map types (`enum bpf_map_type`) this crate creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    /// `BPF_MAP_TYPE_HASH`.
    Hash = 1,
    /// `BPF_MAP_TYPE_ARRAY`: `u32` index → value, all entries exist (zeroed).
    Array = 2,
    /// `BPF_MAP_TYPE_PERCPU_HASH`: a hash with one value per possible CPU.
    PercpuHash = 5,
    /// `BPF_MAP_TYPE_PERCPU_ARRAY`: an array with one value per possible CPU.
    PercpuArray = 6,
    /// `BPF_MAP_TYPE_DEVMAP`: `u32` index → interface index, for `bpf_redirect_map`.
    DevMap = 14,
    /// `BPF_MAP_TYPE_XSKMAP`: queue index → AF_XDP socket.
    XskMap = 17,
}

/// Errors of the `bpf(2)` wrappers.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    /// The system call failed.
    #[error("bpf({cmd}): {source}")]
    Syscall {
        /// The command, e.g. `BPF_MAP_CREATE`.
        cmd: &'static str,
        /// errno as an I/O error.
        #[source]
        source: io::Error,
    },
    /// `BPF_PROG_LOAD` failed; `log` is the verifier's trace.
    #[error("bpf(BPF_PROG_LOAD): {source}; verifier log:\n{log}")]
    Verifier {
        /// errno as an I/O error.
        #[source]
        source: io::Error,
        /// The verifier's log (may be empty if the failure came before verification).
        log: String,
    },
    /// An argument does not fit the kernel's limits.
    #[error("{what}: {len} is out of range")]
    OutOfRange {
        /// What was out of range.
        what: &'static str,
        /// Its value.
        len: usize,
    },
    /// The key or value slice length differs from the map's key / value size.
    #[error("{what} is {got} bytes, the map wants {want}")]
    Size {
        /// `key` or `value`.
        what: &'static str,
        /// Given length.
        got: usize,
        /// The map's size.
        want: usize,
    },
}

/// An owned BPF object (map or program) file descriptor, closed on drop.
#[derive(Debug)]
pub struct BpfFd(OwnedFd);

impl BpfFd {
    /// The raw descriptor (for `BPF_PSEUDO_MAP_FD` immediates and XSKMAP values).
    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl AsFd for BpfFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A map's file descriptor with its key and value sizes (checked on every call).
#[derive(Debug)]
pub struct Map {
    fd: BpfFd,
    map_type: MapType,
    key_size: usize,
    value_size: usize,
}

impl Map {
    /// The map's descriptor.
    pub fn fd(&self) -> &BpfFd {
        &self.fd
    }

    /// Key size in bytes.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// Value size in bytes.
    pub fn value_size(&self) -> usize {
        self.value_size
    }

    /// The map's type.
    pub fn map_type(&self) -> MapType {
        self.map_type
    }

    /// Whether the map keeps one value per possible CPU.
    pub fn is_percpu(&self) -> bool {
        matches!(self.map_type, MapType::PercpuHash | MapType::PercpuArray)
    }

    /// Bytes that [`map_lookup_elem`] fills: the value size, or for a per-CPU
    /// map the value size rounded up to 8 times [`possible_cpus`] (CPU `i`'s
    /// value starts at `i * round_up(value_size, 8)`).
    pub fn lookup_len(&self) -> Result<usize, BpfError> {
        if self.is_percpu() {
            let cpus = possible_cpus().map_err(|source| BpfError::Syscall {
                cmd: "possible CPUs (/sys/devices/system/cpu/possible)",
                source,
            })?;
            Ok(self.value_size.next_multiple_of(8) * cpus)
        } else {
            Ok(self.value_size)
        }
    }
}

/// The number of possible CPUs (the per-CPU map value count): the highest CPU
/// number in `/sys/devices/system/cpu/possible` (e.g. `0-1`, `0,2-3`) plus one.
pub fn possible_cpus() -> io::Result<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected CPU list {text:?}"),
        )
    })
}

/// The highest CPU in a kernel CPU list (`0-3,5`) plus one.
fn parse_cpu_list(text: &str) -> Option<usize> {
    let mut max = None;
    for part in text.trim().split(',') {
        let last = part.rsplit('-').next()?;
        let n: usize = last.trim().parse().ok()?;
        max = Some(max.map_or(n, |m: usize| m.max(n)));
    }
    max.map(|m| m + 1)
}

// ---- bpf_attr layouts (prefixes of `union bpf_attr`, linux/bpf.h) ----

/// `BPF_MAP_CREATE` arm.
#[repr(C)]
#[derive(Clone, Copy)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `BPF_MAP_*_ELEM` arm.
#[repr(C)]
#[derive(Clone, Copy)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_PROG_LOAD` arm.
#[repr(C)]
#[derive(Clone, Copy)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `BPF_PROG_TEST_RUN` arm.
#[repr(C)]
#[derive(Clone, Copy)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// Explicit, so that it is written as zero (implicit padding is not, and
    /// the kernel rejects non-zero bytes past the last field it knows).
    _pad: u32,
}

/// `BPF_LINK_CREATE` arm (the XDP and tcx subset: no relative link, any revision).
#[repr(C)]
#[derive(Clone, Copy)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// The attr passed to `bpf(2)`: 128 bytes, zero-initialised through `raw`.
#[repr(C)]
union Attr {
    map_create: MapCreateAttr,
    map_elem: MapElemAttr,
    prog_load: ProgLoadAttr,
    test_run: TestRunAttr,
    link_create: LinkCreateAttr,
    raw: [u64; 16],
}

const _: () = assert!(size_of::<Attr>() == 128);
const _: () = assert!(size_of::<MapCreateAttr>() == 44);
const _: () = assert!(size_of::<MapElemAttr>() == 32);
const _: () = assert!(size_of::<ProgLoadAttr>() == 72);
const _: () = assert!(size_of::<TestRunAttr>() == 80);
const _: () = assert!(size_of::<LinkCreateAttr>() == 16);
const _: () = assert!(size_of::<Insn>() == 8);

impl Attr {
    fn zeroed() -> Self {
        Attr { raw: [0; 16] }
    }
}

/// A pointer as the kernel's `__aligned_u64`.
fn ptr_u64<T>(p: *const T) -> u64 {
    p as usize as u64
}

/// A NUL-terminated object name of at most 15 bytes (longer names are cut).
fn obj_name(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// Calls `bpf(cmd, attr, sizeof attr)`; returns the non-negative result.
///
/// # Safety
/// Every pointer stored in `attr` for `cmd` must be valid for the access the
/// kernel makes through it (reads of the stated sizes, writes of the stated
/// sizes into buffers the caller owns exclusively) for the duration of the call.
unsafe fn sys_bpf(cmd: u32, attr: &mut Attr) -> io::Result<libc::c_long> {
    let attr_ptr: *mut Attr = attr;
    // SAFETY: `attr_ptr` points to a live, exclusively borrowed 128-byte `Attr`
    // whose size we pass; the pointers inside it are valid per this function's
    // contract, which the caller upholds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            libc::c_long::from(cmd),
            attr_ptr,
            size_of::<Attr>() as libc::c_long,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wraps a descriptor returned by a successful `bpf(2)` call.
fn owned_fd(ret: libc::c_long) -> BpfFd {
    let fd = RawFd::try_from(ret).expect("bpf(2) returns an int-sized fd");
    // SAFETY: `fd` was just returned by a successful bpf(2) call that creates a
    // new descriptor; nothing else owns it, and it is open.
    BpfFd(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn u32_of(what: &'static str, len: usize) -> Result<u32, BpfError> {
    u32::try_from(len).map_err(|_| BpfError::OutOfRange { what, len })
}

/// `BPF_MAP_CREATE`: a map of `map_type` with the given sizes and capacity.
pub fn map_create(
    map_type: MapType,
    name: &str,
    key_size: usize,
    value_size: usize,
    max_entries: u32,
) -> Result<Map, BpfError> {
    let mut attr = Attr::zeroed();
    attr.map_create = MapCreateAttr {
        map_type: map_type as u32,
        key_size: u32_of("key size", key_size)?,
        value_size: u32_of("value size", value_size)?,
        max_entries,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name: obj_name(name),
    };
    // SAFETY: the MAP_CREATE arm holds no pointers (the name is inline).
    let ret =
        unsafe { sys_bpf(cmd::MAP_CREATE, &mut attr) }.map_err(|source| BpfError::Syscall {
            cmd: "BPF_MAP_CREATE",
            source,
        })?;
    Ok(Map {
        fd: owned_fd(ret),
        map_type,
        key_size,
        value_size,
    })
}

fn check_size(what: &'static str, got: usize, want: usize) -> Result<(), BpfError> {
    if got == want {
        Ok(())
    } else {
        Err(BpfError::Size { what, got, want })
    }
}

/// `BPF_MAP_UPDATE_ELEM` with `BPF_ANY` (insert or replace); `value` is exactly
/// [`Map::lookup_len`] bytes (every CPU's value, for a per-CPU map).
pub fn map_update_elem(map: &Map, key: &[u8], value: &[u8]) -> Result<(), BpfError> {
    check_size("key", key.len(), map.key_size)?;
    check_size("value", value.len(), map.lookup_len()?)?;
    let mut attr = Attr::zeroed();
    attr.map_elem = MapElemAttr {
        map_fd: map.fd.raw() as u32,
        _pad: 0,
        key: ptr_u64(key.as_ptr()),
        value: ptr_u64(value.as_ptr()),
        flags: UPDATE_ANY,
    };
    // SAFETY: `key` and `value` are live slices of exactly the map's key size
    // and of the value size the kernel reads for this map (value size, or
    // per-CPU: rounded value size × possible CPUs; both checked above); the
    // kernel only reads them during the call.
    unsafe { sys_bpf(cmd::MAP_UPDATE_ELEM, &mut attr) }.map_err(|source| BpfError::Syscall {
        cmd: "BPF_MAP_UPDATE_ELEM",
        source,
    })?;
    Ok(())
}

/// `BPF_MAP_DELETE_ELEM`; `Ok(false)` when the key was absent (`ENOENT`).
pub fn map_delete_elem(map: &Map, key: &[u8]) -> Result<bool, BpfError> {
    check_size("key", key.len(), map.key_size)?;
    let mut attr = Attr::zeroed();
    attr.map_elem = MapElemAttr {
        map_fd: map.fd.raw() as u32,
        _pad: 0,
        key: ptr_u64(key.as_ptr()),
        value: 0,
        flags: 0,
    };
    // SAFETY: `key` is a live slice of exactly the map's key size (checked
    // above); the kernel only reads it during the call.
    match unsafe { sys_bpf(cmd::MAP_DELETE_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(source) => Err(BpfError::Syscall {
            cmd: "BPF_MAP_DELETE_ELEM",
            source,
        }),
    }
}

/// `BPF_MAP_LOOKUP_ELEM`: copies the value of `key` into `value`, which must be
/// exactly [`Map::lookup_len`] bytes (all CPUs' values for a per-CPU map);
/// `Ok(false)` when the key is absent (`ENOENT`).
pub fn map_lookup_elem(map: &Map, key: &[u8], value: &mut [u8]) -> Result<bool, BpfError> {
    check_size("key", key.len(), map.key_size)?;
    check_size("value", value.len(), map.lookup_len()?)?;
    let mut attr = Attr::zeroed();
    attr.map_elem = MapElemAttr {
        map_fd: map.fd.raw() as u32,
        _pad: 0,
        key: ptr_u64(key.as_ptr()),
        value: ptr_u64(value.as_mut_ptr()),
        flags: 0,
    };
    // SAFETY: `key` is a live slice of exactly the map's key size, which the
    // kernel reads; `value` is an exclusively borrowed buffer of exactly the
    // size the kernel writes for this map (value size, or per-CPU: rounded value
    // size × possible CPUs; both checked above); both outlive the call.
    match unsafe { sys_bpf(cmd::MAP_LOOKUP_ELEM, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(source) => Err(BpfError::Syscall {
            cmd: "BPF_MAP_LOOKUP_ELEM",
            source,
        }),
    }
}

/// `BPF_MAP_GET_NEXT_KEY`: writes the key after `key` (the first key when
/// `key` is `None` or no longer present) into `next`; `Ok(false)` at the end.
pub fn map_get_next_key(map: &Map, key: Option<&[u8]>, next: &mut [u8]) -> Result<bool, BpfError> {
    if let Some(k) = key {
        check_size("key", k.len(), map.key_size)?;
    }
    check_size("next key", next.len(), map.key_size)?;
    let mut attr = Attr::zeroed();
    attr.map_elem = MapElemAttr {
        map_fd: map.fd.raw() as u32,
        _pad: 0,
        key: key.map_or(0, |k| ptr_u64(k.as_ptr())),
        value: ptr_u64(next.as_mut_ptr()),
        flags: 0,
    };
    // SAFETY: `key`, when given, is a live slice of the map's key size that the
    // kernel reads (a null key asks for the first key); `next` is an exclusively
    // borrowed buffer of exactly the key size, which the kernel writes; both
    // outlive the call.
    match unsafe { sys_bpf(cmd::MAP_GET_NEXT_KEY, &mut attr) } {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(source) => Err(BpfError::Syscall {
            cmd: "BPF_MAP_GET_NEXT_KEY",
            source,
        }),
    }
}

/// A loaded program and the verifier's statistics line(s).
#[derive(Debug)]
pub struct LoadedProg {
    /// The program's descriptor.
    pub fd: BpfFd,
    /// The verifier's `BPF_LOG_STATS` output, e.g. `processed 42 insns ...`.
    pub verifier_stats: String,
}

fn log_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim_end().to_owned()
}

fn prog_load_once(
    ty: ProgType,
    insns: &[Insn],
    license: &CStr,
    name: &str,
    log_level: u32,
    log: &mut [u8],
) -> io::Result<libc::c_long> {
    let mut attr = Attr::zeroed();
    attr.prog_load = ProgLoadAttr {
        prog_type: ty as u32,
        insn_cnt: insns.len() as u32,
        insns: ptr_u64(insns.as_ptr()),
        license: ptr_u64(license.as_ptr()),
        log_level,
        log_size: log.len() as u32,
        log_buf: ptr_u64(log.as_mut_ptr()),
        kern_version: 0,
        prog_flags: 0,
        prog_name: obj_name(name),
        prog_ifindex: 0,
        expected_attach_type: 0,
    };
    // SAFETY: `insns` is a live slice of `insn_cnt` 8-byte `struct bpf_insn`
    // (`Insn` is `repr(C)`, size asserted); `license` is NUL-terminated; `log`
    // is an exclusively borrowed buffer of `log_size` bytes the kernel may write;
    // all outlive the call.
    unsafe { sys_bpf(cmd::PROG_LOAD, &mut attr) }
}

/// `BPF_PROG_LOAD` of an XDP program ([`prog_load_as`] with [`ProgType::Xdp`]).
pub fn prog_load(insns: &[Insn], license: &CStr, name: &str) -> Result<LoadedProg, BpfError> {
    prog_load_as(ProgType::Xdp, insns, license, name)
}

/// `BPF_PROG_LOAD` of a program of type `ty`.
///
/// Loads with `BPF_LOG_STATS` (kept in [`LoadedProg::verifier_stats`]); if the
/// kernel refuses, loads again with the full trace and returns it in
/// [`BpfError::Verifier`].
pub fn prog_load_as(
    ty: ProgType,
    insns: &[Insn],
    license: &CStr,
    name: &str,
) -> Result<LoadedProg, BpfError> {
    if insns.is_empty() || insns.len() > MAX_INSNS {
        return Err(BpfError::OutOfRange {
            what: "instruction count",
            len: insns.len(),
        });
    }
    let mut stats = vec![0u8; STATS_LOG_SIZE];
    match prog_load_once(ty, insns, license, name, LOG_LEVEL_STATS, &mut stats) {
        Ok(ret) => Ok(LoadedProg {
            fd: owned_fd(ret),
            verifier_stats: log_text(&stats),
        }),
        Err(first) => {
            let mut trace = vec![0u8; TRACE_LOG_SIZE];
            match prog_load_once(ty, insns, license, name, LOG_LEVEL_TRACE, &mut trace) {
                // Accepted on the second try (should not happen): keep it.
                Ok(ret) => Ok(LoadedProg {
                    fd: owned_fd(ret),
                    verifier_stats: log_text(&stats),
                }),
                Err(_) => Err(BpfError::Verifier {
                    source: first,
                    log: log_text(&trace),
                }),
            }
        }
    }
}

/// Result of one [`prog_test_run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (for XDP: the action).
    pub retval: u32,
    /// The frame as the program left it.
    pub data_out: Vec<u8>,
}

/// Room for the program to grow the frame (`bpf_xdp_adjust_head`/`_tail`).
const TEST_RUN_SLACK: usize = 512;

/// `BPF_PROG_TEST_RUN` (a.k.a. `BPF_PROG_RUN`): runs `prog` once on a copy of
/// `data` with a default context (queue 0). No packet leaves the machine.
pub fn prog_test_run(prog: &BpfFd, data: &[u8]) -> Result<TestRun, BpfError> {
    let mut out = vec![0u8; data.len() + TEST_RUN_SLACK];
    let mut attr = Attr::zeroed();
    attr.test_run = TestRunAttr {
        prog_fd: prog.raw() as u32,
        retval: 0,
        data_size_in: u32_of("frame length", data.len())?,
        data_size_out: out.len() as u32,
        data_in: ptr_u64(data.as_ptr()),
        data_out: ptr_u64(out.as_mut_ptr()),
        repeat: 1,
        duration: 0,
        ctx_size_in: 0,
        ctx_size_out: 0,
        ctx_in: 0,
        ctx_out: 0,
        flags: 0,
        cpu: 0,
        batch_size: 0,
        _pad: 0,
    };
    // SAFETY: `data` is a live slice of `data_size_in` bytes the kernel reads;
    // `out` is an exclusively owned buffer of `data_size_out` bytes it may write;
    // no context buffers are passed (sizes and pointers zero).
    unsafe { sys_bpf(cmd::PROG_TEST_RUN, &mut attr) }.map_err(|source| BpfError::Syscall {
        cmd: "BPF_PROG_TEST_RUN",
        source,
    })?;
    // SAFETY: `test_run` is the arm written above; the kernel writes back into
    // the same layout (retval, data_size_out, duration), all plain integers.
    let result = unsafe { attr.test_run };
    out.truncate((result.data_size_out as usize).min(out.len()));
    Ok(TestRun {
        retval: result.retval,
        data_out: out,
    })
}

/// `BPF_F_TEST_XDP_LIVE_FRAMES`: frames leave through the program's verdict
/// (`XDP_TX`, `XDP_REDIRECT`) instead of being copied back.
const TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// `TEST_XDP_MAX_BATCH` in net/bpf/test_run.c.
const TEST_XDP_MAX_BATCH: u32 = 256;

/// `struct xdp_md` as the test-run context (`ctx_in`).
#[repr(C)]
#[derive(Clone, Copy)]
struct XdpMd {
    data: u32,
    data_end: u32,
    data_meta: u32,
    ingress_ifindex: u32,
    rx_queue_index: u32,
    egress_ifindex: u32,
}

const _: () = assert!(size_of::<XdpMd>() == 24);

/// Result of one [`prog_test_run_live`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRun {
    /// The kernel's measured mean time per frame, in ns.
    pub duration_ns: u32,
}

/// `BPF_PROG_RUN` with `BPF_F_TEST_XDP_LIVE_FRAMES`: runs the XDP program
/// `repeat` times on fresh copies of `data` (from a page pool, initialised from
/// `data` once per page: a program's changes to a frame persist into the next
/// run on that page), as if received on queue `rx_queue` of `ifindex`, and
/// carries out each verdict: `XDP_TX` sends the frame out of `ifindex`
/// (on a veth: to its peer, which needs an XDP program or GRO to take it),
/// `XDP_REDIRECT` redirects it, `XDP_PASS` hands it to the stack.
/// `batch_size` frames are processed per redirect flush (0: the kernel's
/// default, 64; at most 256). Interruptible by signals (`EINTR`).
pub fn prog_test_run_live(
    prog: &BpfFd,
    data: &[u8],
    ifindex: u32,
    rx_queue: u32,
    repeat: u32,
    batch_size: u32,
) -> Result<LiveRun, BpfError> {
    if batch_size > TEST_XDP_MAX_BATCH {
        return Err(BpfError::OutOfRange {
            what: "live-frames batch size",
            len: batch_size as usize,
        });
    }
    let len = u32_of("frame length", data.len())?;
    let ctx = XdpMd {
        data: 0,
        data_end: len,
        data_meta: 0,
        ingress_ifindex: ifindex,
        rx_queue_index: rx_queue,
        egress_ifindex: 0,
    };
    let mut attr = Attr::zeroed();
    attr.test_run = TestRunAttr {
        prog_fd: prog.raw() as u32,
        retval: 0,
        data_size_in: len,
        data_size_out: 0,
        data_in: ptr_u64(data.as_ptr()),
        data_out: 0,
        repeat,
        duration: 0,
        ctx_size_in: size_of::<XdpMd>() as u32,
        ctx_size_out: 0,
        ctx_in: ptr_u64(&raw const ctx),
        ctx_out: 0,
        flags: TEST_XDP_LIVE_FRAMES,
        cpu: 0,
        batch_size,
        _pad: 0,
    };
    // SAFETY: `data` is a live slice of `data_size_in` bytes and `ctx` a live
    // `struct xdp_md` of `ctx_size_in` bytes, both only read by the kernel during
    // the call; no output buffers are passed (live mode forbids them).
    unsafe { sys_bpf(cmd::PROG_TEST_RUN, &mut attr) }.map_err(|source| BpfError::Syscall {
        cmd: "BPF_PROG_TEST_RUN (live frames)",
        source,
    })?;
    // SAFETY: `test_run` is the arm written above; the kernel writes back into
    // the same layout (retval, duration), all plain integers.
    let result = unsafe { attr.test_run };
    Ok(LiveRun {
        duration_ns: result.duration,
    })
}

/// `BPF_XDP`: the attach type of an XDP link.
const ATTACH_TYPE_XDP: u32 = 37;

/// How an XDP program is attached (`XDP_FLAGS_*_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XdpMode {
    /// Native if the driver supports it, else generic (flags 0).
    #[default]
    Auto,
    /// Generic (skb) mode, `XDP_FLAGS_SKB_MODE`.
    Generic,
    /// Native (driver) mode, `XDP_FLAGS_DRV_MODE`.
    Native,
}

impl XdpMode {
    fn flags(self) -> u32 {
        match self {
            XdpMode::Auto => 0,
            XdpMode::Generic => 1 << 1,
            XdpMode::Native => 1 << 2,
        }
    }
}

/// `BPF_LINK_CREATE` of an XDP program on interface `ifindex`. The program stays
/// attached while the returned link fd is open (closing it detaches it, also
/// when the process exits). A second XDP link on the same interface is `EBUSY`.
pub fn xdp_link_create(prog: &BpfFd, ifindex: u32, mode: XdpMode) -> Result<BpfFd, BpfError> {
    link_create(prog, ifindex, ATTACH_TYPE_XDP, mode.flags())
}

/// `BPF_TCX_INGRESS`: the attach type of a tcx ingress link (Linux ≥ 6.6).
const ATTACH_TYPE_TCX_INGRESS: u32 = 46;

/// `BPF_LINK_CREATE` of a [`ProgType::SchedCls`] program at the tc ingress hook
/// of interface `ifindex` (tcx: no qdisc needed; the program's return value is
/// a `TC_ACT_*` verdict). Attached while the returned link fd is open; links
/// on one interface run in the order they were made.
pub fn tcx_ingress_link_create(prog: &BpfFd, ifindex: u32) -> Result<BpfFd, BpfError> {
    link_create(prog, ifindex, ATTACH_TYPE_TCX_INGRESS, 0)
}

fn link_create(
    prog: &BpfFd,
    ifindex: u32,
    attach_type: u32,
    flags: u32,
) -> Result<BpfFd, BpfError> {
    let mut attr = Attr::zeroed();
    attr.link_create = LinkCreateAttr {
        prog_fd: prog.raw() as u32,
        target_ifindex: ifindex,
        attach_type,
        flags,
    };
    // SAFETY: the LINK_CREATE arm used here holds no pointers.
    let ret =
        unsafe { sys_bpf(cmd::LINK_CREATE, &mut attr) }.map_err(|source| BpfError::Syscall {
            cmd: "BPF_LINK_CREATE",
            source,
        })?;
    Ok(owned_fd(ret))
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0\n"), Some(1));
        assert_eq!(parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(parse_cpu_list("0,2-3"), Some(4));
        assert_eq!(parse_cpu_list("0-7,9"), Some(10));
        assert_eq!(parse_cpu_list("x"), None);
    }
}
