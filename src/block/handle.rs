//! [`Handle`]: a block's data offset and generation in 8 bytes.

use super::header_word::GEN_MASK;
use crate::format::MAX_CAPACITY;

/// A reference to one block: its data offset and its generation, packed in 8 bytes (the offset in
/// 8-byte units in the low 32 bits, the 32-bit generation in the high 32 bits).
///
/// `Copy`, `bytemuck::Pod` and stable across reopen, so it can be stored inside the arena (or
/// anywhere else) and used after a restart. Every access checks the generation against the block's
/// header, so a handle to a block that was freed (and perhaps reused) is refused with
/// [`crate::Error::Stale`] instead of reading another block's bytes.
///
/// ```
/// use parena::{Handle, Options};
/// let arena = Options::new().capacity(1 << 20).heap()?;
/// let h = arena.alloc(16)?.handle();
/// assert_eq!(Handle::from_u64(h.to_u64()), h);
/// assert!(h.offset() > 0);
/// # Ok::<(), parena::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
#[must_use = "a block's handle is the only way to reach or free it: dropping it leaks the block"]
pub struct Handle(u64);

const HANDLE_OFF_BITS: u32 = 32;
const HANDLE_OFF_MASK: u64 = (1 << HANDLE_OFF_BITS) - 1;

impl Handle {
    /// The null handle: it names no block (`to_u64() == 0`).
    pub const NULL: Handle = Handle(0);

    #[inline]
    pub(crate) const fn new(data_offset: u64, generation: u32) -> Handle {
        debug_assert!(data_offset % 8 == 0 && data_offset / 8 <= HANDLE_OFF_MASK);
        Handle(((generation as u64) << HANDLE_OFF_BITS) | (data_offset / 8))
    }

    /// Offset of the block's first data byte from the start of the arena. Never 0 for a real block,
    /// so 0 can mean "null" inside user structures.
    #[inline]
    pub const fn offset(self) -> u64 {
        (self.0 & HANDLE_OFF_MASK) * 8
    }

    /// The generation the handle was issued with.
    #[inline]
    pub const fn generation(self) -> u32 {
        ((self.0 >> HANDLE_OFF_BITS) & GEN_MASK) as u32
    }

    /// The packed form, for storing the handle as a plain `u64`.
    #[inline]
    pub const fn to_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a handle from [`Handle::to_u64`]. Any value is accepted; a value that does not name a
    /// live block is refused when used.
    #[inline]
    pub const fn from_u64(v: u64) -> Handle {
        Handle(v)
    }

    /// Whether this is [`Handle::NULL`].
    #[inline]
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Handle(offset {}, generation {})",
            self.offset(),
            self.generation()
        )
    }
}

// ---- Generations: minted from the header's counter (`OFF_GEN_SEED`), used by allocation,
// release and recovery alike.
// Every data offset of the largest arena fits a handle's offset field.
const _: () = assert!(MAX_CAPACITY <= (HANDLE_OFF_MASK + 1) * 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_packing() {
        let h = Handle::new(4104, 77);
        assert_eq!(h.offset(), 4104);
        assert_eq!(h.generation(), 77);
        assert_eq!(Handle::from_u64(h.to_u64()), h);
        let far = Handle::new(MAX_CAPACITY - 8, u32::MAX);
        assert_eq!(far.offset(), MAX_CAPACITY - 8);
        assert_eq!(far.generation(), u32::MAX);
        assert_eq!(Handle::from_u64(far.to_u64()), far);
        assert!(Handle::NULL.is_null());
    }
}
