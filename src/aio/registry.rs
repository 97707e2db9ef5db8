//! The open registry: what this process holds at each canonical path through `open_async`, the
//! guards that own its entries, and the moves of an entry out of sharing (see "The registry" and
//! "The close protocol" in the module docs of `aio`).

use crate::sync::{lock, Mutex};
use event_listener::Event;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Weak;

use crate::arena::Inner;

/// The entries of the open registry, by canonical path.
pub(super) type OpenRegistry = BTreeMap<PathBuf, OpenEntry>;

/// What this process holds at each canonical path through `open_async`.
pub(super) static OPEN_REGISTRY: Mutex<OpenRegistry> = Mutex::new(BTreeMap::new());

/// Notified after every change of [`OPEN_REGISTRY`]. Waiters listen with the registry locked, so
/// no change between their look and their wait is missed.
pub(super) static CHANGED: Event = Event::new();

/// The options of an arena's first `open_async` that later opens must match and that the arena
/// itself does not keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OpenedWith {
    pub(super) zero_on_free: bool,
    pub(super) offset: u64,
    pub(super) map_copy: bool,
}

impl OpenedWith {
    pub(super) fn of(o: &crate::options::Options) -> OpenedWith {
        OpenedWith {
            zero_on_free: o.zero_on_free,
            offset: o.offset,
            map_copy: o.map_copy,
        }
    }
}

/// The state of one path in the open registry (see the module docs of `aio`).
#[derive(Debug)]
pub(super) enum OpenEntry {
    /// A task is opening the file; its [`OpenTicket`] owns this state.
    Opening,
    /// The arena is open. `uid` is its `Inner::uid`.
    Open {
        /// The arena; upgraded only with the registry's mutex held.
        arena: Weak<Inner>,
        /// The arena's `Inner::uid`.
        uid: u64,
        /// What the first opener asked for that the arena does not record; later opens must ask
        /// the same.
        first: OpenedWith,
    },
    /// `close_async` is closing the arena.
    Closing {
        /// The arena's `Inner::uid`.
        uid: u64,
    },
    /// An exclusive pass took the arena out of sharing until it is dropped.
    Detached {
        /// The arena's `Inner::uid`.
        uid: u64,
    },
}

impl OpenEntry {
    fn uid(&self) -> Option<u64> {
        match *self {
            OpenEntry::Opening => None,
            OpenEntry::Open { uid, .. }
            | OpenEntry::Closing { uid }
            | OpenEntry::Detached { uid } => Some(uid),
        }
    }
}

/// The registry entry of an open arena. Held by the arena's hook (`super::AioHook`), which is
/// dropped as the last field of `Inner`: after the close protocol and after the file is unlocked.
#[derive(Debug)]
pub(super) struct Registration {
    pub(super) key: PathBuf,
    pub(super) uid: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = {
            let mut map = lock(&OPEN_REGISTRY);
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
#[derive(Debug)]
pub(super) struct OpenTicket {
    pub(super) key: PathBuf,
    pub(super) armed: bool,
}

impl Drop for OpenTicket {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let removed = {
            let mut map = lock(&OPEN_REGISTRY);
            if matches!(map.get(&self.key), Some(OpenEntry::Opening)) {
                map.remove(&self.key)
            } else {
                None
            }
        };
        drop(removed);
        CHANGED.notify(usize::MAX);
    }
}

impl Registration {
    /// Takes the arena out of the registry when the caller's clone is the only one, so that
    /// `Arc::get_mut` can succeed (the registry's `Weak` is dropped) and stays sound: with the
    /// `Weak` gone, no other thread can make a clone while the caller's exclusive borrow lives.
    /// Called through the arena's hook by `Arena::exclusive` with `&mut` on that only clone.
    ///
    /// Until the arena is dropped its entry says `Detached`, and `open_async` of the path gets
    /// `Error::Locked` (waiting could deadlock a task that holds the arena).
    pub(super) fn detach(&self, only_clone: &dyn Fn() -> bool) {
        retire(self.uid, only_clone, |uid| OpenEntry::Detached { uid });
    }
}

/// Replaces the `Open` entry of the arena `uid` by `to(uid)` when `only_clone()` says, with the
/// registry locked, that the caller's clone is the only one. No entry: nothing to do.
pub(super) fn retire(uid: u64, only_clone: &dyn Fn() -> bool, to: fn(u64) -> OpenEntry) {
    let mut map = lock(&OPEN_REGISTRY);
    // Clones are only minted by upgrading the entry's `Weak` with this mutex held, or by cloning
    // an existing strong reference. If the caller's is the only one, neither can happen while we
    // hold the mutex (the caller is busy here), so a count of 1 means no other clone exists.
    if !only_clone() {
        return;
    }
    // An arena is registered under one path; the registry holds the few files this process
    // opened with `open_async`.
    let entry = map
        .values_mut()
        .find(|e| matches!(e, OpenEntry::Open { uid: u, .. } if *u == uid));
    if let Some(e) = entry {
        // Drops the `Weak` (a `Weak` drop never drops the arena).
        *e = to(uid);
    }
}
