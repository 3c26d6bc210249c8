//! `SandboxSpec`: everything needed to start a sandboxed process, as plain data. It crosses a
//! process boundary (to the freshly exec'd helper) as JSON over an inherited pipe.

use std::path::PathBuf;

use crate::values::Bad;
use serde::{Deserialize, Serialize};

/// A sandbox to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: RootfsSpec,
    pub hostname: String,
    pub network: NetworkMode,
    /// Files boxr writes and bind-mounts over /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: Vec<EtcFile>,
    pub mounts: Vec<MountSpec>,
    pub process: ProcessSpec,
    /// Run boxr's init as PID 1 (reaps, forwards signals) instead of the command itself.
    pub init: bool,
    /// Capabilities, no_new_privs, masked paths.
    pub security: super::SecuritySpec,
    /// The owner's record of this sandbox (for a container: its id, where its end is written,
    /// what `--rm` removes), for the [`super::Recorder`] the runtime runs with. The sandbox
    /// carries it and never reads it.
    #[serde(default)]
    pub owner: Option<serde_json::Value>,
    /// An inherited descriptor (a store lock) the helper keeps until the sandbox exits.
    pub keep_fd: Option<i32>,
    /// With `process.tty`: the socket over which the init sends the pty master (set by the
    /// helper).
    #[serde(default)]
    pub console_fd: Option<i32>,
    /// Kill the sandbox when the process that started it dies (build steps: a killed
    /// `boxr build` leaves no step running).
    #[serde(default)]
    pub die_with_parent: bool,
    /// The sandbox's cgroup and its limits.
    #[serde(default)]
    pub cgroup: Option<CgroupSpec>,
    /// Where the helper writes the host pid of the container's first process (its init).
    #[serde(default)]
    pub pid_file: Option<PathBuf>,
    /// (Set by the helper.) A pipe on which the init waits, before it starts the command, for
    /// the helper to have moved it into the cgroup.
    #[serde(default)]
    pub cgroup_sync_fd: Option<i32>,
    /// Detached (`boxr run -d`): the helper returns once the command runs, leaving the init to
    /// the monitor (a child subreaper above it), which reaps it and then runs `boxr __finish`.
    /// With `process.tty`, `console_fd` is then the monitor's socket for the pty master.
    #[serde(default)]
    pub detach: bool,
    /// (Set by the helper of a detached sandbox.) The init writes `CODE\nMESSAGE` here if the
    /// command cannot be started, and closes it once the command runs: the helper's end reads
    /// EOF only when the start is over.
    #[serde(default)]
    pub report_fd: Option<i32>,
    /// (Given by a detached sandbox's monitor.) A file the init writes the command's exit code
    /// to (as text) when it ends: the end is then known even when nobody waits for the init
    /// any more (its monitor was killed). Held by the init only, never by the command.
    #[serde(default)]
    pub exit_fd: Option<i32>,
    /// `--userns`: a new user namespace with these id maps; the image's layers are shown
    /// through idmapped mounts, so their files keep their owners inside.
    #[serde(default)]
    pub userns: Option<UserNs>,
    /// (Set for the init of a sandbox with a user namespace.) The overlay is mounted at
    /// `rootfs.target` already (by the first process, before it entered the user namespace).
    #[serde(default)]
    pub rootfs_mounted: bool,
    /// Programs the helper runs once the sandbox's namespaces exist and its init is in its
    /// cgroup, before the command starts (OCI's `createRuntime` point: where a network is
    /// plugged into the new network namespace).
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// The size of /dev/shm in bytes (`--shm-size`; default 64 MiB).
    #[serde(default)]
    pub shm_size: Option<u64>,
    /// Kernel parameters of the sandbox's own namespaces (`--sysctl net.ipv4.ip_forward=1`),
    /// written through its /proc/sys before that is made read-only.
    #[serde(default)]
    pub sysctls: Vec<(String, String)>,
    /// The PID namespace: its own (default), the host's, or another sandbox's.
    #[serde(default)]
    pub pid_ns: NsShare,
    /// The IPC namespace (and with it /dev/shm): its own, the host's, or another sandbox's.
    #[serde(default)]
    pub ipc_ns: NsShare,
    /// The UTS namespace (the hostname): its own, or the host's.
    #[serde(default)]
    pub uts_ns: NsShare,
    /// Host devices the container gets (`--device`).
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
    /// (Set by the helper for the init.) With a shared IPC namespace: whose /dev/shm is shown.
    #[serde(default)]
    pub shm_from: Option<SharedShm>,
}

/// A host device a container gets (`--device HOST:PATH:PERMS`): a node at `path` with the
/// host node's type, numbers, mode and owner, and the cgroup's permission for it (which the
/// container layer adds to the allowlist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The host's node (bind-mounted in a user namespace, where mknod is not allowed).
    pub host: PathBuf,
    /// Where the container sees it (absolute).
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the node.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The /dev/shm of a shared IPC namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharedShm {
    /// The host's.
    Host,
    /// That of the sandbox whose init has this pid.
    Sandbox { pid: i32 },
}

/// A namespace a sandbox gets of its own, or shares (`--pid`, `--ipc`, `--uts`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NsShare {
    #[default]
    Private,
    /// The host's.
    Host,
    /// Another sandbox's, named by the pid file its helper wrote (`PID START_TIME`): looked up
    /// at every start, refused unless that process still runs.
    Sandbox(PathBuf),
}

/// A hook: run in the host's namespaces with the OCI state of the sandbox on stdin
/// (`{"ociVersion", "id", "status": "creating", "pid", "bundle"}`) and `BOXR_PID` set to the
/// init's pid. A hook that fails (or runs past its timeout) stops the start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    #[serde(default)]
    pub args: Vec<String>,
    /// Seconds (default 30).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// A user namespace's id maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserNs {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
}

/// One line of `/proc/PID/uid_map`: ids `container..container+size` are host ids
/// `host..host+size`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

impl IdMap {
    /// `CONTAINER:HOST:SIZE`, as podman's `--uidmap`.
    pub fn parse(text: &str) -> Result<IdMap, Bad> {
        let n: Vec<Option<u32>> = text.split(':').map(|p| p.parse().ok()).collect();
        match n.as_slice() {
            [Some(c), Some(h), Some(s)] if *s > 0 => Ok(IdMap {
                container: *c,
                host: *h,
                size: *s,
            }),
            _ => Err(Bad::new(
                format!("`{text}` is not an id map"),
                Some("write CONTAINER:HOST:SIZE, e.g. 0:100000:65536"),
            )),
        }
    }

    /// The host id of container id `id`, if the map covers it.
    pub fn host_of(maps: &[IdMap], id: u32) -> Option<u32> {
        maps.iter()
            .find(|m| id >= m.container && id - m.container < m.size)
            .map(|m| m.host + (id - m.container))
    }
}

/// A sandbox's cgroup.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CgroupSpec {
    /// Relative to each hierarchy's root, e.g. `boxr/<id>`.
    pub path: String,
    pub limits: super::cgroup::Limits,
    /// A file that records the cgroup's directories while it exists, so `boxr gc` can remove
    /// them if boxr is killed first.
    pub journal: Option<PathBuf>,
}

/// The root filesystem: an overlay of image layers plus a private upper dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Layer roots, topmost first (overlay lowerdir order).
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where to mount it (inside the sandbox's private mount namespace).
    pub target: PathBuf,
    pub read_only: bool,
    /// Mount the overlay `volatile`: no sync of the upper dir ever (a build step's upper dir is
    /// thrown away if the machine crashes before it is committed).
    #[serde(default)]
    pub volatile: bool,
    /// Mount with mount(2) and one `lowerdir=` string, not the new mount API (which boxr uses
    /// when the kernel has it, and falls back from): `BOXR_OVERLAY_MOUNT=classic` asks for it,
    /// to rule the new API out when something goes wrong.
    #[serde(default)]
    pub classic_mount: bool,
    /// The overlay keeps its metadata (opaque directories) in `user.overlay.*` xattrs, as a
    /// rootless store's layers have them: mounted with `userxattr`, as a user namespace needs.
    #[serde(default)]
    pub userxattr: bool,
}

impl RootfsSpec {
    /// Whether the environment asks for the classic overlay mount (`BOXR_OVERLAY_MOUNT=classic`).
    /// The overlay options of this rootfs: its upper and work dirs, with `redirect_dir`,
    /// `metacopy` and `index` off (so the upper dir stays a complete diff), and `volatile`
    /// when asked.
    pub fn overlay_options(&self) -> Vec<(&'static str, String)> {
        let mut options = vec![
            ("upperdir", self.upper.display().to_string()),
            ("workdir", self.work.display().to_string()),
            // Not made either way; `userxattr` refuses `off` (which follows existing ones).
            (
                "redirect_dir",
                if self.userxattr { "nofollow" } else { "off" }.to_owned(),
            ),
            ("metacopy", "off".to_owned()),
            ("index", "off".to_owned()),
        ];
        if self.volatile {
            options.push(("volatile", String::new()));
        }
        if self.userxattr {
            options.push(("userxattr", String::new()));
        }
        options
    }

    pub fn classic_requested() -> bool {
        std::env::var("BOXR_OVERLAY_MOUNT").is_ok_and(|v| v == "classic")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace with only the loopback interface (up).
    None,
    /// The host's network namespace.
    Host,
    /// Join an existing network namespace by path (`/run/netns/NAME`, `/proc/PID/ns/net`): for
    /// services that share one, and networks set up before the container starts.
    Join(PathBuf),
    /// Join the network namespace of another sandbox, named by the pid file its helper wrote
    /// (`PID START_TIME`): looked up at every start, and refused unless that process still runs
    /// (a reused pid has another start time). `--network container:NAME`.
    Sandbox(PathBuf),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcFile {
    /// A file on the host (in the container's directory).
    pub source: PathBuf,
    /// Its path in the container, e.g. `/etc/hosts`.
    pub target: String,
}

/// An extra mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        options: String,
    },
}

/// The process to run inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    /// `KEY=VALUE`; PATH and HOME are filled in when missing.
    pub env: Vec<String>,
    /// Resolved inside the container; created if missing.
    pub cwd: String,
    /// `USER[:GROUP]`, names resolved through the image's /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// Keep stdin attached (`-i`); otherwise the command reads /dev/null.
    pub stdin: bool,
    /// Give the command a pseudo-terminal (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// Resource limits to set (others are inherited).
    pub rlimits: Vec<Rlimit>,
    /// More supplementary groups (`--group-add`): names of the container's /etc/group, or ids.
    #[serde(default)]
    pub group_add: Vec<String>,
    /// `--oom-score-adj` (-1000 to 1000): how readily the OOM killer picks the process.
    #[serde(default)]
    pub oom_score_adj: Option<i32>,
}

/// A resource limit, `--ulimit NAME=SOFT[:HARD]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// The name as `ulimit` and Docker spell it: `nofile`, `nproc`, `core`, ...
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// The names Docker accepts, with their resources.
    pub const NAMES: &'static [&'static str] = &[
        "as",
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];

    /// Parses `NAME=SOFT[:HARD]` (`unlimited` or `-1` for no limit).
    pub fn parse(text: &str) -> Result<Rlimit, Bad> {
        let usage = Some("write NAME=SOFT[:HARD], e.g. nofile=1024:4096");
        let (name, values) = text
            .split_once('=')
            .ok_or_else(|| Bad::new(format!("invalid ulimit `{text}`"), usage))?;
        if !Self::NAMES.contains(&name) {
            return Err(Bad::new(
                format!("unknown ulimit `{name}`"),
                Some(&format!("known: {}", Self::NAMES.join(", "))),
            ));
        }
        let num = |v: &str| match v {
            "unlimited" | "-1" => Ok(u64::MAX),
            v => v
                .parse::<u64>()
                .map_err(|_| Bad::new(format!("invalid ulimit value `{v}`"), usage)),
        };
        let (soft, hard) = match values.split_once(':') {
            Some((s, h)) => (num(s)?, num(h)?),
            None => (num(values)?, num(values)?),
        };
        if soft > hard {
            return Err(Bad::new(
                format!("ulimit {name}: the soft limit {soft} is above the hard limit {hard}"),
                None,
            ));
        }
        Ok(Rlimit {
            name: name.to_owned(),
            soft,
            hard,
        })
    }
}
