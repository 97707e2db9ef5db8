//! Flush coalescing (`Arena::flush_async`) and range flushes on the pool (see "Flush coalescing"
//! and "Cancellation" in the module docs of `aio`).
//!
//! The epochs of an arena live here, in [`FLUSH_STATES`] keyed by the arena's uid, not in the
//! arena: the first `flush_async` of an arena installs its hook (`super::AioHook`), whose drop,
//! with the arena's core, removes them.

use super::AioHook;
use crate::arena::Arena;
use crate::backing::BackingKind;
use crate::error::Error;
use crate::sync::{lock, Arc, Mutex};
use event_listener::{Event, EventListener};
use std::collections::BTreeMap;
use std::io;

/// The flush epochs of every arena that `flush_async` has served and that is still open, by
/// `Inner::uid`.
static FLUSH_STATES: Mutex<BTreeMap<u64, Arc<FlushState>>> = Mutex::new(BTreeMap::new());

/// The flush epochs of `a`, shared by all its clones; made on first use.
fn flush_state(a: &Arena) -> Arc<FlushState> {
    let uid = a.inner.uid();
    // Installed before the state is made, so that the state is always removed with the arena.
    a.inner
        .hook
        .get_or_install(|| Box::new(AioHook::unregistered(uid)));
    // A child of `fork()` must not find the table locked by a thread it does not have.
    crate::fork::hold_across_fork!(FLUSH_STATES, BTreeMap<u64, Arc<FlushState>>);
    Arc::clone(lock(&FLUSH_STATES).entry(uid).or_default())
}

/// Forgets the flush epochs of the arena `uid` (its hook is being dropped with it).
pub(super) fn forget(uid: u64) {
    let removed = lock(&FLUSH_STATES).remove(&uid);
    drop(removed);
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
#[derive(Debug, Default)]
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

/// The flush epochs of one arena and the event that announces their changes.
#[derive(Debug, Default)]
pub(super) struct FlushState {
    epochs: Mutex<Epochs>,
    /// Notified when a flush finishes or is abandoned.
    changed: Event,
}

/// The flush of one epoch, owned by the pool's work. Whatever happens to the future that started
/// it, its drop ends the epoch and wakes the waiters.
#[derive(Debug)]
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

#[derive(Debug)]
enum FlushStep {
    Wait(EventListener),
    Run(FlushTicket),
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
        let state = &flush_state(self);
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
                    region: crate::error::Region::Arena,
                })
            }
        }
        if len == 0 || !self.flushes_to_disk() {
            return Ok(());
        }
        let a = self.clone();
        blocking::unblock(move || a.flush_range(offset, len)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aio::tests::{file_arena, poll_once};

    /// Makes `a`'s flush state say that epoch 1 is in flight, and returns that state.
    fn pretend_epoch_one_in_flight(a: &Arena) -> Arc<FlushState> {
        let state = flush_state(a);
        let mut e = lock(&state.epochs);
        e.started = 1;
        e.running = true;
        drop(e);
        state
    }

    /// Callers that arrive while a flush is in flight are all served by one more flush.
    #[test]
    fn flushes_coalesce() {
        let dir = tempfile::tempdir().unwrap();
        let a = file_arena(&dir);
        let state = pretend_epoch_one_in_flight(&a);
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
        let state = flush_state(&a);
        let e = lock(&state.epochs);
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
        let state = flush_state(&a);
        let e = lock(&state.epochs);
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
        let state = pretend_epoch_one_in_flight(&a);
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
}
