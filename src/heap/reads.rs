//! [`ReadSlots`]: the words of one chunk cell that tell other threads which header positions its
//! thread is reading: the check slot (a handle check, docs/metadata.md section 4), the read slots
//! (a read in progress, section 4.1), and the deferred list of blocks this cell freed while a
//! read slot held them.
//!
//! ## The read slots (docs/metadata.md, section 4.1)
//!
//! A read takes a free read slot of its thread's cell and swaps its handle's data offset in
//! (`SeqCst`), tests the start map and loads the header word (`SeqCst`), reads the bytes, and
//! stores 0 (`Release`). A free moves the header to DYING with a `SeqCst` CAS, then loads every
//! cell's read slots (`SeqCst`): one that holds the block makes the free *defer* the release (the
//! block stays DYING on the freeing cell's deferred list) instead of handing the bytes to the next
//! allocation. All of these are `SeqCst`, so they sit in one total order: either the reader's
//! header load comes after the CAS (it sees DYING, or a later word, and never reads the bytes),
//! or the reader's swap comes before the freer's loads, which then see the slot held (or a later
//! value of it, which only the reading thread writes, after its clear: the read is over).
//!
//! Only the cell's owner thread writes a slot with a value other than 0, and only into a slot that
//! holds 0; the reader that holds a slot is the only thread that clears it. So a slot needs no
//! bitmask: a slot holding 0 is free. (A cell can change hands while one of its slots is held: the
//! reader clears its slot wherever the cell has gone, and the new owner never takes a held slot.)
//!
//! ## Fork
//!
//! A child of `fork()` has only the forking thread; its parent's other threads hold their slots
//! forever. So each cell records the fork epoch (`crate::fork`) of the process whose thread owns
//! it: set when a thread takes the cell, and moved to the child's epoch, in the child, for every
//! cell the forking thread holds (`crate::cells`). A free looks only at the slots of cells of
//! the current epoch.
//!
//! ## Orderings
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | `check` | swap, then `sc_order` / load / store 0 | SeqCst / SeqCst / Release | the check-slot protocol (`CheckSlot` in `arena/check.rs`) |
//! | `pop` | swap, then `sc_order` / load / store 0 | SeqCst / SeqCst / Release | the pop-slot protocol (`crate::freelist`, module docs) |
//! | `slots` | swap / load (a free, a pass) / store 0 | SeqCst / SeqCst / Release | the read-slot protocol above; a load that sees the clear (or a later swap, in its release sequence) sees the read done |
//! | `slots`, choosing a free one | load | Relaxed | the owner wrote every non-zero value; a clear by the reader (its own thread) is sequenced before |
//! | `deferred`, `deferred_len` | load / store | Relaxed | owner-only; exclusive passes see them through the hand-over of `&mut` |
//! | `epoch` | load / store | Relaxed | written by the owner when it takes the cell (after the Acquire of `try_adopt`) and by the fork child handler (one thread); a stale epoch only skips a cell no thread of this process uses |

use crate::sync::{sc_order, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

/// Read slots per cell: reads nested deeper than this on one thread, in one arena and lane, are
/// `Error::Busy`.
pub(crate) const READ_SLOTS: usize = 4;
/// Blocks one cell may hold freed but unreleased because a read slot held them.
pub(crate) const DEFERRED: usize = 32;

/// A cell's check slot, read slots and deferred list (module docs).
#[derive(Default)]
pub(crate) struct ReadSlots {
    /// The read slots and the check slot, on their own cache line: every free and every
    /// coalescing pass loads them, and the owner's bump path must not share their line.
    shared: CachePadded<Shared>,
    /// Header offsets of blocks this cell freed (DYING) while a read slot held them, in
    /// `deferred[..deferred_len]`. Owner-only, `Relaxed`.
    deferred: [AtomicU64; DEFERRED],
    deferred_len: AtomicU64,
}

#[derive(Default)]
struct Shared {
    /// A handle check's header position (0: none).
    check: AtomicU64,
    /// The node a free-list pop of this thread may be reading (0: none): the pop-slot protocol
    /// (`crate::freelist`, module docs).
    pop: AtomicU64,
    /// The data offset of each read in progress (0: free).
    slots: [AtomicU64; READ_SLOTS],
    /// The fork epoch of the process whose thread owns the cell.
    epoch: AtomicU64,
}

/// A held read slot: cleared by [`ReadSlot::clear`].
#[derive(Clone, Copy)]
pub(crate) struct ReadSlot<'a>(&'a AtomicU64);

impl<'a> ReadSlot<'a> {
    /// The read is over: the slot is free again (`Release`: a free that loads the cleared slot
    /// sees the read's accesses done). Called by the thread that held it.
    #[inline]
    pub(crate) fn clear(self) {
        self.0.store(0, Ordering::Release);
    }

    /// The same slot with another lifetime.
    ///
    /// # Safety
    /// The cell the slot belongs to outlives `'b`.
    #[inline]
    pub(crate) unsafe fn extend<'b>(self) -> ReadSlot<'b> {
        // SAFETY: the caller's contract.
        ReadSlot(unsafe { &*(self.0 as *const AtomicU64) })
    }
}

impl ReadSlots {
    /// Holds the check slot at header position `hdr` (the check-slot protocol, `CheckSlot` in
    /// `arena/check.rs`). Owner only, one check at a time.
    #[inline]
    pub(crate) fn hold_check(&self, hdr: u64) {
        // SeqCst, then `sc_order`: one total order with the check's start-map loads and the
        // pass's start-map toggles and slot loads (`CheckSlot`).
        self.shared.check.swap(hdr, Ordering::SeqCst);
        sc_order();
    }

    /// Clears the check slot: the check is done.
    #[inline]
    pub(crate) fn clear_check(&self) {
        // Release: a pass that reads the cleared slot sees the check's accesses done.
        self.shared.check.store(0, Ordering::Release);
    }

    /// The cell's pop slot, for the owner's free-list pops (`FreeLists::pop`).
    #[inline]
    pub(crate) fn pop_slot(&self) -> &AtomicU64 {
        &self.shared.pop
    }

    /// Whether a pop of this cell's thread may be reading the node at `off`, for a coalescing
    /// pass, after its detach and its `sc_order`.
    #[inline]
    pub(crate) fn popping(&self, off: u64) -> bool {
        // SeqCst: the pass's side of the pop-slot protocol (`crate::freelist`, module docs).
        self.shared.pop.load(Ordering::SeqCst) == off
    }

    /// The header position this cell's check is reading (0: none), for a coalescing pass.
    #[inline]
    pub(crate) fn checking(&self) -> u64 {
        // SeqCst: the pass's side of the check-slot protocol (`CheckSlot`).
        self.shared.check.load(Ordering::SeqCst)
    }

    /// Holds a free read slot for a read of the block whose data starts at `data` (never 0), or
    /// `None` when every slot is held (reads nested [`READ_SLOTS`] deep). Owner only.
    #[inline]
    pub(crate) fn hold(&self, data: u64) -> Option<ReadSlot<'_>> {
        debug_assert_ne!(data, 0, "a read slot holding 0 is free");
        let slot = self.shared.slots.iter().find(|s| {
            // Relaxed: only this thread writes a non-zero value (module docs).
            s.load(Ordering::Relaxed) == 0
        })?;
        // SeqCst, then `sc_order`: the read-slot protocol (module docs).
        slot.swap(data, Ordering::SeqCst);
        sc_order();
        Some(ReadSlot(slot))
    }

    /// Whether a read in progress holds the block whose header is at `hdr` (or, for a coalescing
    /// pass, the header position `hdr`). `SeqCst` loads: the freer's and the pass's side of the
    /// protocols. Any thread.
    #[inline]
    pub(crate) fn reading(&self, hdr: u64) -> bool {
        sc_order();
        let data = hdr + crate::layout::WORD;
        self.shared
            .slots
            .iter()
            .any(|s| s.load(Ordering::SeqCst) == data)
    }

    /// Whether any read slot is held (a read of the owner thread is in progress). Owner only.
    pub(crate) fn holds_any(&self) -> bool {
        self.shared
            .slots
            .iter()
            .any(|s| s.load(Ordering::Relaxed) != 0)
    }

    /// The fork epoch of the process whose thread owns the cell.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.shared.epoch.load(Ordering::Relaxed)
    }

    /// A thread of the process of fork epoch `epoch` owns the cell now.
    #[inline]
    pub(crate) fn set_epoch(&self, epoch: u64) {
        self.shared.epoch.store(epoch, Ordering::Relaxed);
    }

    /// How many blocks the deferred list holds. Owner only.
    #[inline]
    pub(crate) fn deferred_len(&self) -> usize {
        self.deferred_len.load(Ordering::Relaxed) as usize
    }

    /// Puts the DYING block at `hdr` on the deferred list; `false` (nothing changed) when the list
    /// is full. Owner only.
    #[inline]
    pub(crate) fn defer(&self, hdr: u64) -> bool {
        let n = self.deferred_len();
        if n == DEFERRED {
            return false;
        }
        self.deferred[n].store(hdr, Ordering::Relaxed);
        self.deferred_len.store(n as u64 + 1, Ordering::Relaxed);
        true
    }

    /// Removes from the deferred list every block `release` takes (`release(hdr)` returns
    /// `true`); the others stay, in order. Owner only (or an exclusive pass).
    pub(crate) fn release_deferred(&self, mut release: impl FnMut(u64) -> bool) {
        let n = self.deferred_len();
        let mut kept = 0;
        for i in 0..n {
            let hdr = self.deferred[i].load(Ordering::Relaxed);
            if !release(hdr) {
                self.deferred[kept].store(hdr, Ordering::Relaxed);
                kept += 1;
            }
        }
        self.deferred_len.store(kept as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_slot_holds_one_position_at_a_time() {
        let c = ReadSlots::default();
        assert_eq!(c.checking(), 0);
        c.hold_check(4096);
        assert_eq!(c.checking(), 4096);
        c.clear_check();
        assert_eq!(c.checking(), 0);
    }

    #[test]
    fn read_slots_nest_to_their_number_and_free_on_clear() {
        let c = ReadSlots::default();
        let held: Vec<ReadSlot<'_>> = (0..READ_SLOTS as u64)
            .map(|i| c.hold(4104 + 8 * i).expect("a free slot"))
            .collect();
        assert!(c.hold(9000).is_none(), "a fifth nested read has no slot");
        assert!(c.reading(4096) && c.reading(4096 + 8 * (READ_SLOTS as u64 - 1)));
        assert!(!c.reading(4000));
        held[1].clear();
        assert!(!c.reading(4104), "a cleared slot holds nothing");
        let again = c.hold(5000).expect("the cleared slot is free again");
        assert!(c.reading(5000 - 8));
        again.clear();
    }

    #[test]
    fn the_deferred_list_keeps_what_is_not_released() {
        let c = ReadSlots::default();
        for i in 0..DEFERRED as u64 {
            assert!(c.defer(4096 + 16 * i));
        }
        assert!(!c.defer(1), "a full list takes nothing");
        assert_eq!(c.deferred_len(), DEFERRED);
        let mut released = Vec::new();
        c.release_deferred(|hdr| {
            let go = hdr % 32 == 0;
            if go {
                released.push(hdr);
            }
            go
        });
        assert_eq!(released.len(), DEFERRED / 2);
        assert_eq!(c.deferred_len(), DEFERRED / 2);
        let mut kept = Vec::new();
        c.release_deferred(|hdr| {
            kept.push(hdr);
            true
        });
        assert!(kept.iter().all(|h| h % 32 == 16) && kept.len() == DEFERRED / 2);
        assert_eq!(c.deferred_len(), 0);
    }
}
