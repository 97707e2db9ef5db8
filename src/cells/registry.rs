//! The [`CellRegistry`]: every cell an arena handed out, in a lock-free list, and the hand-over
//! of an abandoned cell to the next thread that needs one.

use super::Cell;
use crate::heap::ChunkCell;
use crate::reentry::Step;
use crate::sync::{Arc, AtomicPtr, Ordering};
use crossbeam_utils::CachePadded;

/// The cells an arena has handed out, so that close and `compact` can reach every chunk.
///
/// A lock-free list, newest first: a cell is pushed once (a CAS on `head`) and stays until the
/// registry is dropped, so a walk needs no lock and sees every cell pushed before it started. No
/// lock means nothing a thread can hold while it is stopped forever: a child of `fork()` (which
/// has none of its parent's other threads) registers, walks and adopts cells as usual
/// (`crate::fork`).
#[derive(Default)]
pub(crate) struct CellRegistry {
    /// The newest node, or null. Each node is a `Box` leaked by `acquire` and freed by `drop`.
    head: AtomicPtr<Node>,
}

/// One registered cell and the node pushed before it; both fixed once the node is published.
struct Node {
    cell: Cell,
    next: *mut Node,
}

impl CellRegistry {
    /// A cell for the calling thread: an abandoned one if there is one, else a new one.
    #[cold]
    #[inline(never)]
    pub(super) fn acquire(&self) -> Cell {
        let _step = Step::enter();
        for c in self.iter() {
            // `try_adopt`'s Acquire CAS makes the previous owner's stores to the cell visible.
            if c.try_adopt() {
                c.reads().set_epoch(crate::fork::epoch());
                return c.clone();
            }
        }
        let c: Cell = Arc::new(CachePadded::new(ChunkCell::default()));
        // The fork epoch of the process whose thread owns the cell (`heap::reads`, "Fork").
        c.reads().set_epoch(crate::fork::epoch());
        let node = Box::into_raw(Box::new(Node {
            cell: c.clone(),
            next: std::ptr::null_mut(),
        }));
        // Relaxed: the CAS below publishes the node.
        let mut next = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: `node` came from `Box::into_raw` above and is not published yet: this thread
            // is its only user.
            unsafe { (*node).next = next };
            // Release: publishes the node's fields; pairs with the Acquire of `iter`'s load.
            // SeqCst: the read-slot and check-slot protocols need a walk that comes after a
            // slot's swap in their total order to find the slot's cell, even when the cell is
            // this new one (its thread's first read or check): the push, which comes before
            // that swap, is then before the walk's `SeqCst` load of the head too, and the load
            // sees it (`iter`).
            match self
                .head
                .compare_exchange_weak(next, node, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => return c,
                Err(now) => next = now,
            }
        }
    }

    /// The registered cells, newest first.
    fn iter(&self) -> impl Iterator<Item = &Cell> + '_ {
        // Acquire: pairs with the Release CAS that published the newest node; older nodes were
        // published before it. SeqCst: one total order with the pushes' CASes and the slots'
        // swaps and loads, so a free's or a pass's walk that follows a slot's swap finds the
        // cell of that slot, however new (`acquire`; docs/metadata.md 4 and 4.1).
        let mut at = self.head.load(Ordering::SeqCst);
        std::iter::from_fn(move || {
            // SAFETY: a non-null `at` is a published node (the head, or a published node's
            // `next`): its fields are fixed and visible (see above), and nodes are freed only
            // by `drop`, which `&self` rules out while this iterator lives.
            let node = unsafe { at.as_ref() }?;
            at = node.next;
            Some(&node.cell)
        })
    }

    /// Runs `f` on every abandoned cell, each adopted for the call and abandoned again after it
    /// (a cell another thread adopts first is skipped): a thread that needs the blocks an exited
    /// thread left in its cell's cache can hand them to the shared lists without waiting for a new
    /// thread to adopt the cell.
    pub(crate) fn for_each_abandoned(&self, mut f: impl FnMut(&ChunkCell)) {
        let _step = Step::enter();
        for c in self.iter() {
            // `try_adopt`'s Acquire CAS makes the previous owner's stores to the cell visible;
            // `abandon`'s Release store hands ours to the next owner.
            if c.try_adopt() {
                f(c);
                c.abandon();
            }
        }
    }

    /// Every cell, for exclusive passes and stats.
    pub(crate) fn all(&self) -> Vec<Cell> {
        let _step = Step::enter();
        self.iter().cloned().collect()
    }

    /// Folds `f` over every cell, without copying the list.
    pub(crate) fn fold<T>(&self, init: T, f: impl FnMut(T, &Cell) -> T) -> T {
        let _step = Step::enter();
        self.iter().fold(init, f)
    }
}

impl Drop for CellRegistry {
    fn drop(&mut self) {
        // Acquire: as in `iter` (`&mut self` already orders it; loom's atomics have no `get_mut`).
        let mut at = self.head.load(Ordering::Acquire);
        while !at.is_null() {
            // SAFETY: every node came from `Box::into_raw` in `acquire` and is in the list once;
            // `&mut self` means no walk is running, and the node is freed here only.
            let node = unsafe { Box::from_raw(at) };
            at = node.next;
        }
    }
}

// SAFETY: the raw pointers are the list's own nodes (see `CellRegistry`), each holding an
// `Arc<CachePadded<ChunkCell>>`, which is `Send + Sync`; the list is changed only by CAS.
unsafe impl Send for Node {}
// SAFETY: as above: a node is read-only once published.
unsafe impl Sync for Node {}
