//! The heap walk, and the read-only passes over it: `check` and `verify`.

use super::step::{step, AnyEntry, Entry, Stuck};
use super::{histogram_bucket, Problem, Region, Report};
use crate::backing::Backing;
use crate::block::LiveState;
use crate::error::Error;
use crate::format::{Geometry, CLASSES};
use crate::freelist::{class_of, FreeLists, ListWalk};
use crate::heap::StartMap;
use std::collections::HashMap;

/// Walks the heap from the data start to `bump`, calling `f` for each entry before reading the
/// next, so `f` may rewrite everything up to the end of the entry it was given.
pub(crate) fn walk(
    b: &Backing,
    g: &Geometry,
    bump: u64,
    mut f: impl FnMut(Region),
) -> Result<(), Problem> {
    let mut p = g.data_start;
    while p < bump {
        let s = step(b, g, p, bump, &AnyEntry).map_err(|stuck| match stuck {
            Stuck::BadHeader { word } | Stuck::Refused { word } => {
                Problem::BadHeader { offset: p, word }
            }
            Stuck::BadFreeSpan { span } => Problem::BadFreeSpan { offset: p, span },
            Stuck::Overrun { span } => Problem::Overrun {
                offset: p,
                span,
                limit: bump,
            },
        })?;
        let e = match s.entry {
            // A LARGE block handed out (PUBLISHED, or PENDING: its `BlockMut` was returned) has
            // its exact length in its tail word, written before the allocation returned; a
            // RESERVED or DYING one may not have it yet (recovery reclaims it): it reports its
            // exact length when the tail is there, its capacity otherwise.
            Entry::Live(l) => match l.exact {
                Err(t) if matches!(l.state, LiveState::Published | LiveState::Pending) => {
                    return Err(Problem::BadTail { offset: p, word: t });
                }
                exact => Region::Live {
                    off: p,
                    len: exact.unwrap_or(l.len),
                    generation: l.generation,
                    state: l.state,
                    readers: l.readers,
                },
            },
            Entry::Free { .. } => Region::Free {
                off: p,
                span: s.span,
            },
            Entry::Pad => Region::Pad {
                off: p,
                span: s.span,
            },
            Entry::Gap => Region::Gap {
                off: p,
                span: s.span,
            },
        };
        f(e);
        p += s.span;
    }
    Ok(())
}

/// A read-only walk: `Err` with the first word that stops it.
pub(crate) fn check(b: &Backing, g: &Geometry, bump: u64) -> Result<(), Error> {
    walk(b, g, bump, |_| {}).map_err(Problem::into_error)
}

/// Walks the heap and the lists without writing; `heap_end` is the end of the heap now (a
/// growable arena's moves, so the lists' copy of the maps does not bound it).
pub(crate) fn verify(
    b: &Backing,
    g: &Geometry,
    lists: &FreeLists,
    bump: u64,
    heap_end: u64,
) -> Report {
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
        let starts = StartMap::new(b, maps).starts_in(g.data_start, heap_end);
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
