//! Parse, then validate: a header's bytes become a [`RawHeader`], each field is checked, and only
//! then does the arena trust its [`Geometry`].

use super::{
    fnv1a, fnv1a_more, heap_end, heap_minimum, state_checksum, Freelist, Geometry, Meta, RawHeader,
    DATA_ALIGN, FORMAT_VERSION, GROWABLE_FORMAT_VERSION, HEADER_SIZE, IMMUTABLE_END, MAGIC,
    MAX_CAPACITY, MAX_CHUNK_SHIFT, MAX_GROWABLE_CAPACITY, MIN_CHUNK_SHIFT, OFF_CAPACITY,
    SEALED_END, STATE_CLEAN, STATE_DIRTY,
};
use crate::error::Error;
use bytemuck::Zeroable;

impl RawHeader {
    /// A fresh header for an arena of `capacity` bytes.
    pub(crate) fn new(g: &Geometry, capacity: u64) -> RawHeader {
        let mut h = RawHeader::zeroed();
        h.magic = MAGIC;
        h.format_version = if g.growable() {
            GROWABLE_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        };
        h.max_capacity = g.max_capacity;
        h.magic_version = g.magic_version;
        h.freelist = g.freelist as u8;
        h.chunk_shift = g.chunk_shift;
        h.reserved_len = g.reserved_len;
        h.min_segment = g.min_segment;
        h.data_start = g.data_start;
        h.arena_id = g.arena_id;
        h.header_checksum = h.compute_header_checksum();
        h.capacity = capacity;
        h.state = STATE_CLEAN;
        h.bump = g.data_start;
        h.high_water = g.data_start;
        // The generation counter starts at the arena's random id, so two arenas hand out different
        // generations from their first block on: a handle of one arena is refused by another
        // unless their counters meet (probability about 2^-32 per handle; docs/design.md).
        h.gen_seed = g.arena_id;
        for (slot, r) in h.roots.iter_mut().enumerate() {
            *r = [0, super::settled_root_check(slot, 0)];
        }
        let first = Meta {
            epoch: 1,
            map: 0,
            capacity,
            bump: h.bump,
            high_water: h.high_water,
            discarded: 0,
            gen_seed: h.gen_seed,
        };
        h.meta[0][..8].copy_from_slice(&first.encode(0));
        // A new reserved area reads zero.
        h.state_checksum = h.compute_state_checksum(&vec![0; g.reserved_len as usize]);
        h
    }

    /// The `max_capacity` the layout is built for: the word in a version 5 header, 0 (a fixed
    /// layout) otherwise.
    pub(crate) fn layout_max(&self) -> u64 {
        if self.format_version == GROWABLE_FORMAT_VERSION {
            self.max_capacity
        } else {
            0
        }
    }

    /// The valid meta slot with the larger epoch, if any.
    pub(crate) fn newest_meta(&self) -> Option<Meta> {
        (0..2)
            .filter_map(|slot| {
                let mut w = [0u64; 8];
                w.copy_from_slice(&self.meta[slot][..8]);
                Meta::decode(&w, slot as u64)
            })
            .max_by_key(|m| m.epoch)
    }

    /// Parses the first `HEADER_SIZE` bytes. Nothing is checked yet.
    pub(crate) fn parse(bytes: &[u8]) -> RawHeader {
        debug_assert!(bytes.len() >= HEADER_SIZE as usize);
        bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE as usize])
    }

    /// The unchanging fields' checksum: bytes `0..40`, and in a growable arena (version 5) the
    /// `max_capacity` word after them.
    pub(crate) fn compute_header_checksum(&self) -> u64 {
        let h = fnv1a(&bytemuck::bytes_of(self)[..IMMUTABLE_END]);
        if self.format_version == GROWABLE_FORMAT_VERSION {
            fnv1a_more(h, &self.max_capacity.to_le_bytes())
        } else {
            h
        }
    }

    /// The checksum a clean close seals over this header and the reserved area `reserved`.
    pub(crate) fn compute_state_checksum(&self, reserved: &[u8]) -> u64 {
        let bytes = bytemuck::bytes_of(self);
        state_checksum(
            (OFF_CAPACITY..SEALED_END).step_by(8).map(|off| {
                let o = off as usize;
                let mut w = [0u8; 8];
                w.copy_from_slice(&bytes[o..o + 8]);
                (off, u64::from_le_bytes(w))
            }),
            reserved,
        )
    }

    /// Checks every field, in the order that gives the most useful error, against a storage of
    /// `storage_len` bytes whose reserved area holds `reserved` (the bytes after the header, as
    /// many as the header says; the seal covers them). Reads only; the storage is never touched
    /// here.
    pub(crate) fn validate(&self, storage_len: u64, reserved: &[u8]) -> Result<Validated, Error> {
        if self.magic != MAGIC {
            return Err(Error::Magic { found: self.magic });
        }
        if self.format_version != FORMAT_VERSION && self.format_version != GROWABLE_FORMAT_VERSION {
            return Err(Error::Version {
                expected: FORMAT_VERSION,
                found: self.format_version,
            });
        }
        let computed = self.compute_header_checksum();
        if computed != self.header_checksum {
            return Err(Error::Checksum {
                expected: self.header_checksum,
                found: computed,
            });
        }
        let freelist = Freelist::from_u8(self.freelist).ok_or(Error::FreelistKind {
            expected: 255,
            found: self.freelist,
        })?;
        if !(MIN_CHUNK_SHIFT..=MAX_CHUNK_SHIFT).contains(&self.chunk_shift) {
            return Err(Error::Size {
                field: "chunk_shift",
                value: self.chunk_shift.into(),
            });
        }
        let max = if self.format_version == GROWABLE_FORMAT_VERSION {
            let m = self.max_capacity;
            if m == 0 || m % DATA_ALIGN != 0 || m > MAX_GROWABLE_CAPACITY {
                return Err(Error::Size {
                    field: "max_capacity",
                    value: m,
                });
            }
            m
        } else {
            0
        };
        if self.data_start != Geometry::data_start_for(self.reserved_len, max) {
            return Err(Error::Size {
                field: "data_start",
                value: self.data_start,
            });
        }
        if self.min_segment < 16 || self.min_segment % 8 != 0 {
            return Err(Error::Size {
                field: "min_segment",
                value: self.min_segment.into(),
            });
        }
        let cap = self.capacity;
        if cap % DATA_ALIGN != 0
            || cap > if max == 0 { MAX_CAPACITY } else { max }
            || cap < self.data_start + heap_minimum(cap, max)
        {
            return Err(Error::Size {
                field: "capacity",
                value: cap,
            });
        }
        if cap > storage_len {
            return Err(Error::Truncated {
                expected: cap,
                found: storage_len,
            });
        }
        if self.bump < self.data_start || self.bump > heap_end(cap, max) || self.bump % 8 != 0 {
            return Err(Error::Bump {
                bump: self.bump,
                capacity: cap,
            });
        }
        let (clean, damaged) = match self.state {
            STATE_CLEAN => {
                let found = self.compute_state_checksum(reserved);
                if found == self.state_checksum {
                    (true, None)
                } else {
                    // A clean close writes the checksum before the CLEAN word and makes both
                    // durable together; a crash never leaves CLEAN over words that do not match.
                    (
                        false,
                        Some(Damage {
                            expected: self.state_checksum,
                            found,
                        }),
                    )
                }
            }
            STATE_DIRTY => (false, None),
            found => return Err(Error::State { found }),
        };
        let g = Geometry {
            magic_version: self.magic_version,
            freelist,
            chunk_shift: self.chunk_shift,
            reserved_len: self.reserved_len,
            min_segment: self.min_segment,
            data_start: self.data_start,
            arena_id: self.arena_id,
            max_capacity: max,
        };
        Ok(Validated {
            geometry: g,
            capacity: cap,
            clean,
            damaged,
        })
    }
}

/// What validation learned.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Validated {
    pub geometry: Geometry,
    pub capacity: u64,
    /// The state word says CLEAN and the header page and reserved area match their checksum:
    /// the open trusts the header (O(1)).
    pub clean: bool,
    /// The state word says CLEAN but the checksum does not match: damage (a crash cannot leave
    /// this), reported, and the header's words are not trusted.
    pub damaged: Option<Damage>,
}

/// A sealed header whose checksum does not match: the stored and the computed checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Damage {
    pub expected: u64,
    pub found: u64,
}

#[cfg(not(target_endian = "little"))]
compile_error!("parena's on-disk format is little-endian and it maps it in place");
