//! Damaged files: flipped bits, corrupt headers and forged words are reported and refused or
//! repaired, never followed; salvage keeps what it can vouch for; the fuzzers' finds replayed.

mod bitflips;
mod corruption;
mod regressions;
mod salvage;
