//! What each error says: one test per class of message, checking the `Display` text a user reads.
//! Every message names what was wrong and the bound it broke, and the path where there is one.

use parena::{Error, Handle, Options, Region};

/// The error of a call that must fail, and its message.
fn message<T: std::fmt::Debug>(r: Result<T, Error>) -> (Error, String) {
    let e = r.expect_err("the call must fail");
    let text = e.to_string();
    (e, text)
}

fn assert_has(text: &str, parts: &[&str]) {
    for p in parts {
        assert!(text.contains(p), "{text:?} does not say {p:?}");
    }
}

#[test]
fn capacity_names_the_value_passed_and_the_bound() {
    let (e, zero) = message(Options::new().capacity(0).heap());
    assert!(matches!(e, Error::Capacity { requested: 0, .. }), "{e:?}");
    // The smallest capacity with default options, which the message states.
    let Error::Capacity { min, .. } = e else {
        unreachable!()
    };
    assert!(Options::new().capacity(min).heap().is_ok(), "{min}");
    assert!(Options::new().capacity(min - 4096).heap().is_err(), "{min}");
    assert_has(
        &zero,
        &["capacity 0 bytes", "below", &format!("{min} bytes")],
    );
    // What was passed, not the value rounded up to a page.
    let (_, small) = message(Options::new().capacity(1000).heap());
    assert_has(&small, &["capacity 1000 bytes", "below"]);
    let (_, big) = message(Options::new().capacity(33 << 30).map_anon());
    assert_has(&big, &["33 GiB", "above the maximum", "32 GiB"]);
    let (_, max) = message(Options::new().capacity(u64::MAX).heap());
    assert_has(
        &max,
        &[&u64::MAX.to_string(), "above the maximum", "32 GiB"],
    );
    assert!(!max.contains("header field"), "{max}");
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn offset_names_the_alignment() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: a test's private file; nothing else maps or changes it.
    let (e, text) = message(unsafe { Options::new().offset(14).map_file(dir.path().join("a")) });
    assert!(
        matches!(
            e,
            Error::Offset {
                offset: 14,
                align: 4096
            }
        ),
        "{e:?}"
    );
    assert_has(&text, &["offset 14", "not a multiple of 4096"]);
}

#[test]
fn chunk_size_names_the_range() {
    let (_, text) = message(Options::new().chunk_size(1000).heap());
    assert_has(
        &text,
        &["chunk size 1000", "power of two", "512", "1048576"],
    );
}

#[test]
#[cfg_attr(miri, ignore = "asks the system for a 32 GiB map")]
fn out_of_memory_names_the_size() {
    // The largest arena as an anonymous map: where the system refuses it (more than its memory
    // and swap under the default overcommit rule), the refusal is `NoMemory`, not a bare errno.
    match Options::new().capacity(32 << 30).map_anon() {
        Ok(a) => drop(a),
        Err(e) => assert!(
            matches!(e, Error::NoMemory { requested } if requested == 32 << 30),
            "{e:?}"
        ),
    }
    // The size error a map or allocation gets from the system (`ENOMEM`), as it is shown.
    let e = Error::NoMemory {
        requested: 32 << 30,
    };
    assert_has(&e.to_string(), &["32 GiB", "memory"]);
    assert!(!e.to_string().contains("os error"), "{e}");
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn open_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("db.arena");
    // SAFETY: as above.
    let (e, text) = message(unsafe { Options::new().map_file(&path) });
    assert!(matches!(e, Error::Open { .. }), "{e:?}");
    assert_has(&text, &[&path.display().to_string(), "No such file"]);
    let missing = dir.path().join("missing.arena");
    // SAFETY: as above.
    let (_, text) = message(unsafe { Options::new().create(false).map_file(&missing) });
    assert_has(&text, &[&missing.display().to_string()]);
}

#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn a_failed_create_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Options); 4] = [
        ("zero", Options::new().capacity(0)),
        ("33 GiB", Options::new().capacity(33 << 30)),
        ("u64::MAX", Options::new().capacity(u64::MAX)),
        ("create_new", Options::new().capacity(0).create_new(true)),
    ];
    for (name, o) in cases {
        let path = dir.path().join(name);
        // SAFETY: as above.
        let r = unsafe { o.map_file(&path) };
        assert!(matches!(r, Err(Error::Capacity { .. })), "{name}: {r:?}");
        assert!(!path.exists(), "{name}: a failed create left {path:?}");
    }
    // An existing empty file stays (this open did not create it).
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    // SAFETY: as above.
    assert!(unsafe { Options::new().capacity(0).map_file(&empty) }.is_err());
    assert!(empty.exists());
}

#[test]
fn out_of_bounds_names_the_region() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    let (e, slot) = message(arena.try_root(9999));
    assert!(
        matches!(
            e,
            Error::OutOfBounds {
                region: Region::RootSlots,
                ..
            }
        ),
        "{e:?}"
    );
    assert_has(
        &slot,
        &["root slot 9999", &format!("0..{}", parena::ROOT_SLOTS)],
    );
    assert!(!slot.contains("heap"), "{slot}");

    let h = arena.alloc(1).unwrap().into_handle();
    let (_, block) = message(arena.read(h, 0, &mut [0u8; 8]));
    assert_has(&block, &["bytes 0..8 of the block", "holds 1 bytes"]);
    assert!(!block.contains("heap"), "{block}");

    // SAFETY: the block is never freed; the word is not a multiple of 8, so nothing is returned.
    let (_, align) = message(unsafe { arena.atomic_u64(h, 12) });
    assert_has(&align, &["offset 12", "not a multiple of 8"]);

    let end = arena.stats().heap_end;
    // SAFETY: the range is refused before any word is returned.
    let (_, heap) = message(unsafe { arena.atomic_u64_at(end) });
    assert_has(
        &heap,
        &["outside the heap", &format!("ends at offset {end}")],
    );
    let (_, flush) = message(arena.flush_range(end - 8, 16));
    assert_has(&flush, &["outside the heap"]);
}

#[test]
fn stale_and_foreign_handles_say_what_they_are() {
    let mut arena = Options::new().capacity(1 << 20).heap().unwrap();
    // A handle that never named a block (generation 0 is never issued).
    let (_, forged) = message(arena.len_of(Handle::from_u64(12345)));
    assert!(!forged.contains("block has 0"), "{forged}");
    assert!(
        forged.contains("does not name a block") || forged.contains("not in the allocated heap"),
        "{forged}"
    );
    // A freed block's handle.
    let h = arena.alloc(16).unwrap().into_handle();
    let _keep = arena.alloc(16).unwrap().into_handle();
    arena.free(h).unwrap();
    let (e, freed) = message(arena.len_of(h));
    assert!(matches!(e, Error::Stale { .. }), "{e:?}");
    assert_has(&freed, &["stale handle", "freed"]);
    // A handle from before a `clear`, past the now empty heap.
    let mut late = h;
    for _ in 0..100 {
        late = arena.alloc(64).unwrap().into_handle();
    }
    arena.clear().unwrap();
    let (e, cleared) = message(arena.len_of(late));
    assert!(
        matches!(
            e,
            Error::OutOfBounds {
                region: Region::Handle,
                ..
            }
        ),
        "{e:?}"
    );
    assert_has(&cleared, &["handle", "stale", "another arena"]);
    assert!(!cleared.contains("0 bytes"), "{cleared}");
}

/// `Stats::net_blocks` counts this process's allocations minus its frees, and says so by its name:
/// after a reopen the arena's blocks are counted by `live_blocks()` (or `verify`).
#[test]
#[cfg_attr(miri, ignore = "opens files")]
fn stats_after_a_reopen_are_named_for_what_they_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let opts = Options::new().capacity(1 << 20);
    // SAFETY: as above.
    let arena = unsafe { opts.map_file(&path) }.unwrap();
    let hs: Vec<Handle> = (0..5)
        .map(|_| arena.alloc(8).unwrap().into_handle())
        .collect();
    assert_eq!(arena.stats().net_blocks, 5);
    drop(arena);
    // SAFETY: as above.
    let mut arena = unsafe { opts.map_file(&path) }.unwrap();
    assert_eq!(arena.live_blocks().unwrap().len(), 5);
    assert_eq!(arena.stats().net_blocks, 0);
    arena.free(hs[0]).unwrap();
    // A free of a block that was in the file at open: one fewer than at open.
    assert_eq!(arena.stats().net_blocks, -1);
    assert_eq!(arena.stats().net_bytes, -8);
}
