//! `boxr cp`: files between a container and the host, with `docker cp`'s rules.
//!
//! The copy runs in the fs helper (`boxr __fs`), every path resolved inside its root with
//! `openat2(RESOLVE_IN_ROOT)` and every entry created below a directory descriptor, so neither
//! a symlink in the container nor one swapped in while the copy runs can lead it outside the
//! container's root or the destination (CVE-2018-15664 was a `docker cp` that resolved paths by
//! name). A running container is reached through its init's `/proc/PID/root`, which shows its
//! mounts (volumes, bind mounts); a stopped one's overlay is mounted in the helper's private
//! mount namespace (its volumes are not part of it then).

use std::path::PathBuf;

use super::state::{self, Status};
use super::{ContainerError, invalid};
use crate::sandbox::{self, IdMap, RootfsSpec, SandboxSpec};
use crate::store::Store;

/// One side of a copy: a host path, or a path in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Host(PathBuf),
    Container { container: String, path: String },
}

impl Location {
    /// `CONTAINER:PATH` names a container's path, as in docker: a part before the first `:`
    /// that is not a path (no `/`, not starting with `.`); anything else is a host path.
    pub fn parse(arg: &str) -> Location {
        match arg.split_once(':') {
            Some((c, p)) if !c.is_empty() && !c.contains('/') && !c.starts_with('.') => {
                Location::Container {
                    container: c.to_owned(),
                    path: if p.is_empty() {
                        "/".to_owned()
                    } else {
                        p.to_owned()
                    },
                }
            }
            _ => Location::Host(PathBuf::from(arg)),
        }
    }
}

/// `boxr cp SRC DEST`: one of them in a container. `archive` (`-a`) keeps the owners of what
/// is copied; otherwise what goes into the container belongs to its root, and what comes out
/// to the user running boxr, without set-id bits. Device nodes never come out to the host.
/// Returns the warnings (what was not copied).
pub fn cp(
    store: &Store,
    src: &Location,
    dest: &Location,
    archive: bool,
) -> Result<Vec<String>, ContainerError> {
    let (container, into_container, host, path) = match (src, dest) {
        (Location::Host(h), Location::Container { container, path }) => (container, true, h, path),
        (Location::Container { container, path }, Location::Host(h)) => (container, false, h, path),
        _ => {
            return Err(invalid(
                "one of SRC and DEST must be CONTAINER:PATH and the other a host path",
                Some("boxr cp CONTAINER:/path ./here, or boxr cp ./here CONTAINER:/path"),
            ));
        }
    };
    if host.as_os_str() == "-" {
        return Err(invalid(
            "cp: `-` (a tar stream on stdin or stdout) is not supported",
            None,
        ));
    }
    let info = state::find(store, container)?;
    let spec: SandboxSpec = std::fs::read(info.dir.join("spec.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid(format!("cannot read the spec of {container}"), None))?;
    let host =
        std::path::absolute(host).map_err(|e| invalid(format!("{}: {e}", host.display()), None))?;
    let host = host.to_string_lossy().into_owned();
    let path = if path.starts_with('/') {
        path.clone()
    } else {
        // Relative to the container's working directory, as docker has it.
        format!("{}/{path}", spec.process.cwd.trim_end_matches('/'))
    };
    let owner = if archive {
        if spec.userns.is_some() {
            return Err(invalid(
                "cp -a: not supported for a container with a user namespace",
                None,
            ));
        }
        None
    } else if into_container {
        // The container's root, as the host sees it.
        Some(match &spec.userns {
            Some(u) => (
                IdMap::host_of(&u.uid_map, 0).unwrap_or(0),
                IdMap::host_of(&u.gid_map, 0).unwrap_or(0),
            ),
            None => (0, 0),
        })
    } else {
        Some((
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        ))
    };
    let running = match state::status(&info) {
        Status::Running { pid, .. } => Some((
            pid,
            sandbox::process_start_time(pid)
                .ok_or_else(|| invalid(format!("container {container} is not running"), None))?,
        )),
        _ => None,
    };
    let scratch = if running.is_none() {
        Some(store.tmp_dir("cp-")?)
    } else {
        None
    };
    let rootfs = scratch.as_ref().map(|target| RootfsSpec {
        lowers: spec.rootfs.lowers.clone(),
        upper: spec.rootfs.upper.clone(),
        work: spec.rootfs.work.clone(),
        target: target.clone(),
        read_only: false,
        volatile: false,
        classic_mount: RootfsSpec::classic_requested(),
        userxattr: crate::rootless::active(),
    });
    let (src, dest) = if into_container {
        (host, path)
    } else {
        (path, host)
    };
    let op = sandbox::fs_helper::FsSpec {
        rootfs,
        source: None,
        op: sandbox::fs_helper::FsOp::Cp {
            running,
            src,
            dest,
            into_container,
            owner,
        },
    };
    let out = sandbox::spawn_fs_helper(
        &op,
        std::process::Stdio::null(),
        std::process::Stdio::piped(),
    )
    .map_err(ContainerError::from)
    .and_then(|c| {
        c.wait_with_output()
            .map_err(|e| invalid(format!("cp: {e}"), None))
    });
    if let Some(s) = &scratch {
        let _ = crate::store::remove_dir_tree(s);
    }
    let out = out?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let message = stderr.trim().trim_start_matches("boxr: ");
        return Err(invalid(format!("cp: {message}"), None));
    }
    Ok(stderr
        .lines()
        .map(|l| format!("cp: {}", l.trim_start_matches("boxr: ")))
        .collect())
}
