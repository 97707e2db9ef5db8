//! Flush, verify, compact, image, close and the close protocol on drop.

use super::{Arena, Inner};
#[cfg(feature = "testkit")]
use crate::backing::SimDisk;
use crate::block::{self, Handle, LiveState};
use crate::cells::for_each_thread_cell;
use crate::error::Error;
use crate::format::{
    self, RawHeader, HEADER_SIZE, OFF_BUMP, OFF_CAPACITY, OFF_DISCARDED, OFF_HIGH_WATER, OFF_STATE,
    OFF_STATE_CHECKSUM, STATE_CLEAN,
};
use crate::heap;
use crate::layout::WORD;
use crate::recovery::{self, Report};
use crate::reentry::audit_op;
use crate::sync::{lock, Ordering};

/// One live block, as [`Arena::live_blocks`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LiveBlock {
    /// Its handle (offset and generation).
    pub handle: Handle,
    /// Its length in bytes, as allocated.
    pub len: u64,
    /// Its `BlockMut` was never dropped: the writer had not finished (or had not published it)
    /// when the arena was closed or the process died. Its bytes are whatever the writer got to.
    pub pending: bool,
    /// The allocator interfaces (`Allocator`, `GlobalArena`) handed it out as a pointer. `free`
    /// refuses its handle ([`Error::Foreign`]); when no pointer to it is left (after a crash,
    /// none is), [`Arena::free_orphan`] frees it.
    pub foreign: bool,
}
impl Arena {
    /// Makes everything written so far durable: the heap and its start map, then a copy of the
    /// start map and a meta slot naming it (docs/metadata.md, section 5). Every block allocated
    /// before the call and not freed after it survives a power cut from then on, at the same
    /// handle. A no-op for heap and anonymous arenas.
    ///
    /// # Errors
    /// [`Error::Io`] from `msync`.
    pub fn flush(&self) -> Result<(), Error> {
        audit_op!();
        let inner = &*self.inner;
        if inner.forked_file() {
            return Err(Error::Forked);
        }
        if inner.thread_cache && !inner.read_only {
            // The calling thread's cached blocks go to the shared lists, so what is flushed
            // lists them.
            let mut drained = Ok(());
            for_each_thread_cell(inner.uid, |cell| {
                if let Err(e) = inner.drain_cache(cell) {
                    drained = Err(e);
                }
            });
            drained?;
        }
        inner.flush_layout()
    }

    /// Makes bytes `offset..offset + len` of the arena durable (not the header; see
    /// [`Arena::flush_header`]). Bytes only: a block allocated since the last [`Arena::flush`] is
    /// not protected from a power cut by a range flush of its bytes (its place in the layout is
    /// durable only once a full `flush` has returned). A write-ahead log therefore allocates a
    /// segment, calls `flush()` once, and then appends into it with `flush_range`.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the heap's end ([`Stats::heap_end`](crate::Stats::heap_end):
    /// the start and flush maps after it are [`Arena::flush`]'s to write); [`Error::Io`].
    pub fn flush_range(&self, offset: u64, len: u64) -> Result<(), Error> {
        self.inner.check_range(offset, len)?;
        self.inner.mem.flush(offset, len)
    }

    /// Makes the header (bump offset, free lists, roots) and the reserved area durable.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn flush_header(&self) -> Result<(), Error> {
        self.inner.mem.flush(0, self.inner.geom.data_start)
    }

    /// Starts write-back of the whole arena and returns without waiting (`MS_ASYNC`).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn flush_background(&self) -> Result<(), Error> {
        self.inner.mem.flush_async(0, self.inner.bump())
    }

    /// Starts write-back of `offset..offset + len` without waiting.
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] past the heap's end, as [`Arena::flush_range`]; [`Error::Io`].
    pub fn flush_range_background(&self, offset: u64, len: u64) -> Result<(), Error> {
        self.inner.check_range(offset, len)?;
        self.inner.mem.flush_async(offset, len)
    }

    /// Walks the heap and the free lists and reports what it found, without changing anything
    /// (but for the blocks freed while a read held them, which every exclusive pass gives back
    /// first: no read can run now).
    /// The header is checked too: damage the open found (a CLEAN state over words that fail their
    /// checksum), and, unless recovery is pending, each meta slot (valid or never written) and
    /// the words parena keeps zero.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist (the walk needs the heap to hold still).
    pub fn verify(&mut self) -> Result<Report, Error> {
        let inner = self.exclusive()?;
        let mut r = recovery::verify(
            &inner.mem,
            &inner.geom,
            &inner.lists,
            inner.bump(),
            inner.heap_end(),
        );
        let mut header = inner.header_damage.clone();
        // A dirty file opened read-only may hold a meta slot a power cut tore in a flush: only a
        // header a clean close or a recovery left behind is held to the slot check.
        let pending = inner.recovery_pending;
        let faults = inner
            .header_snapshot()
            .faults()
            .into_iter()
            .filter(|f| !(pending && matches!(f, format::HeaderFault::MetaSlot { .. })));
        header.extend(faults.map(recovery::Problem::of_header));
        r.problems.splice(0..0, header);
        Ok(r)
    }

    /// Every live block, in heap order: its handle, length and whether it is still pending (its
    /// `BlockMut` was out when the arena was last closed or crashed, or is out now on this
    /// process — impossible here, since this needs the only clone). After a crash this is how an
    /// engine finds blocks it allocated but never linked into its structures (orphans), and how a
    /// tool dumps an arena's contents.
    ///
    /// ```
    /// let mut arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let a = arena.alloc_copy(b"one")?;
    /// let b = arena.alloc_copy(b"two")?;
    /// arena.free(a)?;
    /// let live = arena.live_blocks()?;
    /// assert_eq!(live.len(), 1);
    /// assert_eq!((live[0].handle, live[0].len, live[0].pending), (b, 3, false));
    /// # Ok::<(), parena::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist (the walk needs the heap to hold still);
    /// [`Error::Corrupt`] when the heap cannot be walked.
    pub fn live_blocks(&mut self) -> Result<Vec<LiveBlock>, Error> {
        let inner = self.exclusive()?;
        let mut out = Vec::new();
        recovery::walk(&inner.mem, &inner.geom, inner.bump(), |r| {
            if let recovery::Region::Live {
                off,
                len,
                generation,
                state: state @ (LiveState::Published | LiveState::Pending),
                ..
            } = r
            {
                let foreign = block::is_foreign(inner.mem.word(off).load(Ordering::Relaxed));
                out.push(LiveBlock {
                    handle: inner.handle(off + WORD, generation),
                    len,
                    pending: state == LiveState::Pending,
                    foreign,
                });
            }
        })
        .map_err(recovery::Problem::into_error)?;
        Ok(out)
    }

    /// Frees a block [`live_blocks`](Arena::live_blocks) lists that nothing will free otherwise:
    /// an orphan a crash left behind, the allocator interfaces' blocks included (their pointers
    /// do not survive the process, and `free` refuses their handles by design). Needs the only
    /// clone, so no `&Arena` lent to an allocator interface (and no `Box` or collection holding
    /// one) is alive while it runs.
    ///
    /// ```
    /// let mut arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let orphan = arena.alloc_copy(b"nobody links to me")?;
    /// for b in arena.live_blocks()? {
    ///     arena.free_orphan(b.handle)?;
    /// }
    /// assert!(!arena.contains(orphan));
    /// # Ok::<(), parena::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; otherwise those of [`free`](Arena::free) but
    /// [`Error::Foreign`].
    pub fn free_orphan(&mut self, h: Handle) -> Result<(), Error> {
        self.exclusive()?;
        self.free_as(h, super::Mode::Foreign)
    }

    /// Frees every block at once and moves the bump offset back to the start of the heap, like
    /// `bumpalo`'s `reset`: the arena is empty afterwards, with its roots and reserved area as
    /// they were. The old heap is zeroed, so no old header survives and every old handle is
    /// refused (`Stale` or `OutOfBounds`) until a new block starts at its offset; a new block there
    /// takes a generation from the arena's counter, which only moves forward.
    ///
    /// Costs a write of the heap used so far. A file arena's clear is durable when it returns
    /// (one `msync` of a flush map and one of the header page); a crash or power cut during it
    /// recovers either every block as the last flush left it or an empty heap, never a mix.
    ///
    /// ```
    /// let mut arena = parena::Options::new().capacity(1 << 20).heap()?;
    /// let old = arena.alloc_copy(b"gone after clear")?;
    /// arena.clear()?;
    /// assert!(arena.read_with(old, |_| ()).is_err());
    /// assert_eq!(arena.stats().allocated, 0);
    /// # Ok::<(), parena::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::ReadOnly`]; [`Error::Io`] from `msync`:
    /// then every block is still there at its handle, but the free lists were emptied (their
    /// segments come back with the next `compact()` or recovery), and until the next successful
    /// `flush()` a power cut may recover either the old layout or the empty one.
    pub fn clear(&mut self) -> Result<(), Error> {
        let inner = self.exclusive()?;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        inner.return_all_chunks();
        inner.lists.clear_all(&inner.mem);
        let start = inner.geom.data_start;
        let bump = inner.bump();
        let discarded = inner.mem.word(OFF_DISCARDED).load(Ordering::Relaxed);
        inner.mem.word(OFF_BUMP).store(start, Ordering::Relaxed);
        inner.mem.word(OFF_DISCARDED).store(0, Ordering::Relaxed);
        // The empty layout is durable (one meta slot) before anything recovery reads changes, so a
        // cut recovers the old layout whole or the empty one (docs/metadata.md, section 7, row n).
        if let Err(e) =
            heap::flush_empty_layout(&inner.mem, &inner.maps, start, bump, inner.capacity())
        {
            // Nothing of the heap changed: the blocks stay, at the bump offset they had.
            inner.mem.word(OFF_BUMP).store(bump, Ordering::Relaxed);
            inner
                .mem
                .word(OFF_DISCARDED)
                .store(discarded, Ordering::Relaxed);
            return Err(e);
        }
        // SAFETY: `start..bump` is the heap in use; `&mut` on the only clone means no other
        // thread touches it.
        unsafe { inner.mem.zero(start, bump - start) };
        inner
            .start_map()
            .retarget_from(inner.geom.data_start)
            .finish();
        Ok(())
    }

    /// Merges adjacent free space, returns the unused tails of every thread's chunk, rebuilds the
    /// free lists and moves the bump offset back over free space at the end of the heap.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::ReadOnly`]; [`Error::Corrupt`] when the
    /// heap cannot be walked (then nothing was changed).
    pub fn compact(&mut self) -> Result<Report, Error> {
        let inner = self.exclusive()?;
        if inner.read_only {
            return Err(Error::ReadOnly);
        }
        recovery::check(&inner.mem, &inner.geom, inner.bump())?;
        inner.return_all_chunks();
        recovery::repair(
            &inner.mem,
            &inner.geom,
            inner.capacity(),
            &inner.lists,
            false,
        )
    }

    /// Writes the whole arena as an image that opens as a clean file arena.
    ///
    /// # Errors
    /// [`Error::Shared`] if other clones exist; [`Error::Io`] from `out`.
    pub fn write_image(&mut self, mut out: impl std::io::Write) -> Result<(), Error> {
        let inner = self.exclusive()?;
        if !inner.read_only {
            inner.return_all_chunks();
        }
        let mut header = inner.header_snapshot();
        // The image names no file, so its first writable open gives it generations of its own
        // (`Arena::open_writable`): a copy is a new arena for the blocks allocated after it.
        header.file_id = 0;
        header.settle_roots();
        header.state = STATE_CLEAN;
        header.state_checksum = header.compute_state_checksum(inner.reserved_bytes());
        out.write_all(bytemuck::bytes_of(&header))?;
        // SAFETY: `get_mut` proved no other clone can write while we copy.
        let rest = unsafe { inner.mem.slice(HEADER_SIZE, inner.capacity() - HEADER_SIZE) };
        out.write_all(rest)?;
        Ok(())
    }

    /// Closes the arena now, reporting errors that `drop` would have to ignore.
    ///
    /// # Errors
    /// [`Error::Shared`] (and nothing happens) if other clones exist; [`Error::Io`] from the
    /// final flush.
    pub fn close(mut self) -> Result<(), Error> {
        let inner = self.exclusive()?;
        inner.close()
    }
}

impl Inner {
    /// The durable part of a flush, under the flush lock.
    pub(super) fn flush_layout(&self) -> Result<(), Error> {
        if !self.mem.durable() {
            return Ok(());
        }
        let _one = lock(&self.flush_lock);
        heap::flush_layout(&self.mem, &self.maps, self.geom.data_start, self.capacity())?;
        Ok(())
    }

    /// The reserved area, for the seal. Callers hold the arena exclusively (`&mut Inner`, or the
    /// only clone), so nothing writes it meanwhile.
    fn reserved_bytes(&self) -> &[u8] {
        // SAFETY: written only through `Arena::reserved_mut`, which needs `&mut` on the only clone, and every caller
        // of this holds that clone (or `Inner` by `&mut`), so no such borrow is live.
        unsafe { self.mem.slice(HEADER_SIZE, self.geom.reserved_len.into()) }
    }

    pub(super) fn header_snapshot(&self) -> RawHeader {
        let mut bytes = vec![0u8; HEADER_SIZE as usize];
        for off in (0..HEADER_SIZE).step_by(8) {
            let w = self.mem.word(off).load(Ordering::Relaxed);
            bytes[off as usize..off as usize + 8].copy_from_slice(&w.to_le_bytes());
        }
        RawHeader::parse(&bytes)
    }

    /// The close protocol: chunk tails back, data durable, then the clean mark durable.
    pub(super) fn close(&mut self) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        if self.forked_file() {
            // A child's copy of a file arena: the file, its lock and its dirty state are the
            // opener's. Nothing is written; the map and the descriptor just go.
            self.read_only = true;
            return Ok(());
        }
        self.return_all_chunks();
        let bump = self.bump();
        let hw = self.mem.word(OFF_HIGH_WATER);
        hw.store(hw.load(Ordering::Relaxed).max(bump), Ordering::Relaxed);
        self.settle_roots();
        self.flush_layout()?;
        // The seal: every header word after the unchanging ones (the meta slot the flush just
        // wrote included) and the reserved area.
        let sum = format::state_checksum(
            (OFF_CAPACITY..format::SEALED_END)
                .step_by(8)
                .map(|off| (off, self.mem.word(off).load(Ordering::Relaxed))),
            self.reserved_bytes(),
        );
        self.mem
            .word(OFF_STATE_CHECKSUM)
            .store(sum, Ordering::Relaxed);
        self.mem
            .word(OFF_STATE)
            .store(STATE_CLEAN, Ordering::Relaxed);
        self.mem.flush(0, self.geom.data_start)?;
        // Mark the arena closed so the drop does not repeat the protocol.
        self.read_only = true;
        self.write_gate = true;
        self.alloc_gate = true;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; `Arena::close` reports them. On failure the arena
        // stays marked dirty and the next open recovers it.
        let _ = self.close();
    }
}

#[cfg(feature = "testkit")]
impl SimDisk {
    /// The image a power cut would leave now: every flushed page, plus the live contents of each
    /// page `p` (its byte offset) for which `keep(p)` says the OS happened to write it back.
    pub fn crash_image(&self, arena: &Arena, keep: impl FnMut(u64) -> bool) -> Vec<u8> {
        arena.inner.crash_image(self, keep)
    }
}

#[cfg(feature = "testkit")]
impl Inner {
    /// This arena's memory as the simulated disk `disk` would leave it after a power cut.
    fn crash_image(&self, disk: &SimDisk, keep: impl FnMut(u64) -> bool) -> Vec<u8> {
        disk.image_over(&self.mem, keep)
    }
}
