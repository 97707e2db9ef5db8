//! Sparse file arenas (`Options::preallocate(false)`, docs/metadata.md 12.2 "Sparse arenas"): the
//! chunk reservation reserves the disk under each chunk before the allocator writes there, so a
//! full disk is `NoSpace` for the allocation, never a `SIGBUS`, with nothing lost; a LARGE
//! block's data pages stay a hole until written; and a carve from a listed segment over such a
//! hole reserves the pages it writes first.

use crate::util::{check, fill, open};
use parena::{Error, Handle, Options};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// Bytes the file takes on disk.
fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A sparse growable arena: 2 MiB of heap after the maps (sized for 256 MiB), growing in steps.
fn sparse() -> Options {
    Options::new()
        .capacity(4096 + 16 * MIB + 2 * MIB)
        .max_capacity(256 * MIB)
        .preallocate(false)
}

#[test]
#[cfg_attr(miri, ignore = "maps a file")]
fn a_sparse_arena_reserves_the_chunks_it_writes_and_leaves_large_data_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sparse");
    let arena = open(&sparse(), &p).unwrap();
    let small: Vec<Handle> = (0..10u8).map(|i| fill(&arena, 100, i)).collect();
    // A 64 MiB LARGE block, never written: the arena grows by a step to hold it.
    let large = arena.alloc(64 << 20).unwrap().into_handle();
    arena.flush().unwrap();
    let len = std::fs::metadata(&p).unwrap().len();
    let on_disk = allocated(&p);
    assert!(len >= 64 * MIB, "file length {len}");
    // The data pages of the LARGE block are the user's: a hole until written.
    assert!(
        on_disk < len / 8,
        "{on_disk} bytes on disk for a {len}-byte file"
    );
    // The small blocks' chunk is reserved whole (the allocator writes anywhere in it), though
    // they touched one page of it.
    assert!(on_disk >= 64 * 1024, "{on_disk} bytes on disk");
    for (i, &h) in small.iter().enumerate() {
        check(&arena, h, 100, i as u8);
    }
    assert_eq!(arena.len_of(large).unwrap(), 64 << 20);
}

/// The child of `a_sparse_arena_on_a_full_disk_is_no_space`: runs in a private mount namespace
/// with a 6 MiB tmpfs at `dir`. Fills it with a sparse arena of options `o` (`fixed`: made
/// without `max_capacity`) beside a 1 MiB ballast file to free later; removes both at the end.
#[cfg_attr(not(feature = "allocator-api2"), allow(unused_variables))]
fn full_disk_child(dir: &Path, o: &Options, fixed: bool) {
    let ballast = dir.join("ballast");
    std::fs::write(&ballast, vec![1u8; MIB as usize]).unwrap();
    let p = dir.join("sparse");
    let o = o.clone();
    let mut arena = open(&o, &p).unwrap();
    // A LARGE block never written: its data pages are a hole, freed onto the lists below.
    let hole = arena.alloc(MIB as usize).unwrap().into_handle();
    // Only where the heap has room for the move (a growth step's map clearing reads hole pages,
    // which on a full tmpfs is a SIGBUS of its own: docs/metadata.md 12.5).
    #[cfg(feature = "allocator-api2")]
    let moved = fixed.then(|| {
        // 1.5 MiB of a vector in the arena (a LARGE block), written while the disk has room, and
        // 64 KiB of the disk to give back once it is full.
        std::fs::write(dir.join("ballast2"), vec![1u8; 64 << 10]).unwrap();
        let mut v = allocator_api2::vec::Vec::with_capacity_in(3 << 19, &arena);
        v.resize(3 << 19, 7u8);
        v
    });
    let mut held: Vec<(Handle, u8)> = Vec::new();
    let e = loop {
        let byte = held.len() as u8 | 1;
        match arena.alloc(3000) {
            Ok(mut b) => {
                b.fill(byte);
                held.push((b.into_handle(), byte));
            }
            Err(e) => break e,
        }
        if held.len() == 100 {
            arena.flush().unwrap();
        }
    };
    assert!(matches!(e, Error::NoSpace), "{e}");
    assert!(held.len() > 100, "only {} blocks", held.len());
    // A LARGE block needs its header's and tail's pages: none on this disk either.
    let e = arena.alloc(2 << 20).map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::NoSpace), "{e}");
    #[cfg(feature = "allocator-api2")]
    if let Some(mut v) = { moved } {
        // Room for a new LARGE block's first and last pages, not for the copy of a move: the
        // vector's growth fails and the vector stays as it was.
        std::fs::remove_file(dir.join("ballast2")).unwrap();
        assert!(v.try_reserve_exact((3 << 20) - 16 - v.len()).is_err());
        assert_eq!(v.len(), 3 << 19);
        assert!(v.iter().all(|&x| x == 7));
    }
    // The hole's segment on the lists: a carve from it writes pages no disk block backs. Each
    // allocation from it either gets its pages reserved first or is `NoSpace`, never a SIGBUS.
    arena.free(hole).unwrap();
    let mut from_hole = 0;
    let e = loop {
        match arena.alloc(3000) {
            Ok(mut b) => {
                b.fill(0x77);
                held.push((b.into_handle(), 0x77));
                from_hole += 1;
                // The whole 6 MiB disk holds fewer blocks than this.
                assert!(from_hole < 2200, "a full disk held {from_hole} more blocks");
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(e, Error::NoSpace), "{e}");
    // Earlier blocks read back, and the arena checks out.
    for &(h, byte) in &held {
        check(&arena, h, 3000, byte);
    }
    // A free makes room for a block of its size.
    let (h, _) = held.pop().unwrap();
    arena.free(h).unwrap();
    let b = arena.alloc_copy(&[9u8; 3000]).unwrap();
    held.push((b, 9));
    // Space comes back: fresh chunks again, a LARGE block too.
    std::fs::remove_file(&ballast).unwrap();
    for _ in 0..30 {
        held.push((fill(&arena, 3000, 5), 5));
    }
    let large = arena.alloc(2 << 20).unwrap().into_handle();
    let r = arena.verify().unwrap();
    assert!(r.is_clean(), "{r:?}");
    arena.flush().unwrap();
    drop(arena);
    // A reopen finds every flushed block.
    let back = open(&o, &p).unwrap();
    for &(h, byte) in &held {
        check(&back, h, 3000, byte);
    }
    assert_eq!(back.len_of(large).unwrap(), 2 << 20);
    drop(back);
    std::fs::remove_file(&p).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_sparse_arena_on_a_full_disk_is_no_space() {
    if let Ok(d) = std::env::var("PARENA_SPARSE_FULL") {
        // Growable, and fixed (its maps at the end of the file).
        full_disk_child(Path::new(&d), &sparse(), false);
        full_disk_child(
            Path::new(&d),
            &Options::new().capacity(16 * MIB).preallocate(false),
            true,
        );
        // Freed blocks zeroed: the free of the never-written LARGE block on the full disk zeroes
        // only its written pages (its data pages are a hole; before, a `SIGBUS`).
        full_disk_child(Path::new(&d), &sparse().zero_on_free(true), false);
        println!("child done");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // A real full disk: a 6 MiB tmpfs in a mount namespace of the child's own (`unshare -rm`
    // needs user namespaces, or root), so nothing outside the child sees it. A machine that
    // cannot make one (no `unshare`, user namespaces off) skips the test and says so.
    let probe = std::process::Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=1m tmpfs \"$0\"")
        .arg(dir.path())
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped: this machine cannot mount a small tmpfs in a private namespace \
             (`unshare -rm`), so no full disk can be made"
        );
        return;
    }
    let out = std::process::Command::new("unshare")
        .args(["--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=6m tmpfs \"$PARENA_SPARSE_FULL\" && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "sparse::a_sparse_arena_on_a_full_disk_is_no_space",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PARENA_SPARSE_FULL", dir.path())
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("child done"),
        "{:?}\n{text}",
        out.status
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps a file")]
fn a_sparse_private_copy_allocates_without_touching_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("copied");
    let h = fill(&open(&sparse(), &p).unwrap(), 100, 3);
    let before = allocated(&p);
    // A private copy's writes never reach the file: nothing to reserve there, and its descriptor
    // is read-only.
    let copy = open(&sparse().map_copy(true), &p).unwrap();
    let mine: Vec<Handle> = (0..400u32).map(|_| fill(&copy, 3000, 8)).collect();
    check(&copy, h, 100, 3);
    check(&copy, mine[399], 3000, 8);
    drop(copy);
    assert_eq!(allocated(&p), before);
}

#[test]
#[cfg_attr(miri, ignore = "maps a file")]
fn zero_on_free_in_a_sparse_arena_zeroes_what_was_written_and_leaves_the_holes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("zeroed");
    let arena = open(&sparse().zero_on_free(true), &p).unwrap();
    // A LARGE block: its data pages stay a hole, but for the one page written in its middle.
    let mut b = arena.alloc(2 * MIB as usize).unwrap();
    let mid = MIB as usize;
    b[mid..mid + 4096].fill(0xab);
    let h = b.into_handle();
    let data = h.offset() as usize;
    arena.flush().unwrap();
    let before = allocated(&p);
    arena.free(h).unwrap();
    arena.flush().unwrap();
    // The written page reads zero in the file (all but the data's first word, which the free
    // segment's span word takes); the holes were not written (zeroing them would have taken
    // about 2 MiB of disk).
    let file = std::fs::read(&p).unwrap();
    let n = 2 * MIB as usize - 8;
    assert!(
        file[data + 8..data + 8 + n] == vec![0u8; n][..],
        "a freed block's bytes were not zeroed"
    );
    let after = allocated(&p);
    assert!(
        after < before + MIB,
        "the free wrote {} KiB of holes",
        (after - before) >> 10
    );
}
