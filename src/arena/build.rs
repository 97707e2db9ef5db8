//! The builder's terminal calls (`Options::heap`, `map_anon`, `simulated_disk`, `map_file`) and
//! the geometry the options ask for; the create and open paths they call are in `open.rs`.

use super::open::random_id;
use super::Arena;
use crate::backing::BackingKind;
use crate::error::Error;
use crate::format::{
    self, Geometry, DATA_ALIGN, MAX_CAPACITY, MAX_CHUNK_SHIFT, MAX_GROWABLE_CAPACITY,
    MIN_CHUNK_SHIFT,
};
use crate::layout::align_up;
use crate::options::{Options, DEFAULT_CAPACITY};
#[cfg(feature = "testkit")]
use crate::sync::Arc;
use std::path::Path;

impl Geometry {
    pub(super) fn from_options(o: &Options, capacity: u64) -> Result<Geometry, Error> {
        let reserved = o.reserved.unwrap_or(0);
        let max_capacity = requested_max_capacity(o)?;
        let data_start = Geometry::data_start_for(reserved, max_capacity);
        if max_capacity != 0 && max_capacity < capacity {
            return Err(Error::MaxCapacity {
                requested: o.max_capacity.unwrap_or(max_capacity),
                min: capacity,
                max: MAX_GROWABLE_CAPACITY,
            });
        }
        if capacity > largest_capacity(max_capacity)
            || capacity < data_start + format::heap_minimum(capacity, max_capacity)
        {
            return Err(capacity_error(o, o.capacity.unwrap_or(capacity)));
        }
        let heap = format::heap_end(capacity, max_capacity) - data_start;
        let chunk_shift = match o.chunk_size {
            Some(c) => {
                let c = u64::from(c);
                if !c.is_power_of_two()
                    || !(1 << MIN_CHUNK_SHIFT..=1 << MAX_CHUNK_SHIFT).contains(&c)
                {
                    return Err(Error::ChunkSize {
                        requested: c,
                        min: 1 << MIN_CHUNK_SHIFT,
                        max: 1 << MAX_CHUNK_SHIFT,
                    });
                }
                c.trailing_zeros() as u8
            }
            None => {
                let per_thread = (heap / 64).max(1);
                (63 - per_thread.leading_zeros() as u8).clamp(MIN_CHUNK_SHIFT, 16)
            }
        };
        let min_segment = o.min_segment_size.clamp(16, 1 << 20).div_ceil(8) * 8;
        Ok(Geometry {
            magic_version: o.magic_version,
            freelist: o.freelist.unwrap_or_default(),
            chunk_shift,
            reserved_len: reserved,
            min_segment,
            data_start,
            arena_id: random_id(),
            max_capacity,
        })
    }
}

/// The capacity a create asks for: `Options::capacity`, rounded up to a page; without it the
/// default, or `max_capacity` when that is smaller.
pub(super) fn requested_capacity(o: &Options) -> Result<u64, Error> {
    let c = o.capacity.unwrap_or(match o.max_capacity {
        Some(m) => DEFAULT_CAPACITY.min(m),
        None => DEFAULT_CAPACITY,
    });
    align_up(c, DATA_ALIGN).ok_or_else(|| capacity_error(o, c))
}

/// `Options::max_capacity` rounded up to a page, checked against the largest arena; 0 when it is
/// not set (a fixed layout).
pub(super) fn requested_max_capacity(o: &Options) -> Result<u64, Error> {
    let Some(m) = o.max_capacity else {
        return Ok(0);
    };
    match align_up(m, DATA_ALIGN) {
        Some(a) if a != 0 && a <= MAX_GROWABLE_CAPACITY => Ok(a),
        _ => Err(Error::MaxCapacity {
            requested: m,
            min: o.capacity.unwrap_or(0),
            max: MAX_GROWABLE_CAPACITY,
        }),
    }
}

/// [`Error::Capacity`] for `requested` bytes, with the bounds that apply to options `o`.
pub(crate) fn capacity_error(o: &Options, requested: u64) -> Error {
    let max_capacity = requested_max_capacity(o).unwrap_or(0);
    let data_start = Geometry::data_start_for(o.reserved.unwrap_or(0), max_capacity);
    // The smallest capacity that holds the header, the reserved area, the maps and a chunk (the
    // map region grows with the capacity, so step up to it).
    let max = largest_capacity(max_capacity);
    let mut min = data_start;
    while min < data_start + format::heap_minimum(min, max_capacity) && min < max {
        min += DATA_ALIGN;
    }
    Error::Capacity {
        requested,
        min,
        max,
    }
}

/// The largest capacity an arena can have: 32 GiB for a fixed layout (`max_capacity` 0), its
/// maximum for a growable one (at most 1 TiB; docs/metadata.md, 12.3).
pub(crate) const fn largest_capacity(max_capacity: u64) -> u64 {
    if max_capacity == 0 {
        MAX_CAPACITY
    } else {
        max_capacity
    }
}

/// The ways to create or open an arena (the builder's terminal calls).
impl Options {
    /// An arena in an aligned heap buffer.
    ///
    /// # Errors
    /// [`Error::Capacity`] when the capacity cannot hold the header and a heap, or is above
    /// its largest (32 GiB, or the maximum of a growable arena); [`Error::ChunkSize`];
    /// [`Error::NoMemory`] when the allocation fails.
    pub fn heap(&self) -> Result<Arena, Error> {
        self.no_offset(BackingKind::Heap)?;
        self.with_map_settings(Arena::create_in_memory(self, false)?)
    }

    /// An arena in an anonymous memory map.
    ///
    /// # Errors
    /// As [`Options::heap`]; [`Error::NoMemory`] when the system refuses a map that large;
    /// [`Error::Io`] when the map fails otherwise.
    pub fn map_anon(&self) -> Result<Arena, Error> {
        self.no_offset(BackingKind::Anon)?;
        if self.map.remove_on_drop {
            return Err(Error::Unsupported {
                option: "remove_on_drop",
                backing: crate::BackingKind::Anon,
            });
        }
        self.with_map_settings(Arena::create_in_memory(self, true)?)
    }

    /// A heap arena on a simulated disk that records what `flush` made durable, and can produce
    /// the image a power cut would leave ([`crate::SimDisk::crash_image`]). For tests.
    ///
    /// # Errors
    /// As [`Options::heap`].
    #[cfg(feature = "testkit")]
    #[doc(hidden)]
    pub fn simulated_disk(&self) -> Result<(Arena, Arc<crate::backing::SimDisk>), Error> {
        Arena::create_simulated(self)
    }

    /// Creates the arena file at `path`, or opens it, validates it, and recovers it when its last
    /// writer did not close it cleanly.
    ///
    /// # Errors
    /// [`Error::Open`] (naming the path) when the file cannot be opened or created; a typed error
    /// per header check; [`Error::Locked`] when another writer has it; [`Error::NoSpace`] when the
    /// disk cannot hold it; [`Error::Capacity`], [`Error::ChunkSize`] and [`Error::Offset`] for
    /// options that can make no arena. A file that fails validation is not modified, and a file
    /// this call created is removed again when the create fails.
    ///
    /// # Safety
    /// The arena maps the file: its bytes are read and written as memory. The caller must make
    /// sure no other process (or code outside this arena) modifies or truncates the file while it
    /// is mapped; parena's lock keeps other parena writers out, but not other programs. Truncating
    /// a mapped file makes accesses raise `SIGBUS`.
    pub unsafe fn map_file(&self, path: impl AsRef<Path>) -> Result<Arena, Error> {
        self.with_map_settings(Arena::open_file(self, path.as_ref())?)
    }

    /// `Options::offset` is for file arenas only.
    fn no_offset(&self, backing: BackingKind) -> Result<(), Error> {
        if self.offset != 0 {
            return Err(Error::Unsupported {
                option: "offset",
                backing,
            });
        }
        Ok(())
    }

    /// Applies the map settings (`populate`, `huge_pages`, `lock_memory`, `remove_on_drop`) to a
    /// freshly opened arena; on failure the arena is dropped (closed as usual) and the error
    /// returned.
    pub(crate) fn with_map_settings(&self, arena: Arena) -> Result<Arena, Error> {
        arena.inner.mem.apply(self.map)?;
        Ok(arena)
    }
}
