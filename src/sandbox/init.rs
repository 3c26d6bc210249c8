//! The container's first process (PID 1 of its PID namespace), forked from the helper: it sets
//! up the root filesystem and pivots into it (see `rootfs`), resolves the process (user,
//! environment) against the container's own files, confines itself, and then execs boxr-init
//! from a sealed copy (see `stub`), which either execs the command in its place (`--init=false`)
//! or stays PID 1: it starts the command, reaps every orphan, forwards every signal it receives
//! to the command (so SIGTERM reaches an app with no handler: signals sent to PID 1 of a
//! namespace are otherwise dropped when it has no handler), ignores the terminal stop signals,
//! and exits with the command's status (128 + signal when it was killed). When it exits, the
//! kernel kills whatever is left in the container.

use std::fs::File;
use std::io::{Read, Write};

use nix::sys::signal::{SigSet, Signal};
use std::os::fd::AsRawFd;

use super::fds::{cloexec_all_fds, close_fds_except};
use super::process;
use super::rootfs;
use super::spec::SandboxSpec;
use super::stub::{How, Stub};
use super::sys;

/// Where the init says why the command could not start: the report pipe of a detached
/// sandbox's helper, else stderr.
struct Report(Option<File>);

impl Report {
    fn fail(&mut self, code: i32, message: &str) -> i32 {
        match self.0.take() {
            Some(mut f) => {
                let _ = write!(f, "{code}\n{message}");
            }
            None => eprintln!("boxr: {message}"),
        }
        code
    }
}

/// The sandbox's first process: it closes what an exec would have closed (every descriptor but
/// those handed to it: a detached sandbox's exit file and report pipe, the terminal socket, the
/// cgroup pipe), so it holds nothing of the host's, then sets up the container and runs the
/// command; exits with the init's exit code when it cannot. `spec` is this process's own copy
/// (it was forked): it is changed in place rather than copied again.
pub(super) fn in_place(spec: &mut SandboxSpec) -> ! {
    if !spec.detach {
        spec.exit_fd = None;
    }
    let keep: Vec<i32> = [
        spec.exit_fd,
        spec.report_fd,
        spec.console_fd,
        spec.cgroup_sync_fd,
    ]
    .into_iter()
    .flatten()
    .collect();
    close_fds_except(&keep);
    let exit_file = spec.exit_fd.and_then(sys::own_fd).map(File::from);
    cloexec_all_fds();
    let mut report = Report(spec.report_fd.and_then(sys::own_fd).map(File::from));
    let (code, message) = start(spec, &report, exit_file.as_ref());
    let code = report.fail(code, &message);
    if let Some(mut f) = exit_file {
        let _ = writeln!(f, "{code}");
    }
    std::process::exit(code)
}

/// Sets up the container and execs boxr-init with the command; returns only when it cannot,
/// with the exit code and why.
fn start(spec: &SandboxSpec, report: &Report, exit_file: Option<&File>) -> (i32, String) {
    if let Err(e) = rootfs::setup(spec) {
        return (125, e.to_string());
    }
    let resolved = match process::resolve(&spec.process) {
        Ok(r) => r,
        Err(e) => return (e.code, e.message),
    };
    let slave = match (resolved.tty, spec.console_fd) {
        (true, Some(console)) => {
            let console = sys::own_fd(console);
            let slave = console
                .as_ref()
                .map(|c| super::tty::open_in_container(c.as_raw_fd()));
            match slave {
                Some(Ok(s)) => Some(s),
                Some(Err(m)) => return (125, m.to_string()),
                None => return (125, "the terminal socket is missing".into()),
            }
        }
        _ => None,
    };
    // In the cgroup before the command exists (the helper moves the init there meanwhile).
    if let Some(fd) = spec.cgroup_sync_fd {
        let mut byte = [0u8; 1];
        let joined = sys::own_fd(fd)
            .map(File::from)
            .is_some_and(|mut f| matches!(f.read(&mut byte), Ok(1)) && byte[0] == b'1');
        if !joined {
            return (125, "the container's cgroup was not set up".into());
        }
    }
    // With a user namespace the init was reparented to the helper: from now on it dies with it
    // (a detached one's boxr-init stops, once the command runs).
    if spec.userns.is_some() && !spec.detach {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
            return (125, "the sandbox's helper is gone".into());
        }
    }
    // Made before the confinement, which may refuse memfd_create.
    let stub = match Stub::new() {
        Ok(s) => s,
        Err(e) => return (125, e.to_string()),
    };
    // Nothing may ptrace this process or reach its file through /proc from here on, as its
    // capabilities drop to the container's: it runs from the host's file until it execs
    // boxr-init.
    let _ = nix::sys::prctl::set_dumpable(false);
    // Confined before the command exists: it inherits the init's limits, identity and
    // capabilities, and nothing in the container ever has more than it.
    if let Err(e) = super::confine::apply(&resolved, &spec.security) {
        return (e.code, e.message);
    }
    let cmd = match process::prepare(&resolved) {
        Ok(c) => c,
        Err(e) => return (e.code, e.message),
    };
    let report_fd = report.0.as_ref().map(|f| f.as_raw_fd());
    let e = if !spec.init {
        // The command becomes PID 1 itself.
        let _ = SigSet::empty().thread_set_mask();
        if let Some(s) = &slave
            && let Err(m) = super::tty::become_controlled(s)
        {
            return (125, m.to_string());
        }
        drop(slave);
        if report_fd.is_some() {
            // The report pipe closes on the command's exec, telling the helper.
            let _ = nix::sys::prctl::set_pdeathsig(None);
        }
        let how = How {
            report: report_fd,
            ..How::default()
        };
        stub.exec(&how, &cmd)
    } else {
        // In a shared PID namespace (`--pid host|container:`) the init is not PID 1: the
        // command's orphans come to it all the same.
        if nix::unistd::getpid().as_raw() != 1 {
            let _ = nix::sys::prctl::set_child_subreaper(true);
        }
        // Blocked through the exec, which keeps the mask and what is pending: boxr-init takes
        // them one by one.
        if SigSet::all().thread_block().is_err() {
            return (125, "init cannot block signals".into());
        }
        let how = How {
            supervise: true,
            report: report_fd,
            exit: exit_file.map(|f| f.as_raw_fd()),
            tty: slave.as_ref().map(|s| s.as_raw_fd()),
        };
        stub.exec(&how, &cmd)
    };
    // The exec failed: the report goes through this process.
    (e.code, e.message)
}
