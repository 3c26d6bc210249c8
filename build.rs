//! Builds `boxr-init` (the directory boxr-init/): the tiny static program, with no standard library and
//! no libc, that the sandbox runtime embeds and execs as PID 1 of every container from a sealed
//! memfd. It is a program of its own, so it is compiled here with `rustc` directly: no_std, its
//! own entry point, linked static without start files.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = PathBuf::from("boxr-init");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("boxr-init");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = env::var("TARGET").expect("cargo sets TARGET");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "aarch64" {
        panic!("boxr-init has system calls for x86_64 and aarch64 only, not {arch}");
    }
    // Under `cargo clippy` the workspace's crates go through clippy-driver: boxr-init too.
    let mut command = match env::var_os("RUSTC_WORKSPACE_WRAPPER").filter(|w| !w.is_empty()) {
        Some(wrapper) => {
            let mut c = Command::new(wrapper);
            c.arg(&rustc);
            c
        }
        None => Command::new(&rustc),
    };
    let status = command
        .args([
            "--edition",
            "2024",
            "--crate-type",
            "bin",
            "--crate-name",
            "boxr_init",
        ])
        .args(["--target", &target])
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=s",
            "-C",
            "codegen-units=1",
        ])
        // No loader to relocate it: a fixed-address static executable.
        .args([
            "-C",
            "relocation-model=static",
            "-C",
            "strip=symbols",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args([
            "-C",
            "link-arg=-static",
            "-C",
            "link-arg=-Wl,--build-id=none",
        ])
        .args(["-D", "warnings", "-o"])
        .arg(&out)
        .arg(src.join("main.rs"))
        .status()
        .expect("rustc runs");
    assert!(status.success(), "building boxr-init failed");
}
