//! parena's benches: the targets are `alloc.rs`, `first_program.rs`, `churn.rs`, `open.rs`,
//! `recovery.rs`, `flush.rs`, `collections.rs`, `engine.rs` and `allocators.rs` beside this file (see
//! `docs/performance.md`). This library is empty; cargo needs one target besides the benches to
//! build the package.
