//! The layout arithmetic of one arena: where its maps and its heap lie for a capacity and a
//! largest capacity, and `Geometry`, the facts of a header that never change while it is open.

use super::{unit_shift_for, Freelist, DATA_ALIGN, HEADER_SIZE, MIN_CHUNK_SHIFT};

/// Bytes of the map region at the end of an arena of `capacity` bytes: four bitmaps of one bit
/// per 8 bytes of the arena, rounded up to a page (`heap/startmap.rs`).
pub(crate) const fn map_region_len(capacity: u64) -> u64 {
    (capacity.div_ceil(512) * 8 * 4).div_ceil(DATA_ALIGN) * DATA_ALIGN
}

/// End of the heap of an arena of `capacity` bytes whose largest capacity is `max_capacity` (0:
/// a fixed layout, whose maps begin there; a growable arena's heap ends at its capacity).
pub(crate) const fn heap_end(capacity: u64, max_capacity: u64) -> u64 {
    if max_capacity == 0 {
        capacity - map_region_len(capacity)
    } else {
        capacity
    }
}

/// The least an arena of `capacity` bytes needs after `data_start`: its maps (a fixed layout's;
/// a growable arena's are before `data_start`) and one smallest chunk of heap.
pub(crate) const fn heap_minimum(capacity: u64, max_capacity: u64) -> u64 {
    if max_capacity == 0 {
        map_region_len(capacity) + (1 << MIN_CHUNK_SHIFT)
    } else {
        1 << MIN_CHUNK_SHIFT
    }
}

/// The facts of a header that passed validation and never change while the arena is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub magic_version: u16,
    pub freelist: Freelist,
    pub chunk_shift: u8,
    pub reserved_len: u32,
    pub min_segment: u32,
    pub data_start: u64,
    pub arena_id: u64,
    /// The largest capacity of a growable arena (format version 5); 0 for a fixed layout.
    pub max_capacity: u64,
}

impl Geometry {
    /// `data_start` for a reserved area of `reserved` bytes in an arena whose largest capacity is
    /// `max_capacity` (0: a fixed layout).
    pub(crate) const fn data_start_for(reserved: u32, max_capacity: u64) -> u64 {
        Geometry::maps_start(reserved) + map_region_len(max_capacity)
    }

    /// The first page after the header and a reserved area of `reserved` bytes: a fixed layout's
    /// `data_start`, a growable one's first map byte.
    pub(crate) const fn maps_start(reserved: u32) -> u64 {
        (HEADER_SIZE + reserved as u64).div_ceil(DATA_ALIGN) * DATA_ALIGN
    }

    /// Whether this arena can grow while open (format version 5).
    #[inline]
    pub(crate) const fn growable(&self) -> bool {
        self.max_capacity != 0
    }

    /// The arena's offset unit as a shift: 3 (8 bytes) unless it is a wide arena (docs/metadata.md,
    /// 12.3).
    #[inline]
    pub(crate) const fn unit_shift(&self) -> u32 {
        unit_shift_for(self.max_capacity)
    }

    /// Chunk size in bytes.
    #[inline]
    pub(crate) fn chunk(&self) -> u64 {
        1 << self.chunk_shift
    }
}
