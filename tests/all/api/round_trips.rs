//! The API's basic promises: a block reads back what was written on every backing, across a
//! reopen; `read_with` pins once and reports stale handles.

use crate::util::{check, fill};
use parena::{Arena, Error, Options};

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
