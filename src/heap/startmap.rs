//! The start map and the flush maps, behind [`StartMap`]: an out-of-line record of where the
//! heap's entries (blocks, free segments, fillers) start, which user bytes cannot write and which a
//! power cut cannot tear (docs/metadata.md).
//!
//! Four bitmaps sit at the end of the arena, after the heap (`MapGeom::base..capacity`). Each
//! holds one bit per 8-byte unit of the arena (bit `off / 8`), so a bitmap word covers 512 bytes:
//!
//! - **owner map** (`A`): toggled with a plain load and store, only by the thread that owns the
//!   chunk the word lies in (the chunk grid is 512-byte aligned and a chunk is at least 512 bytes,
//!   so one word never spans two chunks), and by exclusive passes. The allocation fast path writes
//!   only this one.
//! - **shared map** (`B`): toggled with `fetch_xor` by everything else (a carve from the free
//!   lists, free space given back, a merge).
//! - **flush maps** (`F0`, `F1`): `A ^ B` as of a completed `flush()`, written only inside `flush()`
//!   into the copy the newest meta slot does not name.
//!
//! An entry starts at `off` exactly when `A(off) ^ B(off)` is set (the *start map*). Every change
//! of that fact (a bump, a split, free space given back, a merge, a rewind) is one toggle by the
//! one thread that makes the change, so the two maps never need to agree with each other, only
//! their exclusive-or with the heap. A free keeps its block's start (the FREE segment starts where
//! the block did), so freeing toggles nothing.
//!
//! ## Orderings
//!
//! | word | op | ordering | why |
//! | --- | --- | --- | --- |
//! | owner map | load + store | Relaxed | one writer (the chunk's owner); readers that must see a bit are ordered after its writer by the allocation's own hand-over (the user's synchronisation, or a flush on the same thread) |
//! | shared map | `fetch_xor` | Relaxed | the RMW order makes concurrent toggles of different bits in one word compose; the same ordering argument as the owner map |
//! | flush maps | load / store | Relaxed | written only under the flush lock; read only by exclusive passes |

use super::mapgeom::MapGeom;
use super::mapgeom::WORD_COVERS;
use crate::backing::Backing;
use crate::layout::WORD;
use crate::sync::Ordering;

/// The bit of `off` inside its bitmap word.
#[inline]
const fn bit_of(off: u64) -> u64 {
    1 << ((off / WORD) % 64)
}

/// The start map and the flush maps of one arena: a borrowed view of the backing and the maps'
/// geometry, the one code that reads or writes a bitmap word. Two references, built where it is
/// used (`StartMap::new(&mem, &maps).owner_toggle(off)` compiles to the same load,
/// xor and store as the bare word access).
#[derive(Clone, Copy)]
pub(crate) struct StartMap<'a> {
    mem: &'a Backing,
    geom: &'a MapGeom,
}

impl<'a> StartMap<'a> {
    /// The maps `geom` describes in `mem`.
    #[inline]
    pub(crate) fn new(mem: &'a Backing, geom: &'a MapGeom) -> StartMap<'a> {
        StartMap { mem, geom }
    }

    /// Toggles `off`'s bit in the owner map. The caller owns the chunk the word lies in (or the
    /// arena exclusively).
    #[inline]
    pub(in crate::heap) fn owner_toggle(&self, off: u64) {
        let w = self.mem.word(self.geom.owner_word(off));
        w.store(w.load(Ordering::Relaxed) ^ bit_of(off), Ordering::Relaxed);
    }

    /// [`StartMap::owner_toggle`] without the bounds check, for the allocation fast path.
    ///
    /// # Safety
    /// `off` lies in the heap, so the maps cover it (`off < words * 512`: a fixed layout's heap
    /// ends at `base`, a growable one's at most at `max_capacity`) and its owner-map word is
    /// inside the backing.
    #[inline]
    pub(in crate::heap) unsafe fn owner_toggle_unchecked(&self, off: u64) {
        debug_assert!(off < self.geom.words * WORD_COVERS);
        // SAFETY: `off < words * 512` makes `owner_word(off) < base + words * 8`, inside the map
        // region, which lies inside the backing (before the heap or after it, and never beyond
        // the first capacity); it is a multiple of 8.
        let w = unsafe { self.mem.word_unchecked(self.geom.owner_word(off)) };
        w.store(w.load(Ordering::Relaxed) ^ bit_of(off), Ordering::Relaxed);
    }

    /// Toggles `off`'s bit in the shared map.
    #[inline]
    pub(in crate::heap) fn shared_toggle(&self, off: u64) {
        self.mem
            .word(self.geom.shared_word(off))
            .fetch_xor(bit_of(off), Ordering::Relaxed);
    }

    /// A unit test's crash image: the allocation at `off` was cut after its first store, the start
    /// bit in the owner map, and before its header.
    #[cfg(test)]
    pub(crate) fn cut_after_start_bit(&self, off: u64) {
        self.owner_toggle(off);
    }

    /// [`StartMap::shared_toggle`] with `SeqCst`, for a coalescing pass's side of the check-slot
    /// protocol.
    #[inline]
    pub(in crate::heap) fn shared_toggle_checked(&self, off: u64) {
        self.mem
            .word(self.geom.shared_word(off))
            .fetch_xor(bit_of(off), Ordering::SeqCst);
    }

    /// [`StartMap::is_start`] with `SeqCst` loads, for the handle check's side of the check-slot
    /// protocol (docs/metadata.md, section 4): ordered after the checker's `SeqCst` swap of its
    /// slot, and with a coalescing pass's `SeqCst` toggles.
    #[inline]
    pub(crate) fn is_start_checked(&self, off: u64) -> bool {
        let a = self
            .mem
            .word(self.geom.owner_word(off))
            .load(Ordering::SeqCst);
        let b = self
            .mem
            .word(self.geom.shared_word(off))
            .load(Ordering::SeqCst);
        (a ^ b) & bit_of(off) != 0
    }

    /// Whether an entry starts at block-header offset `off` (`off` inside the heap).
    #[inline]
    pub(crate) fn is_start(&self, off: u64) -> bool {
        self.start_word(off / WORD_COVERS) & bit_of(off) != 0
    }

    /// The first start the map records in `from..to` (both multiples of 8), if any: a segment
    /// about to be carved must hold none but its own, so one found there means damaged metadata
    /// (a span word or a list link that no longer describes the heap).
    pub(crate) fn first_start_in(&self, from: u64, to: u64) -> Option<u64> {
        if from >= to {
            return None;
        }
        let (first, last) = (from / WORD_COVERS, (to - 1) / WORD_COVERS);
        for i in first..=last {
            let mut w = self.start_word(i);
            if i == first {
                w &= !0u64 << ((from / WORD) % 64);
            }
            if i == last {
                let top = ((to - 1) / WORD) % 64;
                w &= if top == 63 {
                    !0
                } else {
                    (1u64 << (top + 1)) - 1
                };
            }
            if w != 0 {
                return Some(i * WORD_COVERS + u64::from(w.trailing_zeros()) * WORD);
            }
        }
        None
    }

    /// Whether the entry at `off` is the only start the map records in `off..off + span` (`span`
    /// a multiple of 8, at least 16): `Ok`, or `Err` with the first start inside the range past
    /// `off`, or `off` itself when no entry starts there (a segment about to be handed out again,
    /// checked as [`StartMap::first_start_in`] and [`StartMap::is_start`] check it). A range inside
    /// one map word (a cached block's, nearly always) is one word's test.
    #[inline]
    pub(crate) fn sole_start(&self, off: u64, span: u64) -> Result<(), u64> {
        let i = off / WORD_COVERS;
        if (off + span - WORD) / WORD_COVERS == i {
            let own = bit_of(off);
            // The bits of `off..off + span`: `span / 8` bits from `off`'s, inside this word.
            let range = (!0u64 >> (64 - span / WORD)) << ((off / WORD) % 64);
            let w = self.start_word(i) & range;
            return match w & !own {
                0 if w == own => Ok(()),
                0 => Err(off),
                inside => Err(i * WORD_COVERS + u64::from(inside.trailing_zeros()) * WORD),
            };
        }
        match self.first_start_in(off + WORD, off + span) {
            Some(at) => Err(at),
            None if !self.is_start(off) => Err(off),
            None => Ok(()),
        }
    }

    /// Word `i` of the start map (`A ^ B`).
    #[inline]
    fn start_word(&self, i: u64) -> u64 {
        let a = self
            .mem
            .word(self.geom.base + i * WORD)
            .load(Ordering::Relaxed);
        let b = self
            .mem
            .word(self.geom.base + (self.geom.words + i) * WORD)
            .load(Ordering::Relaxed);
        a ^ b
    }

    /// Word `i` of flush map `which`.
    #[inline]
    fn flushed_word(&self, which: u64, i: u64) -> u64 {
        self.mem
            .word(self.geom.flushed_word_at(which, i))
            .load(Ordering::Relaxed)
    }

    /// Copies the start map's words covering `from..to` into flush map `which`, storing only the
    /// words that differ (so a page whose bits did not change is not dirtied). Returns the words
    /// stored. Callers hold the flush lock (or the arena exclusively).
    pub(crate) fn copy_to_flushed(&self, which: u64, from: u64, to: u64) -> u64 {
        let mut stored = 0;
        for i in from / WORD_COVERS..to.div_ceil(WORD_COVERS) {
            let start = self.start_word(i);
            let f = self.mem.word(self.geom.flushed_word_at(which, i));
            if f.load(Ordering::Relaxed) != start {
                f.store(start, Ordering::Relaxed);
                stored += 1;
            }
        }
        stored
    }

    /// Empties flush map `which`'s words covering `from..to`, storing only the words that are not
    /// empty. Callers hold the flush lock (or the arena exclusively).
    pub(crate) fn clear_flushed(&self, which: u64, from: u64, to: u64) {
        for i in from / WORD_COVERS..to.div_ceil(WORD_COVERS) {
            let f = self.mem.word(self.geom.flushed_word_at(which, i));
            if f.load(Ordering::Relaxed) != 0 {
                f.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Zeroes the words of all four maps covering `from..to` (both multiples of 512), storing only
    /// the words that are not zero: a growable arena's growth step, before the range joins the
    /// heap (docs/metadata.md, 12.2, step 3). A step that a cut interrupted, and that no
    /// recovery took in, may have left bits there; no thread reads or toggles these words until
    /// the step publishes the new end, so plain stores do.
    pub(crate) fn clear_all(&self, from: u64, to: u64) {
        debug_assert!(from % WORD_COVERS == 0 && to % WORD_COVERS == 0);
        for i in from / WORD_COVERS..to / WORD_COVERS {
            let off = i * WORD_COVERS;
            let words = [
                self.geom.owner_word(off),
                self.geom.shared_word(off),
                self.geom.flushed_word_at(0, i),
                self.geom.flushed_word_at(1, i),
            ];
            for w in words {
                let w = self.mem.word(w);
                if w.load(Ordering::Relaxed) != 0 {
                    w.store(0, Ordering::Relaxed);
                }
            }
        }
    }

    /// The start map's words covering `0..end` (`A ^ B`), for moving the map (a growth).
    pub(crate) fn start_words(&self, end: u64) -> Vec<u64> {
        (0..end.div_ceil(WORD_COVERS))
            .map(|i| self.start_word(i))
            .collect()
    }

    /// The starts in `from..to`, in order, by walking the start map.
    pub(crate) fn starts_in(&self, from: u64, to: u64) -> Vec<u64> {
        bits_in(|i| self.start_word(i), from, to)
    }

    /// The starts flush map `which` records in `from..to`, in order.
    pub(crate) fn flushed_starts_in(&self, which: u64, from: u64, to: u64) -> Vec<u64> {
        bits_in(|i| self.flushed_word(which, i), from, to)
    }

    /// A rewrite of the start map by an exclusive pass (the caller has the arena exclusively).
    pub(crate) fn retarget(&self) -> Retarget<'a> {
        self.retarget_from(0)
    }

    /// [`StartMap::retarget`] of the words covering `from..` only (`from` a multiple of 512, the
    /// heap's start: no reader asks the map below it, and in a growable arena the words below
    /// it cover the maps themselves, 1/16 of the maximum).
    pub(crate) fn retarget_from(&self, from: u64) -> Retarget<'a> {
        debug_assert!(from % WORD_COVERS == 0);
        Retarget {
            map: *self,
            word: from / WORD_COVERS,
            bits: 0,
        }
    }
}

fn bits_in(word: impl Fn(u64) -> u64, from: u64, to: u64) -> Vec<u64> {
    let mut out = Vec::new();
    for i in from / WORD_COVERS..to.div_ceil(WORD_COVERS) {
        let mut w = word(i);
        while w != 0 {
            let b = u64::from(w.trailing_zeros());
            w &= w - 1;
            let off = i * WORD_COVERS + b * WORD;
            if off >= from && off < to {
                out.push(off);
            }
        }
    }
    out
}

/// An exclusive pass's rewrite of the start map to a target given in offset order
/// (docs/metadata.md, section 7, "Exclusive passes"): for each word `i` in turn, `T_i` is
/// gathered from [`Retarget::start`], then the owner map's word is stored as `T_i ^ B_i`, once, and
/// only when it changes. The shared map `B` is never written, so every version of every word —
/// after a `kill -9` between two stores, or with any mix of map pages at old and new versions
/// after a power cut — reads every bit the target and the old map agree on, and in particular
/// the start of every block the pass keeps.
///
/// The one writer of start-map words in an exclusive pass (recovery, `compact`, `clear`,
/// growth); made by [`StartMap::retarget`]. [`Retarget::finish`] must be called (every word past
/// the last start gets an empty target); dropping it unfinished leaves the words not reached as
/// they were.
pub(crate) struct Retarget<'a> {
    map: StartMap<'a>,
    /// The word being gathered.
    word: u64,
    /// Its target bits so far.
    bits: u64,
}

impl Retarget<'_> {
    /// An entry starts at `off` in the target. Offsets come in increasing order.
    pub(crate) fn start(&mut self, off: u64) {
        let i = off / WORD_COVERS;
        debug_assert!(i >= self.word, "starts out of order");
        while self.word < i {
            self.store();
        }
        self.bits |= bit_of(off);
    }

    /// Every word `i` of `words` is target word `i` (for a growth, which moves the map whole).
    pub(crate) fn words(&mut self, words: &[u64]) {
        debug_assert_eq!(self.word, 0);
        for &w in words {
            self.bits = w;
            self.store();
        }
    }

    /// Stores the remaining words of the heap (their targets empty). A growable arena's maps
    /// are sized for its maximum; the words past its heap's end are left as they are: no entry
    /// lies there, and a growth step zeroes them before it publishes a new end
    /// (docs/metadata.md, 12.2, step 3). Walking them would read a map of up to 64 GiB.
    pub(crate) fn finish(mut self) {
        let end = self.map.geom.heap_end().div_ceil(WORD_COVERS);
        while self.word < end {
            self.store();
        }
    }

    /// Stores the gathered word and moves to the next.
    fn store(&mut self) {
        let (mem, g, i) = (self.map.mem, self.map.geom, self.word);
        let shared = mem
            .word(g.base + (g.words + i) * WORD)
            .load(Ordering::Relaxed);
        let owner = mem.word(g.base + i * WORD);
        let want = self.bits ^ shared;
        if owner.load(Ordering::Relaxed) != want {
            owner.store(want, Ordering::Relaxed);
        }
        self.word += 1;
        self.bits = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggles_compose() {
        let cap = 64 << 10;
        let mem = Backing::heap(cap).unwrap();
        let m = MapGeom::for_capacity(cap);
        let s = StartMap::new(&mem, &m);
        let a = 8192;
        let b = 8192 + 40;
        s.owner_toggle(a);
        s.shared_toggle(b);
        assert!(s.is_start(a) && s.is_start(b));
        s.shared_toggle(a);
        assert!(!s.is_start(a));
        s.owner_toggle(a);
        assert!(s.is_start(a), "a toggle in either map flips the fact");
        assert_eq!(s.starts_in(0, m.base), vec![a, b]);
        assert_eq!(s.first_start_in(a, a + 8), Some(a));
        assert_eq!(s.first_start_in(a + 8, b), None);
        assert_eq!(s.first_start_in(a + 8, b + 8), Some(b));
        assert_eq!(s.first_start_in(0, m.base), Some(a));
        assert_eq!(s.first_start_in(b + 8, m.base), None);
        assert_eq!(s.sole_start(a, 40), Ok(()));
        assert_eq!(s.sole_start(a, 48), Err(b), "a start inside the range");
        assert_eq!(
            s.sole_start(a + 8, 16),
            Err(a + 8),
            "no start at the range's first word"
        );
        assert_eq!(s.sole_start(b, 512), Ok(()), "a range across two map words");
        s.owner_toggle(b + 504);
        assert_eq!(s.sole_start(b, 512), Err(b + 504));
        assert_eq!(s.sole_start(b + 8, 512), Err(b + 504));
        assert_eq!(s.sole_start(b + 504, 16), Ok(()));
        s.owner_toggle(b + 504);
        assert_eq!(s.copy_to_flushed(1, 0, m.base), 1);
        assert_eq!(s.copy_to_flushed(1, 0, m.base), 0);
        assert_eq!(s.flushed_starts_in(1, 0, m.base), vec![a, b]);
        assert!(s.flushed_starts_in(0, 0, m.base).is_empty());
        s.clear_flushed(1, 0, m.base);
        assert!(s.flushed_starts_in(1, 0, m.base).is_empty());
        let shared = mem.word(m.shared_word(b)).load(Ordering::Relaxed);
        let mut t = s.retarget();
        t.start(b + 8);
        t.finish();
        assert_eq!(s.starts_in(0, m.base), vec![b + 8]);
        assert_eq!(
            mem.word(m.shared_word(b)).load(Ordering::Relaxed),
            shared,
            "a rewrite never writes the shared map"
        );
    }
}
