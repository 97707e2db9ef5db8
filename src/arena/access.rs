//! Access through a handle: `free`, `read`, `read_with`, reader pins, `get`, `contains`, `len_of`
//! (each starts with the handle check in `check.rs`).

use super::check::{no_entry, CheckSlot, Live, Mode};
use super::{Arena, Inner};
use crate::block::{self, Handle, HeaderWord, LiveState};
use crate::cells::with_cell;
use crate::error::Error;
use crate::heap::reads::DEFERRED;
use crate::heap::{ChunkCell, LiveWord, ReadSlot};
use crate::layout::WORD;
use crate::sync::Ordering;

impl Arena {
    /// Frees the block `h` names.
    ///
    /// A block that a read on another thread (or an outer `read_with` on this one) is reading
    /// right now is not reused until that read is over: it is refused to every handle at once,
    /// and its bytes go back to the allocator when no read holds it (docs/metadata.md, 4.1).
    ///
    /// # Errors
    /// [`Error::Stale`] when `h` no longer names a live block; [`Error::DoubleFree`] when the
    /// block was already freed; [`Error::Busy`] while its [`BlockMut`](crate::BlockMut) is alive,
    /// or when this thread already holds the most freed blocks that reads still hold (32);
    /// [`Error::OutOfBounds`] for an offset outside the heap; [`Error::ReadOnly`]. Nothing
    /// changes when an error is returned.
    pub fn free(&self, h: Handle) -> Result<(), Error> {
        crate::reentry::audit_op!();
        self.free_as(h, Mode::Free)
    }

    /// `free` for a handle API call (`Mode::Free`) or for the allocator interfaces' own
    /// deallocation (`Mode::Foreign`).
    pub(crate) fn free_as(&self, h: Handle, mode: Mode) -> Result<(), Error> {
        let inner = &*self.inner;
        if inner.write_gate {
            inner.writable()?;
        }
        with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            // The allocator interfaces' own free holds no check slot: its caller promises a block
            // the arena handed out and has not freed, whose LIVE header no merge can absorb before
            // this free's CAS (docs/metadata.md, section 4). A handle may be stale: it holds one.
            let _slot = (mode != Mode::Foreign).then(|| CheckSlot::hold(cell, inner.offset_of(h)));
            let Live {
                hdr,
                word: mut cur,
                mut len,
                ..
            } = inner.live(h, mode)?;
            // A block of the allocator interfaces is FOREIGN, which every read refuses before it
            // reads a byte: no read slot can hold its bytes.
            let readable = mode != Mode::Foreign;
            let waiting = cell.reads().deferred_len();
            if readable && waiting == DEFERRED {
                inner.release_deferred(cell, false);
                if cell.reads().deferred_len() == DEFERRED {
                    return Err(Error::Busy {
                        offset: inner.offset_of(h),
                    });
                }
            }
            let w = LiveWord::at(&inner.mem, hdr);
            while let Err(now) = w.try_mark_dying(cur) {
                cur = now;
                inner.still_start(hdr, h)?;
                (len, _) = inner.check_live(hdr, cur, h, mode)?;
            }
            // The DYING CAS (SeqCst) came first; now the read slots (SeqCst loads): a read that
            // loads the header after the CAS refuses the block, and one that loaded it before
            // holds a slot these loads see (docs/metadata.md, 4.1). The reader count of the word
            // is not a reader: this build never raises it (recovery clears counts an older one
            // left).
            if readable && inner.being_read(hdr) {
                let kept = cell.reads().defer(hdr);
                debug_assert!(kept, "room on the deferred list was made before the CAS");
            } else {
                inner.release(cell, hdr, len, h.generation(), block::filler_behind(cur));
            }
            if readable && waiting > 0 {
                inner.release_deferred(cell, false);
            }
            Ok(())
        })
    }

    /// Copies bytes `offset..offset + buf.len()` of block `h` into `buf`.
    ///
    /// The block is pinned while it is copied, so a concurrent `free` waits for the copy to finish
    /// before the bytes can be reused: the copy never sees another block's bytes.
    ///
    /// # Errors
    /// As [`Arena::free`] for the handle, and [`Error::OutOfBounds`] when the range is not inside
    /// the block.
    pub fn read(&self, h: Handle, offset: usize, buf: &mut [u8]) -> Result<(), Error> {
        self.read_with(h, |bytes| {
            let end = (offset as u64).checked_add(buf.len() as u64);
            match end {
                Some(e) if e <= bytes.len() as u64 => {
                    buf.copy_from_slice(&bytes[offset..offset + buf.len()]);
                    Ok(())
                }
                _ => Err(Error::OutOfBounds {
                    offset: offset as u64,
                    len: buf.len() as u64,
                    limit: bytes.len() as u64,
                    region: crate::error::Region::Block,
                }),
            }
        })?
    }

    /// Runs `f` on the bytes of block `h`: a concurrent `free` of the block leaves its bytes
    /// alone until `f` returns, so `f` never sees another block's bytes.
    ///
    /// One header check for the whole block, where [`Arena::len_of`] followed by
    /// [`Arena::read`] takes two. The read holds one of its thread's four read slots while `f`
    /// runs (no write to the block's header, so readers of one block do not contend): reads may
    /// nest four deep on one thread (per arena and lane) and a fifth is [`Error::Busy`]. Keep `f`
    /// short: a block freed while `f` runs is reused only after it returns.
    ///
    /// # Errors
    /// As [`Arena::free`] for the handle, and [`Error::Busy`] for a read nested more than four
    /// deep.
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"hello")?;
    /// let mut out = Vec::new();
    /// arena.read_with(h, |bytes| out.extend_from_slice(bytes))?;
    /// assert_eq!(out, b"hello");
    /// arena.free(h)?;
    /// assert!(arena.read_with(h, |bytes| bytes.len()).is_err());
    /// # Ok::<(), parena::Error>(())
    /// ```
    #[inline]
    pub fn read_with<R>(&self, h: Handle, f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        let held = self.hold_read(h)?;
        // SAFETY: the block is live and published (checked by `hold_read`) and held by a read
        // slot until `held` drops (after `f` returns or unwinds): no `BlockMut` exists for it, a
        // `free` that runs meanwhile sees the slot and leaves the bytes alone (section 4.1 of
        // docs/metadata.md), and a read-only arena never frees or writes.
        let bytes = unsafe { self.inner.mem.slice(held.hdr + WORD, held.len) };
        Ok(f(bytes))
    }

    /// The read-slot protocol's read side (docs/metadata.md, 4.1): the handle's bounds, a read
    /// slot of the calling thread's cell (`SeqCst` swap), the start map (`SeqCst` loads), the
    /// header word (`SeqCst` load) and its check. The block's header offset and exact length,
    /// held until the returned value drops. A read-only arena holds nothing: nothing frees there.
    #[inline(always)]
    fn hold_read(&self, h: Handle) -> Result<ReadHold<'_>, Error> {
        let inner = &*self.inner;
        if inner.read_only {
            return self.read_unheld(h);
        }
        let hdr = inner.bounded(h)?;
        let slot = with_cell(inner.uid, self.lane(), &inner.cells, |cell| {
            // SAFETY: the cell belongs to `inner.cells`, which keeps every cell it handed out
            // until it is dropped with `inner`; `self` borrows `inner` for `'_`.
            cell.reads().hold(hdr + WORD).map(|s| unsafe { s.extend() })
        });
        let Some(slot) = slot else {
            return Err(nested_too_deep(hdr + WORD));
        };
        let mut held = ReadHold {
            slot: Some(slot),
            hdr,
            len: 0,
        };
        if !inner.start_map().is_start_checked(hdr) {
            return Err(no_entry(h));
        }
        #[cfg(feature = "testkit")]
        crate::hook::read_held(hdr + WORD);
        // SeqCst: after the slot's swap in the total order (section 4.1).
        let word = inner.mem.word(hdr).load(Ordering::SeqCst);
        let (len, _) = inner.check_live(hdr, word, h, Mode::Read)?;
        // A LARGE block's exact length is in its tail word, read while the slot holds the block.
        held.len = inner.exact_len(hdr, word, len)?;
        Ok(held)
    }

    /// [`Arena::hold_read`] of a read-only arena: nothing can free, merge or write a block of it
    /// (the shared file lock keeps every writer out, and this process refuses writes), so no slot.
    #[cold]
    #[inline(never)]
    fn read_unheld(&self, h: Handle) -> Result<ReadHold<'_>, Error> {
        let inner = &*self.inner;
        let Live { hdr, word, len, .. } = inner.live(h, Mode::Read)?;
        let len = inner.exact_len(hdr, word, len)?;
        Ok(ReadHold {
            slot: None,
            hdr,
            len,
        })
    }

    /// The bytes of block `h`, without copying.
    ///
    /// # Errors
    /// As [`Arena::read`].
    ///
    /// # Safety
    /// While the returned slice lives, the caller must make sure the block is not freed (by any
    /// thread, through any clone of the arena) and not written through [`Arena::get_mut`].
    ///
    /// ```
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// let h = arena.alloc_copy(b"abc")?;
    /// // SAFETY: nothing frees or writes `h` while `bytes` lives.
    /// let bytes = unsafe { arena.get(h)? };
    /// assert_eq!(bytes, b"abc");
    /// # Ok::<(), parena::Error>(())
    /// ```
    pub unsafe fn get(&self, h: Handle) -> Result<&[u8], Error> {
        let inner = &*self.inner;
        let Live { hdr, word, len, .. } = self.checked(h)?;
        // The caller keeps the block from being freed, so its tail word stays its own.
        let len = inner.exact_len(hdr, word, len)?;
        // SAFETY: the block is live and published; the caller keeps it from being freed or written.
        Ok(unsafe { inner.mem.slice(hdr + WORD, len) })
    }

    /// The bytes of block `h`, mutably, without copying.
    ///
    /// # Errors
    /// As [`Arena::read`], and [`Error::ReadOnly`].
    ///
    /// # Safety
    /// While the returned slice lives, the caller must make sure no other reference to the block's
    /// bytes exists or is created (no `get`, `get_mut`, `read`) and the block is not freed.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get_mut(&self, h: Handle) -> Result<&mut [u8], Error> {
        let inner = &*self.inner;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        let Live { hdr, word, len, .. } = self.checked(h)?;
        // The caller keeps the block from being freed, so its tail word stays its own.
        let len = inner.exact_len(hdr, word, len)?;
        // SAFETY: live and published; exclusivity is the caller's contract.
        Ok(unsafe { inner.mem.slice_mut(hdr + WORD, len) })
    }

    /// Whether `h` names a live, published block.
    pub fn contains(&self, h: Handle) -> bool {
        self.checked(h).is_ok()
    }

    /// The length of block `h`.
    ///
    /// # Errors
    /// As [`Arena::read`].
    pub fn len_of(&self, h: Handle) -> Result<usize, Error> {
        let l = self.checked(h)?;
        if block::is_large(l.word) {
            // The exact length is in the block's tail word: read it under a pin, so the block
            // cannot be freed and its bytes reused while the word is read.
            return self.read_with(h, <[u8]>::len);
        }
        Ok(l.len as usize)
    }
}

impl Inner {
    /// Whether a read in progress, on any thread of this process, holds the block at `hdr`: the
    /// freer's side of the read-slot protocol (`SeqCst` loads of every cell's read slots). A cell
    /// whose owner was a thread of an ancestor process (its fork epoch is not ours) has no reader
    /// here (`heap::reads`, "Fork").
    pub(super) fn being_read(&self, hdr: u64) -> bool {
        let epoch = crate::fork::epoch();
        self.cells.fold(false, |any, c| {
            any || (c.reads().epoch() == epoch && c.reads().reading(hdr))
        })
    }

    /// Releases the blocks on `cell`'s deferred list that no read holds any more (all of them
    /// when `exclusive`: no read can run). A listed block is DYING and was freed by this cell;
    /// a word there that is not (a damaged heap) leaves the list and stays as it is.
    pub(super) fn release_deferred(&self, cell: &ChunkCell, exclusive: bool) {
        cell.reads().release_deferred(|hdr| {
            if !exclusive && self.being_read(hdr) {
                return false;
            }
            // Relaxed: this cell stored DYING, and nothing else changes a DYING word.
            let w = self.mem.word(hdr).load(Ordering::Relaxed);
            if let HeaderWord::Live {
                len,
                generation,
                state: LiveState::Dying,
                ..
            } = block::decode(w)
            {
                self.release(cell, hdr, len, generation, block::filler_behind(w));
            }
            true
        });
    }
}

/// The error of a read nested deeper than its thread has read slots.
#[cold]
#[inline(never)]
fn nested_too_deep(data: u64) -> Error {
    Error::Busy { offset: data }
}

/// A read in progress, from `Arena::hold_read`: the read slot it holds (none on a read-only
/// arena), cleared on drop (also when the reader unwinds).
struct ReadHold<'a> {
    slot: Option<ReadSlot<'a>>,
    hdr: u64,
    len: u64,
}

impl Drop for ReadHold<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.clear();
        }
    }
}
