//! The allocation paths: blocks never overlap, freed space is reused (free lists, thread cache,
//! lanes, coalescing), large blocks keep their length, a model of the live blocks agrees.

mod coalesce;
#[cfg(feature = "allocator-api2")]
mod collections;
mod fillers;
mod front;
mod lanes;
mod large;
mod model;
mod reuse;
mod stress;
mod threads;
