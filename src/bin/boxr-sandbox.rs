//! `boxr-sandbox`: the sandbox runtime (the helper, a container's init, the exec helper, the
//! end of a detached container), run by boxr and its monitor (see
//! `boxr::sandbox`). A binary of its own, small, so that each start execs less and the sealed
//! copy made for PID 1 is small. It records a container's start and end with the container's
//! recorder (`boxr::container::record`).

fn main() {
    std::process::exit(boxr::sandbox::runtime_main(
        &boxr::container::record::Recorder,
    ))
}
