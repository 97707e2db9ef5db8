//! [`CacheTop`]: the head word of one class of a chunk cell's cache of freed blocks, and its
//! encoding. The cell keeps one word per exact class (`ChunkCell::cache_top`); the blocks below
//! the first are linked through their FREE headers.
//!
//! ```text
//!  63            48 47                                  0
//! +----------------+-------------------------------------+
//! |     count      |  first block's header offset        |
//! +----------------+-------------------------------------+
//! ```
//!
//! The word 0 is the empty class. The count is at most [`CACHE_DEPTH`].

/// Most blocks one class of one thread's cache keeps; more go to the shared free lists. Also how
/// many an empty class takes from the shared list at once (`FreeLists::take_batch`).
pub(crate) const CACHE_DEPTH: u64 = 64;
/// The count of cached blocks sits above this many bits, the first one's header offset below.
const COUNT_SHIFT: u32 = 48;
const OFF_MASK: u64 = (1 << COUNT_SHIFT) - 1;
// Every header offset in an arena fits below the count.
const _: () = assert!(crate::format::MAX_GROWABLE_CAPACITY <= OFF_MASK);

/// The head of one class of a cell's cache (from `ChunkCell::cache_top`): its first block and how
/// many it holds. A copy: the cell changes only through its own methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CacheTop(u64);

impl CacheTop {
    /// The head of `count` blocks, the first at header offset `first`.
    #[inline]
    const fn new(first: u64, count: u64) -> CacheTop {
        debug_assert!(first <= OFF_MASK && count <= CACHE_DEPTH);
        CacheTop((count << COUNT_SHIFT) | first)
    }

    /// The head a cell's word holds.
    #[inline]
    pub(super) const fn from_word(w: u64) -> CacheTop {
        CacheTop(w)
    }

    /// The word a cell keeps for this head.
    #[inline]
    pub(super) const fn word(self) -> u64 {
        self.0
    }

    /// The head after the block at `hdr` goes on top.
    #[inline]
    pub(super) const fn pushed(self, hdr: u64) -> CacheTop {
        CacheTop::new(hdr, self.count() + 1)
    }

    /// The head of a chain of `count` blocks (1 to [`CACHE_DEPTH`]) taken from the shared list at
    /// once, the first at header offset `first`.
    #[inline]
    pub(super) const fn filled(first: u64, count: u64) -> CacheTop {
        CacheTop::new(first, count)
    }

    /// The head after the first block is taken; `next` is the block it linked to.
    #[inline]
    pub(super) const fn popped(self, next: u64) -> CacheTop {
        CacheTop::new(next, self.count().saturating_sub(1))
    }

    /// Whether the class holds no block (its head word is 0).
    #[inline]
    pub(crate) const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The first block's header offset (0: none).
    #[inline]
    pub(crate) const fn first(self) -> u64 {
        self.0 & OFF_MASK
    }

    /// How many blocks the class holds.
    #[inline]
    pub(crate) const fn count(self) -> u64 {
        self.0 >> COUNT_SHIFT
    }

    /// Whether one more block may go on top (the count is below the cache's depth).
    #[inline]
    pub(crate) const fn has_room(self) -> bool {
        self.count() < CACHE_DEPTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_head_words_round_trip() {
        for first in [8, 16, 4096, OFF_MASK & !7] {
            for count in [1, 2, CACHE_DEPTH - 1, CACHE_DEPTH] {
                let top = CacheTop::from_word(CacheTop::new(first, count).word());
                assert_eq!((top.first(), top.count()), (first, count));
                assert!(!top.is_empty());
                assert_eq!(top.has_room(), count < CACHE_DEPTH);
            }
        }
        let empty = CacheTop::from_word(0);
        assert!(empty.is_empty() && empty.has_room());
        assert_eq!((empty.first(), empty.count()), (0, 0));
        assert_eq!(empty.pushed(24), CacheTop::new(24, 1));
        assert_eq!(CacheTop::new(24, 2).popped(32), CacheTop::new(32, 1));
    }
}
