//! Arbitrary bytes (or a valid arena image patched by them) opened as an arena file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parena_fuzz::run_open_bytes;

fuzz_target!(|data: &[u8]| run_open_bytes(data));
