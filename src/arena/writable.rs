//! A writable open of an existing arena file: the backing at its recorded capacity (a cut
//! growth's tail dropped first), a copy's generation jump, the dirty mark, the recovery of a dirty
//! file, and a growth the options ask for.

use super::open::random_id;
use super::Arena;
use crate::backing::{Backing, OpenedFile};
use crate::error::Error;
use crate::format::{
    self, Geometry, HEADER_SIZE, OFF_CAPACITY, OFF_HIGH_WATER, OFF_OPEN_COUNT, OFF_STATE,
    STATE_DIRTY,
};
use crate::freelist::FreeLists;
use crate::heap::{self, MapGeom, StartMap};
use crate::layout::align_up;
use crate::options::Options;
use crate::recovery;
use crate::sync::Ordering;

/// Where the generation counter of a copy starts: `seed` (the original's counter at the copy)
/// plus a random jump of `2^30` to `3 * 2^30` values, so that the copy mints generations the
/// original does not reach before it minted `2^30` of its own (and the reverse), while the copy
/// still mints none of the generations minted in the `2^30` before the copy for as long again
/// (docs/design.md, "Copies").
fn copy_seed(seed: u64) -> u64 {
    seed.wrapping_add((1 << 30) + random_id() % (1 << 31))
}

impl Arena {
    pub(super) fn open_writable(
        o: &Options,
        f: OpenedFile,
        g: Geometry,
        old_capacity: u64,
        capacity: u64,
        plan: Option<recovery::cut::Plan>,
    ) -> Result<Arena, Error> {
        let clean = plan.is_none();
        let grow = capacity > old_capacity && !o.map_copy;
        let at_old = if o.map_copy {
            // Validated: the file holds `capacity` bytes, and a copy never grows it.
            Backing::file_copy(f.dup_read_only()?, old_capacity)?
        } else if g.growable() {
            // Bytes past the capacity are what a growth step cut before its flush left (blocks
            // allocated after the last flush, map words): no header word or meta slot names them,
            // and the next step must find them zero (invariant Z), so the file ends at the
            // capacity again. The map words covering them are zeroed, durably, first: past the
            // file's length every map word is zero (docs/metadata.md, 12.2, rule M).
            let len = f.len()?;
            if len > old_capacity {
                clear_maps_past(&f, &g, old_capacity, len)?;
                f.file.set_len(f.offset + old_capacity)?;
                f.file.sync_all()?;
            } else if len < old_capacity {
                f.resize(old_capacity, o.preallocate)?;
            }
            Backing::file_growable(f.dup()?, old_capacity, g.max_capacity)?
        } else {
            if f.len()? < old_capacity {
                f.resize(old_capacity, o.preallocate)?;
            }
            Backing::file(f.dup()?, old_capacity)?
        };
        let b = at_old;
        // A copy is a new arena for the blocks allocated from now on: the original keeps its
        // counter, a copy jumps ahead (`copy_seed`). A `map_copy` view always is one; a file is
        // one when the header names another file than this one (a `write_image` image, a plain
        // copy of the file, or a file written before `file_id` existed).
        let seed = b.word(format::OFF_GEN_SEED);
        if o.map_copy {
            seed.store(copy_seed(seed.load(Ordering::Relaxed)), Ordering::Relaxed);
        } else {
            let here = f.identity()?;
            let recorded = b.word(format::OFF_FILE_ID);
            if recorded.load(Ordering::Relaxed) != here {
                seed.store(copy_seed(seed.load(Ordering::Relaxed)), Ordering::Relaxed);
                recorded.store(here, Ordering::Relaxed);
            }
        }
        if plan.is_some() {
            // The counter's floor (docs/design.md, "Generations"): every meta slot records the
            // counter as of its flush, and the counter only grows, so a header below its newest
            // slot is damaged or torn, and blocks minted after that flush may hold any value
            // past the slot's: continue a jump past it, as a copy does. (The counter wraps at
            // 2^64: "below" is a distance of less than 2^63 behind.)
            if let Some((_, m)) = heap::newest_meta(&b) {
                let behind = m.gen_seed.wrapping_sub(seed.load(Ordering::Relaxed));
                if behind != 0 && behind < 1 << 63 {
                    seed.store(copy_seed(m.gen_seed), Ordering::Relaxed);
                }
            }
        }
        // Mark dirty and make that durable before the first change (and the new counter with it,
        // before any block is minted from it). A growable arena's header names the capacity it
        // opens at (its newest meta slot's, when that was larger).
        b.word(OFF_STATE).store(STATE_DIRTY, Ordering::Relaxed);
        if g.growable() && !o.map_copy {
            b.word(OFF_CAPACITY).store(old_capacity, Ordering::Relaxed);
        }
        b.word(OFF_OPEN_COUNT).fetch_add(1, Ordering::Relaxed);
        b.flush(0, HEADER_SIZE)?;
        let report = match plan {
            None => None,
            Some(plan) => {
                let dropped = recovery::cut::apply(&b, &plan);
                let lists = FreeLists::load(&b, g.data_start, Some(MapGeom::of(&g, old_capacity)));
                let mut r = recovery::repair(&b, &g, old_capacity, &lists, true)?;
                r.dropped = dropped;
                r.flushed_blocks = plan.fixed;
                Some(r)
            }
        };
        if !grow || g.growable() {
            let a = Arena::from_parts(b, g, old_capacity, o, clean, false, report);
            if grow {
                // The maps do not move: a growth step as while open (docs/metadata.md, 12.2).
                a.grow(capacity)?;
            }
            return Ok(a);
        }
        let bump = b.word(format::OFF_BUMP).load(Ordering::Relaxed);
        let words = StartMap::new(&b, &MapGeom::for_capacity(old_capacity)).start_words(bump);
        drop(b);
        f.resize(capacity, o.preallocate)?;
        let b = Backing::file(f, capacity)?;
        grow_maps(&b, &g, old_capacity, capacity, &words)?;
        Ok(Arena::from_parts(b, g, capacity, o, clean, false, report))
    }
}

/// Grows a file arena (recovered, with nothing in flight) from `old` to `new` bytes: the maps move
/// to the end of the grown file, past the old ones, and become durable before a meta slot names
/// the new capacity; only then does the header's capacity change. A cut at any point reopens at
/// one of the two capacities with its own maps whole.
fn grow_maps(b: &Backing, g: &Geometry, old: u64, new: u64, words: &[u64]) -> Result<(), Error> {
    let maps = MapGeom::for_capacity(new);
    let mut target = StartMap::new(b, &maps).retarget();
    target.words(words);
    target.finish();
    // The old map region is heap now: below the high-water mark, so it is zeroed when taken.
    let hw = b.word(OFF_HIGH_WATER);
    hw.store(hw.load(Ordering::Relaxed).max(old), Ordering::Relaxed);
    // Both flush maps hold the layout before the first meta slot for `new` names one of them.
    let bump = b.word(format::OFF_BUMP).load(Ordering::Relaxed);
    StartMap::new(b, &maps).copy_to_flushed(0, g.data_start, bump);
    StartMap::new(b, &maps).copy_to_flushed(1, g.data_start, bump);
    heap::flush_layout(b, &maps, g.data_start, new)?;
    b.word(OFF_CAPACITY).store(new, Ordering::Relaxed);
    b.flush(0, HEADER_SIZE)?;
    Ok(())
}

/// Zeroes the map words of a growable arena covering `capacity..len` (the file's length, past
/// the capacity a dirty open decided) and syncs them, before the open truncates the file to the
/// capacity (docs/metadata.md, 12.2, rule M).
fn clear_maps_past(f: &OpenedFile, g: &Geometry, capacity: u64, len: u64) -> Result<(), Error> {
    let to = align_up(len.min(g.max_capacity), 512).unwrap_or(g.max_capacity);
    let b = Backing::file_growable(f.dup()?, capacity, g.max_capacity)?;
    let maps = MapGeom::of(g, capacity);
    StartMap::new(&b, &maps).clear_all(capacity, to);
    b.flush(HEADER_SIZE, g.data_start - HEADER_SIZE)
}
