//! The entry verbs: every store of a block-header word outside a chunk's bump (a FREE segment, a
//! filler, a merge, a carve, a cached block taken back, recovery's and salvage's rewrites), each
//! with the crash order it keeps written once, here, beside its argument (docs/design.md, "The heap
//! layer"; docs/metadata.md).
//!
//! The rules every verb keeps:
//! - a LIVE header never without its start bit (the bit first, then the header);
//! - a new FREE or filler entry's header before its start bit, so a walk never meets a start bit
//!   over bytes that are not an entry yet;
//! - a FREE segment's span word before its header, so a walk sees a whole segment or none.
//!
//! [`Entries`] is the view the free lists (which the loom models run with no start map) and the
//! exclusive passes use; [`Heap`](super::Heap)'s verbs (the arena's) are built on it.

use super::mapgeom::MapGeom;
use super::startmap::StartMap;
use crate::backing::Backing;
use crate::block::{self, BlockHeader, HeaderWord, LiveState};
use crate::format::OFF_DISCARDED;
use crate::layout::WORD;
use crate::sync::Ordering;

/// Where the start of an entry a verb writes is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    /// The entry starts where one already does (a block freed in place keeps its start): no bit
    /// changes.
    Kept,
    /// A new entry: its bit in the shared map, toggled after its header is written.
    Shared,
    /// A new entry an exclusive pass records in its own target map (`Retarget`, docs/metadata.md
    /// section 7): no bit now.
    Target,
}

/// The heap's entries as the free lists and the exclusive passes write them: the backing and the
/// start map (`None` only for the loom models' bare heaps, which keep no map). Two references,
/// built where it is used.
#[derive(Clone, Copy)]
pub(crate) struct Entries<'a> {
    mem: &'a Backing,
    maps: Option<&'a MapGeom>,
}

impl<'a> Entries<'a> {
    /// The entries of the heap in `mem`, whose start map `maps` describes.
    #[inline]
    pub(crate) fn new(mem: &'a Backing, maps: Option<&'a MapGeom>) -> Entries<'a> {
        Entries { mem, maps }
    }

    #[inline]
    fn store(&self, off: u64, w: u64) {
        self.mem.word(off).store(w, Ordering::Relaxed);
    }

    /// Records the start of the new entry at `off`, whose header is written.
    #[inline]
    fn started(&self, off: u64, start: Start) {
        if let (Start::Shared, Some(m)) = (start, self.maps) {
            StartMap::new(self.mem, m).shared_toggle(off);
        }
    }

    /// A FREE segment `off..off + span` with generation `generation` and list link `next`: its
    /// span word, then its header (a walk sees a whole segment or none), then, for a new entry,
    /// its start bit (header before bit). The caller owns the bytes.
    #[inline]
    pub(crate) fn add_free(&self, off: u64, span: u64, generation: u32, next: u64, start: Start) {
        self.store(off + WORD, span);
        self.store(off, block::free(generation, next));
        self.started(off, start);
    }

    /// A filler (PAD) entry over `off..off + span`: its header, then for a new entry its start bit.
    /// The caller counts the bytes as discarded (or gathers the count).
    #[inline]
    pub(crate) fn add_filler(&self, off: u64, span: u64, start: Start) {
        self.store(off, block::pad(span));
        self.started(off, start);
    }

    /// The filler a carve leaves in front of the block it aligns, over the header of the segment
    /// it popped at `off` (its start kept): the commit of that carve. `Release`: a free that
    /// absorbs this filler (its `Acquire` load, `FreeLists::absorb_fillers`) then sees the pop of
    /// the segment here happen before its slot loads, the pop-slot argument of docs/metadata.md,
    /// section 13.1.
    #[inline]
    pub(crate) fn front_filler(&self, off: u64, span: u64) {
        self.mem
            .word(off)
            .store(block::pad(span), Ordering::Release);
    }

    /// Points the FREE segment at `off` at list link `next`, keeping its generation: a Treiber
    /// push's link store before its CAS, or a coalescing pass relinking a node it detached. A
    /// header FREE before stays FREE with the same span, so a walk is unaffected.
    #[inline]
    pub(crate) fn relink(&self, off: u64, generation: u32, next: u64) {
        self.store(off, block::free(generation, next));
    }

    /// The span word of the FREE segment at `off`: the commit of a merge (the header stays FREE,
    /// so a walk reads the old span, and the next segment's intact header, or the new one), a
    /// split of a run, or a merge undone.
    #[inline]
    pub(crate) fn set_span(&self, off: u64, span: u64) {
        self.store(off + WORD, span);
    }

    /// A coalescing pass absorbs the segment at `off` into the one before it: its start goes out
    /// of the start map with `SeqCst`, before the pass loads the check slots (the store-buffering
    /// shape of `CheckSlot`, docs/metadata.md section 4).
    #[inline]
    pub(crate) fn absorb_checked(&self, off: u64) {
        if let Some(m) = self.maps {
            StartMap::new(self.mem, m).shared_toggle_checked(off);
        }
    }

    /// Whether the map records an entry starting at `off` (a bare heap, with no map: always).
    #[inline]
    pub(crate) fn is_start(&self, off: u64) -> bool {
        self.maps
            .is_none_or(|m| StartMap::new(self.mem, m).is_start(off))
    }

    /// Puts back the start [`Entries::absorb_checked`] took out, because a handle check holds it
    /// (`SeqCst`, as the toggle it undoes): the segment at `off` stays a separate segment.
    #[inline]
    pub(crate) fn keep_held(&self, off: u64) {
        self.absorb_checked(off);
    }

    /// Recovery keeps the LIVE block at `off`: PUBLISHED with no readers, its length and
    /// generation kept, a block of the allocator interfaces (FOREIGN) staying one. Exclusive.
    pub(crate) fn settle_live(&self, off: u64, len: u64, generation: u32) {
        let foreign = block::is_foreign(self.mem.word(off).load(Ordering::Relaxed));
        self.store(off, published(len, generation, foreign));
    }

    /// Recovery's cut marks the LIVE header at `off`, which the start map does not vouch for,
    /// DYING, so the repair pass reclaims it. Exclusive.
    pub(crate) fn mark_dying(&self, off: u64) {
        if let HeaderWord::Live {
            len, generation, ..
        } = block::decode(self.mem.word(off).load(Ordering::Relaxed))
        {
            self.store(off, block::live(len, generation, LiveState::Dying, 0));
        }
    }

    /// Recovery's cut writes `off..off + len` as one run of free space for the repair walk: a FREE
    /// segment (span word, then header, a fresh generation) when it holds 16 bytes, else a filler.
    /// No start bit: the repair records the layout it walks. Exclusive.
    pub(crate) fn free_run(&self, off: u64, len: u64) {
        if len >= 16 {
            self.add_free(off, len, block::fresh_gen(self.mem), 0, Start::Target);
        } else {
            self.add_filler(off, len, Start::Target);
        }
    }

    /// A kept block written into a fresh file (salvage) or a model's heap: its PUBLISHED header
    /// (`foreign`: a block of the allocator interfaces), then its bit in the owner map. Exclusive.
    pub(crate) fn restore_live(&self, off: u64, len: u64, generation: u32, foreign: bool) {
        self.store(off, published(len, generation, foreign));
        if let Some(m) = self.maps {
            StartMap::new(self.mem, m).owner_toggle(off);
        }
    }

    /// A model's stand-in for a carve's commit: the popped segment at `off` becomes a PUBLISHED
    /// block of `len` bytes with `generation` (its start kept), so a thread still holding a stale
    /// view of it reads a LIVE header.
    #[cfg(parena_loom)]
    pub(crate) fn make_live(&self, off: u64, len: u64, generation: u32) {
        self.store(off, published(len, generation, false));
    }
}

/// A PUBLISHED header word with no readers.
fn published(len: u64, generation: u32, foreign: bool) -> u64 {
    if foreign {
        block::live_foreign(len, generation, LiveState::Published, 0)
    } else {
        block::live(len, generation, LiveState::Published, 0)
    }
}

/// Adds `n` bytes to the file header's count of discarded space (fillers, gaps, unlisted runs).
pub(crate) fn add_discarded(mem: &Backing, n: u64) {
    if n > 0 {
        mem.word(OFF_DISCARDED).fetch_add(n, Ordering::Relaxed);
    }
}

/// Takes `n` bytes off the count of discarded space: a filler absorbed by the free in front of it.
pub(crate) fn sub_discarded(mem: &Backing, n: u64) {
    if n > 0 {
        mem.word(OFF_DISCARDED).fetch_sub(n, Ordering::Relaxed);
    }
}

impl super::Heap<'_> {
    /// Carves the block `hdr..hdr + span` (`len` bytes, `generation`) out of the free segment
    /// `seg..` the caller popped, whose remainder past the block the caller has already written
    /// as walkable free space. The segment's header (and span word) still describe the whole
    /// segment until the commit, so a crash before it leaves the segment free:
    ///
    /// 1. with a filler in front (`seg < hdr`): the block's start bit (shared map), then its
    ///    RESERVED header, then the commit, the filler's header at `seg` (and its bytes counted
    ///    as discarded): the walk now sees the filler, the block and the remainder;
    /// 2. without: the commit is the RESERVED header at `seg == hdr`, whose start is the
    ///    segment's;
    /// 3. the block's bytes zeroed, then its header PENDING: a crash before that leaves a RESERVED
    ///    block recovery reclaims.
    ///
    /// Returns the PENDING header word, which carries the [`block::FILLER_BEHIND`] hint when
    /// `behind` (the caller left a filler right behind the block).
    ///
    /// # Safety
    /// `seg..hdr + span` is the caller's alone (popped from a list), with `hdr - seg` zero or at
    /// least 16 so the segment's span word lies outside the block's header.
    pub(crate) unsafe fn carve(
        &self,
        seg: u64,
        hdr: u64,
        span: u64,
        len: u64,
        generation: u32,
        behind: bool,
    ) -> u64 {
        let hint = if behind { block::FILLER_BEHIND } else { 0 };
        let reserved = block::live(len, generation, LiveState::Reserved, hint);
        let e = self.entries();
        if hdr > seg {
            self.start_map().shared_toggle(hdr);
            e.store(hdr, reserved);
            e.front_filler(seg, hdr - seg);
            add_discarded(self.mem, hdr - seg);
        } else {
            e.store(hdr, reserved);
        }
        // SAFETY: the segment is the caller's since its pop (contract), and the data range lies
        // inside it.
        unsafe { self.mem.zero(hdr + WORD, span - WORD) };
        let pending = BlockHeader(reserved).with_state(LiveState::Pending).0;
        e.store(hdr, pending);
        pending
    }

    /// Takes back the cached FREE block `hdr..hdr + span` (an exact class: the same span) as a
    /// block of `len` bytes with `generation`: RESERVED, then its bytes zeroed, then PENDING; a
    /// crash in between leaves a block recovery reclaims. Its start is kept. Returns the PENDING
    /// header word.
    ///
    /// # Safety
    /// The block came off the calling thread's own cache: no one else references it.
    pub(crate) unsafe fn take_cached(&self, hdr: u64, span: u64, len: u64, generation: u32) -> u64 {
        let reserved = block::live(len, generation, LiveState::Reserved, 0);
        self.entries().store(hdr, reserved);
        // SAFETY: the block is the caller's alone (contract).
        unsafe { self.mem.zero(hdr + WORD, span - WORD) };
        // A change of state only: `with_state` keeps the check code right without the multiply.
        let pending = BlockHeader(reserved).with_state(LiveState::Pending).0;
        self.entries().store(hdr, pending);
        pending
    }
}
