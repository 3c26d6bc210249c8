//! cgroup v2: one hierarchy for every controller, enabled down the path through
//! `cgroup.subtree_control`; the file names and units of v2 (Docker's v1 values converted as
//! runc converts them) and the devices allowlist as an eBPF program.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::devices::{DeviceRule, device_program};
use super::{CgroupError, Layout, Limits, PERIOD_US, Version, read, write};

/// The v2 form of every limit.
pub(super) struct V2;

impl Version for V2 {
    fn memory(&self, d: &Path, l: &Limits, swap: Option<i64>) -> Result<(), CgroupError> {
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
        Ok(())
    }

    fn cpu(&self, d: &Path, quota: Option<u64>, shares: Option<u64>) -> Result<(), CgroupError> {
        if let Some(q) = quota {
            write(&d.join("cpu.max"), &format!("{q} {PERIOD_US}"))?;
        }
        if let Some(s) = shares {
            write(&d.join("cpu.weight"), &shares_to_weight(s).to_string())?;
        }
        Ok(())
    }

    fn io(&self, d: &Path, l: &Limits) -> Result<(), CgroupError> {
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
        Ok(())
    }

    fn hugetlb_file(&self, d: &Path, size: &str) -> PathBuf {
        d.join(format!("hugetlb.{size}.max"))
    }

    /// v2 has no device files: an eBPF program attached to the cgroup answers every device
    /// access (see [`device_program`]).
    fn devices(&self, d: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        if !d.join("cgroup.procs").exists() {
            // Not a real cgroup (the unit tests' fake hierarchy): nothing to attach to.
            return Ok(());
        }
        crate::sandbox::sys::attach_device_program(d, &device_program(rules)).map_err(|source| {
            CgroupError::DeviceFilter {
                path: d.to_owned(),
                source,
            }
        })
    }

    fn oom_kills(&self, d: &Path) -> u64 {
        super::count(&read(&d.join("memory.events")), "oom_kill ")
    }

    fn memory_usage(&self, d: &Path) -> (u64, Option<u64>) {
        let num = |p: PathBuf| read(&p).trim().parse::<u64>().ok();
        (
            num(d.join("memory.current")).unwrap_or(0),
            num(d.join("memory.max")),
        )
    }

    fn freeze_file(&self, d: &Path, frozen: bool) -> (PathBuf, &'static str) {
        (d.join("cgroup.freeze"), if frozen { "1" } else { "0" })
    }

    fn is_frozen(&self, d: &Path) -> bool {
        read(&d.join("cgroup.events"))
            .lines()
            .any(|l| l.trim() == "frozen 1")
    }
}

/// Creates `root/rel`, enabling down the path the controllers v1 does not have (all of them on
/// a pure v2 host). Directories already there are reused.
pub(super) fn create(layout: &Layout, root: &Path, rel: &str) -> Result<PathBuf, CgroupError> {
    let available = layout.v2_controllers();
    let wanted: Vec<&String> = available
        .iter()
        .filter(|c| !layout.v1.contains_key(*c))
        .collect();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut dir = root.to_owned();
        let mut vanished = false;
        for part in Path::new(rel).iter() {
            for c in &wanted {
                // Best effort: a controller another cgroup uses in "threaded" mode, or one that
                // is busy, just stays off.
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
            return Ok(dir);
        }
    }
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

/// The cgroup this process is in on the v2 hierarchy (`0::PATH` of /proc/self/cgroup), without
/// its leading `/`.
pub fn own_path() -> Option<String> {
    fs::read_to_string("/proc/self/cgroup")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(|p| p.trim_start_matches('/').to_owned())
}

/// The subtree of a pure v2 hierarchy delegated to user `uid` that holds cgroup `own` (a
/// process's, see [`own_path`]): the topmost directory on its path that the user owns, as
/// systemd hands `user@UID.service` to the user's manager. Its path under the root, or `None`
/// when the host is not pure v2 or nothing on the path is the user's: then a rootless boxr
/// cannot make cgroups.
pub fn delegated_base(layout: &Layout, own: &str, uid: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let root = layout.v2.as_ref().filter(|_| layout.v1.is_empty())?;
    let mut dir = root.clone();
    let mut rel = PathBuf::new();
    for part in Path::new(own).iter() {
        dir.push(part);
        rel.push(part);
        let owned = |p: &Path| fs::metadata(p).is_ok_and(|m| m.uid() == uid);
        if owned(&dir) && owned(&dir.join("cgroup.subtree_control")) {
            return Some(rel.to_string_lossy().into_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_match_runc() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }
}
