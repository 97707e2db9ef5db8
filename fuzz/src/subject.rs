//! The arena under test, shared by the drivers: how it is made from a [`Config`], where its
//! files go, and the reopen, image and crash round trips checked against the model.

use crate::{BackingChoice, Config, PolicyChoice};
use parena::{Arena, Error, Options};
use parena_testkit::{check_all, check_report, fill, Model};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// A private directory for the files of one fuzzing process (on tmpfs when there is one, so
/// create's fsyncs are cheap).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let b = tempfile::Builder::new()
            .prefix("parena-fuzz-")
            .tempdir_in("/dev/shm");
        b.or_else(|_| tempfile::Builder::new().prefix("parena-fuzz-").tempdir())
            .expect("a scratch directory")
    })
    .path()
}

/// A fresh file name in [`scratch_dir`].
pub fn scratch_file(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    scratch_dir().join(format!("{tag}-{n}.parena"))
}

/// Creates the arena described by `cfg` (and its file, for a file backing).
pub fn create(cfg: &Config, max_pages: u64) -> (Arena, Option<PathBuf>) {
    create_with(cfg.backing, cfg.options(max_pages))
}

/// Creates an arena with the options `o` in `backing` (and its file, for a file backing).
pub fn create_with(backing: BackingChoice, o: Options) -> (Arena, Option<PathBuf>) {
    match backing {
        BackingChoice::Heap => (o.heap().expect("heap arena"), None),
        BackingChoice::Anon => (o.map_anon().expect("anonymous arena"), None),
        BackingChoice::File => {
            let path = scratch_file("arena");
            // SAFETY: the file is private to this process and no one else maps or changes it.
            let a = unsafe { o.create_new(true).map_file(&path) }.expect("file arena");
            (a, Some(path))
        }
    }
}

/// Writes the arena's image to a file, opens that file and checks every block there.
pub fn image_round_trip(arena: &mut Arena, m: &Model) {
    let mut img = Vec::new();
    arena.write_image(&mut img).expect("write_image");
    assert_eq!(img.len() as u64, arena.capacity());
    let path = scratch_file("image");
    std::fs::write(&path, &img).expect("write image file");
    {
        // SAFETY: private file.
        let mut a = unsafe { Options::new().create(false).map_file(&path) }.expect("open image");
        assert!(a.was_clean(), "an image opens clean");
        assert_eq!(a.freelist(), arena.freelist());
        check_all(&a, m);
        for (i, &r) in m.roots.iter().enumerate() {
            assert_eq!(a.root(i), r, "root {i} in the image");
        }
        let r = a.verify().expect("verify image");
        check_report(&r, m, "verify image");
    }
    let _ = std::fs::remove_file(&path);
}

/// A subject under test: the arena, its file, and the options to reopen it with.
pub struct Subject {
    /// The arena (always `Some` between steps).
    pub arena: Option<Arena>,
    /// Its file, for a file arena.
    pub path: Option<PathBuf>,
    /// The policy it was made with.
    pub policy: PolicyChoice,
    /// Reserved length.
    pub reserved: u32,
}

impl Subject {
    /// The arena.
    pub fn a(&self) -> &Arena {
        self.arena.as_ref().expect("arena present")
    }

    /// The arena, mutably.
    pub fn a_mut(&mut self) -> &mut Arena {
        self.arena.as_mut().expect("arena present")
    }

    /// Closes and reopens a file arena (see [`Op::Reopen`]); an image round trip otherwise.
    pub fn reopen(&mut self, m: &Model, mode: u8) {
        let Some(path) = self.path.clone() else {
            image_round_trip(self.a_mut(), m);
            return;
        };
        if mode & 4 != 0 {
            // SAFETY: private file.
            let second = unsafe { Options::new().create(false).map_file(&path) };
            assert!(
                matches!(second, Err(Error::Locked)),
                "second writer: {second:?}"
            );
        }
        let cap = self.a().capacity();
        self.arena.take().expect("arena").close().expect("close");
        if mode & 1 != 0 {
            let before = std::fs::read(&path).expect("read file");
            let other = self.policy.other(mode >> 4);
            // SAFETY: private file.
            let r = unsafe { Options::new().freelist(other).map_file(&path) };
            match r {
                Err(Error::FreelistKind { expected, found }) => {
                    assert_eq!(expected, other as u8);
                    assert_eq!(found, self.policy.freelist() as u8);
                }
                other => panic!("reopen with another policy: {other:?}"),
            }
            assert!(
                std::fs::read(&path).expect("read file") == before,
                "a refused open changed the file"
            );
        }
        if mode & 2 != 0 {
            let before = std::fs::read(&path).expect("read file");
            {
                // SAFETY: private file.
                let ro = unsafe { Options::new().read_only(true).map_file(&path) }
                    .expect("read-only open");
                assert!(ro.was_clean());
                check_all(&ro, m);
                assert!(matches!(ro.alloc(8), Err(Error::ReadOnly)));
                if let Some(l) = m.pick(0) {
                    assert!(matches!(ro.free(l.h), Err(Error::ReadOnly)));
                }
                assert!(matches!(ro.set_root(0, 1), Err(Error::ReadOnly)));
                // A writer cannot come in while a reader holds the file.
                // SAFETY: private file.
                let w = unsafe { Options::new().map_file(&path) };
                assert!(
                    matches!(w, Err(Error::Locked)),
                    "writer beside reader: {w:?}"
                );
            }
            assert!(
                std::fs::read(&path).expect("read file") == before,
                "a read-only open changed the file"
            );
        }
        let mut o = Options::new().create(false).reserved(self.reserved);
        if mode & 8 != 0 {
            o = o.capacity(cap + 4096 * u64::from(1 + (mode >> 4)));
        }
        // SAFETY: private file.
        let a = unsafe { o.map_file(&path) }.expect("reopen");
        assert!(a.was_clean(), "a closed arena reopens clean");
        assert_eq!(a.freelist(), self.policy.freelist());
        if mode & 8 != 0 {
            assert!(a.capacity() > cap);
        } else {
            assert_eq!(a.capacity(), cap);
        }
        self.arena = Some(a);
    }

    /// Copies the file as a crash would leave it and continues on the copy after recovery.
    /// Returns the pending block, if one was left.
    pub fn crash(&mut self, m: &mut Model, pending: Option<(usize, u8)>) {
        let Some(path) = self.path.clone() else {
            return;
        };
        let copy = scratch_file("crash");
        let mut pend = None;
        {
            let a = self.a();
            let blk = pending.and_then(|(len, seed)| {
                let mut b = a.alloc(len).ok()?;
                fill(&mut b, seed, 0);
                Some((b, len, seed))
            });
            // The map is shared: the file's pages hold every store made so far.
            // (`read` and `write` retry EINTR; `fs::copy` does not, and libFuzzer's timer
            // interrupts it.)
            let bytes = std::fs::read(&path).expect("read the file");
            std::fs::write(&copy, bytes).expect("write the copy");
            if let Some((b, len, seed)) = blk {
                pend = Some((b.handle(), len, seed));
                drop(b);
            }
        }
        self.arena.take().expect("arena").close().expect("close");
        let _ = std::fs::remove_file(&path);
        // SAFETY: private file.
        let mut a = unsafe { Options::new().create(false).map_file(&copy) }.expect("recover");
        assert!(!a.was_clean(), "a crashed arena opens dirty");
        let r = a.recovery_report().cloned().expect("a recovery report");
        if let Some((h, len, seed)) = pend {
            m.insert(h, len, seed);
        }
        check_report(&r, m, "recovery");
        assert_eq!(r.pending_blocks, u64::from(pend.is_some()), "{r:?}");
        check_all(&a, m);
        let v = a.verify().expect("verify after recovery");
        check_report(&v, m, "verify after recovery");
        self.arena = Some(a);
        self.path = Some(copy);
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        drop(self.arena.take());
        if let Some(p) = &self.path {
            let _ = std::fs::remove_file(p);
        }
    }
}
