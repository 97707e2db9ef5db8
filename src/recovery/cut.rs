//! The first step of every dirty open: find the last flush's layout in a heap whose pages may come
//! from different moments since that flush (a power cut), or from one moment (a process crash).
//!
//! The algorithm and its argument, case by case, are in docs/metadata.md (section 6) and
//! docs/recovery.md. In short:
//!
//! 1. **Fixed blocks.** The newest valid meta slot names a flush map `F` and the flush's bump
//!    offset. A start `s` of `F` is *fixed* when the live map also has it, its header word is LIVE
//!    with a length whose span ends at or before the next start of `F` (its *flush extent*). Every
//!    block live at the flush and not freed since is fixed: nothing rewrites its header's length or
//!    generation, its live bit, or its extent. Fixed blocks never overlap (extents are disjoint).
//! 2. **Gaps.** Between fixed blocks, and from the last one to the bump offset, the heap is walked
//!    as a chain that must land exactly on the next fixed block. A LIVE header there counts only
//!    when the live map vouches for it (the bit is set before a header becomes LIVE). After a
//!    process crash the chain and the map are exact, so every gap walks whole. After a power cut
//!    a gap that does not walk held only blocks allocated since the flush: it is dropped (turned
//!    into one free run) and reported.
//!
//! [`plan`] only reads, so a file it refuses is left untouched; [`apply`] writes what it decided.

use super::Dropped;
use crate::backing::Backing;
use crate::block::{self, HeaderWord, LiveState};
use crate::error::Error;
use crate::format::{Geometry, Meta, OFF_BUMP, OFF_META};
use crate::heap::{self, MapGeom, StartMap};
use crate::layout::block_span;
use crate::sync::Ordering;

/// What [`plan`] found, for [`apply`] to write.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The end of the heap to walk: the larger of the flush's and the header's bump offsets.
    end: u64,
    /// Gaps that walk whole: LIVE headers the live map does not vouch for (allocations that never
    /// returned, or phantoms of a power cut), to be reclaimed.
    unvouched: Vec<(u64, u64)>,
    /// Parts of gaps that do not walk: dropped.
    dropped: Vec<(u64, u64)>,
    /// Unused chunk tails (zero words) that end at a fixed block instead of a chunk boundary
    /// (only a power cut leaves one): written as free space so the repair walk stops there.
    tails: Vec<(u64, u64)>,
    /// Blocks fixed by the flush map.
    pub fixed: u64,
}

/// Reads the heap and decides; writes nothing.
///
/// # Errors
/// [`Error::Corrupt`] when neither meta slot is valid for this capacity (the flush map cannot be
/// trusted, so nothing can be vouched for).
pub(crate) fn plan(b: &Backing, g: &Geometry, capacity: u64) -> Result<Plan, Error> {
    let maps = MapGeom::for_capacity(capacity);
    let heap_end = maps.heap_end();
    let meta = match heap::newest_meta(b) {
        Some((_, m)) if m.capacity == capacity => m,
        // A growth that had written its new meta slot but not the header's capacity: the other
        // slot still describes this capacity.
        Some((slot, _)) => older_meta(b, 1 - slot, capacity).ok_or(Error::Corrupt {
            offset: OFF_META,
            word: capacity,
        })?,
        None => {
            return Err(Error::Corrupt {
                offset: OFF_META,
                word: 0,
            })
        }
    };
    let bump_f = meta.bump.clamp(g.data_start, heap_end);
    let header_bump = b.word(OFF_BUMP).load(Ordering::Relaxed);
    let end = bump_f.max(header_bump).min(heap_end);
    let starts = StartMap::new(b, &maps).flushed_starts_in(meta.map, g.data_start, bump_f);
    let mut fixed = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let extent = starts.get(i + 1).copied().unwrap_or(bump_f);
        if !StartMap::new(b, &maps).is_start(s) {
            continue;
        }
        if let HeaderWord::Live {
            len,
            generation,
            state,
            ..
        } = block::decode(b.word(s).load(Ordering::Relaxed))
        {
            // A LIVE generation is never 0: a 0 is a damaged word.
            if let Some(span) = block_span(len).filter(|_| len > 0 && generation != 0) {
                if s.checked_add(span).is_some_and(|e| e <= extent)
                    && tail_ok(b, s, len, generation, state)
                {
                    fixed.push((s, span));
                }
            }
        }
    }
    let mut p = Plan {
        end,
        unvouched: Vec::new(),
        dropped: Vec::new(),
        tails: Vec::new(),
        fixed: fixed.len() as u64,
    };
    let mut from = g.data_start;
    for &(s, span) in &fixed {
        if s > from {
            gap(b, g, &maps, from, s, &mut p);
        }
        from = s + span;
    }
    if end > from {
        gap(b, g, &maps, from, end, &mut p);
    }
    Ok(p)
}

fn older_meta(b: &Backing, slot: u64, capacity: u64) -> Option<Meta> {
    heap::read_meta(b, slot).filter(|m| m.capacity == capacity)
}

/// Walks `from..to` as a chain. Where a step fails (a word parena does not write there, or an
/// entry that overruns the gap), the part up to the next start the live map records is dropped and
/// the walk resumes there: the live map is the independent record that lets one damaged or
/// half-written entry cost only itself.
fn gap(b: &Backing, g: &Geometry, maps: &MapGeom, from: u64, to: u64, p: &mut Plan) {
    let mut q = from;
    while q < to {
        let stop = walk_part(b, g, maps, q, to, p);
        if stop == to {
            return;
        }
        let resume = StartMap::new(b, maps)
            .first_start_in(stop + 8, to)
            .unwrap_or(to);
        p.dropped.push((stop, resume - stop));
        q = resume;
    }
}

/// Walks from `from` towards `to`; returns where it stopped (`to` when it landed exactly).
fn walk_part(b: &Backing, g: &Geometry, maps: &MapGeom, from: u64, to: u64, p: &mut Plan) -> u64 {
    let chunk = g.chunk();
    let mut q = from;
    while q < to {
        let span = match block::decode(b.word(q).load(Ordering::Relaxed)) {
            HeaderWord::Gap => {
                let next = g.data_start + ((q - g.data_start) / chunk + 1) * chunk;
                if StartMap::new(b, maps)
                    .first_start_in(q + 8, next.min(to))
                    .is_some()
                {
                    // A zero run over entries the map records is not an unused chunk tail (a
                    // zeroed page, or a cut that kept the map's page and not the heap's): it is
                    // dropped, and reported, up to the next recorded start.
                    break;
                }
                if next > to {
                    p.tails.push((q, to - q));
                }
                next.min(to) - q
            }
            HeaderWord::Live {
                len,
                state,
                generation,
                ..
            } => {
                let Some(span) = block_span(len).filter(|_| len > 0 && generation != 0) else {
                    break;
                };
                if q.checked_add(span).is_none_or(|e| e > to)
                    || !tail_ok(b, q, len, generation, state)
                {
                    break;
                }
                if matches!(state, LiveState::Published | LiveState::Pending)
                    && !StartMap::new(b, maps).is_start(q)
                {
                    p.unvouched.push((q, span));
                }
                span
            }
            HeaderWord::Free { .. } => {
                if q + 16 > to {
                    break;
                }
                let span = b.word(q + 8).load(Ordering::Relaxed);
                if span < 16 || span % 8 != 0 {
                    break;
                }
                span
            }
            HeaderWord::Pad { span } if span > 0 => span,
            HeaderWord::Pad { .. } | HeaderWord::Bad => break,
        };
        match q.checked_add(span) {
            Some(e) if e <= to => q = e,
            _ => break,
        }
    }
    q
}

/// Whether the LIVE entry at `s` (length field `len`) has the tail word it needs: a
/// LARGE block's exact length is in its last word, written before its allocation returned, so a
/// PUBLISHED or PENDING one (which recovery keeps) whose tail is not its own (a page from before
/// the block, an allocation cut short between its header and its tail, or damage) is not vouched
/// for. RESERVED and DYING blocks are reclaimed whatever their tail says. The caller checked that
/// the entry's span lies inside the part being planned.
fn tail_ok(b: &Backing, s: u64, len: u64, generation: u32, state: LiveState) -> bool {
    if len < block::LARGE_MIN || !matches!(state, LiveState::Published | LiveState::Pending) {
        return true;
    }
    block::large_len(block::tail_word(b, s, len), generation, len).is_some()
}

/// Writes the plan: unvouched LIVE headers become DYING (so the repair reclaims them), dropped gaps
/// become one free run each, and the header's bump offset covers everything walked. Returns what
/// was dropped, for the recovery report.
pub(crate) fn apply(b: &Backing, plan: &Plan) -> Vec<Dropped> {
    let mut out = Vec::new();
    for &(q, span) in &plan.unvouched {
        if let HeaderWord::Live {
            len, generation, ..
        } = block::decode(b.word(q).load(Ordering::Relaxed))
        {
            b.word(q).store(
                block::live(len, generation, LiveState::Dying, 0),
                Ordering::Relaxed,
            );
        }
        out.push(Dropped {
            offset: q,
            len: span,
        });
    }
    let free_run = |from: u64, len: u64| {
        if len >= 16 {
            b.word(from + 8).store(len, Ordering::Relaxed);
            b.word(from)
                .store(block::free(block::fresh_gen(b), 0), Ordering::Relaxed);
        } else {
            b.word(from).store(block::pad(len), Ordering::Relaxed);
        }
    };
    for &(from, len) in &plan.tails {
        free_run(from, len);
    }
    for &(from, len) in &plan.dropped {
        free_run(from, len);
        out.push(Dropped { offset: from, len });
    }
    b.word(OFF_BUMP).store(plan.end, Ordering::Relaxed);
    out.sort_by_key(|d| d.offset);
    out
}
