//! The map options matching rarena-allocator's: `populate`, `huge_pages`, `lock_memory`,
//! `remove_on_drop`. Where the system refuses one (an `mlock` limit, huge pages switched off, an
//! old kernel) the test says so on stderr and skips instead of failing: the refusal must be the
//! typed `Error::Refused` naming the option.

use parena::{BackingKind, Error, Options};

/// Allocates, writes and reads back a few blocks: the arena works with the option on.
fn exercise(arena: &parena::Arena) {
    let hs: Vec<_> = (0..100u8)
        .map(|i| arena.alloc_copy(&[i; 200]).expect("alloc"))
        .collect();
    for (i, h) in hs.iter().enumerate() {
        let mut buf = [0u8; 200];
        arena.read(*h, 0, &mut buf).expect("read");
        assert_eq!(buf, [i as u8; 200]);
    }
}

/// `Ok(arena)` → the arena; `Err(Refused)` for `option` → `None` after a skip message.
fn or_skip(option: &str, r: Result<parena::Arena, Error>) -> Option<parena::Arena> {
    match r {
        Ok(a) => Some(a),
        Err(Error::Refused { option: o, error }) if o == option => {
            eprintln!("SKIPPED: the system refused {option} here: {error}");
            None
        }
        Err(e) => panic!("{option}: unexpected error {e:?}"),
    }
}

#[test]
#[cfg_attr(miri, ignore = "madvise and file maps (not in Miri)")]
fn populate_anon_and_file() {
    let opts = Options::new().capacity(4 << 20).populate(true);
    if let Some(a) = or_skip("populate", opts.map_anon()) {
        exercise(&a);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("populate.arena");
    // SAFETY: a fresh file in a private directory.
    if let Some(a) = or_skip("populate", unsafe { opts.map_file(&path) }) {
        exercise(&a);
        drop(a);
        // Reopen populated: the data is there.
        // SAFETY: as above.
        let a = unsafe { Options::new().populate(true).map_file(&path) }.expect("reopen");
        assert_eq!(a.verify_live_blocks(), 100);
    }
}

#[test]
#[cfg_attr(miri, ignore = "madvise (not in Miri)")]
fn huge_pages_anon() {
    let opts = Options::new().capacity(8 << 20).huge_pages(true);
    if let Some(a) = or_skip("huge_pages", opts.map_anon()) {
        exercise(&a);
    }
}

#[test]
#[cfg_attr(miri, ignore = "mlock (not in Miri)")]
fn lock_memory_small_map() {
    // 1 MiB: under the usual 8 MiB RLIMIT_MEMLOCK, so most machines allow it.
    let opts = Options::new().capacity(1 << 20).lock_memory(true);
    if let Some(a) = or_skip("lock_memory", opts.map_anon()) {
        exercise(&a);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // SAFETY: a fresh file in a private directory.
    if let Some(a) = or_skip("lock_memory", unsafe {
        opts.map_file(dir.path().join("l"))
    }) {
        exercise(&a);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn remove_on_drop_removes_after_the_last_clone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("scratch.arena");
    let opts = Options::new().capacity(1 << 20).remove_on_drop(true);
    // SAFETY: a fresh file in a private directory.
    let a = unsafe { opts.map_file(&path) }.expect("create");
    exercise(&a);
    let clone = a.clone();
    drop(a);
    assert!(path.exists(), "a clone still holds the arena");
    drop(clone);
    assert!(!path.exists(), "removed when the last clone went");

    // Without the option the file stays.
    // SAFETY: as above.
    drop(unsafe { Options::new().capacity(1 << 20).map_file(&path) }.expect("create"));
    assert!(path.exists());
}

#[test]
fn map_settings_on_a_heap_are_typed_errors() {
    for (opts, option) in [
        (Options::new().populate(true), "populate"),
        (Options::new().huge_pages(true), "huge_pages"),
        (Options::new().lock_memory(true), "lock_memory"),
        (Options::new().remove_on_drop(true), "remove_on_drop"),
    ] {
        match opts.capacity(1 << 20).heap() {
            Err(Error::Unsupported {
                option: o,
                backing: BackingKind::Heap,
            }) => assert_eq!(o, option),
            other => panic!("{option}: {other:?}"),
        }
    }
    assert!(matches!(
        Options::new().remove_on_drop(true).map_anon(),
        Err(Error::Unsupported {
            option: "remove_on_drop",
            backing: BackingKind::Anon
        })
    ));
}

/// `verify()` needs `&mut`; a helper so the tests above read straight.
trait LiveBlocks {
    fn verify_live_blocks(self) -> u64;
}

impl LiveBlocks for parena::Arena {
    fn verify_live_blocks(mut self) -> u64 {
        let r = self.verify().expect("verify");
        assert!(r.is_clean(), "{r:?}");
        r.live_blocks
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn create_false_leaves_an_empty_file_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty");
    std::fs::write(&path, b"").expect("write");
    let opts = Options::new().capacity(1 << 20).create(false);
    // SAFETY: a file in a private directory that only this test uses.
    let r = unsafe { opts.map_file(&path) };
    assert!(matches!(r, Err(Error::Magic { .. })), "{r:?}");
    assert_eq!(
        std::fs::metadata(&path).expect("stat").len(),
        0,
        "untouched"
    );
    // The default (create) still makes an arena of it.
    // SAFETY: as above.
    let a = unsafe { Options::new().capacity(1 << 20).map_file(&path) }.expect("create");
    assert_eq!(a.capacity(), 1 << 20);
}

/// `map_copy`: a writable arena over a private copy-on-write map; nothing reaches the file, a
/// dirty file is recovered in memory only, and growth is refused.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn map_copy_never_writes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("arena");
    // SAFETY: a private file in a private directory; no one else maps it.
    let arena = unsafe { Options::new().capacity(1 << 20).map_file(&path) }.unwrap();
    let kept: Vec<_> = (0..50u8)
        .map(|i| arena.alloc_copy(&[i; 64]).unwrap())
        .collect();
    // A dirty image (the writer still open), kept as a second file.
    let dirty = dir.path().join("dirty");
    std::fs::write(&dirty, std::fs::read(&path).unwrap()).unwrap();
    drop(arena);
    for file in [&path, &dirty] {
        let before = std::fs::read(file).unwrap();
        // SAFETY: as above.
        let copy = unsafe { Options::new().map_copy(true).map_file(file) }.unwrap();
        assert!(!copy.is_read_only());
        for (i, &h) in kept.iter().enumerate() {
            assert_eq!(copy.read_with(h, <[u8]>::to_vec).unwrap(), [i as u8; 64]);
            copy.free(h).unwrap();
        }
        for _ in 0..100 {
            let _ = copy.alloc_copy(&[0xee; 200]).unwrap();
        }
        copy.flush().unwrap();
        // A writer is locked out while the copy holds the file; a reader is not.
        // SAFETY: as above.
        let writer = unsafe { Options::new().map_file(file) };
        assert!(matches!(writer, Err(Error::Locked)), "{writer:?}");
        // SAFETY: as above.
        let reader = unsafe { Options::new().read_only(true).map_file(file) };
        assert!(reader.is_ok(), "{reader:?}");
        drop(reader);
        drop(copy);
        assert!(
            std::fs::read(file).unwrap() == before,
            "a copy-on-write arena changed {file:?}"
        );
    }
    // SAFETY: as above.
    let grow = unsafe {
        Options::new()
            .map_copy(true)
            .capacity(4 << 20)
            .map_file(&path)
    };
    assert!(matches!(grow, Err(Error::ReadOnly)), "{grow:?}");
    // SAFETY: as above.
    let missing = unsafe {
        Options::new()
            .map_copy(true)
            .map_file(dir.path().join("none"))
    };
    assert!(matches!(missing, Err(Error::Open { .. })), "{missing:?}");
}

/// `offset`: an arena inside a larger file, after bytes the engine keeps for itself; those bytes
/// are never touched, clean and dirty reopens find the arena, and misuse gets typed errors.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn an_arena_at_an_offset_inside_a_larger_file() {
    const AT: u64 = 3 * 4096;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("engine.db");
    let superblock: Vec<u8> = (0..AT).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &superblock).unwrap();
    let opts = || Options::new().capacity(1 << 20).offset(AT);
    // SAFETY: a private file in a private directory; no one else maps it.
    let arena = unsafe { opts().map_file(&path) }.unwrap();
    let handles: Vec<_> = (0..100u8)
        .map(|i| arena.alloc_copy(&[i; 100]).unwrap())
        .collect();
    arena.set_root(0, handles[7].to_u64()).unwrap();
    // A dirty image (the writer still open).
    let dirty = dir.path().join("dirty.db");
    std::fs::write(&dirty, std::fs::read(&path).unwrap()).unwrap();
    drop(arena);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(
        &bytes[..AT as usize],
        &superblock[..],
        "the bytes before the arena changed"
    );
    assert_eq!(&bytes[AT as usize..AT as usize + 8], &parena::MAGIC);
    assert_eq!(bytes.len() as u64, AT + (1 << 20));
    for file in [&path, &dirty] {
        // SAFETY: as above.
        let mut arena = unsafe { opts().map_file(file) }.unwrap();
        assert_eq!(arena.was_clean(), file == &path);
        for (i, &h) in handles.iter().enumerate() {
            assert_eq!(arena.read_with(h, <[u8]>::to_vec).unwrap(), [i as u8; 100]);
        }
        assert_eq!(arena.root(0), handles[7].to_u64());
        assert!(arena.verify().unwrap().is_clean());
        drop(arena);
        let bytes = std::fs::read(file).unwrap();
        assert_eq!(&bytes[..AT as usize], &superblock[..]);
    }
    // At the start of the file there is no arena (the engine's bytes are there).
    // SAFETY: as above.
    let at_zero = unsafe { Options::new().create(false).map_file(&path) };
    assert!(matches!(at_zero, Err(Error::Magic { .. })), "{at_zero:?}");
    // SAFETY: as above.
    let odd = unsafe { Options::new().offset(AT + 8).map_file(&path) };
    assert!(
        matches!(odd, Err(Error::Offset { align: 4096, .. })),
        "{odd:?}"
    );
    // SAFETY: as above.
    let rod = unsafe { opts().remove_on_drop(true).map_file(&path) };
    assert!(
        matches!(
            rod,
            Err(Error::Unsupported {
                option: "remove_on_drop",
                ..
            })
        ),
        "{rod:?}"
    );
    assert!(path.exists());
    let heap = Options::new().offset(4096).heap();
    assert!(
        matches!(
            heap,
            Err(Error::Unsupported {
                option: "offset",
                backing: BackingKind::Heap
            })
        ),
        "{heap:?}"
    );
}
