//! The shared open (`Options::open_async`) and close (`Arena::close_async`): claiming a path in
//! the open registry, opening the file on the pool, registering the arena, and handing the last
//! clone's close to the pool (see "The registry" and "Cancellation" in the module docs of `aio`).

use super::registry::{
    retire, OpenEntry, OpenTicket, OpenedWith, Registration, CHANGED, OPEN_REGISTRY,
};
use super::AioHook;
use crate::arena::Arena;
use crate::backing::BackingKind;
use crate::error::Error;
use crate::format::DATA_ALIGN;
use crate::layout::align_up;
use crate::options::Options;
use crate::sync::{lock, Arc};
use event_listener::EventListener;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

/// What the pool hands back from an open. Field order matters: if nobody takes it (the future was
/// dropped), the arena is closed and unlocked first, then the ticket frees the entry.
#[derive(Debug)]
struct Opened {
    arena: Arena,
    ticket: OpenTicket,
}

/// One step of `open_async`, decided with the registry locked and carried out after unlocking.
#[derive(Debug)]
enum Claim {
    /// A clone of the open arena.
    Shared(Arena),
    /// A clone that the caller's options conflict with; it is dropped after unlocking.
    Refused(Arena, Error),
    /// Wait for the next change, then look again.
    Wait(EventListener),
    /// The path is ours to open.
    Open(OpenTicket),
    /// Give up.
    Fail(Error),
}

/// The registry key for `path`: its canonical form, or, for a file that does not exist yet, the
/// canonical form of its directory joined with its name (what it will canonicalize to once made).
fn canonical_key(path: &Path) -> Result<PathBuf, Error> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(name) = path.file_name() else {
                return Err(Error::of_open(e, path));
            };
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(dir).map_err(|e| Error::of_open(e, path))?;
            Ok(dir.join(name))
        }
        Err(e) => Err(Error::of_open(e, path)),
    }
}

/// Whether options `o` may share the open arena `a` (first opened with `first`).
fn check_compatible(o: &Options, a: &Arena, first: OpenedWith) -> Result<(), Error> {
    if o.create_new {
        return Err(Error::Exists);
    }
    let g = a.inner.geom();
    if o.read_only != a.is_read_only() {
        return Err(Error::Conflict {
            option: "read_only",
        });
    }
    if o.freelist.is_some_and(|k| k != g.freelist) {
        return Err(Error::Conflict { option: "freelist" });
    }
    if o.magic_version != g.magic_version {
        return Err(Error::Conflict {
            option: "magic_version",
        });
    }
    if o.reserved.is_some_and(|r| r != g.reserved_len) {
        return Err(Error::Conflict { option: "reserved" });
    }
    if o.max_capacity
        .is_some_and(|m| align_up(m, DATA_ALIGN) != Some(g.max_capacity))
    {
        return Err(Error::Conflict {
            option: "max_capacity",
        });
    }
    if let Some(c) = o.capacity {
        let want = align_up(c, DATA_ALIGN).ok_or_else(|| crate::arena::capacity_error(o, c))?;
        // A smaller capacity is kept as is, as on a reopen; a larger one would need a remap,
        // unless the arena is growable and the maximum holds it: then it grows in place, while
        // the other holders keep using it (docs/metadata.md, section 12).
        if want > a.capacity() {
            if !g.growable() || want > g.max_capacity || a.is_read_only() {
                return Err(Error::Conflict { option: "capacity" });
            }
            a.grow(want)?;
        }
    }
    let now = OpenedWith::of(o);
    if now.zero_on_free != first.zero_on_free {
        return Err(Error::Conflict {
            option: "zero_on_free",
        });
    }
    if now.offset != first.offset {
        return Err(Error::Conflict { option: "offset" });
    }
    if now.map_copy != first.map_copy {
        return Err(Error::Conflict { option: "map_copy" });
    }
    Ok(())
}

/// Looks up `key` with the registry locked and decides the next step.
fn claim(o: &Options, key: &Path) -> Claim {
    // A child of `fork()` must not find the registry locked by a thread it does not have.
    crate::fork::hold_across_fork!(OPEN_REGISTRY, super::registry::OpenRegistry);
    let mut map = lock(&OPEN_REGISTRY);
    match map.get(key) {
        None => {
            map.insert(key.to_path_buf(), OpenEntry::Opening);
            Claim::Open(OpenTicket {
                key: key.to_path_buf(),
                armed: true,
            })
        }
        Some(OpenEntry::Open { arena, first, .. }) => match arena.upgrade() {
            Some(inner) => {
                let a = Arena { inner, lane: 0 };
                match check_compatible(o, &a, *first) {
                    Ok(()) => Claim::Shared(a),
                    Err(e) => Claim::Refused(a, e),
                }
            }
            // The last clone is being dropped: its registration wakes us once the file is free.
            None => Claim::Wait(CHANGED.listen()),
        },
        Some(OpenEntry::Opening | OpenEntry::Closing { .. }) => Claim::Wait(CHANGED.listen()),
        Some(OpenEntry::Detached { .. }) => Claim::Fail(Error::Locked),
    }
}

impl Opened {
    /// Registers the fresh arena under `key` and hands it out. Runs between two await points.
    fn register(self, o: &Options, key: PathBuf) -> Arena {
        let Opened {
            mut arena,
            mut ticket,
        } = self;
        let uid = arena.inner.uid();
        let Some(inner) = Arc::get_mut(&mut arena.inner) else {
            // Unreachable (the arena was just made), and harmless: unshared, the ticket frees
            // the entry.
            return arena;
        };
        let hook = AioHook::registered(Registration {
            key: key.clone(),
            uid,
        });
        if inner.hook.install(Box::new(hook)).is_err() {
            // Unreachable as well: only `register` and `flush_async` install a hook, and no
            // flush ran on an arena nobody has seen yet.
            return arena;
        }
        let weak = Arc::downgrade(&arena.inner);
        {
            let mut map = lock(&OPEN_REGISTRY);
            map.insert(
                key,
                OpenEntry::Open {
                    arena: weak,
                    uid,
                    first: OpenedWith::of(o),
                },
            );
            ticket.armed = false;
        }
        CHANGED.notify(usize::MAX);
        arena
    }
}

async fn open_shared(o: Options, path: PathBuf) -> Result<Arena, Error> {
    let key = {
        let p = path.clone();
        blocking::unblock(move || canonical_key(&p)).await?
    };
    loop {
        match claim(&o, &key) {
            Claim::Shared(a) => return Ok(a),
            Claim::Refused(a, e) => {
                drop(a);
                return Err(e);
            }
            Claim::Fail(e) => return Err(e),
            Claim::Wait(l) => l.await,
            Claim::Open(ticket) => {
                let (o2, p2) = (o.clone(), path.clone());
                let opened = blocking::unblock(move || {
                    let arena = o2.with_map_settings(Arena::open_file(&o2, &p2)?)?;
                    Ok::<_, Error>(Opened { arena, ticket })
                })
                .await?;
                return Ok(opened.register(&o, key));
            }
        }
    }
}

impl Options {
    /// Opens (or creates) the arena file at `path` without blocking the executor, sharing it with
    /// every other `open_async` of the same file in this process.
    ///
    /// The first call maps the file, exactly as [`Options::map_file`] would (validation, recovery,
    /// growth, lock), on a thread of the `blocking` pool. While that arena is open, later calls
    /// for the same canonical path return clones of it: one map, one lock, one set of block
    /// generations, so a handle allocated by one task is used and freed by another. When the
    /// last clone is dropped the arena closes (chunk tails back, flush, clean mark, unlock) and a
    /// later call opens the file again. A call made while that close is running waits for it.
    ///
    /// The future is `Send + 'static` and needs no runtime: it runs on tokio, smol or any
    /// `block_on`. Dropping it at any point leaves nothing behind (no registered half-open arena,
    /// no lock held).
    ///
    /// [`Options::map_file`] stays the exclusive open: it gets [`Error::Locked`] while the file is
    /// open here, and `open_async` gets `Locked` while `map_file` holds it.
    ///
    /// ```
    /// use parena::{Arena, Options};
    /// # futures::executor::block_on(async {
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("shared.parena");
    /// let opts = Options::new().capacity(1 << 20);
    /// // SAFETY: no other program touches this file while it is mapped.
    /// let a = unsafe { opts.open_async(&path) }.await?;
    /// // SAFETY: as above.
    /// let b = unsafe { opts.open_async(&path) }.await?;
    /// assert!(Arena::same_arena(&a, &b));
    ///
    /// let h = a.alloc_copy(b"shared")?;
    /// b.flush_async().await?; // msync on the pool; concurrent flushes coalesce
    /// let mut buf = [0u8; 6];
    /// b.read(h, 0, &mut buf)?;
    /// assert_eq!(&buf, b"shared");
    /// b.free(h)?;
    /// a.close_async().await?; // b remains: the arena stays open
    /// b.close_async().await?; // the last clone: closed cleanly, off the executor
    /// # Ok::<(), parena::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As [`Options::map_file`]; and, when the file is already open here: [`Error::Conflict`]
    /// naming the option that differs from the open arena (`read_only`, `freelist`,
    /// `magic_version`, `reserved`, `zero_on_free`, `offset`, `map_copy`, or a `capacity` larger
    /// than the open one), [`Error::Exists`] with `create_new`, [`Error::Locked`] while an exclusive pass
    /// (`verify`, `compact`, `reserved_mut`, `write_image`, `close`) holds it.
    ///
    /// # Safety
    /// As for [`Options::map_file`]: no other process (or code outside parena) may modify or
    /// truncate the file while it is mapped.
    pub unsafe fn open_async(
        &self,
        path: impl AsRef<Path>,
    ) -> impl Future<Output = Result<Arena, Error>> + Send + 'static {
        open_shared(self.clone(), path.as_ref().to_path_buf())
    }
}

impl Arena {
    /// Gives up this clone without blocking the executor. When it is the last one, the close
    /// protocol ([`Arena::close`]) runs on the pool and its error is returned; an `open_async` of
    /// the path meanwhile waits for it. When other clones remain, this is a drop.
    ///
    /// Dropping the last clone of a file arena instead runs the close (a flush) on the dropping
    /// thread.
    ///
    /// # Errors
    /// [`Error::Io`] from the final flush.
    pub async fn close_async(self) -> Result<(), Error> {
        fn close_last(a: Arena) -> Result<(), Error> {
            match a.close() {
                Err(Error::Shared) => Ok(()),
                r => r,
            }
        }
        if self.backing() != BackingKind::File {
            return close_last(self);
        }
        retire(
            self.inner.uid(),
            &|| Arc::strong_count(&self.inner) == 1,
            |uid| OpenEntry::Closing { uid },
        );
        blocking::unblock(move || close_last(self)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let canon = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            canonical_key(&dir.path().join("x")).unwrap(),
            canon.join("x")
        );
        assert!(canonical_key(&dir.path().join("missing/x")).is_err());
    }
}
