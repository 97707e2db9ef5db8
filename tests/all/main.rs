//! Integration tests, one binary (link time on 2 cores).

#[cfg(all(feature = "async", not(parena_loom)))]
mod aio;
mod basics;
mod coalesce;
#[cfg(feature = "allocator-api2")]
mod collections;
mod corruption;
mod crash;
mod engine;
mod foundation;
mod model;
mod options_ext;
mod powerloss;
mod regressions;
mod stress;
mod util;
