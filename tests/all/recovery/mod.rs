//! Recoverable: a crash (kill -9) at any point, also inside compact, clear or a recovering open,
//! loses no block that was handed out and flushed.

mod crash;
mod passes;
