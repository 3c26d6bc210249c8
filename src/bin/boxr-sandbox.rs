//! `boxr-sandbox`: the sandbox runtime (the helper, a container's init, the exec helper, the
//! end of a detached container), run by boxr and its monitor (see
//! `boxr::sandbox`). A binary of its own, small, so that each start loads less. What stays in a
//! container is not this binary but boxr-init (`boxr-init/`), which it embeds. It records a
//! container's start and end with the container's recorder (`boxr::container::record`).

fn main() {
    std::process::exit(boxr::sandbox::runtime_main(
        &boxr::container::record::Recorder,
    ))
}
