//! Integration tests, one binary (link time on 2 cores), one module per guarantee it tries to
//! break (docs/testing.md maps each README guarantee to its tests).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

mod allocator;
mod api;
mod damage;
mod engine;
mod errors;
mod grow;
mod handles;
mod power_cut;
mod recovery;
mod sparse;
mod util;
mod wide;
