//! Size classes: exact classes for small spans, eight per power of two above; the packed list
//! head word; the bitmap of classes that may be non-empty.

use crate::format::CLASSES;
use crate::layout::{EXACT_CLASSES, EXACT_MAX};
use crate::sync::{AtomicU64, Ordering};

const HEAD_OFF_BITS: u32 = 38;
const HEAD_OFF_MASK: u64 = (1 << HEAD_OFF_BITS) - 1;
pub(super) const HEAD_TAG_MASK: u64 = (1 << (64 - HEAD_OFF_BITS)) - 1;
// A list head addresses every header of the largest arena.
const _: () = assert!(crate::format::MAX_GROWABLE_CAPACITY <= (HEAD_OFF_MASK + 1) * 8);

/// Packs a head word: offset (bytes, a multiple of 8) and version tag.
#[inline]
pub(crate) const fn pack_head(off: u64, tag: u64) -> u64 {
    ((tag & HEAD_TAG_MASK) << HEAD_OFF_BITS) | (off / 8)
}

/// The offset a head word points at (0 = empty).
#[inline]
pub(crate) const fn head_off(h: u64) -> u64 {
    (h & HEAD_OFF_MASK) * 8
}

/// The version tag of a head word.
#[inline]
pub(crate) const fn head_tag(h: u64) -> u64 {
    h >> HEAD_OFF_BITS
}

/// The exact class of a span of `span` bytes (a multiple of 8, at least 16), or `None` above
/// [`EXACT_MAX`]. The one place that indexes exact classes: the shared lists and the per-thread
/// caches both use it.
#[inline]
pub(crate) fn exact_class(span: u64) -> Option<usize> {
    debug_assert!(span >= 16 && span % 8 == 0, "span {span}");
    (span <= EXACT_MAX).then(|| (span / 8 - 2) as usize)
}

/// The class a segment of `span` bytes is listed in.
#[inline]
pub(crate) fn class_of(span: u64) -> usize {
    debug_assert!(span >= 16 && span % 8 == 0, "span {span}");
    if let Some(c) = exact_class(span) {
        return c;
    }
    let k = 63 - span.leading_zeros() as usize; // floor(log2), >= 9
    let sub = ((span >> (k - 3)) & 7) as usize;
    (EXACT_CLASSES + (k - 9) * 8 + sub).min(CLASSES - 1)
}

/// The smallest span listed in class `c`.
#[inline]
pub(crate) fn class_min(c: usize) -> u64 {
    if c < EXACT_CLASSES {
        return (c as u64 + 2) * 8;
    }
    let i = c - EXACT_CLASSES;
    let k = 9 + i / 8;
    let sub = (i % 8) as u64;
    let m = (8 + sub) << (k - 3);
    if c == EXACT_CLASSES {
        EXACT_MAX + 8
    } else {
        m
    }
}

/// The smallest class every segment of which holds `span` bytes.
#[inline]
pub(crate) fn class_up(span: u64) -> usize {
    let c = class_of(span);
    if c < EXACT_CLASSES || class_min(c) >= span {
        c
    } else {
        (c + 1).min(CLASSES - 1)
    }
}

/// Which classes may be non-empty.
pub(crate) struct Bitmap([AtomicU64; CLASSES / 64]);

impl Bitmap {
    pub(crate) fn new() -> Bitmap {
        Bitmap(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    #[inline]
    pub(crate) fn get(&self, c: usize) -> bool {
        self.0[c / 64].load(Ordering::Relaxed) & (1 << (c % 64)) != 0
    }

    #[inline]
    pub(super) fn set(&self, c: usize) {
        if !self.get(c) {
            self.0[c / 64].fetch_or(1 << (c % 64), Ordering::Relaxed);
        }
    }

    #[inline]
    pub(super) fn clear(&self, c: usize) {
        self.0[c / 64].fetch_and(!(1 << (c % 64)), Ordering::Relaxed);
    }

    /// The first set class at or after `c`.
    pub(crate) fn first_from(&self, c: usize) -> Option<usize> {
        let mut i = c;
        while i < CLASSES {
            let w = self.0[i / 64].load(Ordering::Relaxed) >> (i % 64);
            if w != 0 {
                return Some(i + w.trailing_zeros() as usize);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_monotonic_and_cover() {
        let mut last = 0;
        let mut span = 16;
        while span < (1u64 << 36) {
            let c = class_of(span);
            assert!(c >= last, "class of {span} went down");
            assert!(
                class_min(c) <= span,
                "span {span} below its class min {}",
                class_min(c)
            );
            let up = class_up(span);
            if up < CLASSES - 1 {
                assert!(
                    class_min(up) >= span,
                    "class_up({span}) = {up} holds smaller spans"
                );
            }
            if c + 1 < CLASSES {
                assert!(
                    class_min(c + 1) > span,
                    "span {span} belongs above class {c}"
                );
            }
            last = c;
            span += if span < 4096 { 8 } else { span / 64 / 8 * 8 };
        }
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(512), 62);
        assert_eq!(class_of(520), 63);
        assert_eq!(class_of(1 << 40), CLASSES - 1);
    }

    #[test]
    fn head_packing() {
        let h = pack_head(4096 * 1000, 77);
        assert_eq!(head_off(h), 4096 * 1000);
        assert_eq!(head_tag(h), 77);
        let wrapped = pack_head(8, HEAD_TAG_MASK + 1);
        assert_eq!(head_tag(wrapped), 0);
        assert_eq!(head_off(pack_head(0, 5)), 0);
    }

    #[test]
    fn bitmap_search() {
        let b = Bitmap::new();
        assert_eq!(b.first_from(0), None);
        b.set(70);
        b.set(200);
        assert_eq!(b.first_from(0), Some(70));
        assert_eq!(b.first_from(71), Some(200));
        assert_eq!(b.first_from(201), None);
        b.clear(70);
        assert_eq!(b.first_from(0), Some(200));
    }
}
