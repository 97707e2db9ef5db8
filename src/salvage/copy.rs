//! The fresh file: the saved blocks written at their offsets through the crate's own pieces, then
//! opened through the ordinary recovering open, checked and closed clean.

use super::plan::Plan;
use super::source::Source;
use super::{SalvageReport, SavedBlock};
use crate::arena::Arena;
use crate::backing::{Backing, OpenedFile};
use crate::block;
use crate::error::Error;
use crate::format::{
    RawHeader, HEADER_SIZE, OFF_BUMP, OFF_DISCARDED, OFF_HIGH_WATER, OFF_OPEN_COUNT, OFF_STATE,
    STATE_DIRTY,
};
use crate::freelist::{FreeLists, Unlisted};
use crate::heap::{self, Entries};
use crate::layout::block_span;
use crate::options::Options;
use crate::sync::Ordering;
use std::path::Path;

/// Writes the fresh file, opens it through recovery, checks it and closes it clean.
pub(super) fn write_fresh(
    src: &Source,
    plan: &Plan,
    f: OpenedFile,
    path: &Path,
) -> Result<SalvageReport, Error> {
    let g = src.g;
    let capacity = src.capacity;
    let maps = src.maps;
    let d = g.data_start;
    let last_end = plan
        .saved
        .last()
        .map_or(d, |s| s.handle.offset_in(g.unit_shift()) - 8 + span_of(s));
    let bump = g
        .chunk_line_from(last_end)
        .map_or(maps.heap_end(), |l| l.min(maps.heap_end()));
    let mut raw = RawHeader::new(&g, capacity);
    raw.roots = src.raw.roots;
    raw.gen_seed = plan.gen_seed;
    raw.state = STATE_DIRTY;
    raw.open_count = 1;
    raw.bump = bump;
    raw.high_water = bump;
    f.format(capacity, false, bytemuck::bytes_of(&raw))?;
    let b = Backing::file(f, capacity)?;
    let reserved = u64::from(g.reserved_len);
    // SAFETY: the damaged file's map is private and nothing writes it.
    let from = unsafe { src.mem.slice(HEADER_SIZE, reserved) };
    // SAFETY: the fresh file was created by this call and is mapped only here.
    unsafe { b.write(HEADER_SIZE, from) };
    let lists = FreeLists::load(&b, d, Some(maps));
    let mut discarded = 0;
    let mut at = d;
    for s in &plan.saved {
        let off = s.handle.offset_in(g.unit_shift()) - 8;
        let span = span_of(s);
        if off > at {
            discarded += lists.give_back(&b, &g, at, off - at, Unlisted::Segment);
        }
        // SAFETY: the damaged map is private and unwritten.
        let data = unsafe { src.mem.slice(off + 8, span - 8) };
        // SAFETY: as above, and the fresh map is this call's alone.
        unsafe { b.write(off + 8, data) };
        let foreign = block::is_foreign(src.word(off));
        Entries::new(&b, Some(&maps)).restore_live(off, s.len, s.handle.generation(), foreign);
        at = off + span;
    }
    if bump > at {
        discarded += lists.give_back(&b, &g, at, bump - at, Unlisted::Segment);
    }
    b.word(OFF_DISCARDED).store(discarded, Ordering::Relaxed);
    b.word(OFF_HIGH_WATER).store(bump, Ordering::Relaxed);
    b.word(OFF_BUMP).store(bump, Ordering::Relaxed);
    debug_assert_eq!(b.word(OFF_STATE).load(Ordering::Relaxed), STATE_DIRTY);
    debug_assert_eq!(b.word(OFF_OPEN_COUNT).load(Ordering::Relaxed), 1);
    heap::flush_layout(&b, &maps, d, capacity)?;
    drop(b);

    // The ordinary recovering open checks what was written: nothing dropped, every block live.
    let o = Options::new().magic_version(g.magic_version);
    let mut arena = Arena::open_file(&o, path)?;
    let recovered = arena
        .recovery_report()
        .cloned()
        .ok_or(Error::Corrupt { offset: 0, word: 0 })?;
    let verified = arena.verify()?;
    let expected = plan.saved.len() as u64;
    for r in [&recovered, &verified] {
        if !r.is_clean() || r.live_blocks != expected {
            let offset = r
                .problems
                .first()
                .map(|p| p.clone().into_error())
                .and_then(|e| match e {
                    Error::Corrupt { offset, .. } => Some(offset),
                    _ => None,
                })
                .or(r.dropped.first().map(|x| x.offset))
                .unwrap_or(0);
            return Err(Error::Corrupt {
                offset,
                word: r.live_blocks,
            });
        }
    }
    arena.close()?;
    Ok(SalvageReport {
        header_clean: src.header_clean,
        header_repaired: src.header_repaired.clone(),
        capacity,
        bump: src.limit,
        meta_epoch: src.meta.map(|m| m.epoch),
        saved_bytes: plan.saved.iter().map(|s| s.len).sum(),
        saved: plan.saved.clone(),
        lost: plan.lost.clone(),
        roots_copied: true,
        reserved_copied: reserved,
        gen_seed: plan.gen_seed,
    })
}

fn span_of(s: &SavedBlock) -> u64 {
    block_span(s.len).expect("a saved block's span was checked by the walk")
}
