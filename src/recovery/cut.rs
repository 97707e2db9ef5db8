//! The first step of every dirty open: find the last flush's layout in a heap whose pages may come
//! from different moments since that flush (a power cut), or from one moment (a process crash).
//!
//! The algorithm and its argument, case by case, are in docs/metadata.md (section 6) and
//! docs/recovery.md. In short:
//!
//! 1. **Fixed blocks.** The newest valid meta slot names a flush map `F` and the flush's bump
//!    offset. A start `s` of `F` is *fixed* when the start map also has it, its header word is LIVE
//!    with a length whose span ends at or before the next start of `F` (its *flush extent*). Every
//!    block live at the flush and not freed since is fixed: nothing rewrites its header's length or
//!    generation, its live bit, or its extent. Fixed blocks never overlap (extents are disjoint).
//! 2. **Gaps.** Between fixed blocks, and from the last one to the bump offset, the heap is walked
//!    as a chain that must land exactly on the next fixed block. A LIVE header there counts only
//!    when the start map vouches for it (the bit is set before a header becomes LIVE). After a
//!    process crash the chain and the map are exact, so every gap walks whole. After a power cut
//!    a gap that does not walk held only blocks allocated since the flush: it is dropped (turned
//!    into one free run) and reported.
//!
//! [`plan`] only reads, so a file it refuses is left untouched; [`apply`] writes what it decided.

use super::step::{step, AnyEntry, Entry, Live, Rule, Step};
use super::Dropped;
use crate::backing::Backing;
use crate::block::LiveState;
use crate::error::Error;
use crate::format::{Geometry, Meta, OFF_BUMP, OFF_META};
use crate::heap::{self, Entries, MapGeom, StartMap};
use crate::sync::Ordering;

/// What [`plan`] found, for [`apply`] to write.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The end of the heap to walk: the larger of the flush's and the header's bump offsets.
    end: u64,
    /// Gaps that walk whole: LIVE headers the start map does not vouch for (allocations that never
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
    let maps = MapGeom::of(g, capacity);
    let heap_end = maps.heap_end();
    let meta = match heap::newest_meta(b) {
        Some((_, m)) if m.capacity == capacity => m,
        // A growable arena's maps never move, so its newest slot holds whatever capacity it
        // names, up to the one the open decided (docs/metadata.md, 12.6, gap 3): the range past
        // the slot's capacity lies above its bump offset and is walked as gaps.
        Some((_, m)) if g.growable() && m.capacity <= capacity => m,
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
        if s >= extent || !StartMap::new(b, &maps).is_start(s) {
            continue;
        }
        // A LIVE entry that steps whole inside its flush extent.
        if let Ok(Step {
            span,
            entry: Entry::Live(l),
        }) = step(b, g, s, extent, &AnyEntry)
        {
            if tail_ok(&l) {
                fixed.push((s, span));
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
/// entry that overruns the gap), the part up to the next start the start map records is dropped and
/// the walk resumes there: the start map is the independent record that lets one damaged or
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

/// The plan's rule in a gap: a zero run is a never-used chunk tail only when the start map records
/// no start in it after its first word.
struct UnusedTail<'a> {
    b: &'a Backing,
    maps: &'a MapGeom,
}

impl Rule for UnusedTail<'_> {
    fn gap(&self, at: u64, end: u64) -> bool {
        // A zero run over entries the map records is not an unused chunk tail (a zeroed page, or
        // a cut that kept the map's page and not the heap's): it is dropped, and reported, up to
        // the next recorded start.
        StartMap::new(self.b, self.maps)
            .first_start_in(at + 8, end)
            .is_none()
    }
}

/// Walks from `from` towards `to`; returns where it stopped (`to` when it landed exactly).
fn walk_part(b: &Backing, g: &Geometry, maps: &MapGeom, from: u64, to: u64, p: &mut Plan) -> u64 {
    let rule = UnusedTail { b, maps };
    let mut q = from;
    while q < to {
        let Ok(s) = step(b, g, q, to, &rule) else {
            break;
        };
        match s.entry {
            Entry::Gap if g.chunk_line_after(q) > to => p.tails.push((q, s.span)),
            Entry::Live(l) if !tail_ok(&l) => break,
            Entry::Live(l)
                if matches!(l.state, LiveState::Published | LiveState::Pending)
                    && !StartMap::new(b, maps).is_start(q) =>
            {
                p.unvouched.push((q, s.span));
            }
            _ => {}
        }
        q += s.span;
    }
    q
}

/// Whether a LIVE entry has the tail word it needs: a LARGE block's exact length is in its last
/// word, written before its allocation returned, so a PUBLISHED or PENDING one (which recovery
/// keeps) whose tail is not its own (a page from before the block, an allocation cut short between
/// its header and its tail, or damage) is not vouched for. RESERVED and DYING blocks are reclaimed
/// whatever their tail says.
fn tail_ok(l: &Live) -> bool {
    l.exact.is_ok() || !matches!(l.state, LiveState::Published | LiveState::Pending)
}

/// Writes the plan: unvouched LIVE headers become DYING (so the repair reclaims them), dropped gaps
/// become one free run each, and the header's bump offset covers everything walked. Returns what
/// was dropped, for the recovery report.
pub(crate) fn apply(b: &Backing, plan: &Plan) -> Vec<Dropped> {
    let mut out = Vec::new();
    // No start map: the repair pass that follows records the layout it walks.
    let e = Entries::new(b, None);
    for &(q, span) in &plan.unvouched {
        e.mark_dying(q);
        out.push(Dropped {
            offset: q,
            len: span,
        });
    }
    for &(from, len) in &plan.tails {
        e.free_run(from, len);
    }
    for &(from, len) in &plan.dropped {
        e.free_run(from, len);
        out.push(Dropped { offset: from, len });
    }
    b.word(OFF_BUMP).store(plan.end, Ordering::Relaxed);
    out.sort_by_key(|d| d.offset);
    out
}
