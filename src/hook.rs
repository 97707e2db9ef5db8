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
//! One more seam, process-wide, for tests only and built only with feature `testkit`: `read_held`,
//! a point inside every read (after its read slot is held and the start map tested, before the
//! header load) where a test can hold the reading thread, so that a race with a free runs in the
//! one order the test names instead of whichever order the scheduler picks.

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

/// The function [`read_held`] calls; installed at most once per process, by `testkit`
/// (feature `testkit`).
#[cfg(feature = "testkit")]
static READ_HELD: OnceLock<fn(u64)> = OnceLock::new();

/// Installs `f` as the function every read calls once it holds its read slot and has tested the
/// start map, before it loads the header word. The first call wins; later ones change nothing.
#[cfg(feature = "testkit")]
pub(crate) fn set_read_held(f: fn(u64)) {
    let _ = READ_HELD.set(f);
}

/// Called by every read (`Arena::read_with` and `read`) between its start-map test and its header
/// load, with the handle's data offset. Nothing unless a test installed a function; built only
/// with feature `testkit`, so the read path of every other build has no such point.
#[cfg(feature = "testkit")]
#[inline]
pub(crate) fn read_held(offset: u64) {
    if let Some(f) = READ_HELD.get() {
        f(offset);
    }
}
