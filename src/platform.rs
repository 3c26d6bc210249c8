//! The platform boxr runs on, in OCI's words (what image configs and, later, a registry's
//! index name).
//!
//! A leaf module: it imports no other module of boxr.

/// The OCI architecture name of this build of boxr.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The OCI operating system name of this build of boxr.
pub fn os() -> &'static str {
    "linux"
}
