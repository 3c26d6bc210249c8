fn main() {
    // The fs helper, a hidden mode of this binary, starts before the argument parser.
    if let Some(code) = boxr::sandbox::fs_helper_mode() {
        std::process::exit(code);
    }
    std::process::exit(boxr::cli::main())
}
