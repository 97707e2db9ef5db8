//! The repair pass behind recovery and `compact`: rebuild the free lists from a walk.

use super::{histogram_bucket, walk, Problem, Region, Report};
use crate::backing::Backing;
use crate::block::LiveState;
use crate::error::Error;
use crate::format::Freelist;
use crate::format::{Geometry, OFF_BUMP, OFF_DISCARDED, OFF_HIGH_WATER};
use crate::freelist::{FreeLists, Unlisted};
use crate::heap::{self, Entries, MapGeom, StartMap};
use crate::sync::Ordering;

/// Rebuilds the free lists from a walk, merging every run of free space (free segments, fillers,
/// gaps, and with `recovering` also RESERVED and DYING blocks) into one segment, and moves the bump
/// offset back over free space at the end. Exclusive callers only, after [`check`] passed.
pub(crate) fn repair(
    b: &Backing,
    g: &Geometry,
    capacity: u64,
    lists: &FreeLists,
    recovering: bool,
) -> Result<Report, Error> {
    let bump0 = b.word(OFF_BUMP).load(Ordering::Relaxed);
    let maps = MapGeom::of(g, capacity);
    let mut r = Report::default();
    // The start map is rewritten to the walk's layout one word at a time, in offset order, through
    // the owner map only (docs/metadata.md, section 7): every version of every word keeps the
    // start of every block kept, whatever a kill or a power cut interrupts.
    let target = std::cell::RefCell::new(StartMap::new(b, &maps).retarget_from(g.data_start));
    lists.clear_all(b);
    let mut discarded = 0u64;
    // The run of free space being gathered: start, end, pieces in it.
    let mut run: Option<(u64, u64, u64)> = None;
    let put = |start: u64, end: u64, r: &mut Report, discarded: &mut u64| {
        let span = end - start;
        let (unlisted, started) = lists.give_back_unmarked(b, g, start, span, Unlisted::Segment);
        *discarded += unlisted;
        if started {
            target.borrow_mut().start(start);
        }
        if span >= 16 {
            r.free_segments += 1;
            r.free_bytes += span;
            r.free_histogram[histogram_bucket(span)] += 1;
        }
    };
    let walked = walk(b, g, bump0, |e| {
        let off = match e {
            Region::Live { off, .. }
            | Region::Free { off, .. }
            | Region::Pad { off, .. }
            | Region::Gap { off, .. } => off,
        };
        let span = e.span();
        let freeable = match e {
            Region::Live { state, .. } => {
                recovering && matches!(state, LiveState::Reserved | LiveState::Dying)
            }
            _ => true,
        };
        if freeable {
            match e {
                Region::Free { .. } => {}
                _ => r.reclaimed_bytes += span,
            }
            run = Some(match run {
                Some((s, _, n)) => (s, off + span, n + 1),
                None => (off, off + span, 1),
            });
            return;
        }
        if let Some((s, end, n)) = run.take() {
            r.merged_segments += n - 1;
            put(s, end, &mut r, &mut discarded);
        }
        if let Region::Live {
            len,
            generation,
            state,
            readers,
            ..
        } = e
        {
            r.live_blocks += 1;
            r.live_bytes += len;
            target.borrow_mut().start(off);
            if recovering && (readers != 0 || state != LiveState::Published) {
                // A block of the allocator interfaces stays one (FOREIGN kept).
                Entries::new(b, Some(&maps)).settle_live(off, len, generation);
            }
            if state == LiveState::Pending {
                r.pending_blocks += 1;
            }
        }
    });
    walked.map_err(Problem::into_error)?;
    let mut bump = bump0;
    if let Some((s, end, n)) = run.take() {
        r.merged_segments += n - 1;
        debug_assert_eq!(end, bump0);
        // Free space reaches the bump offset: give it back to the main memory, down to the next
        // chunk boundary.
        let boundary = g.chunk_line_from(s).map_or(bump0, |l| l.min(bump0));
        if boundary > s {
            put(s, boundary, &mut r, &mut discarded);
        }
        let hw = b.word(OFF_HIGH_WATER);
        hw.store(hw.load(Ordering::Relaxed).max(bump0), Ordering::Relaxed);
        bump = boundary;
        b.word(OFF_BUMP).store(bump, Ordering::Relaxed);
    }
    if recovering {
        // After a power loss, pages past the durable bump offset may hold data written after the
        // last flush: never assume they read zero.
        b.word(OFF_HIGH_WATER).store(capacity, Ordering::Relaxed);
    }
    b.word(OFF_DISCARDED).store(discarded, Ordering::Relaxed);
    r.listed_segments = r.free_segments;
    r.listed_bytes = r.free_bytes;
    if g.freelist == Freelist::None {
        r.listed_segments = 0;
        r.listed_bytes = 0;
    }
    r.leaked_bytes = discarded;
    r.bump = bump;
    target.into_inner().finish();
    // The new layout becomes the durable one (a flush map and a meta slot), so a later cut
    // returns to it.
    heap::flush_layout(b, &maps, g.data_start, capacity)?;
    Ok(r)
}
