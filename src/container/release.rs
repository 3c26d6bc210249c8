//! Giving a container's network place back at its end, through `boxr __net-release` (which
//! `boxr-sandbox` runs without carrying the network code). A leaf: the state, the monitor and the
//! record all call it.

use std::path::Path;

/// Runs `boxr __net-release` for container `id` of the store at `root` (`stopping`: it stays,
/// and keeps its address) and waits until it reports: its namespace is unmounted then, and the
/// veth's deletion goes on without the caller. `boxr`: the binary to run (default: the one
/// beside this process's).
pub(super) fn release(root: &Path, id: &str, stopping: bool, boxr: Option<&Path>) {
    let boxr = match boxr {
        Some(b) => b.to_owned(),
        None => std::env::current_exe()
            .map(|e| e.with_file_name("boxr"))
            .unwrap_or_else(|_| "boxr".into()),
    };
    let child = std::process::Command::new(&boxr)
        .arg(crate::net::RELEASE_ARG)
        .arg(root)
        .arg(id)
        .args(stopping.then_some(crate::net::STOP_ARG))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let failed = match child {
        Ok(mut c) => {
            let mut line = String::new();
            if let Some(out) = c.stdout.take() {
                let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
            }
            if line.trim() == "ready" {
                return;
            }
            match c.wait() {
                Ok(s) if s.success() => return,
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            }
        }
        Err(e) => format!("cannot run {}: {e}", boxr.display()),
    };
    eprintln!(
        "boxr: cannot take container {} off its network ({failed}; `boxr rm` or `boxr gc` will)",
        &id[..12.min(id.len())]
    );
}
