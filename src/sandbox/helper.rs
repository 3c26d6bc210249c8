//! The sandbox helper: a freshly exec'd, single-threaded boxr (`boxr __sandbox`) that receives
//! its `SandboxSpec` over an inherited descriptor, forks the sandbox's first process into new
//! namespaces, relays signals to it, and exits with its status.
//!
//! Order matters here:
//! 1. Signals to relay are blocked *before* fork, so none is lost between fork and the wait loop.
//! 2. The helper itself only unshares the PID namespace (which applies to its children). The
//!    child unshares mount/UTS/IPC/network itself: `pivot_root` moves the root of every process
//!    in the mount namespace that shares the old root, and the helper must keep the host's.
//! 3. The child reports failures before its exec over a close-on-exec pipe: EOF means it
//!    reached the init, which reports its own failures on stderr and in its exit status.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl};
use nix::sched::{CloneFlags, unshare};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, pipe2};

use super::cgroup::{Cgroup, Layout};
use super::process::StartError;
use super::spec::{NetworkMode, NsShare, SandboxSpec};
use super::sys;
use super::{Ended, Recorder};

/// Signals a user sends to `boxr run` that must reach the container.
pub(super) fn relayed() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGCHLD,
    ] {
        s.add(sig);
    }
    s
}

/// Marks every descriptor from 3 up close-on-exec, so nothing of the host leaks into the
/// container (CVE-2024-21626 came from a leaked directory descriptor).
pub(super) fn cloexec_all_fds() {
    for fd in fds_from_3() {
        // The listing's own descriptor is closed by now: EBADF for it is expected.
        let _ = sys::set_cloexec(fd);
    }
}

/// Closes every descriptor from 3 up except `keep` (see `sandbox::close_inherited_fds`).
pub(super) fn close_fds_except(keep: &[i32]) {
    for fd in fds_from_3().into_iter().filter(|fd| !keep.contains(fd)) {
        // The listing's own descriptor is closed by now: its EBADF is expected.
        drop(sys::own_fd(fd));
    }
}

/// This process's open descriptors from 3 up.
fn fds_from_3() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect()
}

/// Reads a JSON value from an inherited memfd and closes it.
pub(super) fn read_spec_fd<T: serde::de::DeserializeOwned>(fd: i32) -> Result<T, String> {
    let owned = if fd == 0 {
        // A spec on stdin ([`super::spawn`]): a duplicate is ours to read; the caller then
        // points descriptor 0 at /dev/null.
        use std::os::fd::AsFd;
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("cannot read the spec from stdin: {e}"))?
    } else {
        super::sys::own_fd(fd).ok_or_else(|| format!("descriptor {fd} is not open"))?
    };
    let mut f = File::from(owned);
    f.rewind()
        .map_err(|e| format!("cannot read the spec: {e}"))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the spec: {e}"))?;
    serde_json::from_slice(&buf).map_err(|e| format!("invalid spec: {e}"))
}

/// Writes a JSON value into a new memfd that survives exec (for the next process to read).
/// `cloexec`: for a child started with the descriptor as its stdin (dup2 clears the flag).
pub(super) fn spec_memfd<T: serde::Serialize>(value: &T, cloexec: bool) -> Result<OwnedFd, String> {
    let flags = if cloexec {
        MFdFlags::MFD_CLOEXEC
    } else {
        MFdFlags::empty()
    };
    let fd = memfd_create("boxr-spec", flags).map_err(|e| format!("memfd: {e}"))?;
    let mut f = File::from(fd);
    f.write_all(&serde_json::to_vec(value).expect("serializes"))
        .map_err(|e| format!("cannot write the spec: {e}"))?;
    Ok(f.into())
}

/// A sealed in-memory copy of the running boxr binary: PID 1 runs from it, so no process in
/// the container can reach the host's boxr file through /proc/1/exe (CVE-2019-5736), and the
/// copy itself cannot be written.
pub(super) fn sealed_self_copy() -> Result<OwnedFd, String> {
    sealed_copy(std::path::Path::new("/proc/self/exe"))
}

/// A sealed in-memory copy of the program at `path`.
pub(super) fn sealed_copy(path: &std::path::Path) -> Result<OwnedFd, String> {
    let fd = memfd_create(
        "boxr-init",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|e| format!("memfd: {e}"))?;
    let mut dst = File::from(fd);
    let mut src = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // A plain read/write copy: std's zero-copy paths (copy_file_range, sendfile through a pipe)
    // can leave the memfd's pages pinned for a moment, and F_SEAL_WRITE then fails with EBUSY.
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("cannot copy boxr: {e}")),
        };
        dst.write_all(&buf[..n])
            .map_err(|e| format!("cannot copy boxr: {e}"))?;
    }
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    let mut tries = 0;
    loop {
        match fcntl(&dst, FcntlArg::F_ADD_SEALS(seals)) {
            Ok(_) => break,
            // Pages still referenced by I/O in flight: brief, so wait and try again.
            Err(nix::errno::Errno::EBUSY) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(format!("cannot seal the init: {e}")),
        }
    }
    Ok(dst.into())
}

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
    match run(&spec, recorder) {
        Outcome::Exited(end) => {
            // Children of this process were to be born in the sandbox's PID namespace, whose
            // init is gone: a fork would fail (ENOMEM). The recorder may start programs.
            if let Ok(own) = File::open("/proc/self/ns/pid") {
                let _ = nix::sched::setns(&own, CloneFlags::CLONE_NEWPID);
            }
            recorder.ended(&spec, end);
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

/// A spec passed on stdin ([`super::spawn`]) is not the command's input: /dev/null takes its
/// place once it is read.
pub(super) fn stdin_from_dev_null() -> Result<(), String> {
    let null = File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| format!("dup2: {}", e.desc()))
}

fn fail(code: i32, message: &str) -> i32 {
    eprintln!("boxr: {message}");
    code
}

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
fn create_cgroup(spec: &SandboxSpec) -> Result<Option<Cgroup>, String> {
    let Some(c) = &spec.cgroup else {
        return Ok(None);
    };
    let layout = Layout::detect().map_err(|e| format!("cannot read the mount table: {e}"))?;
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
            .map_err(|e| format!("cannot write {}: {e}", j.display()))?;
    }
    match Cgroup::create(&layout, &c.path, &c.limits) {
        Ok(cg) => Ok(Some(cg)),
        Err(e) => {
            if let Some(j) = &c.journal {
                let _ = std::fs::remove_file(j);
            }
            Err(e.to_string())
        }
    }
}

fn run(spec: &SandboxSpec, recorder: &dyn Recorder) -> Outcome {
    let cgroup = match create_cgroup(spec) {
        Ok(c) => c,
        Err(e) => {
            return Outcome::Exited(Ended {
                code: fail(125, &format!("cgroup: {e}")),
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
    let fail = |code: i32, message: &str| Err(fail(code, message));
    let init = match sealed_self_copy() {
        Ok(i) => i,
        Err(e) => return fail(125, &e),
    };
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
        return fail(
            125,
            "a user namespace cannot share the PID, IPC or UTS namespace here",
        );
    }
    if userns.is_none() {
        match join_shared(&spec.pid_ns, "pid", CloneFlags::CLONE_NEWPID) {
            Ok((true, _)) => {
                if let Err(e) = unshare(CloneFlags::CLONE_NEWPID) {
                    return fail(125, &format!("cannot create a PID namespace: {}", e.desc()));
                }
            }
            Ok((false, _)) => {}
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
    let forked = match &v2 {
        Some(fd) => match sys::fork_into_cgroup(fd) {
            Err(nix::errno::Errno::ENOSYS | nix::errno::Errno::E2BIG) => sys::fork(),
            r => {
                born_in_v2 = r.is_ok();
                r
            }
        },
        None => sys::fork(),
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
            let mut spec = spec.clone();
            if let Some((_, theirs)) = &console {
                // The init's end must survive its exec.
                let _ = sys::clear_cloexec(theirs.as_raw_fd());
                spec.console_fd = Some(theirs.as_raw_fd());
            }
            if let Some(fd) = given_console {
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
                (Some(ns), Some((_, pid_w))) => first_process_userns(&spec, &init, ns, pid_w),
                _ => first_process(&spec, &init, ns_ready.map(|(_, w)| w)),
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
                    return fail(code.parse().unwrap_or(125), message);
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
    drop(init);
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
        return fail(code.parse().unwrap_or(125), message);
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

/// Waits for the sandbox's first process, relaying signals to it; returns its exit code
/// (128 + signal when killed).
pub(super) fn wait_relaying(child: Pid, relayed: &SigSet) -> i32 {
    loop {
        let sig = match relayed.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        if let Some((_, code)) = sys::reap(Some(child.as_raw())) {
            return code;
        }
    }
}

/// What a sandbox with a user namespace needs from the helper, made before the first process:
/// the namespace (held by a descriptor) and an idmapped copy of each layer.
struct UsernsSetup {
    userns: OwnedFd,
    lowers: Vec<OwnedFd>,
}

impl UsernsSetup {
    fn new(spec: &SandboxSpec, u: &super::spec::UserNs) -> Result<UsernsSetup, String> {
        let userns = make_userns(u)?;
        let lowers = spec
            .rootfs
            .lowers
            .iter()
            .map(|l| {
                sys::idmapped_clone(l, &userns)
                    .map_err(|e| format!("cannot make an idmapped mount of {}: {e}", l.display()))
            })
            .collect::<Result<_, _>>()?;
        // The init is the first process's child: it comes to us when the first process exits.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("cannot become a subreaper: {}", e.desc()))?;
        Ok(UsernsSetup { userns, lowers })
    }
}

/// A new user namespace with the maps `u`, held by a descriptor: a short-lived child creates
/// it, the helper (root of the host's namespace) writes its maps and opens it.
fn make_userns(u: &super::spec::UserNs) -> Result<OwnedFd, String> {
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {}", e.desc()))?;
    let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {}", e.desc()))?;
    let child = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop((ready_r, done_w));
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = File::from(ready_w).write_all(&[ok as u8]);
            // Until the helper has opened the namespace.
            let _ = File::from(done_r).read(&mut [0u8; 1]);
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(format!("fork: {}", e.desc())),
    };
    drop((ready_w, done_r));
    let result = (|| {
        let mut ok = [0u8; 1];
        File::from(ready_r)
            .read_exact(&mut ok)
            .map_err(|e| format!("the user namespace's process: {e}"))?;
        if ok[0] != 1 {
            return Err("cannot create a user namespace".to_owned());
        }
        let lines = |maps: &[super::spec::IdMap]| {
            maps.iter()
                .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
                .collect::<String>()
        };
        for (file, maps) in [("uid_map", &u.uid_map), ("gid_map", &u.gid_map)] {
            let p = format!("/proc/{child}/{file}");
            // One write: the kernel takes a map whole, once.
            std::fs::write(&p, lines(maps)).map_err(|e| format!("cannot write {p}: {e}"))?;
        }
        File::open(format!("/proc/{child}/ns/user"))
            .map(OwnedFd::from)
            .map_err(|e| format!("cannot open the user namespace: {e}"))
    })();
    drop(done_w);
    let _ = waitpid(child, None);
    result
}

/// Joins the user namespace `userns` as its root (ids 0, no supplementary groups), which
/// every process of a container with one is, until the init sets the container's user.
pub(super) fn enter_userns_as_root(userns: &OwnedFd) -> nix::Result<()> {
    let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER)?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresuid(uid, uid, uid)
}

/// The first process of a sandbox with a user namespace. Still root of the host, it mounts the
/// overlay over the idmapped layers in a mount namespace of its own; then it enters the user
/// namespace as its root, creates the other namespaces there (so they belong to it: the init
/// may mount /proc and /sys), forks the init into the new PID namespace, tells the helper its
/// pid and exits. Returns only on failure.
fn first_process_userns(
    spec: &SandboxSpec,
    init: &OwnedFd,
    ns: &UsernsSetup,
    pid_w: OwnedFd,
) -> StartError {
    let err = |message: String| StartError { code: 125, message };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        return err(format!("cannot create a mount namespace: {}", e.desc()));
    }
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        return err(format!("make / private: {}", e.desc()));
    }
    let lowers: Vec<std::path::PathBuf> = ns
        .lowers
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()).into())
        .collect();
    let mounted =
        super::rootfs::mount_overlay(spec, &lowers).and_then(|()| super::rootfs::host_mounts(spec));
    if let Err(e) = mounted {
        return err(e.to_string());
    }
    // The init starts in the rootfs: the path to it may not be searchable by the container's
    // root.
    if let Err(e) = nix::unistd::chdir(&spec.rootfs.target) {
        return err(format!("cannot enter the rootfs: {}", e.desc()));
    }
    // A network namespace of the host's (its own, or one given by path) is joined while we
    // are still the host's root: from inside the user namespace we could not.
    if let Err(e) = join_network(spec) {
        return err(e);
    }
    if let Err(e) = enter_userns_as_root(&ns.userns) {
        return err(format!("cannot enter the user namespace: {}", e.desc()));
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        return err(format!("cannot create namespaces: {}", e.desc()));
    }
    if spec.network == NetworkMode::None
        && let Err(e) = sys::loopback_up()
    {
        return err(format!("cannot bring up the loopback interface: {e}"));
    }
    let mut spec = spec.clone();
    spec.rootfs_mounted = true;
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(pid_w);
            // Not killed with the first process, which exits now; the init asks for it again
            // once it is the helper's (see `init`).
            let _ = nix::sys::prctl::set_pdeathsig(None);
            exec_init(&spec, init)
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = File::from(pid_w).write_all(child.as_raw().to_string().as_bytes());
            std::process::exit(0);
        }
        Err(e) => err(format!("fork: {}", e.desc())),
    }
}

/// The sandbox's first process (PID 1 of its PID namespace): its namespaces, then exec of the
/// sealed boxr copy as `__init`, which sets up the rootfs. The exec happens before pivot_root,
/// while the host's root (and so boxr's ELF interpreter and libraries) is still visible, as
/// runc's init does. Returns only on failure.
fn first_process(spec: &SandboxSpec, init: &OwnedFd, ns_ready: Option<OwnedFd>) -> StartError {
    let err = |message: String| StartError { code: 125, message };
    // Die with the helper: then the kernel kills everything in the PID namespace.
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    // Join a namespace given by path before creating the others.
    if let Err(e) = join_network(spec) {
        return err(e);
    }
    let mut flags = CloneFlags::CLONE_NEWNS;
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let uts = join_shared(&spec.uts_ns, "uts", CloneFlags::CLONE_NEWUTS);
    let ipc = join_shared(&spec.ipc_ns, "ipc", CloneFlags::CLONE_NEWIPC);
    let (uts, ipc) = match (uts, ipc) {
        (Ok(u), Ok(i)) => (u, i),
        (Err(m), _) | (_, Err(m)) => return err(m),
    };
    if uts.0 {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if ipc.0 {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    if let Err(e) = unshare(flags) {
        return err(format!("cannot create namespaces: {}", e.desc()));
    }
    // A shared IPC namespace comes with its /dev/shm: the host's, or the other container's.
    let mut shared = None;
    if !ipc.0 {
        let mut s = spec.clone();
        s.shm_from = Some(match ipc.1 {
            Some(pid) => super::spec::SharedShm::Sandbox { pid },
            None => super::spec::SharedShm::Host,
        });
        shared = Some(s);
    }
    let spec = shared.as_ref().unwrap_or(spec);
    if spec.network == NetworkMode::None
        && let Err(e) = sys::loopback_up()
    {
        return err(format!("cannot bring up the loopback interface: {e}"));
    }
    if let Some(w) = ns_ready {
        let _ = File::from(w).write_all(b"1");
    }
    exec_init(spec, init)
}

/// Joins the network namespace the spec names (`Join`, `Sandbox`), if any.
fn join_network(spec: &SandboxSpec) -> Result<(), String> {
    let (ns, what) = match &spec.network {
        NetworkMode::None | NetworkMode::Host => return Ok(()),
        NetworkMode::Join(path) => (
            File::open(path).map_err(|e| e.to_string()),
            path.display().to_string(),
        ),
        NetworkMode::Sandbox(pid_file) => (
            sandbox_ns(pid_file, "net").map(|(f, _)| f),
            "of the container whose network is shared".to_owned(),
        ),
    };
    ns.and_then(|f| {
        nix::sched::setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| e.desc().to_owned())
    })
    .map_err(|e| format!("cannot join the network namespace {what}: {e}"))
}

/// Namespace `kind` (`net`, `pid`, ...) of the sandbox whose helper wrote `pid_file`, if it
/// still runs, and that sandbox's init pid.
fn sandbox_ns(pid_file: &std::path::Path, kind: &str) -> Result<(File, i32), String> {
    let not_running = || "it is not running".to_owned();
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
fn join_shared(
    share: &NsShare,
    kind: &str,
    flag: CloneFlags,
) -> Result<(bool, Option<i32>), String> {
    match share {
        NsShare::Private => Ok((true, None)),
        NsShare::Host => Ok((false, None)),
        NsShare::Sandbox(pid_file) => {
            let (f, pid) = sandbox_ns(pid_file, kind)
                .map_err(|e| format!("cannot join the {kind} namespace of the container: {e}"))?;
            nix::sched::setns(&f, flag).map_err(|e| {
                format!(
                    "cannot join the {kind} namespace of the container: {}",
                    e.desc()
                )
            })?;
            Ok((false, Some(pid)))
        }
    }
}

/// Runs the sandbox's hooks, one after the other, for the init `child`.
fn run_hooks(spec: &SandboxSpec, child: Pid) -> Result<(), String> {
    let dir = spec.pid_file.as_ref().and_then(|p| p.parent());
    let state = serde_json::json!({
        "ociVersion": "1.0.2",
        "id": dir.and_then(|d| d.file_name()).map(|n| n.to_string_lossy()),
        "status": "creating",
        "pid": child.as_raw(),
        "bundle": dir,
    });
    for h in &spec.hooks {
        let name = h.path.display();
        let mut c = std::process::Command::new(&h.path)
            .args(&h.args)
            .env("BOXR_PID", child.as_raw().to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run the hook {name}: {e}"))?;
        if let Some(mut stdin) = c.stdin.take() {
            let _ = stdin.write_all(state.to_string().as_bytes());
        }
        let deadline =
            std::time::Instant::now() + std::time::Duration::from_secs(h.timeout.unwrap_or(30));
        let status = loop {
            match c.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Ok(None) => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return Err(format!("the hook {name} ran past its timeout"));
                }
                Err(e) => return Err(format!("the hook {name}: {e}")),
            }
        };
        if !status.success() {
            return Err(format!("the hook {name} failed ({status})"));
        }
    }
    Ok(())
}

/// Execs the sealed copy of boxr as the container's init, with `spec`. Returns only on failure.
fn exec_init(spec: &SandboxSpec, init: &OwnedFd) -> StartError {
    let err = |message: String| StartError { code: 125, message };
    let fd = match spec_memfd(spec, false) {
        Ok(fd) => fd,
        Err(m) => return err(m),
    };
    let arg = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let args = [
        arg("boxr-init"),
        arg(super::INIT_ARG),
        arg("--spec-fd"),
        arg(&fd.as_raw_fd().to_string()),
    ];
    let env: [std::ffi::CString; 0] = [];
    let e = nix::unistd::execveat(init, c"", &args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
        .expect_err("execveat returns only on failure");
    err(format!("cannot start the init: {}", e.desc()))
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
