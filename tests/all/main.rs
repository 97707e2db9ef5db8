//! Integration tests, one binary (link time on 2 cores).

mod basics;
mod foundation;
mod util;
