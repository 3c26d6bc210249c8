//! What `run` and `create` are asked for: `RunOptions`, the network choice, limits, the
//! user namespace, and the security options (capabilities, seccomp, no_new_privs).

use super::*;

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
    /// More bridge networks (a second `--network`, a service's further networks): the
    /// container is connected to each after its first, as `eth1`, … (under its name, aliases
    /// and short id, as on its first).
    pub more_networks: Vec<Network>,
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
    /// `-p`: ports to publish (on a bridge network).
    pub publish: Vec<crate::net::ports::Publish>,
    /// `-P`: publish every port the image exposes, each on a free host port.
    pub publish_all: bool,
    /// `--network-alias`: more names of the container on its (user) network.
    pub network_aliases: Vec<String>,
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
pub(super) fn subordinate_range(file: &str) -> IdMap {
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
pub(super) fn user_namespace(opts: &RunOptions) -> Result<Option<UserNs>, ContainerError> {
    let parse = |maps: &[String]| -> Result<Vec<IdMap>, ContainerError> {
        maps.iter()
            .map(|m| IdMap::parse(m).map_err(super::invalid_value))
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
    for (flag, v, online, what) in [
        (
            "--cpuset-cpus",
            &o.cpuset_cpus,
            "/sys/devices/system/cpu/online",
            "CPU",
        ),
        (
            "--cpuset-mems",
            &o.cpuset_mems,
            "/sys/devices/system/node/online",
            "memory node",
        ),
    ] {
        let Some(v) = v else { continue };
        let asked = crate::values::parse_cpu_list(v)
            .map_err(|b| invalid(format!("{flag} {v}: {}", b.reason), b.help.as_deref()))?;
        // What exists here (a machine without NUMA has node 0 only).
        let here = fs::read_to_string(online).unwrap_or_else(|_| "0".into());
        if let Ok(have) = crate::values::parse_cpu_list(&here)
            && let Some(missing) = asked.iter().find(|n| !have.contains(n))
        {
            return Err(invalid(
                format!(
                    "{flag} {v}: there is no {what} {missing} here (this machine has {what}s {})",
                    here.trim()
                ),
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
pub(super) fn security(
    store: &Store,
    opts: &RunOptions,
) -> Result<sandbox::SecuritySpec, ContainerError> {
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
        .map_err(|e| {
            invalid(
                e.to_string(),
                Some("names with or without CAP_, any case, or ALL"),
            )
        })?;
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
) -> Result<String, sandbox::seccomp::SeccompError> {
    sandbox::seccomp::program(json, caps, |key, make| {
        store.cached_artifact("seccomp", key, make)
    })
}

/// What a rootless container cannot have, refused before anything is made: limits (no cgroup
/// is delegated to the user on this host: cgroup v1 or hybrid, or v2 without a systemd user
/// session), `--ip` or more networks on the default network (pasta's), and `--userns` (the
/// container is in the user's namespace already).
pub(super) fn rootless_check(opts: &RunOptions) -> Result<(), ContainerError> {
    if !crate::rootless::active() {
        return Ok(());
    }
    let asked = limits(&opts.limits, true)?;
    if asked != sandbox::cgroup::Limits::default() && crate::rootless::delegated_cgroup().is_none()
    {
        return Err(invalid(
            "rootless: limits (--memory, --cpus, --pids-limit, ...) need a cgroup, and none is \
             delegated to this user here",
            Some(
                "run boxr as root for limits; a cgroup v2 host with a systemd user session \
                 delegates one, this host's cgroup layout does not",
            ),
        ));
    }
    // The default network is pasta's (the host's own, through it); user networks are bridges
    // in the rootless network namespace (`net::rootless`).
    let on_pasta = match &opts.network {
        None => true,
        Some(Network::Named(n)) => n == crate::net::DEFAULT,
        Some(_) => false,
    };
    if on_pasta && (!opts.more_networks.is_empty() || opts.ip.is_some()) {
        return Err(invalid(
            "rootless: the default network is pasta's: it takes no --ip and no second network",
            Some(
                "create a network (`boxr network create NAME`) and run the container on it \
                 (--network NAME): a rootless user network takes --ip and more networks",
            ),
        ));
    }
    if opts.userns.is_some() || !opts.uidmaps.is_empty() || !opts.gidmaps.is_empty() {
        return Err(invalid(
            "rootless: --userns, --uidmap and --gidmap need root",
            Some("a rootless container is in your user namespace already: root in it is you"),
        ));
    }
    Ok(())
}
