//! The decision: one walk of the damaged heap against the start map and the flush map (the rule
//! is in the module doc of `salvage`).

use super::source::Source;
use super::{Lost, LostReason, SavedBlock};
use crate::block::{self, Handle, HeaderWord, LiveState, GEN_MASK};
use crate::heap::StartMap;
use crate::layout::block_span;
use crate::recovery::step::{step, Entry, Rule};

/// What to copy.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub saved: Vec<SavedBlock>,
    pub lost: Vec<Lost>,
    pub gen_seed: u64,
}

/// Decides what to save: one walk of the heap against the start map and the flush map.
pub(super) fn plan(src: &Source) -> Plan {
    let d = src.g.data_start;
    let heap_end = src.maps.heap_end();
    let starts = StartMap::new(&src.mem, &src.maps).starts_in(d, heap_end);
    // The flush's bump offset ends the extent of its last start, as in recovery.
    let flush_bump = src.meta.map_or(d, |m| m.bump.clamp(d, heap_end));
    let flushed = src.meta.map_or_else(Vec::new, |m| {
        StartMap::new(&src.mem, &src.maps).flushed_starts_in(m.map, d, flush_bump)
    });
    let rule = Agrees {
        src,
        map: Starts(&starts),
    };
    let mut plan = Plan::default();
    let mut seen_gens = Vec::new();
    let mut p = d;
    let mut reached = true;
    while p < src.limit {
        let Ok(s) = step(&src.mem, &src.g, p, src.limit, &rule) else {
            let resume = rule.map.first_in(p + 8, src.limit).unwrap_or(src.limit);
            plan.lost.push(Lost {
                offset: p,
                len: resume - p,
                reason: LostReason::Unwalkable { word: src.word(p) },
            });
            p = resume;
            reached = false;
            continue;
        };
        let lost = |reason| Lost {
            offset: p,
            len: s.span,
            reason,
        };
        match s.entry {
            Entry::Live(l) => {
                seen_gens.push(l.generation);
                if matches!(l.state, LiveState::Reserved | LiveState::Dying) {
                    plan.lost.push(lost(LostReason::NotLive { word: l.word }));
                } else if let Ok(len) = l.exact {
                    let by_flush_map = flushed.binary_search(&p).is_ok_and(|i| {
                        let extent = flushed.get(i + 1).copied().unwrap_or(flush_bump);
                        p + s.span <= extent
                    });
                    if reached || by_flush_map {
                        plan.saved.push(SavedBlock {
                            handle: Handle::in_unit(p + 8, l.generation, src.g.unit_shift()),
                            len,
                            foreign: block::is_foreign(l.word),
                            pending: l.state == LiveState::Pending,
                            by_walk: reached,
                            by_flush_map,
                        });
                    } else {
                        plan.lost.push(lost(LostReason::OneRecord { word: l.word }));
                    }
                } else if let Err(tail) = l.exact {
                    plan.lost.push(lost(LostReason::BadTail { word: tail }));
                }
            }
            Entry::Free { generation } => seen_gens.push(generation),
            Entry::Gap if rule.map.has(p) => plan.lost.push(lost(LostReason::NoHeader)),
            Entry::Pad | Entry::Gap => {}
        }
        p += s.span;
        reached = true;
    }
    for &s in starts.iter().filter(|&&s| s >= src.limit) {
        let w = src.word(s);
        if let HeaderWord::Live {
            len, generation, ..
        } = block::decode(w)
        {
            seen_gens.push(generation);
            let end = block_span(len).map_or(s + 8, |span| s.saturating_add(span));
            plan.lost.push(Lost {
                offset: s,
                len: end.min(heap_end) - s,
                reason: LostReason::BeyondBump { word: w },
            });
        }
    }
    plan.lost.sort_by_key(|l| l.offset);
    plan.gen_seed = next_seed(src, &seen_gens);
    plan
}

/// Salvage's rule: a step must agree with the start map. A LIVE, FREE or PAD entry starts at a
/// recorded start, holds no recorded start inside its span, and ends where the next step can
/// begin (a recorded start, a never-used chunk tail, or the end of the walk); a zero run holds no
/// recorded start after its first word (one at its first word is an allocation cut short before
/// its header, or a destroyed header: stepped over and reported, `LostReason::NoHeader`).
struct Agrees<'a> {
    src: &'a Source,
    map: Starts<'a>,
}

impl Rule for Agrees<'_> {
    fn gap(&self, at: u64, end: u64) -> bool {
        self.map.first_in(at + 8, end).is_none()
    }

    fn entry(&self, at: u64, end: u64) -> bool {
        let limit = self.src.limit;
        self.map.has(at)
            && self.map.first_in(at + 8, end).is_none()
            && (end == limit
                || self.map.has(end)
                || (self.src.word(end) == 0
                    && self.gap(end, self.src.g.chunk_line_after(end).min(limit))))
    }
}

/// A generation counter at or past the damaged file's (header and meta slots) and past every
/// generation in `seen` (the counter's value `s` stands for generation
/// `s mod (2^32 - 1) + 1`, so the counter is moved past each within its current cycle).
fn next_seed(src: &Source, seen: &[u32]) -> u64 {
    let mut seed = [Some(src.raw.gen_seed), src.meta.map(|m| m.gen_seed)]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    for &g in seen.iter().filter(|&&g| g != 0) {
        let at = seed / GEN_MASK * GEN_MASK + u64::from(g) - 1;
        if at >= seed {
            seed = at.saturating_add(1);
        }
    }
    seed
}

/// The start map's starts, sorted.
struct Starts<'a>(&'a [u64]);

impl Starts<'_> {
    fn has(&self, off: u64) -> bool {
        self.0.binary_search(&off).is_ok()
    }

    /// The first start in `from..to`.
    fn first_in(&self, from: u64, to: u64) -> Option<u64> {
        let i = self.0.partition_point(|&s| s < from);
        self.0.get(i).copied().filter(|&s| s < to)
    }
}
