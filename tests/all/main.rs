//! Integration tests, one binary (link time on 2 cores).

// Not the library: std's atomics, `Arc` and `Mutex` are fine here (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(all(feature = "async", not(parena_loom)))]
mod aio;
mod basics;
mod bitflips;
mod coalesce;
#[cfg(feature = "allocator-api2")]
mod collections;
mod copies;
mod corruption;
mod crash;
mod cutkit;
mod engine;
mod foundation;
mod handles;
mod inventory;
mod large;
mod messages;
mod model;
mod options_ext;
mod passes;
mod powercut;
mod powercut_engine;
mod powerloss;
mod regressions;
mod resize_soundness;
mod salvage;
mod stress;
mod util;
