//! The meta slots and the flush protocol's durable part (docs/metadata.md, section 5).
//!
//! The file header holds two meta slots (`OFF_META`, `META_SLOT_WORDS` words each; the encoding is
//! `format::Meta`'s). A flush writes the slot the newest valid one is not, naming the flush map
//! that slot does not name, so a cut at any point leaves the previous slot and its flush map
//! whole.

use super::mapgeom::MapGeom;
use super::startmap::StartMap;
use crate::backing::Backing;
use crate::error::Error;
use crate::format::{
    Meta, HEADER_SIZE, META_SLOT_WORDS, OFF_BUMP, OFF_CAPACITY, OFF_DISCARDED, OFF_GEN_SEED,
    OFF_HIGH_WATER, OFF_META,
};
use crate::layout::WORD;
use crate::sync::{spin_hint, Ordering};

/// Bytes of one meta slot.
const META_SLOT_BYTES: u64 = META_SLOT_WORDS as u64 * WORD;

/// The flush protocol's durable part (docs/metadata.md, section 5): the heap and the start map
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
    // A growable arena's capacity grows while this runs, and the bump offset read above may lie
    // past the `capacity` the caller read before it. The slot names a capacity that holds it: the
    // header's word, which a growth step stores after the file's new length is durable and before
    // it publishes the end that let a chunk be reserved there (docs/metadata.md, 12.2, step 6),
    // so it is never more than the file holds. A fixed layout's capacity always holds the bump.
    let mut capacity = capacity;
    while capacity < bump {
        capacity = capacity.max(word(OFF_CAPACITY));
        spin_hint();
    }
    mem.flush(data_start, bump - data_start)?;
    for (off, len) in m.start_ranges(bump) {
        mem.flush(off, len)?;
    }
    mem.flush(0, data_start)?;
    let (slot, epoch, map) = next_slot(mem);
    let stored = StartMap::new(mem, m).copy_to_flushed(map, data_start, bump);
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
    StartMap::new(mem, m).clear_flushed(map, data_start, old_bump);
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
fn write_meta(mem: &Backing, slot: u64, meta: &Meta) {
    for (i, w) in meta.encode(slot).iter().enumerate() {
        mem.word(OFF_META + slot * META_SLOT_BYTES + i as u64 * WORD)
            .store(*w, Ordering::Relaxed);
    }
}
