//! Arenas past 32 GiB (docs/metadata.md, 12.3): a growable arena whose maximum is above 32 GiB
//! counts its handles' offsets in a coarser unit and aligns every block to it. A sparse 1 TiB
//! file arena holds blocks far past 32 GiB, stays sparse, and its handles read back after a
//! clean reopen and after a crash; a wide arena's handles decode only through the arena; the
//! limits get their typed errors.

use crate::util::{open, spawn_child, Rng};
use parena::{Arena, Error, Handle, Options, MAX_BLOCK_LEN};
use std::alloc::Layout;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
/// A 1 TiB arena's maps lie in front of its heap (1/16 of the maximum): its first capacity
/// holds them and 1 GiB of heap.
const FIRST: u64 = 65 * GIB;

fn wide() -> Options {
    Options::new()
        .max_capacity(TIB)
        .capacity(FIRST)
        .preallocate(false)
}

/// The byte block `i` is filled with.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(37) as u8) | 1
}

/// Allocates `n` small blocks of random sizes (up to 700 bytes) and of random alignments, filled
/// with their pattern, checking that each lies on the arena's unit.
fn small_blocks(arena: &Arena, rng: &mut Rng, first: u64, n: u64) -> Vec<(Handle, usize, u8)> {
    (first..first + n)
        .map(|i| {
            let len = 1 + rng.below(700) as usize;
            let align = 8usize << rng.below(10);
            let mut b = arena
                .alloc_layout(Layout::from_size_align(len, align).unwrap())
                .unwrap();
            let at = b.offset();
            assert_eq!(
                at % arena.offset_unit().max(align as u64),
                0,
                "block at {at}"
            );
            b.fill(pattern(i));
            let h = b.into_handle();
            assert_eq!(arena.offset_of(h), at);
            (h, len, pattern(i))
        })
        .collect()
}

fn holds(arena: &Arena, blocks: &[(Handle, usize, u8)]) {
    for &(h, len, byte) in blocks {
        let mut buf = vec![0u8; len];
        arena.read(h, 0, &mut buf).unwrap();
        assert!(
            buf.iter().all(|&x| x == byte),
            "block at {} lost its bytes",
            arena.offset_of(h)
        );
    }
}

/// The LARGE blocks of the sparse test: the largest length, and 1 GiB.
const LARGE: [usize; 2] = [MAX_BLOCK_LEN as usize, 1 << 30];

/// Allocates the blocks of the sparse test: small ones, the [`LARGE`] blocks (never written, so
/// their pages stay a hole), a growth by call, and small ones after them. Returns the small
/// blocks and the LARGE handles.
fn fill_wide(arena: &Arena) -> (Vec<(Handle, usize, u8)>, Vec<Handle>) {
    let mut rng = Rng(0x51de);
    let mut small = small_blocks(arena, &mut rng, 0, 200);
    // The first needs a growth step, by allocation alone: the heap holds 1 GiB at first.
    let large = LARGE
        .iter()
        .map(|&len| arena.alloc(len).unwrap().into_handle())
        .collect();
    arena.grow(arena.capacity() + 4 * GIB).unwrap();
    small.extend(small_blocks(arena, &mut rng, 200, 200));
    (small, large)
}

/// A sparse file arena with a maximum of 1 TiB: its heap begins past 64 GiB (behind the maps),
/// it grows by allocation and by call while it holds blocks, every block's data lies on the
/// arena's 256-byte unit, the LARGE blocks nobody wrote keep the file sparse, and after a close
/// and a reopen every handle reads back; a freed handle is refused, as is a forged one past
/// the heap.
#[test]
#[cfg_attr(miri, ignore = "maps a file")]
fn a_sparse_terabyte_arena_holds_blocks_past_32_gib() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wide");
    let arena = open(&wide(), &p).unwrap();
    assert_eq!(arena.offset_unit(), 256);
    assert_eq!(arena.max_capacity(), TIB);
    let (small, large) = fill_wide(&arena);
    let past = |h: Handle| arena.offset_of(h);
    assert!(small.iter().all(|&(h, ..)| past(h) > 64 * GIB));
    let last = small.last().unwrap().0;
    assert!(
        past(last) > 68 * GIB,
        "the last block lies at {}",
        past(last)
    );
    // `Handle::offset` decodes in 8-byte units: not a wide arena's offsets.
    assert_ne!(last.offset(), past(last));
    for (&h, len) in large.iter().zip(LARGE) {
        assert_eq!(arena.len_of(h).unwrap(), len);
    }
    holds(&arena, &small);
    let cap = arena.capacity();
    arena.close().unwrap();

    let meta = std::fs::metadata(&p).unwrap();
    assert!(meta.len() >= cap, "file {} < capacity {cap}", meta.len());
    let on_disk = meta.blocks() * 512;
    assert!(
        on_disk < 256 << 20,
        "{on_disk} bytes on disk for a file of {} bytes",
        meta.len()
    );

    let arena = open(&Options::new(), &p).unwrap();
    assert_eq!(arena.offset_unit(), 256);
    assert_eq!(arena.capacity(), cap);
    holds(&arena, &small);
    for (&h, len) in large.iter().zip(LARGE) {
        assert_eq!(arena.len_of(h).unwrap(), len);
        let mut mid = [1u8; 64];
        arena.read(h, len / 2, &mut mid).unwrap();
        assert_eq!(mid, [0u8; 64]);
    }
    let (h, ..) = small[7];
    arena.free(h).unwrap();
    assert!(matches!(
        arena.read(h, 0, &mut [0u8; 1]),
        Err(Error::Stale { .. })
    ));
    let beyond = Handle::from_u64((0xffff_fff0u64) | (u64::from(last.generation()) << 32));
    assert!(matches!(
        arena.read(beyond, 0, &mut [0u8; 1]),
        Err(Error::OutOfBounds { .. })
    ));
    holds(&arena, &small[8..]);
}

/// The child of [`a_crashed_wide_arena_reopens_with_every_flushed_block`]: fills the arena at
/// `PARENA_WIDE_CRASH`, flushes, prints its handles and aborts without closing.
#[test]
#[cfg_attr(miri, ignore = "run as a child process")]
fn wide_crash_child() {
    let Ok(path) = std::env::var("PARENA_WIDE_CRASH") else {
        return;
    };
    crate::util::end_with_parent();
    let arena = open(&wide(), Path::new(&path)).unwrap();
    let (small, large) = fill_wide(&arena);
    arena.flush().unwrap();
    for (h, len, byte) in small {
        println!("small {} {len} {byte}", h.to_u64());
    }
    for h in large {
        println!("large {}", h.to_u64());
    }
    std::process::abort();
}

/// A wide arena that crashed after a flush (the process aborted, the file never closed) opens
/// through recovery with every flushed block, each read back through its handle.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn a_crashed_wide_arena_reopens_with_every_flushed_block() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("crashed");
    let out = spawn_child(
        "wide::wide_crash_child",
        &[("PARENA_WIDE_CRASH", p.to_str().unwrap())],
    )
    .wait_with_output()
    .unwrap();
    assert!(!out.status.success(), "the child was meant to abort");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut small = Vec::new();
    let mut large = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w[..] {
            ["small", h, len, byte] => small.push((
                Handle::from_u64(h.parse().unwrap()),
                len.parse().unwrap(),
                byte.parse().unwrap(),
            )),
            ["large", h] => large.push(Handle::from_u64(h.parse().unwrap())),
            _ => {}
        }
    }
    assert_eq!((small.len(), large.len()), (400, LARGE.len()));
    let arena = open(&Options::new(), &p).unwrap();
    assert!(
        arena.recovery_report().is_some(),
        "the open ran no recovery"
    );
    holds(&arena, &small);
    for (&h, len) in large.iter().zip(LARGE) {
        assert_eq!(arena.len_of(h).unwrap(), len);
    }
}

/// The unit follows the maximum: 8 bytes up to 32 GiB, then the smallest power of two that lets
/// 32 bits reach it; on an anonymous map every block of a 64 GiB arena lies on 16 bytes and
/// decodes through the arena, frees and reuse included.
#[test]
#[cfg_attr(miri, ignore = "reserves a MAP_NORESERVE map")]
fn the_offset_unit_follows_the_maximum() {
    for (max, unit) in [
        (32 * GIB, 8),
        (32 * GIB + 4096, 16),
        (64 * GIB, 16),
        (100 * GIB, 32),
        (TIB, 256),
    ] {
        let data_start = 4096 + max / 16;
        let arena = Options::new()
            .max_capacity(max)
            .capacity(data_start + (1 << 20))
            .map_anon()
            .unwrap();
        assert_eq!(arena.offset_unit(), unit, "maximum {max}");
    }
    let arena = Options::new()
        .max_capacity(64 * GIB)
        .capacity(4 * GIB + (1 << 20))
        .map_anon()
        .unwrap();
    let mut rng = Rng(7);
    let mut blocks = small_blocks(&arena, &mut rng, 0, 3000);
    for (i, &(h, ..)) in blocks.iter().enumerate() {
        if i % 2 == 0 {
            arena.free(h).unwrap();
        }
    }
    blocks = blocks.into_iter().skip(1).step_by(2).collect();
    // Past the first capacity: growth by allocation, and reuse of the freed blocks.
    blocks.extend(small_blocks(&arena, &mut rng, 3000, 6000));
    holds(&arena, &blocks);
    assert!(arena.capacity() > 4 * GIB + (1 << 20));
}

/// A fixed arena stays at most 32 GiB; a growable one at most 1 TiB.
#[test]
fn the_limits_of_fixed_and_growable_arenas() {
    assert!(matches!(
        Options::new().capacity(33 * GIB).heap(),
        Err(Error::Capacity { max, .. }) if max == 32 * GIB
    ));
    assert!(matches!(
        Options::new().max_capacity(TIB + 4096).map_anon(),
        Err(Error::MaxCapacity { max, .. }) if max == TIB
    ));
}
