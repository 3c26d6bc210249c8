//! `boxr stats`: what running containers use, from their cgroups: CPU over an interval (the
//! CPU time of the cgroup's processes, from /proc, which every cgroup layout has), memory
//! against its limit, and the number of processes.

use std::time::{Duration, Instant};

use super::state::{self, Info};

/// One container's use, as `docker stats` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Sample {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    /// Percent of one CPU over the interval.
    pub cpu_percent: f64,
    pub memory_used: u64,
    pub memory_limit: Option<u64>,
    #[serde(rename = "PIDs")]
    pub pids: usize,
}

/// CPU time (ns) of processes, from /proc.
fn cpu_ns(pids: &[i32]) -> u64 {
    let tick = 1_000_000_000 / 100; // USER_HZ
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split(' ').collect();
            Some((f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?) * tick)
        })
        .sum()
}

/// One sample of each container over `interval` (containers without a cgroup are left out).
pub fn sample(infos: &[Info], interval: Duration) -> Vec<Sample> {
    let cgroups: Vec<_> = infos.iter().map(state::cgroup).collect();
    let first: Vec<u64> = cgroups
        .iter()
        .map(|c| c.as_ref().map_or(0, |c| cpu_ns(&c.pids())))
        .collect();
    let t0 = Instant::now();
    std::thread::sleep(interval);
    let wall = t0.elapsed().as_nanos().max(1) as f64;
    infos
        .iter()
        .zip(&cgroups)
        .zip(first)
        .filter_map(|((info, cg), before)| {
            let cg = cg.as_ref()?;
            let pids = cg.pids();
            let (used, limit) = cg.memory();
            Some(Sample {
                id: info.id.clone(),
                name: info.name.clone().unwrap_or_default(),
                cpu_percent: cpu_ns(&pids).saturating_sub(before) as f64 / wall * 100.0,
                memory_used: used,
                memory_limit: limit,
                pids: pids.len(),
            })
        })
        .collect()
}
