//! cgroups: one [`Limits`] type, applied on cgroup v1, v2, or a hybrid of both (v1 controllers
//! with a cgroup2 mount holding the rest, as on this project's CI machine; crun 1.8 refuses that
//! layout, boxr does not).
//!
//! The layout is read from `/proc/self/mountinfo` at runtime. Each controller lives where it is
//! mounted: a v1 hierarchy of its own if there is one, else the v2 hierarchy if that has it. A
//! container's cgroup is `boxr/<id>` below the root of every hierarchy it uses. All file I/O
//! takes the hierarchy roots from the [`Layout`], so the code runs on a temp dir in the tests.
//!
//! Here: the limits, the layout, a container's [`Cgroup`] and what works the same on both
//! versions (pids, cpuset, joining, freezing, removal, the journal). What differs, file names and
//! units, has one implementation per version behind `Version`: `v1.rs` and `v2.rs`
//! (ARCHITECTURE decision 7). The devices allowlist and its eBPF form are `devices.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

mod devices;
mod journal;
mod v1;
mod v2;

pub use devices::{DeviceRule, default_devices, device_program};
pub use journal::{clean_journal_entry, destroy_journal_entry};
pub use v2::{delegated_base, own_path};

/// What differs between a controller's v1 directory and the v2 one: file names, units, and how
/// the devices allowlist is given. Each layout has one implementation (`v1::V1`, `v2::V2`); on
/// a hybrid host each controller takes the one of the hierarchy it is in.
trait Version: Sync {
    /// Memory, its soft limit, and `swap` (Docker's memory plus swap; -1 unlimited).
    fn memory(&self, d: &Path, l: &Limits, swap: Option<i64>) -> Result<(), CgroupError>;
    /// CPU time per [`PERIOD_US`] and Docker's shares.
    fn cpu(&self, d: &Path, quota: Option<u64>, shares: Option<u64>) -> Result<(), CgroupError>;
    /// Block I/O weight and bandwidth limits.
    fn io(&self, d: &Path, l: &Limits) -> Result<(), CgroupError>;
    /// The limit file of huge pages of `size` (`2MB`).
    fn hugetlb_file(&self, d: &Path, size: &str) -> PathBuf;
    /// The devices allowlist.
    fn devices(&self, d: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError>;
    /// How often the OOM killer killed a process of the cgroup.
    fn oom_kills(&self, d: &Path) -> u64;
    /// Memory in use and the limit (`None`: unlimited).
    fn memory_usage(&self, d: &Path) -> (u64, Option<u64>);
    /// The file that freezes (or thaws) the cgroup and the value to write.
    fn freeze_file(&self, d: &Path, frozen: bool) -> (PathBuf, &'static str);
    fn is_frozen(&self, d: &Path) -> bool;
}

/// The number after `key` in a flat-keyed cgroup file (`memory.events`), 0 if absent.
fn count(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// What a container may use. `None` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Bytes of memory (`--memory`).
    pub memory: Option<u64>,
    /// Memory plus swap in bytes (`--memory-swap`); `Some(-1)` for unlimited swap. Without it,
    /// a memory limit allows as much swap again, as in Docker.
    pub memory_swap: Option<i64>,
    /// The soft limit (`--memory-reservation`).
    pub memory_reservation: Option<u64>,
    /// CPUs of time per period (`--cpus 0.5`).
    pub cpus: Option<f64>,
    /// Relative weight (`--cpu-shares`, 2–262144, Docker's 1024 by default).
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// Processes (`--pids-limit`); `Some(-1)` for unlimited.
    pub pids: Option<i64>,
    /// Block I/O weight (`--blkio-weight`, 10–1000).
    pub blkio_weight: Option<u16>,
    /// `(major, minor, bytes per second)`.
    pub device_read_bps: Vec<(u32, u32, u64)>,
    pub device_write_bps: Vec<(u32, u32, u64)>,
    /// Huge page limits: page size as the kernel names it (`2MB`, `1GB`) → bytes.
    pub hugetlb: BTreeMap<String, u64>,
    /// The devices allowlist; `None` allows every device (`--privileged`).
    pub devices: Option<Vec<DeviceRule>>,
}

impl Limits {
    /// The v1 controllers these limits use.
    fn controllers(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some()
        {
            c.push("memory");
        }
        if self.cpus.is_some() || self.cpu_shares.is_some() {
            c.push("cpu");
        }
        if self.cpuset_cpus.is_some() || self.cpuset_mems.is_some() {
            c.push("cpuset");
        }
        if self.pids.is_some() {
            c.push("pids");
        }
        if self.blkio_weight.is_some()
            || !self.device_read_bps.is_empty()
            || !self.device_write_bps.is_empty()
        {
            c.push("blkio");
        }
        if !self.hugetlb.is_empty() {
            c.push("hugetlb");
        }
        if self.devices.is_some() {
            c.push("devices");
        }
        c
    }

    /// The roots of the v1 hierarchies a cgroup with these limits is made in: those of
    /// [`ALWAYS_V1`] and of the controllers the limits use. A hierarchy nothing asks for is not
    /// touched (each costs a directory made, joined and removed per container);
    /// [`Cgroup::extend`] adds one when `update` asks for it later.
    fn v1_roots<'a>(&self, layout: &'a Layout) -> BTreeSet<&'a Path> {
        let used = self.controllers();
        layout
            .v1
            .iter()
            .filter(|(c, _)| ALWAYS_V1.contains(&c.as_str()) || used.contains(&c.as_str()))
            .map(|(_, r)| r.as_path())
            .collect()
    }

    /// Whether, on a host with v1 hierarchies, some limit needs a controller only v2 has.
    pub fn needs_v2_only(&self, layout: &Layout) -> bool {
        self.controllers()
            .iter()
            .any(|c| !layout.v1.contains_key(*c))
    }
}

const PERIOD_US: u64 = 100_000;

/// The v1 controllers every container's cgroup has, limits or not: memory (what it uses, OOM
/// kills), pids, devices (the allowlist) and freezer (pause, and a kill nothing escapes by
/// forking).
const ALWAYS_V1: &[&str] = &["memory", "pids", "devices", "freezer"];

/// Where the cgroup hierarchies are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// v1 controller → the root of its hierarchy.
    pub v1: BTreeMap<String, PathBuf>,
    /// The root of the v2 hierarchy, if mounted.
    pub v2: Option<PathBuf>,
}

/// The v1 controllers boxr uses.
const V1_CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuset", "pids", "blkio", "devices", "freezer", "hugetlb",
];

impl Layout {
    /// This machine's layout.
    pub fn detect() -> io::Result<Layout> {
        Ok(Layout::from_mountinfo(&fs::read_to_string(
            "/proc/self/mountinfo",
        )?))
    }

    /// The layout a `/proc/self/mountinfo` describes (only hierarchies mounted at their root).
    pub fn from_mountinfo(text: &str) -> Layout {
        let mut layout = Layout::default();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if f.len() < 5 || r.len() < 3 || f[3] != "/" {
                continue;
            }
            let mount = PathBuf::from(unescape(f[4]));
            match r[0] {
                "cgroup2" => {
                    layout.v2.get_or_insert(mount);
                }
                "cgroup" => {
                    for opt in r[2].split(',') {
                        if V1_CONTROLLERS.contains(&opt) {
                            layout
                                .v1
                                .entry(opt.to_owned())
                                .or_insert_with(|| mount.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// `v1`, `v2` or `hybrid`.
    pub fn kind(&self) -> &'static str {
        match (self.v1.is_empty(), self.v2.is_some()) {
            (false, false) => "v1",
            (true, true) => "v2",
            (false, true) => "hybrid",
            (true, false) => "none",
        }
    }

    /// The controllers the v2 hierarchy offers.
    fn v2_controllers(&self) -> BTreeSet<String> {
        self.v2
            .as_ref()
            .and_then(|r| fs::read_to_string(r.join("cgroup.controllers")).ok())
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A container's cgroup: a directory in every hierarchy it uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cgroup {
    /// v1 controller → its directory.
    pub v1: BTreeMap<String, PathBuf>,
    /// The v2 directory.
    pub v2: Option<PathBuf>,
}

/// Why a cgroup operation failed, with the file or directory it failed on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CgroupError {
    #[error("cannot write {value:?} to {}: {source}", path.display())]
    #[diagnostic(code(boxr::cgroup::write))]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot create {}: {source}", path.display())]
    #[diagnostic(code(boxr::cgroup::create))]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot remove {}: {source}", path.display())]
    #[diagnostic(code(boxr::cgroup::remove))]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot attach the device filter to {}: {source}", path.display())]
    #[diagnostic(code(boxr::cgroup::device_filter))]
    DeviceFilter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the {controller} cgroup controller is not available on this machine ({layout} cgroups)"
    )]
    #[diagnostic(code(boxr::cgroup::no_controller))]
    NoController {
        controller: String,
        layout: &'static str,
    },
    #[error("this kernel has no {0} huge pages")]
    #[diagnostic(code(boxr::cgroup::hugetlb))]
    NoHugePages(String),
    #[error("--blkio-weight: this kernel's block I/O scheduler has no weights")]
    #[diagnostic(code(boxr::cgroup::blkio_weight))]
    NoBlkioWeight,
    #[error("no freezer on this machine")]
    #[diagnostic(code(boxr::cgroup::no_freezer))]
    NoFreezer,
    #[error("{} did not become {value} in 5 s", path.display())]
    #[diagnostic(code(boxr::cgroup::freeze))]
    Stuck { path: PathBuf, value: String },
    /// Limits could not be written, and the cgroup made for them could not be removed either
    /// (ARCHITECTURE decision 10: both are reported).
    #[error("{error}")]
    #[diagnostic(
        code(boxr::cgroup::cleanup),
        help("removing the new cgroup failed too: {cleanup}; `boxr gc` removes it")
    )]
    Cleanup {
        error: Box<CgroupError>,
        cleanup: Box<CgroupError>,
    },
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_owned(),
        value: value.to_owned(),
        source,
    })
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

impl Cgroup {
    /// The cgroup `rel` (e.g. `boxr/<id>`) in every hierarchy of `layout`, with `limits`
    /// written. Directories already there are reused (a retry after a crash).
    pub fn create(layout: &Layout, rel: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut cg = Cgroup::default();
        let roots = limits.v1_roots(layout);
        for (ctl, root) in &layout.v1 {
            if !roots.contains(root.as_path()) {
                continue;
            }
            // Hierarchies mounted with several controllers share one directory.
            let dir = root.join(rel);
            v1::create_dirs(root, rel, ctl == "cpuset")?;
            cg.v1.insert(ctl.clone(), dir);
        }
        // On a hybrid host the v2 hierarchy holds only what v1 lacks (here: hugetlb): the
        // container gets a v2 cgroup only when its limits need one of those, since moving a
        // process into a v2 cgroup waits for an RCU grace period.
        let v2_needed = layout.v1.is_empty() || limits.needs_v2_only(layout);
        if let Some(root) = layout.v2.as_ref().filter(|_| v2_needed) {
            cg.v2 = Some(v2::create(layout, root, rel)?);
        }
        if let Err(e) = cg.apply(layout, limits) {
            return Err(match cg.remove() {
                Ok(()) => e,
                Err(c) => CgroupError::Cleanup {
                    error: Box::new(e),
                    cleanup: Box::new(c),
                },
            });
        }
        Ok(cg)
    }

    /// Makes the v1 directories `limits` need that this cgroup lacks (a limit `update` adds to
    /// a running container) and moves the cgroup's processes into them, frozen meanwhile so
    /// that none forks past the move. A cgroup the user paused stays paused.
    pub fn extend(
        &mut self,
        layout: &Layout,
        rel: &str,
        limits: &Limits,
    ) -> Result<(), CgroupError> {
        let roots = limits.v1_roots(layout);
        let missing: Vec<(String, PathBuf)> = layout
            .v1
            .iter()
            .filter(|(c, r)| roots.contains(r.as_path()) && !self.v1.contains_key(*c))
            .map(|(c, r)| (c.clone(), r.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Without a freezer (no v1 freezer and no v2 cgroup), the move is made as it is.
        let freeze = !self.is_frozen() && self.set_frozen(true).is_ok();
        let moved = (|| {
            let pids = self.pids();
            for (ctl, root) in &missing {
                v1::create_dirs(root, rel, ctl == "cpuset")?;
                let dir = root.join(rel);
                for pid in &pids {
                    write(&dir.join("cgroup.procs"), &pid.to_string())?;
                }
                self.v1.insert(ctl.clone(), dir);
            }
            Ok(())
        })();
        if freeze {
            self.set_frozen(false)?;
        }
        moved
    }

    /// The directory holding controller `ctl`'s files and the version whose files it has: its
    /// v1 directory, or the v2 one.
    fn dir(&self, ctl: &str) -> Option<(&Path, &'static dyn Version)> {
        if let Some(d) = self.v1.get(ctl) {
            return Some((d, &v1::V1));
        }
        self.v2.as_deref().map(|d| (d, &v2::V2 as &dyn Version))
    }

    /// Writes `limits` (only what is set; the rest stays the kernel's default).
    pub fn apply(&self, layout: &Layout, l: &Limits) -> Result<(), CgroupError> {
        let v2_has = layout.v2_controllers();
        let need = |ctl: &str, wanted: bool| {
            if !wanted {
                return Ok(None);
            }
            match self.dir(ctl) {
                Some((d, v)) if self.v1.contains_key(ctl) || v2_has.contains(ctl) => {
                    Ok(Some((d, v)))
                }
                _ => Err(CgroupError::NoController {
                    controller: ctl.to_string(),
                    layout: layout.kind(),
                }),
            }
        };
        let swap = match (l.memory, l.memory_swap) {
            (_, Some(s)) => Some(s),
            // Docker: a memory limit alone allows as much swap again.
            (Some(m), None) => Some(2 * m as i64),
            (None, None) => None,
        };
        let memory =
            l.memory.is_some() || l.memory_reservation.is_some() || l.memory_swap.is_some();
        if let Some((d, v)) = need("memory", memory)? {
            v.memory(d, l, swap)?;
        }
        if let Some((d, v)) = need("cpu", l.cpus.is_some() || l.cpu_shares.is_some())? {
            let quota = l
                .cpus
                .map(|c| ((c * PERIOD_US as f64).round() as u64).max(1000));
            v.cpu(d, quota, l.cpu_shares)?;
        }
        // cpuset: the same file names on v1 and v2 (v1 directories got their parent's sets
        // when created).
        if let Some((d, _)) = need("cpuset", l.cpuset_cpus.is_some() || l.cpuset_mems.is_some())? {
            if let Some(c) = &l.cpuset_cpus {
                write(&d.join("cpuset.cpus"), c)?;
            }
            if let Some(m) = &l.cpuset_mems {
                write(&d.join("cpuset.mems"), m)?;
            }
        }
        // pids: the same file on both.
        if let Some((d, _)) = need("pids", l.pids.is_some())? {
            let v = match l.pids {
                Some(n) if n > 0 => n.to_string(),
                _ => "max".into(),
            };
            write(&d.join("pids.max"), &v)?;
        }
        let io_wanted = l.blkio_weight.is_some()
            || !l.device_read_bps.is_empty()
            || !l.device_write_bps.is_empty();
        let io_ctl = if self.v1.contains_key("blkio") {
            "blkio"
        } else {
            "io"
        };
        if let Some((d, v)) = need(io_ctl, io_wanted)? {
            v.io(d, l)?;
        }
        if let Some((d, v)) = need("hugetlb", !l.hugetlb.is_empty())? {
            for (size, limit) in &l.hugetlb {
                let f = v.hugetlb_file(d, size);
                if !f.exists() {
                    return Err(CgroupError::NoHugePages(size.to_string()));
                }
                write(&f, &limit.to_string())?;
            }
        }
        if let Some(rules) = &l.devices
            && let Some((d, v)) = self.dir("devices")
        {
            v.devices(d, rules)?;
        }
        Ok(())
    }

    /// Every directory, v1 ones first (deduplicated: co-mounted controllers share one).
    fn dirs(&self) -> Vec<&Path> {
        let mut out: Vec<&Path> = Vec::new();
        for d in self
            .v1
            .values()
            .map(PathBuf::as_path)
            .chain(self.v2.as_deref())
        {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// Moves the process `pid` into the cgroup (every hierarchy).
    pub fn join(&self, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs() {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling thread into the cgroup's v1 hierarchies, through their `tasks` files:
    /// for a single-threaded process, the whole process. A thread moving itself does not take
    /// the kernel's global threadgroup lock, whose write side waits for an RCU grace period
    /// (writing a pid to `cgroup.procs` took 17–20 ms on this machine, this 0.3–0.5 ms).
    pub fn join_self_v1(&self) -> Result<(), CgroupError> {
        let mut done: Vec<&Path> = Vec::new();
        for d in self.v1.values() {
            if !done.contains(&d.as_path()) {
                write(&d.join("tasks"), "0")?;
                done.push(d);
            }
        }
        Ok(())
    }

    /// The cgroup's v2 directory, opened (for a child born in it, see `sys::fork_into`).
    pub fn open_v2(&self) -> Option<std::io::Result<std::os::fd::OwnedFd>> {
        self.v2.as_ref().map(|d| {
            fs::File::options()
                .read(true)
                .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_CLOEXEC)
                .open(d)
                .map(Into::into)
        })
    }

    /// Moves process `pid` into the cgroup's v2 directory, if it has one.
    pub fn join_v2(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.v2 {
            Some(d) => write(&d.join("cgroup.procs"), &pid.to_string()),
            None => Ok(()),
        }
    }

    /// Whether the OOM killer killed a process of the cgroup.
    pub fn oom_killed(&self) -> bool {
        self.dir("memory").is_some_and(|(d, v)| v.oom_kills(d) > 0)
    }

    /// Memory in use and the limit (bytes; `None`: unlimited).
    pub fn memory(&self) -> (u64, Option<u64>) {
        self.dir("memory")
            .map_or((0, None), |(d, v)| v.memory_usage(d))
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: BTreeSet<i32> = BTreeSet::new();
        for d in self.dirs() {
            for l in read(&d.join("cgroup.procs")).lines() {
                if let Ok(p) = l.trim().parse() {
                    pids.insert(p);
                }
            }
        }
        pids.into_iter().collect()
    }

    /// Freezes (`true`) or thaws every process of the cgroup: the v1 freezer, or v2's
    /// `cgroup.freeze`. Returns once the kernel reports the new state.
    pub fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let (d, v) = self.dir("freezer").ok_or(CgroupError::NoFreezer)?;
        let (file, value) = v.freeze_file(d, frozen);
        write(&file, value)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_frozen() != frozen {
            if Instant::now() > deadline {
                return Err(CgroupError::Stuck {
                    path: file,
                    value: value.to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Whether the cgroup is frozen.
    pub fn is_frozen(&self) -> bool {
        self.dir("freezer").is_some_and(|(d, v)| v.is_frozen(d))
    }

    /// The cgroup `rel` as it is in `layout`'s hierarchies (for a container that exists).
    pub fn existing(layout: &Layout, rel: &str) -> Cgroup {
        Cgroup {
            v1: layout
                .v1
                .iter()
                .map(|(k, r)| (k.clone(), r.join(rel)))
                .filter(|(_, d)| d.exists())
                .collect(),
            v2: layout
                .v2
                .as_ref()
                .map(|r| r.join(rel))
                .filter(|d| d.exists()),
        }
    }

    /// Kills whatever is left (frozen first, so nothing forks meanwhile) and removes the
    /// directories.
    pub fn destroy(&self) -> Result<(), CgroupError> {
        if !self.pids().is_empty() {
            if let Some(d) = &self.v2
                && d.join("cgroup.kill").exists()
            {
                let _ = fs::write(d.join("cgroup.kill"), "1");
            } else {
                let freezer = self.v1.get("freezer");
                if let Some(f) = freezer {
                    let _ = fs::write(f.join("freezer.state"), "FROZEN");
                }
                for p in self.pids() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if let Some(f) = freezer {
                    let _ = fs::write(f.join("freezer.state"), "THAWED");
                }
            }
        }
        self.remove()
    }

    /// Removes the directories, waiting briefly for exiting processes to leave, and their
    /// parent (`boxr/`) when no other container uses it.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for d in self.dirs() {
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => {
                        // Fails while another container's cgroup is in it; a container that
                        // is creating one retries (see `create_dirs`).
                        if let Some(parent) = d.parent() {
                            let _ = fs::remove_dir(parent);
                        }
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e)
                        if e.raw_os_error() == Some(nix::libc::EBUSY)
                            && Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_micros(250));
                    }
                    Err(source) => {
                        return Err(CgroupError::Remove {
                            path: d.to_path_buf(),
                            source,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
