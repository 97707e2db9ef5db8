//! Allocation lanes: each keeps its kind of block together, refills from what it frees, and
//! survives a reopen; one thread in many arenas and lanes.

use crate::util::{check, fill};
use parena::{Arena, Handle, Options};

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
