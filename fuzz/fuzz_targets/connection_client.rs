//! A client-side `Connection` fed arbitrary bytes split at arbitrary
//! points (see `silverback_fuzz` for the input format and the checks).
#![no_main]

use libfuzzer_sys::fuzz_target;
use silverback_proto::Role;

fuzz_target!(|data: &[u8]| silverback_fuzz::run_connection(Role::Client, data));
