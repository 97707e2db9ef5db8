//! The three memories and one format: every backing round-trips, reopens keep blocks, roots and
//! the reserved area, a heap image opens as a file, arenas past 4 GiB, aligned blocks.

use crate::util::{check, fill, open, Rng};
use parena::{BackingKind, Error, Freelist, Options};
use std::io::Write;

#[test]
#[cfg_attr(miri, ignore = "includes a file map (Miri cannot mmap files)")]
fn every_backing_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let arenas = [
        Options::new().capacity(1 << 20).heap().unwrap(),
        Options::new().capacity(1 << 20).map_anon().unwrap(),
        open(&Options::new().capacity(1 << 20), &dir.path().join("f")).unwrap(),
    ];
    for (arena, kind) in
        arenas
            .iter()
            .zip([BackingKind::Heap, BackingKind::Anon, BackingKind::File])
    {
        assert_eq!(arena.backing(), kind);
        let hs: Vec<_> = (0..300)
            .map(|i| (fill(arena, 1 + i % 97, i as u8), 1 + i % 97, i as u8))
            .collect();
        for &(h, len, b) in &hs {
            check(arena, h, len, b);
            assert_eq!(arena.len_of(h).unwrap(), len);
        }
        let s = arena.stats();
        assert_eq!(s.net_blocks, 300);
        assert_eq!(s.allocations, 300);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn reopen_keeps_blocks_roots_and_reserved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a");
    let o = Options::new()
        .capacity(4 << 20)
        .reserved(100)
        .magic_version(9)
        .freelist(Freelist::Pessimistic);
    let mut kept = Vec::new();
    let id;
    {
        let mut arena = open(&o, &path).unwrap();
        id = arena.id();
        arena.reserved_mut().unwrap()[..5].copy_from_slice(b"hello");
        let mut rng = Rng(7);
        for i in 0..2000 {
            let len = 1 + rng.below(700) as usize;
            let h = fill(&arena, len, i as u8);
            if rng.below(3) == 0 {
                arena.free(h).unwrap();
            } else {
                kept.push((h, len, i as u8));
            }
        }
        for i in 0..parena::ROOT_SLOTS {
            arena.set_root(i, 1000 + i as u64).unwrap();
        }
        arena.close().unwrap();
    }
    let mut arena = open(&Options::new().magic_version(9), &path).unwrap();
    assert!(arena.was_clean());
    assert_eq!(arena.id(), id);
    assert_eq!(arena.freelist(), Freelist::Pessimistic);
    assert_eq!(&arena.reserved()[..5], b"hello");
    for i in 0..parena::ROOT_SLOTS {
        assert_eq!(arena.root(i), 1000 + i as u64);
    }
    for &(h, len, b) in &kept {
        check(&arena, h, len, b);
    }
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks, kept.len() as u64);
    // Handles stay usable for frees after reopen, and a second free is refused.
    arena.free(kept[0].0).unwrap();
    assert!(matches!(
        arena.free(kept[0].0),
        Err(Error::DoubleFree { .. })
    ));
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn heap_image_opens_as_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("img");
    let mut arena = Options::new()
        .capacity(1 << 20)
        .magic_version(3)
        .heap()
        .unwrap();
    let h = fill(&arena, 64, 0xab);
    arena.set_root(2, h.to_u64()).unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    arena.write_image(&mut f).unwrap();
    f.flush().unwrap();
    drop(f);
    let file = open(&Options::new().magic_version(3), &path).unwrap();
    assert!(file.was_clean());
    assert_eq!(file.root(2), h.to_u64());
    check(&file, h, 64, 0xab);
}

#[test]
fn aligned_allocations() {
    let arena = Options::new().capacity(4 << 20).heap().unwrap();
    for align in [1usize, 2, 8, 16, 64, 256, 4096] {
        for size in [1usize, 24, 100, 5000, 70_000] {
            let l = std::alloc::Layout::from_size_align(size, align).unwrap();
            let b = arena.alloc_layout(l).unwrap();
            assert_eq!(b.as_ptr() as usize % align, 0, "align {align} size {size}");
            assert_eq!(b.len(), size);
        }
    }
    let mut a = arena;
    assert!(a.verify().unwrap().is_clean());
}

#[test]
#[cfg_attr(miri, ignore = "maps a 6 GiB sparse file")]
fn arena_over_4_gib() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big");
    let cap = 6u64 << 30;
    let o = Options::new().capacity(cap).preallocate(false);
    let far = {
        let a = open(&o, &path).unwrap();
        // The longest block there can be (4 GiB - 4 KiB - 16), then a 512 MiB block past 4 GiB.
        let mut b = a.alloc(parena::MAX_BLOCK_LEN as usize).unwrap();
        assert_eq!(b.len() as u64, parena::MAX_BLOCK_LEN);
        let n = b.len();
        b[n - 8..].copy_from_slice(b"far away");
        let huge = b.into_handle();
        assert_eq!(a.len_of(huge).unwrap() as u64, parena::MAX_BLOCK_LEN);
        assert!(matches!(
            a.alloc(parena::MAX_BLOCK_LEN as usize + 1),
            Err(Error::TooLarge { .. })
        ));
        let mut b = a.alloc(512 << 20).unwrap();
        b[(512 << 20) - 8..].copy_from_slice(b"far away");
        let h = b.into_handle();
        assert!(h.offset() > 4 << 30, "last block at {}", h.offset());
        a.set_root(0, h.to_u64()).unwrap();
        a.set_root(1, huge.to_u64()).unwrap();
        h
    };
    let a = open(&Options::new(), &path).unwrap();
    assert_eq!(a.capacity(), cap);
    let h = parena::Handle::from_u64(a.root(0));
    assert_eq!(h, far);
    let mut buf = [0u8; 8];
    a.read(h, (512 << 20) - 8, &mut buf).unwrap();
    assert_eq!(&buf, b"far away");
    let huge = parena::Handle::from_u64(a.root(1));
    a.read(huge, parena::MAX_BLOCK_LEN as usize - 8, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"far away");
}
