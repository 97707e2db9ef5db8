//! [`FreeLists::nodes`]: a walk of one list that changes nothing, for exclusive callers (recovery's
//! check of the lists, the loom models' accounting).

use super::*;

impl FreeLists {
    /// Walks list `c` without changing it (exclusive callers only): node offsets in order, up to
    /// `max` nodes; `Err` with the offending offset if a node is not a free header.
    pub(crate) fn nodes(&self, b: &Backing, c: usize, limit: u64, max: usize) -> ListWalk {
        let mut out = Vec::new();
        let mut off = head_off(self.head(b, c).load(Ordering::Acquire));
        while off != 0 {
            if out.len() >= max {
                return ListWalk::Cycle(out);
            }
            if off < self.data_start || off + 16 > limit || off % 8 != 0 {
                return ListWalk::Bad {
                    nodes: out,
                    offset: off,
                };
            }
            // Acquire: pairs with the Release CAS in `push` that listed the node.
            match block::decode(b.word(off).load(Ordering::Acquire)) {
                HeaderWord::Free { next, .. } => {
                    out.push(off);
                    off = next;
                }
                _ => {
                    return ListWalk::Bad {
                        nodes: out,
                        offset: off,
                    }
                }
            }
        }
        ListWalk::Ok(out)
    }
}

/// What walking one list found.
pub(crate) enum ListWalk {
    Ok(Vec<u64>),
    /// More nodes than there are free segments: the list loops.
    Cycle(Vec<u64>),
    /// A link points outside the heap or at something that is not a free segment.
    Bad {
        nodes: Vec<u64>,
        offset: u64,
    },
}
