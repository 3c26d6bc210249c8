//! `boxr top`: the processes of a running container (every process of its cgroup), as the
//! host sees them.

use super::state::{self, Info, Status};
use super::{ContainerError, invalid};

/// One process of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The real uid on the host (`?` when the process is gone).
    pub uid: String,
    pub pid: i32,
    pub ppid: String,
    /// Its arguments, joined by spaces.
    pub cmd: String,
}

/// The container's processes, in the cgroup's order.
pub fn processes(info: &Info) -> Result<Vec<Process>, ContainerError> {
    if !matches!(state::status(info), Status::Running { .. }) {
        return Err(invalid(
            format!(
                "container {} is not running",
                info.name.as_deref().unwrap_or(&info.id)
            ),
            None,
        ));
    }
    let cg = state::cgroup(info).ok_or_else(|| invalid("the container has no cgroup", None))?;
    Ok(cg.pids().into_iter().map(process).collect())
}

/// What /proc says of `pid`.
fn process(pid: i32) -> Process {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Process {
        uid: field("Uid:"),
        pid,
        ppid: field("PPid:"),
        cmd,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_live_process() {
        let me = std::process::id() as i32;
        let p = super::process(me);
        assert_eq!(p.pid, me);
        assert_eq!(p.uid, nix::unistd::getuid().to_string());
        assert_eq!(p.ppid, std::os::unix::process::parent_id().to_string());
        assert!(!p.cmd.is_empty());
    }
}
