#![no_main]
// See boxr::fuzzing::layer_apply for the property. Each input applies into a fresh temporary
// directory (run as root: whiteouts are character devices).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let work = tempfile::tempdir().expect("a temporary directory");
    boxr::fuzzing::layer_apply(data, work.path());
});
