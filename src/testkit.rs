//! Not part of the API; no semver guarantee; for parena's own tests and fuzz targets.
//!
//! The on-disk layout and the packed words are private to the crate. Tests that build or patch
//! arena files (the `open_bytes` fuzz target, the regression tests) and tests that forge handles
//! need a few of those facts; this module hands them out as thin wrappers over the crate's own
//! definitions (`crate::format`, `crate::block`), so there is one copy of each. The shared model,
//! the byte patterns and the checks built on them live in the `parena-testkit` path crate.

use crate::block::{self, Handle, LiveState};
use crate::format::{self, RawHeader};
use std::mem::offset_of;

/// Bytes of the fixed header.
pub const HEADER_SIZE: usize = format::HEADER_SIZE as usize;
/// Offset of the header checksum; it covers the bytes before it.
pub const OFF_HEADER_CHECKSUM: usize = offset_of!(RawHeader, header_checksum);
/// Offset of the capacity word, the first mutable word (and the first the state checksum covers).
pub const OFF_CAPACITY: usize = format::OFF_CAPACITY as usize;
/// Offset of the clean/dirty state word.
pub const OFF_STATE: usize = format::OFF_STATE as usize;
/// Offset of the state checksum.
pub const OFF_STATE_CHECKSUM: usize = format::OFF_STATE_CHECKSUM as usize;
/// Offset of the bump offset word.
pub const OFF_BUMP: usize = format::OFF_BUMP as usize;
/// Offset of the generation counter.
pub const OFF_GEN_SEED: usize = format::OFF_GEN_SEED as usize;
/// Offset of the root slots.
pub const OFF_ROOTS: usize = format::OFF_ROOTS as usize;
/// Bytes of one root slot, from one root's value to the next one's.
pub const ROOT_SLOT_BYTES: usize = format::ROOT_SLOT_BYTES as usize;
/// End of the header words the state checksum covers (the reserved area's bytes follow them).
pub const HEAP_META_END: usize = format::SEALED_END as usize;
/// The state word of a cleanly closed arena.
pub const STATE_CLEAN: u64 = format::STATE_CLEAN;
/// The state word of an arena that is open (or was not closed cleanly).
pub const STATE_DIRTY: u64 = format::STATE_DIRTY;

/// Offsets of the header words parena keeps zero (in a fixed-layout arena, version 4): the spare
/// word (a growable arena's `max_capacity`) and the old roots' words, each
/// meta slot's unused words, the padding.
pub fn spare_word_offsets() -> Vec<usize> {
    let spare = offset_of!(RawHeader, max_capacity);
    let old_roots = offset_of!(RawHeader, spare_roots);
    let meta = offset_of!(RawHeader, meta);
    let padding = offset_of!(RawHeader, padding);
    let slot = format::META_SLOT_WORDS * 8;
    std::iter::once(spare)
        .chain((old_roots..old_roots + format::ROOT_SLOTS * 8).step_by(8))
        .chain((0..2).flat_map(|s| (meta + s * slot + 64..meta + (s + 1) * slot).step_by(8)))
        .chain((padding..HEADER_SIZE).step_by(8))
        .collect()
}

/// FNV-1a 64, the checksum of the header.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    format::fnv1a(bytes)
}

/// Recomputes the header checksum of an arena file after its first bytes were edited, so the
/// immutable fields validate. Files too short to hold it are left alone.
pub fn reseal_header_checksum(file: &mut [u8]) {
    const END: usize = OFF_HEADER_CHECKSUM + 8;
    if file.len() >= END {
        let sum = fnv1a(&file[..OFF_HEADER_CHECKSUM]);
        file[OFF_HEADER_CHECKSUM..END].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Recomputes the state checksum of an arena file after its mutable words were edited, so a
/// CLEAN state word is believed. Files too short to hold the words it covers are left alone.
pub fn reseal_state_checksum(file: &mut [u8]) {
    if file.len() >= HEAP_META_END {
        let words = (OFF_CAPACITY..HEAP_META_END).step_by(8).map(|off| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&file[off..off + 8]);
            (off as u64, u64::from_le_bytes(w))
        });
        // The reserved area, as far as the file holds it.
        let len = u32::from_le_bytes([file[16], file[17], file[18], file[19]]) as usize;
        let reserved = &file[HEADER_SIZE.min(file.len())..(HEADER_SIZE + len).min(file.len())];
        let sum = format::state_checksum(words, reserved);
        file[OFF_STATE_CHECKSUM..OFF_STATE_CHECKSUM + 8].copy_from_slice(&sum.to_le_bytes());
    }
}

/// Reseals both header checksums after editing bytes: the file is then trusted as clean (when
/// its state word says CLEAN).
pub fn reseal_header(file: &mut [u8]) {
    reseal_header_checksum(file);
    reseal_state_checksum(file);
}

/// A handle with these bits: the data offset (a multiple of 8) and the generation, each cut to
/// the width the handle keeps, packed as the crate packs real handles. It need not name a block.
pub fn forge_handle(offset: u64, generation: u32) -> Handle {
    let all = Handle::from_u64(u64::MAX);
    Handle::new(offset & all.offset(), generation & all.generation())
}

/// The smallest capacity whose heap, after a `data_start` of `data_start` bytes, holds at least
/// `heap` bytes (the start and flush maps take the end of the arena: docs/format.md).
pub fn capacity_for_heap(data_start: u64, heap: u64) -> u64 {
    let mut c = (data_start + heap).div_ceil(4096) * 4096;
    while format::heap_end(c, 0) < data_start + heap {
        c += 4096;
    }
    c
}

/// The arena offset of a pointer into `arena` (a block the allocator interfaces handed out).
pub fn offset_of_ptr(arena: &crate::Arena, p: *const u8) -> u64 {
    (p.addr() - arena.data_ptr(0).addr()) as u64
}

/// Whether `p` points into `arena`'s heap (how `GlobalArena` routes a pointer it is given back).
pub fn owns_ptr(arena: &crate::Arena, p: *const u8) -> bool {
    arena.owns(p)
}

/// The most readers a block header can count.
pub const MAX_READERS: u64 = block::MAX_READERS;

/// A LIVE, published block header word of `len` bytes, generation `generation`, `readers`
/// readers.
pub fn live_word(len: u64, generation: u32, readers: u64) -> u64 {
    block::live(len, generation, LiveState::Published, readers)
}

/// The same LIVE header word with its reader count set to `readers` (at most [`MAX_READERS`]).
pub fn with_readers(word: u64, readers: u64) -> u64 {
    debug_assert!(readers <= MAX_READERS, "{readers} readers do not fit");
    block::BlockHeader(word).with_readers(readers).0
}

/// A FREE header word with this generation (its low 21 bits, as stored) and `next` link, check
/// code included.
pub fn free_word(generation: u32, next: u64) -> u64 {
    block::free(generation, next)
}

/// A PAD (filler) header word covering `span` bytes (a multiple of 8), check code included.
pub fn pad_word(span: u64) -> u64 {
    block::pad(span)
}

/// The span of a PAD (filler) header word; `None` for any other word.
pub fn decode_pad(word: u64) -> Option<u64> {
    match block::decode(word) {
        block::HeaderWord::Pad { span } => Some(span),
        _ => None,
    }
}

/// Installs `f` as the function every read (`Arena::read_with`, `Arena::read`) calls once it
/// holds its read slot and has found the block's start in the start map, before it loads the
/// header word; `f` gets the handle's data offset. Process-wide, for the whole test binary: the
/// first call wins and later ones change nothing, so every test of a binary installs the same
/// function and decides inside it (by a thread-local, say) whether the calling thread is the
/// one it holds. A test holds a reader there to run a race with a free in one named order, with
/// no timing.
pub fn on_read_held(f: fn(u64)) {
    crate::hook::set_read_held(f);
}

/// Length, generation and reader count of a LIVE header word; `None` for any other word.
pub fn decode_live(word: u64) -> Option<(u64, u32, u64)> {
    match block::decode(word) {
        block::HeaderWord::Live {
            len,
            generation,
            readers,
            ..
        } => Some((len, generation, readers)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Geometry;
    use crate::options::Freelist;

    /// A header edited byte by byte and resealed is trusted as clean, with the edit in place.
    #[test]
    fn resealed_header_validates_clean() {
        let g = Geometry {
            magic_version: 1,
            freelist: Freelist::Optimistic,
            chunk_shift: 12,
            reserved_len: 0,
            min_segment: 16,
            data_start: Geometry::data_start_for(0, 0),
            arena_id: 7,
            max_capacity: 0,
        };
        let mut bytes = bytemuck::bytes_of(&RawHeader::new(&g, 1 << 20)).to_vec();
        bytes[OFF_BUMP..OFF_BUMP + 8].copy_from_slice(&(g.data_start + 64).to_le_bytes());
        assert!(
            !RawHeader::parse(&bytes)
                .validate(1 << 20, &[])
                .unwrap()
                .clean
        );
        reseal_header(&mut bytes);
        let h = RawHeader::parse(&bytes);
        assert!(h.validate(1 << 20, &[]).unwrap().clean);
        assert_eq!(h.bump, g.data_start + 64);
        // The immutable part: an edit without a reseal is refused, with one it validates.
        bytes[12] ^= 1;
        assert!(RawHeader::parse(&bytes).validate(1 << 20, &[]).is_err());
        reseal_header(&mut bytes);
        assert_eq!(
            RawHeader::parse(&bytes)
                .validate(1 << 20, &[])
                .unwrap()
                .geometry
                .magic_version,
            0
        );
    }

    #[test]
    fn forged_handles_pack_as_real_ones() {
        assert_eq!(forge_handle(4104, 5), Handle::new(4104, 5));
        let h = forge_handle(u64::MAX, u32::MAX);
        assert_eq!(h.to_u64(), u64::MAX);
        assert_eq!(forge_handle(1 << 35, 0), Handle::NULL);
        assert_eq!(forge_handle(8, u32::MAX).generation(), u32::MAX);
    }

    #[test]
    fn reader_count_round_trips() {
        let w = live_word(8, 3, 0);
        assert_eq!(decode_live(w), Some((8, 3, 0)));
        let full = with_readers(w, MAX_READERS);
        assert_eq!(decode_live(full), Some((8, 3, MAX_READERS)));
        assert_eq!(with_readers(full, 0), w);
        assert_eq!(decode_live(block::free(2, 0)), None);
    }
}
