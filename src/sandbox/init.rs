//! boxr's init: PID 1 of a container, run from a sealed in-memory copy of boxr.
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
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, pipe2};
use std::os::fd::AsRawFd;

use super::helper::{cloexec_all_fds, read_spec_fd};
use super::process;
use super::rootfs;
use super::spec::SandboxSpec;
use super::sys;

pub fn main(spec_fd: i32) -> i32 {
    let spec: SandboxSpec = match read_spec_fd(spec_fd) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("boxr: {e}");
            return 125;
        }
    };
    cloexec_all_fds();
    if let Err(rootfs::SetupError(m)) = rootfs::setup(&spec) {
        eprintln!("boxr: {m}");
        return 125;
    }
    let resolved = match process::resolve(&spec.process) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("boxr: {}", e.message);
            return e.code;
        }
    };
    let slave = match (resolved.tty, spec.console_fd) {
        (true, Some(console)) => {
            let console = sys::own_fd(console);
            let slave = console
                .as_ref()
                .map(|c| super::tty::open_in_container(c.as_raw_fd()));
            match slave {
                Some(Ok(s)) => Some(s),
                Some(Err(m)) => {
                    eprintln!("boxr: {m}");
                    return 125;
                }
                None => {
                    eprintln!("boxr: the terminal socket is missing");
                    return 125;
                }
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
            eprintln!("boxr: the container's cgroup was not set up");
            return 125;
        }
    }
    // Confined before the command exists: it inherits the init's limits, identity and
    // capabilities, and nothing in the container ever has more than it.
    if let Err(e) = process::confine(&resolved, &spec.security) {
        eprintln!("boxr: {}", e.message);
        return e.code;
    }
    if !spec.init {
        // The command becomes PID 1 itself.
        let _ = SigSet::empty().thread_set_mask();
        if let Some(s) = &slave
            && let Err(m) = super::tty::become_controlled(s)
        {
            eprintln!("boxr: {m}");
            return 125;
        }
        drop(slave);
        let e = process::exec(&resolved);
        eprintln!("boxr: {}", e.message);
        return e.code;
    }
    // Nothing may ptrace or read the memory of PID 1 through /proc.
    let _ = nix::sys::prctl::set_dumpable(false);
    let all = SigSet::all();
    if all.thread_block().is_err() {
        eprintln!("boxr: init cannot block signals");
        return 125;
    }
    let (err_r, err_w) = match pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("boxr: pipe: {}", e.desc());
            return 125;
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
            eprintln!("boxr: fork: {}", e.desc());
            return 125;
        }
    };
    drop(slave);
    drop(err_w);
    let mut report = String::new();
    let _ = File::from(err_r).read_to_string(&mut report);
    let failed = report.split_once('\n').map(|(code, msg)| {
        eprintln!("boxr: {msg}");
        code.parse().unwrap_or(125)
    });
    let status = supervise(child, &all);
    failed.unwrap_or(status)
}

/// Reaps and forwards until the main child exits; returns its exit code.
fn supervise(child: Pid, all: &SigSet) -> i32 {
    loop {
        let Ok(sig) = all.wait() else { continue };
        match sig {
            Signal::SIGCHLD => {
                // Reap everything that has exited: the command and any orphan.
                loop {
                    match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(pid, code)) if pid == child => return code,
                        Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => {
                            return 128 + s as i32;
                        }
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(_) => continue,
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
