//! cgroups: one [`Limits`] type, applied on cgroup v1, v2, or a hybrid of both (v1 controllers
//! with a cgroup2 mount holding the rest, as on this project's CI machine; crun 1.8 refuses that
//! layout, boxr does not).
//!
//! The layout is read from `/proc/self/mountinfo` at runtime. Each controller lives where it is
//! mounted: a v1 hierarchy of its own if there is one, else the v2 hierarchy if that has it. A
//! container's cgroup is `boxr/<id>` below the root of every hierarchy it uses. All file I/O
//! takes the hierarchy roots from the [`Layout`], so the code runs on a temp dir in the tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// A device rule of the devices allowlist (`c 1:3 rwm`; `None` is `*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// `c`, `b` or `a`.
    pub kind: char,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: String,
}

impl DeviceRule {
    fn v1(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_owned(), |v| v.to_string());
        if self.kind == 'a' {
            return "a".into();
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            n(self.major),
            n(self.minor),
            self.access
        )
    }
}

/// The devices a container may use by default (Docker's list): create any device node, but
/// read and write only the standard ones.
pub fn default_devices() -> Vec<DeviceRule> {
    let c = |major: Option<u32>, minor: Option<u32>, access: &str| DeviceRule {
        kind: 'c',
        major,
        minor,
        access: access.into(),
    };
    vec![
        c(None, None, "m"),
        DeviceRule {
            kind: 'b',
            major: None,
            minor: None,
            access: "m".into(),
        },
        c(Some(1), Some(3), "rwm"), // null
        c(Some(1), Some(5), "rwm"), // zero
        c(Some(1), Some(7), "rwm"), // full
        c(Some(1), Some(8), "rwm"), // random
        c(Some(1), Some(9), "rwm"), // urandom
        c(Some(5), Some(0), "rwm"), // tty
        c(Some(5), Some(1), "rwm"), // console
        c(Some(5), Some(2), "rwm"), // ptmx
        c(Some(136), None, "rwm"),  // pts
    ]
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

    /// Whether, on a host with v1 hierarchies, some limit needs a controller only v2 has.
    pub fn needs_v2_only(&self, layout: &Layout) -> bool {
        self.controllers()
            .iter()
            .any(|c| !layout.v1.contains_key(*c))
    }
}

const PERIOD_US: u64 = 100_000;

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

/// Docker's shares (2–262144) → cgroup v2 weight (1–10000), as runc converts them.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// blkio weight (10–1000) → io.weight (1–10000), as runc converts it.
fn blkio_to_io_weight(w: u16) -> u64 {
    1 + ((w.clamp(10, 1000) as u64 - 10) * 9999) / 990
}

impl Cgroup {
    /// The cgroup `rel` (e.g. `boxr/<id>`) in every hierarchy of `layout`, with `limits`
    /// written. Directories already there are reused (a retry after a crash).
    pub fn create(layout: &Layout, rel: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut cg = Cgroup::default();
        for (ctl, root) in &layout.v1 {
            // Hierarchies mounted with several controllers share one directory.
            let dir = root.join(rel);
            create_dirs(root, rel, ctl == "cpuset")?;
            cg.v1.insert(ctl.clone(), dir);
        }
        // On a hybrid host the v2 hierarchy holds only what v1 lacks (here: hugetlb): the
        // container gets a v2 cgroup only when its limits need one of those, since moving a
        // process into a v2 cgroup waits for an RCU grace period.
        let v2_needed = layout.v1.is_empty() || limits.needs_v2_only(layout);
        if let Some(root) = layout.v2.as_ref().filter(|_| v2_needed) {
            let available = layout.v2_controllers();
            // Controllers v1 does not have are enabled down the v2 path.
            let wanted: Vec<&String> = available
                .iter()
                .filter(|c| !layout.v1.contains_key(*c))
                .collect();
            let mut attempts = 0;
            let dir = loop {
                attempts += 1;
                let mut dir = root.clone();
                let mut vanished = false;
                for part in Path::new(rel).iter() {
                    for c in &wanted {
                        // Best effort: a controller another cgroup uses in "threaded" mode, or
                        // one that is busy, just stays off.
                        let _ = fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
                    }
                    dir.push(part);
                    match fs::create_dir(&dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                        // A parent removed by another container's cleanup meanwhile.
                        Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 5 => {
                            vanished = true;
                            break;
                        }
                        Err(source) => return Err(CgroupError::Create { path: dir, source }),
                    }
                }
                if !vanished {
                    break dir;
                }
            };
            cg.v2 = Some(dir);
        }
        if let Err(e) = cg.apply(layout, limits) {
            let _ = cg.remove();
            return Err(e);
        }
        Ok(cg)
    }

    /// The directory holding controller `ctl`'s files: its v1 directory, or the v2 one.
    fn dir(&self, ctl: &str) -> Option<(&Path, bool)> {
        if let Some(d) = self.v1.get(ctl) {
            return Some((d, true));
        }
        self.v2.as_deref().map(|d| (d, false))
    }

    /// Writes `limits` (only what is set; the rest stays the kernel's default).
    pub fn apply(&self, layout: &Layout, l: &Limits) -> Result<(), CgroupError> {
        let v2_has = layout.v2_controllers();
        let need = |ctl: &str, wanted: bool| -> Result<Option<(&Path, bool)>, CgroupError> {
            if !wanted {
                return Ok(None);
            }
            match self.dir(ctl) {
                Some((d, true)) => Ok(Some((d, true))),
                Some((d, false)) if v2_has.contains(ctl) => Ok(Some((d, false))),
                _ => Err(CgroupError::NoController {
                    controller: ctl.to_string(),
                    layout: layout.kind(),
                }),
            }
        };
        // memory
        let swap = match (l.memory, l.memory_swap) {
            (_, Some(s)) => Some(s),
            // Docker: a memory limit alone allows as much swap again.
            (Some(m), None) => Some(2 * m as i64),
            (None, None) => None,
        };
        if let Some((d, v1)) = need(
            "memory",
            l.memory.is_some() || l.memory_reservation.is_some() || l.memory_swap.is_some(),
        )? {
            if v1 {
                // memory ≤ memory+swap at every step: a memory limit raised above the current
                // memsw limit goes after the memsw one (an update), else before it.
                let memsw = d.join("memory.memsw.limit_in_bytes");
                let current_memsw: i64 = fs::read_to_string(&memsw)
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(i64::MAX);
                let memsw_first =
                    l.memory.is_some_and(|m| m as i64 > current_memsw) || swap == Some(-1);
                // Only where the kernel accounts swap.
                let write_memsw = || match swap {
                    Some(s) if memsw.exists() => write(&memsw, &s.to_string()),
                    _ => Ok(()),
                };
                if memsw_first {
                    write_memsw()?;
                }
                if let Some(m) = l.memory {
                    write(&d.join("memory.limit_in_bytes"), &m.to_string())?;
                }
                if !memsw_first {
                    write_memsw()?;
                }
                if let Some(r) = l.memory_reservation {
                    write(&d.join("memory.soft_limit_in_bytes"), &r.to_string())?;
                }
            } else {
                if let Some(m) = l.memory {
                    write(&d.join("memory.max"), &m.to_string())?;
                }
                if let Some(s) = swap {
                    let f = d.join("memory.swap.max");
                    if f.exists() {
                        // v2 limits swap alone; Docker's value is memory plus swap.
                        let v = match (s, l.memory) {
                            (-1, _) => "max".to_owned(),
                            (s, Some(m)) => (s as u64).saturating_sub(m).to_string(),
                            (s, None) => s.to_string(),
                        };
                        write(&f, &v)?;
                    }
                }
                if let Some(r) = l.memory_reservation {
                    write(&d.join("memory.low"), &r.to_string())?;
                }
            }
        }
        // cpu
        if let Some((d, v1)) = need("cpu", l.cpus.is_some() || l.cpu_shares.is_some())? {
            let quota = l
                .cpus
                .map(|c| ((c * PERIOD_US as f64).round() as u64).max(1000));
            if v1 {
                if let Some(q) = quota {
                    write(&d.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
                    write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                }
                if let Some(s) = l.cpu_shares {
                    write(&d.join("cpu.shares"), &s.to_string())?;
                }
            } else {
                if let Some(q) = quota {
                    write(&d.join("cpu.max"), &format!("{q} {PERIOD_US}"))?;
                }
                if let Some(s) = l.cpu_shares {
                    write(&d.join("cpu.weight"), &shares_to_weight(s).to_string())?;
                }
            }
        }
        // cpuset (v1 directories got their parent's sets when created)
        if let Some((d, _)) = need("cpuset", l.cpuset_cpus.is_some() || l.cpuset_mems.is_some())? {
            // The same file names on v1 and v2.
            if let Some(c) = &l.cpuset_cpus {
                write(&d.join("cpuset.cpus"), c)?;
            }
            if let Some(m) = &l.cpuset_mems {
                write(&d.join("cpuset.mems"), m)?;
            }
        }
        // pids
        if let Some((d, _)) = need("pids", l.pids.is_some())? {
            let v = match l.pids {
                Some(n) if n > 0 => n.to_string(),
                _ => "max".into(),
            };
            write(&d.join("pids.max"), &v)?;
        }
        // block I/O
        let io_wanted = l.blkio_weight.is_some()
            || !l.device_read_bps.is_empty()
            || !l.device_write_bps.is_empty();
        let io_ctl = if self.v1.contains_key("blkio") {
            "blkio"
        } else {
            "io"
        };
        if let Some((d, v1)) = need(io_ctl, io_wanted)? {
            if v1 {
                if let Some(w) = l.blkio_weight {
                    // CFQ's file, or BFQ's on newer kernels.
                    let f = ["blkio.weight", "blkio.bfq.weight"]
                        .iter()
                        .map(|n| d.join(n))
                        .find(|p| p.exists())
                        .ok_or(CgroupError::NoBlkioWeight)?;
                    write(&f, &w.to_string())?;
                }
                for (maj, min, bps) in &l.device_read_bps {
                    write(
                        &d.join("blkio.throttle.read_bps_device"),
                        &format!("{maj}:{min} {bps}"),
                    )?;
                }
                for (maj, min, bps) in &l.device_write_bps {
                    write(
                        &d.join("blkio.throttle.write_bps_device"),
                        &format!("{maj}:{min} {bps}"),
                    )?;
                }
            } else {
                if let Some(w) = l.blkio_weight {
                    write(
                        &d.join("io.weight"),
                        &format!("default {}", blkio_to_io_weight(w)),
                    )?;
                }
                for (maj, min, bps) in &l.device_read_bps {
                    write(&d.join("io.max"), &format!("{maj}:{min} rbps={bps}"))?;
                }
                for (maj, min, bps) in &l.device_write_bps {
                    write(&d.join("io.max"), &format!("{maj}:{min} wbps={bps}"))?;
                }
            }
        }
        // hugetlb
        if let Some((d, v1)) = need("hugetlb", !l.hugetlb.is_empty())? {
            for (size, limit) in &l.hugetlb {
                let f = if v1 {
                    d.join(format!("hugetlb.{size}.limit_in_bytes"))
                } else {
                    d.join(format!("hugetlb.{size}.max"))
                };
                if !f.exists() {
                    return Err(CgroupError::NoHugePages(size.to_string()));
                }
                write(&f, &limit.to_string())?;
            }
        }
        // devices: v1's allowlist files, or on v2 (no files there) an eBPF program attached
        // to the cgroup that answers every device access.
        if let Some(rules) = &l.devices {
            if let Some(d) = self.v1.get("devices") {
                write(&d.join("devices.deny"), "a")?;
                for r in rules {
                    write(&d.join("devices.allow"), &r.v1())?;
                }
            } else if let Some(d) = &self.v2 {
                self.attach_device_filter(d, rules)?;
            }
        }
        Ok(())
    }

    /// Attaches the devices allowlist as a cgroup v2 device program (see [`device_program`]).
    pub fn attach_device_filter(
        &self,
        dir: &Path,
        rules: &[DeviceRule],
    ) -> Result<(), CgroupError> {
        if !dir.join("cgroup.procs").exists() {
            // Not a real cgroup (the unit tests' fake hierarchy): nothing to attach to.
            return Ok(());
        }
        super::sys::attach_device_program(dir, &device_program(rules)).map_err(|source| {
            CgroupError::DeviceFilter {
                path: dir.to_owned(),
                source,
            }
        })
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

    /// The cgroup's v2 directory, opened (for a child born in it, see `fork_into_cgroup`).
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
        let count = |text: String, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        if let Some(d) = self.v1.get("memory") {
            return count(read(&d.join("memory.oom_control")), "oom_kill ") > 0;
        }
        if let Some(d) = &self.v2 {
            return count(read(&d.join("memory.events")), "oom_kill ") > 0;
        }
        false
    }

    /// Memory in use and the limit (bytes; `None`: unlimited).
    pub fn memory(&self) -> (u64, Option<u64>) {
        let num = |p: PathBuf| read(&p).trim().parse::<u64>().ok();
        if let Some(d) = self.v1.get("memory") {
            let used = num(d.join("memory.usage_in_bytes")).unwrap_or(0);
            // v1 reports "no limit" as a huge page-rounded number.
            let limit = num(d.join("memory.limit_in_bytes")).filter(|l| *l < (1 << 60));
            return (used, limit);
        }
        if let Some(d) = &self.v2 {
            return (
                num(d.join("memory.current")).unwrap_or(0),
                num(d.join("memory.max")),
            );
        }
        (0, None)
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
        let (file, value) = if let Some(f) = self.v1.get("freezer") {
            (
                f.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            )
        } else if let Some(d) = &self.v2 {
            (d.join("cgroup.freeze"), if frozen { "1" } else { "0" })
        } else {
            return Err(CgroupError::NoFreezer);
        };
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
        if let Some(f) = self.v1.get("freezer") {
            return read(&f.join("freezer.state")).trim() == "FROZEN";
        }
        self.v2.as_ref().is_some_and(|d| {
            read(&d.join("cgroup.events"))
                .lines()
                .any(|l| l.trim() == "frozen 1")
        })
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

/// Creates `root/rel` and missing parents. For cpuset (v1) each new directory gets its
/// parent's CPUs and memory nodes: a v1 cpuset starts empty, and no task may join it then.
fn create_dirs(root: &Path, rel: &str, cpuset: bool) -> Result<(), CgroupError> {
    // Another container's cleanup may remove the shared parent between two steps here.
    let mut last = None;
    for _ in 0..5 {
        match try_create_dirs(root, rel, cpuset) {
            Ok(()) => return Ok(()),
            Err((true, e)) => last = Some(e),
            Err((false, e)) => return Err(e),
        }
    }
    Err(last.expect("five attempts failed"))
}

/// One attempt; the flag of an error says whether a retry may help (a parent vanished).
fn try_create_dirs(root: &Path, rel: &str, cpuset: bool) -> Result<(), (bool, CgroupError)> {
    let mut dir = root.to_owned();
    for part in Path::new(rel).iter() {
        let parent = dir.clone();
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                let retry = source.kind() == io::ErrorKind::NotFound;
                return Err((retry, CgroupError::Create { path: dir, source }));
            }
        }
        if cpuset {
            // Also when the directory was there already: another boxr may have created it a
            // moment ago and not filled it in yet.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                if read(&dir.join(f)).trim().is_empty() {
                    let v = read(&parent.join(f));
                    if !v.trim().is_empty() {
                        write(&dir.join(f), v.trim()).map_err(|e| (true, e))?;
                    }
                }
            }
        }
    }
    Ok(())
}

// eBPF opcodes of the device program (32-bit ALU, 64-bit jumps).
const LDX_W: u8 = 0x61;
const AND_K: u8 = 0x54;
const RSH_K: u8 = 0x74;
const MOV_X: u8 = 0xbc;
const MOV_K: u8 = 0xb4;
const JNE_K: u8 = 0x55;
const JNE_X: u8 = 0x5d;
const EXIT: u8 = 0x95;

fn ebpf(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    // struct bpf_insn: dst_reg in the low nibble, src_reg in the high one.
    b[1] = (src << 4) | (dst & 0x0f);
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

/// The devices allowlist as a `BPF_PROG_TYPE_CGROUP_DEVICE` program, as runc builds it: the
/// context is `{access_type: (access << 16) | type, major, minor}`; each rule is a block that
/// returns 1 (allow) when the device matches it and the access asked for is within the rule's,
/// else jumps to the next block; after the last, 0 (deny).
pub fn device_program(rules: &[DeviceRule]) -> Vec<[u8; 8]> {
    let mut p = vec![
        ebpf(LDX_W, 2, 1, 0, 0), // r2 = type
        ebpf(AND_K, 2, 0, 0, 0xffff),
        ebpf(LDX_W, 3, 1, 0, 0), // r3 = access
        ebpf(RSH_K, 3, 0, 0, 16),
        ebpf(LDX_W, 4, 1, 4, 0), // r4 = major
        ebpf(LDX_W, 5, 1, 8, 0), // r5 = minor
    ];
    for r in rules {
        // Each check jumps to the end of the block when it fails; NEXT marks that.
        const NEXT: i16 = i16::MIN;
        let mut block = Vec::new();
        match r.kind {
            'c' => block.push(ebpf(JNE_K, 2, 0, NEXT, 2)),
            'b' => block.push(ebpf(JNE_K, 2, 0, NEXT, 1)),
            _ => {}
        }
        let mask: i32 = r
            .access
            .chars()
            .map(|c| match c {
                'm' => 1,
                'r' => 2,
                'w' => 4,
                _ => 0,
            })
            .sum();
        if r.kind != 'a' && mask != 7 {
            block.push(ebpf(MOV_X, 1, 3, 0, 0));
            block.push(ebpf(AND_K, 1, 0, 0, mask));
            block.push(ebpf(JNE_X, 1, 3, NEXT, 0));
        }
        if let Some(m) = r.major {
            block.push(ebpf(JNE_K, 4, 0, NEXT, m as i32));
        }
        if let Some(m) = r.minor {
            block.push(ebpf(JNE_K, 5, 0, NEXT, m as i32));
        }
        block.push(ebpf(MOV_K, 0, 0, 0, 1));
        block.push(ebpf(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if i16::from_ne_bytes([ins[2], ins[3]]) == NEXT {
                let off = (len - i - 1) as i16;
                ins[2..4].copy_from_slice(&off.to_ne_bytes());
            }
        }
        p.extend(block);
    }
    p.push(ebpf(MOV_K, 0, 0, 0, 0));
    p.push(ebpf(EXIT, 0, 0, 0, 0));
    p
}

/// Cleans up after one cgroup journal entry (the JSON of a [`Cgroup`]) a killed boxr left:
/// removes the cgroup unless a process is still in it (a running container's). `Ok(true)`: the
/// cgroup is gone and the entry may go; `Ok(false)`: in use, the entry stays. A torn entry (its
/// writer died before creating anything) counts as gone.
pub fn clean_journal_entry(entry: &[u8]) -> Result<bool, String> {
    let Ok(cg) = serde_json::from_slice::<Cgroup>(entry) else {
        return Ok(true);
    };
    if !cg.pids().is_empty() {
        return Ok(false);
    }
    cg.remove().map_err(|e| e.to_string())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn layouts_are_detected() {
        let h = Layout::from_mountinfo(HYBRID);
        assert_eq!(h.kind(), "hybrid");
        assert_eq!(h.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        assert!(!h.v1.contains_key("name=systemd"));
        assert_eq!(h.v2, Some(PathBuf::from("/sys/fs/cgroup/unified")));
        let v2 = Layout::from_mountinfo(
            "25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(v2.kind(), "v2");
        let v1 = Layout::from_mountinfo(
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(v1.kind(), "v1");
        assert_eq!(v1.v1["cpu"], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"));
        // A hierarchy mounted from a sub-cgroup (a container's view) is not a root: skipped.
        let inner = Layout::from_mountinfo(
            "32 31 0:29 /docker/x /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n",
        );
        assert_eq!(inner.kind(), "none");
    }

    /// A fake v2 hierarchy in a temp dir, with the files the kernel would have.
    fn fake_v2() -> (tempfile::TempDir, Layout) {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        fs::write(d.path().join("cgroup.subtree_control"), "").unwrap();
        let layout = Layout {
            v1: BTreeMap::new(),
            v2: Some(d.path().to_owned()),
        };
        (d, layout)
    }

    #[test]
    fn v2_limits_are_written_as_the_kernel_wants_them() {
        let (d, layout) = fake_v2();
        // The kernel creates a cgroup's files; the fake makes them before the limits land.
        let dir = d.path().join("boxr/c1");
        fs::create_dir_all(&dir).unwrap();
        for f in ["memory.swap.max", "hugetlb.2MB.max"] {
            fs::write(dir.join(f), "").unwrap();
        }
        let limits = Limits {
            memory: Some(64 << 20),
            memory_reservation: Some(32 << 20),
            cpus: Some(0.5),
            cpu_shares: Some(512),
            cpuset_cpus: Some("0".into()),
            pids: Some(64),
            blkio_weight: Some(500),
            device_read_bps: vec![(8, 0, 1_048_576)],
            hugetlb: [("2MB".to_string(), 4 << 20)].into(),
            ..Default::default()
        };
        let cg = Cgroup::create(&layout, "boxr/c1", &limits).unwrap();
        assert_eq!(cg.v2.as_deref(), Some(dir.as_path()));
        let r = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(r("memory.max"), "67108864");
        assert_eq!(
            r("memory.swap.max"),
            "67108864",
            "as much swap again, as Docker"
        );
        assert_eq!(r("memory.low"), "33554432");
        assert_eq!(r("cpu.max"), "50000 100000");
        assert_eq!(r("cpu.weight"), "20");
        assert_eq!(r("cpuset.cpus"), "0");
        assert_eq!(r("pids.max"), "64");
        assert_eq!(r("io.weight"), "default 4950");
        assert_eq!(r("io.max"), "8:0 rbps=1048576");
        assert_eq!(r("hugetlb.2MB.max"), "4194304");
        // Controllers were enabled down the path.
        assert!(
            fs::read_to_string(d.path().join("cgroup.subtree_control"))
                .unwrap()
                .starts_with('+')
        );
    }

    #[test]
    fn v1_limits_and_devices() {
        let d = tempfile::tempdir().unwrap();
        let mut layout = Layout::default();
        for c in ["memory", "cpu", "cpuset", "pids", "devices"] {
            let root = d.path().join(c);
            fs::create_dir_all(&root).unwrap();
            layout.v1.insert(c.into(), root);
        }
        fs::write(d.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(d.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        fs::create_dir_all(d.path().join("memory/boxr/c1")).unwrap();
        fs::write(
            d.path().join("memory/boxr/c1/memory.memsw.limit_in_bytes"),
            "",
        )
        .unwrap();
        let limits = Limits {
            memory: Some(32 << 20),
            cpus: Some(1.5),
            pids: Some(-1),
            devices: Some(default_devices()),
            ..Default::default()
        };
        let cg = Cgroup::create(&layout, "boxr/c1", &limits).unwrap();
        let r = |f: &str| fs::read_to_string(d.path().join(f)).unwrap();
        assert_eq!(r("memory/boxr/c1/memory.limit_in_bytes"), "33554432");
        assert_eq!(r("memory/boxr/c1/memory.memsw.limit_in_bytes"), "67108864");
        assert_eq!(r("cpu/boxr/c1/cpu.cfs_quota_us"), "150000");
        assert_eq!(r("pids/boxr/c1/pids.max"), "max");
        // A new v1 cpuset inherits its parent's sets, or no task could join it.
        assert_eq!(r("cpuset/boxr/c1/cpuset.cpus"), "0-1");
        assert_eq!(r("cpuset/boxr/c1/cpuset.mems"), "0");
        // The fake file keeps only the last write: the last allow rule.
        assert_eq!(r("devices/boxr/c1/devices.allow"), "c 136:* rwm");
        assert_eq!(cg.v1.len(), 5);
    }

    #[test]
    fn a_missing_controller_is_a_clear_error() {
        let (_d, layout) = fake_v2();
        let limits = Limits {
            blkio_weight: Some(100),
            ..Default::default()
        };
        let mut no_io = layout.clone();
        fs::write(
            no_io.v2.as_mut().unwrap().join("cgroup.controllers"),
            "memory pids\n",
        )
        .unwrap();
        let e = Cgroup::create(&no_io, "boxr/c2", &limits)
            .unwrap_err()
            .to_string();
        assert!(e.contains("io cgroup controller is not available"), "{e}");
    }

    #[test]
    fn the_device_program_jumps_stay_in_bounds() {
        let p = device_program(&default_devices());
        let n = p.len() as i64;
        for (i, ins) in p.iter().enumerate() {
            if ins[0] == JNE_K || ins[0] == JNE_X {
                let off = i16::from_ne_bytes([ins[2], ins[3]]) as i64;
                let target = i as i64 + 1 + off;
                assert!(off > 0 && target < n, "jump at {i} to {target} of {n}");
                // Every jump lands right after an exit: the start of the next block.
                assert_eq!(p[target as usize - 1][0], EXIT, "jump at {i}");
            }
        }
        assert_eq!(p.last().unwrap()[0], EXIT);
    }

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
