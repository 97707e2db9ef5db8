//! Offset and size arithmetic. Every computation that could overflow is checked here, so no
//! wrapped value ever reaches memory.

/// Every block header, block and segment starts at a multiple of this.
pub(crate) const WORD: u64 = 8;

/// The largest alignment `alloc_layout` accepts: the page size parena assumes.
pub const MAX_ALIGN: usize = 4096;

/// Rounds `x` up to a multiple of `align` (a power of two), or `None` on overflow.
#[inline]
pub(crate) const fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// The span (header + data rounded to words) of a block holding `len` bytes, or `None` when it
/// cannot be represented.
#[inline]
pub(crate) const fn block_span(len: u64) -> Option<u64> {
    match align_up(len, WORD) {
        Some(d) => d.checked_add(WORD),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_math() {
        assert_eq!(align_up(0, 8), Some(0));
        assert_eq!(align_up(1, 8), Some(8));
        assert_eq!(align_up(8, 8), Some(8));
        assert_eq!(align_up(u64::MAX, 8), None);
        assert_eq!(block_span(1), Some(16));
        assert_eq!(block_span(8), Some(16));
        assert_eq!(block_span(9), Some(24));
        assert_eq!(block_span(u64::MAX), None);
        assert_eq!(block_span(u64::MAX - 7), None);
    }
}
