//! A global allocator that backs large allocations with transparent huge pages.
//!
//! The shared tables (connections, persistence templates, their indexes) are a few
//! large arrays touched at random, split into shards: at the default 1M connections
//! each of 64 shards holds 1 MiB of entries, at 10M 10 MiB. On 4 KiB pages a lookup's
//! two cache lines sit on pages whose translations no TLB holds, so every lookup also
//! walks the page table. With 2 MiB pages the same arrays need 512× fewer
//! translations.
//!
//! Invariants:
//! - a **large** allocation (more than [`MEDIUM_MAX`] bytes, alignment ≤ [`HUGE`]) is
//!   its own anonymous mapping, 2 MiB aligned, rounded up to a multiple of 2 MiB,
//!   advised `MADV_HUGEPAGE` *before* anything touches it (so first-touch faults take
//!   huge pages when the kernel's THP mode is `madvise` or `always`; with `never` it
//!   is an ordinary mapping); freeing it unmaps it;
//! - a **medium** allocation ([`MEDIUM_MIN`]..=[`MEDIUM_MAX`] bytes, alignment ≤ its
//!   size) is a block of the next power of two, carved from such 2 MiB huge mappings
//!   (so a table's shards share huge pages instead of each sitting on small ones);
//!   a freed block goes back on its size's free list for the next allocation of that
//!   size and is never unmapped: what the pool holds is bounded by the peak of live
//!   medium blocks per size, plus at most one 2 MiB mapping per size;
//! - everything else goes to [`System`] unchanged, so small allocations cost what
//!   they always did;
//! - an allocation's kind is decided by its layout alone, which `dealloc` and
//!   `realloc` are given again: the kinds never mix.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::{Mutex, PoisonError};

/// One transparent huge page: the alignment and granule of every mapping made here.
pub const HUGE: usize = 2 << 20;

/// The smallest medium allocation (smaller ones go to [`System`]).
pub const MEDIUM_MIN: usize = 128 << 10;

/// The largest medium allocation (larger ones are mappings of their own).
pub const MEDIUM_MAX: usize = 1 << 20;

/// Medium block sizes: 128 KiB, 256 KiB, 512 KiB, 1 MiB.
const CLASSES: usize = (MEDIUM_MAX / MEDIUM_MIN).trailing_zeros() as usize + 1;

/// The allocator; install it with `#[global_allocator] static A: HugePageAlloc =
/// HugePageAlloc;` in a binary.
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePageAlloc;

/// Where a block of a given layout comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Small,
    /// A pool block of size class `.0` (`MEDIUM_MIN << .0` bytes).
    Medium(usize),
    /// A mapping of its own, `.0` bytes long.
    Large(usize),
}

fn kind(layout: Layout) -> Kind {
    let size = layout.size();
    if size > MEDIUM_MAX && layout.align() <= HUGE {
        Kind::Large(size.next_multiple_of(HUGE))
    } else if (MEDIUM_MIN..=MEDIUM_MAX).contains(&size) && layout.align() <= size {
        // The block is as aligned as it is long (blocks are carved in order from
        // 2 MiB-aligned mappings), so an alignment up to `size` holds.
        let block = size.next_power_of_two();
        Kind::Medium((block / MEDIUM_MIN).trailing_zeros() as usize)
    } else {
        Kind::Small
    }
}

const fn block_len(class: usize) -> usize {
    MEDIUM_MIN << class
}

/// Free medium blocks: per size class, the address of the first free block (0 for
/// none); each free block holds the address of the next in its first word.
static POOL: Mutex<[usize; CLASSES]> = Mutex::new([0; CLASSES]);

/// A free block of `class` (from the free list, else from a fresh huge mapping split
/// into blocks); null when memory is exhausted.
fn take_block(class: usize) -> *mut u8 {
    let mut free = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if free[class] == 0 {
        let region = map_huge(HUGE);
        if region.is_null() {
            return region;
        }
        // Last block first, so that the list hands them out in address order.
        for at in (0..HUGE).step_by(block_len(class)).rev() {
            // SAFETY: `region + at` is a whole block of the fresh mapping (`HUGE` is
            // a multiple of the block length), which only this pool knows of.
            unsafe { push(&mut free, class, region.wrapping_add(at)) };
        }
    }
    let block = free[class] as *mut u8;
    // SAFETY: `block` is a free block of this class: its first word is the list's
    // next link (written by `push`), and no one else uses it.
    free[class] = unsafe { block.cast::<usize>().read() };
    block
}

/// Put `block` back on its class's free list.
///
/// # Safety
/// `block` came from `take_block(class)` and nobody uses it any more.
unsafe fn give_block(class: usize, block: *mut u8) {
    let mut free = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    // SAFETY: the caller's contract is `push`'s.
    unsafe { push(&mut free, class, block) };
}

/// Link `block` in front of its class's free list.
///
/// # Safety
/// `block` is a whole `block_len(class)`-byte pool block, aligned to its length (of
/// a fresh region, or given back), that nobody uses.
unsafe fn push(free: &mut [usize; CLASSES], class: usize, block: *mut u8) {
    // SAFETY: a word at the start of such a block is in bounds and aligned.
    unsafe { block.cast::<usize>().write(free[class]) };
    free[class] = block as usize;
}

/// Maps `len` (a multiple of [`HUGE`]) bytes at a [`HUGE`]-aligned address and
/// advises huge pages; null on failure.
fn map_huge(len: usize) -> *mut u8 {
    let Some(span) = len.checked_add(HUGE) else {
        return ptr::null_mut();
    };
    // SAFETY: an anonymous private mapping at an address of the kernel's choosing
    // aliases no existing memory; the arguments are plain values.
    let raw = unsafe {
        libc::mmap(
            ptr::null_mut(),
            span,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if raw == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE);
    let head = aligned - start;
    let tail = span - head - len;
    // [start, start + head) and [aligned + len, start + span) lie inside the mapping
    // just made, which nothing else knows of yet; unmapping them leaves exactly
    // [aligned, aligned + len) mapped.
    if head > 0 {
        // SAFETY: the head of our own fresh mapping (above).
        unsafe { libc::munmap(raw, head) };
    }
    if tail > 0 {
        // SAFETY: the tail of our own fresh mapping (above).
        unsafe { libc::munmap((aligned + len) as *mut libc::c_void, tail) };
    }
    // SAFETY: [aligned, aligned + len) is our mapping; madvise only changes how the
    // kernel backs it. A failure (THP compiled out) leaves an ordinary mapping.
    unsafe { libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE) };
    aligned as *mut u8
}

// SAFETY: large blocks are fresh mappings of at least `layout.size()` bytes at
// 2 MiB (≥ `layout.align()`) alignment, released only by `dealloc` with the same
// layout's mapped length; medium blocks are distinct pool blocks of at least
// `layout.size()` bytes aligned to their length (≥ `layout.align()`), each handed
// out once until it is given back; small blocks are `System`'s, passed through
// unchanged. `kind` depends only on the layout, so every block returns to the path
// that made it.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match kind(layout) {
            Kind::Large(len) => map_huge(len),
            Kind::Medium(class) => take_block(class),
            // SAFETY: the caller's contract for `alloc` is `System`'s.
            Kind::Small => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match kind(layout) {
            // Fresh anonymous mappings read as zero.
            Kind::Large(len) => map_huge(len),
            Kind::Medium(class) => {
                // A block may have been used before.
                let block = take_block(class);
                if !block.is_null() {
                    // SAFETY: `block` is ours and `layout.size()` ≤ its length.
                    unsafe { ptr::write_bytes(block, 0, layout.size()) };
                }
                block
            }
            // SAFETY: the caller's contract for `alloc_zeroed` is `System`'s.
            Kind::Small => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match kind(layout) {
            // SAFETY: `block` came from `map_huge` with this mapped length (the
            // caller passes the layout it was allocated with).
            Kind::Large(len) => unsafe {
                libc::munmap(block.cast(), len);
            },
            // SAFETY: `block` came from `take_block(class)` (same layout, same
            // class) and the caller gives it up.
            Kind::Medium(class) => unsafe { give_block(class, block) },
            // SAFETY: `block` came from `System` with this layout.
            Kind::Small => unsafe { System.dealloc(block, layout) },
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid
        // layout (the `realloc` contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (kind(layout), kind(new_layout)) {
            // SAFETY: a `System` block resized by `System`, under the same contract.
            (Kind::Small, Kind::Small) => unsafe { System.realloc(block, layout, new_size) },
            // Same mapping length or same block size: the block already fits.
            (old, new) if old == new => block,
            _ => {
                // SAFETY: `new_layout` is valid (above); `alloc`/`dealloc` route each
                // block by its own layout.
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    // SAFETY: both blocks are live, distinct and at least
                    // `min(old, new)` bytes long.
                    unsafe { ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size)) };
                    // SAFETY: `block` was allocated with `layout` and is not used again.
                    unsafe { self.dealloc(block, layout) };
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the mapping holding `addr` is backed (at least partly) by huge pages,
    /// from /proc/self/smaps.
    fn huge_backed(addr: usize) -> Option<bool> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ')
                && let Some((lo, hi)) = range.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr);
            } else if inside && let Some(kb) = line.strip_prefix("AnonHugePages:") {
                return Some(kb.trim().trim_end_matches(" kB").trim() != "0");
            }
        }
        None
    }

    /// Whether the kernel gives `MADV_HUGEPAGE` mappings huge pages, and its THP mode.
    fn thp() -> (bool, String) {
        let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        (
            mode.contains("[madvise]") || mode.contains("[always]"),
            mode,
        )
    }

    #[test]
    fn large_blocks_are_aligned_zeroed_and_resizable() {
        let a = HugePageAlloc;
        let first = Layout::from_size_align(HUGE + 100, 64).unwrap();
        // SAFETY: a valid non-zero layout; the block is resized and freed below.
        let p = unsafe { a.alloc_zeroed(first) };
        assert!(!p.is_null());
        assert_eq!(p as usize % HUGE, 0);
        // SAFETY: `p` is a live block of `first.size()` bytes, used only here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p, first.size()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[first.size() - 1] = 7;
        // Grows within its 4 MiB mapping: stays put.
        // SAFETY: `p` was allocated with `first`; 2 MiB × 2 is a valid size.
        let q = unsafe { a.realloc(p, first, 2 * HUGE) };
        assert_eq!(q, p);
        // Shrinks to a medium block, then to a small one: moves each time and keeps
        // the bytes it still holds.
        let mut layout = Layout::from_size_align(2 * HUGE, 64).unwrap();
        let mut block = q;
        for size in [MEDIUM_MAX - 1, MEDIUM_MIN - 1] {
            // SAFETY: `block` was allocated (resized) with `layout`.
            let moved = unsafe { a.realloc(block, layout, size) };
            assert!(!moved.is_null());
            assert_ne!(moved, block);
            (block, layout) = (moved, Layout::from_size_align(size, 64).unwrap());
            // SAFETY: `block` is a live block of `size` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(block, size) };
            assert!(
                bytes.iter().all(|&b| b == 0),
                "the kept bytes are the zeroed ones"
            );
        }
        // SAFETY: `block` was allocated (resized) with `layout` and is not used again.
        unsafe { a.dealloc(block, layout) };
    }

    /// Only this test uses the 256 KiB class (tests share the pool).
    #[test]
    fn medium_blocks_are_aligned_distinct_and_reused_zeroed() {
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(200 << 10, 64).unwrap();
        assert_eq!(kind(layout), Kind::Medium(1));
        // SAFETY: a valid layout; every block is written within bounds and freed.
        let blocks: Vec<*mut u8> = (0..3).map(|_| unsafe { a.alloc(layout) }).collect();
        for (i, &p) in blocks.iter().enumerate() {
            assert!(!p.is_null());
            assert_eq!(p as usize % (256 << 10), 0, "aligned to its block size");
            // SAFETY: `p` is a live block of `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0xa5, layout.size()) };
            for &q in &blocks[..i] {
                assert!(
                    (p as usize).abs_diff(q as usize) >= 256 << 10,
                    "blocks overlap"
                );
            }
        }
        // SAFETY: `blocks[1]` was allocated with `layout` and is not used again.
        unsafe { a.dealloc(blocks[1], layout) };
        // SAFETY: as above.
        let again = unsafe { a.alloc_zeroed(layout) };
        assert_eq!(
            again, blocks[1],
            "the freed block is the next one handed out"
        );
        // SAFETY: `again` is a live block of `layout.size()` bytes.
        let bytes = unsafe { std::slice::from_raw_parts_mut(again, layout.size()) };
        assert!(bytes.iter().all(|&b| b == 0), "a reused block is zeroed");
        bytes[1000] = 9;
        // Within its block size it stays; beyond, it moves and keeps its bytes.
        // SAFETY: `again` was allocated with `layout`.
        let same = unsafe { a.realloc(again, layout, 256 << 10) };
        assert_eq!(same, again);
        let full = Layout::from_size_align(256 << 10, 64).unwrap();
        // SAFETY: `same` was allocated (resized) with `full`.
        let moved = unsafe { a.realloc(same, full, 300 << 10) };
        assert_ne!(moved, same);
        // SAFETY: `moved` is a live block of at least 300 KiB.
        assert_eq!(unsafe { moved.wrapping_add(1000).read() }, 9);
        let moved_layout = Layout::from_size_align(300 << 10, 64).unwrap();
        // SAFETY: `moved` is freed once, with the layout it has now.
        unsafe { a.dealloc(moved, moved_layout) };
        for p in [blocks[0], blocks[2]] {
            // SAFETY: each block is freed once, with the layout it was allocated with.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn a_table_split_into_1_mib_shards_takes_huge_pages() {
        let (thp, _) = thp();
        let a = HugePageAlloc;
        // The default connection table: 64 shards of 1 MiB (16384 entries of 64 B).
        let layout = Layout::from_size_align(MEDIUM_MAX, 64).unwrap();
        // SAFETY: a valid layout; every block is written within bounds and freed.
        let shards: Vec<*mut u8> = (0..8).map(|_| unsafe { a.alloc_zeroed(layout) }).collect();
        for &p in &shards {
            assert!(!p.is_null());
            // SAFETY: `p` is a live block of `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 1, layout.size()) };
            let backed = huge_backed(p as usize);
            assert!(backed.is_some(), "the block is in no mapping");
            if thp {
                assert_eq!(backed, Some(true), "no AnonHugePages under a 1 MiB shard");
            }
        }
        for p in shards {
            // SAFETY: `p` was allocated with `layout` and is not used again.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn large_blocks_take_huge_pages_when_the_kernel_allows() {
        let (thp, mode) = thp();
        if !thp {
            eprintln!("transparent huge pages are off here ({mode:?}): mapping checked only");
        }
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(8 * HUGE, 64).unwrap();
        // SAFETY: a valid layout; the block is written within bounds and freed with it.
        let p = unsafe { a.alloc(layout) };
        assert!(!p.is_null());
        // SAFETY: `p` is a live block of `layout.size()` bytes.
        unsafe { std::ptr::write_bytes(p, 1, layout.size()) };
        // The kernel may fall back to small pages when memory is fragmented; it backs
        // at least one of eight 2 MiB ranges of a fresh mapping with a huge page on
        // any machine with free memory.
        let backed = huge_backed(p as usize);
        assert!(backed.is_some(), "the block is not a mapping of its own");
        if thp {
            assert_eq!(backed, Some(true), "no AnonHugePages");
        }
        // SAFETY: `p` was allocated with `layout` and is not used again.
        unsafe { a.dealloc(p, layout) };
    }
}
