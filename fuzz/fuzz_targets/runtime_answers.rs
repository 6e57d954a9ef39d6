#![no_main]
//! The `runtime_answers` target of `vigil-fuzz` (the stable harness fuzzes the same entry point).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vigil_fuzz::runtime_answers(data));
