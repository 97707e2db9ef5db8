//! Listing what a file holds: `live_blocks` after a crash finds the blocks a structure never
//! linked (orphans); `try_root` refuses a slot past the last with a typed error.

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
