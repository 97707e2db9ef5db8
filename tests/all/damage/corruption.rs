//! Corrupted heaps: flipped block headers and forged free-list links are reported by `verify()`,
//! refused by a recovering open (leaving the file untouched), and never followed blindly.

use crate::util::{check, file_hash, fill};
use parena::{Arena, Error, Freelist, Handle, Options, Problem};
use std::path::Path;

fn open(o: Options, path: &Path) -> Result<Arena, Error> {
    // SAFETY: private file in a private directory.
    unsafe { o.map_file(path) }
}

/// A closed arena with 40 live blocks and 20 freed ones (listed), and the image of it while it was
/// still open (dirty). Returns (live handles, freed handles, dirty image).
fn build(path: &Path) -> (Vec<Handle>, Vec<Handle>, Vec<u8>) {
    let a = open(
        Options::new()
            .capacity(1 << 20)
            .freelist(Freelist::Pessimistic)
            .chunk_size(4096),
        path,
    )
    .unwrap();
    let mut live = Vec::new();
    let mut freed = Vec::new();
    for i in 0..60 {
        let h = fill(&a, 40 + i, i as u8);
        if i % 3 == 1 {
            freed.push(h);
        } else {
            live.push(h);
        }
    }
    for &h in &freed {
        a.free(h).unwrap();
    }
    a.flush().unwrap();
    let dirty = std::fs::read(path).unwrap();
    drop(a);
    (live, freed, dirty)
}

fn poke(path: &Path, at: u64, word: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(&word.to_le_bytes(), at).unwrap();
}

fn peek(path: &Path, at: u64) -> u64 {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path).unwrap();
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, at).unwrap();
    u64::from_le_bytes(b)
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn flipped_block_header_is_reported_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let (live, _, dirty) = build(&path);
    let victim = live[10].offset() - 8;

    // A clean file opens in O(1) without walking; verify() finds the damage, compact() refuses.
    let good = peek(&path, victim);
    poke(&path, victim, good ^ (0b11 << 62) ^ 1);
    {
        let mut a = open(Options::new(), &path).unwrap();
        let r = a.verify().unwrap();
        let walk_stopped_at = r.problems.iter().find_map(|p| match *p {
            Problem::BadHeader { offset, .. }
            | Problem::Overrun { offset, .. }
            | Problem::BadFreeSpan { offset, .. } => Some(offset),
            _ => None,
        });
        assert_eq!(walk_stopped_at, Some(victim), "{r:?}");
        assert!(matches!(a.compact(), Err(Error::Corrupt { .. })));
        let mut buf = [0u8; 8];
        assert!(
            a.read(live[10], 0, &mut buf).is_err(),
            "a damaged header must not be read through"
        );
        check(&a, live[0], 40, 0);
    }

    // The dirty image with the same damage: the recovering open drops the damaged block, says so
    // in its report, and keeps every other block (the live map is the second record it resumes
    // the walk from).
    let dpath = dir.path().join("d");
    let mut img = dirty;
    let w = u64::from_le_bytes(
        img[victim as usize..victim as usize + 8]
            .try_into()
            .unwrap(),
    );
    img[victim as usize..victim as usize + 8]
        .copy_from_slice(&(w ^ (0b11 << 62) ^ 1).to_le_bytes());
    std::fs::write(&dpath, &img).unwrap();
    let before = file_hash(&dpath);
    // Read-only opens do not walk: they report recovery pending instead.
    let ro = open(Options::new().read_only(true), &dpath).unwrap();
    assert!(ro.recovery_pending());
    drop(ro);
    assert_eq!(file_hash(&dpath), before);
    let mut a = open(Options::new(), &dpath).unwrap();
    let r = a.recovery_report().unwrap().clone();
    assert!(!r.is_clean());
    assert!(
        r.dropped.iter().any(|d| d.offset == victim),
        "the damaged block is reported: {r:?}"
    );
    for (j, &h) in live.iter().enumerate() {
        // `build` keeps every i with i % 3 != 1: live[j] was block i = j + (j + 1) / 2.
        let i = j + j.div_ceil(2);
        if j != 10 {
            check(&a, h, 40 + i, i as u8);
        }
    }
    assert!(a.verify().unwrap().is_clean());
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn forged_freelist_link_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let (live, freed, _) = build(&path);
    // Point a listed free segment's link at the middle of a live block.
    let node = freed[5].offset() - 8;
    let w = peek(&path, node);
    assert_eq!(w >> 62, 0b10, "freed block should be a listed free segment");
    let target = live[3].offset() + 16;
    poke(&path, node, (w & !((1u64 << 38) - 1)) | (target / 8));

    let mut a = open(Options::new(), &path).unwrap();
    let r = a.verify().unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::ListBadNode { .. })),
        "{r:?}"
    );
    // Drain the arena: allocation reports the corruption as an error at the latest when it meets
    // the forged link, and never hands out the live block's bytes.
    let mut saw_corrupt = false;
    let mut got = Vec::new();
    for _ in 0..100_000 {
        match a.alloc(56) {
            Ok(mut b) => {
                b.fill(0xff);
                got.push(b.into_handle());
            }
            Err(Error::Corrupt { .. }) => {
                saw_corrupt = true;
                break;
            }
            Err(Error::Full { .. }) => break,
            Err(e) => panic!("{e:?}"),
        }
    }
    for (i, &h) in live.iter().enumerate() {
        let n = [
            0usize, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24, 26, 27, 29, 30, 32,
            33, 35, 36, 38, 39, 41, 42, 44, 45, 47, 48, 50, 51, 53, 54, 56, 57, 59,
        ][i];
        check(&a, h, 40 + n, n as u8);
    }
    assert!(
        saw_corrupt,
        "allocation went past the forged link without reporting it ({} blocks)",
        got.len()
    );
}

#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn heap_walk_recovers_from_a_dirty_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let (live, freed, dirty) = build(&path);
    let dpath = dir.path().join("dirty");
    std::fs::write(&dpath, &dirty).unwrap();
    let mut a = open(Options::new(), &dpath).unwrap();
    assert!(!a.was_clean());
    let rep = a.recovery_report().unwrap().clone();
    assert!(rep.is_clean(), "{rep:?}");
    assert_eq!(rep.live_blocks, live.len() as u64);
    for &h in &freed {
        assert!(!a.contains(h));
    }
    let v = a.verify().unwrap();
    assert!(v.is_clean(), "{v:?}");
    assert_eq!(
        v.leaked_bytes, 0,
        "recovery should list every free byte: {v:?}"
    );
}

/// A file of an earlier format version (1: no live map, no meta slots; 2: 24-bit generations, a
/// 29-bit length in the LIVE word; 3: a seal over the header's mutable words only) is refused with `Error::Version`, writable or read-only, and
/// left byte-for-byte as it was.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn an_older_format_version_is_refused_untouched() {
    assert_eq!(parena::FORMAT_VERSION, 4);
    for version in [1u64, 2, 3] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("v{version}"));
        build(&path);
        poke(&path, 8, (peek(&path, 8) & !0xffff_ffff) | version);
        let before = file_hash(&path);
        for o in [Options::new(), Options::new().read_only(true)] {
            match open(o, &path) {
                Err(Error::Version { expected, found }) => {
                    assert_eq!((expected, found), (parena::FORMAT_VERSION, version as u32));
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(file_hash(&path), before, "a refused open wrote to the file");
        }
    }
}

/// A heap zeroed whole (a lost write of many pages, or a stray `memset`) is never taken for an
/// empty arena: a recovering open reports every block it could not keep in `Report::dropped`, and
/// on a file trusted as clean `verify()` reports the start map's entries the walk no longer finds.
#[test]
#[cfg_attr(miri, ignore = "maps files")]
fn a_zeroed_heap_is_reported_not_recovered_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z");
    let (live, _, dirty) = build(&path);
    let data_start = 4096usize;
    let bump = u64::from_le_bytes(dirty[80..88].try_into().unwrap()) as usize;
    let zeroed = |mut img: Vec<u8>| {
        img[data_start..bump].fill(0);
        img
    };
    // Dirty: recovery drops, and says so.
    let dpath = dir.path().join("dz");
    std::fs::write(&dpath, zeroed(dirty)).unwrap();
    let mut a = open(Options::new(), &dpath).unwrap();
    let r = a.recovery_report().unwrap().clone();
    assert!(!r.is_clean(), "{r:?}");
    let dropped: u64 = r.dropped.iter().map(|d| d.len).sum();
    assert!(dropped > 0, "{r:?}");
    assert!(live.iter().all(|&h| !a.contains(h)));
    assert!(a.verify().unwrap().is_clean());
    drop(a);
    // Clean (closed) file: the open trusts the header, verify() finds the damage.
    let clean = std::fs::read(&path).unwrap();
    let cpath = dir.path().join("cz");
    std::fs::write(&cpath, zeroed(clean)).unwrap();
    let mut a = open(Options::new(), &cpath).unwrap();
    assert!(a.was_clean());
    let r = a.verify().unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| matches!(p, Problem::StartExtra { .. })),
        "{r:?}"
    );
    assert!(live.iter().all(|&h| a.read_with(h, |_| ()).is_err()));
}
