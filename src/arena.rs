//! The one-shot commands' memory: a bump allocator over a fixed, lazily touched arena in front
//! of the system allocator. Side effects: none beyond memory.
//!
//! Why: a one-shot command lives a few milliseconds, and freeing memory back to the system is
//! work nobody needs. musl's allocator (the release build links musl, see scripts/build.sh)
//! maps a fresh group of pages for each size class on first use and unmaps it once it is empty
//! again: a `detach` made 58 `mmap` and 46 `munmap` calls (strace), and with their page faults
//! and TLB flushes they were 12-17 % of its CPU time (`perf record` of 30 detaches). Here an
//! allocation takes the next bytes of the arena; freeing one is a no-op (the process's exit
//! frees them all); what does not fit — or anything once [`Arena::stop`] was called, as the
//! long-running `watch` daemon does — goes to the system allocator, and freeing it goes back
//! there. The arena is a zero-initialised static, so the kernel maps its pages only when they
//! are first touched: an unused arena costs address space, not memory. It lies where the kernel
//! put the image, which the release build makes position-independent (scripts/build.sh), so at
//! a random address as a heap would be. What it gives up against a real allocator: reuse (a
//! loop that allocates keeps taking fresh bytes until the arena is full — the attach's polling
//! loops read into stack buffers for that reason) and a double free's detection (safe Rust has
//! none to detect).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Bytes of the arena (address space; pages are touched as the bump pointer passes them).
pub const SIZE: usize = 8 << 20;

/// A bump allocator over `N` bytes, falling back to [`System`].
pub struct Arena<const N: usize> {
    bytes: UnsafeCell<Bytes<N>>,
    /// Offset of the first free byte.
    next: AtomicUsize,
    /// Set by [`stop`](Self::stop): no new allocation comes from the arena. (False at first,
    /// so that the whole static is zero and takes no room in the binary.)
    stopped: AtomicBool,
}

#[repr(C, align(4096))]
struct Bytes<const N: usize>([u8; N]);

// SAFETY: the bytes are handed out in disjoint ranges (an atomic bump pointer); each range
// belongs to one caller from then on, as with any allocator.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    // No `Default`: `Arena::<SIZE>::default()` would build the 8 MiB on the stack; the one
    // arena is a static, made by this `const fn`.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Arena {
            bytes: UnsafeCell::new(Bytes([0; N])),
            next: AtomicUsize::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// From now on every allocation goes to the system allocator (for a process that lives
    /// long and frees what it no longer needs). What the arena handed out stays valid.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Bytes handed out so far (what `-vv` logs at exit).
    pub fn used(&self) -> usize {
        self.next.load(Ordering::Relaxed)
    }

    fn base(&self) -> *mut u8 {
        self.bytes.get().cast::<u8>()
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let (p, base) = (ptr.addr(), self.base().addr());
        p >= base && p < base + N
    }

    /// The next `layout.size()` bytes aligned to `layout.align()`, if they fit.
    fn bump(&self, layout: Layout) -> Option<*mut u8> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let base = self.base().addr();
        let mut cur = self.next.load(Ordering::Relaxed);
        loop {
            // Aligned as an address, not as an offset: the arena itself is aligned to 4096 only.
            let start = (base + cur).checked_next_multiple_of(layout.align())? - base;
            let end = start.checked_add(layout.size())?;
            if end > N {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(self.base().wrapping_add(start)),
                Err(now) => cur = now,
            }
        }
    }

    /// Whether a block can take `new` bytes where it is: a shrink keeps its extent (so the
    /// bytes past the bump pointer are never written, which `alloc_zeroed` relies on); a growth
    /// is in place when the block is the last one (the usual case of a `Vec` or `String` being
    /// built) and the arena has room.
    fn resize_in_place(&self, ptr: *mut u8, old: usize, new: usize) -> bool {
        if new <= old {
            return true;
        }
        let start = ptr.addr() - self.base().addr();
        let end = start + new;
        !self.stopped.load(Ordering::Relaxed)
            && end <= N
            && self
                .next
                .compare_exchange(start + old, end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

// SAFETY: every pointer returned is either a range of the arena no other allocation overlaps,
// aligned as asked and `layout.size()` long, or the system allocator's; `dealloc` and `realloc`
// tell the two apart by address and hand the system's back to it.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: the caller's contract (non-zero size) is passed on unchanged.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // Bytes past the bump pointer were never written: still the zeroes of the static.
        match self.bump(layout) {
            Some(p) => p,
            // SAFETY: as in `alloc`.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !self.owns(ptr) {
            // SAFETY: not the arena's, so the system allocator's, with this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: the system allocator's block, with the caller's contract passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if self.resize_in_place(ptr, layout.size(), new_size) {
            return ptr;
        }
        // SAFETY: `new_size` with the old alignment is a valid layout (the caller's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh block of at least `new_size` bytes; the old one stays readable.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least this long and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh arena off the stack (an all-zero `Arena` is a new one), leaked.
    fn arena<const N: usize>() -> &'static Arena<N> {
        // SAFETY (test): zeroed memory is a valid `Arena` (offset 0, not stopped, zero bytes).
        unsafe { &*std::alloc::alloc_zeroed(Layout::new::<Arena<N>>()).cast::<Arena<N>>() }
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_fall_back_when_full() {
        let a = arena::<4096>();
        unsafe {
            let l8 = Layout::from_size_align(10, 8).unwrap();
            let p = a.alloc(l8);
            let q = a.alloc(Layout::from_size_align(100, 64).unwrap());
            assert!(a.owns(p) && a.owns(q));
            assert_eq!(q as usize % 64, 0);
            assert!(q as usize >= p as usize + 10);
            // Too big for what is left: the system's, and freed there.
            let big = Layout::from_size_align(4000, 8).unwrap();
            let r = a.alloc(big);
            assert!(!r.is_null() && !a.owns(r));
            a.dealloc(r, big);
            a.dealloc(p, l8);
        }
    }

    #[test]
    fn the_last_block_grows_in_place_and_others_are_copied() {
        let a = arena::<4096>();
        unsafe {
            let l = Layout::from_size_align(4, 1).unwrap();
            let p = a.alloc(l);
            p.copy_from(b"abcd".as_ptr(), 4);
            let grown = a.realloc(p, l, 40);
            assert_eq!(grown, p, "the last block grows in place");
            let q = a.alloc(l);
            let moved = a.realloc(p, Layout::from_size_align(40, 1).unwrap(), 80);
            assert!(moved != p && moved as usize > q as usize);
            assert_eq!(std::slice::from_raw_parts(moved, 4), b"abcd");
            // A shrink keeps the extent: what it held is not handed out again as zeroes.
            let last = a.alloc(Layout::from_size_align(64, 8).unwrap());
            last.write_bytes(0xff, 64);
            let l64 = Layout::from_size_align(64, 8).unwrap();
            assert_eq!(a.realloc(last, l64, 8), last);
            let z = a.alloc_zeroed(l64);
            assert!(z as usize >= last as usize + 64);
            assert!(std::slice::from_raw_parts(z, 64).iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn alignment_is_of_the_address_beyond_the_arenas_own() {
        let a = arena::<65536>();
        unsafe {
            a.alloc(Layout::from_size_align(3, 1).unwrap());
            let p = a.alloc(Layout::from_size_align(8, 8192).unwrap());
            assert!(a.owns(p));
            assert_eq!(p.addr() % 8192, 0);
        }
    }

    #[test]
    fn a_freed_block_is_never_handed_out_again_so_zeroed_memory_stays_zero() {
        let a = arena::<4096>();
        unsafe {
            let l = Layout::from_size_align(64, 8).unwrap();
            let p = a.alloc(l);
            p.write_bytes(0xab, 64);
            a.dealloc(p, l);
            let z = a.alloc_zeroed(l);
            assert_ne!(z, p);
            assert!(std::slice::from_raw_parts(z, 64).iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn growing_past_the_arena_copies_what_the_block_held_to_the_systems() {
        let a = arena::<4096>();
        unsafe {
            let l = Layout::from_size_align(4, 1).unwrap();
            let p = a.alloc(l);
            p.copy_from(b"wxyz".as_ptr(), 4);
            let big = a.realloc(p, l, 10_000);
            assert!(!big.is_null() && !a.owns(big));
            assert_eq!(std::slice::from_raw_parts(big, 4), b"wxyz");
            a.dealloc(big, Layout::from_size_align(10_000, 1).unwrap());
        }
    }

    #[test]
    fn threads_get_disjoint_blocks() {
        let a = arena::<{ 1 << 20 }>();
        let threads: Vec<_> = (0..8u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let l = Layout::from_size_align(24, 8).unwrap();
                    let blocks: Vec<usize> = (0..1000)
                        .map(|_| unsafe {
                            let p = a.alloc(l);
                            p.write_bytes(t, 24);
                            p.addr()
                        })
                        .collect();
                    (t, blocks)
                })
            })
            .collect();
        let mut all = Vec::new();
        for th in threads {
            let (t, blocks) = th.join().unwrap();
            for &b in &blocks {
                // SAFETY (test): the block was written by this thread and is never freed.
                let bytes = unsafe { std::slice::from_raw_parts(b as *const u8, 24) };
                assert!(bytes.iter().all(|x| *x == t), "block {b:#x} overwritten");
            }
            all.extend(blocks);
        }
        all.sort();
        assert!(
            all.windows(2).all(|w| w[1] - w[0] >= 24),
            "overlapping blocks"
        );
    }

    #[test]
    fn after_stop_everything_is_the_systems() {
        let a = arena::<4096>();
        unsafe {
            let l = Layout::from_size_align(16, 8).unwrap();
            let before = a.alloc(l);
            a.stop();
            let after = a.alloc(l);
            assert!(a.owns(before) && !a.owns(after));
            // A block from before grows by copying to the system's.
            let grown = a.realloc(before, l, 32);
            assert!(!a.owns(grown));
            a.dealloc(grown, Layout::from_size_align(32, 8).unwrap());
            a.dealloc(after, l);
        }
    }
}
