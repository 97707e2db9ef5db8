//! A thread's chunk: bumping inside it, reserving new chunks, large blocks, giving tails back.

use super::Inner;
use crate::block::{self, LiveState};
use crate::bump::ChunkCell;
use crate::format::{OFF_BUMP, OFF_HIGH_WATER};
use crate::freelist::Unlisted;
use crate::layout::{align_up, WORD};
use crate::sync::Ordering;
impl Inner {
    /// Bumps inside the cell's chunk with any alignment; `None` when it does not fit.
    pub(super) fn bump_in_cell(
        &self,
        cell: &ChunkCell,
        len: u64,
        span: u64,
        align: u64,
    ) -> Option<(u64, u32)> {
        let cur = cell.cur.load(Ordering::Relaxed);
        let end = cell.end.load(Ordering::Relaxed);
        if cur == 0 {
            return None;
        }
        let hdr = align_up(cur + WORD, align)? - WORD;
        if hdr.checked_add(span)? > end {
            return None;
        }
        if hdr > cur {
            self.b
                .word(cur)
                .store(block::pad(hdr - cur), Ordering::Relaxed);
            self.add_discarded(hdr - cur);
        }
        let gen = cell.gen.load(Ordering::Relaxed) as u32;
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        cell.cur.store(hdr + span, Ordering::Relaxed);
        Some((hdr, gen))
    }

    /// Reserves whole chunks covering at least `bytes` from the global bump offset, zeroing any
    /// part that was written before. `None` when the main memory cannot hold them.
    ///
    /// Chunks start on the fixed grid `data_start + k * chunk`: the heap walk steps over an unused
    /// tail to the next grid line. The bump offset is off the grid only when the capacity was
    /// grown from a value that was not on it; the bytes from there to the next line stay a gap.
    pub(super) fn reserve(&self, bytes: u64) -> Option<(u64, u64)> {
        let chunk = self.g.chunk();
        let n = align_up(bytes, chunk)?;
        let bump = self.b.word(OFF_BUMP);
        let mut cur = bump.load(Ordering::Relaxed);
        let (start, end) = loop {
            let start = self.g.data_start + align_up(cur - self.g.data_start, chunk)?;
            if start >= self.capacity {
                return None;
            }
            let end = start.checked_add(n)?.min(self.capacity);
            if end - start < bytes {
                return None;
            }
            // Relaxed: the RMW order on `bump` alone makes reservations disjoint; see module docs.
            match bump.compare_exchange_weak(cur, end, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break (start, end),
                Err(now) => cur = now,
            }
        };
        let hw = self.b.word(OFF_HIGH_WATER).load(Ordering::Relaxed);
        if cur < hw {
            let z_end = end.min(hw);
            // Chunk starts first (and the gap before the first one): if we crash part-way, every
            // chunk of the range reads as unused.
            self.b.word(cur).store(0, Ordering::Relaxed);
            let mut c = start;
            while c < z_end {
                self.b.word(c).store(0, Ordering::Relaxed);
                c += chunk;
            }
            // SAFETY: `cur..end` was reserved by our CAS: no other thread touches it.
            unsafe { self.b.zero(cur, z_end - cur) };
        }
        Some((start, end))
    }

    /// A block larger than a quarter chunk: whole chunks straight from the bump offset.
    pub(super) fn alloc_large(&self, len: u64, span: u64, align: u64) -> Option<(u64, u32)> {
        let slack = if align > WORD { align } else { 0 };
        let (start, end) = self.reserve(span + slack)?;
        let hdr = align_up(start + WORD, align)? - WORD;
        if hdr > start {
            self.b
                .word(start)
                .store(block::pad(hdr - start), Ordering::Relaxed);
            self.add_discarded(hdr - start);
        }
        let gen = self.fresh_gen(true);
        self.b.word(hdr).store(
            block::live(len, gen, LiveState::Pending, 0),
            Ordering::Relaxed,
        );
        let tail = hdr + span;
        self.give_back_zeroed(tail, end - tail);
        Some((hdr, gen))
    }

    /// Gives back `off..off + len`, which is zero and ends at a chunk boundary (or the capacity):
    /// listed when worth it, otherwise left as a gap that walks skip.
    pub(super) fn give_back_zeroed(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let unlisted = self
            .lists
            .give_back(&self.b, &self.g, off, len, Unlisted::Gap);
        self.add_discarded(unlisted);
    }

    /// Gives up the cell's chunk: its unused tail goes back (listed, or a gap).
    pub(super) fn retire(&self, cell: &ChunkCell) {
        let cur = cell.cur.load(Ordering::Relaxed);
        let end = cell.end.load(Ordering::Relaxed);
        if cur != 0 {
            self.give_back_zeroed(cur, end - cur);
        }
        cell.cur.store(0, Ordering::Relaxed);
        cell.end.store(0, Ordering::Relaxed);
        cell.start.store(0, Ordering::Relaxed);
    }
}
