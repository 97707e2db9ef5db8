//! parena under the ecosystem's collections: hashbrown and allocator-api2's `Vec` doing real work
//! on heap and anonymous-map arenas, checked against the same operations on std collections.

#![cfg(feature = "allocator-api2")]

use crate::util::Rng;
use allocator_api2::vec::Vec as AVec;
use parena::{Arena, Freelist, Options};
use std::collections::HashMap as StdMap;

fn arenas() -> Vec<Arena> {
    vec![
        Options::new()
            .capacity(256 << 20)
            .freelist(Freelist::Optimistic)
            .heap()
            .unwrap(),
        Options::new()
            .capacity(256 << 20)
            .freelist(Freelist::Pessimistic)
            .map_anon()
            .unwrap(),
    ]
}

#[test]
fn hashbrown_map_matches_std() {
    let n = if cfg!(miri) { 500 } else { 100_000 };
    for arena in arenas() {
        let mut ours = hashbrown::HashMap::new_in(&arena);
        let mut std = StdMap::new();
        let mut rng = Rng(3);
        for i in 0..n {
            let k = rng.below(n / 2);
            let v = format!("value-{i}-{}", "x".repeat((i % 40) as usize));
            if rng.below(3) == 0 {
                assert_eq!(ours.remove(&k), std.remove(&k));
            } else {
                assert_eq!(ours.insert(k, v.clone()), std.insert(k, v));
            }
        }
        assert_eq!(ours.len(), std.len());
        for (k, v) in &std {
            assert_eq!(ours.get(k), Some(v));
        }
        ours.shrink_to_fit();
        assert_eq!(ours.len(), std.len());
        drop(ours);
        let s = arena.stats();
        assert!(s.allocations > 10 && s.frees > 10, "{s:?}");
        let mut a = arena;
        assert!(a.verify().unwrap().is_clean());
    }
}

#[test]
fn allocator_api2_vec_grows_and_shrinks() {
    for arena in arenas() {
        let mut ours: AVec<u64, &Arena> = AVec::new_in(&arena);
        let mut std = Vec::new();
        let mut rng = Rng(11);
        let rounds = if cfg!(miri) { 200 } else { 100_000 };
        for i in 0..rounds {
            match rng.below(10) {
                0 => {
                    let keep = rng.below(ours.len() as u64 + 1) as usize;
                    ours.truncate(keep);
                    std.truncate(keep);
                    ours.shrink_to_fit();
                    std.shrink_to_fit();
                }
                1 => {
                    ours.pop();
                    std.pop();
                }
                _ => {
                    ours.push(i);
                    std.push(i);
                }
            }
            assert_eq!(ours.len(), std.len());
        }
        assert_eq!(&ours[..], &std[..]);
        // Several vectors at once so growth cannot always happen in place.
        let mut many: std::vec::Vec<AVec<u32, &Arena>> =
            (0..8).map(|_| AVec::new_in(&arena)).collect();
        for i in 0..20_000u32 {
            many[(i % 8) as usize].push(i);
        }
        for (j, v) in many.iter().enumerate() {
            assert!(v
                .iter()
                .enumerate()
                .all(|(k, &x)| x == (k as u32) * 8 + j as u32));
        }
        drop(many);
        drop(ours);
        let mut a = arena;
        let r = a.verify().unwrap();
        assert!(r.is_clean(), "{r:?}");
    }
}

#[test]
fn owning_arena_allocator_outlives_borrow() {
    let arena = Options::new().capacity(8 << 20).heap().unwrap();
    let mut v: AVec<String, Arena> = AVec::new_in(arena.clone());
    for i in 0..1000 {
        v.push(i.to_string());
    }
    drop(arena); // the vector's clone keeps the arena alive
    assert_eq!(v[999], "999");
}

#[test]
fn grow_zeroed_after_an_in_place_shrink_reads_zero() {
    use allocator_api2::alloc::Allocator;
    use std::alloc::Layout;
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let a = &arena;
    let big = Layout::from_size_align(15, 8).unwrap();
    let small = Layout::from_size_align(9, 8).unwrap();
    let p = a.allocate(big).unwrap().cast::<u8>();
    // SAFETY: `p` holds 15 bytes we own.
    unsafe { p.as_ptr().write_bytes(0xab, 15) };
    // SAFETY: `p` came from `allocate(big)`; shrinking and growing keep it ours.
    let q = unsafe { a.shrink(p, big, small) }.unwrap().cast::<u8>();
    // SAFETY: as above.
    let r = unsafe { a.grow_zeroed(q, small, big) }
        .unwrap()
        .cast::<u8>();
    // SAFETY: `r` holds 15 bytes we own.
    let bytes = unsafe { std::slice::from_raw_parts(r.as_ptr(), 15) };
    assert!(bytes[..9].iter().all(|&b| b == 0xab));
    assert!(bytes[9..].iter().all(|&b| b == 0), "{bytes:?}");
    // SAFETY: allocated above with `big`.
    unsafe { a.deallocate(r, big) };
}

/// After a crash no pointer the allocator interfaces handed out survives, so their blocks are
/// orphans that `free` refuses by design (`Foreign`: a handle never names them). `live_blocks`
/// says which they are, and `free_orphan` frees them once nothing else holds the arena.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn an_allocator_block_orphaned_by_a_crash_is_listed_and_freed() {
    use allocator_api2::alloc::Allocator;
    use parena::{Error, Handle};
    use std::alloc::Layout;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let open = || {
        // SAFETY: a private file; nothing else maps it.
        unsafe { Options::new().capacity(1 << 20).map_file(&path) }.unwrap()
    };
    let a = open();
    let kept = a.alloc_copy(b"by handle").unwrap();
    let layout = Layout::from_size_align(100, 8).unwrap();
    let p = a.allocate(layout).unwrap();
    a.flush().unwrap();
    let crashed = std::fs::read(&path).unwrap();
    // SAFETY: `p` came from `allocate(layout)` on this arena and is not used again.
    unsafe { a.deallocate(p.cast(), layout) };
    drop(a);
    std::fs::write(&path, &crashed).unwrap();

    let mut a = open();
    let live = a.live_blocks().unwrap();
    assert_eq!(live.len(), 2, "{live:?}");
    let orphan = live
        .iter()
        .find(|b| b.foreign)
        .expect("the allocator's block");
    assert_eq!(orphan.len, 100);
    assert!(live.iter().any(|b| b.handle == kept && !b.foreign));
    let h: Handle = orphan.handle;
    assert!(matches!(a.free(h), Err(Error::Foreign { .. })));
    let other = a.clone();
    assert!(matches!(a.free_orphan(h), Err(Error::Shared)));
    drop(other);
    a.free_orphan(h).unwrap();
    assert!(matches!(
        a.free_orphan(h),
        Err(Error::DoubleFree { .. } | Error::Stale { .. })
    ));
    let live = a.live_blocks().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].handle, kept);
    assert!(a.verify().unwrap().is_clean());
}
