//! The on-disk header, the same for every backing.
//!
//! All integers are little-endian (parena builds only on little-endian targets; see the compile
//! error at the bottom). The header fills the first 4096 bytes of the arena; the user's reserved
//! area follows it; the heap starts at `data_start`, the next multiple of 4096.
//!
//! ```text
//! offset  size  field            changes?  notes
//! ------  ----  ---------------  --------  ---------------------------------------------------
//!      0     8  magic            never     b"\x89PARENA\n"
//!      8     4  format_version   never     FORMAT_VERSION (4)
//!     12     2  magic_version    never     the user's own format version
//!     14     1  freelist         never     0 None, 1 Optimistic, 2 Pessimistic
//!     15     1  chunk_shift      never     log2 of the per-thread chunk size (9..=20)
//!     16     4  reserved_len     never     bytes of user-reserved area after the header
//!     20     4  min_segment      never     smallest free segment worth listing (>= 16)
//!     24     8  data_start       never     first heap byte, a multiple of 4096
//!     32     8  arena_id         never     random, set at create
//!     40     8  header_checksum  never     FNV-1a over bytes 0..40
//! ------  ----  ---------------  --------  ------------- mutable, 8-byte atomics -------------
//!     48     8  capacity         grow      total bytes, a multiple of 4096
//!     56     8  state            open/close CLEAN or DIRTY marker
//!     64     8  state_checksum   close     FNV-1a over bytes 48..4096 (state words as 0), then
//!                                          the reserved area
//!     72     8  open_count       open      writable opens so far
//!     80     8  bump             alloc     end of reserved heap: data_start..=capacity
//!     88     8  high_water       alloc     heap at or past this was never written (reads zero)
//!     96     8  discarded        alloc     bytes in fillers too small to list
//!    104     8  gen_seed         alloc     source of generations for new header positions
//!    112     8  file_id          open      the file this arena was last opened writable as (0: none)
//!    120     8  max_capacity     never     version 5 (growable): the most it grows to; version 4: zero
//!    128   128  spare            -         zero (the roots until version 3)
//!    256  2048  heads[256]       free      free-list heads, one per size class (tag | offset)
//!   2304   256  meta slot 0      flush     the layout as of a flush (see below)
//!   2560   256  meta slot 1      flush     the other one: each flush writes the older slot
//!   2816   256  roots[16]        user      per slot: the value, then its check word
//!   3072  1024  padding          -         zero
//!   4096     R  reserved area    user
//!  data_start   heap             alloc     blocks, free segments, fillers
//!  heap_end     maps             alloc     owner map A, shared map B, flush maps F0 and F1
//!  capacity
//! ```
//!
//! A meta slot is eight words: `epoch`, `map` (which flush map, 0 or 1, holds this flush's
//! live starts), `capacity`, `bump`, `high_water`, `discarded`, `gen_seed`, and an FNV-1a checksum
//! of the seven before it and the slot's index; the rest of its 256 bytes is zero. The valid slot
//! with the larger epoch describes the last completed flush. The maps lie at the end of the
//! arena: `heap_end = capacity - region_len(capacity)` (`heap::MapGeom`).
//!
//! A growable arena (`Options::max_capacity`; docs/metadata.md, section 12) is format version 5:
//! its maps lie in front of the heap instead, after the reserved area, sized for `max_capacity`
//! (`data_start = align(4096 + R) + region_len(max_capacity)`), the heap ends at `capacity`, and
//! `header_checksum` covers bytes 0..40 and then the `max_capacity` word. Everything else is as
//! in version 4, and an arena without `max_capacity` is version 4 byte for byte.
//!
//! A crash can leave any mutable field half-way through a protocol, never half-written: each is an
//! aligned 8-byte word, stored with one instruction. Power loss can lose the stores made after the
//! last flush; see `docs/recovery.md`.

mod checks;
mod geometry;
mod grid;
mod meta;
mod validate;

pub(crate) use checks::{decode_root_check, root_check, settled_root_check, HeaderFault};
pub(crate) use geometry::{heap_end, heap_minimum, map_region_len, Geometry};
pub(crate) use meta::Meta;

use bytemuck::{Pod, Zeroable};
use std::mem::{offset_of, size_of};

pub use crate::kinds::Freelist;

/// The first 8 bytes of every arena.
pub const MAGIC: [u8; 8] = *b"\x89PARENA\n";
/// The format this build writes and reads for arenas of a fixed layout.
pub const FORMAT_VERSION: u32 = 4;
/// The format of a growable arena (one created with `Options::max_capacity`): maps in front of
/// the heap, `max_capacity` recorded under the header checksum.
pub const GROWABLE_FORMAT_VERSION: u32 = 5;
/// Number of persisted root slots.
pub const ROOT_SLOTS: usize = 16;
/// Number of free-list size classes.
pub(crate) const CLASSES: usize = 256;
/// Largest fixed arena, and largest *narrow* one: 32 GiB. A handle keeps a block's data offset in
/// 32 bits of 8-byte units beside its 32-bit generation (8 bytes in all).
pub(crate) const MAX_CAPACITY: u64 = 1 << 35;
/// Largest growable arena (`max_capacity`): 1 TiB. A growable arena above 32 GiB is *wide*: its
/// handles count its data offsets in a coarser unit ([`unit_shift_for`]; docs/metadata.md, 12.3).
/// `block` checks its layouts against this.
pub(crate) const MAX_GROWABLE_CAPACITY: u64 = 1 << 40;

/// The offset unit (as a shift) of an arena whose `max_capacity` is `max_capacity` (0 for a fixed
/// layout): 8 bytes up to 32 GiB, else the smallest power of two `u` with `2^32 * u` at least
/// `max_capacity`. A function of the header's unchanging fields, so it never changes for a file.
pub(crate) const fn unit_shift_for(max_capacity: u64) -> u32 {
    let mut shift = 3;
    while max_capacity > MAX_CAPACITY << (shift - 3) {
        shift += 1;
    }
    shift
}
/// Bytes of the fixed header.
pub const HEADER_SIZE: u64 = 4096;
/// Alignment of `data_start`.
pub(crate) const DATA_ALIGN: u64 = 4096;
/// Smallest and largest per-thread chunk (log2).
pub(crate) const MIN_CHUNK_SHIFT: u8 = 9;
pub(crate) const MAX_CHUNK_SHIFT: u8 = 20;

/// State word of an arena whose last writer closed it cleanly.
pub(crate) const STATE_CLEAN: u64 = 0x4e41_454c_4321_0001; // "\x01\0!CLEAN"
/// State word of an arena a writer has open (or that was not closed cleanly).
pub(crate) const STATE_DIRTY: u64 = 0x5954_5249_4421_0002; // "\x02\0!DIRTY"

/// The header as stored: plain data, parsed from bytes before anything is trusted.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
pub(crate) struct RawHeader {
    pub magic: [u8; 8],
    pub format_version: u32,
    pub magic_version: u16,
    pub freelist: u8,
    pub chunk_shift: u8,
    pub reserved_len: u32,
    pub min_segment: u32,
    pub data_start: u64,
    pub arena_id: u64,
    pub header_checksum: u64,
    pub capacity: u64,
    pub state: u64,
    pub state_checksum: u64,
    pub open_count: u64,
    pub bump: u64,
    pub high_water: u64,
    pub discarded: u64,
    pub gen_seed: u64,
    pub file_id: u64,
    /// Version 5: the largest capacity (fixed at create). Version 4: a spare word, zero.
    pub max_capacity: u64,
    /// Zero (version 3 kept the roots here).
    pub spare_roots: [u64; ROOT_SLOTS],
    pub heads: [u64; CLASSES],
    pub meta: [[u64; META_SLOT_WORDS]; 2],
    /// Each root slot: its value, then its check word ([`root_check`]), in one 16-byte unit.
    pub roots: [[u64; 2]; ROOT_SLOTS],
    pub padding: [u64; 128],
}

const _: () = assert!(size_of::<RawHeader>() as u64 == HEADER_SIZE);
const _: () = assert!(offset_of!(RawHeader, header_checksum) == 40);
const _: () = assert!(offset_of!(RawHeader, capacity) == 48);
const _: () = assert!(offset_of!(RawHeader, spare_roots) == 128);
const _: () = assert!(offset_of!(RawHeader, heads) == 256);
const _: () = assert!(offset_of!(RawHeader, meta) == 2304);
const _: () = assert!(offset_of!(RawHeader, roots) == 2816);
const _: () = assert!(offset_of!(RawHeader, padding) == 3072);

/// Words in one meta slot (256 bytes; eight are used).
pub(crate) const META_SLOT_WORDS: usize = 32;
/// Byte offset of meta slot 0; slot 1 follows it.
pub(crate) const OFF_META: u64 = offset_of!(RawHeader, meta) as u64;

/// Byte offsets of the mutable words, for the atomic accessor.
pub(crate) const OFF_CAPACITY: u64 = offset_of!(RawHeader, capacity) as u64;
pub(crate) const OFF_STATE: u64 = offset_of!(RawHeader, state) as u64;
pub(crate) const OFF_STATE_CHECKSUM: u64 = offset_of!(RawHeader, state_checksum) as u64;
pub(crate) const OFF_OPEN_COUNT: u64 = offset_of!(RawHeader, open_count) as u64;
pub(crate) const OFF_BUMP: u64 = offset_of!(RawHeader, bump) as u64;
pub(crate) const OFF_HIGH_WATER: u64 = offset_of!(RawHeader, high_water) as u64;
pub(crate) const OFF_DISCARDED: u64 = offset_of!(RawHeader, discarded) as u64;
pub(crate) const OFF_GEN_SEED: u64 = offset_of!(RawHeader, gen_seed) as u64;
/// A file arena's identity (device and inode, hashed; never 0) as of its last writable open: an
/// open that finds another one is an open of a copy, and gives it its own generations
/// (`Arena::open_writable`; docs/design.md, "Copies").
pub(crate) const OFF_FILE_ID: u64 = offset_of!(RawHeader, file_id) as u64;
pub(crate) const OFF_ROOTS: u64 = offset_of!(RawHeader, roots) as u64;
/// Bytes from one root slot to the next: the value word, then its check word.
pub(crate) const ROOT_SLOT_BYTES: u64 = 16;
pub(crate) const OFF_HEADS: u64 = offset_of!(RawHeader, heads) as u64;
/// End of the header words covered by `state_checksum`: the whole page (the reserved area's bytes
/// follow them into the checksum).
pub(crate) const SEALED_END: u64 = HEADER_SIZE;
/// Bytes covered by `header_checksum`.
const IMMUTABLE_END: usize = offset_of!(RawHeader, header_checksum);

/// FNV-1a, 64 bit: detects torn or flipped header bytes (not an adversary).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_more(FNV_OFFSET, bytes)
}

/// The FNV-1a offset basis: the hash of no bytes.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes` continued from the hash `h` of what came before them.
fn fnv1a_more(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Checksum of the header words `48..SEALED_END` (`words` yields `(offset, word)` for each, in
/// order), reading `state` and `state_checksum` as 0, then of the reserved area's bytes: what a
/// clean close seals. Every word of the page after the unchanging fields is under it (the roots,
/// the meta slots, the spare and padding words included), and so is the reserved area.
pub(crate) fn state_checksum(words: impl Iterator<Item = (u64, u64)>, reserved: &[u8]) -> u64 {
    let h = words.fold(FNV_OFFSET, |h, (off, w)| {
        let w = if off == OFF_STATE || off == OFF_STATE_CHECKSUM {
            0
        } else {
            w
        };
        fnv1a_more(h, &w.to_le_bytes())
    });
    fnv1a_more(h, reserved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn geometry() -> Geometry {
        Geometry {
            magic_version: 7,
            freelist: Freelist::Optimistic,
            chunk_shift: 16,
            reserved_len: 100,
            min_segment: 32,
            data_start: Geometry::data_start_for(100, 0),
            arena_id: 0xfeed,
            max_capacity: 0,
        }
    }

    #[test]
    fn new_header_validates() {
        let h = RawHeader::new(&geometry(), 1 << 20);
        let v = h.validate(1 << 20, &[0; 100]).unwrap();
        assert_eq!(v.geometry, geometry());
        assert!(v.clean);
        assert_eq!(v.capacity, 1 << 20);
        let bytes = bytemuck::bytes_of(&h).to_vec();
        let back = RawHeader::parse(&bytes);
        assert_eq!(bytemuck::bytes_of(&back), &bytes[..]);
        assert_eq!(&bytes[..8], &MAGIC);
    }

    proptest::proptest! {
        // Each case copies and checksums a 4 KiB header: a few suffice under Miri.
        #![proptest_config(proptest::test_runner::Config {
            cases: if cfg!(miri) { 4 } else { 256 },
            ..proptest::test_runner::Config::default()
        })]

        /// Any field values: encode, parse, validate gives back the same geometry, and the
        /// bytes round-trip exactly.
        #[test]
        fn encode_decode_round_trip(
            magic_version: u16,
            kind in 0u8..3,
            chunk_shift in MIN_CHUNK_SHIFT..=MAX_CHUNK_SHIFT,
            reserved in 0u32..100_000,
            min_segment in 2u32..1000,
            arena_id: u64,
            extra_pages in 1u64..10_000,
            roots: [u64; 4],
        ) {
            let g = Geometry {
                magic_version,
                freelist: Freelist::from_u8(kind).unwrap(),
                chunk_shift,
                reserved_len: reserved,
                min_segment: min_segment * 8,
                data_start: Geometry::data_start_for(reserved, 0),
                arena_id,
                max_capacity: 0,
            };
            // The least capacity that holds the maps and one chunk of heap is the smallest valid
            // one: a smaller one is refused (`Size`), which is another test's case.
            let mut cap = g.data_start + extra_pages * 4096;
            while cap - g.data_start < heap_minimum(cap, 0) {
                cap += 4096;
            }
            let mut h = RawHeader::new(&g, cap);
            for (i, &v) in roots.iter().enumerate() {
                h.roots[i] = [v, settled_root_check(i, v)];
            }
            h.state_checksum = h.compute_state_checksum(&vec![0; reserved as usize]);
            let bytes = bytemuck::bytes_of(&h).to_vec();
            let back = RawHeader::parse(&bytes);
            proptest::prop_assert_eq!(bytemuck::bytes_of(&back), &bytes[..]);
            let v = back.validate(cap, &vec![0; reserved as usize]).unwrap();
            proptest::prop_assert_eq!(v.geometry, g);
            proptest::prop_assert_eq!(v.capacity, cap);
            proptest::prop_assert!(v.clean);
        }

        /// Any bytes flipped: validation returns, it never panics, and a flip in the unchanging
        /// fields never validates.
        #[test]
        fn flipped_headers_are_refused_or_valid(at in 0usize..4096, x in 1u8..=255) {
            let h = RawHeader::new(&geometry(), 1 << 20);
            let mut bytes = bytemuck::bytes_of(&h).to_vec();
            bytes[at] ^= x;
            let r = RawHeader::parse(&bytes).validate(1 << 20, &[0; 100]);
            if at < 48 {
                proptest::prop_assert!(r.is_err());
            }
        }
    }

    /// A growable arena's header (version 5) validates, names its maximum, and its checksum
    /// covers the `max_capacity` word; a fixed one keeps version 4 and a zero word.
    #[test]
    fn a_growable_header_records_its_maximum() {
        let mut g = geometry();
        g.max_capacity = 64 << 20;
        g.data_start = Geometry::data_start_for(g.reserved_len, g.max_capacity);
        let h = RawHeader::new(&g, 8 << 20);
        assert_eq!(h.format_version, GROWABLE_FORMAT_VERSION);
        assert_eq!(
            g.data_start,
            8192 + (4 << 20),
            "maps for 64 MiB in front of the heap"
        );
        let v = h.validate(8 << 20, &[0; 100]).unwrap();
        assert_eq!(v.geometry, g);
        assert!(v.clean && h.faults().is_empty());
        let mut flipped = h;
        flipped.max_capacity ^= 4096;
        assert!(matches!(
            flipped.validate(8 << 20, &[0; 100]),
            Err(Error::Checksum { .. })
        ));
        let fixed = RawHeader::new(&geometry(), 1 << 20);
        assert_eq!(
            (fixed.format_version, fixed.max_capacity),
            (FORMAT_VERSION, 0)
        );
    }

    #[test]
    fn each_check_has_its_error() {
        let g = geometry();
        let good = RawHeader::new(&g, 1 << 20);
        let mut h = good;
        h.magic[0] = 0;
        assert!(matches!(
            h.validate(1 << 20, &[0; 100]),
            Err(Error::Magic { .. })
        ));
        let mut h = good;
        h.format_version = 9;
        assert!(matches!(
            h.validate(1 << 20, &[0; 100]),
            Err(Error::Version { found: 9, .. })
        ));
        let mut h = good;
        h.arena_id ^= 1;
        assert!(matches!(
            h.validate(1 << 20, &[0; 100]),
            Err(Error::Checksum { .. })
        ));
        assert!(matches!(
            good.validate(4096, &[0; 100]),
            Err(Error::Truncated { .. })
        ));
        let mut h = good;
        h.bump = (1 << 20) + 8;
        assert!(matches!(
            h.validate(1 << 20, &[0; 100]),
            Err(Error::Bump { .. })
        ));
        let mut h = good;
        h.state = 5;
        assert!(matches!(
            h.validate(1 << 20, &[0; 100]),
            Err(Error::State { found: 5 })
        ));
        let mut h = good;
        h.capacity = 12345;
        assert!(matches!(
            h.validate(1 << 20, &[0; 100]),
            Err(Error::Size {
                field: "capacity",
                ..
            })
        ));
        let mut h = good;
        h.roots[3][0] = 9;
        assert!(
            !h.validate(1 << 20, &[0; 100]).unwrap().clean,
            "changed roots without checksum: not clean"
        );
    }
}
