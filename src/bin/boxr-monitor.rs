//! `boxr-monitor`: the small per-container monitor of a detached container (see
//! `boxr::container::monitor`). A binary of its own so that what stays resident beside every
//! detached container is only the monitor's code, not the whole of boxr's.

fn main() {
    std::process::exit(boxr::container::monitor::main())
}
