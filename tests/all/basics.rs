use parena::{Arena, Error, Freelist, Handle, Options};

fn fill(arena: &Arena, len: usize, byte: u8) -> Handle {
    let mut b = arena.alloc(len).unwrap();
    assert!(b.iter().all(|&x| x == 0), "fresh block not zeroed");
    b.fill(byte);
    b.into_handle()
}

fn check(arena: &Arena, h: Handle, len: usize, byte: u8) {
    let mut buf = vec![0u8; len];
    arena.read(h, 0, &mut buf).unwrap();
    assert!(
        buf.iter().all(|&x| x == byte),
        "block {h:?} lost its pattern"
    );
}

fn round_trip(arena: Arena) {
    let hs: Vec<_> = (0..200)
        .map(|i| {
            (
                fill(&arena, 1 + i * 7 % 300, i as u8),
                1 + i * 7 % 300,
                i as u8,
            )
        })
        .collect();
    for &(h, len, b) in &hs {
        check(&arena, h, len, b);
    }
    for &(h, _, _) in hs.iter().step_by(2) {
        arena.free(h).unwrap();
    }
    for &(h, len, b) in hs.iter().skip(1).step_by(2) {
        check(&arena, h, len, b);
    }
    for &(h, _, _) in hs.iter().step_by(2) {
        assert!(arena.free(h).is_err());
    }
}

#[test]
fn heap_round_trip() {
    round_trip(Options::new().capacity(1 << 20).heap().unwrap());
}

#[test]
fn anon_round_trip() {
    round_trip(Options::new().capacity(1 << 20).map_anon().unwrap());
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn file_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.parena");
    let mut kept = Vec::new();
    {
        // SAFETY: the file is private to this test.
        let arena = unsafe { Options::new().capacity(1 << 20).map_file(&path) }.unwrap();
        for i in 0..100 {
            kept.push((fill(&arena, 10 + i, i as u8), 10 + i, i as u8));
        }
        arena.set_root(0, kept[0].0.to_u64()).unwrap();
        arena.flush().unwrap();
    }
    // SAFETY: as above.
    let mut arena = unsafe { Options::new().map_file(&path) }.unwrap();
    assert!(arena.was_clean());
    assert_eq!(arena.root(0), kept[0].0.to_u64());
    for &(h, len, b) in &kept {
        check(&arena, h, len, b);
    }
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.live_blocks, 100);
}

#[test]
fn bad_sizes() {
    let arena = Options::new().capacity(1 << 16).heap().unwrap();
    assert!(matches!(arena.alloc(0), Err(Error::ZeroSize)));
    assert!(matches!(
        arena.alloc(usize::MAX),
        Err(Error::TooLarge { .. })
    ));
    match arena.alloc(1 << 20) {
        Err(Error::Full {
            requested,
            available,
        }) => {
            assert_eq!(requested, 1 << 20);
            assert_eq!(available, arena.stats().remaining);
        }
        other => panic!("{other:?}"),
    };
}

#[test]
fn freelist_reuse() {
    for kind in [Freelist::Optimistic, Freelist::Pessimistic] {
        let arena = Options::new()
            .capacity(64 << 10)
            .freelist(kind)
            .heap()
            .unwrap();
        let mut live = Vec::new();
        for round in 0..if cfg!(miri) { 3 } else { 50u32 } {
            loop {
                match arena.alloc(100) {
                    Ok(mut b) => {
                        b.fill(round as u8);
                        live.push((b.into_handle(), round as u8));
                    }
                    Err(Error::Full { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            for (h, b) in live.drain(..).rev().step_by(1) {
                check(&arena, h, 100, b);
                arena.free(h).unwrap();
            }
        }
        assert!(arena.stats().from_freelist > 0 || arena.stats().rewinds > 0);
    }
}

#[test]
fn thread_cache_reuses_without_shared_lists() {
    for cache in [true, false] {
        let arena = Options::new()
            .capacity(4 << 20)
            .thread_cache(cache)
            .heap()
            .unwrap();
        let keep: Vec<_> = (0..100).map(|i| fill(&arena, 40, i as u8)).collect();
        let rounds = if cfg!(miri) { 200 } else { 1000u64 };
        for round in 0..rounds {
            let a = fill(&arena, 40, 1);
            let b = fill(&arena, 200, 2);
            let c = fill(&arena, 40, 3);
            check(&arena, a, 40, 1);
            arena.free(a).unwrap();
            arena.free(c).unwrap();
            arena.free(b).unwrap();
            let _ = round;
        }
        let s = arena.stats();
        if cache {
            assert!(s.from_cache >= rounds * 9 / 10, "{s:?}");
            assert!(s.cache_hit_rate() > 0.25);
        } else {
            assert_eq!(s.from_cache, 0);
        }
        // Blocks allocated before stay intact; the heap walks clean.
        for (i, &h) in keep.iter().enumerate() {
            check(&arena, h, 40, i as u8);
        }
        let mut arena = arena;
        let r = arena.verify().unwrap();
        assert!(r.is_clean(), "{r:?}");
        let before = arena.stats().allocated;
        arena.compact().unwrap();
        assert!(arena.stats().allocated <= before);
        assert!(arena.verify().unwrap().is_clean());
    }
}

#[test]
fn aligned_blocks_reuse_freed_space_of_their_size() {
    // Large 16-aligned blocks (as a hash table's) freed and allocated again once the main memory
    // is used up: each must reuse a freed block of its own size.
    let arena = Options::new()
        .capacity(8 << 20)
        .chunk_size(64 << 10)
        .heap()
        .unwrap();
    let layout = std::alloc::Layout::from_size_align(1 << 20, 16).unwrap();
    for _ in 0..100 {
        let b = arena
            .alloc_layout(layout)
            .expect("a freed block of this size exists");
        let h = b.handle();
        drop(b);
        arena.free(h).unwrap();
    }
    assert!(arena.stats().from_freelist > 50, "{:?}", arena.stats());
}
