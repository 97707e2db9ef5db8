//! Durability: what `flush` made durable survives a power cut (a simulated disk keeps only the
//! pages written back), for every policy and in the engine's workload.

mod cutkit;
mod powercut;
mod powercut_engine;
mod powerloss;
