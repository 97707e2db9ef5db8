//! `MapGeom`: where the four bitmaps of the start map and the flush maps lie in an arena of a
//! given capacity (at its end, or in a growable arena in front of its heap), where each map's word
//! for an offset is, and where the heap ends.

use crate::format::{map_region_len, Geometry};
use crate::layout::WORD;

/// Bytes of arena one bitmap word covers.
pub(crate) const WORD_COVERS: u64 = 64 * WORD;

/// Where the four bitmaps of an arena of a given capacity lie, and where its heap ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MapGeom {
    /// First byte of the map region (in a fixed layout also the end of the heap).
    pub base: u64,
    /// Words in each bitmap.
    pub words: u64,
    /// End of the heap at the capacity this was built for: `base` in a fixed layout, the capacity
    /// in a growable one (whose maps lie in front of the heap; docs/metadata.md, 12.1). An open
    /// growable arena's end moves: it keeps it in an atomic word, and this value is only the end
    /// as of the capacity the caller named.
    end: u64,
}

impl MapGeom {
    /// The maps of an arena of `capacity` bytes (a multiple of 4096) in the fixed layout: at the
    /// end of the arena.
    pub(crate) const fn for_capacity(capacity: u64) -> MapGeom {
        let words = capacity.div_ceil(WORD_COVERS);
        let base = capacity - Self::region_len(capacity);
        MapGeom {
            base,
            words,
            end: base,
        }
    }

    /// The maps of the arena of geometry `g` at `capacity` bytes: the fixed layout's, or a
    /// growable arena's, which lie after the reserved area and cover `g.max_capacity`.
    pub(crate) const fn of(g: &Geometry, capacity: u64) -> MapGeom {
        if !g.growable() {
            return MapGeom::for_capacity(capacity);
        }
        MapGeom {
            base: Geometry::maps_start(g.reserved_len),
            words: g.max_capacity.div_ceil(WORD_COVERS),
            end: capacity,
        }
    }

    /// Bytes of the map region for an arena of `capacity` bytes: four bitmaps, rounded up to a
    /// page.
    pub(crate) const fn region_len(capacity: u64) -> u64 {
        map_region_len(capacity)
    }

    /// End of the heap at the capacity this was built for (see the field `end`).
    #[inline]
    pub(crate) const fn heap_end(&self) -> u64 {
        self.end
    }

    /// Byte offset of the owner map's word covering `off`.
    #[inline]
    pub(crate) const fn owner_word(&self, off: u64) -> u64 {
        self.base + (off / WORD_COVERS) * WORD
    }

    /// Byte offset of the shared map's word covering `off`.
    #[inline]
    pub(crate) const fn shared_word(&self, off: u64) -> u64 {
        self.base + (self.words + off / WORD_COVERS) * WORD
    }

    /// Byte offset of flush map `which`'s (0 or 1) word number `i`.
    #[inline]
    pub(crate) const fn flushed_word_at(&self, which: u64, i: u64) -> u64 {
        self.base + ((2 + which) * self.words + i) * WORD
    }

    /// Byte range `(offset, len)` of flush map `which`'s words covering `0..end`.
    pub(crate) const fn flushed_range(&self, which: u64, end: u64) -> (u64, u64) {
        (
            self.flushed_word_at(which, 0),
            end.div_ceil(WORD_COVERS) * WORD,
        )
    }

    /// Byte ranges `(offset, len)` of the four maps' words covering `from..to` (at most `words`
    /// words each): what a sparse arena reserves on disk before the words may be written.
    pub(crate) const fn word_ranges(&self, from: u64, to: u64) -> [(u64, u64); 4] {
        let first = from / WORD_COVERS;
        let mut last = to.div_ceil(WORD_COVERS);
        if last > self.words {
            last = self.words;
        }
        let len = last.saturating_sub(first) * WORD;
        [
            (self.base + first * WORD, len),
            (self.base + (self.words + first) * WORD, len),
            (self.flushed_word_at(0, first), len),
            (self.flushed_word_at(1, first), len),
        ]
    }

    /// Byte ranges of the owner and shared maps covering `0..end`, for a flush.
    pub(crate) const fn start_ranges(&self, end: u64) -> [(u64, u64); 2] {
        let len = end.div_ceil(WORD_COVERS) * WORD;
        [(self.base, len), (self.base + self.words * WORD, len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    #[test]
    fn geometry_fits_inside_the_capacity() {
        for cap in [8192u64, 64 << 10, 1 << 20, 4 << 20, 1 << 30, 1 << 41] {
            let m = MapGeom::for_capacity(cap);
            assert_eq!(m.base % PAGE, 0);
            assert!(m.words * WORD_COVERS >= cap);
            assert!(m.flushed_word_at(1, m.words - 1) + WORD <= cap);
            assert!(m.owner_word(m.base - 8) < m.shared_word(0));
            assert_eq!(MapGeom::region_len(cap), cap - m.base);
        }
    }
}
