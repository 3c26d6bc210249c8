//! cgroup v1: one hierarchy per controller (or a few co-mounted), the file names and units of
//! v1, and the creation of a container's directory in each (a new cpuset gets its parent's
//! sets).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::devices::DeviceRule;
use super::{CgroupError, Limits, PERIOD_US, Version, read, write};

/// The v1 form of every limit.
pub(super) struct V1;

impl Version for V1 {
    fn memory(&self, d: &Path, l: &Limits, swap: Option<i64>) -> Result<(), CgroupError> {
        // memory ≤ memory+swap at every step: a memory limit raised above the current memsw
        // limit goes after the memsw one (an update), else before it.
        let memsw = d.join("memory.memsw.limit_in_bytes");
        let current_memsw: i64 = fs::read_to_string(&memsw)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(i64::MAX);
        let memsw_first = l.memory.is_some_and(|m| m as i64 > current_memsw) || swap == Some(-1);
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
        Ok(())
    }

    fn cpu(&self, d: &Path, quota: Option<u64>, shares: Option<u64>) -> Result<(), CgroupError> {
        if let Some(q) = quota {
            write(&d.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
            write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
        }
        if let Some(s) = shares {
            write(&d.join("cpu.shares"), &s.to_string())?;
        }
        Ok(())
    }

    fn io(&self, d: &Path, l: &Limits) -> Result<(), CgroupError> {
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
        Ok(())
    }

    fn hugetlb_file(&self, d: &Path, size: &str) -> PathBuf {
        d.join(format!("hugetlb.{size}.limit_in_bytes"))
    }

    fn devices(&self, d: &Path, rules: &[DeviceRule]) -> Result<(), CgroupError> {
        write(&d.join("devices.deny"), "a")?;
        for r in rules {
            write(&d.join("devices.allow"), &r.v1())?;
        }
        Ok(())
    }

    fn oom_kills(&self, d: &Path) -> u64 {
        super::count(&read(&d.join("memory.oom_control")), "oom_kill ")
    }

    fn memory_usage(&self, d: &Path) -> (u64, Option<u64>) {
        let num = |p: PathBuf| read(&p).trim().parse::<u64>().ok();
        let used = num(d.join("memory.usage_in_bytes")).unwrap_or(0);
        // v1 reports "no limit" as a huge page-rounded number.
        let limit = num(d.join("memory.limit_in_bytes")).filter(|l| *l < (1 << 60));
        (used, limit)
    }

    fn freeze_file(&self, d: &Path, frozen: bool) -> (PathBuf, &'static str) {
        (
            d.join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        )
    }

    fn is_frozen(&self, d: &Path) -> bool {
        read(&d.join("freezer.state")).trim() == "FROZEN"
    }
}

/// Creates `root/rel` and missing parents. For cpuset (v1) each new directory gets its
/// parent's CPUs and memory nodes: a v1 cpuset starts empty, and no task may join it then.
pub(super) fn create_dirs(root: &Path, rel: &str, cpuset: bool) -> Result<(), CgroupError> {
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
