//! Rootless networking: a rootless container's network namespace is connected to the host's
//! network by pasta (Debian's `passt` package; podman's default rootless network), started and
//! stopped by boxr. pasta puts a tap device in the namespace with the host's addresses and
//! routes (`--config-net`) and carries its traffic through ordinary sockets of the user's:
//! egress is the user's own connections; a published port (`-p`) is a listening socket of
//! pasta's on the host (`-t`, `-u`), so a port below `net.ipv4.ip_unprivileged_port_start` is
//! refused as it is for any program of the user's. Nothing is forwarded from the container to the
//! host's own services (`--no-map-gw`, `-T none -U none`). Names: the container's resolver is
//! [`RESOLVER`], which pasta forwards to the host's first one.
//!
//! Journaled (`journal/pasta-ID.json`) before anything is made, with pasta's pid once it runs, so
//! `rm` and `gc` end pasta and drop the namespace also after a crash.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::ports::{Proto, Publish};
use super::{NetError, io};
use crate::platform::process_start_time;
use crate::store::Store;

/// The resolver address a rootless container is given; pasta answers it.
pub const RESOLVER: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The file in a container's directory that says it is on pasta's network (its requests).
pub const MARKER: &str = "pasta.json";

/// What the journal keeps of a container's pasta.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    container: String,
    netns: PathBuf,
    /// The rootless network namespace's pasta (see `net::rootless`), not a container's.
    #[serde(default)]
    shared: bool,
    /// pasta's pid and start time, once it runs.
    pid: Option<(i32, u64)>,
}

/// Whether the container in `dir` is on pasta's network.
pub fn attached(dir: &Path) -> bool {
    dir.join(MARKER).exists()
}

/// Puts the rootless container `id` (its directory `dir`) on the host's network through pasta,
/// in a network namespace at `dir/netns`, with `publish`'s ports. Records what it holds in
/// `published.json`, as a bridge container's ports are.
pub fn attach(store: &Store, id: &str, dir: &Path, publish: &[Publish]) -> Result<(), NetError> {
    let marker = dir.join(MARKER);
    fs::write(&marker, serde_json::to_vec(publish).expect("serializes"))
        .map_err(io(format!("write {}", marker.display())))?;
    start(store, id, dir, publish, false)
}

/// Makes the rootless network namespace at `dir/netns`, journaled as `key`, connected to the
/// host's network by a pasta of its own that publishes nothing (its containers' ports are
/// proxied from the host: see `net::publish`).
pub(super) fn start_shared(store: &Store, key: &str, dir: &Path) -> Result<(), NetError> {
    // A pasta a crash left (whose namespace's mount went with an earlier pause process).
    release(store, key, false);
    start(store, key, dir, &[], true)
}

/// The rootless network namespace without pasta, when pasta cannot connect it (a host with no
/// routable interface): its containers reach each other, and nothing else.
pub(super) fn start_offline(store: &Store, key: &str, dir: &Path) -> Result<(), NetError> {
    let netns = dir.join("netns");
    let journal = store.journal_entry("pasta", key);
    let entry = Entry {
        container: key.to_owned(),
        netns: netns.clone(),
        shared: true,
        pid: None,
    };
    write_entry(&journal, &entry)?;
    super::netns::make_netns(&netns).inspect_err(|_| {
        unmount(&netns);
        let _ = fs::remove_file(&journal);
    })
}

fn start(
    store: &Store,
    id: &str,
    dir: &Path,
    publish: &[Publish],
    shared: bool,
) -> Result<(), NetError> {
    let netns = dir.join("netns");
    let journal = store.journal_entry("pasta", id);
    let mut entry = Entry {
        container: id.to_owned(),
        netns: netns.clone(),
        shared,
        pid: None,
    };
    write_entry(&journal, &entry)?;
    let failed = |e: NetError| {
        unmount(&netns);
        let _ = fs::remove_file(&journal);
        e
    };
    super::netns::make_netns(&netns).map_err(failed)?;
    // The host ports: each request's, or the first free one of its range (any free one for none).
    let mut published = Vec::new();
    for r in publish {
        let bound = super::publish::bind_request(store, r).map_err(failed)?;
        published.extend(bound.into_iter().map(|(p, _socket)| p));
    }
    let spec = |proto: Proto| {
        let ports: Vec<String> = published
            .iter()
            .filter(|p| p.proto == proto && !p.host_ip.is_ipv6())
            .map(|p| {
                let addr = match p.host_ip {
                    IpAddr::V4(a) if !a.is_unspecified() => format!("{a}/"),
                    _ => String::new(),
                };
                format!("{addr}{}:{}", p.host_port, p.container_port)
            })
            .collect();
        if ports.is_empty() {
            "none".to_owned()
        } else {
            ports.join(",")
        }
    };
    let pid_file = dir.join("pasta.pid");
    let log_file = dir.join("pasta.log");
    let _ = fs::remove_file(&pid_file);
    let log = fs::File::create(&log_file)
        .map_err(|e| failed(io(format!("create {}", log_file.display()))(e)))?;
    let err_log = log
        .try_clone()
        .map_err(|e| failed(io("dup the pasta log")(e)))?;
    // In the foreground (-f) of a session of its own, started by `setsid --fork`, which returns
    // at once: pasta outlives this command (the monitor's or a foreground run's) and belongs to
    // no one's output. Ready when it has written its pid file (after its set-up).
    let started = crate::sandbox::spawn_without_inherited(|| {
        Command::new("setsid")
            .args([
                "--fork",
                "pasta",
                "-f",
                "--config-net",
                "--quiet",
                "--no-map-gw",
            ])
            .arg("--dns-forward")
            .arg(RESOLVER.to_string())
            .args(["-t", &spec(Proto::Tcp), "-u", &spec(Proto::Udp)])
            .args(["-T", "none", "-U", "none"])
            .arg("--pid")
            .arg(&pid_file)
            .arg("--netns")
            .arg(&netns)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .status()
    })
    .map_err(|e| failed(NetError::Pasta(format!("cannot run setsid: {e}"))))?;
    if !started.success() {
        return Err(failed(NetError::Pasta(format!(
            "setsid --fork pasta: {started}"
        ))));
    }
    // `--quiet`: pasta writes only errors before it is ready, and then exits: once it has
    // said something, a pid file that does not follow soon will not come.
    let mut deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut said = false;
    let pid = loop {
        let pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            .filter(|p| process_start_time(*p).is_some());
        if pid.is_some() || std::time::Instant::now() > deadline {
            break pid;
        }
        if !said && fs::metadata(&log_file).is_ok_and(|m| m.len() > 0) {
            said = true;
            deadline =
                deadline.min(std::time::Instant::now() + std::time::Duration::from_millis(200));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let Some(pid) = pid else {
        let said = fs::read_to_string(&log_file).unwrap_or_default();
        let said: Vec<&str> = said.lines().filter(|l| !l.contains("syslog")).collect();
        return Err(failed(NetError::Pasta(if said.is_empty() {
            "pasta did not start (no pid file in 5 s)".to_owned()
        } else {
            said.join("; ")
        })));
    };
    let pid = Some(pid);
    entry.pid = pid.and_then(|p| Some((p, process_start_time(p)?)));
    write_entry(&journal, &entry).map_err(failed)?;
    let p = dir.join(super::publish::PUBLISHED);
    fs::write(&p, serde_json::to_vec(&published).expect("serializes"))
        .map_err(io(format!("write {}", p.display())))
        .map_err(failed)?;
    Ok(())
}

fn write_entry(path: &Path, e: &Entry) -> Result<(), NetError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec(e).expect("serializes"))
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(io(format!("write {}", path.display())))
}

/// Ends the container's pasta and drops its namespace; `keep`: the container stays (a stop),
/// and [`rewire`] starts them again with its requests.
pub fn release(store: &Store, id: &str, keep: bool) {
    let journal = store.journal_entry("pasta", id);
    let Some(e) = fs::read(&journal)
        .ok()
        .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
    else {
        return;
    };
    end(&e);
    let _ = fs::remove_file(&journal);
    if let Some(dir) = e.netns.parent() {
        let _ = fs::remove_file(dir.join(super::publish::PUBLISHED));
        if !keep {
            let _ = fs::remove_file(dir.join(MARKER));
        }
    }
}

/// Ends pasta (and waits until it is gone, so its ports are free for the next start: up to a
/// second, then SIGKILL) and drops the namespace.
fn end(e: &Entry) {
    if let Some((pid, start)) = e.pid {
        let alive = || process_start_time(pid) == Some(start);
        let signal = |s| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), s);
        if alive() && signal(nix::sys::signal::Signal::SIGTERM).is_ok() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while alive() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            if alive() {
                let _ = signal(nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
    unmount(&e.netns);
}

/// A stopped container on pasta's network that starts again gets a namespace and pasta anew
/// (nothing if it is not on it, or still has them).
pub fn rewire(store: &Store, id: &str, dir: &Path) -> Result<(), NetError> {
    if !attached(dir) || store.journal_entry("pasta", id).exists() {
        return Ok(());
    }
    let publish: Vec<Publish> = fs::read(dir.join(MARKER))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    start(store, id, dir, &publish, false)
}

fn unmount(netns: &Path) {
    let _ = nix::mount::umount2(netns, nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_file(netns);
}

/// `gc`: the pasta of a container that is gone (or the rootless network namespace's, when no
/// container uses it). `Ok(true)` when the entry may go.
pub fn clean_journal_entry(store: &Store, entry: &[u8]) -> Result<bool, NetError> {
    let Ok(e) = serde_json::from_slice::<Entry>(entry) else {
        return Ok(true);
    };
    let needed = match e.shared {
        true => super::endpoints_in_use(store),
        false => store.container_dir(&e.container).exists(),
    };
    if needed {
        return Ok(false);
    }
    end(&e);
    Ok(true)
}
