//! Container state on disk, readable by any boxr process: `containers/<id>/` holds
//! `config.json` (what was run), `pid` (the init's host pid and its start time, written by the
//! helper), `state.json` (written atomically by the monitor, or at exit by the helper of a
//! foreground container) and `container.log` (a detached container's output, JSON lines);
//! `names/<name>` holds the id of a named container.
//!
//! The status is derived, not trusted: a container whose state says running but whose init
//! (the recorded pid with its start time) is gone is reported as exited.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{ContainerError, invalid, io_err};
use crate::store::Store;

/// What `boxr ps` and friends know of a container.
#[derive(Debug, Clone)]
pub struct Info {
    pub id: String,
    pub name: Option<String>,
    pub image: String,
    pub args: Vec<String>,
    pub created: String,
    pub dir: PathBuf,
    /// The cgroup's path below each hierarchy's root (`config.json`'s `CgroupPath`).
    pub cgroup: Option<String>,
    /// The signal `stop` sends first (`--stop-signal`, else the image's `StopSignal`), as a
    /// number; SIGTERM when neither says.
    pub stop_signal: Option<i32>,
    /// Seconds `stop` waits by default before SIGKILL (`--stop-timeout`; else 10).
    pub stop_timeout: Option<u64>,
    /// The id of the image it was created from (`sha256:...`).
    pub image_id: Option<String>,
    /// Its labels: the image's, then `--label-file` and `--label`.
    pub labels: std::collections::BTreeMap<String, String>,
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Prepared; its process has not started (or boxr died before it did).
    Created,
    Running {
        pid: i32,
        started_at: Option<String>,
        /// The health checks' status (`starting`, `healthy`, `unhealthy`), if it has them.
        health: Option<String>,
        /// A detached container whose monitor is gone (killed): it runs, but nothing records
        /// its output, health or end any more.
        monitor_lost: bool,
    },
    Exited {
        code: Option<i32>,
        oom: bool,
        finished_at: Option<String>,
    },
    /// Ended, and its restart policy will start it again after a backoff.
    Restarting { code: Option<i32> },
}

pub(super) fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

/// The name of a container's state file in its directory.
pub const STATE: &str = "state.json";
/// The container's place on its network (a [`crate::net::Endpoint`]), if it is on one.
pub const NETWORK: &str = "network.json";
/// What a detached container's sandbox records of its end for the monitor (the monitor then
/// writes the final [`STATE`]).
pub const EXIT: &str = "exit.json";
/// The exit code a detached container's init writes as it ends (text): what is left to know
/// of the end when the monitor that waited for the init was killed.
pub const INIT_EXIT: &str = "init-exit";

/// A container's `state.json` (and, with only `ExitCode` and `OOMKilled`, `exit.json`): the one
/// type every writer (the monitor, the end of a foreground sandbox, `recover`) and every reader
/// uses, in Docker's key names.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateFile {
    /// `created`, `running`, `restarting` or `exited`; absent in an `exit.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The init's host pid while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    /// The monitor that holds the container, by pid and start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_start: Option<u64>,
    #[serde(default)]
    pub restart_count: u64,
    /// The health checks' state, as Docker shows `State.Health` (see `health::Checker::json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Value>,
}

impl StateFile {
    /// `dir/name` (`state.json` or `exit.json`), if it exists and parses.
    pub fn read(dir: &Path, name: &str) -> Option<StateFile> {
        serde_json::from_slice(&fs::read(dir.join(name)).ok()?).ok()
    }

    /// Writes it as `dir/name`, atomically (see [`write_atomic`]).
    pub fn write(&self, dir: &Path, name: &str) -> std::io::Result<()> {
        write_atomic(dir, name, self)
    }

    /// Whether its end is recorded: `exited`, or an `exit.json` (no status, an exit code).
    pub fn has_ended(&self) -> bool {
        match self.status.as_deref() {
            Some(s) => s == "exited",
            None => self.exit_code.is_some(),
        }
    }

    /// Whether the monitor it names (by pid and start time) still runs.
    pub fn monitor_alive(&self) -> bool {
        let (Some(pid), Some(start)) = (self.monitor_pid, self.monitor_start) else {
            return false;
        };
        crate::sandbox::process_start_time(pid) == Some(start)
    }
}

/// Writes `value` as `dir/name` atomically: a temporary file named for this process, synced,
/// renamed over it, then the directory synced. (The monitor uses it too: no temp-file crate
/// in its small binary.)
pub fn write_atomic<T: serde::Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    fs::File::open(dir)?.sync_all()
}

fn info(dir: &Path) -> Option<Info> {
    let c = read_json(&dir.join("config.json"))?;
    Some(Info {
        id: c["Id"].as_str()?.to_owned(),
        name: c["Name"].as_str().map(str::to_owned),
        image: c["Image"].as_str().unwrap_or_default().to_owned(),
        args: c["Args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        created: c["Created"].as_str().unwrap_or_default().to_owned(),
        dir: dir.to_owned(),
        cgroup: c["CgroupPath"].as_str().map(str::to_owned),
        stop_signal: c["StopSignalNumber"].as_i64().map(|n| n as i32),
        stop_timeout: c["StopTimeout"].as_u64(),
        image_id: c["ImageId"].as_str().map(str::to_owned),
        labels: serde_json::from_value(c["Labels"].clone()).unwrap_or_default(),
    })
}

/// Every container, newest first.
pub fn list(store: &Store) -> Vec<Info> {
    let Ok(rd) = fs::read_dir(store.containers_dir()) else {
        return Vec::new();
    };
    let mut all: Vec<Info> = rd.flatten().filter_map(|e| info(&e.path())).collect();
    all.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    all
}

/// A container by name, full id or unique id prefix.
pub fn find(store: &Store, query: &str) -> Result<Info, ContainerError> {
    if let Ok(id) = fs::read_to_string(store.name_file(query))
        && let Some(i) = info(&store.container_dir(id.trim()))
    {
        return Ok(i);
    }
    let matches: Vec<Info> = list(store)
        .into_iter()
        .filter(|i| i.id.starts_with(query) || i.name.as_deref() == Some(query))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one")),
        0 => Err(ContainerError::NotFound(query.to_owned())),
        n => Err(invalid(
            format!("`{query}` matches {n} containers: give more of the id"),
            None,
        )),
    }
}

/// The init's pid and start time the helper recorded in `dir/pid`, whether or not it runs.
pub fn recorded_pid(dir: &Path) -> Option<(i32, u64)> {
    let text = fs::read_to_string(dir.join("pid")).ok()?;
    let mut it = text.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The container's init, if it is still the same process that started.
pub fn live_pid(dir: &Path) -> Option<i32> {
    let (pid, start) = recorded_pid(dir)?;
    (crate::sandbox::process_start_time(pid) == Some(start)).then_some(pid)
}

/// The container's status, checked against the live processes.
pub fn status(info: &Info) -> Status {
    let state = StateFile::read(&info.dir, STATE);
    if let Some(s) = &state
        && s.has_ended()
    {
        return Status::Exited {
            code: s.exit_code,
            oom: s.oom_killed,
            finished_at: s.finished_at.clone(),
        };
    }
    match (live_pid(&info.dir), &state) {
        (None, Some(s)) if s.status.as_deref() == Some("restarting") && s.monitor_alive() => {
            Status::Restarting { code: s.exit_code }
        }
        (Some(pid), _) => Status::Running {
            pid,
            monitor_lost: state
                .as_ref()
                .is_some_and(|s| s.monitor_pid.is_some() && !s.monitor_alive()),
            started_at: state.as_ref().and_then(|s| s.started_at.clone()),
            health: state.as_ref().and_then(|s| {
                s.health
                    .as_ref()
                    .and_then(|h| h["Status"].as_str().map(str::to_owned))
            }),
        },
        // It was started, and its init is gone: whatever the files say, it has exited (the
        // monitor was killed, or the machine rebooted).
        (None, _) if info.dir.join("pid").exists() => recover(info, state.as_ref()),
        (None, _) => Status::Created,
    }
}

/// A container that was started and whose processes are all gone, monitor included (killed,
/// or a reboot): its end is recorded for good, with the exit status its helper or monitor saw
/// if any, else the code its init wrote as it ended (else 255, as Docker's for an end nobody saw), so every later command agrees.
fn recover(info: &Info, state: Option<&StateFile>) -> Status {
    let exit = StateFile::read(&info.dir, EXIT);
    let mut code = exit
        .as_ref()
        .and_then(|e| e.exit_code)
        .or_else(|| state.and_then(|s| s.exit_code))
        .or_else(|| {
            fs::read_to_string(info.dir.join(INIT_EXIT))
                .ok()
                .and_then(|t| t.trim().parse().ok())
        });
    let oom = exit.as_ref().is_some_and(|e| e.oom_killed);
    // Not while a monitor may still record the end itself.
    if let Some(s) = state
        && !s.monitor_alive()
        && s.status.as_deref() != Some("exited")
    {
        let c = *code.get_or_insert(255);
        let s = StateFile {
            status: Some("exited".into()),
            exit_code: Some(c),
            oom_killed: oom,
            ..s.clone()
        };
        let _ = s.write(&info.dir, STATE);
        let _ = fs::remove_file(info.dir.join(super::control::SOCKET));
        // Its monitor would have given back its network place (veths, leases, published
        // ports) at the end; nobody else will until `rm`.
        if s.monitor_pid.is_some()
            && let Some(root) = crate::store::root_of_container_dir(&info.dir)
        {
            super::release::release(root, &info.id, true, None);
        }
    }
    // Only where no monitor will finish the end itself (it checks the cgroup for an OOM kill
    // first). A foreground container's helper records its end without a state file before
    // it: one that was killed cannot be told from one finishing, and `gc` removes its cgroup.
    if state.is_some_and(|s| s.monitor_pid.is_some() && !s.monitor_alive()) {
        clean_cgroup(info);
    }
    Status::Exited {
        code,
        oom,
        finished_at: None,
    }
}

/// Removes the cgroup of a container whose processes are all gone and whose end nobody
/// finished (its monitor was killed), with its journal entry: the next
/// command cleans up (ARCHITECTURE decision 12). A cgroup something is still in stays, for a
/// later command or `gc`. One `stat` when there is nothing to do.
fn clean_cgroup(info: &Info) {
    let Some(root) = crate::store::root_of_container_dir(&info.dir) else {
        return;
    };
    let entry = crate::store::journal_entry_in(root, "cgroup", &info.id);
    if let Ok(bytes) = fs::read(&entry)
        && let Ok(true) = crate::sandbox::cgroup::clean_journal_entry(&bytes)
    {
        let _ = fs::remove_file(&entry);
    }
}

/// Marks a container as stopped by the user, so its restart policy leaves it down.
pub fn mark_stopped(info: &Info) {
    let _ = fs::write(info.dir.join("stopped"), "");
}

/// Claims `name` for the container `id` (names are unique: the first to create the file wins).
pub fn claim_name(store: &Store, name: &str, id: &str) -> Result<(), ContainerError> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(invalid(
            format!("invalid container name `{name}`"),
            Some("use letters, digits, `_`, `.` and `-`, starting with a letter or digit"),
        ));
    }
    let dir = store.names_dir();
    fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
    let p = dir.join(name);
    let claim = || fs::File::options().write(true).create_new(true).open(&p);
    let mut claimed = claim();
    if claimed
        .as_ref()
        .is_err_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists)
    {
        // A name left by a container that is gone (a crash, a `--rm` container renamed while
        // it ran) is free again.
        let other = fs::read_to_string(&p).unwrap_or_default();
        let other = other.trim();
        if other.is_empty() || !store.container_dir(other).exists() {
            let _ = fs::remove_file(&p);
            claimed = claim();
        }
    }
    match claimed {
        Ok(mut f) => f.write_all(id.as_bytes()).map_err(io_err("write", &p)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let other = fs::read_to_string(&p).unwrap_or_default();
            Err(invalid(
                format!(
                    "the name `{name}` is already in use by container {}",
                    &other[..other.len().min(12)]
                ),
                Some("remove that container (`boxr rm`) or choose another name"),
            ))
        }
        Err(e) => Err(io_err("create", &p)(e)),
    }
}

/// Frees a container's name, if it has one.
pub fn release_name(store: &Store, info: &Info) {
    if let Some(n) = &info.name {
        let p = store.name_file(n);
        if fs::read_to_string(&p).is_ok_and(|id| id.trim() == info.id) {
            let _ = fs::remove_file(p);
        }
    }
}

/// The ports the container holds published now: none unless it runs (or waits to restart,
/// its monitor holding them meanwhile).
pub fn ports(info: &Info, status: &Status) -> Vec<crate::net::ports::Published> {
    match status {
        Status::Running { .. } | Status::Restarting { .. } => {
            crate::net::publish::published(&info.dir)
        }
        _ => Vec::new(),
    }
}

/// The container's cgroup (from its spec), if it has one.
pub fn cgroup(info: &Info) -> Option<crate::sandbox::cgroup::Cgroup> {
    // The mount table is read once per process: `ps` asks this for every running container.
    static LAYOUT: std::sync::OnceLock<Option<crate::sandbox::cgroup::Layout>> =
        std::sync::OnceLock::new();
    let layout = LAYOUT
        .get_or_init(|| crate::sandbox::cgroup::Layout::detect().ok())
        .as_ref()?;
    let rel = match &info.cgroup {
        Some(rel) => rel.clone(),
        None => read_json(&info.dir.join("spec.json"))?["cgroup"]["path"]
            .as_str()?
            .to_owned(),
    };
    Some(crate::sandbox::cgroup::Cgroup::existing(layout, &rel))
}

/// `ps -s`: bytes of the container's own files (its upper dir), and those plus its image's.
pub fn size(store: &Store, info: &Info) -> (u64, u64) {
    let upper = info.dir.join("upper");
    let own: u64 = walkdir::WalkDir::new(&upper)
        .min_depth(1)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file() || m.file_type().is_symlink())
        .map(|m| m.len())
        .sum();
    let image = info
        .image_id
        .as_ref()
        .and_then(|id| store.resolve(id).ok())
        .map_or(0, |img| store.image_size(&img));
    (own, own + image)
}

/// The container's `state.json`, if it has one.
pub fn read_state(info: &Info) -> Option<StateFile> {
    StateFile::read(&info.dir, STATE)
}

/// Whether a running container is paused.
pub fn paused(info: &Info) -> bool {
    cgroup(info).is_some_and(|c| c.is_frozen())
}

/// `boxr pause` (`frozen`) and `boxr unpause`.
pub fn set_paused(info: &Info, frozen: bool) -> Result<(), ContainerError> {
    if !matches!(status(info), Status::Running { .. }) {
        return Err(invalid(
            format!("container {} is not running", &info.id[..12]),
            None,
        ));
    }
    if paused(info) == frozen {
        return Err(invalid(
            format!(
                "container {} is {}paused",
                &info.id[..12],
                if frozen { "already " } else { "not " }
            ),
            None,
        ));
    }
    let cg = cgroup(info).ok_or_else(|| invalid("the container has no cgroup", None))?;
    cg.set_frozen(frozen)?;
    if let Some(root) = crate::store::root_of_container_dir(&info.dir) {
        let action = if frozen { "pause" } else { "unpause" };
        super::events::record(
            root,
            action,
            &info.id,
            serde_json::json!({"name": info.name}),
        );
    }
    Ok(())
}
