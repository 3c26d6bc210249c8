//! `boxr exec`: a process started in a running container, joining its cgroup and every one of
//! its namespaces, under the container's own confinement (capabilities, seccomp,
//! no_new_privs).
//!
//! The caller becomes the exec helper (in place when it has one thread, else by exec'ing the
//! sandbox runtime's `__exec`). The helper stays in the host's PID
//! namespace (so the container cannot see it) and forks into the container's a child that
//! confines itself (non-dumpable from before its capabilities drop) and execs boxr-init from a
//! sealed copy, which execs the command: no process of the container ever runs from a file of
//! the host's (CVE-2019-5736; see `stub`). The helper relays signals and exits with the
//! command's status.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use super::error::fail;
use super::fds::{cloexec_all_fds, read_spec_fd, spec_memfd, stdin_from_dev_null};
use super::spec::ProcessSpec;
use super::stub::{How, Stub};
use super::userns::enter_userns_as_root;
use super::{SandboxError, SecuritySpec, SetupError, process, sys};

/// What to start where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container's init, as the host sees it.
    pub pid: i32,
    /// Its start time (the pid must still name that process).
    pub pid_start: u64,
    /// The container's cgroup directories.
    pub cgroup_dirs: Vec<PathBuf>,
    pub process: ProcessSpec,
    pub security: SecuritySpec,
}

/// The hidden subcommand.
pub const EXEC_ARG: &str = "__exec";

/// Makes this process the exec helper for `spec`. Returns only on failure.
///
/// With one thread, in place, as a foreground `boxr run` becomes its helper (see
/// `sandbox::exec`): nothing of this process reaches the container (every descriptor is
/// close-on-exec before anything is exec'd there, and boxr-init is exec'd with an empty
/// environment). Otherwise it execs the runtime.
pub fn exec(spec: &ExecSpec) -> SandboxError {
    use std::os::unix::process::CommandExt;
    // Checked all the same, as for any start.
    let bin = match super::binary() {
        Ok(b) => b,
        Err(e) => return e,
    };
    if sys::single_threaded().is_some() {
        std::process::exit(main_with(spec));
    }
    let fd = match spec_memfd(spec, false) {
        Ok(fd) => fd,
        Err(e) => return SandboxError::Prepare(e),
    };
    let source = std::process::Command::new(&bin)
        .arg0("boxr-exec")
        .args([EXEC_ARG, "--spec-fd", &fd.as_raw_fd().to_string()])
        .env_clear()
        .exec();
    SandboxError::Spawn { path: bin, source }
}

/// `exec -d`: starts the exec helper in the background, in a process group of its own with its
/// output on /dev/null, and returns once it runs.
pub fn spawn_detached(spec: &ExecSpec) -> Result<(), SandboxError> {
    use std::os::unix::process::CommandExt;
    let bin = super::binary()?;
    let fd = spec_memfd(spec, true).map_err(SandboxError::Prepare)?;
    std::process::Command::new(&bin)
        .arg0("boxr-exec")
        .args([EXEC_ARG, "--spec-fd", "0"])
        .env_clear()
        .stdin(std::process::Stdio::from(fd))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|source| SandboxError::Spawn { path: bin, source })
}

/// `boxr __exec --spec-fd N`.
pub fn main(spec_fd: i32) -> i32 {
    let spec: ExecSpec = match read_spec_fd(spec_fd) {
        Ok(s) => s,
        Err(e) => return fail(125, &e),
    };
    // `exec -d` passes the spec on stdin: the command reads /dev/null instead.
    if spec_fd == 0
        && let Err(e) = stdin_from_dev_null()
    {
        return fail(125, &e);
    }
    main_with(&spec)
}

/// The exec helper's work for `spec`, read already: in the runtime's process, or in a `boxr
/// exec` that becomes the helper without an exec (see [`exec`]).
fn main_with(spec: &ExecSpec) -> i32 {
    cloexec_all_fds();
    if super::process_start_time(spec.pid) != Some(spec.pid_start) {
        return fail(125, "the container is not running");
    }
    // The cgroup first: the command is forked inside it.
    for d in &spec.cgroup_dirs {
        // v1: this (single-threaded) process moves itself through `tasks`, which spares the
        // kernel's global threadgroup lock and its RCU wait; v2 has only `cgroup.procs`.
        let file = if d.join("tasks").exists() {
            "tasks"
        } else {
            "cgroup.procs"
        };
        if let Err(e) = std::fs::write(d.join(file), "0") {
            return fail(
                125,
                SetupError::io(format!("cannot join the cgroup {}", d.display()))(e),
            );
        }
    }
    // Checked here: in the container's mount namespace /proc no longer shows this process.
    let Some(single) = sys::single_threaded() else {
        return fail(125, "the exec helper must be single-threaded");
    };
    // Every namespace descriptor is opened before any is entered (the mount namespace changes
    // what /proc is).
    // A container with a user namespace is joined in it first (as its root): its other
    // namespaces belong to it, and nothing of the exec'd command keeps the host's privileges.
    let own_userns = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/user")).ok();
    let same_userns = match (own_userns("self"), own_userns(&spec.pid.to_string())) {
        (Some(a), Some(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        _ => true,
    };
    let userns = if same_userns {
        None
    } else {
        match File::open(format!("/proc/{}/ns/user", spec.pid)) {
            Ok(f) => Some(f),
            Err(e) => return fail(125, SetupError::io("cannot open the user namespace")(e)),
        }
    };
    let kinds = [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ];
    let mut fds = Vec::new();
    for (name, flag) in kinds {
        match File::open(format!("/proc/{}/ns/{name}", spec.pid)) {
            Ok(f) => fds.push((name, flag, f)),
            Err(e) => {
                return fail(
                    125,
                    SetupError::io(format!("cannot open the {name} namespace"))(e),
                );
            }
        }
    }
    // The pid is checked again now that its namespaces are held open.
    if super::process_start_time(spec.pid) != Some(spec.pid_start) {
        return fail(125, "the container is not running");
    }
    // The network namespace is joined first, as the host's root: it may not be the user
    // namespace's (`--network host` or a joined one), and then only the host's root may.
    // The others are joined as the user namespace's root.
    let (net, others): (Vec<_>, Vec<_>) = fds.into_iter().partition(|(name, ..)| *name == "net");
    let join = |list: &[(&str, CloneFlags, File)]| {
        for (name, flag, f) in list {
            setns(f, *flag).map_err(SetupError::at(format!(
                "cannot join the container's {name} namespace"
            )))?;
        }
        Ok::<(), SetupError>(())
    };
    if let Err(m) = join(&net) {
        return fail(125, &m);
    }
    if let Some(u) = userns
        && let Err(e) = enter_userns_as_root(&u.into())
    {
        return fail(
            125,
            SetupError::at("cannot join the container's user namespace")(e),
        );
    }
    if let Err(m) = join(&others) {
        return fail(125, &m);
    }
    drop((net, others));
    // `-t`: a pty of the container's own devpts (our root is the container's now).
    let pty = match spec.process.tty.then(super::tty::open_pair).transpose() {
        Ok(p) => p,
        Err(m) => return fail(125, &m),
    };
    let relayed = super::relay::relayed();
    if let Err(e) = relayed.thread_block() {
        return fail(125, SetupError::at("cannot block signals")(e));
    }
    match sys::fork_checked(single) {
        Ok(ForkResult::Child) => {
            // In the container's PID namespace now. Entering its mount namespace made its root
            // our root and working directory.
            let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if let Some((master, slave)) = pty {
                drop(master);
                if let Err(m) = super::tty::become_controlled(&slave) {
                    std::process::exit(fail(125, &m));
                }
            }
            let e = match (process::resolve(&spec.process), Stub::new()) {
                (Ok(p), Ok(stub)) => {
                    // Non-dumpable as its capabilities drop to the container's: it runs from
                    // the host's file until it execs boxr-init.
                    let _ = nix::sys::prctl::set_dumpable(false);
                    match super::confine::apply(&p, &spec.security)
                        .and_then(|()| process::prepare(&p))
                    {
                        Ok(cmd) => stub.exec(&How::default(), &cmd),
                        Err(e) => e,
                    }
                }
                (Err(e), _) => e,
                (_, Err(e)) => process::start_err(125, e.to_string()),
            };
            std::process::exit(fail(e.code, &e.message));
        }
        Ok(ForkResult::Parent { child }) => match pty {
            Some((master, slave)) => {
                drop(slave);
                super::tty::proxy(master, child, &relayed, spec.process.stdin)
            }
            None => super::relay::wait_relaying(child, &relayed),
        },
        Err(e) => fail(125, format!("fork: {}", e.desc())),
    }
}
