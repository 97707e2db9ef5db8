//! `GlobalArena`'s stash (docs/design.md, "`GlobalArena`'s front cache"): per exact class,
//! `SHARDS` stacks of freed blocks that move between threads a chain at a time, and the count of
//! the bytes parked there; the link word every cached block starts with.

use crate::layout::EXACT_CLASSES;
use crate::sync::{AtomicPtr, AtomicU64, Ordering};
use std::ptr::null_mut;

/// Bytes the stash and the threads' adopted lists hold at most (give or take one chain per thread
/// racing past the check): a chain beyond it goes back to the arena.
const PARKED_MAX: u64 = 8 << 20;
/// Stacks per class in the stash: each thread pushes to its own shard (assigned in turn when its
/// lists bind) and takes from it first, then from the others.
pub(super) const SHARDS: usize = 16;

/// The link word of a cached block.
///
/// # Safety
/// `p` is a block of the front cache (its first data word is the link: 8-aligned, 8 bytes).
#[cfg(not(parena_loom))]
#[inline]
pub(super) unsafe fn link(p: *mut u8) -> *mut u8 {
    // SAFETY: caller contract.
    unsafe { p.cast::<*mut u8>().read() }
}

/// [`link`] under loom: a model's block is a loom `AtomicPtr` (`StashModel`), read `Relaxed`, so
/// the model sees a link only as far as the stash's own orderings make it visible.
#[cfg(parena_loom)]
pub(super) unsafe fn link(p: *mut u8) -> *mut u8 {
    // SAFETY: caller contract: under loom every block is a model's `AtomicPtr`.
    unsafe { &*p.cast::<AtomicPtr<u8>>() }.load(Ordering::Relaxed)
}

/// Sets the link word of a cached block.
///
/// # Safety
/// As [`link`], and the calling thread holds the block (its list is the thread's, or a chain not
/// yet published).
#[cfg(not(parena_loom))]
#[inline]
pub(super) unsafe fn set_link(p: *mut u8, next: *mut u8) {
    // SAFETY: caller contract.
    unsafe { p.cast::<*mut u8>().write(next) };
}

/// [`set_link`] under loom (see [`link`]).
#[cfg(parena_loom)]
pub(super) unsafe fn set_link(p: *mut u8, next: *mut u8) {
    // SAFETY: caller contract: under loom every block is a model's `AtomicPtr`.
    unsafe { &*p.cast::<AtomicPtr<u8>>() }.store(next, Ordering::Relaxed);
}

/// `SHARDS` stacks of chains per class, each pushed a chain at a time and emptied only whole:
/// with no pop of one node there is no ABA (a push's CAS succeeds only on the head its tail links
/// to, and the list that head starts is the one the chain joins). A thread pushes to its own shard
/// and takes its own first, so two threads that free and allocate the same class reuse their own
/// frees instead of one taking everything; a thread whose shard is empty takes another's (a
/// consumer's frees reach the producer).
pub(crate) struct Stash {
    heads: [[AtomicPtr<u8>; SHARDS]; EXACT_CLASSES],
    /// Bytes in the stash and in the threads' adopted lists (taken off as adopted blocks are handed
    /// out, `UNPARK_STEP` at a time, or given back).
    parked: AtomicU64,
    /// Bit `c`: class `c` may hold a chain (set by every push after its CAS, cleared by
    /// [`Stash::take_classes`]; a take by an allocation leaves it set). Lets a give-back skip the
    /// shards of classes nothing was pushed to.
    pushed: AtomicU64,
}

impl Stash {
    pub(crate) fn new() -> Stash {
        Stash {
            heads: std::array::from_fn(|_| std::array::from_fn(|_| AtomicPtr::new(null_mut()))),
            parked: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
        }
    }

    /// The classes pushed to since the last call (bit `c` for class `c`), cleared. AcqRel: pairs
    /// with the AcqRel `fetch_or` of each push, which follows its CAS, so every chain pushed
    /// before a bit this call clears is seen by the caller's takes of that class.
    pub(crate) fn take_classes(&self) -> u64 {
        if self.pushed.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.pushed.swap(0, Ordering::AcqRel)
    }

    /// Pushes the chain `first ..= last` of `bytes` bytes on shard `shard` of class `class`;
    /// `false` (and nothing pushed) when the stash would pass its bound.
    ///
    /// # Safety
    /// The chain is linked through its blocks' first words, the calling thread holds every block
    /// of it, and `last`'s link is its to set.
    pub(crate) unsafe fn push(
        &self,
        class: usize,
        shard: usize,
        first: *mut u8,
        last: *mut u8,
        bytes: u64,
    ) -> bool {
        if self.parked.load(Ordering::Relaxed).saturating_add(bytes) > PARKED_MAX {
            return false;
        }
        // Counted before the chain is published: the `Release` CAS below orders this add before
        // the `Acquire` take of the chain, so a taker's subtraction never comes first.
        self.parked.fetch_add(bytes, Ordering::Relaxed);
        let head = &self.heads[class][shard % SHARDS];
        let mut old = head.load(Ordering::Relaxed);
        loop {
            // SAFETY: caller contract: `last` is ours until the CAS publishes it.
            unsafe { set_link(last, old) };
            // Release: the chain's links (and the blocks' bytes, last written by their owners
            // before they freed them) are visible to the thread that takes the stack. Failure
            // Relaxed: only the new head is needed, to link to it again.
            match head.compare_exchange_weak(old, first, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => {
                    // After the CAS, AcqRel: pairs with the swap of `take_classes`, so a
                    // give-back that clears this bit then sees the chain.
                    self.pushed.fetch_or(1 << class, Ordering::AcqRel);
                    return true;
                }
                Err(now) => old = now,
            }
        }
    }

    /// Takes one whole stack of class `class` (null when every shard is empty): shard `shard`'s if
    /// it holds a chain, else the next one that does. A list linked through the blocks' first
    /// words, null-terminated, the caller's alone.
    pub(crate) fn take(&self, class: usize, shard: usize) -> *mut u8 {
        let heads = &self.heads[class];
        for k in 0..SHARDS {
            let head = &heads[(shard + k) % SHARDS];
            // A load first: an empty stack costs no read-modify-write.
            if head.load(Ordering::Relaxed).is_null() {
                continue;
            }
            // Acquire: pairs with every push's Release CAS (a release sequence of RMWs on one
            // word).
            let p = head.swap(null_mut(), Ordering::Acquire);
            if !p.is_null() {
                return p;
            }
        }
        null_mut()
    }

    /// Takes `bytes` off the count of parked bytes.
    pub(crate) fn unpark(&self, bytes: u64) {
        if bytes != 0 {
            self.parked.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes parked now.
    #[cfg(parena_loom)]
    pub(crate) fn parked(&self) -> u64 {
        self.parked.load(Ordering::Relaxed)
    }
}

/// The stash alone for the loom models in `tests/loom.rs`: blocks of one class, each a loom
/// `AtomicPtr` (its link word), pushed in chains and taken whole.
#[cfg(parena_loom)]
pub struct StashModel {
    stash: Stash,
    /// Never resized: its elements' addresses are the blocks' pointers.
    blocks: Vec<AtomicPtr<u8>>,
}

#[cfg(parena_loom)]
impl std::fmt::Debug for StashModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StashModel")
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

#[cfg(parena_loom)]
impl StashModel {
    /// A stash and `n` blocks, none of them stashed.
    pub fn new(n: usize) -> StashModel {
        StashModel {
            stash: Stash::new(),
            blocks: (0..n).map(|_| AtomicPtr::new(null_mut())).collect(),
        }
    }

    fn ptr(&self, i: usize) -> *mut u8 {
        std::ptr::from_ref(&self.blocks[i]).cast_mut().cast()
    }

    /// Pushes blocks `ids` (which the caller holds) on shard `shard` as one chain of 8 bytes
    /// each; whether the stash took it.
    pub fn push_chain(&self, shard: usize, ids: &[usize]) -> bool {
        for w in ids.windows(2) {
            // SAFETY: a model block, the caller's.
            unsafe { set_link(self.ptr(w[0]), self.ptr(w[1])) };
        }
        let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
            return true;
        };
        // SAFETY: the chain is linked, the caller's, and `last`'s link is set by the push.
        unsafe {
            self.stash.push(
                0,
                shard,
                self.ptr(first),
                self.ptr(last),
                8 * ids.len() as u64,
            )
        }
    }

    /// Takes one whole stack, shard `shard`'s first: the blocks in list order.
    pub fn take(&self, shard: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut p = self.stash.take(0, shard);
        while !p.is_null() {
            let i = (0..self.blocks.len())
                .find(|&i| self.ptr(i) == p)
                .expect("a link names a model block");
            out.push(i);
            // SAFETY: a model block, ours since the take.
            p = unsafe { link(p) };
        }
        self.stash.unpark(8 * out.len() as u64);
        out
    }

    /// Bytes the stash counts as parked.
    pub fn parked(&self) -> u64 {
        self.stash.parked()
    }
}
