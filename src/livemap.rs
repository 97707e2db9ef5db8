//! The start map and the flush maps: an out-of-line record of where the heap's entries (blocks,
//! free segments, fillers) start, which user bytes cannot write and which a power cut cannot tear
//! (docs/metadata.md).
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

use crate::backing::Backing;
use crate::error::Error;
use crate::format::{
    map_region_len, Meta, HEADER_SIZE, META_SLOT_WORDS, OFF_BUMP, OFF_DISCARDED, OFF_GEN_SEED,
    OFF_HIGH_WATER, OFF_META,
};
use crate::layout::WORD;
use crate::sync::Ordering;

/// Bytes of arena one bitmap word covers.
const WORD_COVERS: u64 = 64 * WORD;
/// Bytes of one meta slot.
const META_SLOT_BYTES: u64 = META_SLOT_WORDS as u64 * WORD;
#[cfg(test)]
const PAGE: u64 = 4096;

/// Where the four bitmaps of an arena of a given capacity lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapGeom {
    /// First byte of the map region; also the end of the heap.
    pub base: u64,
    /// Words in each bitmap.
    pub words: u64,
}

impl MapGeom {
    /// The maps of an arena of `capacity` bytes (a multiple of 4096).
    pub(crate) const fn for_capacity(capacity: u64) -> MapGeom {
        let words = capacity.div_ceil(WORD_COVERS);
        MapGeom {
            base: capacity - Self::region_len(capacity),
            words,
        }
    }

    /// Bytes of the map region for an arena of `capacity` bytes: four bitmaps, rounded up to a
    /// page.
    pub(crate) const fn region_len(capacity: u64) -> u64 {
        map_region_len(capacity)
    }

    /// End of the heap: the first byte of the maps.
    #[inline]
    pub(crate) const fn heap_end(&self) -> u64 {
        self.base
    }

    /// Byte offset of the owner map's word covering `off`.
    #[inline]
    pub(crate) const fn owner_word(&self, off: u64) -> u64 {
        self.base + (off / WORD_COVERS) * WORD
    }

    /// Byte offset of the shared map's word covering `off`.
    #[inline]
    pub(crate) const fn shared_word(&self, off: u64) -> u64 {
        self.base + (self.words + off / WORD_COVERS) * WORD
    }

    /// Byte offset of flush map `which`'s (0 or 1) word number `i`.
    #[inline]
    pub(crate) const fn flushed_word_at(&self, which: u64, i: u64) -> u64 {
        self.base + ((2 + which) * self.words + i) * WORD
    }

    /// Byte range `(offset, len)` of flush map `which`'s words covering `0..end`.
    pub(crate) const fn flushed_range(&self, which: u64, end: u64) -> (u64, u64) {
        (
            self.flushed_word_at(which, 0),
            end.div_ceil(WORD_COVERS) * WORD,
        )
    }

    /// Byte ranges of the owner and shared maps covering `0..end`, for a flush.
    pub(crate) const fn live_ranges(&self, end: u64) -> [(u64, u64); 2] {
        let len = end.div_ceil(WORD_COVERS) * WORD;
        [(self.base, len), (self.base + self.words * WORD, len)]
    }
}

/// The bit of `off` inside its bitmap word.
#[inline]
pub(crate) const fn bit_of(off: u64) -> u64 {
    1 << ((off / WORD) % 64)
}

/// Toggles `off`'s bit in the owner map. The caller owns the chunk the word lies in (or the
/// arena exclusively).
#[inline]
pub(crate) fn owner_toggle(mem: &Backing, m: &MapGeom, off: u64) {
    let w = mem.word(m.owner_word(off));
    w.store(w.load(Ordering::Relaxed) ^ bit_of(off), Ordering::Relaxed);
}

/// [`owner_toggle`] without the bounds check, for the allocation fast path.
///
/// # Safety
/// `off` lies in the heap (`off < m.base`), so its owner-map word is inside the backing.
#[inline]
pub(crate) unsafe fn owner_toggle_unchecked(mem: &Backing, m: &MapGeom, off: u64) {
    debug_assert!(off < m.base);
    // SAFETY: `off < base` makes `owner_word(off) < base + words * 8`, inside the map region,
    // which lies inside the backing (the caller's contract); it is a multiple of 8.
    let w = unsafe { mem.word_unchecked(m.owner_word(off)) };
    w.store(w.load(Ordering::Relaxed) ^ bit_of(off), Ordering::Relaxed);
}

/// Toggles `off`'s bit in the shared map.
#[inline]
pub(crate) fn shared_toggle(mem: &Backing, m: &MapGeom, off: u64) {
    mem.word(m.shared_word(off))
        .fetch_xor(bit_of(off), Ordering::Relaxed);
}

/// [`is_start`] with `SeqCst` loads, for the handle check's side of the check-slot protocol
/// (docs/metadata.md, section 4): ordered after the checker's `SeqCst` swap of its slot, and with
/// a coalescing pass's `SeqCst` toggles.
#[inline]
pub(crate) fn is_start_checked(mem: &Backing, m: &MapGeom, off: u64) -> bool {
    let i = off / WORD_COVERS;
    let a = mem.word(m.base + i * WORD).load(Ordering::SeqCst);
    let b = mem
        .word(m.base + (m.words + i) * WORD)
        .load(Ordering::SeqCst);
    (a ^ b) & bit_of(off) != 0
}

/// [`shared_toggle`] with `SeqCst`, for a coalescing pass's side of the check-slot protocol.
#[inline]
pub(crate) fn shared_toggle_checked(mem: &Backing, m: &MapGeom, off: u64) {
    mem.word(m.shared_word(off))
        .fetch_xor(bit_of(off), Ordering::SeqCst);
}

/// Whether an entry starts at header offset `off` (`off` inside the heap).
#[inline]
pub(crate) fn is_start(mem: &Backing, m: &MapGeom, off: u64) -> bool {
    live_word(mem, m, off / WORD_COVERS) & bit_of(off) != 0
}

/// The first start the map records in `from..to` (both multiples of 8), if any: a segment about
/// to be carved must hold none but its own, so one found there means damaged metadata (a span
/// word or a list link that no longer describes the heap).
pub(crate) fn first_start_in(mem: &Backing, m: &MapGeom, from: u64, to: u64) -> Option<u64> {
    if from >= to {
        return None;
    }
    let (first, last) = (from / WORD_COVERS, (to - 1) / WORD_COVERS);
    for i in first..=last {
        let mut w = live_word(mem, m, i);
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

/// Word `i` of the start map (`A ^ B`).
#[inline]
pub(crate) fn live_word(mem: &Backing, m: &MapGeom, i: u64) -> u64 {
    let a = mem.word(m.base + i * WORD).load(Ordering::Relaxed);
    let b = mem
        .word(m.base + (m.words + i) * WORD)
        .load(Ordering::Relaxed);
    a ^ b
}

/// Word `i` of flush map `which`.
#[inline]
pub(crate) fn flushed_word(mem: &Backing, m: &MapGeom, which: u64, i: u64) -> u64 {
    mem.word(m.flushed_word_at(which, i))
        .load(Ordering::Relaxed)
}

/// Copies the live map's words covering `from..to` into flush map `which`, storing only the words
/// that differ (so a page whose bits did not change is not dirtied). Returns the words stored.
/// Callers hold the flush lock.
pub(crate) fn copy_to_flushed(mem: &Backing, m: &MapGeom, which: u64, from: u64, to: u64) -> u64 {
    let mut stored = 0;
    for i in from / WORD_COVERS..to.div_ceil(WORD_COVERS) {
        let live = live_word(mem, m, i);
        let f = mem.word(m.flushed_word_at(which, i));
        if f.load(Ordering::Relaxed) != live {
            f.store(live, Ordering::Relaxed);
            stored += 1;
        }
    }
    stored
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
/// growth). [`Retarget::finish`] must be called (every word past the last start gets an empty
/// target); dropping it unfinished leaves the words not reached as they were.
pub(crate) struct Retarget<'a> {
    mem: &'a Backing,
    m: MapGeom,
    /// The word being gathered.
    word: u64,
    /// Its target bits so far.
    bits: u64,
}

impl<'a> Retarget<'a> {
    /// Starts a rewrite of the start map of `m` (the caller has the arena exclusively).
    pub(crate) fn new(mem: &'a Backing, m: &MapGeom) -> Retarget<'a> {
        Retarget {
            mem,
            m: *m,
            word: 0,
            bits: 0,
        }
    }

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

    /// Stores the remaining words (their targets empty).
    pub(crate) fn finish(mut self) {
        while self.word < self.m.words {
            self.store();
        }
    }

    /// Stores the gathered word and moves to the next.
    fn store(&mut self) {
        let i = self.word;
        let shared = self
            .mem
            .word(self.m.base + (self.m.words + i) * WORD)
            .load(Ordering::Relaxed);
        let owner = self.mem.word(self.m.base + i * WORD);
        let want = self.bits ^ shared;
        if owner.load(Ordering::Relaxed) != want {
            owner.store(want, Ordering::Relaxed);
        }
        self.word += 1;
        self.bits = 0;
    }
}

/// The live map's words covering `0..end` (`A ^ B`), for moving the map (a growth).
pub(crate) fn live_words(mem: &Backing, m: &MapGeom, end: u64) -> Vec<u64> {
    (0..end.div_ceil(WORD_COVERS))
        .map(|i| live_word(mem, m, i))
        .collect()
}

/// The starts in `from..to`, in order, by walking the start map.
pub(crate) fn starts_in(mem: &Backing, m: &MapGeom, from: u64, to: u64) -> Vec<u64> {
    bits_in(|i| live_word(mem, m, i), from, to)
}

/// The starts flush map `which` records in `from..to`, in order.
pub(crate) fn flushed_starts_in(
    mem: &Backing,
    m: &MapGeom,
    which: u64,
    from: u64,
    to: u64,
) -> Vec<u64> {
    bits_in(|i| flushed_word(mem, m, which, i), from, to)
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

/// The flush protocol's durable part (docs/metadata.md, section 5): the heap and the live maps
/// below the bump offset, then the flush map the newest meta slot does not name, then a meta slot
/// naming it. A cut at any point leaves the previous slot and its flush map untouched, so the
/// durable layout is always exactly one flush's. Callers hold the arena's flush lock (or the arena
/// exclusively). Returns the flush-map words stored.
pub(crate) fn flush_layout(
    mem: &Backing,
    m: &MapGeom,
    data_start: u64,
    capacity: u64,
) -> Result<u64, Error> {
    if !mem.durable() {
        return Ok(0);
    }
    let word = |off: u64| mem.word(off).load(Ordering::Relaxed);
    let bump = word(OFF_BUMP);
    mem.flush(data_start, bump - data_start)?;
    for (off, len) in m.live_ranges(bump) {
        mem.flush(off, len)?;
    }
    mem.flush(0, data_start)?;
    let (slot, epoch, map) = next_slot(mem);
    let stored = copy_to_flushed(mem, m, map, data_start, bump);
    let (off, len) = m.flushed_range(map, bump);
    mem.flush(off, len)?;
    commit_meta(mem, slot, epoch, map, capacity, bump, word(OFF_DISCARDED))?;
    Ok(stored)
}

/// `clear()`'s durable part (docs/metadata.md, section 7, row n): the flush map the newest meta
/// slot does not name, emptied over the old heap `data_start..old_bump`, then a meta slot naming
/// it with the bump offset at `data_start`. The caller has stored the header's bump offset
/// (`data_start`) and has not changed the heap or the start map yet: a cut before the slot is
/// durable leaves the previous layout whole, one after it the empty layout.
pub(crate) fn flush_empty_layout(
    mem: &Backing,
    m: &MapGeom,
    data_start: u64,
    old_bump: u64,
    capacity: u64,
) -> Result<(), Error> {
    if !mem.durable() {
        return Ok(());
    }
    let (slot, epoch, map) = next_slot(mem);
    for i in data_start / WORD_COVERS..old_bump.div_ceil(WORD_COVERS) {
        let f = mem.word(m.flushed_word_at(map, i));
        if f.load(Ordering::Relaxed) != 0 {
            f.store(0, Ordering::Relaxed);
        }
    }
    let (off, len) = m.flushed_range(map, old_bump);
    mem.flush(off, len)?;
    commit_meta(mem, slot, epoch, map, capacity, data_start, 0)
}

/// The meta slot a flush writes next: `(slot, epoch, flush map)`, the ones the newest valid slot
/// does not hold.
fn next_slot(mem: &Backing) -> (u64, u64, u64) {
    match newest_meta(mem) {
        Some((slot, meta)) => (1 - slot, meta.epoch + 1, 1 - meta.map),
        None => (0, 1, 0),
    }
}

/// Writes meta slot `slot` naming flush map `map` with `bump` and `discarded`, and the header's
/// other words, then makes the header page durable.
fn commit_meta(
    mem: &Backing,
    slot: u64,
    epoch: u64,
    map: u64,
    capacity: u64,
    bump: u64,
    discarded: u64,
) -> Result<(), Error> {
    let word = |off: u64| mem.word(off).load(Ordering::Relaxed);
    let meta = Meta {
        epoch,
        map,
        capacity,
        bump,
        high_water: word(OFF_HIGH_WATER),
        discarded,
        gen_seed: word(OFF_GEN_SEED),
    };
    write_meta(mem, slot, &meta);
    mem.flush(0, HEADER_SIZE)
}

/// The newest valid meta slot: `(slot index, meta)`, or `None` when neither slot is valid.
pub(crate) fn newest_meta(mem: &Backing) -> Option<(u64, Meta)> {
    let read = |slot: u64| read_meta(mem, slot).map(|m| (slot, m));
    match (read(0), read(1)) {
        (Some(a), Some(b)) => Some(if b.1.epoch > a.1.epoch { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Meta slot `slot` (0 or 1), when it is valid.
pub(crate) fn read_meta(mem: &Backing, slot: u64) -> Option<Meta> {
    let mut w = [0u64; 8];
    for (i, x) in w.iter_mut().enumerate() {
        *x = mem
            .word(OFF_META + slot * META_SLOT_BYTES + i as u64 * WORD)
            .load(Ordering::Relaxed);
    }
    Meta::decode(&w, slot)
}

/// Writes meta slot `slot` (the caller makes it durable).
pub(crate) fn write_meta(mem: &Backing, slot: u64, meta: &Meta) {
    for (i, w) in meta.encode(slot).iter().enumerate() {
        mem.word(OFF_META + slot * META_SLOT_BYTES + i as u64 * WORD)
            .store(*w, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_fits_inside_the_capacity() {
        for cap in [8192u64, 64 << 10, 1 << 20, 4 << 20, 1 << 30, 1 << 41] {
            let m = MapGeom::for_capacity(cap);
            assert_eq!(m.base % PAGE, 0);
            assert!(m.words * WORD_COVERS >= cap);
            assert!(m.flushed_word_at(1, m.words - 1) + WORD <= cap);
            assert!(m.owner_word(m.base - 8) < m.shared_word(0));
            assert_eq!(MapGeom::region_len(cap), cap - m.base);
        }
    }

    #[test]
    fn toggles_compose() {
        let cap = 64 << 10;
        let mem = Backing::heap(cap).unwrap();
        let m = MapGeom::for_capacity(cap);
        let a = 8192;
        let b = 8192 + 40;
        owner_toggle(&mem, &m, a);
        shared_toggle(&mem, &m, b);
        assert!(is_start(&mem, &m, a) && is_start(&mem, &m, b));
        shared_toggle(&mem, &m, a);
        assert!(!is_start(&mem, &m, a));
        owner_toggle(&mem, &m, a);
        assert!(
            is_start(&mem, &m, a),
            "a toggle in either map flips the fact"
        );
        assert_eq!(starts_in(&mem, &m, 0, m.base), vec![a, b]);
        assert_eq!(first_start_in(&mem, &m, a, a + 8), Some(a));
        assert_eq!(first_start_in(&mem, &m, a + 8, b), None);
        assert_eq!(first_start_in(&mem, &m, a + 8, b + 8), Some(b));
        assert_eq!(first_start_in(&mem, &m, 0, m.base), Some(a));
        assert_eq!(first_start_in(&mem, &m, b + 8, m.base), None);
        assert_eq!(copy_to_flushed(&mem, &m, 1, 0, m.base), 1);
        assert_eq!(copy_to_flushed(&mem, &m, 1, 0, m.base), 0);
        assert_eq!(flushed_starts_in(&mem, &m, 1, 0, m.base), vec![a, b]);
        assert!(flushed_starts_in(&mem, &m, 0, 0, m.base).is_empty());
        let shared = mem.word(m.shared_word(b)).load(Ordering::Relaxed);
        let mut t = Retarget::new(&mem, &m);
        t.start(b + 8);
        t.finish();
        assert_eq!(starts_in(&mem, &m, 0, m.base), vec![b + 8]);
        assert_eq!(
            mem.word(m.shared_word(b)).load(Ordering::Relaxed),
            shared,
            "a rewrite never writes the shared map"
        );
    }
}
