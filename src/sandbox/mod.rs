//! `SandboxSpec` (pure data) → a running process in new namespaces over an overlay rootfs.
//!
//! Process model (ARCHITECTURE decision 6): the caller never forks. It writes the spec into a
//! memfd and execs (for `boxr run`) or spawns (for build steps) the sandbox runtime,
//! `boxr-sandbox __sandbox` (a small binary of its own, beside boxr; [`runtime_command`]),
//! which is single-threaded and does the real work: a PID namespace, the first process with its
//! own mount/UTS/IPC/network namespaces, the rootfs (see `rootfs`) and the confinement, which
//! then execs boxr-init from a sealed copy (see `stub`): PID 1, which starts the command. The
//! only `unsafe` code of boxr is in `sys` (boxr-init, a program of its own, has its own).
//!
//! The sandbox knows nothing of images, stores or containers: what its owner records when it
//! starts and ends goes through a [`Recorder`], and the seccomp program's cache is passed in.
//!
//! Files: `helper` the helper (namespaces, cgroup, hooks, the end); `init` PID 1; `exec` the
//! exec helper (`boxr exec`); `fs_helper` filesystem steps in a private mount namespace
//! (`copy`, `workdir`, `cp`, `export`, a new volume's content); `rootfs` mounts, pivot_root,
//! /dev, /proc, masks; `process` the last steps before exec (ids, capabilities, rlimits);
//! `security` capabilities and no_new_privs; `seccomp` Docker's profile format and libseccomp;
//! `cgroup` v1, v2 and hybrid limits, the device filter, OOM; `tty` the pty; `spec` the data;
//! `stub` boxr-init's sealed copy and plan; `sys` every `unsafe` block.

pub mod cgroup;
mod confine;
mod error;
pub mod exec;
mod fds;
pub mod fs_helper;
mod helper;
mod init;
mod join;
pub mod process;
mod relay;
mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spec;
mod stub;
mod sys;
mod tty;
mod userns;

use std::ffi::CString;
use std::os::fd::AsRawFd;

use fds::{read_spec_fd, spec_memfd, stdin_from_dev_null};

pub use fds::spawn_without_inherited;

pub use error::SetupError;
pub use security::SecuritySpec;
pub use spec::*;

/// The hidden subcommand of the helper.
pub const HELPER_ARG: &str = "__sandbox";
/// The mode of the fs helper (filesystem steps, `cp`, `export`, volume population). It is a
/// mode of the `boxr` binary, not of `boxr-sandbox`: its code (globs, tar) would double the
/// runtime binary (1.06 MB → 2.18 MB stripped), which every container start loads.
pub const FS_HELPER_ARG: &str = "__fs";

/// `boxr __fs --spec-fd N`, before any argument parsing: the fs helper's entry point, if this
/// process was started as one (the `boxr` binary calls it first thing).
pub fn fs_helper_mode() -> Option<i32> {
    let args: Vec<String> = std::env::args().take(4).collect();
    if args.get(1).map(String::as_str) != Some(FS_HELPER_ARG) {
        return None;
    }
    Some(match number_arg(&args, "--spec-fd") {
        Some(fd) => fs_helper::main(fd),
        None => {
            eprintln!("usage: boxr {FS_HELPER_ARG} --spec-fd N (run by boxr)");
            125
        }
    })
}

/// Why the sandbox (or one of its helpers) could not be started.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SandboxError {
    #[error("cannot start the sandbox: cannot find boxr's own binary: {0}")]
    #[diagnostic(code(boxr::sandbox::own_path))]
    OwnPath(#[source] std::io::Error),
    #[error("cannot start the sandbox: {} is missing", .0.display())]
    #[diagnostic(
        code(boxr::sandbox::runtime_missing),
        help("boxr-sandbox is installed beside boxr (cargo install puts both there)")
    )]
    RuntimeMissing(std::path::PathBuf),
    /// The spec could not be handed over, or the runtime not copied for PID 1.
    #[error("cannot start the sandbox: {0}")]
    #[diagnostic(code(boxr::sandbox::prepare))]
    Prepare(#[source] SetupError),
    #[error("cannot start the sandbox: cannot keep the store lock (descriptor {fd}): {source}")]
    #[diagnostic(code(boxr::sandbox::keep_lock))]
    KeepLock {
        fd: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot exec {}: {}", path.display(), errno.desc())]
    #[diagnostic(code(boxr::sandbox::exec))]
    Exec {
        path: std::path::PathBuf,
        errno: nix::errno::Errno,
    },
    #[error("cannot start {}: {source}", path.display())]
    #[diagnostic(code(boxr::sandbox::spawn))]
    Spawn {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The sandbox runtime's file name, beside the boxr binary: the helper, the container's first
/// process and the exec helper run from it. A binary of its own, a sixth of boxr's size, so that
/// every start loads less.
pub const BINARY: &str = "boxr-sandbox";

/// The sandbox runtime binary: this process's own if it is the runtime, else the one beside
/// boxr.
pub fn binary() -> Result<std::path::PathBuf, SandboxError> {
    let exe = std::env::current_exe().map_err(SandboxError::OwnPath)?;
    if exe.file_name().is_some_and(|n| n == BINARY) {
        return Ok(exe);
    }
    let bin = exe.with_file_name(BINARY);
    if !bin.is_file() {
        return Err(SandboxError::RuntimeMissing(bin));
    }
    Ok(bin)
}

/// `boxr-sandbox MODE --spec-fd N [--code C]`: the sandbox runtime's entry point (`__sandbox`
/// the helper, which forks a container's PID 1, `__exec` the exec helper, `__finish` the end of a
/// detached container). Arguments are read by hand: no argument parser in the start path.
pub fn runtime_main(recorder: &dyn Recorder) -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let value = |name| number_arg(&args, name);
    let (Some(mode), Some(spec_fd)) = (args.get(1), value("--spec-fd")) else {
        eprintln!("usage: {BINARY} __sandbox|__exec|__finish --spec-fd N (run by boxr)");
        return 125;
    };
    match mode.as_str() {
        HELPER_ARG => helper::main(spec_fd, recorder),
        exec::EXEC_ARG => exec::main(spec_fd),
        FINISH_ARG => match value("--code") {
            Some(code) => helper::finish_main(spec_fd, code, recorder),
            None => {
                eprintln!("{BINARY} __finish needs --code");
                125
            }
        },
        other => {
            eprintln!("{BINARY}: unknown mode `{other}`");
            125
        }
    }
}

/// How a sandbox's process ended, as its owner's [`Recorder`] hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The init's exit code (128 + N for signal N; 125, 126, 127 for a failed start).
    pub code: i32,
    /// The kernel's OOM killer struck in the sandbox's cgroup.
    pub oom: bool,
}

impl Ended {
    /// The exit code to report: 137 (SIGKILL) when the OOM killer ended a command that then
    /// failed, as Docker reports it.
    pub fn code(self) -> i32 {
        if self.oom && self.code != 0 {
            137
        } else {
            self.code
        }
    }
}

/// What the owner of a sandbox records when it starts and ends (a container: its events,
/// its exit status, `--rm`). The sandbox runtime calls it in its own process, since for a
/// foreground `boxr run` no other boxr process is left; what to record comes from the spec's
/// `owner`, which the sandbox carries and never reads. The runtime binary chooses the recorder
/// (`boxr-sandbox` passes the container's), so `sandbox` knows nothing of containers or stores.
pub trait Recorder {
    /// The command runs (in its cgroup, its pid recorded).
    fn started(&self, spec: &SandboxSpec);
    /// It ended, and its cgroup is gone.
    fn ended(&self, spec: &SandboxSpec, end: Ended);
}

/// The number after `--name` in `args` (the small binaries read their few arguments by hand).
pub fn number_arg(args: &[String], name: &str) -> Option<i32> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

/// The mode of the sandbox runtime that ends a detached container.
pub const FINISH_ARG: &str = "__finish";

/// Makes this process the sandbox helper running `spec`, with `recorder`; `boxr run` in the
/// foreground becomes the helper, so signals from the terminal reach it directly. Returns only
/// on failure.
///
/// With one thread, this process becomes the helper in place: the exec of the runtime (its
/// loader, glibc's and Rust's start-up, the spec read again) cost about a tenth of a start, and
/// nothing of this process reaches the container (its first process closes every descriptor it
/// was not handed, and execs boxr-init with an empty environment). With more (a thread pool a
/// pull started), forking the container's first process would not be safe: it execs the runtime.
pub fn exec(spec: &SandboxSpec, recorder: &dyn Recorder) -> SandboxError {
    // Checked all the same: an installation without the runtime fails here as it would for a
    // detached container, a build step or an exec.
    let bin = match binary() {
        Ok(b) => b,
        Err(e) => return e,
    };
    if sys::single_threaded().is_some() {
        std::process::exit(helper::main_with(spec, recorder));
    }
    let fd = match spec_memfd(spec, false) {
        Ok(fd) => fd,
        Err(e) => return SandboxError::Prepare(e),
    };
    if let Some(keep) = spec.keep_fd {
        // Let the store lock survive the exec; the helper marks it close-on-exec again.
        if let Err(e) = sys::clear_cloexec(keep) {
            return SandboxError::KeepLock {
                fd: keep,
                source: e,
            };
        }
    }
    let arg = |s: &str| CString::new(s).expect("no NUL");
    let args = [
        arg(RUNTIME_NAME),
        arg(HELPER_ARG),
        arg("--spec-fd"),
        arg(&fd.as_raw_fd().to_string()),
    ];
    // With an empty environment, as `runtime_command`'s.
    let env: [CString; 0] = [];
    let path = match CString::new(bin.as_os_str().as_encoded_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return SandboxError::Prepare(SetupError::Io {
                what: format!("the runtime's path {} holds a NUL", bin.display()),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
    };
    SandboxError::Exec {
        errno: nix::unistd::execve(&path, &args, &env).expect_err("execve returns only on failure"),
        path: bin,
    }
}

/// The signalfd of [`RELAYED`] and SIGCHLD (blocked by [`block_relayed`]).
fn relayed_signalfd() -> Result<nix::sys::signalfd::SignalFd, SandboxError> {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in RELAYED {
        set.add(s);
    }
    set.add(nix::sys::signal::Signal::SIGCHLD);
    nix::sys::signalfd::SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC)
        .map_err(|e| SandboxError::Prepare(SetupError::at("signalfd")(e)))
}

/// Passes on the signals sent to this process (not those the terminal sent to its whole
/// process group: the child has them already) to child `pid` until it ends; its exit code.
fn relay_until_exit(pid: i32, sigfd: &nix::sys::signalfd::SignalFd) -> i32 {
    // It may have ended before SIGCHLD was blocked.
    if let Some((_, code)) = sys::reap(Some(pid)) {
        return code;
    }
    loop {
        let Ok(Some(info)) = sigfd.read_signal() else {
            continue;
        };
        let signo = info.ssi_signo as i32;
        if signo == nix::libc::SIGCHLD {
            if let Some((_, code)) = sys::reap(Some(pid)) {
                return code;
            }
            continue;
        }
        // SI_USER and SI_QUEUE: sent by a process; a terminal's signals come from the
        // kernel and went to the helper's process group as well.
        if info.ssi_code <= 0 {
            let _ = sys::send_signal(pid, signo);
        }
    }
}

/// The signals a foreground `boxr run` that stays as the helper's parent passes on to it.
pub const RELAYED: [nix::sys::signal::Signal; 6] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
    nix::sys::signal::Signal::SIGQUIT,
    nix::sys::signal::Signal::SIGUSR1,
    nix::sys::signal::Signal::SIGUSR2,
];

/// Blocks [`RELAYED`] and SIGCHLD in the calling thread (and so in the threads it starts
/// after), for [`run_foreground`], which takes them from a signalfd.
pub fn block_relayed() -> nix::Result<nix::sys::signal::SigSet> {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in RELAYED {
        set.add(s);
    }
    set.add(nix::sys::signal::Signal::SIGCHLD);
    set.thread_block()?;
    Ok(set)
}

/// `boxr run` in the foreground when this process must outlive the container's start (it
/// holds the container's published ports): runs the sandbox helper
/// as a child with this process's stdio and store lock, passes on the
/// signals sent to this process (not those the terminal sent to both: the helper has them
/// already), and returns the helper's exit code. [`block_relayed`] must have been called.
pub fn run_foreground(spec: &SandboxSpec) -> Result<i32, SandboxError> {
    // Killed, this process takes the helper, and so the container, with it (as when it is the
    // helper itself).
    let mut spec = spec.clone();
    spec.die_with_parent = true;
    let fd = spec_memfd(&spec, false).map_err(SandboxError::Prepare)?;
    if let Some(keep) = spec.keep_fd {
        sys::clear_cloexec(keep).map_err(|source| SandboxError::KeepLock { fd: keep, source })?;
    }
    let sigfd = relayed_signalfd()?;
    let bin = binary()?;
    let spec_fd = fd.as_raw_fd().to_string();
    let child = runtime_command(&bin, &[HELPER_ARG, "--spec-fd", &spec_fd])
        .spawn()
        .map_err(|source| SandboxError::Spawn { path: bin, source })?;
    drop(fd);
    Ok(relay_until_exit(child.id() as i32, &sigfd))
}

/// Starts the sandbox helper as a child (build steps). The spec reaches it as its stdin, a
/// descriptor no other child can inherit (threads of the caller may be spawning at the same
/// time); its output goes where `stdout` and `stderr` say. With `spec.die_with_parent` it is
/// killed when the calling thread exits.
pub fn spawn(
    spec: &SandboxSpec,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Result<std::process::Child, SandboxError> {
    let bin = binary()?;
    let fd = spec_memfd(spec, true).map_err(SandboxError::Prepare)?;
    runtime_command(&bin, &[HELPER_ARG, "--spec-fd", "0"])
        .stdin(std::process::Stdio::from(fd))
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| SandboxError::Spawn { path: bin, source })
}

/// The name the sandbox runtime runs under (its `argv[0]`).
pub const RUNTIME_NAME: &str = "boxr-sandbox";

/// A command that runs the sandbox runtime `runtime` with `args` and an empty environment. It
/// runs from its file: no process of a container ever runs it (see `stub`: what stays in a
/// container is boxr-init, from a sealed copy).
pub fn runtime_command(runtime: &std::path::Path, args: &[&str]) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(runtime);
    command.arg0(RUNTIME_NAME).args(args).env_clear();
    command
}

/// Starts the fs helper (a `copy` or `workdir` step, `cp`, `export`, a volume's first
/// content) as a child; see [`fs_helper`].
pub fn spawn_fs_helper(
    spec: &fs_helper::FsSpec,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Result<std::process::Child, SandboxError> {
    // From boxr itself (see FS_HELPER_ARG).
    spawn_helper("/proc/self/exe".into(), FS_HELPER_ARG, spec, stdout, stderr)
}

fn spawn_helper<T: serde::Serialize>(
    bin: std::path::PathBuf,
    arg: &str,
    spec: &T,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Result<std::process::Child, SandboxError> {
    use std::os::unix::process::CommandExt;
    let fd = spec_memfd(spec, true).map_err(SandboxError::Prepare)?;
    std::process::Command::new(&bin)
        .arg0("boxr")
        .args([arg, "--spec-fd", "0"])
        .stdin(std::process::Stdio::from(fd))
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(|source| SandboxError::Spawn { path: bin, source })
}

/// Reads a JSON value from an inherited descriptor (0: stdin, then pointed at /dev/null): how
/// boxr's hidden subcommands receive their spec.
pub fn read_json_fd<T: serde::de::DeserializeOwned>(fd: i32) -> Result<T, SetupError> {
    let v = read_spec_fd(fd)?;
    if fd == 0 {
        stdin_from_dev_null()?;
    }
    Ok(v)
}

/// A JSON value in a new memfd, for a child's stdin (see [`read_json_fd`]).
pub fn json_memfd<T: serde::Serialize>(value: &T) -> Result<std::os::fd::OwnedFd, SandboxError> {
    spec_memfd(value, true).map_err(SandboxError::Prepare)
}

pub use helper::process_start_time;

/// Reaps one ended child (`pid`, or any): its pid and exit code (128 + N for signal N).
pub fn reap(pid: Option<i32>) -> Option<(i32, i32)> {
    sys::reap(pid)
}

/// Sends signal number `signo` (real-time ones included) to `pid`.
pub fn send_signal(pid: i32, signo: i32) -> std::io::Result<()> {
    sys::send_signal(pid, signo)
}

/// For a long-lived process: maps its code only as it runs (see `sys::map_code_on_demand`).
pub fn map_code_on_demand() {
    sys::map_code_on_demand();
}

/// Gives the heap's free memory back to the kernel (a long-lived process after its start).
pub fn trim_heap() {
    sys::trim_heap();
}

/// Closes every inherited descriptor from 3 up except `keep`: for the long-lived monitor,
/// which must not hold what its starter happened to have open (a terminal, a pipe whose
/// reader waits for its end).
pub fn close_inherited_fds(keep: &[i32]) {
    fds::close_fds_except(keep);
}

/// Takes ownership of descriptor `fd`, inherited from the parent (None if it is not open).
pub fn own_inherited_fd(fd: i32) -> Option<std::os::fd::OwnedFd> {
    sys::own_fd(fd)
}

/// A JSON value in a new memfd that a child inherits (not close-on-exec): for a
/// single-threaded parent that passes `--spec-fd N` and keeps its children's stdin for them.
pub fn json_memfd_inherited<T: serde::Serialize>(
    value: &T,
) -> Result<std::os::fd::OwnedFd, SandboxError> {
    spec_memfd(value, false).map_err(SandboxError::Prepare)
}

/// Terminal plumbing for the monitor and `boxr attach`: the pty master a detached sandbox's
/// init sends over `console` (None if it exited first), window sizes, and raw mode.
pub mod term {
    use std::os::fd::{AsRawFd, OwnedFd};

    pub use super::tty::RawMode;

    pub fn receive_master(console: &OwnedFd) -> Option<OwnedFd> {
        super::tty::receive_master(console)
    }

    /// Rows and columns of terminal `fd`.
    pub fn size(fd: &impl AsRawFd) -> Option<(u16, u16)> {
        super::sys::get_winsize(fd.as_raw_fd()).ok()
    }

    pub fn resize(fd: &impl AsRawFd, rows: u16, cols: u16) -> std::io::Result<()> {
        super::sys::set_winsize(fd.as_raw_fd(), rows, cols)
    }

    /// Clears close-on-exec on `fd`, for a child to inherit it.
    pub fn inheritable(fd: &impl AsRawFd) -> std::io::Result<()> {
        super::sys::clear_cloexec(fd.as_raw_fd())
    }
}
