fn main() {
    // Hidden modes of this binary (the fs helper, the release of a `--rm` container's
    // network) start before the argument parser.
    if let Some(code) = boxr::rootless::pause_mode()
        .or_else(boxr::sandbox::fs_helper_mode)
        .or_else(boxr::net::release_mode)
        .or_else(boxr::net::dns::mode)
    {
        std::process::exit(code);
    }
    std::process::exit(boxr::cli::main())
}
