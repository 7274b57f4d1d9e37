#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    graflow_store::fuzzing::read_hostile_rows(&graflow_store::fuzzing::Cell::decode(data))
});
