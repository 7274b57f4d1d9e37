#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| graflow_core::fuzzing::checkpoint(data));
