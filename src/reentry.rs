//! Invariant A, and the guard that keeps it: what the allocator interfaces can reach never
//! allocates, never panics and never waits for the calling thread itself.
//!
//! Everything `GlobalAlloc` and `allocator_api2::Allocator` can reach (allocation, free, resize,
//! the exhausted path with its coalescing pass, cache drains, `flush`, `stats`) makes no heap
//! allocation, cannot panic, and never waits for something the calling thread itself holds. The one
//! exception to "no allocation" is a thread's first use of an arena lane, which registers a
//! `ChunkCell` (an `Arc` and a slot); [`Step`] marks it, so `GlobalArena` sends it to the system
//! allocator. The steps that hold something exclusive or walk a shared list (this thread's slot
//! list, a walk of the cell registry, the coalescing pass) run under a [`Step`], and a call that
//! arrives while one is on the stack (re-entry through the global allocator) neither waits for it
//! nor takes it again: `GlobalArena` serves it from the system allocator, and the exhausted path
//! skips the pass and answers `Full`.
//! See docs/design.md, "Allocator paths".

crate::sync::parena_thread_local! {
    /// How many [`Step`]s are on this thread's stack. No destructor, so usable at thread exit.
    static STEP: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Marks an exclusive step of the calling thread (its slot list borrowed, the registry locked, a
/// coalescing pass running) for as long as it lives; see invariant A.
pub(crate) struct Step(());

impl Step {
    #[inline]
    pub(crate) fn enter() -> Step {
        let _ = STEP.try_with(|d| d.set(d.get() + 1));
        Step(())
    }
}

impl Drop for Step {
    #[inline]
    fn drop(&mut self) {
        let _ = STEP.try_with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Whether the calling thread is inside a [`Step`] (a thread whose thread-locals are gone counts as
/// inside: nothing may rely on them).
#[inline]
pub(crate) fn in_step() -> bool {
    STEP.try_with(|d| d.get() > 0).unwrap_or(true)
}

/// Test support for invariant A (cargo feature `alloc-audit`, off by default: without it none of
/// this is compiled and the entry points pay nothing). Every entry point an allocator interface can
/// reach holds an `audit::Op` while it runs; a test's `#[global_allocator]` asks
/// [`audit::depth`] and aborts if it is entered while an operation is on the stack. The one
/// allowed allocation, a thread's cell registration (and `GlobalArena`'s creation of its arena),
/// runs under an `audit::Exempt`.
#[cfg(feature = "alloc-audit")]
pub mod audit {
    use std::cell::Cell;

    std::thread_local! {
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    /// How many parena operations are on the calling thread's stack (0 inside an `Exempt`).
    pub fn depth() -> u32 {
        DEPTH.try_with(Cell::get).unwrap_or(0)
    }

    /// One parena operation on the stack, for as long as it lives.
    pub(crate) struct Op(());

    impl Op {
        pub(crate) fn enter() -> Op {
            let _ = DEPTH.try_with(|d| d.set(d.get() + 1));
            Op(())
        }
    }

    impl Drop for Op {
        fn drop(&mut self) {
            let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }

    /// An allowed allocation (see the module docs): the depth reads 0 until it is dropped.
    pub(crate) struct Exempt(u32);

    impl Exempt {
        pub(crate) fn enter() -> Exempt {
            Exempt(DEPTH.try_with(|d| d.replace(0)).unwrap_or(0))
        }
    }

    impl Drop for Exempt {
        fn drop(&mut self) {
            let _ = DEPTH.try_with(|d| d.set(self.0));
        }
    }
}

/// Marks a parena operation reachable from an allocator interface (`audit::Op`); expands to
/// nothing without the `alloc-audit` feature.
macro_rules! audit_op {
    () => {
        #[cfg(feature = "alloc-audit")]
        let _audit = $crate::reentry::audit::Op::enter();
    };
}
pub(crate) use audit_op;

/// Marks an allowed allocation (`audit::Exempt`); nothing without the `alloc-audit` feature.
macro_rules! audit_exempt {
    () => {
        #[cfg(feature = "alloc-audit")]
        let _audit_exempt = $crate::reentry::audit::Exempt::enter();
    };
}
pub(crate) use audit_exempt;
