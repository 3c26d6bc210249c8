//! boxr's init: PID 1 of a container, the sandbox's first process, forked from the helper,
//! which runs from a sealed in-memory copy of the sandbox runtime.
//!
//! It sets up the root filesystem and pivots into it (see `rootfs`), resolves the process
//! (user, environment) against the container's own files, and then either execs the command in
//! its place (`--init=false`) or stays PID 1: it starts the command, reaps every orphan, forwards every signal it receives to the command
//! (so SIGTERM reaches an app with no handler: signals sent to PID 1 of a namespace are
//! otherwise dropped when it has no handler), ignores the terminal stop signals, and exits with
//! the command's status (128 + signal when it was killed). When it exits, the kernel kills
//! whatever is left in the container.

use std::fs::File;
use std::io::{Read, Write};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::{ForkResult, Pid, pipe2};
use std::os::fd::AsRawFd;

use super::fds::{cloexec_all_fds, close_fds_except};
use super::process;
use super::rootfs;
use super::spec::SandboxSpec;
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

    /// The command runs: a detached sandbox's init stops dying with the helper, which then
    /// exits and leaves it to the monitor.
    fn started(&mut self) {
        if let Some(pipe) = self.0.take() {
            let _ = nix::sys::prctl::set_pdeathsig(None);
            // Only now: the helper exits when it reads the end of the pipe.
            drop(pipe);
        }
    }
}

/// The init without an exec: the sandbox's first process, forked from a helper that runs from
/// a sealed copy, becomes it. It closes what an exec would have closed (every descriptor but
/// those handed to the init: a detached sandbox's exit file and report pipe, the terminal
/// socket, the cgroup pipe), so it holds nothing of the host's, then sets up the container and
/// runs the command; exits with the init's exit code.
pub(super) fn in_place(spec: &SandboxSpec) -> ! {
    let mut spec = spec.clone();
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
    let code =
        start(&spec, &mut report).unwrap_or_else(|(code, message)| report.fail(code, &message));
    // The end, for whoever asks after the monitor that waits for this process is gone. (With
    // `--init=false` the command is PID 1 and only its parent learns its end.)
    if let Some(mut f) = exit_file {
        let _ = writeln!(f, "{code}");
    }
    std::process::exit(code)
}

/// Sets up the container and runs the command; returns the init's exit code, or why the
/// command could not start.
fn start(spec: &SandboxSpec, report: &mut Report) -> Result<i32, (i32, String)> {
    if let Err(e) = rootfs::setup(spec) {
        return Err((125, e.to_string()));
    }
    let resolved = match process::resolve(&spec.process) {
        Ok(r) => r,
        Err(e) => return Err((e.code, e.message)),
    };
    let slave = match (resolved.tty, spec.console_fd) {
        (true, Some(console)) => {
            let console = sys::own_fd(console);
            let slave = console
                .as_ref()
                .map(|c| super::tty::open_in_container(c.as_raw_fd()));
            match slave {
                Some(Ok(s)) => Some(s),
                Some(Err(m)) => return Err((125, m.to_string())),
                None => return Err((125, "the terminal socket is missing".into())),
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
            return Err((125, "the container's cgroup was not set up".into()));
        }
    }
    // With a user namespace the init was reparented to the helper: from now on it dies with it
    // (a detached one's helper exits; see `Report::started`).
    if spec.userns.is_some() && !spec.detach {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
            return Err((125, "the sandbox's helper is gone".into()));
        }
    }
    // Confined before the command exists: it inherits the init's limits, identity and
    // capabilities, and nothing in the container ever has more than it.
    if let Err(e) = super::confine::apply(&resolved, &spec.security) {
        return Err((e.code, e.message));
    }
    if !spec.init {
        // The command becomes PID 1 itself.
        let _ = SigSet::empty().thread_set_mask();
        if let Some(s) = &slave
            && let Err(m) = super::tty::become_controlled(s)
        {
            return Err((125, m.to_string()));
        }
        drop(slave);
        if report.0.is_some() {
            // The report pipe closes on exec (it is close-on-exec), telling the helper.
            let _ = nix::sys::prctl::set_pdeathsig(None);
        }
        let e = process::exec(&resolved);
        return Err((e.code, e.message));
    }
    // Nothing may ptrace or read the memory of PID 1 through /proc.
    let _ = nix::sys::prctl::set_dumpable(false);
    // In a shared PID namespace (`--pid host|container:`) the init is not PID 1: the command's
    // orphans come to it all the same.
    if nix::unistd::getpid().as_raw() != 1 {
        let _ = nix::sys::prctl::set_child_subreaper(true);
    }
    let all = SigSet::all();
    if all.thread_block().is_err() {
        return Err((125, "init cannot block signals".into()));
    }
    let (err_r, err_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            return Err((125, format!("pipe: {}", e.desc())));
        }
    };
    let child = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(err_r);
            let _ = SigSet::empty().thread_set_mask();
            if let Some(s) = &slave
                && let Err(m) = super::tty::become_controlled(s)
            {
                let _ = write!(File::from(err_w), "125\n{m}");
                std::process::exit(125);
            }
            drop(slave);
            let e = process::exec(&resolved);
            let _ = write!(File::from(err_w), "{}\n{}", e.code, e.message);
            std::process::exit(e.code);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => {
            return Err((125, format!("fork: {}", e.desc())));
        }
    };
    drop(slave);
    drop(err_w);
    let mut text = String::new();
    let _ = File::from(err_r).read_to_string(&mut text);
    let failed = text
        .split_once('\n')
        .map(|(code, msg)| report.fail(code.parse().unwrap_or(125), msg));
    if failed.is_none() {
        report.started();
    }
    let status = supervise(child, &all);
    Ok(failed.unwrap_or(status))
}

/// Reaps and forwards until the main child exits; returns its exit code. Signals are read
/// from a signalfd, which gives their numbers: the real-time ones (`SIGRTMIN+3`, systemd's stop
/// signal) are forwarded too.
fn supervise(child: Pid, all: &SigSet) -> i32 {
    let fd =
        nix::sys::signalfd::SignalFd::with_flags(all, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC);
    loop {
        let signo = match &fd {
            Ok(fd) => match fd.read_signal() {
                Ok(Some(info)) => info.ssi_signo as i32,
                _ => continue,
            },
            // Without a signalfd, the standard signals only.
            Err(_) => match all.wait() {
                Ok(s) => s as i32,
                Err(_) => continue,
            },
        };
        let Ok(sig) = Signal::try_from(signo) else {
            let _ = sys::send_signal(child.as_raw(), signo);
            continue;
        };
        match sig {
            Signal::SIGCHLD => {
                // Reap everything that has exited: the command and any orphan.
                while let Some((pid, code)) = sys::reap(None) {
                    if pid == child.as_raw() {
                        return code;
                    }
                }
            }
            Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU => {}
            other => {
                let _ = kill(child, other);
            }
        }
    }
}
