//! Where a container meets its network outside `create`: the release at its end (through
//! `boxr __net-release`, which `boxr-sandbox` runs without carrying the network code), and, for
//! a monitor, the network and published ports at each start and their return at its end.

use std::path::Path;

/// Runs `boxr __net-release` for container `id` of the store at `root` (`stopping`: it stays,
/// and keeps its address) and waits until it reports: its namespace is unmounted then, and the
/// veth's deletion goes on without the caller.
pub(super) fn release(root: &Path, id: &str, stopping: bool) {
    let boxr = std::env::current_exe()
        .map(|e| e.with_file_name("boxr"))
        .unwrap_or_else(|_| "boxr".into());
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

/// The store of the container in `dir`, opened for a moment.
fn store_of(dir: &Path) -> Result<crate::store::Store, String> {
    let root = crate::store::root_of_container_dir(dir)
        .ok_or_else(|| format!("{} is not in a store", dir.display()))?;
    crate::store::Store::open(root, crate::store::Access::Shared).map_err(|e| e.to_string())
}

fn id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The container's network when it starts again (a stopped container gave its namespace and
/// veth back), and the ports it asked for (the proxy's threads start with the monitor's signals
/// blocked, so those still come to its signalfd).
pub(super) fn publish(dir: &Path) -> Result<Option<crate::net::publish::Publication>, String> {
    if !dir.join(crate::net::publish::ENDPOINT).exists() {
        return Ok(None);
    }
    let store = store_of(dir)?;
    crate::net::rewire(&store, &id_of(dir)).map_err(|e| e.to_string())?;
    if crate::net::publish::requests(dir).is_empty() {
        return Ok(None);
    }
    crate::net::publish::Publication::open(&store, dir).map_err(|e| e.to_string())
}

/// A monitor that ends for good gives the container's namespace and veth back (the container
/// stays: its address is kept for the next start). The veth's deletion, an RCU grace period,
/// goes on after the monitor is gone.
pub(super) fn give_back(dir: &Path) {
    if dir.exists()
        && dir.join(crate::net::publish::ENDPOINT).exists()
        && let Some(root) = crate::store::root_of_container_dir(dir)
    {
        release(root, &id_of(dir), true);
    }
}
