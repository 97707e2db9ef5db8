//! The API's promises in ordinary use: the three memories and one format, round trips and reopens,
//! copies of an arena, whole-arena operations, map options, the async API.

#[cfg(all(feature = "async", not(parena_loom)))]
mod aio;
mod backings;
mod copies;
mod inventory;
mod options_ext;
mod round_trips;
