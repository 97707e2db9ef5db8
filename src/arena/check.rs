//! The one handle check: from a handle to the live block it names, or the error that says why
//! not (`Inner::live`), and the check slot that keeps a coalescing pass from merging away the
//! position a check is reading.

use super::{Arena, Inner};
use crate::block::{self, Handle, HeaderWord, LiveState};
use crate::cells::with_cell;
use crate::error::Error;
use crate::heap::ChunkCell;
use crate::layout::{block_span, WORD};
use crate::sync::Ordering;

impl Arena {
    /// The handle check for a read that does not pin (`len_of`, `contains`, `get`, the raw API):
    /// [`Inner::live`] with the calling thread's check slot held while it reads the header.
    pub(super) fn checked(&self, h: Handle) -> Result<Live, Error> {
        let inner = &*self.inner;
        if inner.read_only || !inner.coalesce_on {
            // Nothing merges a start away: no check slot needed (see `CheckSlot`).
            return inner.live(h, Mode::Read);
        }
        with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            let _slot = CheckSlot::hold(cell, inner.offset_of(h));
            inner.live(h, Mode::Read)
        })
    }
}

/// The calling thread's check slot, holding the header position a handle check reads
/// (docs/metadata.md, section 4). The check swaps the position in (`SeqCst`), then tests the
/// start map (`SeqCst` loads), then reads or changes the header word; a coalescing pass toggles
/// absorbed starts off (`SeqCst`), then loads every slot (`SeqCst`) and leaves a slot's position
/// unmerged. All four in one total order: either the pass sees the slot, or the check sees the
/// start gone and never touches the word. So a position a check is reading never becomes bytes
/// of a block someone writes. Cleared on drop (`Release`: a pass that reads the cleared slot
/// sees the check's accesses done).
pub(super) struct CheckSlot<'a>(&'a ChunkCell);

impl<'a> CheckSlot<'a> {
    #[inline]
    pub(super) fn hold(cell: &'a ChunkCell, data: u64) -> CheckSlot<'a> {
        // `hold_check`: the SeqCst swap, then `sc_order`.
        cell.reads().hold_check(data.wrapping_sub(WORD));
        CheckSlot(cell)
    }
}

impl Drop for CheckSlot<'_> {
    #[inline]
    fn drop(&mut self) {
        // `clear_check`: the Release store of 0.
        self.0.reads().clear_check();
    }
}

/// What a handle check is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A read, a pin, a length: the block must be PUBLISHED.
    Read,
    /// `free` through a handle.
    Free,
    /// The allocator interfaces' own deallocation: the one path that may free a FOREIGN block.
    Foreign,
}

/// A live block a handle names, as [`Inner::live`] found it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    /// Offset of the block's header word.
    pub hdr: u64,
    /// The header word as loaded.
    pub word: u64,
    /// The block's length in bytes; for a LARGE block the most it can hold (its exact length is
    /// in its tail word: [`Inner::exact_len`]).
    pub len: u64,
}

impl Inner {
    /// The opening of every handle check: locate the header `h` names, load it with Acquire,
    /// check that it is the live block `h` names (`mode` selects the error for a block already
    /// being freed: [`Mode::Read`] does not free).
    ///
    /// Inlined into every caller, with the errors built out of line: a call that returned the
    /// `Result` through the stack read it back across two stores, a store-forwarding stall that
    /// cost more than the check itself (docs/performance.md, "The read path").
    #[inline(always)]
    pub(super) fn live(&self, h: Handle, mode: Mode) -> Result<Live, Error> {
        let hdr = self.locate(h)?;
        let word = self.header_acquire(hdr);
        let (len, _readers) = self.check_live(hdr, word, h, mode)?;
        Ok(Live { hdr, word, len })
    }

    /// The exact length of the live block at `hdr` whose header word is `w` and whose length
    /// field says `len`: `len` itself, or for a LARGE block the length its tail word records.
    /// The caller keeps the block from being released while this reads the tail (a pin, a
    /// read-only arena, or an `unsafe` caller's promise). A tail that is not this block's is
    /// [`Error::Corrupt`].
    #[inline]
    pub(crate) fn exact_len(&self, hdr: u64, w: u64, len: u64) -> Result<u64, Error> {
        if !block::is_large(w) {
            return Ok(len);
        }
        let HeaderWord::Live { generation, .. } = block::decode(w) else {
            return Err(Error::Corrupt {
                offset: hdr,
                word: w,
            });
        };
        // `check_live` checked that `hdr + len + 16`, the span's end, is inside the heap. The
        // tail's Relaxed load: it was stored before the Release that published the block, and
        // the caller's header load or pin was Acquire.
        let t = block::tail_word(&self.mem, hdr, len);
        block::large_len(t, generation, len).ok_or(Error::Corrupt {
            offset: hdr + len + WORD,
            word: t,
        })
    }

    /// The header word at `hdr`, loaded for a handle check.
    #[inline]
    pub(super) fn header_acquire(&self, hdr: u64) -> u64 {
        // Acquire: pairs with the Release publish in BlockMut's drop, so the bytes of a block
        // seen PUBLISHED are visible; and with the Release fence in `release`, so a thread that
        // sees a block gone also sees what happened before its free.
        self.mem.word(hdr).load(Ordering::Acquire)
    }

    /// The header offset a handle names, if an entry starts there: the start map (outside the
    /// heap's user bytes) must record one before the word is read at all, so an offset that user
    /// bytes could make look like a header is refused whatever those bytes say.
    #[inline(always)]
    pub(super) fn locate(&self, h: Handle) -> Result<u64, Error> {
        let hdr = self.bounded(h)?;
        if !self.start_map().is_start_checked(hdr) {
            return Err(no_entry(h));
        }
        Ok(hdr)
    }

    /// The header offset `h` would have, if its block can lie in the allocated heap (the first
    /// half of [`Inner::locate`]: no map test yet). Never 0.
    #[inline(always)]
    pub(super) fn bounded(&self, h: Handle) -> Result<u64, Error> {
        let data = self.offset_of(h);
        let bump = self.handle_limit();
        if data < self.geom.data_start + WORD || data + WORD > bump {
            return Err(handle_out_of_bounds(data, bump));
        }
        Ok(data - WORD)
    }

    /// The end of what a handle may name: the bump offset, and never past the backing's length
    /// as this thread has seen it. While a growable arena grows, a thread may load a bump offset
    /// past the end of the map it has seen grow (both `Relaxed`; docs/metadata.md 12.6, gap 4):
    /// a genuine handle never lies there (it reached this thread after its allocation), and a
    /// forged one is then refused as out of bounds instead of reaching an accessor's bound.
    #[inline(always)]
    pub(super) fn handle_limit(&self) -> u64 {
        self.bump().min(self.mem.len())
    }

    /// The start-map test of [`Inner::locate`] again, for a handle check that goes round once
    /// more (a pin waiting out a full reader count, a CAS that lost to another change of the
    /// header word): every round tests the map before it uses the header word again, so no round
    /// rests on a test an earlier round made, however long ago.
    #[inline]
    pub(super) fn still_start(&self, hdr: u64, h: Handle) -> Result<(), Error> {
        if self.start_map().is_start_checked(hdr) {
            Ok(())
        } else {
            Err(no_entry(h))
        }
    }

    /// Checks that header word `w` at `hdr` is the live block `h` names; returns its length and
    /// readers. `mode` selects the error for a block already being freed. A block of the
    /// allocator interfaces is [`Error::Foreign`] to a handle of its own generation; to any other
    /// handle it is a block that handle does not name ([`Error::Stale`]).
    #[inline(always)]
    pub(super) fn check_live(
        &self,
        hdr: u64,
        w: u64,
        h: Handle,
        mode: Mode,
    ) -> Result<(u64, u64), Error> {
        // The common case, decided with one mask compare and the check code: a small PUBLISHED
        // block of the handle's generation, FOREIGN for the allocator interfaces' own free and
        // not FOREIGN otherwise. `check_live_full` answers the same for it in its mode; it
        // decodes every other word (a LARGE block, or the error).
        let foreign = mode == Mode::Foreign;
        if let Some((len, readers)) = block::published_small(w, h.generation(), foreign) {
            // The span bound of `check_live_full`, with `layout::block_span`: a small length
            // always has a span, and `hdr` (below `bump`) plus a span under 1 MiB cannot overflow.
            if block_span(len).is_some_and(|span| hdr + span <= self.handle_limit()) {
                return Ok((len, readers));
            }
        }
        self.check_live_full(hdr, w, h, mode)
    }

    /// [`Inner::check_live`] of any word: decoded in full.
    #[cold]
    #[inline(never)]
    fn check_live_full(
        &self,
        hdr: u64,
        w: u64,
        h: Handle,
        mode: Mode,
    ) -> Result<(u64, u64), Error> {
        let freeing = mode != Mode::Read;
        match block::decode(w) {
            HeaderWord::Live {
                len,
                generation,
                state,
                readers,
            } if generation == h.generation() => {
                if block::is_foreign(w) && mode != Mode::Foreign {
                    return Err(Error::Foreign { offset: hdr + WORD });
                }
                let span_ok = block_span(len)
                    .and_then(|s| hdr.checked_add(s))
                    .is_some_and(|e| e <= self.handle_limit());
                if !span_ok || len == 0 {
                    return Err(Error::Corrupt {
                        offset: hdr,
                        word: w,
                    });
                }
                match state {
                    LiveState::Published => Ok((len, readers)),
                    LiveState::Pending | LiveState::Reserved => {
                        Err(Error::Busy { offset: hdr + WORD })
                    }
                    LiveState::Dying if freeing => Err(Error::DoubleFree { offset: hdr + WORD }),
                    LiveState::Dying => Err(Error::Stale {
                        expected: h.generation(),
                        found: generation,
                    }),
                }
            }
            HeaderWord::Live { generation, .. } => Err(Error::Stale {
                expected: h.generation(),
                found: generation,
            }),
            HeaderWord::Free { generation, .. }
                if freeing
                    && u64::from(generation)
                        == u64::from(block::next_gen(h.generation())) & block::FREE_GEN_MASK =>
            {
                Err(Error::DoubleFree { offset: hdr + WORD })
            }
            HeaderWord::Free { generation, .. } => Err(Error::Stale {
                expected: h.generation(),
                found: generation,
            }),
            _ => Err(Error::Stale {
                expected: h.generation(),
                found: 0,
            }),
        }
    }
}

/// The error of a handle whose offset lies outside the allocated heap (`bump` its end).
#[cold]
#[inline(never)]
fn handle_out_of_bounds(data: u64, bump: u64) -> Error {
    Error::OutOfBounds {
        offset: data,
        len: 0,
        limit: bump,
        region: crate::error::Region::Handle,
    }
}

/// The error of a handle whose header position the start map does not record as an entry's start.
#[cold]
#[inline(never)]
pub(super) fn no_entry(h: Handle) -> Error {
    Error::Stale {
        expected: h.generation(),
        found: 0,
    }
}
