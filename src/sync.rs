//! The only module that names `std::sync::atomic` or `loom`.
//!
//! With `--cfg parena_loom` every atomic, `Arc`, `Mutex` and thread-local used by parena comes from
//! loom, so the models in `tests/loom.rs` explore real interleavings of the lock-free code.

#[cfg(not(parena_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
#[cfg(not(parena_loom))]
pub(crate) use std::sync::{Arc, Mutex};

#[cfg(parena_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

#[cfg(parena_loom)]
pub(crate) use loom::sync::{Arc, Mutex};
/// Plain std atomics under every cfg: for process-wide statics (loom's atomics cannot be built in
/// a `static`), the `GlobalArena` state, and the raw API, whose signatures hand out std's
/// `AtomicU64`.
pub(crate) use std::sync::atomic::{
    AtomicU64 as StdAtomicU64, AtomicU8 as StdAtomicU8, Ordering as StdOrdering,
};

/// Declares a thread-local with std or loom, whichever is in force.
#[cfg(not(parena_loom))]
macro_rules! parena_thread_local {
    ($($t:tt)*) => { std::thread_local!($($t)*); };
}
#[cfg(parena_loom)]
macro_rules! parena_thread_local {
    ($($t:tt)*) => { loom::thread_local!($($t)*); };
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
