//! parena's benches: the targets are `alloc.rs`, `churn.rs`, `open.rs`, `recovery.rs`,
//! `collections.rs` and `engine.rs` beside this file (see `docs/performance.md`). This library is
//! empty; cargo needs one target besides the benches to build the package.
