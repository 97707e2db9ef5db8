//! The free lists under each policy: splits, discards, rewinds, merges, compact and reopen.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parena_fuzz::{run_freelist, FreelistInput};

fuzz_target!(|input: FreelistInput| run_freelist(&input));
