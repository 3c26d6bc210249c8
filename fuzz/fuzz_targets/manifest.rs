#![no_main]
// See boxr::fuzzing::manifest for the property.
libfuzzer_sys::fuzz_target!(|data: &[u8]| boxr::fuzzing::manifest(data));
