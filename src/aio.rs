//! The async layer (cargo feature `async`): open and flush as futures that never block an executor
//! thread, and one shared arena per file per process.
//!
//! Every blocking system call (`open`, `flock`, `fallocate`, `fsync`, `msync`, `munmap`) runs on
//! the thread pool of the `blocking` crate; the futures here only wait on it. They need no runtime,
//! so they work the same on tokio (either flavour), smol, or a plain `block_on`.
//!
//! ## The registry
//!
//! [`Options::open_async`] is the *shared* open: a process-wide map from a file's canonical path to
//! an [`Entry`] says what this process holds at that path. An entry moves through these states
//! (every change is made with the registry's mutex held, and announced on [`CHANGED`]):
//!
//! | state | meaning | a new `open_async` of the path |
//! | --- | --- | --- |
//! | (none) | nothing held here | inserts `Opening` and opens the file on the pool |
//! | `Opening` | one task is opening the file | waits |
//! | `Open` | the arena is open; the entry keeps a `Weak` to it | upgrades it: a clone; a dead `Weak` means the last clone is being dropped, so it waits |
//! | `Closing` | `close_async` took the last clone | waits |
//! | `Detached` | an exclusive pass (`verify`, `compact`, ...) took the only clone out of sharing | [`Error::Locked`], as for a second writer |
//!
//! Clones are minted from the `Weak` only with the registry's mutex held, which is what lets
//! `Arena::exclusive` prove that no clone can appear: see [`detach`].
//!
//! ## The close protocol
//!
//! An open arena carries a [`Registration`] as the *last* field of its core, so it is dropped after
//! the close protocol has run (chunk tails back, data flushed, clean mark flushed) and after the
//! backing has been unmapped and its file closed, which releases the `flock`. Only then does it
//! remove the entry and wake waiters. A waiter that saw a dead `Weak` therefore opens the file again
//! only once the old arena has let go of it: it never gets `Locked` from its own process.
//!
//! ## Flush coalescing
//!
//! Each arena counts flushes in epochs ([`Epochs`]). A call to `flush_async` notes
//! `need = started + 1` when it begins: only a flush that *starts* after that point is sure to
//! cover the writes made before the call. It then returns as soon as a flush of epoch `>= need`
//! has succeeded (or reports the error of one that failed), starts one itself if none is running,
//! and otherwise waits for the running one to finish. One flush runs at a time, so however many
//! tasks call at once, at most two `msync` passes serve them: the one in flight, and the next,
//! which covers everybody who arrived during it.
//!
//! The caller's writes happen before its `flush_async` call; the call locks the epoch mutex; the
//! flush of epoch `need` is started under the same mutex later, and its `msync` runs after that
//! (the pool hand-over synchronises too). So the writes happen before the `msync` that covers them.
//!
//! ## Cancellation
//!
//! A future here may be dropped at any await point. The work handed to the pool owns a guard that
//! puts things back whatever happens to the future:
//! - an open carries an [`OpenTicket`]; if the future is gone when the file is open, the arena is
//!   dropped (closed, unlocked) *before* the ticket removes the `Opening` entry, so waiters find the
//!   file free; if the work never runs, dropping it drops the ticket;
//! - a flush carries a [`FlushTicket`]; a flush that never ran marks its epoch abandoned (waiters
//!   start another), one that ran records its result for the waiters as usual. A flush future that
//!   returned `Ok` had its `msync` complete, so no durability is lost.
//!
//! Registration of a freshly opened arena happens between two await points, so it is never half
//! done.
//!
//! ## Orderings
//!
//! This module uses no atomics of its own: the registry and the epochs are guarded by mutexes, and
//! the arena is shared through `Arc`. Mutexes are only held for a few map or counter updates, never
//! across an await or a system call, and no arena is ever dropped while one is held (dropping the
//! last clone takes the registry's mutex).

use crate::arena::{Arena, Inner};
use crate::backing::BackingKind;
use crate::error::Error;
use crate::format::DATA_ALIGN;
use crate::layout::align_up;
use crate::options::Options;
use crate::sync::{lock, Arc, Mutex};
use event_listener::{Event, EventListener};
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Weak;

/// What this process holds at each canonical path through `open_async`.
static REGISTRY: Mutex<BTreeMap<PathBuf, Entry>> = Mutex::new(BTreeMap::new());

/// Notified after every change of [`REGISTRY`]. Waiters listen with the registry locked, so no
/// change between their look and their wait is missed.
static CHANGED: Event = Event::new();

/// The state of one path in the registry (see the module docs).
enum Entry {
    /// A task is opening the file; its [`OpenTicket`] owns this state.
    Opening,
    /// The arena is open. `uid` is its `Inner::uid`.
    Open {
        arena: Weak<Inner>,
        uid: u64,
        /// What the first opener asked for; later opens must ask the same.
        zero_on_free: bool,
    },
    /// `close_async` is closing the arena.
    Closing { uid: u64 },
    /// An exclusive pass took the arena out of sharing until it is dropped.
    Detached { uid: u64 },
}

impl Entry {
    fn uid(&self) -> Option<u64> {
        match *self {
            Entry::Opening => None,
            Entry::Open { uid, .. } | Entry::Closing { uid } | Entry::Detached { uid } => Some(uid),
        }
    }
}

/// The async layer's part of an arena's core (`Inner::aio`).
#[derive(Default)]
pub(crate) struct AioState {
    /// Set when `open_async` registered the arena; its drop removes the registry entry.
    registration: Option<Registration>,
    /// Flush epochs, shared by every clone.
    flush: Arc<FlushState>,
}

/// The registry entry of an open arena. Dropped as the last field of `Inner`, after the close
/// protocol and after the file is unlocked.
struct Registration {
    key: PathBuf,
    uid: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = {
            let mut map = lock(&REGISTRY);
            match map.get(&self.key) {
                Some(e) if e.uid() == Some(self.uid) => map.remove(&self.key),
                _ => None,
            }
        };
        drop(removed);
        CHANGED.notify(usize::MAX);
    }
}

/// Owns an `Opening` entry until the opened arena is registered (then it is disarmed), or removes
/// it when dropped armed.
struct OpenTicket {
    key: PathBuf,
    armed: bool,
}

impl Drop for OpenTicket {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = {
            let mut map = lock(&REGISTRY);
            if matches!(map.get(&self.key), Some(Entry::Opening)) {
                map.remove(&self.key)
            } else {
                None
            }
        };
        drop(removed);
        CHANGED.notify(usize::MAX);
    }
}

/// What the pool hands back from an open. Field order matters: if nobody takes it (the future was
/// dropped), the arena is closed and unlocked first, then the ticket frees the entry.
struct Opened {
    arena: Arena,
    ticket: OpenTicket,
}

/// One step of `open_async`, decided with the registry locked and carried out after unlocking.
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
                return Err(e.into());
            };
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            Ok(std::fs::canonicalize(dir)?.join(name))
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether options `o` may share the open arena `a` (first opened with `zero_on_free`).
fn check_compatible(o: &Options, a: &Arena, zero_on_free: bool) -> Result<(), Error> {
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
    if let Some(c) = o.capacity {
        let want = align_up(c, DATA_ALIGN).ok_or(Error::Size {
            field: "capacity",
            value: c,
        })?;
        // A smaller capacity is kept as is, as on a reopen; a larger one would need a remap.
        if want > a.capacity() {
            return Err(Error::Conflict { option: "capacity" });
        }
    }
    if o.zero_on_free != zero_on_free {
        return Err(Error::Conflict {
            option: "zero_on_free",
        });
    }
    Ok(())
}

/// Looks up `key` with the registry locked and decides the next step.
fn claim(o: &Options, key: &Path) -> Claim {
    let mut map = lock(&REGISTRY);
    match map.get(key) {
        None => {
            map.insert(key.to_path_buf(), Entry::Opening);
            Claim::Open(OpenTicket {
                key: key.to_path_buf(),
                armed: true,
            })
        }
        Some(Entry::Open {
            arena,
            zero_on_free,
            ..
        }) => match arena.upgrade() {
            Some(inner) => {
                let a = Arena { inner, lane: 0 };
                match check_compatible(o, &a, *zero_on_free) {
                    Ok(()) => Claim::Shared(a),
                    Err(e) => Claim::Refused(a, e),
                }
            }
            // The last clone is being dropped: its registration wakes us once the file is free.
            None => Claim::Wait(CHANGED.listen()),
        },
        Some(Entry::Opening | Entry::Closing { .. }) => Claim::Wait(CHANGED.listen()),
        Some(Entry::Detached { .. }) => Claim::Fail(Error::Locked),
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
        inner.aio.registration = Some(Registration {
            key: key.clone(),
            uid,
        });
        let weak = Arc::downgrade(&arena.inner);
        {
            let mut map = lock(&REGISTRY);
            map.insert(
                key,
                Entry::Open {
                    arena: weak,
                    uid,
                    zero_on_free: o.zero_on_free,
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
                    let arena = Arena::open_file(&o2, &p2)?;
                    Ok::<_, Error>(Opened { arena, ticket })
                })
                .await?;
                return Ok(opened.register(&o, key));
            }
        }
    }
}

/// Takes the arena out of the registry when `inner` is its only clone, so that `Arc::get_mut`
/// can succeed (the registry's `Weak` is dropped) and stays sound: with the `Weak` gone, no other
/// thread can make a clone while the caller's exclusive borrow lives. Called by
/// `Arena::exclusive` with `&mut` on that only clone.
///
/// Until the arena is dropped its entry says `Detached`, and `open_async` of the path gets
/// [`Error::Locked`] (waiting could deadlock a task that holds the arena).
pub(crate) fn detach(inner: &Arc<Inner>) {
    retire(inner, |uid| Entry::Detached { uid });
}

/// Replaces the `Open` entry of `inner` by `to(uid)` when `inner` is the only clone.
fn retire(inner: &Arc<Inner>, to: fn(u64) -> Entry) {
    let Some(reg) = &inner.aio.registration else {
        return;
    };
    let mut map = lock(&REGISTRY);
    // Clones are only minted by upgrading the entry's `Weak` with this mutex held, or by cloning
    // an existing strong reference. If the caller's is the only one, neither can happen while we
    // hold the mutex (the caller is busy here), so a count of 1 means no other clone exists.
    if Arc::strong_count(inner) != 1 {
        return;
    }
    if let Some(e) = map.get_mut(&reg.key) {
        if matches!(e, Entry::Open { uid, .. } if *uid == reg.uid) {
            // Drops the `Weak` (a `Weak` drop never drops the arena).
            *e = to(reg.uid);
        }
    }
}

/// A copy of a flush error for every waiter of the failed epoch.
#[derive(Clone, Copy, Debug)]
struct FlushFailure {
    no_space: bool,
    raw: Option<i32>,
    kind: io::ErrorKind,
}

impl FlushFailure {
    fn of(e: &Error) -> FlushFailure {
        match e {
            Error::NoSpace => FlushFailure {
                no_space: true,
                raw: None,
                kind: io::ErrorKind::Other,
            },
            Error::Io(io) => FlushFailure {
                no_space: false,
                raw: io.raw_os_error(),
                kind: io.kind(),
            },
            _ => FlushFailure {
                no_space: false,
                raw: None,
                kind: io::ErrorKind::Other,
            },
        }
    }

    fn error(self) -> Error {
        if self.no_space {
            return Error::NoSpace;
        }
        match self.raw {
            Some(code) => Error::from(io::Error::from_raw_os_error(code)),
            None => Error::Io(io::Error::new(self.kind, "an arena flush failed")),
        }
    }
}

/// The flush epochs of one arena (see "Flush coalescing" in the module docs).
#[derive(Default)]
struct Epochs {
    /// Flushes started so far; while `running`, the one in flight has epoch `started`.
    started: u64,
    /// A flush is in flight (at most one at a time).
    running: bool,
    /// Highest epoch whose flush succeeded (0: none).
    succeeded: u64,
    /// Highest epoch whose flush failed (0: none), and how.
    failed: u64,
    failure: Option<FlushFailure>,
    /// Flushes that reached `msync`.
    #[cfg(test)]
    ran: u64,
}

#[derive(Default)]
pub(crate) struct FlushState {
    epochs: Mutex<Epochs>,
    /// Notified when a flush finishes or is abandoned.
    changed: Event,
}

/// The flush of one epoch, owned by the pool's work. Whatever happens to the future that started
/// it, its drop ends the epoch and wakes the waiters.
struct FlushTicket {
    /// Keeps the arena mapped during the flush; dropped before the waiters are woken.
    arena: Option<Arena>,
    state: Arc<FlushState>,
    epoch: u64,
    armed: bool,
}

impl FlushTicket {
    fn run(mut self) -> Result<(), Error> {
        let r = match &self.arena {
            Some(a) => a.flush(),
            None => Ok(()),
        };
        self.finish(Some(&r));
        r
    }

    /// Ends the epoch: `None` when the flush never ran.
    fn finish(&mut self, result: Option<&Result<(), Error>>) {
        self.armed = false;
        // The clone goes first: if it is the last one, the arena closes here, before anyone wakes.
        drop(self.arena.take());
        {
            let mut e = lock(&self.state.epochs);
            e.running = false;
            match result {
                Some(Ok(())) => e.succeeded = e.succeeded.max(self.epoch),
                Some(Err(err)) => {
                    e.failed = e.failed.max(self.epoch);
                    e.failure = Some(FlushFailure::of(err));
                }
                None => {}
            }
            #[cfg(test)]
            if result.is_some() {
                e.ran += 1;
            }
        }
        self.state.changed.notify(usize::MAX);
    }
}

impl Drop for FlushTicket {
    fn drop(&mut self) {
        if self.armed {
            self.finish(None);
        }
    }
}

enum FlushStep {
    Wait(EventListener),
    Run(FlushTicket),
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
    /// `magic_version`, `reserved`, `zero_on_free`, or a `capacity` larger than the open one),
    /// [`Error::Exists`] with `create_new`, [`Error::Locked`] while an exclusive pass
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
    /// Whether flushes reach a device (a writable file map).
    fn flushes_to_disk(&self) -> bool {
        self.backing() == BackingKind::File && !self.is_read_only()
    }

    /// [`Arena::flush`] without blocking the executor: makes everything written before the call
    /// durable (the heap, then the header).
    ///
    /// Calls from many tasks coalesce: a call waits for a flush that started after it began,
    /// joining one already queued rather than issuing its own `msync`. A no-op for heap,
    /// anonymous and read-only arenas.
    ///
    /// Dropping the future is safe at any point. An `msync` it had already started finishes on the
    /// pool and keeps the arena open until then: an `open_async` of the path meanwhile shares it
    /// or waits for its close, but a `map_file` may get [`Error::Locked`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// let arena = parena::Options::new().capacity(1 << 16).heap()?;
    /// arena.flush_async().await?; // nothing to write for a heap arena
    /// # Ok::<(), parena::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] (or [`Error::NoSpace`]) from the flush that covered this call.
    pub async fn flush_async(&self) -> Result<(), Error> {
        if !self.flushes_to_disk() {
            return Ok(());
        }
        let state = &self.inner.aio.flush;
        let mut need = None;
        loop {
            let step = {
                let mut e = lock(&state.epochs);
                let need = *need.get_or_insert(e.started + 1);
                if e.succeeded >= need {
                    return Ok(());
                }
                if e.failed >= need {
                    if let Some(f) = e.failure {
                        return Err(f.error());
                    }
                }
                if e.running {
                    FlushStep::Wait(state.changed.listen())
                } else {
                    e.started += 1;
                    e.running = true;
                    FlushStep::Run(FlushTicket {
                        arena: Some(self.clone()),
                        state: Arc::clone(state),
                        epoch: e.started,
                        armed: true,
                    })
                }
            };
            match step {
                FlushStep::Wait(l) => l.await,
                FlushStep::Run(t) => return blocking::unblock(move || t.run()).await,
            }
        }
    }

    /// [`Arena::flush_range`] without blocking the executor: makes bytes `offset..offset + len`
    /// durable. Range flushes are not coalesced (each names its own bytes). Dropping the future
    /// behaves as for [`Arena::flush_async`].
    ///
    /// # Errors
    /// [`Error::OutOfBounds`] outside the arena; [`Error::Io`].
    pub async fn flush_range_async(&self, offset: u64, len: u64) -> Result<(), Error> {
        let capacity = self.capacity();
        match offset.checked_add(len) {
            Some(end) if end <= capacity => {}
            _ => {
                return Err(Error::OutOfBounds {
                    offset,
                    len,
                    limit: capacity,
                })
            }
        }
        if len == 0 || !self.flushes_to_disk() {
            return Ok(());
        }
        let a = self.clone();
        blocking::unblock(move || a.flush_range(offset, len)).await
    }

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
        retire(&self.inner, |uid| Entry::Closing { uid });
        blocking::unblock(move || close_last(self)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::{Context, Poll};

    fn file_arena(dir: &tempfile::TempDir) -> Arena {
        // SAFETY: the file is private to this test.
        unsafe {
            Options::new()
                .capacity(1 << 20)
                .map_file(dir.path().join("a"))
        }
        .unwrap()
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        let waker = futures::task::noop_waker();
        std::pin::Pin::new(f).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: &T) {}
        let dir = tempfile::tempdir().unwrap();
        let a = file_arena(&dir);
        send(&a.flush_async());
        send(&a.flush_range_async(0, 1));
        // SAFETY: the future is never polled.
        send(&unsafe { Options::new().open_async(dir.path().join("b")) });
        send(&a.close_async());
    }

    /// Callers that arrive while a flush is in flight are all served by one more flush.
    #[test]
    fn flushes_coalesce() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_arena(&dir);
        let state = Arc::clone(&a.inner.aio.flush);
        {
            // Pretend epoch 1 is in flight.
            let mut e = lock(&state.epochs);
            e.started = 1;
            e.running = true;
        }
        let mut calls: Vec<_> = (0..16).map(|_| Box::pin(a.flush_async())).collect();
        for c in &mut calls {
            assert!(poll_once(c).is_pending());
        }
        {
            let mut e = lock(&state.epochs);
            e.running = false;
            e.succeeded = 1;
        }
        state.changed.notify(usize::MAX);
        for r in futures::executor::block_on(futures::future::join_all(calls)) {
            r.unwrap();
        }
        let e = lock(&state.epochs);
        assert_eq!((e.started, e.ran, e.succeeded), (2, 1, 2));
    }

    /// A call that finds a covering flush already done returns at once; one that arrives after
    /// starts its own.
    #[test]
    fn completed_flush_covers_only_earlier_calls() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_arena(&dir);
        futures::executor::block_on(a.flush_async()).unwrap();
        futures::executor::block_on(a.flush_async()).unwrap();
        let e = lock(&a.inner.aio.flush.epochs);
        assert_eq!((e.started, e.ran), (2, 2));
    }

    /// A flusher dropped mid-flight, and waiters dropped while waiting, leave the epochs usable.
    #[test]
    fn cancelled_flushes_do_not_wedge() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_arena(&dir);
        for _ in 0..20 {
            let mut first = Box::pin(a.flush_async());
            let mut second = Box::pin(a.flush_async());
            let _ = poll_once(&mut first);
            let _ = poll_once(&mut second);
            drop(first);
            drop(second);
            futures::executor::block_on(a.flush_async()).unwrap();
        }
        let e = lock(&a.inner.aio.flush.epochs);
        assert!(!e.running);
        assert!(e.succeeded >= 20);
    }

    #[test]
    fn failure_is_reported_to_its_waiters() {
        let f = FlushFailure::of(&Error::Io(io::Error::from_raw_os_error(5)));
        assert!(matches!(f.error(), Error::Io(e) if e.raw_os_error() == Some(5)));
        assert!(matches!(
            FlushFailure::of(&Error::NoSpace).error(),
            Error::NoSpace
        ));
        let dir = tempfile::tempdir().unwrap();
        let a = file_arena(&dir);
        let state = Arc::clone(&a.inner.aio.flush);
        {
            let mut e = lock(&state.epochs);
            e.started = 1;
            e.running = true;
        }
        let mut waiter = Box::pin(a.flush_async());
        assert!(poll_once(&mut waiter).is_pending());
        {
            // Epoch 2 (the one the waiter needs) fails.
            let mut e = lock(&state.epochs);
            e.started = 2;
            e.running = false;
            e.failed = 2;
            e.failure = Some(FlushFailure::of(&Error::NoSpace));
        }
        state.changed.notify(usize::MAX);
        assert!(matches!(
            futures::executor::block_on(waiter),
            Err(Error::NoSpace)
        ));
        // A later call is not covered by that failure: it flushes anew.
        futures::executor::block_on(a.flush_async()).unwrap();
    }

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
