//! Typed errors, never panics on bad input: each refusal has its own variant, harms nothing,
//! and its message names the facts.

mod arguments;
mod messages;
mod refusals;
