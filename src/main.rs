fn main() {
    std::process::exit(boxr::cli::main())
}
