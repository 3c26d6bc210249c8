#![no_main]
// See boxr::fuzzing::reference for the property.
libfuzzer_sys::fuzz_target!(|data: &[u8]| boxr::fuzzing::reference(data));
