//! Handles: a stale, foreign, forged or still-pending handle never reaches bytes its caller
//! does not own.

mod forged;
mod pending;
mod read_slots;
mod resize_soundness;
