//! The sandbox helper: a single-threaded process (the runtime, `boxr-sandbox __sandbox`, which
//! receives its `SandboxSpec` over an inherited descriptor; or a single-threaded `boxr run`
//! itself, see `sandbox::exec`) that forks the sandbox's first process into new namespaces,
//! relays signals to it, and exits with its status.
//!
//! Order matters here:
//! 1. Signals to relay are blocked *before* fork, so none is lost between fork and the wait loop.
//! 2. The helper itself only unshares the PID namespace (which applies to its children). The
//!    child unshares mount/UTS/IPC/network itself: `pivot_root` moves the root of every process
//!    in the mount namespace that shares the old root, and the helper must keep the host's.
//! 3. The child reports failures before it becomes the init over a pipe it then closes: EOF
//!    means it reached the init, which reports its own failures on stderr and in its exit
//!    status.
//!
//! The helper runs from its file, and so does the first process while it sets the container up,
//! before any process of the container exists (or, in a shared PID namespace, with all
//! capabilities, which a container process may not trace). Non-dumpable from before it drops
//! them, the first process then execs boxr-init from a sealed copy (see `stub`), which is what
//! stays in the container (CVE-2019-5736).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, pipe2};

use super::cgroup::{Cgroup, Layout};
use super::error::fail;
use super::fds::{cloexec_all_fds, read_spec_fd, stdin_from_dev_null};
use super::join::join_shared;
use super::process::StartError;
use super::relay::{relayed, wait_relaying};
use super::spec::{NsShare, SandboxSpec};
use super::sys;
use super::userns::{UsernsSetup, first_process_userns};
use super::{Ended, Recorder, SetupError};

/// The helper's main: returns the exit code of `boxr run`.
pub fn main(spec_fd: i32, recorder: &dyn Recorder) -> i32 {
    let spec: SandboxSpec = match read_spec_fd(spec_fd) {
        Ok(s) => s,
        Err(e) => return fail(125, &e),
    };
    if spec_fd == 0
        && let Err(e) = stdin_from_dev_null()
    {
        return fail(125, &e);
    }
    main_with(&spec, recorder)
}

/// The helper's work for `spec`, read already: in the runtime's process, or in a foreground
/// `boxr run` that becomes the helper without an exec (see `sandbox::exec`).
pub(super) fn main_with(spec: &SandboxSpec, recorder: &dyn Recorder) -> i32 {
    if spec.die_with_parent {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        // The parent may have died before the line above: then nobody waits for us.
        if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
            return fail(125, "the build that started this step is gone");
        }
    }
    if let Some(fd) = spec.keep_fd {
        // Held (the store lock) until this process exits, but not by the container.
        let _ = sys::set_cloexec(fd);
    }
    cloexec_all_fds();
    match run(spec, recorder) {
        Outcome::Exited(end) => {
            // Children of this process were to be born in the sandbox's PID namespace, whose
            // init is gone: a fork would fail (ENOMEM). The recorder may start programs.
            if let Ok(own) = File::open("/proc/self/ns/pid") {
                let _ = nix::sched::setns(&own, CloneFlags::CLONE_NEWPID);
            }
            recorder.ended(spec, end);
            end.code()
        }
        // The monitor reaps the container and finishes it (`boxr-sandbox __finish`).
        Outcome::Detached => 0,
    }
}

/// `boxr-sandbox __finish --spec-fd N --code C`: what the helper of a foreground sandbox does
/// when its init has exited, for a detached one, run by its monitor once it has reaped the
/// init: the OOM check, the cgroup's removal (killing whatever is left in it first), then the
/// owner's record of the end (`recorder`). Returns the sandbox's exit code.
pub fn finish_main(spec_fd: i32, code: i32, recorder: &dyn Recorder) -> i32 {
    let spec: SandboxSpec = match read_spec_fd(spec_fd) {
        Ok(s) => s,
        Err(e) => return fail(125, &e),
    };
    let cgroup = spec.cgroup.as_ref().and_then(|c| {
        Layout::detect()
            .ok()
            .map(|layout| Cgroup::existing(&layout, &c.path))
    });
    let end = finish(&spec, cgroup.as_ref(), code);
    recorder.ended(&spec, end);
    end.code()
}

/// How the helper's sandbox ended.
enum Outcome {
    /// Its init exited (or it could not start: 125, 126, 127).
    Exited(Ended),
    /// It runs, detached: the monitor has it now.
    Detached,
}

pub use crate::platform::process_start_time;

/// What the helper knows when the sandbox has ended.
fn finish(spec: &SandboxSpec, cgroup: Option<&Cgroup>, code: i32) -> Ended {
    let oom = cgroup.is_some_and(Cgroup::oom_killed);
    if let Some(cg) = cgroup {
        match cg.destroy() {
            Ok(()) => {
                if let Some(j) = spec.cgroup.as_ref().and_then(|c| c.journal.as_ref()) {
                    let _ = std::fs::remove_file(j);
                }
            }
            Err(e) => eprintln!("boxr: {e}"),
        }
    }
    if oom {
        let limit = spec
            .cgroup
            .as_ref()
            .and_then(|c| c.limits.memory)
            .map(|m| format!(" (limit {} MiB)", m >> 20))
            .unwrap_or_default();
        eprintln!("boxr: the container ran out of memory{limit}: the kernel's OOM killer ended it");
    }
    Ended { code, oom }
}

/// Creates the sandbox's cgroup (journaled first, so a killed boxr leaves nothing `boxr gc`
/// cannot find).
fn create_cgroup(spec: &SandboxSpec) -> Result<Option<Cgroup>, SetupError> {
    let Some(c) = &spec.cgroup else {
        return Ok(None);
    };
    let layout = Layout::detect().map_err(SetupError::io("cgroup: cannot read the mount table"))?;
    let planned = Cgroup {
        v1: layout
            .v1
            .iter()
            .map(|(k, root)| (k.clone(), root.join(&c.path)))
            .collect(),
        v2: layout.v2.as_ref().map(|r| r.join(&c.path)),
    };
    if let Some(j) = &c.journal {
        std::fs::write(j, serde_json::to_vec(&planned).expect("serializes"))
            .map_err(SetupError::io(format!("cannot write {}", j.display())))?;
    }
    match Cgroup::create(&layout, &c.path, &c.limits) {
        Ok(cg) => Ok(Some(cg)),
        Err(e) => {
            if let Some(j) = &c.journal {
                let _ = std::fs::remove_file(j);
            }
            Err(e.into())
        }
    }
}

fn run(spec: &SandboxSpec, recorder: &dyn Recorder) -> Outcome {
    let cgroup = match create_cgroup(spec) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Exited(Ended {
                code: fail(125, &e),
                oom: false,
            });
        }
    };
    match run_in(spec, cgroup.as_ref(), recorder) {
        Ok(None) => Outcome::Detached,
        Ok(Some(code)) => Outcome::Exited(finish(spec, cgroup.as_ref(), code)),
        Err(code) => Outcome::Exited(finish(spec, cgroup.as_ref(), code)),
    }
}

fn run_in(
    spec: &SandboxSpec,
    cgroup: Option<&Cgroup>,
    recorder: &dyn Recorder,
) -> Result<Option<i32>, i32> {
    // Ok(None): detached, the command runs; Ok(Some(code)): it ran and exited; Err(code): it
    // could not start.
    let fail = |code: i32, message: &dyn std::fmt::Display| Err(fail(code, message));
    // With a user namespace, the PID namespace must belong to it: the first process creates
    // it (see `first_process_userns`).
    let userns = match spec
        .userns
        .as_ref()
        .map(|u| UsernsSetup::new(spec, u))
        .transpose()
    {
        Ok(u) => u,
        Err(e) => return fail(125, &e),
    };
    if userns.is_some()
        && (spec.pid_ns != NsShare::Private
            || spec.ipc_ns != NsShare::Private
            || spec.uts_ns != NsShare::Private)
    {
        return fail(125, &SetupError::UsernsShares);
    }
    // The first process is born in a new PID namespace (clone3), and this process stays in its
    // own: it forks again at the end (the owner's record), which it could not do from a PID
    // namespace whose init is gone, nor could it join its own again rootless.
    let mut new_pid = false;
    if userns.is_none() {
        match join_shared(&spec.pid_ns, "pid", CloneFlags::CLONE_NEWPID) {
            Ok((own, _)) => new_pid = own,
            Err(m) => return fail(125, &m),
        }
    }
    let pid_pipe = match userns.as_ref().map(|_| pipe2(OFlag::O_CLOEXEC)).transpose() {
        Ok(p) => p,
        Err(e) => return fail(125, &format!("pipe: {}", e.desc())),
    };
    let relayed = relayed();
    if let Err(e) = relayed.thread_block() {
        return fail(125, &format!("cannot block signals: {}", e.desc()));
    }
    let (err_r, err_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return fail(125, &format!("pipe: {}", e.desc())),
    };
    // A detached sandbox's monitor gives its own socket for the pty master.
    let given_console = spec.console_fd.filter(|_| spec.detach);
    let console = if spec.process.tty && given_console.is_none() {
        match socketpair(
            AddressFamily::Unix,
            SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        ) {
            Ok(pair) => Some(pair),
            Err(e) => return fail(125, &format!("socketpair: {}", e.desc())),
        }
    } else {
        None
    };
    // Moving a process into a v1 cgroup waits for an RCU grace period (milliseconds); the
    // helper does it while the child sets up the container, and the init waits on this pipe
    // before it starts the command.
    let hooked = !spec.hooks.is_empty();
    let sync = match (cgroup.is_some() || hooked)
        .then(|| pipe2(OFlag::O_CLOEXEC))
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return fail(125, &format!("pipe: {}", e.desc())),
    };
    // The first process says when its namespaces exist (the hooks' point). With a user
    // namespace, the init's pid (`pid_pipe`) says it.
    let ns_ready = match (hooked && userns.is_none())
        .then(|| pipe2(OFlag::O_CLOEXEC))
        .transpose()
    {
        Ok(p) => p,
        Err(e) => return fail(125, &format!("pipe: {}", e.desc())),
    };
    // Born in the v2 cgroup, if there is one (clone3 CLONE_INTO_CGROUP): moving it there
    // afterwards would wait for an RCU grace period. A kernel without it (before 5.7): moved.
    let v2 = match cgroup.and_then(Cgroup::open_v2).transpose() {
        Ok(v2) => v2,
        Err(e) => return fail(125, &format!("cannot open the container's cgroup: {e}")),
    };
    let mut born_in_v2 = false;
    let forked = match sys::fork_into(new_pid, v2.as_ref()) {
        // A kernel before clone3 (or its cgroup field): a PID namespace for the children, then
        // fork; moved into the cgroup afterwards.
        Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) => {
            if new_pid && let Err(e) = unshare(CloneFlags::CLONE_NEWPID) {
                return fail(125, &format!("cannot create a PID namespace: {}", e.desc()));
            }
            sys::fork()
        }
        r => {
            born_in_v2 = r.is_ok() && v2.is_some();
            r
        }
    };
    drop(v2);
    let child = match forked {
        Ok(ForkResult::Child) => {
            drop(err_r);
            // Into the v1 hierarchies by itself, first: a thread moving itself is fast (see
            // `join_self_v1`), and everything it starts is born there.
            if let Some(cg) = cgroup
                && let Err(m) = cg.join_self_v1()
            {
                let _ = write!(
                    File::from(err_w),
                    "125\ncannot move the container into its cgroup: {m}"
                );
                std::process::exit(125);
            }
            // The child's own copy of the spec (this process was forked), with the descriptors
            // handed to the init; nothing below copies it again.
            let mut spec = spec.clone();
            if let Some((_, theirs)) = &console {
                // The init's end must survive its exec.
                let _ = sys::clear_cloexec(theirs.as_raw_fd());
                spec.console_fd = Some(theirs.as_raw_fd());
            }
            if let Some(fd) = given_console {
                let _ = sys::clear_cloexec(fd);
            }
            if let Some(fd) = spec.exit_fd.filter(|_| spec.detach) {
                let _ = sys::clear_cloexec(fd);
            }
            if spec.detach {
                // The init holds the report pipe until the command runs.
                let _ = sys::clear_cloexec(err_w.as_raw_fd());
                spec.report_fd = Some(err_w.as_raw_fd());
            }
            if let Some((r, _)) = &sync {
                let _ = sys::clear_cloexec(r.as_raw_fd());
                spec.cgroup_sync_fd = Some(r.as_raw_fd());
            }
            let e = match (&userns, pid_pipe) {
                (Some(ns), Some((_, pid_w))) => first_process_userns(&mut spec, ns, pid_w),
                _ => first_process(&mut spec, ns_ready.map(|(_, w)| w)),
            };
            let mut w = File::from(err_w);
            let _ = write!(w, "{}\n{}", e.code, e.message);
            std::process::exit(e.code);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return fail(125, &format!("fork: {}", e.desc())),
    };
    // With a user namespace, the init is the first process's child, reparented to us (a
    // subreaper) when the first process exits, after telling us its pid.
    let child = match pid_pipe {
        Some((pid_r, pid_w)) => {
            drop(pid_w);
            let mut text = String::new();
            let _ = File::from(pid_r).read_to_string(&mut text);
            let _ = waitpid(child, None);
            match text.trim().parse::<i32>() {
                Ok(p) => Pid::from_raw(p),
                Err(_) => {
                    drop(err_w);
                    let mut report = String::new();
                    let _ = File::from(err_r).read_to_string(&mut report);
                    let (code, message) = report
                        .split_once('\n')
                        .unwrap_or(("125", "the sandbox's first process failed"));
                    return fail(code.parse().unwrap_or(125), &message);
                }
            }
        }
        None => child,
    };
    drop(userns);
    if let Some((r, w)) = sync {
        drop(r);
        if let Some(cg) = cgroup.filter(|_| !born_in_v2)
            && let Err(m) = cg.join_v2(child.as_raw())
        {
            let _ = kill(child, Signal::SIGKILL);
            let _ = waitpid(child, None);
            return fail(
                125,
                &format!("cannot move the container into its cgroup: {m}"),
            );
        }
        if hooked {
            // Once the namespaces exist: a first process that failed first says why below.
            let ready = match ns_ready {
                Some((r, w)) => {
                    drop(w);
                    matches!(File::from(r).read(&mut [0u8; 1]), Ok(1))
                }
                None => true,
            };
            if ready && let Err(m) = run_hooks(spec, child) {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return fail(125, &m);
            }
        }
        // The init may have failed already: then nobody reads this, which is fine.
        let _ = File::from(w).write_all(b"1");
    }
    // Once the container is in its cgroup (what `boxr top` and `stats` read).
    if let Some(p) = &spec.pid_file {
        // With the pid's start time, so a reused pid is never taken for the container.
        let start = process_start_time(child.as_raw()).unwrap_or_default();
        let _ = std::fs::write(p, format!("{} {start}\n", child.as_raw()));
    }
    recorder.started(spec);
    drop(err_w);
    if let Some(fd) = given_console {
        drop(sys::own_fd(fd));
    }
    let ours = console.map(|(ours, theirs)| {
        drop(theirs);
        ours
    });
    let mut report = String::new();
    let _ = File::from(err_r).read_to_string(&mut report);
    if let Some((code, message)) = report.split_once('\n') {
        let _ = waitpid(child, None);
        return fail(code.parse().unwrap_or(125), &message);
    }
    if spec.detach {
        // The command runs and the init no longer dies with us: our exit hands it to the
        // monitor. Not reaped here, whether or not it has exited already.
        return Ok(None);
    }
    Ok(Some(
        match ours.as_ref().and_then(super::tty::receive_master) {
            Some(master) => super::tty::proxy(master, child, &relayed, spec.process.stdin),
            None => wait_relaying(child, &relayed),
        },
    ))
}

/// The sandbox's first process (PID 1 of its PID namespace): its namespaces, then it becomes
/// the init (see `init::in_place`), which sets up the rootfs and execs boxr-init. Returns only
/// on failure.
fn first_process(spec: &mut SandboxSpec, ns_ready: Option<OwnedFd>) -> StartError {
    let err = |message: String| StartError { code: 125, message };
    // Die with the helper: then the kernel kills everything in the PID namespace.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    match super::join::enter(&mut super::join::Linux, spec) {
        Ok(Some(shm_from)) => spec.shm_from = Some(shm_from),
        Ok(None) => {}
        Err(e) => return err(e.to_string()),
    }
    if let Some(w) = ns_ready {
        let _ = File::from(w).write_all(b"1");
    }
    super::init::in_place(spec)
}

/// Runs the sandbox's hooks, one after the other, for the init `child`.
fn run_hooks(spec: &SandboxSpec, child: Pid) -> Result<(), SetupError> {
    let dir = spec.pid_file.as_ref().and_then(|p| p.parent());
    let state = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": dir.and_then(|d| d.file_name()).map(|n| n.to_string_lossy()),
        "status": "creating",
        "pid": child.as_raw(),
        "bundle": dir,
    });
    for h in &spec.hooks {
        // The same environment whether the helper was exec'd (with none) or not.
        let mut c = std::process::Command::new(&h.path)
            .args(&h.args)
            .env_clear()
            .env("BOXR_PID", child.as_raw().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(SetupError::io(format!(
                "cannot run the hook {}",
                h.path.display()
            )))?;
        if let Some(mut stdin) = c.stdin.take() {
            let _ = stdin.write_all(state.to_string().as_bytes());
        }
        let timeout = h.timeout.unwrap_or(30);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(timeout);
        let status = loop {
            match c.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return Err(SetupError::HookTimeout {
                        path: h.path.clone(),
                        timeout,
                    });
                }
                Err(e) => {
                    return Err(SetupError::io(format!("the hook {}", h.path.display()))(e));
                }
            }
        };
        if !status.success() {
            return Err(SetupError::HookFailed {
                path: h.path.clone(),
                status,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_zombie_is_not_alive() {
        let me = std::process::id() as i32;
        assert!(super::process_start_time(me).is_some());
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: a zombie once it has exited.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while super::process_start_time(pid).is_some() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(state.contains(") Z "), "{state}");
        assert_eq!(super::process_start_time(pid), None);
        child.wait().unwrap();
    }
}
