//! Bad input is refused with its own variant and harms nothing: a file that is not an arena, a
//! second writer, a read-only arena, mismatched options, bad arguments, flipped header bytes.

use crate::util::{check, file_hash, fill, open, spawn_child, Rng};
use parena::{Error, Freelist, Options};
use proptest::prelude::*;
use std::io::{BufRead, BufReader};
use std::path::Path;

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn not_an_arena_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    let random: Vec<u8> = (0..10_000).map(|_| rng.next() as u8).collect();
    let mut sqlite = b"SQLite format 3\0".to_vec();
    sqlite.resize(8192, 0x11);
    let mut short = parena::MAGIC.to_vec();
    short.extend_from_slice(&[0; 100]);
    for (name, bytes) in [
        ("random", random),
        ("sqlite", sqlite),
        ("short", short),
        ("tiny", b"PA".to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let before = file_hash(&path);
        for ro in [false, true] {
            let e = open(&Options::new().read_only(ro), &path).unwrap_err();
            assert!(
                matches!(e, Error::Magic { .. } | Error::Truncated { .. }),
                "{name}: {e:?}"
            );
            assert_eq!(file_hash(&path), before, "{name} changed by a failed open");
        }
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps and locks a file (not in Miri)")]
fn second_writer_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l");
    let a = open(&Options::new().capacity(1 << 20), &path).unwrap();
    assert!(matches!(open(&Options::new(), &path), Err(Error::Locked)));
    assert!(matches!(
        open(&Options::new().read_only(true), &path),
        Err(Error::Locked)
    ));
    drop(a);
    let r1 = open(&Options::new().read_only(true), &path).unwrap();
    let r2 = open(&Options::new().read_only(true), &path).unwrap();
    assert!(matches!(open(&Options::new(), &path), Err(Error::Locked)));
    drop((r1, r2));
    open(&Options::new(), &path).unwrap();
}

/// Child role: holds the arena open as a writer until its stdin closes.
#[test]
#[cfg_attr(miri, ignore = "child role: maps a file (not in Miri)")]
fn child_hold_writer() {
    let Ok(path) = std::env::var("PARENA_HOLD") else {
        return;
    };
    let _a = open(&Options::new(), Path::new(&path)).unwrap();
    println!("\nready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(0);
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn writer_in_another_process_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p");
    drop(open(&Options::new().capacity(1 << 20), &path).unwrap());
    let mut child = spawn_child(
        "errors::refusals::child_hold_writer",
        &[("PARENA_HOLD", path.to_str().unwrap())],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "child exited before it was ready"
        );
    }
    let before = file_hash(&path);
    assert!(matches!(open(&Options::new(), &path), Err(Error::Locked)));
    assert!(matches!(
        open(&Options::new().read_only(true), &path),
        Err(Error::Locked)
    ));
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    assert_eq!(file_hash(&path).0, before.0);
    open(&Options::new(), &path).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn read_only_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro");
    let h = {
        let a = open(&Options::new().capacity(1 << 20), &path).unwrap();
        fill(&a, 10, 7)
    };
    let before = file_hash(&path);
    let ro = open(&Options::new().read_only(true), &path).unwrap();
    assert!(ro.is_read_only());
    assert!(matches!(ro.alloc(8), Err(Error::ReadOnly)));
    assert!(matches!(ro.free(h), Err(Error::ReadOnly)));
    assert!(matches!(ro.set_root(0, 1), Err(Error::ReadOnly)));
    check(&ro, h, 10, 7);
    ro.flush().unwrap();
    drop(ro);
    assert_eq!(
        file_hash(&path),
        before,
        "a read-only open wrote to the file"
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn create_new_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("n");
    drop(open(&Options::new().capacity(1 << 20).create_new(true), &path).unwrap());
    assert!(matches!(
        open(&Options::new().create_new(true), &path),
        Err(Error::Exists)
    ));
    let missing = dir.path().join("missing");
    assert!(matches!(
        open(&Options::new().create(false), &missing),
        Err(Error::Open { ref error, .. }) if error.kind() == std::io::ErrorKind::NotFound
    ));
    assert!(!missing.exists());
}

#[test]
#[cfg_attr(miri, ignore = "maps a file (Miri cannot mmap files)")]
fn option_mismatches_are_typed_and_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m");
    {
        let a = open(
            &Options::new()
                .capacity(1 << 20)
                .magic_version(1)
                .reserved(16),
            &path,
        )
        .unwrap();
        let _ = fill(&a, 100_000, 1);
    }
    let before = file_hash(&path);
    let o = || Options::new().magic_version(1);
    assert!(matches!(
        open(&Options::new().magic_version(2), &path),
        Err(Error::MagicVersion {
            expected: 2,
            found: 1
        })
    ));
    assert!(matches!(
        open(&o().freelist(Freelist::None), &path),
        Err(Error::FreelistKind { .. })
    ));
    assert!(matches!(
        open(&o().reserved(8), &path),
        Err(Error::Reserved {
            expected: 8,
            found: 16
        })
    ));
    assert!(matches!(
        open(&o().capacity(64 << 10), &path),
        Err(Error::Shrink { .. })
    ));
    assert_eq!(file_hash(&path), before);
    // A larger capacity grows the file; the data stays.
    let a = open(&o().capacity(4 << 20), &path).unwrap();
    assert_eq!(a.capacity(), 4 << 20);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 << 20);
    let big = a.alloc(3 << 20).unwrap();
    assert_eq!(big.len(), 3 << 20);
    let h = big.into_handle();
    drop(a);
    // A growth by one page is smaller than the new maps: the arena grows to the first capacity
    // past the old maps (at least what was asked), and the data stays.
    let mut a = open(&o().capacity((4 << 20) + 4096), &path).unwrap();
    assert!(a.capacity() >= (4 << 20) + 4096, "{}", a.capacity());
    assert!(a.stats().heap_end >= 4 << 20);
    assert_eq!(a.len_of(h).unwrap(), 3 << 20);
    assert!(a.verify().unwrap().is_clean());
}

#[test]
fn full_carries_the_numbers() {
    let arena = Options::new()
        .capacity(64 << 10)
        .freelist(Freelist::None)
        .heap()
        .unwrap();
    let s = arena.stats();
    assert_eq!(s.remaining, s.heap_end - s.data_start);
    let big = (s.remaining - 64) as usize;
    let h = arena.alloc(big).unwrap().into_handle();
    let left = arena.stats().remaining;
    match arena.alloc(big) {
        Err(Error::Full {
            requested,
            available,
        }) => {
            assert_eq!(requested, big as u64);
            assert_eq!(available, left);
        }
        other => panic!("expected Full, got {other:?}"),
    };
    assert_eq!(arena.stats().failures, 1);
    // Freeing it gives the space back only through the free lists, and Freelist::None has none.
    arena.free(h).unwrap();
    assert!(matches!(arena.alloc(big), Err(Error::Full { .. })));
}

#[test]
fn bad_arguments_are_typed_errors() {
    let arena = Options::new().capacity(1 << 20).heap().unwrap();
    assert!(matches!(arena.alloc(0), Err(Error::ZeroSize)));
    assert!(matches!(
        arena.alloc(usize::MAX),
        Err(Error::TooLarge { .. })
    ));
    assert!(matches!(
        arena.alloc((u32::MAX as usize) + 1),
        Err(Error::TooLarge { .. })
    ));
    let l = std::alloc::Layout::from_size_align(8, 8192).unwrap();
    assert!(matches!(
        arena.alloc_layout(l),
        Err(Error::BadAlign { align: 8192 })
    ));
    let h = fill(&arena, 16, 1);
    let mut buf = [0u8; 8];
    assert!(matches!(
        arena.read(h, 9, &mut buf),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        arena.read(h, usize::MAX, &mut buf),
        Err(Error::OutOfBounds { .. })
    ));
    // The last one: the same offset, another generation.
    let other_gen = parena_testkit::layout::forge_handle(h.offset(), h.generation() ^ 1);
    for forged in [0u64, 1, 8, u64::MAX, h.to_u64() + 1, other_gen.to_u64()] {
        let f = parena::Handle::from_u64(forged);
        assert!(
            arena.read(f, 0, &mut buf).is_err(),
            "forged {forged:#x} was read"
        );
        assert!(arena.free(f).is_err(), "forged {forged:#x} was freed");
    }
    check(&arena, h, 16, 1);
    assert!(matches!(
        arena.set_root(parena::ROOT_SLOTS, 1),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        arena.flush_range(u64::MAX, 2),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(matches!(
        Options::new().capacity(100).heap(),
        Err(Error::Capacity { requested: 100, .. })
    ));
    assert!(matches!(
        Options::new().capacity(u64::MAX).heap(),
        Err(Error::Capacity { .. })
    ));
    assert!(matches!(
        Options::new().chunk_size(1000).heap(),
        Err(Error::ChunkSize {
            requested: 1000,
            ..
        })
    ));
}

fn template_image() -> Vec<u8> {
    let mut arena = Options::new()
        .capacity(64 << 10)
        .chunk_size(1024)
        .heap()
        .unwrap();
    let mut rng = Rng(5);
    let mut hs = Vec::new();
    for i in 0..60 {
        hs.push(fill(&arena, 1 + rng.below(300) as usize, i));
    }
    for h in hs.iter().step_by(3) {
        arena.free(*h).unwrap();
    }
    arena.set_root(1, 77).unwrap();
    let mut img = Vec::new();
    arena.write_image(&mut img).unwrap();
    img
}

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(miri) { 4 } else { 96 }, ..ProptestConfig::default() })]

    /// Any bytes flipped anywhere in the header: the open is `Ok` or a typed error, a failed open
    /// leaves the file as it was, and an arena that opens verifies without panicking.
    #[test]
    #[cfg_attr(miri, ignore = "maps files")]
    fn header_byte_flips_never_panic(flips in proptest::collection::vec((0usize..4096, 1u8..=255), 1..6), ro: bool) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flip");
        let mut img = template_image();
        for (at, x) in flips {
            img[at] ^= x;
        }
        std::fs::write(&path, &img).unwrap();
        let before = file_hash(&path);
        match open(&Options::new().read_only(ro), &path) {
            Ok(mut a) => {
                let _ = a.verify();
                if !ro {
                    let _ = a.alloc(10);
                }
            }
            Err(e) => {
                let _ = e.to_string();
                prop_assert_eq!(file_hash(&path), before);
            }
        }
    }
}
