//! The one seam between the arena and the layers above it.
//!
//! The arena layer must not name the layers built on it (`aio` sits above `arena`), yet one of
//! them needs two things from an arena's core: something dropped *last*, after the close protocol
//! has run and the file is unlocked, and a call from `Arena::exclusive` before it takes the only
//! clone out of sharing. [`HookSlot`] gives both without naming the layer: the arena keeps one
//! slot as the last field of its core and calls [`HookSlot::detach`] in `exclusive`; a layer above
//! installs its [`ArenaHook`] once. The slot is empty for every arena no upper layer touched, and
//! costs one atomic load per exclusive pass.
//!
//! The hook owns no reference to the arena (which would keep it alive); a layer that keeps
//! per-arena state does so itself, keyed by the arena's uid, and drops it in the hook's `Drop`.
//!
//! One more seam, process-wide and for tests only: [`full_readers_wait`], a point inside the
//! handle check's wait for a full reader count where a test (through `testkit`) can hold the
//! waiting thread, so that a race with that wait runs in the one order the test names instead of
//! whichever order the scheduler picks.

use std::fmt;
use std::sync::OnceLock;

/// What a layer above the arena attaches to one arena's core. Dropped with the core, after the
/// close protocol and after the backing is unmapped and its file unlocked.
pub(crate) trait ArenaHook: Send + Sync + fmt::Debug {
    /// Called by `Arena::exclusive` with `&mut` on a clone of the arena, before it checks that
    /// the clone is the only one. `only_clone` answers that question now; the hook calls it while
    /// holding whatever lock keeps its own way of minting clones shut.
    fn detach(&self, only_clone: &dyn Fn() -> bool);
}

/// An arena's slot for one [`ArenaHook`], set at most once.
#[derive(Debug, Default)]
pub(crate) struct HookSlot(OnceLock<Box<dyn ArenaHook>>);

// The only layer that installs a hook is `aio` (cargo feature `async`, not under loom).
#[cfg_attr(any(not(feature = "async"), parena_loom), allow(dead_code))]
impl HookSlot {
    /// The installed hook, installing the one `make` builds if the slot is empty.
    pub(crate) fn get_or_install(
        &self,
        make: impl FnOnce() -> Box<dyn ArenaHook>,
    ) -> &dyn ArenaHook {
        &**self.0.get_or_init(make)
    }

    /// Installs `hook`; gives it back if the slot already holds one.
    pub(crate) fn install(&self, hook: Box<dyn ArenaHook>) -> Result<(), Box<dyn ArenaHook>> {
        self.0.set(hook)
    }

    /// Lets the installed hook (if any) take the arena out of the upper layer's sharing; see
    /// [`ArenaHook::detach`].
    pub(crate) fn detach(&self, only_clone: impl Fn() -> bool) {
        if let Some(hook) = self.0.get() {
            hook.detach(&only_clone);
        }
    }
}

/// The function [`full_readers_wait`] calls; installed at most once per process, by `testkit`
/// (feature `testkit`).
static FULL_READERS_WAIT: OnceLock<fn(u64)> = OnceLock::new();

/// Installs `f` as the function a handle check calls each time it waits for a reader to leave a
/// block whose reader count is full. The first call wins; later ones change nothing.
#[cfg(feature = "testkit")]
pub(crate) fn set_full_readers_wait(f: fn(u64)) {
    let _ = FULL_READERS_WAIT.set(f);
}

/// Called by a handle check (`Arena::read_with` and the other pins) on every round of its wait for
/// a full reader count to drop, before it tests the block again, with the handle's data offset.
/// Nothing unless a test installed a function: one atomic load, on a path that is already waiting.
#[inline]
pub(crate) fn full_readers_wait(offset: u64) {
    if let Some(f) = FULL_READERS_WAIT.get() {
        f(offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::{Arc, AtomicU64, Ordering};

    #[derive(Debug)]
    struct Counting(Arc<AtomicU64>);

    impl ArenaHook for Counting {
        fn detach(&self, only_clone: &dyn Fn() -> bool) {
            if only_clone() {
                self.0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn installs_once_and_forwards_detach() {
        let calls = Arc::new(AtomicU64::new(0));
        let slot = HookSlot::default();
        slot.detach(|| true); // empty: nothing to call
        assert!(slot.install(Box::new(Counting(Arc::clone(&calls)))).is_ok());
        assert!(slot
            .install(Box::new(Counting(Arc::clone(&calls))))
            .is_err());
        slot.get_or_install(|| unreachable!("already installed"));
        slot.detach(|| false);
        slot.detach(|| true);
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
