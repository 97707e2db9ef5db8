//! The power-cut model shared by `powercut` and `powercut_engine` (docs/metadata.md, section 1).
//!
//! A child process works on a file arena in a directory of its own. Its flusher pauses the
//! writers (the write side of a gate they hold the read side of for each operation) every few
//! milliseconds and either snapshots the file (a page version between two flushes) or calls
//! `flush()` and copies the file: that copy, image A, is what the disk holds once `flush()`
//! returned. The parent kills the child with SIGKILL; the file then is the page cache at the
//! cut. A power cut at that moment leaves on disk image A plus any subset of the pages changed
//! since, each at one of the versions it had since: the snapshots and the file at the cut.
//!
//! Files in the directory: `arena` (the live file); `flushed` (the epoch, 8 bytes little-endian,
//! then image A); `flushed.ack` (the epoch on the first line, then what the flush acknowledged,
//! in the test's own format); `snap.E.K` (snapshot K taken after flush E).

use crate::util::{spawn_child, Rng};
use parena::{Arena, Error, Freelist, Options};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::RwLock;
use std::time::Duration;

/// The unit a power cut keeps or loses.
pub const PAGE: usize = 4096;

/// The arenas' capacity.
pub const CAP: u64 = 4 << 20;

/// The growable arenas' first capacity: room for the two threads' first LARGE blocks only once
/// the arena grew.
pub const GROW_CAP: u64 = 2 << 20;

/// The growable arenas' `max_capacity`: six times [`GROW_CAP`].
pub const GROW_MAX: u64 = 6 * GROW_CAP;

/// The suffix of a policy name whose arenas are growable (`optimistic+grow`): made with
/// [`GROW_CAP`] and a `max_capacity` of [`GROW_MAX`] (docs/metadata.md, section 12).
pub const GROW: &str = "+grow";

/// The free-list policy named `name` ("optimistic" or "pessimistic", with or without [`GROW`]).
pub fn policy(name: &str) -> Freelist {
    match name.trim_end_matches(GROW) {
        "optimistic" => Freelist::Optimistic,
        _ => Freelist::Pessimistic,
    }
}

/// Whether the policy `name` names growable arenas.
pub fn growable(name: &str) -> bool {
    name.ends_with(GROW)
}

/// Opens (or creates) the arena file at `path` for the policy `name`: a fixed arena of [`CAP`]
/// as [`open`] does, or a growable one (see [`GROW`]).
pub fn open_named(path: &Path, name: &str) -> Result<Arena, Error> {
    if !growable(name) {
        return open(path, policy(name));
    }
    // A file takes its own capacity and maximum: one that grew is past `GROW_CAP`, and a
    // capacity below its bump offset is refused.
    let options = if path.exists() {
        Options::new()
    } else {
        Options::new().capacity(GROW_CAP).max_capacity(GROW_MAX)
    };
    // SAFETY: as in `open`.
    unsafe { options.freelist(policy(name)).map_file(path) }
}

/// Opens (or creates) the arena file at `path`, writable.
pub fn open(path: &Path, freelist: Freelist) -> Result<Arena, Error> {
    // SAFETY: the file lives in a private temporary directory; the child that wrote it is dead
    // when the parent opens it, and nothing else maps it.
    unsafe {
        Options::new()
            .capacity(CAP)
            .freelist(freelist)
            .map_file(path)
    }
}

/// The cuts per policy: `PARENA_POWERCUT_CYCLES`, or `default`.
pub fn cuts(default: u64) -> u64 {
    std::env::var("PARENA_POWERCUT_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename, so a reader never sees a
/// half-written file (the child may be killed at any instruction).
pub fn publish(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!("{name}.tmp"));
    fs::write(&tmp, bytes).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

/// A panic on any thread ends the process at once (a writer's panic would otherwise
/// stop only that thread, and the parent would cut a child that had quietly stopped writing).
pub fn exit_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(101);
    }));
}

/// The child's flusher: runs until the process is killed. Every 3–14 ms it pauses the writers
/// (when given their `gate`; without one, flushes and snapshots race with them, so a snapshot
/// holds pages at any instant of any operation);
/// one time in three it snapshots the file, otherwise it calls `flush(epoch)`, which must
/// `flush()` the arena (and whatever else makes the work durable) and return the lines of what
/// that flush acknowledged, then publishes those lines and image A.
pub fn flush_loop(
    dir: &Path,
    seed: u64,
    gate: Option<&RwLock<()>>,
    mut flush: impl FnMut(u64) -> String,
) {
    let mut rng = Rng(seed ^ 0xf1);
    let (mut epoch, mut snap) = (0u64, 0u64);
    loop {
        std::thread::sleep(Duration::from_millis(3 + rng.below(12)));
        let _paused = gate.map(|g| g.write().unwrap());
        if rng.below(3) == 0 {
            let image = fs::read(dir.join("arena")).unwrap();
            publish(dir, &format!("snap.{epoch}.{snap}"), &image);
            snap += 1;
            continue;
        }
        // Marked before the flush starts and cleared once it is published: a cut in between may
        // find the flush's meta slot in the file's header page (see `Cut::flushing`).
        publish(dir, "flushing", &(epoch + 1).to_le_bytes());
        let ack = flush(epoch + 1);
        let image = fs::read(dir.join("arena")).unwrap();
        epoch += 1;
        // The list first, then the image: the parent trusts `flushed` only with a list of the
        // same epoch.
        publish(dir, "flushed.ack", format!("{epoch}\n{ack}").as_bytes());
        publish(dir, "flushed", &[&epoch.to_le_bytes()[..], &image].concat());
        fs::remove_file(dir.join("flushing")).unwrap();
        for k in 0..snap {
            let _ = fs::remove_file(dir.join(format!("snap.{}.{k}", epoch - 1)));
        }
        snap = 0;
    }
}

/// In a child role: the directory, free-list policy and seed its parent passed, or `None` when
/// this process is not that child.
pub fn child_env() -> Option<(PathBuf, Freelist, u64)> {
    let dir = std::env::var("PARENA_POWERCUT_DIR").ok()?;
    let freelist = policy(&std::env::var("PARENA_POWERCUT_POLICY").unwrap());
    let seed = std::env::var("PARENA_POWERCUT_SEED")
        .unwrap()
        .parse()
        .unwrap();
    exit_on_panic();
    crate::util::end_with_parent();
    Some((PathBuf::from(dir), freelist, seed))
}

/// Percent of the changed pages each disk image takes from after the flush: few, half, most.
pub const KEEP: [u64; 3] = [10, 50, 90];

/// What a run of cuts did, apart from the test's own checks.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Cuts after a published flush.
    pub cuts: u64,
    /// Disk images built from them (one per `KEEP`).
    pub images: u64,
    /// Images whose writable open failed.
    pub refused: u64,
    /// Pages in the images, by where they came from.
    pub pages: Mix,
    /// Cuts whose file had grown since the last flush (a growth step's length is durable, and
    /// no meta slot names it yet: docs/metadata.md, 12.2, recovery case *o*).
    pub grown_since_flush: u64,
}

/// Cuts in one chain of [`Start::Chained`] on a fixed-capacity arena.
pub const CHAIN: u64 = 10;

/// Where each cut's child starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// A new, empty arena for every cut.
    Fresh,
    /// One file for a chain of this many cuts (at least 1; [`CHAIN`] for fixed arenas): each cut's child starts from what the previous cut left,
    /// recovered (one of its disk images, opened writable, checked, then an allocation and a free
    /// and a clean close, as a user's restart would do). Every cut then also tries the arena a
    /// recovery produced: its rebuilt lists, its lowered bump offset, its old bytes past the bump.
    Chained(u64),
}

/// Runs the child test `name` until `cuts` cuts came after a published flush (a cut before the
/// child's first flush tests nothing; at most twice as many tries), each in a new directory, with
/// the policies of `policies` in turn, killed `delay_ms.0` plus up to `delay_ms.1` ms after its
/// start. For each such cut, `prepare(dir, cut)` reads what the flush acknowledged; then each disk
/// image is opened writable and handed to `check` with it. With [`Start::Chained`] each policy
/// keeps one arena file across its cuts.
pub fn run_cuts<S>(
    name: &str,
    cuts: u64,
    policies: &[&str],
    start: Start,
    delay_ms: (u64, u64),
    mut prepare: impl FnMut(&Path, &Cut) -> S,
    mut check: impl FnMut(&S, Arena),
) -> Outcome {
    let mut out = Outcome::default();
    let mut rng = Rng(0x09c0_ffee ^ name.len() as u64 ^ policies[0].len() as u64);
    let bases = tempfile::tempdir().unwrap();
    for attempt in 0..2 * cuts {
        if out.cuts == cuts {
            break;
        }
        let dir = tempfile::tempdir().unwrap();
        let name_of_policy = policies[attempt as usize % policies.len()];
        let base = bases.path().join(name_of_policy);
        // A chain starts again from an empty arena every so many cuts: a full, fragmented arena
        // never has room for the LARGE blocks the workloads also need protected (and a
        // growable one grows again from its first capacity).
        if matches!(start, Start::Chained(n) if base.exists() && out.cuts % n != 0) {
            fs::copy(&base, dir.path().join("arena")).unwrap();
        } else {
            drop(open_named(&dir.path().join("arena"), name_of_policy).unwrap());
        }
        let mut child: Child = spawn_child(
            name,
            &[
                ("PARENA_POWERCUT_DIR", dir.path().to_str().unwrap()),
                ("PARENA_POWERCUT_POLICY", name_of_policy),
                ("PARENA_POWERCUT_SEED", &(attempt + 1).to_string()),
            ],
        );
        // The random moment is counted from the child's first published flush, not from its
        // start: a child slowed by a loaded machine would otherwise be cut before any flush,
        // and the cut would protect nothing and count for nothing.
        await_first_flush(name, dir.path(), &mut child);
        std::thread::sleep(Duration::from_millis(delay_ms.0 + rng.below(delay_ms.1)));
        if attempt % 2 == 1 {
            // Every other cut comes only once the file holds a version between two flushes: a
            // slow child (a loaded machine) would otherwise be cut before any, and no image
            // would mix such versions.
            await_version_between_flushes(name, dir.path(), &mut child);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} ended on its own before the cut: {status}");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let Some(cut) = Cut::read(dir.path()) else {
            continue;
        };
        let state = prepare(dir.path(), &cut);
        out.cuts += 1;
        out.grown_since_flush += u64::from(cut.file_len() > cut.image_a.len());
        let next = KEEP[rng.below(KEEP.len() as u64) as usize];
        for keep in KEEP {
            let path = dir.path().join(format!("cut{keep}"));
            out.pages += cut.image(keep, &mut rng, &path);
            out.images += 1;
            match open_named(&path, name_of_policy) {
                Ok(arena) => check(&state, arena),
                Err(e) => {
                    eprintln!("{name_of_policy}: image {keep} refused: {e}");
                    out.refused += 1;
                }
            }
            if matches!(start, Start::Chained(_)) && keep == next {
                // The next cut starts from this image as a restart leaves it.
                if let Ok(arena) = open_named(&path, name_of_policy) {
                    if let Ok(h) = arena.alloc_copy(&[0x5a; 100]) {
                        arena.free(h).unwrap();
                    }
                    arena.close().unwrap();
                    fs::copy(&path, &base).unwrap();
                }
            }
        }
    }
    out
}

/// Waits until the child has published its first flush (the `flushed` file). The wait follows
/// the child's progress, not the clock; a child that makes none for two minutes fails.
fn await_first_flush(name: &str, dir: &Path, child: &mut Child) {
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    while !dir.join("flushed").exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} ended on its own before its first flush: {status}");
        }
        assert!(
            std::time::Instant::now() < give_up,
            "{name} made no progress for two minutes (no flush)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits until the child has published a flush, then a snapshot after it, and has changed the
/// file since that snapshot: a cut from then on has a page version between two flushes. The wait
/// follows the child's progress, not the clock; a child that makes none for two minutes fails.
fn await_version_between_flushes(name: &str, dir: &Path, child: &mut Child) {
    let give_up = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{name} ended on its own before the cut: {status}");
        }
        assert!(
            std::time::Instant::now() < give_up,
            "{name} made no progress for two minutes (no snapshot after a flush)"
        );
        let epoch = fs::read(dir.join("flushed"))
            .ok()
            .and_then(|f| Some(u64::from_le_bytes(f.get(..8)?.try_into().ok()?)));
        let snap = epoch.and_then(|e| fs::read(dir.join(format!("snap.{e}.0"))).ok());
        if snap.is_some_and(|s| fs::read(dir.join("arena")).is_ok_and(|now| now != s)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What the disk can hold after the cut, as published by the child.
pub struct Cut {
    /// The epoch of the last completed flush.
    pub epoch: u64,
    /// The file as that flush left it.
    pub image_a: Vec<u8>,
    /// The lines that flush acknowledged (the epoch line removed).
    pub ack: String,
    /// Each page's possible versions since the flush: the snapshots, then the file at the cut.
    pub versions: Vec<Vec<u8>>,
    /// The cut came while a later flush was running (or before it was published). That flush
    /// may have written its meta slot into the header page in memory, naming a flush map it had
    /// made durable first: a disk holding that header page holds the new flush map and the pages
    /// the new flush synced too. The images do not model that flush's syncs, so they never take
    /// the header page from the file at the cut (the page not written back yet: always possible).
    pub flushing: bool,
}

impl Cut {
    /// Reads the cut from `dir`, or `None` when the child was killed before its first flush was
    /// published whole.
    pub fn read(dir: &Path) -> Option<Cut> {
        let flushed = fs::read(dir.join("flushed")).ok()?;
        let epoch = u64::from_le_bytes(flushed[..8].try_into().unwrap());
        let list = fs::read_to_string(dir.join("flushed.ack")).ok()?;
        let (first, ack) = list.split_once('\n')?;
        if first.parse::<u64>().ok()? != epoch {
            return None; // killed between the two renames: the list is a flush ahead
        }
        let mut versions = Vec::new();
        for k in 0.. {
            match fs::read(dir.join(format!("snap.{epoch}.{k}"))) {
                Ok(v) => versions.push(v),
                Err(_) => break,
            }
        }
        versions.push(fs::read(dir.join("arena")).unwrap());
        Some(Cut {
            epoch,
            image_a: flushed[8..].to_vec(),
            ack: ack.to_string(),
            versions,
            flushing: dir.join("flushing").exists(),
        })
    }

    /// The file's length at the cut. A growable arena's file only grows, and a growth step
    /// syncs the new length before anything names it (docs/metadata.md, 12.2, step 1), so a
    /// power cut keeps this length.
    pub fn file_len(&self) -> usize {
        self.versions.last().unwrap().len().max(self.image_a.len())
    }

    /// A disk image: image A (extended with zeros to the file's length at the cut, as a growth
    /// step after the flush left it) with each changed page replaced, with probability `keep`
    /// percent, by one of the versions it had since (chosen uniformly among those that differ
    /// from A). Writes it to `path`.
    pub fn image(&self, keep: u64, rng: &mut Rng, path: &Path) -> Mix {
        let mut mix = Mix::default();
        let mut image = self.image_a.clone();
        image.resize(self.file_len(), 0);
        let last = self.versions.last().unwrap();
        for (p, chunk) in image.chunks_mut(PAGE).enumerate() {
            let at = p * PAGE..p * PAGE + chunk.len();
            let header_at_cut_unsafe = p == 0 && self.flushing;
            let changed: Vec<&Vec<u8>> = self
                .versions
                .iter()
                .enumerate()
                .filter(|&(k, _)| !(header_at_cut_unsafe && k + 1 == self.versions.len()))
                .map(|(_, v)| v)
                .filter(|v| v.len() >= at.end && v[at.clone()] != *chunk)
                .collect();
            if changed.is_empty() {
                continue;
            }
            mix.changed += 1;
            if rng.below(100) < keep {
                let v = changed[rng.below(changed.len() as u64) as usize];
                mix.written += 1;
                if v[at.clone()] != last[at.clone()] {
                    mix.older += 1;
                }
                chunk.copy_from_slice(&v[at]);
            }
        }
        fs::write(path, &image).unwrap();
        mix
    }
}

/// How an image was mixed, in pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct Mix {
    /// Pages that changed since the flush in some version.
    pub changed: u64,
    /// Pages taken from a version after the flush.
    pub written: u64,
    /// Of those, pages at a version other than the one at the cut.
    pub older: u64,
}

impl std::ops::AddAssign for Mix {
    fn add_assign(&mut self, o: Mix) {
        self.changed += o.changed;
        self.written += o.written;
        self.older += o.older;
    }
}
