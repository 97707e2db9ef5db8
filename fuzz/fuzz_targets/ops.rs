//! Operation sequences against a model of the live blocks, over every backing and policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parena_fuzz::{run_ops, OpsInput};

fuzz_target!(|input: OpsInput| run_ops(&input));
