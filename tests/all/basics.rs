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
        // Under Miri a smaller heap: the same fills, splits and reuses in a quarter of the steps.
        let arena = Options::new()
            .capacity(if cfg!(miri) { 20 << 10 } else { 64 << 10 })
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

#[test]
fn lanes_keep_each_kind_of_block_together() {
    let arena = Options::new().capacity(4 << 20).heap().unwrap();
    let values = arena.with_lane(1);
    assert_eq!(
        (arena.lane(), values.lane(), values.clone().lane()),
        (0, 1, 1)
    );
    let mut nodes = Vec::new();
    let mut vals = Vec::new();
    for i in 0..200u8 {
        nodes.push(fill(&arena, 32, i));
        vals.push(fill(&values, 24 + usize::from(i % 5) * 8, !i));
    }
    // Each lane bumps its own chunk: neighbours in a lane are one span apart (8-byte header +
    // the length), whatever the other lane allocated in between.
    for w in nodes.windows(2) {
        assert_eq!(w[1].offset() - w[0].offset(), 40, "nodes spread out");
    }
    for (i, w) in vals.windows(2).enumerate() {
        assert_eq!(
            w[1].offset() - w[0].offset(),
            8 + 24 + (i as u64 % 5) * 8,
            "values spread out"
        );
    }
    // A block is read and freed through any clone, whatever lane it came from.
    for (i, (&n, &v)) in nodes.iter().zip(&vals).enumerate() {
        check(&values, n, 32, i as u8);
        check(&arena, v, 24 + i % 5 * 8, !(i as u8));
    }
    for &v in &vals[..100] {
        arena.free(v).unwrap();
    }
    for &n in &nodes[..100] {
        values.free(n).unwrap();
    }
    drop(values);
    let mut arena = arena;
    assert!(arena.verify().unwrap().is_clean());
    arena.compact().unwrap();
    for (i, (&n, &v)) in nodes.iter().zip(&vals).enumerate().skip(100) {
        check(&arena, n, 32, i as u8);
        check(&arena, v, 24 + i % 5 * 8, !(i as u8));
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn lanes_from_many_threads_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lanes.arena");
    // SAFETY: a test's own file; nothing else maps or changes it.
    let arena = unsafe { Options::new().capacity(8 << 20).map_file(&path) }.unwrap();
    let per_thread: Vec<Vec<(Handle, usize, u8)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3usize)
            .map(|t| {
                let arena = arena.with_lane(t % parena::LANES);
                let other = arena.with_lane((t + 1) % parena::LANES);
                s.spawn(move || {
                    (0..300usize)
                        .map(|i| {
                            let a = if i % 2 == 0 { &arena } else { &other };
                            let len = 8 + (i * 13 + t) % 200;
                            let byte = (i + t * 7) as u8;
                            (fill(a, len, byte), len, byte)
                        })
                        .collect()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    arena.close().unwrap();
    // SAFETY: as above; the previous open is closed.
    let mut arena = unsafe { Options::new().map_file(&path) }.unwrap();
    assert!(arena.was_clean());
    for &(h, len, byte) in per_thread.iter().flatten() {
        check(&arena, h, len, byte);
    }
    assert!(arena.verify().unwrap().is_clean());
}

#[test]
#[should_panic(expected = "lane 4 out of 0..4")]
fn lane_out_of_range_panics() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let _ = arena.with_lane(parena::LANES);
}

#[test]
fn a_lane_refills_from_what_it_frees() {
    let arena = Options::new().capacity(4 << 20).heap().unwrap();
    let values = arena.with_lane(2);
    let _keep = fill(&arena, 48, 1);
    for _ in 0..100 {
        let h = fill(&values, 48, 2);
        // Freed through the lane-2 clone: lane 2's per-thread cache takes it (or its chunk
        // rewinds), and lane 2's next allocation of the size gets it back.
        values.free(h).unwrap();
        let again = fill(&values, 48, 3);
        assert_eq!(
            again.offset(),
            h.offset(),
            "lane 2 did not reuse its own block"
        );
        values.free(again).unwrap();
    }
}

#[test]
fn flush_hands_every_lanes_cached_blocks_to_the_shared_lists() {
    // A small arena with small chunks: the other thread runs the main memory out and must then
    // find the blocks this thread freed in two lanes, which a flush moved from this thread's
    // caches to the shared lists.
    let arena = Options::new()
        .capacity(if cfg!(miri) { 64 << 10 } else { 1 << 20 })
        .chunk_size(4096)
        .heap()
        .unwrap();
    let lanes = [arena.with_lane(0), arena.with_lane(3)];
    let mut freed = Vec::new();
    for lane in &lanes {
        let hs: Vec<_> = (0..20).map(|_| fill(lane, 40, 9)).collect();
        // A block after them keeps the frees from rewinding the chunk.
        let _pin = fill(lane, 40, 9);
        for h in hs {
            lane.free(h).unwrap();
            freed.push(h.offset());
        }
    }
    arena.flush().unwrap();
    let reused = std::thread::scope(|s| {
        s.spawn(|| {
            let mut reused = 0;
            loop {
                match arena.alloc(40) {
                    Ok(b) => reused += usize::from(freed.contains(&b.offset())),
                    Err(Error::Full { .. }) => break reused,
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .join()
        .unwrap()
    });
    assert_eq!(
        reused,
        freed.len(),
        "blocks stuck in a lane's cache after flush"
    );
}

#[test]
fn read_with_pins_once_and_reports_stale_handles() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let h = arena.alloc_copy(b"0123456789").unwrap();
    assert_eq!(arena.read_with(h, |b| b.to_vec()).unwrap(), b"0123456789");
    assert_eq!(arena.read_with(h, <[u8]>::len).unwrap(), 10);
    let mut buf = [0u8; 4];
    arena.read(h, 6, &mut buf).unwrap();
    assert_eq!(&buf, b"6789");
    assert!(matches!(
        arena.read(h, 7, &mut buf),
        Err(Error::OutOfBounds { .. })
    ));
    // A panic inside the closure still unpins: the block frees and is reused.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        arena.read_with(h, |_| panic!("reader fails"))
    }));
    assert!(r.is_err());
    arena.free(h).unwrap();
    assert!(matches!(
        arena.read_with(h, |_| ()),
        Err(Error::Stale { .. })
    ));
    let again = arena.alloc(10).unwrap().into_handle();
    assert_eq!(again.offset(), h.offset(), "a leaked pin kept the block");
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn read_with_on_a_read_only_arena() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.arena");
    // SAFETY: a test's own file; nothing else maps or changes it.
    let arena = unsafe { Options::new().capacity(1 << 20).map_file(&path) }.unwrap();
    let h = arena.alloc_copy(b"kept").unwrap();
    arena.close().unwrap();
    // SAFETY: as above.
    let ro = unsafe { Options::new().read_only(true).map_file(&path) }.unwrap();
    assert_eq!(ro.read_with(h, |b| b.to_vec()).unwrap(), b"kept");
}

#[test]
fn one_thread_many_arenas_and_lanes() {
    // More arenas than a thread keeps slots for (8), each used in two lanes, round-robin: every
    // switch moves slots and cells around; no block may land in another arena's or lane's chunk.
    let arenas: Vec<Arena> = (0..12)
        .map(|_| Options::new().capacity(1 << 20).heap().unwrap())
        .collect();
    let mut made = Vec::new();
    let rounds = if cfg!(miri) { 20 } else { 200 };
    let worker = |made: &mut Vec<(usize, Handle, usize, u8)>| {
        for r in 0..rounds {
            for (i, a) in arenas.iter().enumerate() {
                let lane = a.with_lane((r + i) % 2 * 2);
                let len = 8 + (r * 7 + i * 3) % 90;
                let byte = (r * 31 + i) as u8;
                made.push((i, fill(&lane, len, byte), len, byte));
            }
        }
    };
    // Once on a thread that exits (its cells are abandoned), then on this one (which adopts them).
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut m = Vec::new();
            worker(&mut m);
            m
        })
        .join()
        .unwrap()
    })
    .into_iter()
    .for_each(|x| made.push(x));
    worker(&mut made);
    for &(i, h, len, byte) in &made {
        check(&arenas[i], h, len, byte);
    }
    for mut a in arenas {
        let r = a.verify().unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(a.stats().net_blocks, 2 * rounds as i64);
    }
}
