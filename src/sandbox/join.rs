//! Joining namespaces that already exist: another container's (`--network container:`,
//! `--ipc container:`, `--pid container:`) or a named one (`--network ns:PATH`).

use std::fs::File;

use nix::sched::CloneFlags;

use super::SetupError;
use super::spec::{NetworkMode, NsShare, SandboxSpec};
use crate::platform::process_start_time;

/// Joins the network namespace the spec names (`Join`, `Sandbox`), if any.
pub(super) fn join_network(spec: &SandboxSpec) -> Result<(), SetupError> {
    let (ns, what) = match &spec.network {
        NetworkMode::None | NetworkMode::Host => return Ok(()),
        NetworkMode::Join(path) => {
            let what = format!("cannot join the network namespace {}", path.display());
            (File::open(path).map_err(SetupError::io(&what))?, what)
        }
        NetworkMode::Sandbox(pid_file) => {
            let what = "of the container whose network is shared";
            let (f, _) = sandbox_ns(pid_file, "net", what)?;
            (f, format!("cannot join the network namespace {what}"))
        }
    };
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(SetupError::at(what))
}

/// Namespace `kind` (`net`, `pid`, ...) of the sandbox whose helper wrote `pid_file`, if it
/// still runs, and that sandbox's init pid. `what` names the sandbox in the error.
pub(super) fn sandbox_ns(
    pid_file: &std::path::Path,
    kind: &'static str,
    what: &str,
) -> Result<(File, i32), SetupError> {
    let not_running = || SetupError::NotRunning {
        kind,
        what: what.to_owned(),
    };
    let text = std::fs::read_to_string(pid_file).map_err(|_| not_running())?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (it.next(), it.next()) else {
        return Err(not_running());
    };
    let pid = i32::try_from(pid).map_err(|_| not_running())?;
    let ns = File::open(format!("/proc/{pid}/ns/{kind}")).map_err(|_| not_running())?;
    // Checked once the namespace is held: the pid was not reused in between.
    if process_start_time(pid) != Some(start) {
        return Err(not_running());
    }
    Ok((ns, pid))
}

/// Joins the shared namespace `share` of kind `kind` if it is another sandbox's; whether the
/// sandbox needs one of its own (`Private`). Returns the other sandbox's init pid, if any.
pub(super) fn join_shared(
    share: &NsShare,
    kind: &'static str,
    flag: CloneFlags,
) -> Result<(bool, Option<i32>), SetupError> {
    match share {
        NsShare::Private => Ok((true, None)),
        NsShare::Host => Ok((false, None)),
        NsShare::Sandbox(pid_file) => {
            let (f, pid) = sandbox_ns(pid_file, kind, "of the container")?;
            nix::sched::setns(&f, flag).map_err(SetupError::at(format!(
                "cannot join the {kind} namespace of the container"
            )))?;
            Ok((false, Some(pid)))
        }
    }
}
