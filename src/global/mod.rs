//! [`GlobalArena`]: a `GlobalAlloc` over an anonymous-map arena, with a front cache of freed small
//! blocks in front of it (`front.rs`, its shared stash in `stash.rs`) and the "inside the arena"
//! mark of its paths (`guard.rs`).

mod front;
mod guard;
pub(crate) mod stash;

use crate::arena::Arena;
use crate::format::Freelist;
use crate::options::Options;
use crate::reentry::audit_exempt;
use crate::sync::{Arc, StdAtomicU64, StdAtomicU8, StdOrdering};
use front::Shared;
use guard::{free_to_arena, guarded};
use std::alloc::Layout;
use std::ptr::NonNull;

/// A `GlobalAlloc` over an anonymous-map arena with the free list on, created on first use.
///
/// ```no_run
/// use parena::{Freelist, GlobalArena};
/// #[global_allocator]
/// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Pessimistic);
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
/// # The front cache
/// A freed block of 504 bytes or less (alignment 8 or less) is kept, as the arena handed it out,
/// in a per-thread list of its size class, and the next request of that class on the thread takes
/// it back without entering the arena: no handle check, no header store, no shared atomic. A
/// thread's full list (16 KiB) moves whole to a shared stash that other threads take from (a
/// producer/consumer pays one compare-and-swap per chain of blocks, not per block); the stash
/// holds at most 8 MiB, and past it freed blocks go back to the arena. Cached blocks go back to
/// the arena when their thread exits, on [`GlobalArena::trim`], and before a request the arena
/// cannot serve falls back to the system allocator. Until then the arena counts them as live:
/// its `stats()` see only the requests the front cache did not serve
/// ([`GlobalArena::front_hits`] counts the others). A thread keeps lists for the first two
/// `GlobalArena`s it uses. See docs/design.md, "`GlobalArena`'s front cache".
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
/// other threads had in flight (their current chunks' unused tails, their caches and front-cache
/// lists of freed blocks) stays unusable in the child's copy, a bounded leak of the child only. [`Arena::flush`] in the
/// child hands the calling thread's cached blocks to the shared lists, as in the parent; nothing
/// is durable. See docs/design.md, "Fork".
///
/// # What `arena()` is for
/// [`GlobalArena::arena`] gives the [`Arena`] behind the allocator, for observation and
/// maintenance that leave its blocks alone: [`Arena::stats`], [`Arena::capacity`],
/// [`Stats::cache_hit_rate`](crate::Stats::cache_hit_rate), [`Arena::flush`] (which hands the calling thread's cached blocks to
/// the shared lists; the front cache's lists are [`GlobalArena::trim`]'s), and allocating and freeing blocks of its own through `alloc`/`free` (they
/// come from the same memory). Not for: `free` or `read` of blocks the allocator handed out (their
/// owners free them through `dealloc`; a handle made up from such a pointer races with them), and
/// not `compact`, `verify` or `close`, which need the arena exclusively and so cannot get it
/// through a shared reference anyway.
pub struct GlobalArena {
    capacity: u64,
    freelist: Freelist,
    state: StdAtomicU8,
    /// The arena and the front cache's stash, once created.
    shared: std::sync::OnceLock<Arc<Shared>>,
    fallbacks: StdAtomicU64,
}

impl std::fmt::Debug for GlobalArena {
    /// The configuration and counters; the arena itself only once it is built (formatting never
    /// builds it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalArena")
            .field("capacity", &self.capacity)
            .field("freelist", &self.freelist)
            .field("arena", &self.arena())
            .field("fallbacks", &self.fallbacks.load(StdOrdering::Relaxed))
            .finish()
    }
}

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

impl GlobalArena {
    /// An allocator over an anonymous map of `capacity` bytes, mapped on the first allocation.
    ///
    /// `freelist` chooses how freed space is taken again: `Freelist::Pessimistic` (best fit)
    /// keeps the resident memory closest to the live data, and is the choice for a program's
    /// global allocator (other crates' test suites peak at 1.15–1.27× the system allocator's
    /// resident memory with it, 1.22–1.40× with `Optimistic`: docs/performance.md).
    #[allow(clippy::disallowed_types)] // std's atomics: see the struct.
    pub const fn new(capacity: u64, freelist: Freelist) -> GlobalArena {
        GlobalArena {
            capacity,
            freelist,
            state: StdAtomicU8::new(UNINIT),
            shared: std::sync::OnceLock::new(),
            fallbacks: StdAtomicU64::new(0),
        }
    }

    /// The arena, once created (its `stats()` tell what it served); see "What `arena()` is for"
    /// above.
    ///
    /// ```no_run
    /// use parena::{Freelist, GlobalArena};
    /// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Pessimistic);
    /// let s = GLOBAL.arena().map(|a| a.stats());
    /// ```
    pub fn arena(&self) -> Option<&Arena> {
        self.shared.get().map(|s| &s.arena)
    }

    /// Allocations the front cache served without the arena (docs/design.md, "`GlobalArena`'s
    /// front cache"); the arena's `stats()` count the others. Each thread adds its count every
    /// 4,096 hits, when it exits and when it calls [`GlobalArena::trim`].
    ///
    /// ```no_run
    /// use parena::{Freelist, GlobalArena};
    /// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Pessimistic);
    /// println!("{} allocations reused a block freed before", GLOBAL.front_hits());
    /// ```
    pub fn front_hits(&self) -> u64 {
        self.shared.get().map_or(0, |s| s.hits())
    }

    /// Gives the freed blocks the front cache holds back to the arena: the calling thread's, and
    /// those moved between threads (the stash); another thread's own lists go back when it exits.
    /// Afterwards the arena's `stats()` count as live only what the program holds (and the other
    /// threads' lists). The arena does this by itself before it falls back to the system
    /// allocator; a program calls it to see exact counters, or after a phase that freed much of
    /// one size and goes on with others.
    ///
    /// ```no_run
    /// use parena::{Freelist, GlobalArena};
    /// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Pessimistic);
    /// GLOBAL.trim();
    /// println!("{:?}", GLOBAL.arena().map(|a| a.stats()));
    /// ```
    pub fn trim(&self) {
        if let Some(s) = self.shared.get() {
            front::give_back(s);
        }
    }

    /// Allocations the system allocator served instead: the arena was full, the alignment too
    /// large, or the call came from parena's own bookkeeping (see "Exhaustion and fallbacks").
    ///
    /// ```no_run
    /// use parena::{Freelist, GlobalArena};
    /// static GLOBAL: GlobalArena = GlobalArena::new(1 << 30, Freelist::Pessimistic);
    /// println!("{} requests went to the system allocator", GLOBAL.fallbacks());
    /// ```
    pub fn fallbacks(&self) -> u64 {
        self.fallbacks.load(StdOrdering::Relaxed)
    }

    fn get(&self) -> Option<&Arc<Shared>> {
        use StdOrdering as O;
        if let Some(s) = self.shared.get() {
            return Some(s);
        }
        // Relaxed on `state`: the CAS only elects the one thread that creates the arena; the
        // `OnceLock` publishes it to the others.
        if self
            .state
            .compare_exchange(UNINIT, INITIALIZING, O::Relaxed, O::Relaxed)
            .is_ok()
        {
            let made = guarded(|| {
                // Creating the arena allocates (its `Arc`s, a mapping); `guarded` sends that to
                // the system allocator. Once per process.
                audit_exempt!();
                Options::new()
                    .capacity(self.capacity)
                    .freelist(self.freelist)
                    .map_anon()
                    .map(|a| Arc::new(Shared::new(a)))
            });
            match made {
                Some(Ok(s)) => {
                    let _ = self.shared.set(s);
                    // Relaxed: `state` only elects the one initialising thread; the arena itself is
                    // published by the `OnceLock`.
                    self.state.store(READY, O::Relaxed);
                }
                _ => self.state.store(FAILED, O::Relaxed),
            }
        }
        self.shared.get()
    }

    /// An allocation the arena serves (the front cache first), or `None`.
    #[inline]
    fn arena_alloc(&self, layout: Layout) -> Option<NonNull<u8>> {
        let s = self.get()?;
        if let Some(p) = front::take(s, layout) {
            return Some(p);
        }
        self.arena_alloc_slow(s, layout)
    }

    #[inline(never)]
    fn arena_alloc_slow(&self, s: &Arc<Shared>, layout: Layout) -> Option<NonNull<u8>> {
        match guarded(|| s.arena.allocate_ptr(layout)) {
            Some(Ok(p)) => Some(p.cast()),
            // The arena cannot serve it: the front cache's blocks go back first (they may merge
            // into what the request needs), and it is tried once more before the system
            // allocator takes it.
            Some(Err(_)) if front::give_back(s) => guarded(|| s.arena.allocate_ptr(layout))
                .and_then(Result::ok)
                .map(NonNull::cast),
            _ => None,
        }
    }
}

// SAFETY: `alloc` returns null or a block of at least `layout.size()` bytes aligned to
// `layout.align()` that nothing else uses until `dealloc`; `dealloc` routes each pointer to the
// allocator that produced it (arena pointers are recognised by address); parena never unwinds out
// of these functions.
unsafe impl std::alloc::GlobalAlloc for GlobalArena {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(p) = self.arena_alloc(layout) {
            return p.as_ptr();
        }
        self.fallbacks.fetch_add(1, StdOrdering::Relaxed);
        // SAFETY: forwarded caller contract (non-zero size).
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(s) = self.get() {
            if let Some(p) = front::take(s, layout) {
                // A cached block holds what its last owner wrote.
                // SAFETY: `p` is ours, `layout.size()` bytes.
                unsafe { p.as_ptr().write_bytes(0, layout.size()) };
                return p.as_ptr();
            }
            // The arena hands out zeroed blocks.
            if let Some(p) = self.arena_alloc_slow(s, layout) {
                return p.as_ptr();
            }
        }
        self.fallbacks.fetch_add(1, StdOrdering::Relaxed);
        // SAFETY: forwarded caller contract (non-zero size).
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(s) = self.shared.get() {
            if let Some(p) = NonNull::new(ptr).filter(|_| s.arena.owns(ptr)) {
                // Our own thread-local slots may be freed while we are inside the arena: those
                // came from the system allocator, so they never reach here.
                // SAFETY: forwarded caller contract: `ptr` came from `alloc` with `layout`, an
                // arena block (the front cache hands out only blocks the arena handed out).
                if !unsafe { front::give(s, p, layout) } {
                    // SAFETY: as above.
                    unsafe { free_to_arena(&s.arena, p, layout) };
                }
                return;
            }
        }
        // SAFETY: not an arena pointer, so it came from the system allocator with `layout`.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if let (Some(a), Some(p)) = (self.arena(), NonNull::new(ptr)) {
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
