//! `SandboxSpec`: everything needed to start a sandboxed process, as plain data. It crosses a
//! process boundary (to the freshly exec'd helper) as JSON over an inherited pipe.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A sandbox to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub rootfs: RootfsSpec,
    pub hostname: String,
    pub network: NetworkMode,
    /// Files boxr writes and bind-mounts over /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub etc_files: Vec<EtcFile>,
    pub mounts: Vec<MountSpec>,
    pub process: ProcessSpec,
    /// Run boxr's init as PID 1 (reaps, forwards signals) instead of the command itself.
    pub init: bool,
    /// Remove this directory after the sandbox exits (`--rm`).
    pub remove_on_exit: Option<PathBuf>,
    /// An inherited descriptor (a store lock) the helper keeps until the sandbox exits.
    pub keep_fd: Option<i32>,
}

/// The root filesystem: an overlay of image layers plus a private upper dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootfsSpec {
    /// Layer roots, topmost first (overlay lowerdir order).
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where to mount it (inside the sandbox's private mount namespace).
    pub target: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A new network namespace with only the loopback interface (up).
    None,
    /// The host's network namespace.
    Host,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcFile {
    /// A file on the host (in the container's directory).
    pub source: PathBuf,
    /// Its path in the container, e.g. `/etc/hosts`.
    pub target: String,
}

/// An extra mount.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MountSpec {
    Bind {
        source: PathBuf,
        target: String,
        read_only: bool,
    },
    Tmpfs {
        target: String,
        options: String,
    },
}

/// The process to run inside.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    /// `KEY=VALUE`; PATH and HOME are filled in when missing.
    pub env: Vec<String>,
    /// Resolved inside the container; created if missing.
    pub cwd: String,
    /// `USER[:GROUP]`, names resolved through the image's /etc/passwd and /etc/group.
    pub user: Option<String>,
    /// Keep stdin attached (`-i`); otherwise the command reads /dev/null.
    pub stdin: bool,
}
