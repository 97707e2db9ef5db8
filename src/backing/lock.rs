//! The lock on an arena file: `flock` through fs4 (shared for a reader, exclusive for a writer),
//! and this process's record of the files it holds locked, so that a second open here is
//! `Locked` at once while a lock that only looks busy (a spawning child's copy of a descriptor)
//! is retried for a moment.

use crate::error::Error;
use std::fs::File;
use std::io;

/// A lock held on an open file; released when the file is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileLock {
    Shared,
    Exclusive,
}

/// A file's identity, whatever path reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileId {
    pub(super) dev: u64,
    pub(super) ino: u64,
}

impl FileId {
    pub(super) fn of(f: &File) -> Result<FileId, Error> {
        use std::os::unix::fs::MetadataExt;
        let m = f.metadata()?;
        Ok(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Files this process holds a parena lock on, with a count of holders (readers share).
///
/// A `flock` belongs to the open file description, and a child process being spawned by any
/// thread holds a copy of every descriptor until its `exec` closes them (they are close-on-exec).
/// In that window a lock this process just released still looks taken. So when the lock is busy
/// and this process does not hold the file itself, the open retries for a short while before it
/// reports [`Error::Locked`]; when this process holds it, the answer is `Locked` at once. A plain
/// `std` mutex: file locks are outside the loom models (and a `static` needs a `const` constructor).
#[allow(clippy::disallowed_types)]
static HELD: std::sync::Mutex<Vec<(FileId, usize)>> = std::sync::Mutex::new(Vec::new());

fn held_list() -> std::sync::MutexGuard<'static, Vec<(FileId, usize)>> {
    HELD.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a busy lock is retried when no holder is in this process.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

pub(super) fn take_lock(file: &File, lock: FileLock, id: FileId) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_micros(200);
    loop {
        let got = match lock {
            FileLock::Shared => fs4::fs_std::FileExt::try_lock_shared(file),
            FileLock::Exclusive => fs4::fs_std::FileExt::try_lock_exclusive(file),
        };
        match got {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        let here = held_list().iter().any(|&(h, _)| h == id);
        if here || started.elapsed() >= LOCK_RETRY {
            return Err(Error::Locked);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

/// This process's record of one lock it holds; dropping it (before the descriptor closes)
/// removes the record.
pub(super) struct Held(FileId);

impl Held {
    pub(super) fn register(id: FileId) -> Held {
        // A child of `fork()` must not find the table locked by a thread it does not have.
        crate::fork::hold_across_fork!(HELD, Vec<(FileId, usize)>);
        let mut l = held_list();
        match l.iter_mut().find(|(h, _)| *h == id) {
            Some((_, n)) => *n += 1,
            None => l.push((id, 1)),
        }
        Held(id)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut l = held_list();
        if let Some(i) = l.iter().position(|(h, _)| *h == self.0) {
            l[i].1 -= 1;
            if l[i].1 == 0 {
                l.swap_remove(i);
            }
        }
    }
}
