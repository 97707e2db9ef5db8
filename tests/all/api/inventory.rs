//! Listing what a file holds: `live_blocks` after a crash finds the blocks a structure never
//! linked (orphans); `try_root` refuses a slot past the last with a typed error; `clear` empties
//! an arena and leaves every old handle stale.

use parena::{Arena, Error, Handle, Options, ROOT_SLOTS};
use std::path::Path;

fn open(path: &Path) -> Arena {
    // SAFETY: a private file in a private directory; nothing else maps it.
    unsafe { Options::new().capacity(1 << 20).map_file(path) }.unwrap()
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn live_blocks_after_a_crash_finds_the_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let arena = open(&path);
    let linked = arena.alloc_copy(b"linked into the structure").unwrap();
    arena.set_root(0, linked.to_u64()).unwrap();
    let orphan = arena.alloc_copy(b"allocated, never linked").unwrap();
    let freed = arena.alloc_copy(b"freed").unwrap();
    arena.free(freed).unwrap();
    // A writer that had not finished when the process died.
    let mut unfinished = arena.alloc(16).unwrap();
    unfinished[..4].copy_from_slice(b"half");
    let unfinished_h = unfinished.handle();
    // The file as a `kill -9` now would leave it (the map writes through the page cache).
    let crashed = dir.path().join("crashed");
    std::fs::write(&crashed, std::fs::read(&path).unwrap()).unwrap();
    drop(unfinished);
    drop(arena);

    let mut arena = open(&crashed);
    assert!(!arena.was_clean());
    let live = arena.live_blocks().unwrap();
    let handles: Vec<Handle> = live.iter().map(|b| b.handle).collect();
    assert_eq!(handles, vec![linked, orphan, unfinished_h]);
    assert_eq!(live[1].len, 23);
    let root = Handle::from_u64(arena.root(0));
    let orphans: Vec<Handle> = handles.into_iter().filter(|&h| h != root).collect();
    assert_eq!(orphans, vec![orphan, unfinished_h]);
    for h in orphans {
        arena.free(h).unwrap();
    }
    assert_eq!(arena.live_blocks().unwrap().len(), 1);
    // The walk needs the heap to hold still.
    let clone = arena.clone();
    assert!(matches!(arena.live_blocks(), Err(Error::Shared)));
    drop(clone);
}

#[test]
fn try_root_refuses_a_slot_past_the_last() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    arena.set_root(ROOT_SLOTS - 1, 7).unwrap();
    assert_eq!(arena.try_root(ROOT_SLOTS - 1).unwrap(), 7);
    assert!(matches!(
        arena.try_root(ROOT_SLOTS),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        arena.try_root(usize::MAX),
        Err(Error::OutOfBounds { .. })
    ));
}

#[test]
fn clear_frees_everything_and_old_handles_stay_stale() {
    let mut arena = Options::new().capacity(1 << 20).heap().unwrap();
    let old: Vec<Handle> = (0..200u8)
        .map(|i| arena.alloc_copy(&[i; 40]).unwrap())
        .collect();
    for &h in old.iter().step_by(3) {
        arena.free(h).unwrap();
    }
    arena.set_root(3, 99).unwrap();
    arena.clear().unwrap();
    let s = arena.stats();
    assert_eq!(s.allocated, 0, "{s:?}");
    assert!(arena.live_blocks().unwrap().is_empty());
    assert_eq!(arena.root(3), 99, "clear keeps the roots");
    for &h in &old {
        assert!(arena.read_with(h, |_| ()).is_err(), "{h:?} still readable");
    }
    // The space is usable again, zeroed, and no new block answers to an old handle.
    let new: Vec<Handle> = (0..200u8)
        .map(|i| {
            let mut b = arena.alloc(40).unwrap();
            assert!(
                b.iter().all(|&x| x == 0),
                "a block after clear was not zeroed"
            );
            b.fill(i ^ 0x5a);
            b.into_handle()
        })
        .collect();
    for &h in &old {
        if let Ok(bytes) = arena.read_with(h, <[u8]>::to_vec) {
            panic!("old handle {h:?} reads a new block: {bytes:?}");
        }
    }
    for (i, &h) in new.iter().enumerate() {
        assert_eq!(
            arena.read_with(h, <[u8]>::to_vec).unwrap(),
            [i as u8 ^ 0x5a; 40]
        );
    }
    assert!(arena.verify().unwrap().is_clean());
    let clone = arena.clone();
    assert!(matches!(arena.clear(), Err(Error::Shared)));
    drop(clone);
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_cleared_file_arena_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    let mut arena = open(&path);
    for i in 0..100u8 {
        let _ = arena.alloc_copy(&[i; 100]).unwrap();
    }
    arena.clear().unwrap();
    arena.flush().unwrap();
    drop(arena);
    let mut arena = open(&path);
    assert!(arena.was_clean());
    assert!(arena.live_blocks().unwrap().is_empty());
    assert!(arena.verify().unwrap().is_clean());
}
