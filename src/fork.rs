//! What a child of `fork()` inherits from parena, and how it avoids waiting for threads it does
//! not have (docs/design.md, "Fork").
//!
//! A child process has a copy of its parent's memory and one thread, the one that called `fork`.
//! Whatever the parent's other threads held at that instant they hold forever in the child. parena
//! keeps two kinds of such state, and each has its own remedy:
//!
//! - **Flags a thread sets for the length of a step** (the coalescing pass's flag) hold the fork
//!   [`epoch`] of the process that set them, not a plain `true`. The epoch is 1 in a process that
//!   no fork has separated from its first use of parena, and a child handler adds one in every
//!   child: it only grows along a line of descent. So a flag holding another epoch than the
//!   current one was set by a thread of an ancestor process, which does not exist here, and the
//!   step it guarded will never end: the child takes the flag over. The step's half-done work is
//!   lost to the child (a leak in the child's copy, never a block handed out twice).
//! - **Process-wide mutexes** (the file-lock table, the async open registry, the flush states)
//!   are taken by a `prepare` handler before every fork and released after it, in the parent and
//!   in the child ([`hold_across_fork`]): a fork then happens only while no thread is inside
//!   them, so the child finds them free and whole. Taking them before the fork is sound because
//!   every one of them is held only for short, non-nested sections.
//!
//! Everything else parena keeps per process is either thread-local (the forking thread's own
//! state is consistent: `fork` is never called from inside parena) or lock-free, and a lock-free
//! structure already tolerates a thread that stops forever at any instruction.

use crate::sync::{StdAtomicU64, StdOrdering};

/// The fork epoch of this process: 1, plus one per fork between this process and the first
/// use of parena in its line of descent. Written only by [`child_epoch`], in the child.
static EPOCH: StdAtomicU64 = StdAtomicU64::new(1);

/// The fork epoch of the calling process (see the module docs). Never 0.
#[inline]
pub(crate) fn epoch() -> u64 {
    // Relaxed: written once, by the child handler, before any other code runs in the child.
    EPOCH.load(StdOrdering::Relaxed)
}

/// The child handler of [`watch`]: one more fork in this line of descent.
extern "C" fn child_epoch() {
    // Relaxed: the child has one thread now.
    EPOCH.fetch_add(1, StdOrdering::Relaxed);
}

/// Makes sure the fork epoch counts forks from now on (once per process; the handlers are
/// inherited by children). Called whenever an arena is created or opened.
pub(crate) fn watch() {
    #[allow(clippy::disallowed_types)] // a `static` needs std's `Once` (loom's has no const constructor)
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| on_fork(None, None, Some(child_epoch)));
}

/// A `pthread_atfork` handler.
pub(crate) type Handler = Option<unsafe extern "C" fn()>;

/// Registers fork handlers with the C library (`pthread_atfork`): `prepare` runs in the forking
/// thread before the fork, `parent` and `child` after it in the parent and in the child. Nothing
/// where there is no `fork` to watch (not unix), under Miri (no foreign calls) or under loom (the
/// models never fork).
#[allow(unused_variables)]
pub(crate) fn on_fork(prepare: Handler, parent: Handler, child: Handler) {
    #[cfg(all(unix, not(miri), not(parena_loom)))]
    {
        extern "C" {
            fn pthread_atfork(prepare: Handler, parent: Handler, child: Handler) -> i32;
        }
        // SAFETY: `pthread_atfork` takes three nullable function pointers of the C type
        // `void (*)(void)`, which `Option<unsafe extern "C" fn()>` is; the handlers are `'static`
        // functions that never unwind (a panic in an `extern "C" fn` aborts). Its only failure
        // is ENOMEM, after which the handlers are simply not registered.
        let _ = unsafe { pthread_atfork(prepare, parent, child) };
    }
}

/// Holds the process-wide `std` mutex `$m` (a `static` of type `Mutex<$t>`) across every fork
/// from now on: a `prepare` handler locks it, and the `parent` and `child` handlers unlock it, so
/// a child never finds it held by a thread it does not have. Registers once per call site.
///
/// The guard lives in a thread-local between the handlers: `prepare` and the two others always
/// run on the forking thread.
macro_rules! hold_across_fork {
    ($m:path, $t:ty) => {{
        std::thread_local! {
            static GUARD: std::cell::RefCell<Option<std::sync::MutexGuard<'static, $t>>> =
                const { std::cell::RefCell::new(None) };
        }
        extern "C" fn prepare() {
            let g = $m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // (Without the thread-local, at thread exit, the guard drops here: no hold.)
            let _ = GUARD.try_with(|s| *s.borrow_mut() = Some(g));
        }
        extern "C" fn release() {
            let _ = GUARD.try_with(|s| s.borrow_mut().take());
        }
        #[allow(clippy::disallowed_types)] // a `static` needs std's `Once`
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| $crate::fork::on_fork(Some(prepare), Some(release), Some(release)));
    }};
}
pub(crate) use hold_across_fork;
