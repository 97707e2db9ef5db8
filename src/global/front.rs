//! `GlobalArena`'s front cache (docs/design.md, "`GlobalArena`'s front cache"): a thread's lists of
//! freed blocks of the exact classes, kept FOREIGN as the arena handed them out, their way to and
//! from the shared stash (`stash.rs`), and their way back to the arena.
//!
//! A cached block's first data word links it to the next block of its list (a pointer, null at
//! the end); for spans of 24 bytes or more its second data word holds [`key`]. Nothing else of the
//! block is touched: its header stays the arena's FOREIGN header, so to the arena the block is one
//! the program holds.

use super::guard::{free_to_arena, may_enter};
use super::stash::{link, set_link, Stash, SHARDS};
use crate::arena::Arena;
use crate::freelist::{class_min, exact_class};
use crate::layout::{block_span, EXACT_CLASSES, WORD};
use crate::sync::{Arc, AtomicU64, Ordering};
use std::alloc::Layout;
use std::cell::Cell;
use std::ptr::{null_mut, NonNull};

/// Bytes of one class a thread keeps in its local list; one more free moves the list to the stash.
const LOCAL_BYTES: u64 = 16 << 10;
/// Blocks a local list holds at least, whatever their span.
const LOCAL_MIN: u32 = 8;
/// Adopted bytes a thread hands out before it takes them off the stash's count.
const UNPARK_STEP: u64 = 64 << 10;
/// Hits a thread counts before it adds them to the shared count.
const HITS_STEP: u64 = 4096;

/// The exact class of a request the front cache serves: alignment 8 or less, a non-zero size, and
/// a block span of an exact class (data up to `EXACT_MAX - 8` bytes), indexed as the arena's own
/// lists and caches index it (`exact_class`).
#[inline]
pub(super) fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() == 0 || layout.align() > WORD as usize {
        return None;
    }
    block_span(layout.size() as u64).and_then(exact_class)
}

/// The span (header included) of a block of class `class`: what it counts for in the stash.
#[inline]
fn span_of(class: usize) -> u64 {
    class_min(class)
}

/// The blocks a local list of class `class` holds before it moves to the stash.
#[inline]
fn local_cap(class: usize) -> u32 {
    ((LOCAL_BYTES / span_of(class)) as u32).max(LOCAL_MIN)
}

/// The layout a block of class `class` is given back to the arena with.
fn layout_of(class: usize) -> Layout {
    // 8 to 504 bytes, alignment 8: always a valid layout; the arena reads only the size's
    // non-zeroness (the block's own header has its length).
    Layout::from_size_align((span_of(class) - WORD) as usize, WORD as usize)
        .unwrap_or(Layout::new::<u64>())
}

/// The value a cached block of 16 data bytes or more keeps in its second word, so that a second
/// free of a block this thread cached is found ([`Lists::give`]). Different in each process (the
/// address of a static, under address-space randomisation), never 0.
#[inline]
fn key() -> usize {
    static ANCHOR: u8 = 0;
    (std::ptr::addr_of!(ANCHOR).addr().rotate_left(29) ^ 0x9E37_79B9_7F4A_7C15_u64 as usize) | 1
}

/// The key word of a cached block of class 1 or above.
///
/// # Safety
/// `p` is a block of at least 16 data bytes the calling thread holds.
#[inline]
unsafe fn key_word(p: *mut u8) -> *mut usize {
    // SAFETY: caller contract: the second word is inside the block.
    unsafe { p.cast::<usize>().add(1) }
}

/// The shared half: the arena behind a `GlobalArena`, and the stash the threads' full lists move
/// to. Behind an `Arc`: a thread whose lists hold blocks of this arena holds a clone, so the
/// memory stays mapped until it has given them back.
pub(crate) struct Shared {
    pub(crate) arena: Arena,
    stash: Stash,
    /// Allocations the front cache served, as the threads have added them.
    hits: AtomicU64,
    /// The shard the next thread to bind gets (modulo `SHARDS`).
    next_shard: AtomicU64,
}

impl Shared {
    pub(crate) fn new(arena: Arena) -> Shared {
        Shared {
            arena,
            stash: Stash::new(),
            hits: AtomicU64::new(0),
            next_shard: AtomicU64::new(0),
        }
    }

    /// Allocations the front cache served: every thread's up to its last `HITS_STEP`, and all
    /// of those that exited or called [`give_back`].
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

/// One class of a thread's lists.
struct Local {
    /// The local list: freed on this thread, pushed and popped at the head.
    head: Cell<*mut u8>,
    /// Its last block (the first pushed), whose link is null: a chain's end when the list moves.
    tail: Cell<*mut u8>,
    count: Cell<u32>,
    /// The list last adopted from the stash: popped only; its bytes still count as parked.
    adopted: Cell<*mut u8>,
}

impl Local {
    // The thread-local's initializer repeats it, one per class; each copy is its own `Local`.
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: Local = Local {
        head: Cell::new(null_mut()),
        tail: Cell::new(null_mut()),
        count: Cell::new(0),
        adopted: Cell::new(null_mut()),
    };
}

/// How many `GlobalArena`s a thread keeps lists for: the first two it asks for a block of a
/// cached class, or frees one into (a program's global allocator, and one more called directly).
const OWNERS: usize = 2;

/// A thread's lists for one `GlobalArena`.
struct Lists {
    /// The arena the lists belong to (null while unbound): compared by address.
    owner: Cell<*const Shared>,
    /// A clone of `owner`'s `Arc`, held while the thread lives.
    keep: Cell<Option<Arc<Shared>>>,
    /// Adopted bytes handed out and not yet taken off the stash's count.
    unparked: Cell<u64>,
    /// Hits not yet added to the shared count.
    hits: Cell<u64>,
    /// This thread's shard of the stash.
    shard: Cell<usize>,
    classes: [Local; EXACT_CLASSES],
}

impl Lists {
    // Repeated in the thread-local's initializer, one per owner; each copy is its own `Lists`.
    #[allow(clippy::declare_interior_mutable_const)]
    const UNBOUND: Lists = Lists {
        owner: Cell::new(std::ptr::null()),
        keep: Cell::new(None),
        unparked: Cell::new(0),
        hits: Cell::new(0),
        shard: Cell::new(0),
        classes: [Local::EMPTY; EXACT_CLASSES],
    };
}

/// A thread's front cache: its lists for up to [`OWNERS`] `GlobalArena`s.
struct Front {
    sets: [Lists; OWNERS],
}

std::thread_local! {
    static FRONT: Front = const { Front { sets: [Lists::UNBOUND; OWNERS] } };
}

impl Drop for Front {
    /// A thread's exit: every block it holds goes back to its arena (its local and adopted lists).
    fn drop(&mut self) {
        for l in &self.sets {
            if let Some(shared) = l.keep.take() {
                l.give_back(&shared);
            }
        }
    }
}

impl Front {
    /// This thread's lists for `shared`, bound now if a set is unbound; `None` when the thread
    /// keeps lists for [`OWNERS`] other arenas.
    #[inline]
    fn lists(&self, shared: &Arc<Shared>) -> Option<&Lists> {
        if std::ptr::eq(self.sets[0].owner.get(), Arc::as_ptr(shared)) {
            return Some(&self.sets[0]);
        }
        self.other_lists(shared)
    }

    #[cold]
    #[inline(never)]
    fn other_lists(&self, shared: &Arc<Shared>) -> Option<&Lists> {
        let p = Arc::as_ptr(shared);
        if let Some(l) = self.sets.iter().find(|l| std::ptr::eq(l.owner.get(), p)) {
            return Some(l);
        }
        let l = self.sets.iter().find(|l| l.owner.get().is_null())?;
        // A reference count, no allocation.
        l.keep.set(Some(Arc::clone(shared)));
        l.owner.set(p);
        l.shard
            .set(shared.next_shard.fetch_add(1, Ordering::Relaxed) as usize % SHARDS);
        Some(l)
    }
}

/// The blocks of the null-terminated list at `first` (of class `class`) freed into the arena, one
/// by one; how many.
///
/// # Safety
/// The list is the caller's alone, and every block of it came from `arena.allocate_ptr` with a
/// size of class `class`.
unsafe fn release_list(arena: &Arena, mut p: *mut u8, class: usize) -> u64 {
    let mut n = 0;
    while let Some(b) = NonNull::new(p) {
        // SAFETY: caller contract: the block is ours; its link is read before the free.
        p = unsafe { link(b.as_ptr()) };
        // SAFETY: caller contract: an arena block of this class, not used after this.
        unsafe { free_to_arena(arena, b, layout_of(class)) };
        n += 1;
    }
    n
}

impl Lists {
    /// A block of class `class` from these lists (`shared`'s) or the stash.
    #[inline]
    fn take(&self, shared: &Shared, class: usize) -> Option<NonNull<u8>> {
        let c = &self.classes[class];
        let mut p = c.head.get();
        if !p.is_null() {
            // SAFETY: `p` heads this thread's local list.
            c.head.set(unsafe { link(p) });
            c.count.set(c.count.get() - 1);
        } else {
            p = c.adopted.get();
            if p.is_null() {
                p = shared.stash.take(class, self.shard.get());
                if p.is_null() {
                    return None;
                }
            }
            // SAFETY: `p` heads this thread's adopted list (or the stack it just took).
            c.adopted.set(unsafe { link(p) });
            let unparked = self.unparked.get() + span_of(class);
            if unparked >= UNPARK_STEP {
                shared.stash.unpark(unparked);
                self.unparked.set(0);
            } else {
                self.unparked.set(unparked);
            }
        }
        let hits = self.hits.get() + 1;
        if hits >= HITS_STEP {
            shared.hits.fetch_add(hits, Ordering::Relaxed);
            self.hits.set(0);
        } else {
            self.hits.set(hits);
        }
        if class > 0 {
            // SAFETY: `p` is ours now, with 16 data bytes or more.
            let kw = unsafe { key_word(p) };
            // SAFETY: as above: its key goes, so a free of it is not taken for a second one.
            unsafe { kw.write(0) };
        }
        NonNull::new(p)
    }

    /// Keeps the freed block `p` of class `class` in this local list (`shared`'s). Always `true`
    /// (a second free of a cached block is refused here, not passed on).
    #[inline]
    fn give(&self, shared: &Shared, p: NonNull<u8>, class: usize) -> bool {
        let c = &self.classes[class];
        let p = p.as_ptr();
        if class > 0 {
            // SAFETY: the caller freed `p` (16 data bytes or more): its words are ours.
            let kw = unsafe { key_word(p) };
            // SAFETY: as above.
            if unsafe { kw.read() } == key() && self.listed(c, p) {
                // A second free of a block this thread holds cached: a contract violation of the
                // caller. Listing it twice would hand it out twice; it is refused.
                debug_assert!(false, "dealloc of {p:?}, which is already free");
                return true;
            }
            // SAFETY: as above.
            unsafe { kw.write(key()) };
        }
        let head = c.head.get();
        // SAFETY: `p` is ours (freed by the caller), joining our own list.
        unsafe { set_link(p, head) };
        if head.is_null() {
            c.tail.set(p);
        }
        c.head.set(p);
        let n = c.count.get() + 1;
        c.count.set(n);
        if n >= local_cap(class) {
            self.spill(shared, class);
        }
        true
    }

    /// Whether `p` is on class `c`'s local list (a bounded walk: the list holds at most
    /// `LOCAL_BYTES`).
    #[cold]
    fn listed(&self, c: &Local, p: *mut u8) -> bool {
        let mut q = c.head.get();
        for _ in 0..c.count.get() {
            if q == p {
                return true;
            }
            // SAFETY: `q` is on this thread's local list.
            q = unsafe { link(q) };
        }
        false
    }

    /// Moves class `class`'s full local list to the stash, or back to the arena when the stash is
    /// at its bound.
    #[cold]
    #[inline(never)]
    fn spill(&self, shared: &Shared, class: usize) {
        let c = &self.classes[class];
        let first = c.head.replace(null_mut());
        let last = c.tail.replace(null_mut());
        let n = c.count.replace(0);
        let bytes = u64::from(n) * span_of(class);
        // SAFETY: the chain is this thread's local list, just emptied: linked, ours, `last`'s
        // link null and ours to set.
        if !unsafe {
            shared
                .stash
                .push(class, self.shard.get(), first, last, bytes)
        } {
            // SAFETY: the list is ours; its blocks are arena blocks of this class.
            unsafe { release_list(&shared.arena, first, class) };
        }
    }

    /// Gives every block of this thread's lists back to the arena; whether there was one.
    fn give_back(&self, shared: &Shared) -> bool {
        let mut n = 0;
        let mut adopted = 0;
        for (class, c) in self.classes.iter().enumerate() {
            c.tail.set(null_mut());
            c.count.set(0);
            // SAFETY: both lists are this thread's, of arena blocks of this class.
            n += unsafe { release_list(&shared.arena, c.head.replace(null_mut()), class) };
            // SAFETY: as above.
            let a = unsafe { release_list(&shared.arena, c.adopted.replace(null_mut()), class) };
            adopted += a * span_of(class);
            n += a;
        }
        shared.stash.unpark(adopted + self.unparked.replace(0));
        shared
            .hits
            .fetch_add(self.hits.replace(0), Ordering::Relaxed);
        n > 0
    }
}

/// A block for `layout` from the calling thread's front cache of `shared`, if it serves the
/// request and has one.
#[inline]
pub(super) fn take(shared: &Arc<Shared>, layout: Layout) -> Option<NonNull<u8>> {
    let class = class_of(layout)?;
    // Not for parena's own bookkeeping (an allocation made inside the arena goes to the system
    // allocator, docs/design.md, "Allocator paths").
    if !may_enter() {
        return None;
    }
    FRONT
        .try_with(|f| f.lists(shared).and_then(|l| l.take(shared, class)))
        .ok()
        .flatten()
}

/// Keeps `p`, freed with `layout`, in the calling thread's front cache of `shared`; `false` when
/// the cache does not take it (the caller frees it into the arena).
///
/// # Safety
/// `p` came from `shared.arena.allocate_ptr` with `layout` and is not used afterwards.
#[inline]
pub(super) unsafe fn give(shared: &Arc<Shared>, p: NonNull<u8>, layout: Layout) -> bool {
    let Some(class) = class_of(layout) else {
        return false;
    };
    if !may_enter() {
        return false;
    }
    FRONT
        .try_with(|f| f.lists(shared).is_some_and(|l| l.give(shared, p, class)))
        .unwrap_or(false)
}

/// Gives the calling thread's lists (when they are `shared`'s) and the whole stash back to the
/// arena; whether any block went back.
pub(super) fn give_back(shared: &Shared) -> bool {
    let mut any = FRONT
        .try_with(|f| {
            f.sets
                .iter()
                .find(|l| std::ptr::eq(l.owner.get(), shared))
                .is_some_and(|l| l.give_back(shared))
        })
        .unwrap_or(false);
    // Only the classes something was pushed to since the last give-back: on a full arena this
    // runs for every request the arena refuses, and most classes' shards are empty.
    let classes = shared.stash.take_classes();
    for class in (0..EXACT_CLASSES).filter(|c| classes & (1 << c) != 0) {
        loop {
            let list = shared.stash.take(class, 0);
            if list.is_null() {
                break;
            }
            // SAFETY: the stack is ours once taken; its blocks are arena blocks of this class.
            let n = unsafe { release_list(&shared.arena, list, class) };
            shared.stash.unpark(n * span_of(class));
            any = true;
        }
    }
    any
}
