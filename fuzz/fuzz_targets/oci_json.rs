#![no_main]
// See boxr::fuzzing::oci_json for the property.
libfuzzer_sys::fuzz_target!(|data: &[u8]| boxr::fuzzing::oci_json(data));
