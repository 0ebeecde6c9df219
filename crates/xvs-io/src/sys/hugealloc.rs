//! A global allocator that backs large allocations with transparent huge pages.
//!
//! The shared tables (connections, persistence templates, their indexes) are a few
//! large arrays touched at random: at 10M connections a lookup's two cache lines sit
//! on pages whose 4 KiB translations no TLB holds, so every lookup also walks the page
//! table. With 2 MiB pages the same arrays need 512× fewer translations.
//!
//! Invariants:
//! - an allocation of at least [`LARGE`] bytes (alignment ≤ [`LARGE`]) is its own
//!   anonymous mapping, 2 MiB aligned, rounded up to a multiple of 2 MiB, advised
//!   `MADV_HUGEPAGE` *before* anything touches it (so first-touch faults take huge
//!   pages when the kernel's THP mode is `madvise` or `always`; with `never` it is an
//!   ordinary mapping); freeing it unmaps it;
//! - everything else goes to [`System`] unchanged, so small allocations cost what
//!   they always did;
//! - whether an allocation is large is decided by its size alone, which `dealloc`
//!   and `realloc` are given again: the two kinds never mix.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations of at least this many bytes are mapped on huge pages (one huge page).
pub const LARGE: usize = 2 << 20;

/// The allocator; install it with `#[global_allocator] static A: HugePageAlloc =
/// HugePageAlloc;` in a binary.
#[derive(Clone, Copy, Debug, Default)]
pub struct HugePageAlloc;

fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE && layout.align() <= LARGE
}

/// The mapped length of a large allocation of `size` bytes.
fn mapped_len(size: usize) -> usize {
    size.next_multiple_of(LARGE)
}

/// Maps `len` (a multiple of [`LARGE`]) bytes at a [`LARGE`]-aligned address and
/// advises huge pages; null on failure.
fn map_large(len: usize) -> *mut u8 {
    let Some(span) = len.checked_add(LARGE) else {
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
    let aligned = start.next_multiple_of(LARGE);
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
// layout's mapped length; other blocks are `System`'s, passed through unchanged.
// `is_large` depends only on the layout, so every block returns to the path that
// made it.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            map_large(mapped_len(layout.size()))
        } else {
            // SAFETY: the caller's contract for `alloc` is `System`'s.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            // Fresh anonymous mappings read as zero.
            map_large(mapped_len(layout.size()))
        } else {
            // SAFETY: the caller's contract for `alloc_zeroed` is `System`'s.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            // SAFETY: `block` came from `map_large` with this mapped length (the
            // caller passes the layout it was allocated with).
            unsafe { libc::munmap(block.cast(), mapped_len(layout.size())) };
        } else {
            // SAFETY: `block` came from `System` with this layout.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid
        // layout (the `realloc` contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new_layout)) {
            // SAFETY: a `System` block resized by `System`, under the same contract.
            (false, false) => unsafe { System.realloc(block, layout, new_size) },
            (true, true) if mapped_len(layout.size()) == mapped_len(new_size) => block,
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

    fn thp_mode() -> String {
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default()
    }

    #[test]
    fn large_blocks_are_aligned_zeroed_and_resizable() {
        let a = HugePageAlloc;
        let first = Layout::from_size_align(LARGE + 100, 64).unwrap();
        // SAFETY: a valid non-zero layout; the block is resized and freed below.
        let p = unsafe { a.alloc_zeroed(first) };
        assert!(!p.is_null());
        assert_eq!(p as usize % LARGE, 0);
        // SAFETY: `p` is a live block of `first.size()` bytes, used only here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(p, first.size()) };
        assert!(bytes.iter().all(|&b| b == 0));
        bytes[first.size() - 1] = 7;
        // Grows within its 4 MiB mapping: stays put.
        // SAFETY: `p` was allocated with `first`; 2 MiB × 2 is a valid size.
        let q = unsafe { a.realloc(p, first, 2 * LARGE) };
        assert_eq!(q, p);
        // Shrinks to a small block: moves to `System`, keeps the bytes it still holds.
        let grown = Layout::from_size_align(2 * LARGE, 64).unwrap();
        // SAFETY: `q` was allocated (resized) with `grown`.
        let small = unsafe { a.realloc(q, grown, LARGE - 1) };
        assert!(!small.is_null());
        assert_ne!(small, q);
        let shrunk = Layout::from_size_align(LARGE - 1, 64).unwrap();
        // SAFETY: `small` is a live block of `shrunk.size()` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(small, shrunk.size()) };
        assert!(
            bytes.iter().all(|&b| b == 0),
            "the kept bytes are the zeroed ones"
        );
        // SAFETY: `small` was allocated (resized) with `shrunk` and is not used again.
        unsafe { a.dealloc(small, shrunk) };
    }

    #[test]
    fn large_blocks_take_huge_pages_when_the_kernel_allows() {
        let mode = thp_mode();
        let thp = mode.contains("[madvise]") || mode.contains("[always]");
        if !thp {
            eprintln!("transparent huge pages are off here ({mode:?}): mapping checked only");
        }
        let a = HugePageAlloc;
        let layout = Layout::from_size_align(8 * LARGE, 64).unwrap();
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
