//! A sparse file arena's disk reservations (`Options::preallocate(false)`, docs/metadata.md 12.2,
//! "Sparse arenas"): the pages the allocator is about to write get their disk blocks first, so a
//! full disk is `Error::NoSpace` for that allocation, never a `SIGBUS`. For a chunk and a LARGE
//! block before the bump offset moves over them ([`Heap::reserve`]), and for a carve from the
//! free lists ([`Heap::reserve_for_carve`]).

use super::chunks::{large_header, Heap};
use super::mapgeom::WORD_COVERS;
use crate::error::Error;
use crate::layout::WORD;
use crate::sync::StdOrdering;

/// What the allocator writes in a reservation (see [`Heap::reserve_disk`]).
#[derive(Clone, Copy)]
pub(super) enum Writes {
    /// A chunk for a cell: anywhere in it.
    Chunk,
    /// A LARGE block spanning `span` with alignment `align`: its first and last pages.
    Large { span: u64, align: u64 },
}

/// Heap bytes whose map words a sparse arena reserves at a time: 16 pages of each map's words
/// (4 MiB of heap), so the four maps cost four calls per 64 chunks of 64 KiB, and at most 256 KiB
/// of map pages are reserved ahead of use.
const MAP_WINDOW: u64 = 16 * 4096 / WORD * WORD_COVERS;

impl Heap<'_> {
    /// A sparse file arena's disk reservation for the chunks `start..end` that the bump offset,
    /// now at `cur`, is about to hand out: the pages the allocator writes get their disk blocks
    /// (docs/metadata.md, 12.2, "Sparse arenas").
    ///
    /// - A cell's chunk: all of `cur..end` (the allocator bumps headers anywhere in it), one call;
    ///   and the four maps' pages for the heap up to the next 4 MiB line past `end`, once for
    ///   those 4 MiB (the backing's map mark).
    /// - A LARGE block: the pages of its header (and the filler in front), of its tail word and of
    ///   the chunk tail past it (given back, so a later carve may write anywhere in it), with the
    ///   maps' pages for those; and whatever the reservation zeroes below the high-water mark.
    ///   Its data pages are the user's and stay a hole until written.
    pub(super) fn reserve_disk(
        &self,
        cur: u64,
        start: u64,
        end: u64,
        writes: Writes,
    ) -> Result<(), Error> {
        match writes {
            Writes::Chunk => {
                self.mem.reserve_disk(cur, end - cur)?;
                let mark = self.mem.map_disk_mark();
                // Relaxed: a hint; a stale value only reserves a page again. Below the high-water
                // mark (memory an exclusive pass gave back) the mark is not trusted: the range
                // may have been a LARGE block's interior, whose map pages were never reserved.
                let line = cur / MAP_WINDOW * MAP_WINDOW;
                let from = if cur < self.high_water() {
                    line
                } else {
                    mark.load(StdOrdering::Relaxed).max(line)
                };
                if from < end {
                    let to = end.div_ceil(MAP_WINDOW) * MAP_WINDOW;
                    self.reserve_map_disk(from, to)?;
                    mark.fetch_max(to, StdOrdering::Relaxed);
                }
                Ok(())
            }
            Writes::Large { span, align } => {
                let hw = self.high_water();
                if cur < hw {
                    self.mem.reserve_disk(cur, end.min(hw) - cur)?;
                }
                let Some(hdr) = large_header(start, align) else {
                    return Ok(());
                };
                let head = start..hdr + WORD;
                let tail = (hdr + span - WORD).min(end)..end;
                for r in [head, tail] {
                    self.mem.reserve_disk(r.start, r.end - r.start)?;
                    self.reserve_map_disk(r.start, r.end)?;
                }
                Ok(())
            }
        }
    }

    /// A sparse file arena's disk under a carve from a listed segment: the heap's `from..to` (the
    /// filler in front, the block, the remainder's header and span word) and the four maps' words
    /// for it. A listed segment may lie where no disk was ever reserved: a LARGE block's data
    /// pages stay a hole until written, and a freed one goes to the lists as it is (a merged run
    /// may cover several). The carve writes all of `from..to` (it zeroes the block), so without
    /// this a full disk would be a SIGBUS, not [`Error::NoSpace`]. Pages that have their blocks
    /// already cost the call and nothing else. A no-op for every other backing.
    pub(crate) fn reserve_for_carve(&self, from: u64, to: u64) -> Result<(), Error> {
        if !self.sparse || from >= to {
            return Ok(());
        }
        self.mem.reserve_disk(from, to - from)?;
        self.reserve_map_disk(from, to)
    }

    /// Reserves the disk under the four maps' words covering the heap's `from..to`.
    fn reserve_map_disk(&self, from: u64, to: u64) -> Result<(), Error> {
        for (off, len) in self.maps.word_ranges(from, to) {
            self.mem.reserve_disk(off, len)?;
        }
        Ok(())
    }
}
