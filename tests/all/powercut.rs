//! Power cuts on real file maps, from two churning threads: the acceptance test of the power-cut
//! guarantee (docs/metadata.md).
//!
//! A child process churns a 4 MiB file arena from two threads (random 8–900 B blocks, about a third
//! of the operations frees, so the bump runs out and the free lists, splits, merges and rewinds all
//! run). Every few milliseconds it pauses both writers, calls `flush()` and copies the file (image
//! A: what the disk holds once `flush()` returned) with the list of live blocks; between flushes it
//! also snapshots the file with the writers paused (pages at versions other than the last). It is
//! killed with SIGKILL; the file then is the page cache at the cut. The parent builds disk images
//! from image A plus any subset of the pages that changed since, each at one of the versions it had
//! since, opens each image writable and checks every block live at A's flush and not freed after.
//!
//! The guarantee is not met yet (issue 14: in-line headers rewritten between flushes; the design
//! that meets it is in docs/metadata.md), so the test is ignored by default and prints what it
//! measured. `cargo test --test all powercut -- --ignored --nocapture` runs it;
//! `PARENA_POWERCUT_CYCLES` sets the cuts per policy (default 50).

use crate::util::{spawn_child, Rng};
use parena::{Arena, Error, Freelist, Handle, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const CAP: u64 = 4 << 20;
const PAGE: usize = 4096;

fn policy(name: &str) -> Freelist {
    match name {
        "optimistic" => Freelist::Optimistic,
        _ => Freelist::Pessimistic,
    }
}

fn open(path: &Path, freelist: Freelist) -> Result<Arena, Error> {
    // SAFETY: the file lives in a private temporary directory; the child that wrote it is dead
    // when the parent opens it, and nothing else maps it.
    unsafe {
        Options::new()
            .capacity(CAP)
            .freelist(freelist)
            .map_file(path)
    }
}

/// The byte `i` of the block written as record `seq`.
fn record_byte(seq: u64, i: usize) -> u8 {
    let x = seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i as u64;
    (x ^ (x >> 31)).to_le_bytes()[i % 8]
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename, so a reader never sees a
/// half-written file (the child may be killed at any instruction).
fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Child role: churns until killed. Directory layout, all in `PARENA_POWERCUT_DIR`:
/// `arena` (the live file), `flushed` + `flushed.live` (the last flush's image and its live set
/// `handle seq len` per line), `snap.N` (snapshots taken since that flush), `frees` (one line
/// `epoch handle` appended before each free starts).
#[test]
#[cfg_attr(miri, ignore = "child role: maps a file (not in Miri)")]
fn child_powercut_worker() {
    let Ok(dir) = std::env::var("PARENA_POWERCUT_DIR") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let freelist = policy(&std::env::var("PARENA_POWERCUT_POLICY").unwrap());
    let seed: u64 = std::env::var("PARENA_POWERCUT_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let arena = open(&dir.join("arena"), freelist).unwrap();
    // Writers hold the read side for one operation; the flusher takes the write side to pause them.
    let gate = Arc::new(RwLock::new(()));
    let live: Arc<RwLock<BTreeMap<u64, (u64, usize)>>> = Arc::default();
    let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let frees = Arc::new(std::sync::Mutex::new(
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("frees"))
            .unwrap(),
    ));
    println!("ready");
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (arena, gate, live, epoch, frees) = (&arena, &gate, &live, &epoch, &frees);
            s.spawn(move || {
                let mut rng = Rng(seed * 97 + t + 1);
                let mut mine: Vec<u64> = Vec::new();
                for i in 0u64.. {
                    let _op = gate.read().unwrap();
                    if !mine.is_empty() && (rng.below(3) == 0 || mine.len() > 3000) {
                        let h = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                        let e = epoch.load(std::sync::atomic::Ordering::Relaxed);
                        // Recorded before the free starts: a block freed after a flush is not
                        // protected by it.
                        writeln!(frees.lock().unwrap(), "{e} {h}").unwrap();
                        live.write().unwrap().remove(&h);
                        arena.free(Handle::from_u64(h)).unwrap();
                        continue;
                    }
                    let seq = seed << 40 | t << 32 | i;
                    let len = 8 + rng.below(893) as usize;
                    match arena.alloc(len) {
                        Ok(mut b) => {
                            for (j, x) in b.iter_mut().enumerate() {
                                *x = record_byte(seq, j);
                            }
                            let h = b.into_handle().to_u64();
                            live.write().unwrap().insert(h, (seq, len));
                            mine.push(h);
                        }
                        Err(Error::Full { .. }) => {
                            // Make room: free a quarter of this thread's blocks next.
                            if mine.is_empty() {
                                std::thread::yield_now();
                            }
                        }
                        Err(e) => panic!("alloc: {e}"),
                    }
                }
            });
        }
        let mut rng = Rng(seed ^ 0xf1u64);
        let mut snap = 0u64;
        loop {
            std::thread::sleep(Duration::from_millis(3 + rng.below(12)));
            let _paused = gate.write().unwrap();
            if rng.below(3) == 0 {
                // A snapshot between flushes: pages at a version other than the last. Named by
                // the flush it follows, so a snapshot left over from before a flush (a kill
                // before its removal) is never taken for a version since that flush.
                let e = epoch.load(std::sync::atomic::Ordering::Relaxed);
                publish(
                    &dir,
                    &format!("snap.{e}.{snap}"),
                    &fs::read(dir.join("arena")).unwrap(),
                );
                snap += 1;
                continue;
            }
            arena.flush().unwrap();
            let image = fs::read(dir.join("arena")).unwrap();
            let mut list = String::new();
            for (h, (seq, len)) in live.read().unwrap().iter() {
                list.push_str(&format!("{h} {seq} {len}\n"));
            }
            let e = epoch.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            // The live list first, then the image: the parent trusts `flushed` only with a list
            // of the same epoch.
            publish(&dir, "flushed.live", format!("{e}\n{list}").as_bytes());
            publish(&dir, "flushed", &[&e.to_le_bytes()[..], &image].concat());
            for k in 0..snap {
                let _ = fs::remove_file(dir.join(format!("snap.{}.{k}", e - 1)));
            }
            snap = 0;
        }
    });
}

/// What one policy's cuts found.
#[derive(Debug, Default)]
struct Tally {
    cuts: u64,
    refused: u64,
    lost: u64,
    checked: u64,
    verify_dirty: u64,
}

fn run_policy(name: &str, cuts: u64) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(0x09c0_ffee ^ name.len() as u64);
    for cut in 0..cuts {
        let dir = tempfile::tempdir().unwrap();
        drop(open(&dir.path().join("arena"), policy(name)).unwrap());
        let mut child = spawn_child(
            "powercut::child_powercut_worker",
            &[
                ("PARENA_POWERCUT_DIR", dir.path().to_str().unwrap()),
                ("PARENA_POWERCUT_POLICY", name),
                ("PARENA_POWERCUT_SEED", &(cut + 1).to_string()),
            ],
        );
        std::thread::sleep(Duration::from_millis(60 + rng.below(400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let Ok(flushed) = fs::read(dir.path().join("flushed")) else {
            continue; // killed before its first flush
        };
        let epoch = u64::from_le_bytes(flushed[..8].try_into().unwrap());
        let image_a = &flushed[8..];
        let list = fs::read_to_string(dir.path().join("flushed.live")).unwrap();
        let mut lines = list.lines();
        if lines.next().and_then(|l| l.parse::<u64>().ok()) != Some(epoch) {
            continue; // killed between the two renames: the list is a flush ahead
        }
        let mut protected: BTreeMap<u64, (u64, usize)> = lines
            .filter_map(|l| {
                let mut p = l.split_whitespace().map(|x| x.parse::<u64>().ok());
                Some((p.next()??, (p.next()??, p.next()?? as usize)))
            })
            .collect();
        let freed: BTreeSet<u64> = fs::read_to_string(dir.path().join("frees"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut p = l.split_whitespace().map(|x| x.parse::<u64>().ok());
                let (e, h) = (p.next()??, p.next()??);
                (e >= epoch).then_some(h)
            })
            .collect();
        protected.retain(|h, _| !freed.contains(h));
        // Versions of each page since the flush: the snapshots, then the file at the cut.
        let mut versions: Vec<Vec<u8>> = Vec::new();
        for k in 0.. {
            match fs::read(dir.path().join(format!("snap.{epoch}.{k}"))) {
                Ok(v) => versions.push(v),
                Err(_) => break,
            }
        }
        versions.push(fs::read(dir.path().join("arena")).unwrap());
        let keep = [10, 50, 90][(cut % 3) as usize];
        let mut image = image_a.to_vec();
        for (p, chunk) in image.chunks_mut(PAGE).enumerate() {
            let at = p * PAGE..p * PAGE + chunk.len();
            let changed: Vec<&Vec<u8>> = versions
                .iter()
                .filter(|v| v.len() >= at.end && v[at.clone()] != *chunk)
                .collect();
            if !changed.is_empty() && rng.below(100) < keep {
                let v = changed[rng.below(changed.len() as u64) as usize];
                chunk.copy_from_slice(&v[at]);
            }
        }
        let path = dir.path().join("cut");
        fs::write(&path, &image).unwrap();
        tally.cuts += 1;
        let mut arena = match open(&path, policy(name)) {
            Ok(a) => a,
            Err(_) => {
                tally.refused += 1;
                continue;
            }
        };
        for (&h, &(seq, len)) in &protected {
            let mut buf = vec![0u8; len];
            let ok = arena.read(Handle::from_u64(h), 0, &mut buf).is_ok()
                && buf
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == record_byte(seq, i));
            tally.checked += 1;
            if !ok {
                tally.lost += 1;
            }
        }
        if !matches!(arena.verify(), Ok(r) if r.is_clean()) {
            tally.verify_dirty += 1;
        }
    }
    tally
}

#[test]
#[ignore = "issue 14: the power-cut guarantee is not met yet; measures with --ignored"]
fn power_cuts_keep_every_flushed_block() {
    let cuts: u64 = std::env::var("PARENA_POWERCUT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let mut failures = Vec::new();
    for name in ["optimistic", "pessimistic"] {
        let t = run_policy(name, cuts);
        eprintln!("power cuts, {name}: {t:?}");
        assert!(t.cuts >= cuts / 2, "{name}: too few usable cuts: {t:?}");
        if t.refused + t.lost + t.verify_dirty > 0 {
            failures.push(format!("{name}: {t:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "power-cut guarantee broken: {failures:?}"
    );
}
