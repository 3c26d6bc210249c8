//! Containers: an image and run options → a `SandboxSpec`, by Docker's rules (entrypoint and
//! cmd, environment, user, working directory, hostname), in a directory of its own under
//! `containers/<id>/` (upper and work dirs, /etc files, config).
//!
//! Files: `mod.rs` options → spec, create, run, exec; `state` the container's files on disk
//! (`state.json` as one [`state::StateFile`]), names, status; `record` what its sandbox records
//! as it starts and ends (events, exit status, `--rm`); `monitor` the per-container monitor of
//! a detached container; `lifecycle` start, stop, restart, attach, rm, update, rename;
//! `health` health checks; `events` the event log; `logs`, `stats`, `top`, `filter` (`ps -f`),
//! `commit` (and export, diff), `cp`, `etc` (/etc/hosts, resolv.conf, hostname).

pub mod commit;
pub mod cp;
mod etc;
pub mod events;
pub mod filter;
pub mod health;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
pub mod record;
pub mod state;
pub mod stats;
pub mod top;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

use crate::sandbox::{
    self, EtcFile, IdMap, MountSpec, NetworkMode, NsShare, ProcessSpec, RootfsSpec, SandboxSpec,
    UserNs,
};
use crate::store::{Store, StoreError};

/// `--network`: a namespace of the sandbox's kinds, or another container's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    Mode(NetworkMode),
    /// A bridge network of boxr's (`bridge`, or one made by `boxr network create`): a network
    /// namespace of the container's own, wired to the network's bridge before it starts.
    Named(String),
    /// `container:NAME`: the network namespace of a running container, with its hostname,
    /// /etc/hosts and /etc/resolv.conf, as Docker shares them.
    Container(String),
}

/// `boxr run` options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub image: String,
    /// Replaces the image's cmd (the entrypoint stays).
    pub command: Vec<String>,
    /// Replaces the image's entrypoint (and clears its cmd).
    pub entrypoint: Option<String>,
    /// `KEY=VALUE`, or `KEY` to take the value from boxr's environment.
    pub env: Vec<String>,
    pub env_files: Vec<PathBuf>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub network: Option<Network>,
    /// `--ip`: a fixed address on the (bridge) network.
    pub ip: Option<String>,
    pub init: bool,
    pub remove: bool,
    pub read_only: bool,
    /// `SRC:DST[:ro]` bind mounts (SRC an absolute host path).
    pub volumes: Vec<String>,
    /// `PATH[:OPTIONS]` tmpfs mounts.
    pub tmpfs: Vec<String>,
    /// Keep stdin attached (`-i`).
    pub interactive: bool,
    /// `NAME=SOFT[:HARD]` resource limits.
    pub ulimits: Vec<String>,
    /// Allocate a pseudo-terminal (`-t`).
    pub tty: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    /// Docker's `--security-opt` values.
    pub security_opt: Vec<String>,
    /// `--memory`, `--cpus`, ... as given.
    pub limits: LimitOptions,
    /// `-d`: run under a monitor and return.
    pub detach: bool,
    /// `--name`: unique among containers.
    pub name: Option<String>,
    /// `--restart` (detached containers only).
    pub restart: Option<String>,
    /// `--log-opt max-size=SIZE`, `--log-opt max-file=N` (detached containers only).
    pub log_opts: Vec<String>,
    /// `--userns auto|host`.
    pub userns: Option<String>,
    /// `--uidmap CONTAINER:HOST:SIZE` (a user namespace with these maps).
    pub uidmaps: Vec<String>,
    /// `--gidmap CONTAINER:HOST:SIZE` (default: the uid maps).
    pub gidmaps: Vec<String>,
    /// `--hook PATH`: programs run once the namespaces exist, before the command starts.
    pub hooks: Vec<String>,
    /// `--add-host NAME:IP`: more lines of /etc/hosts.
    pub add_hosts: Vec<String>,
    /// `--dns`: /etc/resolv.conf's nameservers instead of the host's.
    pub dns: Vec<String>,
    /// `--dns-search`: its search domains instead of the host's (`.`: none).
    pub dns_search: Vec<String>,
    /// `--dns-option`: its options instead of the host's.
    pub dns_options: Vec<String>,
    /// `--shm-size`: the size of /dev/shm (default 64m).
    pub shm_size: Option<String>,
    /// `--sysctl NAME=VALUE`: parameters of the container's own namespaces.
    pub sysctls: Vec<String>,
    /// `--group-add GROUP`: more supplementary groups for the command.
    pub group_add: Vec<String>,
    /// `--stop-signal`: what `stop` sends first (default: the image's, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`: seconds `stop` waits by default before SIGKILL.
    pub stop_timeout: Option<u64>,
    /// `--health-*`, `--no-healthcheck` (detached containers: their monitor runs the checks).
    pub health: health::HealthOptions,
    /// `--oom-score-adj N` (-1000 to 1000).
    pub oom_score_adj: Option<i32>,
    /// `--cidfile FILE`: where the new container's id is written (the file must not exist).
    pub cidfile: Option<PathBuf>,
    /// `--mount type=...,source=...,target=...`: docker's other syntax for `-v` and `--tmpfs`.
    pub mounts: Vec<String>,
    /// `--label KEY=VALUE` (or `KEY`: an empty value), after the image's labels.
    pub labels: Vec<String>,
    /// `--label-file FILE`: `KEY=VALUE` lines, before `--label`.
    pub label_files: Vec<PathBuf>,
    /// `--device HOST[:CONTAINER][:PERMS]`: host devices the container gets.
    pub devices: Vec<String>,
    /// `--pid host|container:NAME`, `--ipc host|container:NAME|private|shareable`,
    /// `--uts host` (default: namespaces of its own).
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
}

/// The first range `/etc/subuid` (or `/etc/subgid`) gives `root`, else 100000 and 65536 ids.
fn subordinate_range(file: &str) -> IdMap {
    let found = fs::read_to_string(file).ok().and_then(|text| {
        text.lines().find_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != "root" && who != "0" {
                return None;
            }
            Some(IdMap {
                container: 0,
                host: start.parse().ok()?,
                size: count.parse::<u32>().ok()?.min(65536),
            })
        })
    });
    found.unwrap_or(IdMap {
        container: 0,
        host: 100_000,
        size: 65536,
    })
}

/// The user namespace `--userns`, `--uidmap` and `--gidmap` ask for, if any.
fn user_namespace(opts: &RunOptions) -> Result<Option<UserNs>, ContainerError> {
    let parse = |maps: &[String]| -> Result<Vec<IdMap>, ContainerError> {
        maps.iter()
            .map(|m| IdMap::parse(m).map_err(|e| invalid(e, None)))
            .collect()
    };
    let (mut uid_map, mut gid_map) = (parse(&opts.uidmaps)?, parse(&opts.gidmaps)?);
    match opts.userns.as_deref() {
        None | Some("host") | Some("") if uid_map.is_empty() && gid_map.is_empty() => {
            return Ok(None);
        }
        None => {}
        Some("auto") if uid_map.is_empty() && gid_map.is_empty() => {
            uid_map.push(subordinate_range("/etc/subuid"));
            gid_map.push(subordinate_range("/etc/subgid"));
        }
        Some(other) => {
            return Err(invalid(
                format!("--userns {other}: not a user namespace mode here"),
                Some(
                    "--userns auto (a range of /etc/subuid's root, else 100000:65536), or --uidmap/--gidmap CONTAINER:HOST:SIZE without --userns",
                ),
            ));
        }
    }
    if uid_map.is_empty() {
        uid_map = gid_map.clone();
    }
    if gid_map.is_empty() {
        gid_map = uid_map.clone();
    }
    if IdMap::host_of(&uid_map, 0).is_none() || IdMap::host_of(&gid_map, 0).is_none() {
        return Err(invalid(
            "the id maps must map the container's root (id 0)",
            Some("e.g. --uidmap 0:100000:65536"),
        ));
    }
    Ok(Some(UserNs { uid_map, gid_map }))
}

/// The resource limit flags of `boxr run`, as given (checked by [`limits`]).
#[derive(Debug, Clone, Default)]
pub struct LimitOptions {
    pub memory: Option<String>,
    pub memory_swap: Option<String>,
    pub memory_reservation: Option<String>,
    pub cpus: Option<f64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    /// `DEVICE:RATE`, e.g. `/dev/sda:1mb`.
    pub device_read_bps: Vec<String>,
    pub device_write_bps: Vec<String>,
    /// `PAGESIZE=LIMIT`, e.g. `2MB=64MiB`.
    pub hugetlb: Vec<String>,
}

/// Checks the limit flags and makes the cgroup limits (Docker's devices allowlist unless
/// privileged).
pub fn limits(
    o: &LimitOptions,
    privileged: bool,
) -> Result<sandbox::cgroup::Limits, ContainerError> {
    use crate::values::parse_size;
    let size = |flag: &str, v: &Option<String>| -> Result<Option<u64>, ContainerError> {
        v.as_ref()
            .map(|t| {
                parse_size(t)
                    .map_err(|b| invalid(format!("{flag} {t}: {}", b.reason), b.help.as_deref()))
            })
            .transpose()
    };
    let memory = size("--memory", &o.memory)?;
    if memory.is_some_and(|m| m < 6 << 20) {
        return Err(invalid(
            "--memory: the minimum is 6 MiB (as Docker's)",
            None,
        ));
    }
    let memory_swap = match o.memory_swap.as_deref() {
        None => None,
        Some("-1") => Some(-1),
        Some(t) => {
            let s = parse_size(t).map_err(|b| {
                invalid(
                    format!("--memory-swap {t}: {}", b.reason),
                    b.help.as_deref(),
                )
            })?;
            let Some(m) = memory else {
                return Err(invalid(
                    "--memory-swap needs --memory (it is memory plus swap)",
                    None,
                ));
            };
            if s < m {
                return Err(invalid(
                    format!("--memory-swap {t} is less than --memory: it is memory plus swap"),
                    None,
                ));
            }
            Some(s as i64)
        }
    };
    if let Some(c) = o.cpus {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if !(c > 0.0 && c <= n) {
            return Err(invalid(
                format!("--cpus {c}: give a number above 0 and at most the {n} CPUs here"),
                None,
            ));
        }
    }
    if let Some(s) = o.cpu_shares
        && !(2..=262_144).contains(&s)
    {
        return Err(invalid(
            format!("--cpu-shares {s}: the range is 2 to 262144"),
            None,
        ));
    }
    if let Some(w) = o.blkio_weight
        && !(10..=1000).contains(&w)
    {
        return Err(invalid(
            format!("--blkio-weight {w}: the range is 10 to 1000"),
            None,
        ));
    }
    for (flag, v) in [
        ("--cpuset-cpus", &o.cpuset_cpus),
        ("--cpuset-mems", &o.cpuset_mems),
    ] {
        if let Some(v) = v
            && (v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == ',' || c == '-'))
        {
            return Err(invalid(
                format!("{flag} {v}: write a list like 0-3 or 0,2"),
                None,
            ));
        }
    }
    let bps = |flag: &str, list: &[String]| -> Result<Vec<(u32, u32, u64)>, ContainerError> {
        list.iter()
            .map(|spec| {
                let (dev, rate) = spec.rsplit_once(':').ok_or_else(|| {
                    invalid(
                        format!("{flag} {spec}: write DEVICE:RATE, e.g. /dev/sda:1mb"),
                        None,
                    )
                })?;
                let meta = fs::metadata(dev)
                    .map_err(|e| invalid(format!("{flag} {spec}: {dev}: {e}"), None))?;
                use std::os::unix::fs::{FileTypeExt, MetadataExt};
                if !meta.file_type().is_block_device() {
                    return Err(invalid(
                        format!("{flag} {spec}: {dev} is not a block device"),
                        None,
                    ));
                }
                let rate = parse_size(rate).map_err(|b| {
                    invalid(format!("{flag} {spec}: {}", b.reason), b.help.as_deref())
                })?;
                let rdev = meta.rdev();
                Ok((
                    nix::sys::stat::major(rdev) as u32,
                    nix::sys::stat::minor(rdev) as u32,
                    rate,
                ))
            })
            .collect()
    };
    let mut hugetlb = std::collections::BTreeMap::new();
    for h in &o.hugetlb {
        let (page, limit) = h.split_once('=').ok_or_else(|| {
            invalid(
                format!("--hugetlb {h}: write PAGESIZE=LIMIT, e.g. 2MB=64MiB"),
                None,
            )
        })?;
        let limit = parse_size(limit)
            .map_err(|b| invalid(format!("--hugetlb {h}: {}", b.reason), b.help.as_deref()))?;
        hugetlb.insert(page.to_owned(), limit);
    }
    Ok(sandbox::cgroup::Limits {
        memory,
        memory_swap,
        memory_reservation: size("--memory-reservation", &o.memory_reservation)?,
        cpus: o.cpus,
        cpu_shares: o.cpu_shares,
        cpuset_cpus: o.cpuset_cpus.clone(),
        cpuset_mems: o.cpuset_mems.clone(),
        pids: o.pids_limit,
        blkio_weight: o.blkio_weight,
        device_read_bps: bps("--device-read-bps", &o.device_read_bps)?,
        device_write_bps: bps("--device-write-bps", &o.device_write_bps)?,
        hugetlb,
        devices: (!privileged).then(sandbox::cgroup::default_devices),
    })
}

/// The confinement from `--cap-add`, `--cap-drop`, `--privileged` and `--security-opt`.
fn security(store: &Store, opts: &RunOptions) -> Result<sandbox::SecuritySpec, ContainerError> {
    let mut nnp = false;
    // None: Docker's default profile; Some(None): unconfined; Some(Some(json)): a profile file.
    let mut profile: Option<Option<Vec<u8>>> = None;
    for o in &opts.security_opt {
        match crate::values::parse_security_opt(o) {
            Ok(crate::values::SecurityOpt::NoNewPrivileges(v)) => nnp = v,
            Ok(crate::values::SecurityOpt::SeccompUnconfined) => profile = Some(None),
            Ok(crate::values::SecurityOpt::SeccompProfile(path)) => {
                let json = fs::read(&path).map_err(|e| {
                    invalid(format!("--security-opt {o}: cannot read {path}: {e}"), None)
                })?;
                profile = Some(Some(json));
            }
            Err(b) => {
                return Err(invalid(
                    format!("--security-opt {o}: {}", b.reason),
                    b.help.as_deref(),
                ));
            }
        }
    }
    let mut spec = sandbox::SecuritySpec::new(&opts.cap_add, &opts.cap_drop, opts.privileged, nnp)
        .map_err(|m| invalid(m, Some("names with or without CAP_, any case, or ALL")))?;
    // --privileged turns seccomp off, as in Docker.
    if !opts.privileged {
        let json = match &profile {
            None => Some(sandbox::seccomp::DEFAULT_PROFILE.as_bytes()),
            Some(Some(j)) => Some(j.as_slice()),
            Some(None) => None,
        };
        if let Some(json) = json {
            spec.seccomp = Some(
                seccomp_program(store, json, &spec.capabilities)
                    .map_err(|m| invalid(format!("seccomp: {m}"), None))?,
            );
        }
    }
    Ok(spec)
}

/// The compiled seccomp program (hex) for a profile and capability set, compiled once per
/// policy and kept in the store.
pub(crate) fn seccomp_program(
    store: &Store,
    json: &[u8],
    caps: &[String],
) -> Result<String, String> {
    sandbox::seccomp::program(json, caps, |key, make| {
        store.cached_artifact("seccomp", key, make)
    })
}

#[derive(Debug, Error, Diagnostic)]
pub enum ContainerError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
    #[error("{message}")]
    #[diagnostic(code(boxr::container::invalid))]
    Invalid {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error("cannot {action} `{}`", path.display())]
    #[diagnostic(code(boxr::container::io))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// A detached container could not start: 125 (boxr), 126 (cannot execute), 127 (not found).
    #[error("{message}")]
    #[diagnostic(code(boxr::container::start))]
    Start { code: i32, message: String },
}

impl ContainerError {
    /// The exit code of `boxr` for this error (Docker's: 125, or the command's 126 and 127).
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Start { code, .. } => *code,
            _ => 125,
        }
    }
}

fn invalid(message: impl Into<String>, help: Option<&str>) -> ContainerError {
    ContainerError::Invalid {
        message: message.into(),
        help: help.map(str::to_owned),
    }
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A new random container id (64 hex digits, as docker's).
fn new_id() -> Result<String, ContainerError> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io_err("read", Path::new("/dev/urandom")))?;
    Ok(hex::encode(b))
}

/// The process by Docker's rules: entrypoint + (command, or else cmd); `--entrypoint` also
/// clears the image's cmd.
pub fn process_args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&str>,
    command: &[String],
) -> Vec<String> {
    let (ep, cmd): (Vec<String>, Vec<String>) = match entrypoint {
        Some("") => (Vec::new(), command.to_vec()),
        Some(e) => (vec![e.to_owned()], command.to_vec()),
        None => (
            image_entrypoint.map(<[String]>::to_vec).unwrap_or_default(),
            if command.is_empty() {
                image_cmd.map(<[String]>::to_vec).unwrap_or_default()
            } else {
                command.to_vec()
            },
        ),
    };
    ep.into_iter().chain(cmd).collect()
}

/// Merges `KEY=VALUE` lists: later keys replace earlier ones, first positions kept.
fn merge_env(into: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for kv in more {
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_owned();
        match into
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = kv,
            None => into.push(kv),
        }
    }
}

/// `-e` values: `KEY=VALUE`, or `KEY` taken from boxr's own environment (skipped if unset).
fn cli_env(opts: &RunOptions) -> Result<Vec<String>, ContainerError> {
    let mut out = Vec::new();
    for f in &opts.env_files {
        let text = fs::read_to_string(f).map_err(io_err("read", f))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(line.to_owned());
        }
    }
    out.extend(opts.env.iter().cloned());
    let mut resolved = Vec::new();
    for e in out {
        if e.contains('=') {
            if e.starts_with('=') {
                return Err(invalid(format!("invalid environment variable `{e}`"), None));
            }
            resolved.push(e);
        } else if let Ok(v) = std::env::var(&e) {
            resolved.push(format!("{e}={v}"));
        }
    }
    Ok(resolved)
}

/// A `--mount` as the `-v` or `--tmpfs` value it means.
enum MountFlag {
    Volume(String),
    Tmpfs(String),
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=N][,tmpfs-mode=M]`
/// (`src`, `dst` and `destination`, `ro` are accepted too; the type defaults to `volume`).
fn mount_flag(m: &str) -> Result<MountFlag, ContainerError> {
    let bad = |why: String| {
        invalid(
            format!("--mount {m}: {why}"),
            Some("e.g. --mount type=bind,source=/host/dir,target=/dir,readonly"),
        )
    };
    let (mut kind, mut source, mut target, mut ro) = ("volume", None, None, false);
    let mut tmpfs_opts = Vec::new();
    for field in m.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = v,
            "source" | "src" => source = Some(v),
            "target" | "destination" | "dst" => target = Some(v),
            "readonly" | "ro" => {
                ro = match v {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("`{field}`: true or false"))),
                }
            }
            "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
            _ => return Err(bad(format!("unknown field `{k}`"))),
        }
    }
    let target = target.ok_or_else(|| bad("no target".into()))?;
    let suffix = if ro { ":ro" } else { "" };
    match (kind, source) {
        ("bind", Some(s)) if s.starts_with('/') => {
            Ok(MountFlag::Volume(format!("{s}:{target}{suffix}")))
        }
        ("bind", _) => Err(bad("a bind mount needs an absolute source".into())),
        ("volume", Some(s)) if !s.is_empty() => {
            Ok(MountFlag::Volume(format!("{s}:{target}{suffix}")))
        }
        ("volume", _) if !ro => Ok(MountFlag::Volume(target.to_owned())),
        ("volume", _) => Err(bad("an anonymous volume cannot be read-only".into())),
        ("tmpfs", None) => {
            if tmpfs_opts.is_empty() {
                tmpfs_opts.push("mode=1777".into());
            }
            Ok(MountFlag::Tmpfs(format!(
                "{target}:{}",
                tmpfs_opts.join(",")
            )))
        }
        ("tmpfs", Some(_)) => Err(bad("a tmpfs has no source".into())),
        (other, _) => Err(bad(format!("unknown type `{other}` (bind, volume, tmpfs)"))),
    }
}

/// The mounts of `-v` and `--tmpfs`, and the targets of `-v /path` (anonymous volumes, made
/// once every option is checked).
fn mounts(
    store: &Store,
    opts: &RunOptions,
) -> Result<(Vec<MountSpec>, Vec<String>), ContainerError> {
    let mut out = Vec::new();
    let mut anonymous = Vec::new();
    // `--mount` says the same as `-v` and `--tmpfs`, in docker's other syntax.
    let (mut volumes, mut tmpfs) = (opts.volumes.clone(), opts.tmpfs.clone());
    for m in &opts.mounts {
        match mount_flag(m)? {
            MountFlag::Volume(v) => volumes.push(v),
            MountFlag::Tmpfs(t) => tmpfs.push(t),
        }
    }
    for v in &volumes {
        let parts: Vec<&str> = v.split(':').collect();
        if let [target] = parts.as_slice()
            && target.starts_with('/')
        {
            anonymous.push((*target).to_owned());
            continue;
        }
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => {
                return Err(invalid(
                    format!("invalid volume `{v}`"),
                    Some(
                        "write -v /host/path:/container/path[:ro], -v NAME:/container/path[:ro] or -v /container/path (an anonymous volume)",
                    ),
                ));
            }
        };
        if !dst.starts_with('/') {
            return Err(invalid(
                format!("volume target `{dst}` is not an absolute path"),
                None,
            ));
        }
        let source = if src.starts_with('/') {
            fs::canonicalize(src).map_err(io_err("find the volume source", Path::new(src)))?
        } else if crate::store::valid_volume_name(src) {
            store.volume(src)?
        } else {
            return Err(invalid(
                format!("`{src}` is neither an absolute host path nor a volume name"),
                Some(
                    "host paths start with `/`; volume names are letters, digits, `_`, `.` and `-`",
                ),
            ));
        };
        out.push(MountSpec::Bind {
            source,
            target: dst.to_owned(),
            read_only: ro,
        });
    }
    for t in &tmpfs {
        let (target, options) = match t.split_once(':') {
            Some((p, o)) => (p, o.to_owned()),
            None => (t.as_str(), "mode=1777".to_owned()),
        };
        if !target.starts_with('/') {
            return Err(invalid(
                format!("tmpfs target `{target}` is not an absolute path"),
                None,
            ));
        }
        out.push(MountSpec::Tmpfs {
            target: target.to_owned(),
            options,
        });
    }
    Ok((out, anonymous))
}

/// Makes the container's anonymous volumes: one for each `-v /path`, and one for each volume
/// the image declares that no mount covers, as Docker does. Returns their names (64 hex
/// digits); they are removed with the container by `rm -v` and `--rm`.
fn anonymous_volumes(
    store: &Store,
    img: &crate::store::Image,
    mounts: &mut Vec<MountSpec>,
    targets: Vec<String>,
) -> Result<Vec<String>, ContainerError> {
    let covered = |mounts: &[MountSpec], t: &str| {
        mounts.iter().any(|m| match m {
            MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => {
                target.trim_end_matches('/') == t.trim_end_matches('/')
            }
        })
    };
    let declared = img
        .config
        .config
        .as_ref()
        .and_then(|c| c.volumes.as_ref())
        .map(|v| v.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for target in targets.into_iter().chain(declared) {
        if covered(mounts, &target) {
            continue;
        }
        let name = new_id()?;
        let source = match store.volume(&name) {
            Ok(s) => s,
            Err(e) => {
                for n in &names {
                    let _ = store.remove_volume(n);
                }
                return Err(e.into());
            }
        };
        names.push(name);
        mounts.push(MountSpec::Bind {
            source,
            target,
            read_only: false,
        });
    }
    Ok(names)
}

/// A named volume that is still empty gets what the image has at its mount point (owners and
/// modes kept), as Docker does on a volume's first use.
fn populate_new_volumes(
    store: &Store,
    mounts: &[MountSpec],
    lowers: &[PathBuf],
) -> Result<(), ContainerError> {
    let volumes = store.volumes_dir();
    for m in mounts {
        let MountSpec::Bind { source, target, .. } = m else {
            continue;
        };
        let empty = fs::read_dir(source).is_ok_and(|mut d| d.next().is_none());
        if !source.starts_with(&volumes) || !empty || lowers.is_empty() {
            continue;
        }
        let scratch = store.tmp_dir("populate-")?;
        let spec = sandbox::fs_helper::FsSpec {
            rootfs: None,
            source: Some(sandbox::fs_helper::FsSource::Layers {
                lowers: lowers.to_vec(),
                target: scratch.clone(),
            }),
            op: sandbox::fs_helper::FsOp::Populate {
                path: target.clone(),
                into: source.clone(),
            },
        };
        let out = sandbox::spawn_fs_helper(
            &spec,
            std::process::Stdio::null(),
            std::process::Stdio::piped(),
        )
        .map_err(|e| invalid(e.0, None))
        .and_then(|c| {
            c.wait_with_output()
                .map_err(|e| invalid(format!("populate the volume: {e}"), None))
        });
        let _ = crate::store::remove_dir_tree(&scratch);
        let out = out?;
        if !out.status.success() {
            return Err(invalid(
                format!(
                    "cannot fill the new volume {} from the image: {}",
                    source.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                None,
            ));
        }
    }
    Ok(())
}

/// Prepares the container's directory and its sandbox spec.
pub fn prepare(store: &Store, opts: &RunOptions) -> Result<SandboxSpec, ContainerError> {
    prepare_from(store, opts, store.resolve(&opts.image))
}

/// [`prepare`] with the image already looked up (or why it could not be).
fn prepare_from(
    store: &Store,
    opts: &RunOptions,
    img: Result<crate::store::Image, StoreError>,
) -> Result<SandboxSpec, ContainerError> {
    // Every option is checked before anything is created.
    if let Some(f) = &opts.cidfile
        && f.exists()
    {
        return Err(invalid(
            format!("--cidfile {}: the file exists", f.display()),
            Some("another container may have written it: remove it first"),
        ));
    }
    let rlimits: Vec<sandbox::Rlimit> = opts
        .ulimits
        .iter()
        .map(|u| sandbox::Rlimit::parse(u).map_err(|m| invalid(m, None)))
        .collect::<Result<_, _>>()?;
    let (mut extra_mounts, anonymous) = mounts(store, opts)?;
    user_namespace(opts)?;
    for h in &opts.hooks {
        let p = Path::new(h);
        if !p.is_absolute() || !p.is_file() {
            return Err(invalid(
                format!("--hook {h}: not an absolute path to a program"),
                None,
            ));
        }
    }
    let extra_env = cli_env(opts)?;
    let security = security(store, opts)?;
    let mut limits = limits(&opts.limits, opts.privileged)?;
    let devices = opts
        .devices
        .iter()
        .map(|d| host_device(d))
        .collect::<Result<Vec<_>, _>>()?;
    // Each one is allowed in the devices cgroup too (there is no list when privileged).
    if let Some(rules) = limits.devices.as_mut() {
        for (d, access) in &devices {
            rules.push(sandbox::cgroup::DeviceRule {
                kind: d.kind,
                major: Some(d.major as u32),
                minor: Some(d.minor as u32),
                access: access.clone(),
            });
        }
    }
    let confinement = Confinement {
        security,
        limits,
        devices: devices.into_iter().map(|(d, _)| d).collect(),
    };
    let img = img?;
    let run = img.config.config.clone().unwrap_or_default();
    let args = process_args(
        run.entrypoint.as_deref(),
        run.cmd.as_deref(),
        opts.entrypoint.as_deref(),
        &opts.command,
    );
    if args.is_empty() {
        return Err(invalid(
            format!(
                "no command specified: the image {} has no entrypoint or cmd",
                opts.image
            ),
            Some("give the command after the image: boxr run IMAGE COMMAND [ARG...]"),
        ));
    }
    let mut lowers = Vec::new();
    for d in img.config.rootfs.diff_ids.iter().rev() {
        if !store.has_layer(d) {
            return Err(invalid(
                format!("layer {d} of {} is missing from the store", opts.image),
                Some("load or import the image again"),
            ));
        }
        lowers.push(store.layer_root(d));
    }
    let anonymous = anonymous_volumes(store, &img, &mut extra_mounts, anonymous)?;
    let remove_anonymous = || {
        for n in &anonymous {
            let _ = store.remove_volume(n);
        }
    };
    if let Err(e) = populate_new_volumes(store, &extra_mounts, &lowers) {
        remove_anonymous();
        return Err(e);
    }
    let id = match new_id() {
        Ok(id) => id,
        Err(e) => {
            remove_anonymous();
            return Err(e);
        }
    };
    if let Some(n) = &opts.name {
        state::claim_name(store, n, &id)?;
    }
    let dir = store.container_dir(&id);
    let result = create(
        store,
        opts,
        &img,
        &id,
        &dir,
        args,
        lowers,
        rlimits,
        extra_mounts,
        extra_env,
        confinement,
        &anonymous,
    );
    // `--cidfile`: written once the container exists, never over another file.
    let result = result.and_then(|spec| match &opts.cidfile {
        Some(f) => fs::File::options()
            .write(true)
            .create_new(true)
            .open(f)
            .and_then(|mut file| std::io::Write::write_all(&mut file, id.as_bytes()))
            .map(|()| spec)
            .map_err(io_err("write the --cidfile", f)),
        None => Ok(spec),
    });
    if result.is_err() {
        remove_anonymous();
        let _ = crate::net::release(store, &id);
        let _ = crate::store::remove_dir_tree(&dir);
        if let Some(n) = &opts.name {
            let _ = fs::remove_file(store.name_file(n));
        }
    }
    result
}

/// `--pid`, `--ipc` or `--uts` (`flag`) as a namespace to share: one of `modes` (`host`, and
/// `private`/`shareable` for a namespace of its own), or `container:NAME` where allowed (every
/// flag but `--uts`).
fn namespace_share(
    store: &Store,
    flag: &str,
    value: Option<&str>,
    modes: &[&str],
) -> Result<NsShare, ContainerError> {
    let usage = || {
        let mut m = modes.join("|");
        if flag != "--uts" {
            m.push_str("|container:NAME");
        }
        invalid(format!("{flag} {}: use {m}", value.unwrap_or("")), None)
    };
    match value.unwrap_or("") {
        "" => Ok(NsShare::Private),
        "host" if modes.contains(&"host") => Ok(NsShare::Host),
        m @ ("private" | "shareable") if modes.contains(&m) => Ok(NsShare::Private),
        v => match v.strip_prefix("container:") {
            Some(name) if flag != "--uts" && !name.is_empty() => {
                let other = running_container(store, name, &format!("{flag} container:{name}"))?;
                Ok(NsShare::Sandbox(other.dir.join("pid")))
            }
            _ => Err(usage()),
        },
    }
}

/// A container's labels: the image's, then `--label-file` lines, then `--label` (a later value
/// of a key wins), as Docker merges them.
fn container_labels(
    opts: &RunOptions,
    image: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<std::collections::BTreeMap<String, String>, ContainerError> {
    let mut labels = image.cloned().unwrap_or_default();
    let mut given = Vec::new();
    for f in &opts.label_files {
        let text = fs::read_to_string(f)
            .map_err(|e| invalid(format!("--label-file {}: {e}", f.display()), None))?;
        given.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    given.extend(opts.labels.iter().cloned());
    for l in given {
        let (k, v) = l.split_once('=').unwrap_or((&l, ""));
        if k.is_empty() {
            return Err(invalid(format!("--label {l}: the key is empty"), None));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// What confines a new container: capabilities, seccomp and the like, its cgroup's limits, and
/// the host devices it gets.
struct Confinement {
    security: sandbox::SecuritySpec,
    limits: sandbox::cgroup::Limits,
    devices: Vec<sandbox::DeviceSpec>,
}

/// `--device HOST[:CONTAINER][:PERMS]`, as docker reads it: the node and the cgroup access
/// (`rwm` by default, a subset of it otherwise).
fn host_device(arg: &str) -> Result<(sandbox::DeviceSpec, String), ContainerError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let perms = |p: &str| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = arg.split(':').collect();
    let (host, path, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if perms(p) => (*h, *c, *p),
        _ => {
            return Err(invalid(
                format!("--device {arg}: expected HOST[:CONTAINER][:PERMS]"),
                Some("PERMS is made of r, w and m, e.g. /dev/sdc:/dev/xvdc:r"),
            ));
        }
    };
    if !host.starts_with('/') || !path.starts_with('/') {
        return Err(invalid(
            format!("--device {arg}: the paths must be absolute"),
            None,
        ));
    }
    let m =
        fs::metadata(host).map_err(|e| invalid(format!("--device {arg}: {host}: {e}"), None))?;
    let kind = if m.file_type().is_char_device() {
        'c'
    } else if m.file_type().is_block_device() {
        'b'
    } else {
        return Err(invalid(
            format!("--device {arg}: {host} is not a device node"),
            None,
        ));
    };
    let rdev = m.rdev();
    Ok((
        sandbox::DeviceSpec {
            host: host.into(),
            path: path.to_owned(),
            kind,
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        },
        access.to_owned(),
    ))
}

/// The running container whose network namespace `--network container:NAME` shares.
fn network_container(
    store: &Store,
    name: &str,
    opts: &RunOptions,
) -> Result<state::Info, ContainerError> {
    if opts.hostname.is_some() {
        return Err(invalid(
            "conflicting options: --hostname and --network container:NAME",
            Some("the container takes the hostname of the one whose network it shares"),
        ));
    }
    if !(opts.add_hosts.is_empty()
        && opts.dns.is_empty()
        && opts.dns_search.is_empty()
        && opts.dns_options.is_empty())
    {
        return Err(invalid(
            "conflicting options: --add-host or --dns and --network container:NAME",
            Some("the container shares /etc/hosts and /etc/resolv.conf with that one"),
        ));
    }
    running_container(
        store,
        name,
        &format!("cannot join the network of container {name}"),
    )
}

/// The container `name`, which must be running for `what` (said in the error).
fn running_container(store: &Store, name: &str, what: &str) -> Result<state::Info, ContainerError> {
    let other = state::find(store, name)?;
    if !matches!(state::status(&other), state::Status::Running { .. }) {
        return Err(invalid(format!("{what}: it is not running"), None));
    }
    Ok(other)
}

/// Creates the container's directory and files, and returns its spec.
#[allow(clippy::too_many_arguments)]
fn create(
    store: &Store,
    opts: &RunOptions,
    img: &crate::store::Image,
    id: &str,
    dir: &Path,
    args: Vec<String>,
    mut lowers: Vec<PathBuf>,
    rlimits: Vec<sandbox::Rlimit>,
    extra_mounts: Vec<MountSpec>,
    extra_env: Vec<String>,
    confinement: Confinement,
    anonymous: &[String],
) -> Result<SandboxSpec, ContainerError> {
    let Confinement {
        security,
        limits,
        devices,
    } = confinement;
    let run = img.config.config.clone().unwrap_or_default();
    for d in ["upper", "work", "rootfs", "empty"] {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(io_err("create", &p))?;
    }
    let userns = user_namespace(opts)?;
    if let Some(u) = &userns {
        // The rootfs's root directory is the upper dir's: the container's root owns it.
        let uid = IdMap::host_of(&u.uid_map, 0).expect("checked");
        let gid = IdMap::host_of(&u.gid_map, 0).expect("checked");
        for d in ["upper", "empty"] {
            let p = dir.join(d);
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io_err("chown", &p))?;
        }
    }
    if lowers.is_empty() {
        lowers.push(dir.join("empty"));
    }
    let uts_ns = namespace_share(store, "--uts", opts.uts.as_deref(), &["host"])?;
    if opts.userns.is_some() || !opts.uidmaps.is_empty() || !opts.gidmaps.is_empty() {
        let shared = [&opts.pid, &opts.ipc, &opts.uts]
            .into_iter()
            .flatten()
            .any(|v| !matches!(v.as_str(), "" | "private" | "shareable"));
        if shared {
            return Err(invalid(
                "--pid, --ipc and --uts cannot share a namespace with a user namespace here",
                None,
            ));
        }
    }
    let own_hosts =
        || "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned();
    let host_file = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let (network, hostname, hosts, resolv) = match &opts.network {
        Some(Network::Container(name)) => {
            let other = network_container(store, name, opts)?;
            let file = |f: &str| fs::read_to_string(other.dir.join(f)).unwrap_or_default();
            (
                NetworkMode::Sandbox(other.dir.join("pid")),
                file("hostname").trim().to_owned(),
                file("hosts"),
                file("resolv.conf"),
            )
        }
        mode => {
            let endpoint = match mode {
                Some(Network::Named(name)) => {
                    let ep =
                        crate::net::attach(store, name, id, opts.ip.as_deref(), &dir.join("netns"))
                            .map_err(|e| invalid(e.to_string(), None))?;
                    // What `inspect` shows as NetworkSettings.
                    state::write_atomic(dir, state::NETWORK, &ep)
                        .map_err(io_err("write", &dir.join(state::NETWORK)))?;
                    Some(ep)
                }
                _ if opts.ip.is_some() => {
                    return Err(invalid(
                        "--ip needs a bridge network (--network bridge or NAME)",
                        None,
                    ));
                }
                _ => None,
            };
            let mode = match (mode, &endpoint) {
                (_, Some(ep)) => NetworkMode::Join(ep.netns.clone()),
                (Some(Network::Mode(m)), None) => m.clone(),
                _ => NetworkMode::None,
            };
            let hosts = match mode {
                NetworkMode::Host => host_file("/etc/hosts"),
                _ => own_hosts(),
            };
            let hostname = match (&uts_ns, &opts.hostname) {
                (NsShare::Host, Some(_)) => {
                    return Err(invalid(
                        "conflicting options: --hostname and --uts host",
                        Some("the container has the host's hostname"),
                    ));
                }
                (NsShare::Host, None) => nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                (_, Some(h)) => h.clone(),
                (_, None) => id[..12].to_owned(),
            };
            // On a network, its own name resolves to its address (as Docker writes it).
            let hosts = match &endpoint {
                Some(ep) => format!("{hosts}{}\t{hostname}\n", ep.ip),
                None => hosts,
            };
            let hosts =
                hosts + &etc::host_entries(&opts.add_hosts).map_err(|m| invalid(m, None))?;
            // A loopback resolver of the host is not reachable from a network namespace of the
            // container's own: Docker leaves it out too.
            let host_resolv = match &endpoint {
                None => host_file("/etc/resolv.conf"),
                Some(_) => host_file("/etc/resolv.conf")
                    .lines()
                    .filter(|l| {
                        let mut w = l.split_whitespace();
                        !(w.next() == Some("nameserver")
                            && w.next().is_some_and(|a| {
                                a.parse::<std::net::IpAddr>()
                                    .is_ok_and(|ip| ip.is_loopback())
                            }))
                    })
                    .map(|l| format!("{l}\n"))
                    .collect(),
            };
            let resolv =
                etc::resolv_conf(&host_resolv, &opts.dns, &opts.dns_search, &opts.dns_options)
                    .map_err(|m| invalid(m, None))?;
            (mode, hostname, hosts, resolv)
        }
    };
    let sysctls =
        etc::sysctls(&opts.sysctls, network == NetworkMode::None).map_err(|m| invalid(m, None))?;
    let shm_size = opts
        .shm_size
        .as_deref()
        .map(|t| {
            crate::values::parse_size(t)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| invalid(format!("--shm-size {t}: not a size"), Some("e.g. 256m")))
        })
        .transpose()?;
    // What `stop` and the monitor send first (real-time signals too: `SIGRTMIN+3` stops systemd).
    let signal = |s: &str| crate::values::parse_signal(s).map_err(|b| b.reason);
    let stop_signal = match &opts.stop_signal {
        Some(s) => Some(signal(s).map_err(|m| invalid(format!("--stop-signal {s}: {m}"), None))?),
        // An image's signal that cannot be used is ignored: SIGTERM then.
        None => run.stop_signal.as_deref().and_then(|s| signal(s).ok()),
    };
    let mut etc_files = Vec::new();
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(name);
        fs::write(&p, content).map_err(io_err("write", &p))?;
        etc_files.push(EtcFile {
            source: p,
            target: format!("/etc/{name}"),
        });
    }
    let mut env = vec![format!("HOSTNAME={hostname}")];
    if opts.tty {
        env.push("TERM=xterm".to_owned());
    }
    merge_env(&mut env, run.env.clone().unwrap_or_default());
    merge_env(&mut env, extra_env);
    let config = serde_json::json!({
        "Id": id,
        "Name": opts.name,
        "Detached": opts.detach,
        "Image": opts.image,
        "ImageId": img.id.to_string(),
        "Args": args,
        // Where `ps`, `stats` and `pause` find the cgroup without reading the whole spec.
        "CgroupPath": format!("boxr/{id}"),
        "AnonymousVolumes": anonymous,
        "Labels": container_labels(opts, run.labels.as_ref())?,
        "StopSignal": stop_signal.map(|s| s.to_string()),
        "StopSignalNumber": stop_signal.map(|s| s.0),
        "StopTimeout": opts.stop_timeout,
        // With nanoseconds, as Docker's: `ps` orders by it (`-n`, `-l`).
        "Created": monitor::now(),
    });
    let cfg = dir.join("config.json");
    fs::write(
        &cfg,
        serde_json::to_vec_pretty(&config).expect("serializes"),
    )
    .map_err(io_err("write", &cfg))?;
    let mut spec = SandboxSpec {
        rootfs: RootfsSpec {
            lowers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: dir.join("rootfs"),
            read_only: opts.read_only,
            volatile: false,
            classic_mount: RootfsSpec::classic_requested(),
        },
        hostname,
        network,
        etc_files,
        mounts: extra_mounts,
        process: ProcessSpec {
            args,
            env,
            cwd: opts
                .workdir
                .clone()
                .or(run.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_owned()),
            user: opts
                .user
                .clone()
                .or(run.user.clone())
                .filter(|u| !u.is_empty()),
            stdin: opts.interactive,
            tty: opts.tty,
            rlimits,
            group_add: opts.group_add.clone(),
            oom_score_adj: opts.oom_score_adj,
        },
        init: opts.init,
        security,
        owner: None,
        // A foreground container holds the store lock while it runs (gc waits); a detached one
        // cannot, and gc keeps the layers of every container instead.
        keep_fd: (!opts.detach).then(|| store.lock_fd()),
        console_fd: None,
        die_with_parent: false,
        cgroup: Some(sandbox::CgroupSpec {
            path: format!("boxr/{id}"),
            limits,
            journal: Some(store.journal_entry("cgroup", id)),
        }),
        cgroup_sync_fd: None,
        detach: false,
        report_fd: None,
        userns: userns.clone(),
        rootfs_mounted: false,
        hooks: opts
            .hooks
            .iter()
            .map(|h| sandbox::Hook {
                path: h.into(),
                args: Vec::new(),
                timeout: None,
            })
            .collect(),
        pid_file: Some(dir.join("pid")),
        shm_size,
        sysctls,
        pid_ns: namespace_share(store, "--pid", opts.pid.as_deref(), &["host"])?,
        ipc_ns: namespace_share(
            store,
            "--ipc",
            opts.ipc.as_deref(),
            &["host", "private", "shareable"],
        )?,
        uts_ns: uts_ns.clone(),
        shm_from: None,
        devices,
    };
    // The sandbox records `start` and `die` (each run, when a restart policy applies); a
    // container that stays (no --rm) keeps its exit status and OOM flag, which a detached
    // one's monitor folds into its state.
    record::Record {
        id: id.to_owned(),
        store_root: store.root().to_owned(),
        network: matches!(opts.network, Some(Network::Named(_))),
        end_file: if opts.detach {
            Some(dir.join(state::EXIT))
        } else {
            (!opts.remove).then(|| dir.join(state::STATE))
        },
        remove: if opts.remove {
            std::iter::once(dir.to_owned())
                .chain(anonymous.iter().map(|n| store.volume_dir(n)))
                .collect()
        } else {
            Vec::new()
        },
    }
    .set(&mut spec);
    // `boxr exec` starts later processes with the same confinement.
    let path = dir.join("spec.json");
    fs::write(&path, serde_json::to_vec(&spec).expect("serializes"))
        .map_err(io_err("write", &path))?;
    events::record(
        store.root(),
        "create",
        id,
        serde_json::json!({"image": opts.image, "name": opts.name}),
    );
    Ok(spec)
}

/// `boxr run` in the foreground: prepares the container and becomes its sandbox helper.
/// Returns only on failure.
pub fn run(store: &Store, opts: &RunOptions) -> ContainerError {
    let spec = match prepare(store, opts) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let err = sandbox::exec(&spec);
    // The helper never ran: `--rm` is this process's to honour.
    if let Some(dir) = record::Record::of(&spec).and_then(|r| r.remove.into_iter().next()) {
        let _ = crate::net::release(
            store,
            &dir.file_name().unwrap_or_default().to_string_lossy(),
        );
        let _ = crate::store::remove_dir_tree(&dir);
    }
    err.into()
}

/// What `boxr exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub container: String,
    pub command: Vec<String>,
    /// `KEY=VALUE` (or `KEY`: boxr's own value) added to the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub interactive: bool,
    /// `-t`: a pty of the container's own for the command.
    pub tty: bool,
}

/// `boxr exec`: becomes a process in the running container. Returns only on failure.
pub fn exec(store: &Store, opts: &ExecOptions) -> ContainerError {
    match exec_spec(store, opts) {
        Ok(spec) => sandbox::exec::exec(&spec).into(),
        Err(e) => e,
    }
}

/// `boxr exec -d`: starts the process in the running container and returns.
pub fn exec_detached(store: &Store, opts: &ExecOptions) -> Result<(), ContainerError> {
    if opts.interactive || opts.tty {
        return Err(invalid(
            "exec -d does not go with -i or -t: nothing stays to relay them",
            None,
        ));
    }
    let spec = exec_spec(store, opts)?;
    sandbox::exec::spawn_detached(&spec).map_err(ContainerError::from)
}

fn exec_spec(store: &Store, opts: &ExecOptions) -> Result<sandbox::exec::ExecSpec, ContainerError> {
    let info = state::find(store, &opts.container)?;
    let Some(pid) = state::live_pid(&info.dir) else {
        return Err(invalid(
            format!("container {} is not running", opts.container),
            None,
        ));
    };
    if state::paused(&info) {
        return Err(invalid(
            format!("container {} is paused", opts.container),
            Some("`boxr unpause` it first"),
        ));
    }
    let path = info.dir.join("spec.json");
    let spec: SandboxSpec = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid(format!("cannot read {}", path.display()), None))?;
    if opts.command.is_empty() {
        return Err(invalid(
            "exec needs a command",
            Some("boxr exec CONTAINER COMMAND [ARG...]"),
        ));
    }
    let layout = sandbox::cgroup::Layout::detect()
        .map_err(|e| invalid(format!("cannot read the mount table: {e}"), None))?;
    let cgroup_dirs = match &spec.cgroup {
        Some(c) => {
            let mut dirs: Vec<PathBuf> = layout.v1.values().map(|r| r.join(&c.path)).collect();
            dirs.extend(layout.v2.as_ref().map(|r| r.join(&c.path)));
            dirs.sort();
            dirs.dedup();
            dirs.into_iter().filter(|d| d.exists()).collect()
        }
        None => Vec::new(),
    };
    let mut env = spec.process.env.clone();
    let extra: Vec<String> = opts
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    merge_env(&mut env, extra);
    events::record(
        store.root(),
        "exec_start",
        &info.id,
        serde_json::json!({"execID": opts.command.join(" "), "name": info.name}),
    );
    Ok(sandbox::exec::ExecSpec {
        pid,
        pid_start: sandbox::process_start_time(pid).unwrap_or_default(),
        cgroup_dirs,
        process: ProcessSpec {
            args: opts.command.clone(),
            env,
            cwd: opts
                .workdir
                .clone()
                .unwrap_or_else(|| spec.process.cwd.clone()),
            user: opts.user.clone().or(spec.process.user.clone()),
            stdin: opts.interactive,
            tty: opts.tty,
            rlimits: spec.process.rlimits.clone(),
            group_add: spec.process.group_add.clone(),
            oom_score_adj: spec.process.oom_score_adj,
        },
        security: spec.security.clone(),
    })
}

/// `boxr run -d`: prepares the container, starts its monitor, and returns the container's id
/// once it runs (or has already ended).
pub fn run_detached(store: &Store, opts: &RunOptions) -> Result<String, ContainerError> {
    let (id, ms) = create_detached(store, opts)?;
    start_monitor(&ms)?;
    Ok(id)
}

/// `boxr create`: a container made as `run -d` makes it, not started (`boxr start` does):
/// `ps -a` shows it `Created`. Returns its id.
pub fn create_only(store: &Store, opts: &RunOptions) -> Result<String, ContainerError> {
    let (id, ms) = create_detached(store, opts)?;
    let value = serde_json::to_value(&ms).expect("serializes");
    state::write_atomic(&ms.dir, "monitor.json", &value)
        .map_err(io_err("write", &ms.dir.join("monitor.json")))?;
    Ok(id)
}

/// The directory, files and monitor spec of a detached container.
fn create_detached(
    store: &Store,
    opts: &RunOptions,
) -> Result<(String, monitor::MonitorSpec), ContainerError> {
    if let Some(r) = &opts.restart {
        crate::values::parse_restart(r)
            .map_err(|b| invalid(format!("--restart {r}: {}", b.reason), b.help.as_deref()))?;
        if opts.remove && r != "no" {
            return Err(invalid(
                "--restart and --rm do not go together",
                Some("a container that is removed when it exits cannot be restarted"),
            ));
        }
    }
    let (mut log_max_size, mut log_max_files) = (None, 1u32);
    for o in &opts.log_opts {
        let bad = |m: String| {
            invalid(
                format!("--log-opt {o}: {m}"),
                Some("max-size=SIZE or max-file=N"),
            )
        };
        match o.split_once('=') {
            Some(("max-size", v)) => {
                let n = crate::values::parse_size(v).map_err(|b| bad(b.reason))?;
                if n < 4096 {
                    return Err(bad("the least is 4 KiB".into()));
                }
                log_max_size = Some(n);
            }
            Some(("max-file", v)) => {
                log_max_files =
                    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        bad(format!("`{v}` is not a number of files (1 or more)"))
                    })?;
            }
            _ => return Err(bad("unknown option".into())),
        }
    }
    // The image's health check, if any, under the options (checked before anything exists).
    let img = store.resolve(&opts.image);
    let image_health = img
        .as_ref()
        .ok()
        .and_then(|i| i.config.config.as_ref())
        .and_then(|c| c.healthcheck.as_ref());
    let health = health::spec(&opts.health, image_health).map_err(|m| invalid(m, None))?;
    let spec = prepare_from(store, opts, img)?;
    let dir = spec
        .pid_file
        .as_ref()
        .and_then(|p| p.parent())
        .expect("a container has a directory")
        .to_owned();
    let spec = lifecycle::detached(spec, &dir);
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runtime = sandbox::binary()?;
    let ms = monitor::MonitorSpec {
        dir: dir.clone(),
        runtime,
        tty: spec.process.tty,
        stdin: spec.process.stdin,
        sandbox: serde_json::to_value(&spec).expect("serializes"),
        name_file: opts.name.as_ref().map(|n| store.name_file(n)),
        restart: match &opts.restart {
            Some(r) => crate::values::parse_restart(r)
                .map_err(|b| invalid(format!("--restart {r}: {}", b.reason), b.help.as_deref()))?,
            None => Default::default(),
        },
        log_max_size,
        log_max_files,
        hold: false,
        health,
    };
    Ok((id, ms))
}

/// Starts a detached container's monitor; returns once the command runs (or failed to start).
fn start_monitor(ms: &monitor::MonitorSpec) -> Result<i32, ContainerError> {
    monitor::start(ms).map_err(|(code, message)| ContainerError::Start { code, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let ep = v(&["/app"]);
        let cmd = v(&["--port=80"]);
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), None, &[]),
            v(&["/app", "--port=80"])
        );
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), None, &v(&["-x"])),
            v(&["/app", "-x"])
        );
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), Some("/bin/sh"), &[]),
            v(&["/bin/sh"])
        );
        assert_eq!(
            process_args(None, Some(&cmd), Some(""), &v(&["ls"])),
            v(&["ls"])
        );
        assert_eq!(process_args(None, None, None, &[]), Vec::<String>::new());
    }

    #[test]
    fn env_merges_by_key() {
        let mut e = v(&["A=1", "B=2"]);
        merge_env(&mut e, v(&["B=3", "C=4"]));
        assert_eq!(e, v(&["A=1", "B=3", "C=4"]));
    }
}
