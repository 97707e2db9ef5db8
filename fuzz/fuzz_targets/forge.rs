//! Header-shaped block contents, and handles forged from them and near real ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parena_fuzz::{run_forge, ForgeInput};

fuzz_target!(|input: ForgeInput| run_forge(&input));
