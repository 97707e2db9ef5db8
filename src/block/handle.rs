//! [`Handle`]: a block's data offset and generation in 8 bytes.

use super::header_word::GEN_MASK;
use crate::format::{MAX_CAPACITY, MAX_GROWABLE_CAPACITY};

/// A reference to one block: its data offset and its generation, packed in 8 bytes (the offset in
/// the arena's offset unit in the low 32 bits, the 32-bit generation in the high 32 bits).
///
/// The offset unit is 8 bytes in every arena of at most 32 GiB (every fixed arena, and a growable
/// one whose [`Options::max_capacity`](crate::Options::max_capacity) is at most 32 GiB). A growable
/// arena with a larger maximum (a *wide* arena, up to 1 TiB) uses a coarser unit of 16 to 256
/// bytes, fixed by its maximum, and aligns every block to it: [`Arena::offset_of`](crate::Arena::offset_of)
/// decodes a handle of either kind.
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
/// The offset unit of an arena of at most 32 GiB: 8 bytes.
pub(crate) const NARROW_UNIT_SHIFT: u32 = 3;
const HANDLE_OFF_MASK: u64 = (1 << HANDLE_OFF_BITS) - 1;

impl Handle {
    /// The null handle: it names no block (`to_u64() == 0`).
    pub const NULL: Handle = Handle(0);

    /// The handle of a block of a narrow arena (8-byte offset unit).
    #[cfg(any(test, feature = "testkit"))]
    #[inline]
    pub(crate) const fn new(data_offset: u64, generation: u32) -> Handle {
        Handle::in_unit(data_offset, generation, NARROW_UNIT_SHIFT)
    }

    /// The handle of the block whose data starts at `data_offset` in an arena whose offset unit
    /// is `1 << unit_shift` bytes (`Geometry::unit_shift`).
    #[inline]
    pub(crate) const fn in_unit(data_offset: u64, generation: u32, unit_shift: u32) -> Handle {
        debug_assert!(
            data_offset % (1 << unit_shift) == 0 && data_offset >> unit_shift <= HANDLE_OFF_MASK
        );
        Handle(((generation as u64) << HANDLE_OFF_BITS) | (data_offset >> unit_shift))
    }

    /// The data offset this handle names in an arena whose offset unit is `1 << unit_shift`.
    #[inline]
    pub(crate) const fn offset_in(self, unit_shift: u32) -> u64 {
        (self.0 & HANDLE_OFF_MASK) << unit_shift
    }

    /// Offset of the block's first data byte from the start of the arena, in an arena of at most
    /// 32 GiB (the offset in 8-byte units). Never 0 for a real block, so 0 can mean "null" inside
    /// user structures. In a growable arena whose maximum is above 32 GiB the offset is in that
    /// arena's coarser unit: use [`Arena::offset_of`](crate::Arena::offset_of), which decodes
    /// every arena's handles.
    #[inline]
    pub const fn offset(self) -> u64 {
        self.offset_in(NARROW_UNIT_SHIFT)
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
// Every data offset of the largest narrow arena fits a handle's offset field in 8-byte units,
// and the largest wide arena's in its unit (`format::unit_shift_for`).
const _: () = assert!(MAX_CAPACITY <= (HANDLE_OFF_MASK + 1) << NARROW_UNIT_SHIFT);
const _: () = assert!(
    MAX_GROWABLE_CAPACITY
        <= (HANDLE_OFF_MASK + 1) << crate::format::unit_shift_for(MAX_GROWABLE_CAPACITY)
);

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
        // A wide arena's unit: the last unit of 1 TiB round-trips, and the 8-byte decode of
        // the same handle is not it.
        let shift = crate::format::unit_shift_for(MAX_GROWABLE_CAPACITY);
        assert_eq!(shift, 8);
        let wide = Handle::in_unit(MAX_GROWABLE_CAPACITY - 256, 9, shift);
        assert_eq!(wide.offset_in(shift), MAX_GROWABLE_CAPACITY - 256);
        assert_eq!(wide.generation(), 9);
        assert_ne!(wide.offset(), wide.offset_in(shift));
    }
}
