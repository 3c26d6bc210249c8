//! What can go wrong while a sandbox is set up, typed: the step that failed and the system's
//! own error (errno, I/O error, JSON error) as its source, so a message names both and a caller
//! can tell the causes apart. The helpers print these and exit 125, as runc does.

use std::path::PathBuf;

use nix::errno::Errno;

/// A setup step failed: what was being done, and why.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {}", errno.desc())]
    Sys { what: String, errno: Errno },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid spec: {0}")]
    Spec(#[source] serde_json::Error),
    #[error("descriptor {0} is not open")]
    NotOpen(i32),
    #[error(
        "cannot join the {} namespace {what}: it is not running",
        ns_name(kind)
    )]
    NotRunning { kind: &'static str, what: String },
    #[error("the rootfs target {} has no name", .0.display())]
    NoTargetName(PathBuf),
    #[error("the image has too many layers ({0}) for one overlay mount")]
    TooManyLayers(usize),
    #[error("a user namespace cannot share the PID, IPC or UTS namespace here")]
    UsernsShares,
    #[error("cannot create a user namespace")]
    NoUserns,
    #[error("the hook {} ran past its timeout of {timeout} s", path.display())]
    HookTimeout { path: PathBuf, timeout: u64 },
    #[error("the hook {} failed ({status})", path.display())]
    HookFailed {
        path: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("unknown ulimit {0}")]
    UnknownRlimit(String),
    #[error("invalid seccomp program (not hex)")]
    BadSeccompProgram,
    #[error("cgroup: {0}")]
    Cgroup(#[from] super::cgroup::CgroupError),
    #[error("cannot {what}: {source}")]
    Caps {
        what: &'static str,
        #[source]
        source: caps::errors::CapsError,
    },
}

impl SetupError {
    /// A failed system call while doing `what`.
    pub(super) fn at(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> SetupError {
        move |errno| SetupError::Sys {
            what: what.to_string(),
            errno,
        }
    }

    /// A failed I/O operation while doing `what`.
    pub(super) fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> SetupError {
        move |source| SetupError::Io {
            what: what.to_string(),
            source,
        }
    }

    /// A failed capability operation while doing `what`.
    pub(super) fn caps(what: &'static str) -> impl FnOnce(caps::errors::CapsError) -> SetupError {
        move |source| SetupError::Caps { what, source }
    }
}

/// `net` → `network`: a namespace's kind as a message says it.
fn ns_name(kind: &str) -> &str {
    match kind {
        "net" => "network",
        "mnt" => "mount",
        k => k,
    }
}

/// Says why a helper could not go on, as `boxr: MESSAGE` on stderr, and returns `code` (its
/// exit code: 125 when the sandbox could not be set up, as runc and Docker use it).
pub(super) fn fail(code: i32, message: impl std::fmt::Display) -> i32 {
    eprintln!("boxr: {message}");
    code
}
