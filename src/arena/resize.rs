//! Pointers and in-place resizing for the allocator interfaces. Resizing in place: the last block of
//! the calling thread's chunk grows or shrinks by moving the chunk's cursor, when invariant C
//! (`heap/cell.rs`) lets the cursor move; any other block shrinks by giving its cut-off tail back.

use super::Arena;
use crate::block::{self, Handle};
use crate::cells::with_cell;
use crate::freelist::{Prepared, Unlisted};
use crate::layout::{block_span, WORD};
use std::ptr::NonNull;

impl Arena {
    /// A pointer to byte `off` of the arena (for the allocator interfaces, which hand out
    /// pointers instead of handles).
    pub(crate) fn data_ptr(&self, off: u64) -> *mut u8 {
        self.inner.mem.ptr(off)
    }

    /// The word at arena offset `off` as the arena's atomics see it: under loom its side-table
    /// atomic, so a model's user write there is seen by the handle checks (`loom_hooks`).
    #[cfg(parena_loom)]
    pub(crate) fn word_at(&self, off: u64) -> &crate::sync::AtomicU64 {
        self.inner.mem.word(off)
    }

    /// The data offset of a pointer `allocate_ptr` returned.
    pub(crate) fn offset_of_ptr(&self, p: NonNull<u8>) -> u64 {
        (p.as_ptr().addr() - self.inner.mem.ptr(0).addr()) as u64
    }

    /// Whether `p` points into this arena's heap.
    pub(crate) fn owns(&self, p: *const u8) -> bool {
        let base = self.inner.mem.ptr(0).addr();
        let a = p.addr();
        a > base && ((a - base) as u64) < self.inner.heap_end()
    }

    /// The handle of the live block whose data starts at `off`, for the handle check that follows
    /// (`free_as`): the generation field of the header word there, not decoded (the check decodes
    /// the same word again, check code and all, and refuses a word that is not this block's).
    pub(crate) fn handle_at(&self, off: u64) -> Option<Handle> {
        if off < self.inner.geom.data_start + WORD
            || off % WORD != 0
            || off >= self.inner.heap_end()
        {
            return None;
        }
        let w = self.inner.header_acquire(off - WORD);
        Some(self.inner.handle(off, block::live_generation(w)))
    }

    /// Whether the disk is there for `len` bytes parena is about to copy to `p`, the start of a
    /// block of `block_len` bytes, on the caller's behalf (the allocator interfaces' move): in a
    /// sparse file arena a LARGE block's data pages are holes until written, so their disk is
    /// reserved first (docs/metadata.md, 12.2, "Sparse arenas"); `false` when the disk cannot
    /// hold them. Other blocks lie in chunks whose disk the chunk reservation reserved.
    #[cfg(feature = "allocator-api2")]
    pub(crate) fn disk_for_copy(&self, p: NonNull<u8>, block_len: usize, len: usize) -> bool {
        let inner = &*self.inner;
        inner.preallocate
            || (block_len as u64) < block::LARGE_MIN
            || inner
                .mem
                .reserve_disk(self.offset_of_ptr(p), len as u64)
                .is_ok()
    }

    /// Resizes a block in place from `old` to `new` bytes; `false` when it cannot.
    ///
    /// # Safety
    /// `p` came from `allocate_ptr` on this arena, holds `old` bytes, and the caller has it
    /// exclusively.
    pub(crate) unsafe fn resize_in_place(&self, p: NonNull<u8>, old: usize, new: usize) -> bool {
        crate::reentry::audit_op!();
        // A LARGE block (either length) is moved, not resized in place: its length lives in its
        // tail word, whose place is the span's end.
        if old == 0 || new == 0 || old as u64 >= block::LARGE_MIN || new as u64 >= block::LARGE_MIN
        {
            return false;
        }
        let inner = &*self.inner;
        let off = self.offset_of_ptr(p);
        let hdr = off - WORD;
        let (old_span, new_span) = match (block_span(old as u64), block_span(new as u64)) {
            (Some(a), Some(b)) => (a, b),
            _ => return false,
        };
        with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            // The cursor moves with the block's end only through the gate of invariant C
            // (`heap/cell.rs`): not when it stands on a former start (a rewound block's header
            // position, which a handle check may still be reading). Then a grow moves the block
            // and a shrink gives its tail to the lists below, with the cursor left where it is.
            if let Some(last) = cell.last_block(hdr, old_span) {
                if new_span > last.room() {
                    return false;
                }
                // A cut-off tail zeroed, the new length, then the cursor at the new end.
                // SAFETY: the block is published (`allocate_ptr`), the last of this thread's own
                // chunk through the gate of invariant C, and the caller holds it exclusively.
                unsafe {
                    inner
                        .heap()
                        .resize_last(last, old_span, new_span, new as u64)
                };
                return true;
            }
            if new_span > old_span {
                return false;
            }
            if new_span < old_span {
                // The tail becomes walkable free space first, then the shorter length commits,
                // and only then may another thread take the tail: a crash at any point leaves the
                // old length over a tail nobody was given, or the new one.
                let tail = hdr + new_span;
                let prepared = inner.lists.prepare(
                    &inner.mem,
                    &inner.geom,
                    tail,
                    old_span - new_span,
                    Unlisted::Filler,
                );
                // A tail too short to list stays behind the block as a filler: the hint that its
                // free takes it back (docs/metadata.md, 13.1).
                let behind = matches!(prepared, Prepared::Discard(_)) && inner.absorb_fillers;
                inner.heap().set_len(hdr, new as u64, behind);
                match prepared {
                    Prepared::List(generation) => {
                        inner
                            .lists
                            .push(&inner.mem, tail, old_span - new_span, generation)
                    }
                    Prepared::Discard(n) => inner.add_discarded(n),
                }
                return true;
            }
            inner.heap().set_len(hdr, new as u64, false);
            true
        })
    }
}
