//! The chunk grid: the heap is cut into chunks at the fixed lines `data_start + k * chunk`
//! (src/heap/chunks.rs). Every place that needs a line of the grid asks here.

use super::Geometry;

impl Geometry {
    /// The first line of the chunk grid at or after `off` (`off` itself when it lies on the grid);
    /// `None` when it does not fit in 64 bits. `off` is at or past `data_start`.
    #[inline]
    pub(crate) fn chunk_line_from(&self, off: u64) -> Option<u64> {
        debug_assert!(off >= self.data_start);
        let chunk = self.chunk();
        let k = (off - self.data_start).div_ceil(chunk);
        k.checked_mul(chunk)?.checked_add(self.data_start)
    }

    /// The first line of the chunk grid after `off`: where a never-used chunk tail that starts at
    /// `off` ends (saturating at `u64::MAX`).
    #[inline]
    pub(crate) fn chunk_line_after(&self, off: u64) -> u64 {
        off.checked_add(1)
            .and_then(|o| self.chunk_line_from(o))
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use crate::format::{Freelist, Geometry};

    #[test]
    fn lines_of_the_grid() {
        let g = Geometry {
            magic_version: 0,
            freelist: Freelist::Optimistic,
            chunk_shift: 12,
            reserved_len: 0,
            min_segment: 32,
            data_start: 8192,
            arena_id: 1,
            max_capacity: 0,
        };
        assert_eq!(g.chunk_line_from(8192), Some(8192));
        assert_eq!(g.chunk_line_from(8200), Some(12288));
        assert_eq!(g.chunk_line_from(12288), Some(12288));
        assert_eq!(g.chunk_line_after(8192), 12288);
        assert_eq!(g.chunk_line_after(12280), 12288);
        assert_eq!(g.chunk_line_after(12288), 16384);
        assert_eq!(g.chunk_line_from(u64::MAX - 8), None);
        assert_eq!(g.chunk_line_after(u64::MAX - 8), u64::MAX);
    }
}
