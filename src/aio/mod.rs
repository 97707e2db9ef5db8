//! The async layer (cargo feature `async`): open and flush as futures that never block an executor
//! thread, and one shared arena per file per process.
//!
//! Every blocking system call (`open`, `flock`, `fallocate`, `fsync`, `msync`, `munmap`) runs on
//! the thread pool of the `blocking` crate; the futures here only wait on it. They need no runtime,
//! so they work the same on tokio (either flavour), smol, or a plain `block_on`.
//!
//! ## The registry
//!
//! [`Options::open_async`](crate::Options::open_async) is the *shared* open: a process-wide map
//! from a file's canonical path to an `OpenEntry` (in `registry`) says what this process holds at
//! that path. An entry moves through these states (every change is made with the registry's mutex
//! held, and announced on `registry::CHANGED`):
//!
//! | state | meaning | a new `open_async` of the path |
//! | --- | --- | --- |
//! | (none) | nothing held here | inserts `Opening` and opens the file on the pool |
//! | `Opening` | one task is opening the file | waits |
//! | `Open` | the arena is open; the entry keeps a `Weak` to it | upgrades it: a clone; a dead `Weak` means the last clone is being dropped, so it waits |
//! | `Closing` | `close_async` took the last clone | waits |
//! | `Detached` | an exclusive pass (`verify`, `compact`, ...) took the only clone out of sharing | [`Error::Locked`](crate::Error::Locked), as for a second writer |
//!
//! Clones are minted from the `Weak` only with the registry's mutex held, which is what lets
//! `Arena::exclusive` prove that no clone can appear: see `Registration::detach`.
//!
//! ## The close protocol
//!
//! An open arena carries a `Registration` in its hook, the *last* field of its core, so it is
//! dropped after the close protocol has run (chunk tails back, data flushed, clean mark flushed)
//! and after the backing has been unmapped and its file closed, which releases the `flock`. Only
//! then does it remove the entry and wake waiters. A waiter that saw a dead `Weak` therefore opens
//! the file again only once the old arena has let go of it: it never gets `Locked` from its own
//! process.
//!
//! ## Flush coalescing
//!
//! Each arena counts flushes in epochs (`flush::Epochs`). A call to `flush_async` notes
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
//! - an open carries an `OpenTicket`; if the future is gone when the file is open, the arena is
//!   dropped (closed, unlocked) *before* the ticket removes the `Opening` entry, so waiters find the
//!   file free; if the work never runs, dropping it drops the ticket;
//! - a flush carries a `FlushTicket`; a flush that never ran marks its epoch abandoned (waiters
//!   start another), one that ran records its result for the waiters as usual. A flush future that
//!   returned `Ok` had its `msync` complete, so no durability is lost.
//!
//! Registration of a freshly opened arena happens between two await points, so it is never half
//! done.
//!
//! ## Orderings
//!
//! This module uses no atomics of its own: the registry and the epochs are guarded by mutexes, the
//! arena is shared through `Arc`, and the hook slot is a `OnceLock`. Mutexes are only held for a
//! few map or counter updates, never across an await or a system call, and no arena is ever
//! dropped while one is held (dropping the last clone takes the registry's mutex).
//!
//! ## The seam with the arena
//!
//! The arena layer does not name this module. Its core keeps one aio-agnostic slot
//! (`crate::hook::HookSlot`, the last field of `Inner`) and calls `HookSlot::detach` in
//! `Arena::exclusive`. This module installs its [`AioHook`] there: when `open_async` registers a
//! fresh arena (holding its `Registration`), or at the first `flush_async` of an arena opened
//! otherwise. The hook's `detach` is `Registration::detach`; its drop removes the flush epochs
//! (kept in `flush`, keyed by the arena's uid) and then, through the `Registration`, the registry
//! entry. `close_async` finds its entry by the arena's uid. So the arena's core carries no aio
//! type, and everything aio keeps per arena is gone once the core is dropped.
//!
//! | file | job |
//! | --- | --- |
//! | `registry.rs` | the open registry, its entries and guards, moving an entry out of sharing |
//! | `open.rs` | `open_async` and `close_async` |
//! | `flush.rs` | flush epochs and coalescing, `flush_async`, `flush_range_async` |

mod flush;
mod open;
mod registry;

use crate::hook::ArenaHook;
use registry::Registration;

/// This module's hook in an arena's core (see "The seam with the arena").
#[derive(Debug)]
pub(crate) struct AioHook {
    /// The arena's `Inner::uid`: keys its flush epochs.
    uid: u64,
    /// Set when `open_async` registered the arena; its drop removes the registry entry.
    registration: Option<Registration>,
}

impl AioHook {
    /// The hook of an arena `open_async` registered.
    fn registered(registration: Registration) -> AioHook {
        AioHook {
            uid: registration.uid,
            registration: Some(registration),
        }
    }

    /// The hook of an arena opened otherwise (installed by its first `flush_async`).
    fn unregistered(uid: u64) -> AioHook {
        AioHook {
            uid,
            registration: None,
        }
    }
}

impl ArenaHook for AioHook {
    fn detach(&self, only_clone: &dyn Fn() -> bool) {
        if let Some(reg) = &self.registration {
            reg.detach(only_clone);
        }
    }
}

impl Drop for AioHook {
    fn drop(&mut self) {
        // The flush epochs first; the registration (a field) drops after this body, last.
        flush::forget(self.uid);
    }
}

#[cfg(test)]
mod tests {
    use crate::arena::Arena;
    use crate::options::Options;
    use std::future::Future;
    use std::task::{Context, Poll};

    pub(super) fn file_arena(dir: &tempfile::TempDir) -> Arena {
        // SAFETY: the file is private to this test.
        unsafe {
            Options::new()
                .capacity(1 << 20)
                .map_file(dir.path().join("a"))
        }
        .unwrap()
    }

    pub(super) fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
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
}
