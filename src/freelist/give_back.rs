//! Giving free space back: the one place that turns a run of bytes the caller owns into free
//! space, listed or not. Chunk tails, a block's cut-off tail, the remainder of a carved segment
//! and the runs recovery gathers all come here, and a freed block takes back the fillers behind
//! it here.

use super::FreeLists;
use crate::backing::Backing;
use crate::block::{self, HeaderWord};
use crate::format::{Freelist, Geometry};
use crate::heap::{sub_discarded, Start};
use crate::layout::WORD;
use crate::sync::{sc_order, Ordering};

/// The most fillers a free absorbs behind its block.
const ABSORB_MAX: usize = 4;

/// How space that is not listed is left for the heap walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unlisted {
    /// The bytes are already zero (a chunk tail): the walk reads them as a gap; nothing is written.
    Gap,
    /// A filler (PAD header).
    Filler,
    /// A FREE segment (span word, then header, fresh generation) when it is at least 16 bytes,
    /// else a filler.
    Segment,
}

/// What [`FreeLists::prepare`] made of a run of free space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Prepared {
    /// A FREE segment with this generation, written and ready to push.
    List(u32),
    /// Left unlisted: this many bytes count as discarded.
    Discard(u64),
}

impl FreeLists {
    /// Gives back `off..off + span`, which the caller owns: listed with a fresh
    /// generation when the policy lists and the span reaches `min_segment`, otherwise left as
    /// `unlisted` says. Returns the bytes left unlisted, for the caller's discarded count.
    pub(crate) fn give_back(
        &self,
        mem: &Backing,
        geom: &Geometry,
        off: u64,
        span: u64,
        unlisted: Unlisted,
    ) -> u64 {
        self.give_back_with(mem, geom, off, span, unlisted, true).0
    }

    /// [`FreeLists::give_back`] for an exclusive pass, which records the starts of what it writes
    /// in its own target map (`heap::startmap::Retarget`, docs/metadata.md section 7) instead of
    /// toggling the shared map: writes the entry and lists it, toggles nothing. Returns the bytes
    /// left unlisted and whether an entry now starts at `off` (nothing is written for a gap).
    pub(crate) fn give_back_unmarked(
        &self,
        mem: &Backing,
        geom: &Geometry,
        off: u64,
        span: u64,
        unlisted: Unlisted,
    ) -> (u64, bool) {
        self.give_back_with(mem, geom, off, span, unlisted, false)
    }

    fn give_back_with(
        &self,
        mem: &Backing,
        geom: &Geometry,
        off: u64,
        span: u64,
        unlisted: Unlisted,
        mark: bool,
    ) -> (u64, bool) {
        let start = if mark { Start::Shared } else { Start::Target };
        let (prepared, started) = self.write_entry(mem, geom, off, span, unlisted, start);
        match prepared {
            Prepared::List(generation) => {
                self.push(mem, off, span, generation);
                (0, started)
            }
            Prepared::Discard(n) => (n, started),
        }
    }

    /// Absorbs the fillers (PAD entries) right behind `hdr..hdr + span`, a block the caller has
    /// made DYING (or a segment it owns), into one FREE segment with generation `generation`;
    /// returns the segment's span (docs/metadata.md, section 13.1). Entries lie below `limit`
    /// (the bump offset). A filler has no owner but the entry in front of it, so only this caller
    /// can absorb it. The stores are a coalescing pass's, in its order: the segment's span word
    /// and FREE header (the commit), then the filler's start out of the map (`SeqCst`), then
    /// `held(p)` (the check, read and pop slots, `SeqCst` loads); a held start is put back with
    /// the span before it, and ends the absorption. The caller lists or caches the segment.
    pub(crate) fn absorb_fillers(
        &self,
        mem: &Backing,
        (hdr, span, generation): (u64, u64, u32),
        limit: u64,
        held: impl Fn(u64) -> bool,
    ) -> u64 {
        let e = self.entries(mem);
        let mut total = span;
        for _ in 0..ABSORB_MAX {
            let p = hdr + total;
            if p + WORD > limit {
                break;
            }
            // Acquire: pairs with the Release store of a carve's filler in front of its block,
            // so the pop that took the segment there happens before the slot loads below.
            let HeaderWord::Pad { span: pad } = block::decode(mem.word(p).load(Ordering::Acquire))
            else {
                break;
            };
            if pad == 0 || !e.is_start(p) {
                break;
            }
            e.add_free(hdr, total + pad, generation, 0, Start::Kept);
            e.absorb_checked(p);
            // The toggle before the slot loads (the store-buffering shape of `CheckSlot`).
            sc_order();
            if held(p) {
                e.keep_held(p);
                e.set_span(hdr, total);
                break;
            }
            sub_discarded(mem, pad);
            total += pad;
        }
        total
    }

    /// The first half of [`FreeLists::give_back`]: writes what makes `off..off + span` walkable
    /// free space, without listing it yet. For a caller that must commit something else (the
    /// header of the block carved in front) before the segment may be pushed.
    pub(crate) fn prepare(
        &self,
        mem: &Backing,
        geom: &Geometry,
        off: u64,
        span: u64,
        unlisted: Unlisted,
    ) -> Prepared {
        self.write_entry(mem, geom, off, span, unlisted, Start::Shared)
            .0
    }

    /// Writes the entry `off..off + span` becomes (none for an unlisted gap), a new entry whose
    /// start `start` records (its header first, then its bit: the heap layer's verbs), and says
    /// whether one starts at `off` now.
    fn write_entry(
        &self,
        mem: &Backing,
        geom: &Geometry,
        off: u64,
        span: u64,
        unlisted: Unlisted,
        start: Start,
    ) -> (Prepared, bool) {
        let e = self.entries(mem);
        let listed =
            geom.freelist != Freelist::None && span >= 16 && span >= u64::from(geom.min_segment);
        match unlisted {
            _ if listed => {
                let generation = block::fresh_gen(mem);
                e.add_free(off, span, generation, 0, start);
                return (Prepared::List(generation), true);
            }
            // Nothing is written: the walk reads the zero word as a gap, which is no entry.
            Unlisted::Gap => return (Prepared::Discard(span), false),
            Unlisted::Segment if span >= 16 => {
                e.add_free(off, span, block::fresh_gen(mem), 0, start);
            }
            Unlisted::Filler | Unlisted::Segment => e.add_filler(off, span, start),
        }
        (Prepared::Discard(span), true)
    }
}
