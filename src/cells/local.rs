//! The thread-local that finds a thread's cells: per open arena a slot of one cell per lane, and
//! the fast path's copy of the first slot (invariant F).

use super::registry::CellRegistry;
use super::Cell;
use crate::heap::ChunkCell;
use crate::reentry::{audit_exempt, Step};
use std::cell::RefCell;
use std::ptr::NonNull;

/// Slots per thread: a thread that uses more arenas at once than this hands cells back and forth.
const SLOTS: usize = 8;

/// Allocation lanes per thread and arena (see [`crate::Arena::with_lane`]): each lane has its own
/// chunk cell, so the blocks a thread allocates in one lane sit next to each other whatever it
/// allocates in the others.
pub const LANES: usize = 4;

struct Slot {
    arena: u64,
    /// This thread's cell for each lane, taken on the lane's first use.
    cells: [Option<Cell>; LANES],
}

impl Slot {
    /// Whether a read of this thread holds a read slot of one of this slot's cells.
    fn reading(&self) -> bool {
        self.cells.iter().flatten().any(|c| c.reads().holds_any())
    }

    fn abandon(&mut self) {
        for c in self.cells.iter_mut().filter_map(Option::take) {
            c.abandon();
        }
    }
}

struct ThreadCells {
    slots: RefCell<Vec<Slot>>,
}

impl Drop for ThreadCells {
    fn drop(&mut self) {
        // The fast path must not hand out cells this thread is giving up.
        // (Under loom the thread-locals are destroyed in any order; a `FAST` already gone needs no
        // clearing.)
        let _ = FAST.try_with(Fast::clear);
        for mut s in self.slots.get_mut().drain(..) {
            s.abandon();
        }
    }
}

crate::sync::parena_thread_local! {
    static CELLS: ThreadCells = ThreadCells { slots: RefCell::new(Vec::new()) };
}

/// The child side of a fork, in the child's one thread (the one that forked): every cell that
/// thread holds is owned by a thread of the child's fork epoch now, so a free in the child sees
/// its read slots (`heap::reads`, "Fork"). The cells of the parent's other threads keep the
/// parent's epoch, and the child's frees pass over their slots.
///
/// Registered with `crate::fork::on_fork` after the handler that counts the epoch
/// (`fork::watch`, which every open calls before any cell is taken), so it runs after it.
extern "C" fn retag_after_fork() {
    let epoch = crate::fork::epoch();
    let _ = CELLS.try_with(|t| {
        // `try_borrow`: `fork` is never called from inside parena's walks of the slot list.
        if let Ok(slots) = t.slots.try_borrow() {
            for c in slots.iter().flat_map(|s| s.cells.iter().flatten()) {
                c.reads().set_epoch(epoch);
            }
        }
    });
}

/// Registers [`retag_after_fork`] (once per process).
fn watch_fork() {
    #[allow(clippy::disallowed_types)] // a `static` needs std's `Once` (loom's has no const constructor)
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| crate::fork::on_fork(None, None, Some(retag_after_fork)));
}

/// The cells of the calling thread's first slot, for the fast path: one thread-local load and a
/// compare, where `CELLS` needs a lazy-initialisation check, a `RefCell` borrow and a `Vec` index.
///
/// Invariant F: `arena` is 0 (no arena has uid 0) or equals `slots[0].arena` of this thread's
/// `CELLS`, and then `cells[l]` points to the cell in `slots[0].cells[l]` (null when `None`).
/// Everything that changes `slots[0]` (`with_cell_slow`, the drop of `CELLS`) restores it.
struct Fast {
    arena: std::cell::Cell<u64>,
    cells: [std::cell::Cell<*const ChunkCell>; LANES],
}

impl Fast {
    fn clear(&self) {
        self.arena.set(0);
        for c in &self.cells {
            c.set(std::ptr::null());
        }
    }

    /// Points at the cells of `slot`, which becomes this thread's first slot.
    fn set(&self, slot: &Slot) {
        self.arena.set(slot.arena);
        for (f, c) in self.cells.iter().zip(&slot.cells) {
            f.set(
                c.as_ref()
                    .map_or(std::ptr::null(), |c| &***c as *const ChunkCell),
            );
        }
    }
}

// No destructor, so it stays usable while other thread-locals (`CELLS` included) are destroyed.
crate::sync::parena_thread_local! {
    static FAST: Fast = const {
        Fast {
            arena: std::cell::Cell::new(0),
            cells: [const { std::cell::Cell::new(std::ptr::null()) }; LANES],
        }
    };
}

/// Runs `f` with the calling thread's cell for lane `lane` (`< LANES`) of the arena whose
/// process-unique id is `arena`.
///
/// `f` must not call `with_cell` again: the cell is this thread's only while no slot changes.
#[inline]
pub(crate) fn with_cell<R>(
    arena: u64,
    lane: usize,
    registry: &CellRegistry,
    f: impl FnOnce(&ChunkCell) -> R,
) -> R {
    // The thread-local lookup only finds the cell; `f` runs after it. Running `f` inside
    // `try_with` returned `R` through `Result<Option<R>, _>`, and the compiler copied it through
    // the stack with overlapping loads that defeat store forwarding: ~40 ns per allocation
    // (issue 7; see docs/performance.md).
    let hit = FAST
        .try_with(|fast| {
            if fast.arena.get() == arena {
                NonNull::new(fast.cells[lane].get().cast_mut())
            } else {
                None
            }
        })
        .ok()
        .flatten();
    match hit {
        Some(cell) => {
            // SAFETY: by invariant F the pointer is the cell in this thread's first slot for
            // `arena`, taken from a live `Arc<ChunkCell>`. `registry` (borrowed for this whole
            // call) holds an `Arc` of every cell it ever handed out and never drops one, and this
            // slot's cell came from `registry` (slots are keyed by the arena's never-reused uid),
            // so the cell outlives `f`. Only shared references to it exist (its fields are
            // atomics), and this thread owns it: it is abandoned only by this thread, in
            // `with_cell_slow` or at thread exit, neither of which can run during `f`.
            f(unsafe { cell.as_ref() })
        }
        None => with_cell_slow(arena, lane, registry, f),
    }
}

#[cold]
#[inline(never)]
fn with_cell_slow<R>(
    arena: u64,
    lane: usize,
    registry: &CellRegistry,
    f: impl FnOnce(&ChunkCell) -> R,
) -> R {
    let step = Step::enter();
    let cell = CELLS.try_with(|t| {
        // The registration of a new cell (slot list growth, `CellRegistry::acquire`) is the one
        // allocation invariant A allows.
        audit_exempt!();
        // Borrowed already only if this thread re-entered parena from inside a walk of its slots
        // (`for_each_thread_cell`): treated like a thread whose thread-locals are gone, below.
        let mut slots = t.slots.try_borrow_mut().ok()?;
        match slots.iter().position(|s| s.arena == arena) {
            Some(i) => {
                let s = slots.remove(i);
                slots.insert(0, s);
            }
            None => {
                if slots.len() >= SLOTS {
                    // The least recently used slot none of whose cells holds a read in progress:
                    // a cell with a held read slot stays this thread's, so that a fork in the
                    // middle of that read finds it (`retag_after_fork`). If every slot holds one
                    // (reads nested in more arenas than there are slots), the list grows.
                    if let Some(i) = slots.iter().rposition(|s| !s.reading()) {
                        // Invariant F: restored below, when the new slot goes first.
                        slots.remove(i).abandon();
                    }
                }
                slots.insert(
                    0,
                    Slot {
                        arena,
                        cells: Default::default(),
                    },
                );
            }
        }
        let c = slots[0].cells[lane]
            .get_or_insert_with(|| {
                watch_fork();
                registry.acquire()
            })
            .clone();
        // Invariant F: the first slot changed.
        // (If `FAST` is gone, which only loom's thread-locals allow, the fast path is never
        // taken again on this thread.)
        let _ = FAST.try_with(|fast| fast.set(&slots[0]));
        Some(c)
    });
    drop(step);
    match cell {
        Ok(Some(c)) => f(&c),
        // The thread is exiting and its thread-locals are gone (or its slot list is borrowed by a
        // walk this call re-entered): borrow a cell for this one call.
        Ok(None) | Err(_) => {
            let c = {
                audit_exempt!();
                registry.acquire()
            };
            let r = f(&c);
            c.abandon();
            r
        }
    }
}

/// Runs `f` on each cell the calling thread holds in the arena `arena` (one per lane it used).
///
/// `f` runs while the thread's slot list is borrowed, under a [`Step`]: it must not call
/// `with_cell` (a re-entrant allocation through `GlobalArena` is sent to the system allocator).
pub(crate) fn for_each_thread_cell(arena: u64, mut f: impl FnMut(&ChunkCell)) {
    let _step = Step::enter();
    let _ = CELLS.try_with(|t| {
        // `try_borrow`: a walk that re-enters itself finds the list borrowed and skips it.
        if let Ok(slots) = t.slots.try_borrow() {
            for c in slots
                .iter()
                .filter(|s| s.arena == arena)
                .flat_map(|s| s.cells.iter().flatten())
            {
                f(c);
            }
        }
    });
}
