//! The heap walk, and the read-only passes over it: `check` and `verify`.

use super::{histogram_bucket, Problem, Region, Report};
use crate::backing::Backing;
use crate::block::{self, HeaderWord, LiveState};
use crate::error::Error;
use crate::format::{Geometry, CLASSES};
use crate::freelist::{class_of, FreeLists, ListWalk};
use crate::heap::StartMap;
use crate::sync::Ordering;
use std::collections::HashMap;

/// Walks the heap from the data start to `bump`, calling `f` for each entry before reading the
/// next, so `f` may rewrite everything up to the end of the entry it was given.
pub(crate) fn walk(
    b: &Backing,
    g: &Geometry,
    bump: u64,
    mut f: impl FnMut(Region),
) -> Result<(), Problem> {
    let chunk = g.chunk();
    let mut p = g.data_start;
    while p < bump {
        // Acquire: pairs with the Release stores and CASes that published each header (walks run
        // with the heap held still, after those threads handed the arena over).
        let w = b.word(p).load(Ordering::Acquire);
        let e = match block::decode(w) {
            HeaderWord::Gap => {
                let next = g.data_start + ((p - g.data_start) / chunk + 1) * chunk;
                Region::Gap {
                    off: p,
                    span: next.min(bump) - p,
                }
            }
            HeaderWord::Live {
                len,
                generation,
                state,
                readers,
            } => {
                // parena never writes generation 0 or length 0 in a LIVE word.
                if len == 0 || generation == 0 {
                    return Err(Problem::BadHeader { offset: p, word: w });
                }
                Region::Live {
                    off: p,
                    len,
                    generation,
                    state,
                    readers,
                }
            }
            HeaderWord::Free { .. } => {
                if p + 16 > bump {
                    return Err(Problem::Overrun {
                        offset: p,
                        span: 16,
                        limit: bump,
                    });
                }
                let span = b.word(p + 8).load(Ordering::Relaxed);
                if span < 16 || span % 8 != 0 {
                    return Err(Problem::BadFreeSpan { offset: p, span });
                }
                Region::Free { off: p, span }
            }
            HeaderWord::Pad { span } => {
                if span == 0 {
                    return Err(Problem::BadHeader { offset: p, word: w });
                }
                Region::Pad { off: p, span }
            }
            HeaderWord::Bad => return Err(Problem::BadHeader { offset: p, word: w }),
        };
        let span = e.span();
        if p.checked_add(span).is_none_or(|end| end > bump) {
            return Err(Problem::Overrun {
                offset: p,
                span,
                limit: bump,
            });
        }
        let e = match e {
            // A LARGE block handed out (PUBLISHED, or PENDING: its `BlockMut` was returned) has
            // its exact length in its tail word, written before the allocation returned; a
            // RESERVED or DYING one may not have it yet (recovery reclaims it): it reports its
            // exact length when the tail is there, its capacity otherwise.
            Region::Live {
                off,
                len,
                generation,
                state,
                readers,
            } if len >= block::LARGE_MIN => {
                let t = block::tail_word(b, off, len);
                let exact = block::large_len(t, generation, len);
                if exact.is_none() && matches!(state, LiveState::Published | LiveState::Pending) {
                    return Err(Problem::BadTail {
                        offset: off,
                        word: t,
                    });
                }
                Region::Live {
                    off,
                    len: exact.unwrap_or(len),
                    generation,
                    state,
                    readers,
                }
            }
            e => e,
        };
        f(e);
        p += span;
    }
    Ok(())
}

/// A read-only walk: `Err` with the first word that stops it.
pub(crate) fn check(b: &Backing, g: &Geometry, bump: u64) -> Result<(), Error> {
    walk(b, g, bump, |_| {}).map_err(Problem::into_error)
}

/// Walks the heap and the lists without writing.
pub(crate) fn verify(b: &Backing, g: &Geometry, lists: &FreeLists, bump: u64) -> Report {
    let mut r = Report {
        bump,
        listed_bytes_by_class: vec![0; CLASSES],
        ..Report::default()
    };
    let mut free: HashMap<u64, u64> = HashMap::new();
    let mut entries: Vec<u64> = Vec::new();
    let walked = walk(b, g, bump, |e| {
        if let Region::Live { off, .. } | Region::Free { off, .. } | Region::Pad { off, .. } = e {
            entries.push(off);
        }
        match e {
            Region::Live { len, state, .. } => {
                r.live_blocks += 1;
                r.live_bytes += len;
                if state == LiveState::Pending {
                    r.pending_blocks += 1;
                }
            }
            Region::Free { off, span, .. } => {
                r.free_segments += 1;
                r.free_bytes += span;
                r.free_histogram[histogram_bucket(span)] += 1;
                free.insert(off, span);
            }
            Region::Pad { span, .. } => r.leaked_bytes += span,
            Region::Gap { span, .. } => r.gap_bytes += span,
        }
    });
    if let Err(p) = walked {
        r.problems.push(p);
    }
    if let Some(maps) = &lists.maps {
        // The start map against the walk: the same set of entry offsets, none above the bump.
        let starts = StartMap::new(b, maps).starts_in(g.data_start, maps.heap_end());
        let (mut i, mut j) = (0, 0);
        while i < entries.len() || j < starts.len() {
            match (entries.get(i), starts.get(j)) {
                (Some(&e), Some(&s)) if e == s => {
                    i += 1;
                    j += 1;
                }
                (Some(&e), Some(&s)) if e < s => {
                    r.problems.push(Problem::StartMissing { offset: e });
                    i += 1;
                }
                (Some(&e), None) => {
                    r.problems.push(Problem::StartMissing { offset: e });
                    i += 1;
                }
                (_, Some(&s)) => {
                    r.problems.push(Problem::StartExtra { offset: s });
                    j += 1;
                }
                (None, None) => break,
            }
        }
    }
    let mut seen: HashMap<u64, ()> = HashMap::new();
    for c in 0..CLASSES {
        let nodes = match lists.nodes(b, c, bump, free.len() + 1) {
            ListWalk::Ok(n) => n,
            ListWalk::Cycle(n) => {
                r.problems.push(Problem::ListCycle { class: c });
                n
            }
            ListWalk::Bad { nodes, offset } => {
                r.problems.push(Problem::ListBadNode { class: c, offset });
                nodes
            }
        };
        for off in nodes {
            match free.get(&off) {
                None => r.problems.push(Problem::ListBadNode {
                    class: c,
                    offset: off,
                }),
                Some(&span) => {
                    if class_of(span) != c {
                        r.problems.push(Problem::ListWrongClass {
                            class: c,
                            offset: off,
                            span,
                        });
                    }
                    if seen.insert(off, ()).is_some() {
                        r.problems.push(Problem::ListedTwice { offset: off });
                    } else {
                        r.listed_segments += 1;
                        r.listed_bytes += span;
                        r.listed_bytes_by_class[c] += span;
                    }
                }
            }
        }
    }
    r.leaked_bytes += r.free_bytes - r.listed_bytes.min(r.free_bytes);
    r
}
