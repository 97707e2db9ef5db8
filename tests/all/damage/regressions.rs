//! Inputs the fuzz targets (`fuzz/`) found, replayed step by step through the same checks.
//!
//! Each test names its target and the input's `cargo fuzz fmt` form, so a failure here can be
//! traced back to the fuzz driver that first saw it.

use parena::{Arena, Error, Freelist, Handle, Options};
use parena_testkit::layout::{self, reseal_header};
use parena_testkit::{alloc_filled, expect_refused as refused, intact};
use std::collections::HashSet;

/// Allocates `len`-byte blocks until the arena is full; every handle must be new.
fn fill_up(a: &Arena, len: usize, issued: &mut HashSet<Handle>) -> Vec<(Handle, u8)> {
    let mut out = Vec::new();
    for i in 0..256u32 {
        match alloc_filled(a, len, i as u8) {
            Ok(h) => {
                assert!(issued.insert(h), "handle {h:?} issued twice");
                out.push((h, i as u8));
            }
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    out
}

/// `freelist` target, crash-1c5297633aa8e4a47949f7400d74d10f5f83c09a:
///
/// ```text
/// FreelistInput { policy: Pessimistic, file: true, pages: 70, chunk: 251, min_segment: 184,
///   ops: [Alloc { len: 0 }, Free, Small { len: 119 }, Free, Reopen { other: true },
///         Fill { len: 61946 }, ...] }
/// ```
///
/// Two rewinds at the start of the first chunk moved the chunk's generation from 3 to 5 to 7
/// (`next_gen` chain) while the arena's generation counter had only reached 2; the close listed
/// the chunk's tail with the counter's even generation 4, and the allocation that popped it
/// made the block at the same offset live with `next_gen(4) = 5`: the handle of the second,
/// freed block named the new one, and freeing that stale handle freed a live block.
#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn rewound_generation_is_not_reissued_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gen.parena");
    let o = Options::new()
        .capacity(4096 + 6 * 4096)
        .freelist(Freelist::Pessimistic)
        .chunk_size(4096)
        .min_segment_size(184 * 8)
        .reserved(0)
        .preallocate(false);
    let mut issued = HashSet::new();
    let mut dead = Vec::new();
    {
        // SAFETY: the file is private to this test.
        let a = unsafe { o.clone().create_new(true).map_file(&path) }.unwrap();
        for (len, seed) in [(1, 0), (120, 119)] {
            let h = alloc_filled(&a, len, seed).unwrap();
            assert!(issued.insert(h), "handle {h:?} issued twice");
            a.free(h).unwrap();
            refused(&a, h);
            dead.push(h);
        }
    }
    // The policy recorded at create is kept: another one is refused, and nothing changes.
    let before = std::fs::read(&path).unwrap();
    // SAFETY: as above.
    let other = unsafe {
        Options::new()
            .freelist(Freelist::Optimistic)
            .map_file(&path)
    };
    assert!(matches!(
        other,
        Err(Error::FreelistKind {
            expected: 1,
            found: 2
        })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // SAFETY: as above.
    let a = unsafe { Options::new().create(false).map_file(&path) }.unwrap();
    let live = fill_up(&a, 507, &mut issued);
    assert!(a.stats().from_freelist > 0, "the listed tail was reused");
    for &h in &dead {
        refused(&a, h);
    }
    for &(h, seed) in &live {
        intact(&a, h, 507, seed);
    }
}

/// The same history on a heap arena (`write_image` retires the chunk as the close did), so it
/// also runs under Miri.
#[test]
fn rewound_generation_is_not_reissued_heap() {
    let mut a = Options::new()
        .capacity(4096 + 6 * 4096)
        .freelist(Freelist::Pessimistic)
        .chunk_size(4096)
        .heap()
        .unwrap();
    let mut issued = HashSet::new();
    let mut dead = Vec::new();
    for (len, seed) in [(1, 0), (120, 119), (8, 3)] {
        let h = alloc_filled(&a, len, seed).unwrap();
        assert!(issued.insert(h), "handle {h:?} issued twice");
        a.free(h).unwrap();
        dead.push(h);
    }
    a.write_image(std::io::sink()).unwrap();
    let live = fill_up(&a, 507, &mut issued);
    assert!(a.stats().from_freelist > 0, "the listed tail was reused");
    for &h in &dead {
        refused(&a, h);
    }
    for &(h, seed) in &live {
        intact(&a, h, 507, seed);
    }
    let r = a.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks, live.len() as u64);
}

/// `ops` target, crash-4229ef3fc3832c0f2d9788812884f2db3dcb55d4 (file arena, Pessimistic, a run
/// of `Crash { pending: true }` steps, frees and allocations of the same sizes): a block taken
/// back from the per-thread cache got the cell's own generation. That is the generation the
/// cell's chunk gives its bump blocks, so a block freed into the cache and taken back carried
/// the generation its stale handle still had; and a cell that never took a chunk (here: the
/// first thread to touch a recovered arena only freed and reallocated) has generation 0, an even
/// (free) generation on a live block, issued twice.
#[test]
fn cached_block_gets_a_new_generation() {
    let a = Options::new().capacity(1 << 20).heap().unwrap();
    let mut issued = HashSet::new();
    let first = alloc_filled(&a, 40, 1).unwrap();
    let keep = alloc_filled(&a, 40, 2).unwrap();
    issued.extend([first, keep]);
    // Not the last block of the chunk: it goes to this thread's cache, not back to the bump.
    a.free(first).unwrap();
    let again = alloc_filled(&a, 40, 3).unwrap();
    assert_eq!(again.offset(), first.offset(), "taken back from the cache");
    assert!(issued.insert(again), "handle {again:?} issued twice");
    refused(&a, first);
    intact(&a, again, 40, 3);
    intact(&a, keep, 40, 2);
}

/// The same with a thread whose cell never took a chunk: its cache's first block must not get
/// generation 0.
#[test]
fn cell_without_chunk_never_issues_generation_zero() {
    let a = Options::new().capacity(1 << 20).heap().unwrap();
    let (x, y) = std::thread::scope(|s| {
        s.spawn(|| {
            (
                alloc_filled(&a, 24, 1).unwrap(),
                alloc_filled(&a, 24, 2).unwrap(),
            )
        })
        .join()
        .unwrap()
    });
    // This thread never allocated from `a`: its cell holds no chunk.
    a.free(x).unwrap();
    let z = alloc_filled(&a, 24, 3).unwrap();
    assert_ne!(z.generation(), 0, "generation 0 is never issued: {z:?}");
    assert_ne!(z, x);
    refused(&a, x);
    intact(&a, y, 24, 2);
    intact(&a, z, 24, 3);
}

/// Found while minimising `open_bytes` crash-6788e8e1a9092597cdf69e1dd3301e2d6c789ec6 (a bump
/// offset that is not a chunk boundary): the heap walk steps over a chunk's unused tail to the
/// next *fixed* chunk boundary (`data_start + k * chunk`), but a capacity grown from a value that
/// is not a chunk boundary left the bump offset off the grid, and the next reservation started
/// there. A tail gap in that chunk then made the walk jump past the start of the next chunk.
#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn growth_from_an_unaligned_capacity_keeps_the_heap_walkable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grow.parena");
    let chunk = 16384u64;
    // A heap of one and a half chunks (then one page of live and flush maps): the end of the heap
    // is not a chunk boundary.
    let cap = 4096 + 6 * 4096 + 4096;
    let o = Options::new()
        .capacity(cap)
        .chunk_size(chunk as u32)
        .freelist(Freelist::None)
        .preallocate(false);
    let mut live = Vec::new();
    {
        // SAFETY: the file is private to this test.
        let a = unsafe { o.clone().map_file(&path) }.unwrap();
        let mut seed = 0u8;
        loop {
            match alloc_filled(&a, 100, seed) {
                Ok(h) => live.push((h, 100, seed)),
                Err(Error::Full { .. }) => break,
                Err(e) => panic!("{e:?}"),
            }
            seed = seed.wrapping_add(1);
        }
        // Small blocks fill the last, partial chunk too: the bump offset reaches the end of the
        // heap, off the chunk grid.
        assert_eq!(a.stats().remaining, 0);
    }
    // SAFETY: as above.
    let mut a = unsafe { o.clone().capacity(cap + 4 * chunk).map_file(&path) }.unwrap();
    // A few small blocks in a new chunk (its tail stays a gap: no freelist), then a block that
    // takes whole chunks of its own, filled with data that is not a header.
    for seed in 0..3u8 {
        live.push((alloc_filled(&a, 100, seed).unwrap(), 100, seed));
    }
    live.push((
        alloc_filled(&a, 3 * chunk as usize / 2, 9).unwrap(),
        3 * chunk as usize / 2,
        9,
    ));
    let r = a.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks, live.len() as u64, "{r:?}");
    for &(h, len, seed) in &live {
        intact(&a, h, len, seed);
    }
}

/// `open_bytes` crash-6788e8e1a9092597cdf69e1dd3301e2d6c789ec6: a clean template image whose bump
/// offset (bytes 80..82, `layout::OFF_BUMP`) was patched to 4104, checksums re-sealed. Validation accepted the
/// off-grid bump offset (it cuts the first block, 4096..4112, in two), the next chunk was
/// reserved from 4104, so a new block's header landed inside the old block; freeing the old
/// block (through a root handle) then wrote its span word over the new block's header while that
/// block sat in the thread cache, and the close panicked (`unreachable!` in `drain_cache`).
/// Reservations now start on the chunk grid, so the crossing block is never overlapped.
#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn off_grid_bump_in_a_trusted_file_never_overlaps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bump.parena");
    let o = Options::new()
        .capacity(4096 * 5)
        .chunk_size(512)
        .preallocate(false);
    {
        // SAFETY: the file is private to this test.
        let a = unsafe { o.clone().map_file(&path) }.unwrap();
        let first = alloc_filled(&a, 1, 0).unwrap();
        assert_eq!(first.offset(), 4104);
        for k in 1..8usize {
            let _ = alloc_filled(&a, 1 + k * 37 % 700, k as u8).unwrap();
        }
        a.set_root(0, first.to_u64()).unwrap();
    }
    let mut f = std::fs::read(&path).unwrap();
    let bump = layout::OFF_BUMP;
    f[bump..bump + 2].copy_from_slice(&[0x08, 0x10]);
    assert_eq!(
        u64::from_le_bytes(f[bump..bump + 8].try_into().unwrap()),
        4104
    );
    // Both header checksums re-sealed, as `open_bytes` does when its input asks: trusted as clean.
    reseal_header(&mut f);
    std::fs::write(&path, &f).unwrap();
    // SAFETY: as above.
    let mut a = unsafe { Options::new().create(false).map_file(&path) }.unwrap();
    assert!(a.was_clean(), "the re-sealed file is trusted");
    let mut mine = Vec::new();
    for k in 0..12usize {
        let len = 1 + k * 53 % 900;
        match alloc_filled(&a, len, k as u8) {
            Ok(h) => {
                assert!(
                    h.offset() >= 4112 + 8,
                    "{h:?} overlaps the block the bump cuts"
                );
                mine.push((h, len, k as u8));
            }
            Err(Error::Full { .. }) | Err(Error::Corrupt { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    for &(h, _, _) in mine.iter().step_by(2) {
        a.free(h).unwrap();
    }
    let _ = a.free(Handle::from_u64(a.root(0)));
    for &(h, len, seed) in mine.iter().skip(1).step_by(2) {
        intact(&a, h, len, seed);
    }
    let _ = a.compact();
    let _ = a.verify().unwrap();
    drop(a);
}

/// Found while writing the `open_bytes` driver: a file trusted as clean (open is O(1) and does not
/// walk the heap) whose block header carries the largest reader count made `read` wait forever for
/// a reader slot, since no reader would ever leave. Reads no longer count themselves in the
/// header (they hold read slots of their thread's cell), so such a count is no reader: the read
/// returns the block's bytes, and a free gives the block back.
#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn saturated_reader_count_in_a_trusted_file_does_not_hang_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("readers.parena");
    let h = {
        // SAFETY: the file is private to this test.
        let a = unsafe { Options::new().capacity(1 << 16).map_file(&path) }.unwrap();
        alloc_filled(&a, 8, 5).unwrap()
    };
    let mut f = std::fs::read(&path).unwrap();
    let at = (h.offset() - 8) as usize;
    let w = u64::from_le_bytes(f[at..at + 8].try_into().unwrap());
    assert_eq!(layout::decode_live(w), Some((8, h.generation(), 0)));
    let w = layout::with_readers(w, layout::MAX_READERS);
    f[at..at + 8].copy_from_slice(&w.to_le_bytes());
    std::fs::write(&path, &f).unwrap();
    // SAFETY: as above.
    let mut a = unsafe { Options::new().map_file(&path) }.unwrap();
    assert!(a.was_clean());
    let mut buf = [0u8; 8];
    a.read(h, 0, &mut buf).unwrap();
    let mut again = [0u8; 8];
    a.read(h, 0, &mut again).unwrap();
    assert_eq!(buf, again, "the block's bytes, read twice");
    a.free(h).unwrap();
    assert!(matches!(a.free(h), Err(parena::Error::DoubleFree { .. })));
    let r = a.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks, 0, "the block went back: {r:?}");
}
