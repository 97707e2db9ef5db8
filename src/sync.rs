//! The only module that names `std::sync::atomic` or `loom`.
//!
//! With `--cfg parena_loom` every atomic, `Arc`, `Mutex` and thread-local used by parena comes from
//! loom, so the models in `tests/loom.rs` explore real interleavings of the lock-free code.

//!
//! `clippy.toml` makes this rule a lint: the std types and functions are disallowed everywhere
//! else. The types are exported as aliases and the functions as wrappers, not re-exported, so a
//! use through this module names the alias or the wrapper and passes the lint.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

pub(crate) use std::sync::atomic::Ordering;

#[cfg(not(parena_loom))]
use std::sync as imp;
#[cfg(not(parena_loom))]
use std::sync::atomic as imp_atomic;

#[cfg(parena_loom)]
use loom::sync as imp;
#[cfg(parena_loom)]
use loom::sync::atomic as imp_atomic;

/// An atomic `bool` (std's, or loom's under `--cfg parena_loom`).
pub(crate) type AtomicBool = imp_atomic::AtomicBool;
/// An atomic `u64` (std's, or loom's under `--cfg parena_loom`).
pub(crate) type AtomicU64 = imp_atomic::AtomicU64;
/// An atomic pointer (std's, or loom's under `--cfg parena_loom`).
pub(crate) type AtomicPtr<T> = imp_atomic::AtomicPtr<T>;
/// A shared pointer (std's, or loom's under `--cfg parena_loom`).
pub(crate) type Arc<T> = imp::Arc<T>;
/// A mutex (std's, or loom's under `--cfg parena_loom`); lock it with [`lock`].
pub(crate) type Mutex<T> = imp::Mutex<T>;

/// A memory fence (std's, or loom's under `--cfg parena_loom`).
#[inline]
pub(crate) fn fence(order: Ordering) {
    imp_atomic::fence(order);
}

/// Plain std atomics under every cfg: for process-wide statics (loom's atomics cannot be built in
/// a `static`), the `GlobalArena` state, and the raw API, whose signatures hand out std's
/// `AtomicU64`.
pub(crate) type StdAtomicU64 = std::sync::atomic::AtomicU64;
/// See [`StdAtomicU64`].
pub(crate) type StdAtomicU8 = std::sync::atomic::AtomicU8;
/// See [`StdAtomicU64`]: a flag that is no part of a lock-free protocol (the loom models never
/// reach it).
pub(crate) type StdAtomicBool = std::sync::atomic::AtomicBool;
/// The orderings of the std atomics (the same type loom re-exports).
pub(crate) use std::sync::atomic::Ordering as StdOrdering;

/// Declares thread-locals with std's `thread_local!`, or loom's under `--cfg parena_loom`; the
/// one way parena declares a thread-local that the loom models must see.
///
/// Takes std's syntax, `const { .. }` initialisers included. Loom's macro has no `const` form: there
/// the block's expression becomes the lazy initialiser, run on each model thread's first use.
#[cfg(not(parena_loom))]
macro_rules! parena_thread_local {
    ($($t:tt)*) => { std::thread_local!($($t)*); };
}
#[cfg(parena_loom)]
macro_rules! parena_thread_local {
    () => {};
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = const { $init:expr }; $($rest:tt)*) => {
        loom::thread_local!($(#[$attr])* $vis static $name: $t = $init;);
        $crate::sync::parena_thread_local!($($rest)*);
    };
    ($(#[$attr:meta])* $vis:vis static $name:ident: $t:ty = $init:expr; $($rest:tt)*) => {
        loom::thread_local!($(#[$attr])* $vis static $name: $t = $init;);
        $crate::sync::parena_thread_local!($($rest)*);
    };
}
pub(crate) use parena_thread_local;

/// Tells the CPU (or loom) that this thread is waiting on another one.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(parena_loom))]
    std::hint::spin_loop();
    #[cfg(parena_loom)]
    loom::thread::yield_now();
}

/// Between a `SeqCst` write (or read-modify-write) and a later `SeqCst` load of another location,
/// in the store-buffering shape of the check-slot protocol (`arena/check.rs`, `CheckSlot`). The
/// memory model already orders them (every `SeqCst` operation is in one total order), so in a
/// normal build this is nothing. loom models `SeqCst` accesses as `AcqRel` (it does not implement
/// that total order, and would report the shape as a race), but implements `SeqCst` fences, which
/// give the same guarantee: so under loom it is one.
#[inline]
pub(crate) fn sc_order() {
    #[cfg(parena_loom)]
    loom::sync::atomic::fence(Ordering::SeqCst);
}

/// Lets other threads run: the calling thread waits on another one for longer than a spin.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(parena_loom))]
    std::thread::yield_now();
    #[cfg(parena_loom)]
    loom::thread::yield_now();
}

/// Locks a mutex, treating a poisoned lock as usable: every structure parena guards with a mutex
/// is left consistent at each step, so a panic elsewhere cannot leave it half-written.
pub(crate) fn lock<T>(m: &Mutex<T>) -> impl std::ops::DerefMut<Target = T> + '_ {
    #[cfg(not(parena_loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(parena_loom)]
    {
        m.lock().unwrap()
    }
}
