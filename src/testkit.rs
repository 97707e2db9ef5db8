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
/// Offset of the root slots.
pub const OFF_ROOTS: usize = format::OFF_ROOTS as usize;
/// End of the words the state checksum covers.
pub const HEAP_META_END: usize = format::HEAP_META_END as usize;
/// The state word of a cleanly closed arena.
pub const STATE_CLEAN: u64 = format::STATE_CLEAN;
/// The state word of an arena that is open (or was not closed cleanly).
pub const STATE_DIRTY: u64 = format::STATE_DIRTY;

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
        let sum = format::state_checksum(words);
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
    let field = MAX_READERS * block::READER_ONE;
    (word & !field) | (readers * block::READER_ONE)
}

/// Length, generation and reader count of a LIVE header word; `None` for any other word.
pub fn decode_live(word: u64) -> Option<(u64, u32, u64)> {
    match block::decode(word) {
        block::Word::Live {
            len, gen, readers, ..
        } => Some((len, gen, readers)),
        _ => None,
    }
}
