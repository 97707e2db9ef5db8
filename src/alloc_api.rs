//! parena as an allocator: `allocator_api2::alloc::Allocator` for `&Arena` and `Arena` (cargo
//! feature `allocator-api2`), and [`GlobalArena`], a `GlobalAlloc` over an anonymous-map arena.
//!
//! Blocks handed out this way are ordinary parena blocks (8-byte header, generation, free lists);
//! the pointer is the block's data. `deallocate` reads the header to rebuild the handle, so a
//! pointer that did not come from this arena is a contract violation of the caller (as with any
//! allocator), not something parena can check. `grow` and `shrink` resize in place when the block
//! is the last one of the calling thread's chunk, and `shrink` always does (the cut-off tail
//! becomes free space); otherwise they move.

use crate::arena::Arena;
use crate::format::Freelist;
use crate::layout::MAX_ALIGN;
use crate::options::Options;
use crate::reentry::{audit_exempt, audit_op, in_step};
use crate::sync::{StdAtomicU64, StdAtomicU8, StdOrdering};
use std::alloc::Layout;
use std::ptr::NonNull;

/// Why an allocation through the allocator interfaces failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NoMemory;

impl Arena {
    /// Allocates for `layout` and returns the data pointer (zeroed). Zero-sized layouts get a
    /// dangling, aligned pointer.
    pub(crate) fn allocate_ptr(&self, layout: Layout) -> Result<NonNull<[u8]>, NoMemory> {
        audit_op!();
        if layout.size() == 0 {
            let dangling = NonNull::new(std::ptr::without_provenance_mut::<u8>(layout.align()))
                .ok_or(NoMemory)?;
            return Ok(NonNull::slice_from_raw_parts(dangling, 0));
        }
        if layout.align() > MAX_ALIGN {
            return Err(NoMemory);
        }
        let b = self.alloc_layout(layout).map_err(|_| NoMemory)?;
        // Published as FOREIGN: the caller owns the bytes through the pointer from here on, and
        // no handle reaches them (every handle operation refuses the block).
        let off = b.publish_foreign();
        let p = NonNull::new(self.data_ptr(off)).ok_or(NoMemory)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    /// Frees a block `allocate_ptr` returned.
    ///
    /// # Safety
    /// `p` came from `allocate_ptr` on this arena with `layout`, and is not used afterwards.
    pub(crate) unsafe fn deallocate_ptr(&self, p: NonNull<u8>, layout: Layout) {
        audit_op!();
        if layout.size() == 0 {
            return;
        }
        let freed = self
            .handle_at(self.offset_of_ptr(p))
            .map(|h| self.free_as(h, crate::arena::Mode::Foreign));
        debug_assert!(
            matches!(freed, Some(Ok(()))),
            "deallocate of a pointer parena did not hand out: {freed:?}"
        );
    }
}

#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::{AllocError, Allocator};

    impl Arena {
        /// `grow` and `shrink`: in place when possible, else allocate, copy, free.
        ///
        /// # Safety
        /// `ptr` came from this arena with layout `old`, the caller holds it exclusively, and
        /// does not use it after a successful call unless the same pointer is returned.
        unsafe fn resize(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            let in_place = new.align() <= old.align() && {
                // SAFETY: forwarded caller contract: `ptr` is ours, holds `old.size()` bytes,
                // exclusively.
                unsafe { self.resize_in_place(ptr, old.size(), new.size()) }
            };
            if in_place {
                return Ok(NonNull::slice_from_raw_parts(ptr, new.size()));
            }
            let fresh = self.allocate(new)?;
            let keep = old.size().min(new.size());
            if !self.disk_for_copy(fresh.cast(), new.size(), keep) {
                // A sparse file arena whose disk cannot hold the copy: the old block stays.
                // SAFETY: `fresh` was allocated just above with `new`, and nothing else has it.
                unsafe { self.deallocate(fresh.cast(), new) };
                return Err(AllocError);
            }
            // SAFETY: both blocks are valid for `keep` bytes and are distinct blocks.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep)
            };
            // SAFETY: forwarded caller contract; the bytes were copied out.
            unsafe { self.deallocate(ptr, old) };
            Ok(fresh)
        }
    }

    // SAFETY: blocks stay valid until deallocated or until the last clone of the arena is dropped
    // (the `Arc` keeps the memory), and clones share one arena; `grow`/`shrink` keep the bytes up
    // to the smaller size and only hand back memory the caller owned. allocator-api2's blanket
    // impl makes `&Arena` an allocator too.
    unsafe impl Allocator for Arena {
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            self.allocate_ptr(layout).map_err(|_| AllocError)
        }

        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            // SAFETY: forwarded caller contract (allocated here with `layout`, not used after).
            unsafe { self.deallocate_ptr(ptr, layout) }
        }

        unsafe fn grow(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            unsafe { self.resize(ptr, old, new) }
        }

        unsafe fn grow_zeroed(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract. (Named through the trait: `Arena::grow` is the
            // arena's own growth, which method syntax would pick for `Arena`.)
            let grown = unsafe { Allocator::grow(self, ptr, old, new) }?;
            // A moved block was zeroed by `allocate`; one grown in place may keep bytes past the
            // old length from before an earlier in-place shrink (same span), so clear them.
            if grown.cast::<u8>() == ptr {
                // SAFETY: the block now holds `new.size()` bytes and `old.size() <= new.size()`
                // (the `grow` contract), so the offset stays inside it.
                let tail = unsafe { ptr.as_ptr().add(old.size()) };
                // SAFETY: `tail..tail + (new - old)` is inside the block, exclusively the caller's.
                unsafe { tail.write_bytes(0, new.size() - old.size()) };
            }
            Ok(grown)
        }

        unsafe fn shrink(
            &self,
            ptr: NonNull<u8>,
            old: Layout,
            new: Layout,
        ) -> Result<NonNull<[u8]>, AllocError> {
            // SAFETY: forwarded caller contract.
            unsafe { self.resize(ptr, old, new) }
        }
    }
}

/// A `GlobalAlloc` over an anonymous-map arena with the free list on, created on first use.
///
/// ```no_run
/// use parena::{Freelist, GlobalArena};
/// #[global_allocator]
/// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Optimistic);
///
/// fn main() {
///     let v: Vec<u64> = (0..1000).collect();
///     assert_eq!(v.len(), 1000);
///     println!("{:?}", GLOBAL.arena().map(|a| a.stats()));
/// }
/// ```
///
/// # When to use it
/// For a program whose heap is many small, short-lived objects from several threads (strings,
/// vectors, map nodes), to get parena's per-thread bump chunks, per-thread caches of freed blocks
/// and lock-free free lists for every allocation, and a count of what it served. It is not
/// persistent: the arena is an anonymous map that lives as long as the process. For blocks that
/// must survive a restart, use an [`Arena`] over a file and its handles.
///
/// # Capacity
/// `capacity` bytes of address space, mapped (not committed) on the first allocation; the memory
/// is touched as the arena's bump offset advances, and freed blocks are reused through the free
/// lists and caches but never returned to the operating system. Choose it larger than the
/// program's peak live heap plus fragmentation (a few GiB of address space cost nothing on a
/// 64-bit system); the arena cannot grow.
///
/// # Exhaustion and fallbacks
/// A request the arena cannot serve goes to the system allocator, and [`GlobalArena::fallbacks`]
/// counts it: the arena is full (after its free lists and a coalescing pass, rate-limited, were
/// tried), the alignment is above [`crate::MAX_ALIGN`], the arena could not be created, or the
/// request came from inside parena itself (its own bookkeeping: a thread's first allocation
/// registers that thread, and that registration is served by the system allocator; a call
/// re-entering the allocator from inside a coalescing pass or a walk of the thread's cells).
/// `dealloc` and `realloc` send each pointer back to the allocator it came from, by address. So a
/// full arena degrades to the system allocator, never to a null pointer (unless the system
/// allocator also fails). No allocator entry point allocates, panics or waits for something its
/// own thread holds (invariant A; docs/design.md, "Allocator paths").
///
/// # `fork()`
/// A child process gets a private copy of the arena (an anonymous map) and may allocate and free
/// in it at once, from any thread it starts: nothing a parent thread held at the fork (a
/// coalescing pass, the registration of a thread) is waited for in the child. What the parent's
/// other threads had in flight (their current chunks' unused tails, their caches of freed blocks)
/// stays unusable in the child's copy, a bounded leak of the child only. [`Arena::flush`] in the
/// child hands the calling thread's cached blocks to the shared lists, as in the parent; nothing
/// is durable. See docs/design.md, "Fork".
///
/// # What `arena()` is for
/// [`GlobalArena::arena`] gives the [`Arena`] behind the allocator, for observation and
/// maintenance that leave its blocks alone: [`Arena::stats`], [`Arena::capacity`],
/// [`Stats::cache_hit_rate`](crate::Stats::cache_hit_rate), [`Arena::flush`] (which hands the calling thread's cached blocks to
/// the shared lists), and allocating and freeing blocks of its own through `alloc`/`free` (they
/// come from the same memory). Not for: `free` or `read` of blocks the allocator handed out (their
/// owners free them through `dealloc`; a handle made up from such a pointer races with them), and
/// not `compact`, `verify` or `close`, which need the arena exclusively and so cannot get it
/// through a shared reference anyway.
pub struct GlobalArena {
    capacity: u64,
    freelist: Freelist,
    state: StdAtomicU8,
    arena: std::sync::OnceLock<Arena>,
    fallbacks: StdAtomicU64,
}

impl std::fmt::Debug for GlobalArena {
    /// The configuration and counters; the arena itself only once it is built (formatting never
    /// builds it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalArena")
            .field("capacity", &self.capacity)
            .field("freelist", &self.freelist)
            .field("arena", &self.arena.get())
            .field("fallbacks", &self.fallbacks.load(StdOrdering::Relaxed))
            .finish()
    }
}

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

std::thread_local! {
    /// Set while this thread is inside the arena: allocations made by parena itself (thread-local
    /// slots, chunk cells) go to the system allocator instead of recursing.
    static IN_ARENA: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` marked as inside the arena; `None` if this thread already is, is inside one of parena's
/// exclusive steps (a coalescing pass, a walk of its cells: invariant A in `reentry.rs`), or is
/// exiting.
fn guarded<R>(f: impl FnOnce() -> R) -> Option<R> {
    if in_step() {
        return None;
    }
    let entered = IN_ARENA.try_with(|g| !g.replace(true)).unwrap_or(false);
    if !entered {
        return None;
    }
    let r = f();
    let _ = IN_ARENA.try_with(|g| g.set(false));
    Some(r)
}

impl GlobalArena {
    /// An allocator over an anonymous map of `capacity` bytes, mapped on the first allocation.
    ///
    /// `freelist` chooses how freed space is taken again: `Freelist::Pessimistic` (best fit)
    /// keeps the resident memory closest to the live data, and is the choice for a program's
    /// global allocator (other crates' test suites peak at 1.19–1.44× the system allocator's
    /// resident memory with it, 1.30–1.71× with `Optimistic`: docs/performance.md).
    #[allow(clippy::disallowed_types)] // std's atomics: see the struct.
    pub const fn new(capacity: u64, freelist: Freelist) -> GlobalArena {
        GlobalArena {
            capacity,
            freelist,
            state: StdAtomicU8::new(UNINIT),
            arena: std::sync::OnceLock::new(),
            fallbacks: StdAtomicU64::new(0),
        }
    }

    /// The arena, once created (its `stats()` tell what it served); see "What `arena()` is for"
    /// above.
    ///
    /// ```no_run
    /// use parena::{Freelist, GlobalArena};
    /// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Optimistic);
    /// let s = GLOBAL.arena().map(|a| a.stats());
    /// ```
    pub fn arena(&self) -> Option<&Arena> {
        self.arena.get()
    }

    /// Allocations the system allocator served instead: the arena was full, the alignment too
    /// large, or the call came from parena's own bookkeeping (see "Exhaustion and fallbacks").
    ///
    /// ```no_run
    /// use parena::{Freelist, GlobalArena};
    /// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Optimistic);
    /// println!("{} requests went to the system allocator", GLOBAL.fallbacks());
    /// ```
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(StdOrdering::Relaxed)
    }

    fn get(&self) -> Option<&Arena> {
        use StdOrdering as O;
        if let Some(a) = self.arena.get() {
            return Some(a);
        }
        // Relaxed on `state`: the CAS only elects the one thread that creates the arena; the
        // `OnceLock` publishes it to the others.
        if self
            .state
            .compare_exchange(UNINIT, INITIALIZING, O::Relaxed, O::Relaxed)
            .is_ok()
        {
            let made = guarded(|| {
                // Creating the arena allocates (its `Arc`, a mapping); `guarded` sends that to
                // the system allocator. Once per process.
                audit_exempt!();
                Options::new()
                    .capacity(self.capacity)
                    .freelist(self.freelist)
                    .map_anon()
            });
            match made {
                Some(Ok(a)) => {
                    let _ = self.arena.set(a);
                    // Relaxed: `state` only elects the one initialising thread; the arena itself is
                    // published by the `OnceLock`.
                    self.state.store(READY, O::Relaxed);
                }
                _ => self.state.store(FAILED, O::Relaxed),
            }
        }
        self.arena.get()
    }
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes aligned to
// `layout.align()` that nothing else uses until `dealloc`; `dealloc` routes each pointer to the
// allocator that produced it (arena pointers are recognised by address); parena never unwinds out
// of these functions.
unsafe impl std::alloc::GlobalAlloc for GlobalArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(a) = self.get() {
            if let Some(Ok(p)) = guarded(|| a.allocate_ptr(layout)) {
                return p.cast::<u8>().as_ptr();
            }
        }
        self.fallbacks.fetch_add(1, StdOrdering::Relaxed);
        // SAFETY: forwarded caller contract (non-zero size).
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(a) = self.arena.get() {
            if let Some(p) = NonNull::new(ptr).filter(|_| a.owns(ptr)) {
                // Our own thread-local slots may be freed while we are inside the arena: those
                // came from the system allocator, so they never reach here.
                // SAFETY: forwarded caller contract: `ptr` came from `alloc` with `layout`.
                let done = guarded(|| unsafe { a.deallocate_ptr(p, layout) });
                if done.is_none() {
                    // Re-entered (or the thread is exiting): free without the guard.
                    // SAFETY: as above.
                    unsafe { a.deallocate_ptr(p, layout) };
                }
                return;
            }
        }
        // SAFETY: not an arena pointer, so it came from the system allocator with `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let (Some(a), Some(p)) = (self.arena.get(), NonNull::new(ptr)) {
            let resized = a.owns(ptr)
                && guarded(|| {
                    // SAFETY: forwarded caller contract: `ptr` came from `alloc` with
                    // `layout.size()` bytes, and the caller holds it exclusively.
                    unsafe { a.resize_in_place(p, layout.size(), new_size) }
                }) == Some(true);
            if resized {
                return ptr;
            }
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        // SAFETY: forwarded caller contract (non-zero size).
        let fresh = unsafe { self.alloc(new_layout) };
        if !fresh.is_null() {
            // SAFETY: both blocks are valid for the smaller size and distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size)) };
            // SAFETY: forwarded caller contract.
            unsafe { self.dealloc(ptr, layout) };
        }
        fresh
    }
}
