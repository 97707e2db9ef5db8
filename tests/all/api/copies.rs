//! Issue 23, item 5: a copy of an arena is a new arena for the blocks allocated after it. Every
//! handle that existed at the copy stays valid in both, with its bytes; a handle of a block one
//! of them allocated afterwards is refused by the other (it would name another block there).
//! Copies made by `write_image`, by a plain file copy of a closed arena, and `map_copy` views.

use parena::{Arena, Handle, Options};
use std::path::Path;

const OLD: usize = 100;
const NEW: usize = 200;

fn open(path: &Path) -> Arena {
    // SAFETY: the test's own temporary files; nothing else maps them.
    unsafe { Options::new().map_file(path) }.expect("open")
}

fn bytes_of(tag: u8, i: usize) -> Vec<u8> {
    vec![tag ^ (i as u8); 24 + (i % 5) * 8]
}

/// `OLD` blocks in a fresh file arena at `path`, closed; their handles.
fn original(path: &Path) -> Vec<Handle> {
    // SAFETY: as `open`.
    let a = unsafe { Options::new().capacity(4 << 20).map_file(path) }.expect("create");
    let hs = (0..OLD)
        .map(|i| a.alloc_copy(&bytes_of(0x11, i)).unwrap())
        .collect();
    a.close().unwrap();
    hs
}

fn assert_old_valid(a: &Arena, old: &[Handle], what: &str) {
    for (i, &h) in old.iter().enumerate() {
        let want = bytes_of(0x11, i);
        let mut got = vec![0u8; want.len()];
        a.read(h, 0, &mut got)
            .unwrap_or_else(|e| panic!("{what}: old handle {i} refused: {e}"));
        assert_eq!(got, want, "{what}: old handle {i} reads other bytes");
    }
}

/// `NEW` fresh blocks, the same sizes in the same order in each arena (so they land at the same
/// offsets).
fn allocate_new(a: &Arena, tag: u8) -> Vec<Handle> {
    (0..NEW)
        .map(|i| a.alloc_copy(&bytes_of(tag, i)).unwrap())
        .collect()
}

/// How many of `theirs` (handles of another arena) `a` accepts.
fn accepted(a: &Arena, theirs: &[Handle]) -> usize {
    theirs
        .iter()
        .filter(|&&h| {
            let mut b = [0u8; 8];
            a.read(h, 0, &mut b).is_ok()
        })
        .count()
}

fn check_pair(a: Arena, b: Arena, old: &[Handle], what: &str) {
    assert_old_valid(&a, old, &format!("{what}, original"));
    assert_old_valid(&b, old, &format!("{what}, copy"));
    let new_a = allocate_new(&a, 0xA0);
    let new_b = allocate_new(&b, 0xB0);
    let same_offsets = new_a
        .iter()
        .zip(&new_b)
        .filter(|(x, y)| x.offset() == y.offset())
        .count();
    assert!(
        same_offsets > NEW / 2,
        "{what}: the workload should reuse offsets ({same_offsets} of {NEW})"
    );
    let (ab, ba) = (accepted(&b, &new_a), accepted(&a, &new_b));
    assert_eq!(
        (ab, ba),
        (0, 0),
        "{what}: of {NEW} new handles, the copy accepts {ab} of the original's and the \
         original {ba} of the copy's"
    );
    // Still valid in their own arena.
    assert_eq!(accepted(&a, &new_a), NEW);
    assert_eq!(accepted(&b, &new_b), NEW);
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_written_image_is_a_new_arena_for_new_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a"), dir.path().join("b"));
    let old = original(&pa);
    let mut a = open(&pa);
    a.write_image(std::fs::File::create(&pb).unwrap()).unwrap();
    let b = open(&pb);
    check_pair(a, b, &old, "write_image");
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_file_copy_of_a_closed_arena_is_a_new_arena_for_new_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pc) = (dir.path().join("a"), dir.path().join("c"));
    let old = original(&pa);
    std::fs::copy(&pa, &pc).unwrap();
    // Either may be opened first.
    let c = open(&pc);
    let a = open(&pa);
    check_pair(a, c, &old, "cp");
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_map_copy_view_is_a_new_arena_for_new_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let pa = dir.path().join("a");
    let old = original(&pa);
    // SAFETY: as `open`.
    let view = unsafe { Options::new().map_copy(true).map_file(&pa) }.unwrap();
    assert_old_valid(&view, &old, "map_copy view");
    let new_view = allocate_new(&view, 0xC0);
    drop(view);
    let a = open(&pa);
    assert_old_valid(&a, &old, "original after the view");
    let new_a = allocate_new(&a, 0xA0);
    assert!(new_a
        .iter()
        .zip(&new_view)
        .any(|(x, y)| x.offset() == y.offset()));
    assert_eq!(
        accepted(&a, &new_view),
        0,
        "the original accepts handles of blocks a map_copy view allocated"
    );
}
