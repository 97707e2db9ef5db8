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

/// Largest span with its own exact size class (also the largest a per-thread cache keeps).
pub(crate) const EXACT_MAX: u64 = 512;
/// Number of exact size classes: spans 16..=512 are classes 0..=62 (`freelist::exact_class`).
/// The shared free lists and the per-thread caches both have one list per exact class.
pub(crate) const EXACT_CLASSES: usize = (EXACT_MAX / WORD - 1) as usize;

/// The first length that makes a block LARGE: its LIVE word keeps its span in 4 KiB units and
/// its exact length is in its last word (`block::large_tail`).
pub(crate) const LARGE_MIN: u64 = 1 << 20;
/// A LARGE block's span is a multiple of this.
pub(crate) const LARGE_UNIT: u64 = 4096;

/// Largest length one block can hold: a LARGE span of `2^20 - 1` units of 4 KiB (the most the
/// header's 21-bit length field can say beside its LARGE flag), less its header and tail words:
/// 4 GiB - 4 KiB - 16 bytes.
pub const MAX_BLOCK_LEN: u64 = ((1 << 20) - 1) * LARGE_UNIT - 16;

/// The span of a LARGE block of `len` bytes: header, data and tail word, rounded up to 4 KiB.
#[inline]
pub(crate) const fn large_span(len: u64) -> u64 {
    (len + 16).div_ceil(LARGE_UNIT) * LARGE_UNIT
}

/// The span (header + data rounded to words) of a block holding `len` bytes, or `None` when it
/// cannot be represented. A LARGE block (`len >= LARGE_MIN`) also holds its tail word and is
/// rounded up to 4 KiB ([`large_span`]).
#[inline]
pub(crate) const fn block_span(len: u64) -> Option<u64> {
    if len >= LARGE_MIN {
        return if len <= MAX_BLOCK_LEN {
            Some(large_span(len))
        } else {
            None
        };
    }
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
        assert_eq!(block_span((1 << 20) - 1), Some((1 << 20) + 8));
        assert_eq!(block_span(1 << 20), Some((1 << 20) + 4096));
        assert_eq!(block_span(MAX_BLOCK_LEN + 1), None);
    }
}
