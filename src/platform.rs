//! The platform boxr runs on, in OCI's words (what image configs and a registry's index name),
//! and what it says of a process (its start time: with the pid, a name that is never reused).
//!
//! A leaf module: it imports no other module of boxr.

/// The OCI architecture name of this build of boxr.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The OCI operating system name of this build of boxr.
pub fn os() -> &'static str {
    "linux"
}

/// The start time of process `pid` (field 22 of /proc/PID/stat, in clock ticks since boot):
/// with the pid it names one process for good. `None` when no such process is alive: a zombie
/// (an init whose parent, the monitor, was killed and has not been reaped yet) has ended.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    if matches!(fields.next(), Some("Z" | "X" | "x")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether this process runs in a user namespace other than the host's: its uid map is not the
/// identity over every id (`0 0 4294967295`). Read each time (a process may join one).
pub fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|m| !is_identity_map(&m))
        .unwrap_or(false)
}

fn is_identity_map(map: &str) -> bool {
    let lines: Vec<Vec<&str>> = map
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    matches!(lines.as_slice(), [f] if f.as_slice() == ["0", "0", "4294967295"])
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_full_identity_map_is_the_hosts() {
        assert!(super::is_identity_map("         0          0 4294967295\n"));
        assert!(!super::is_identity_map("0 1000 1\n1 100000 65536\n"));
        assert!(!super::is_identity_map("0 0 1\n"));
    }
}
