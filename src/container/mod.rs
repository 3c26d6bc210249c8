//! Containers: an image and run options → a `SandboxSpec`, by Docker's rules (entrypoint and
//! cmd, environment, user, working directory, hostname), in a directory of its own under
//! `containers/<id>/` (upper and work dirs, /etc files, config).
//!
//! Files: `options` what `run` and `create` take (and limits, user namespace, security);
//! `mounts` volumes and bind mounts; `share` the namespaces shared with the host or another
//! container; `create` options → spec, the container's directory, `run`;
//! `exec`; `detached` `run -d` and `create` under a monitor; `state` the container's files on disk
//! (`state.json` as one [`state::StateFile`]), names, status; `record` what its sandbox records
//! as it starts and ends (events, exit status, `--rm`); `monitor` the per-container monitor of
//! a detached container (its restart policy and backoff: `restart`); `lifecycle` start, stop,
//! restart, attach, rm, update, rename;
//! `health` health checks; `events` the event log; `logs`, `stats`, `top`, `filter` (`ps -f`),
//! `commit` (and export, diff), `cp`, `etc` (/etc/hosts, resolv.conf, hostname).

pub mod commit;
pub mod control;
pub mod cp;
mod create;
mod detached;
mod etc;
pub mod events;
mod exec;
pub mod filter;
mod foreground;
pub mod health;
pub mod inspect;
pub mod lifecycle;
pub mod logs;
pub mod monitor;
mod mounts;
pub mod network;
mod options;
pub mod record;
mod release;
mod restart;
mod share;
pub mod state;
pub mod stats;
pub mod top;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

use crate::sandbox::{
    self, EtcFile, IdMap, MountSpec, NetworkMode, NsShare, ProcessSpec, RootfsSpec, SandboxSpec,
    UserNs,
};
use crate::store::{Store, StoreError};

pub use create::*;
pub use detached::*;
pub use exec::*;
pub use foreground::*;
use mounts::*;
pub use options::*;
use share::*;

#[derive(Debug, Error, Diagnostic)]
pub enum ContainerError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
    #[error("no such container: {0}")]
    #[diagnostic(
        code(boxr::container::not_found),
        help("`boxr ps -a` lists the containers")
    )]
    NotFound(String),
    #[error("{message}")]
    #[diagnostic(code(boxr::container::invalid))]
    Invalid {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error("cannot {action} `{}`", path.display())]
    #[diagnostic(code(boxr::container::io))]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cgroup(#[from] sandbox::cgroup::CgroupError),
    /// Boxed: a network error is large, and every `Result` of this type would carry its size.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Net(Box<crate::net::NetError>),
    /// A detached container could not start: 125 (boxr), 126 (cannot execute), 127 (not found).
    #[error("{message}")]
    #[diagnostic(code(boxr::container::start))]
    Start { code: i32, message: String },
    /// An operation failed, and so did cleaning up after it (ARCHITECTURE decision 10): both
    /// are reported, the first as the error, the others as what was left.
    #[error("{error}")]
    #[diagnostic(
        code(boxr::container::cleanup),
        help("cleaning up after it failed too: {}; `boxr gc` removes what is left", cleanup.join("; "))
    )]
    Cleanup {
        error: Box<ContainerError>,
        cleanup: Vec<String>,
    },
}

impl From<crate::net::NetError> for ContainerError {
    fn from(e: crate::net::NetError) -> ContainerError {
        ContainerError::Net(Box::new(e))
    }
}

impl ContainerError {
    /// The exit code of `boxr` for this error (Docker's: 125, or the command's 126 and 127).
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Start { code, .. } => *code,
            ContainerError::Cleanup { error, .. } => error.exit_code(),
            _ => 125,
        }
    }

    /// `self`, and what of the cleanup after it failed (`Err`s of `cleanup`), if any.
    pub(crate) fn with_cleanup(self, cleanup: Vec<String>) -> ContainerError {
        if cleanup.is_empty() {
            self
        } else {
            ContainerError::Cleanup {
                error: Box::new(self),
                cleanup,
            }
        }
    }
}

fn invalid(message: impl Into<String>, help: Option<&str>) -> ContainerError {
    ContainerError::Invalid {
        message: message.into(),
        help: help.map(str::to_owned),
    }
}

/// A value of an option that [`crate::values`] (or the sandbox's own parsers) rejected.
fn invalid_value(b: crate::values::Bad) -> ContainerError {
    ContainerError::Invalid {
        message: b.reason,
        help: b.help,
    }
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ContainerError + 'a {
    move |source| ContainerError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A new random container id (64 hex digits, as docker's).
/// A container's directory, from its sandbox spec (where its pid file is).
fn dir_of(spec: &SandboxSpec) -> PathBuf {
    spec.pid_file
        .as_ref()
        .and_then(|p| p.parent())
        .expect("a container has a directory")
        .to_owned()
}

fn new_id() -> Result<String, ContainerError> {
    let mut b = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io_err("read", Path::new("/dev/urandom")))?;
    Ok(hex::encode(b))
}

/// The process by Docker's rules: entrypoint + (command, or else cmd); `--entrypoint` also
/// clears the image's cmd.
pub fn process_args(
    image_entrypoint: Option<&[String]>,
    image_cmd: Option<&[String]>,
    entrypoint: Option<&str>,
    command: &[String],
) -> Vec<String> {
    let (ep, cmd): (Vec<String>, Vec<String>) = match entrypoint {
        Some("") => (Vec::new(), command.to_vec()),
        Some(e) => (vec![e.to_owned()], command.to_vec()),
        None => (
            image_entrypoint.map(<[String]>::to_vec).unwrap_or_default(),
            if command.is_empty() {
                image_cmd.map(<[String]>::to_vec).unwrap_or_default()
            } else {
                command.to_vec()
            },
        ),
    };
    ep.into_iter().chain(cmd).collect()
}

/// Merges `KEY=VALUE` lists: later keys replace earlier ones, first positions kept.
fn merge_env(into: &mut Vec<String>, more: impl IntoIterator<Item = String>) {
    for kv in more {
        let key = kv
            .split_once('=')
            .map_or(kv.as_str(), |(k, _)| k)
            .to_owned();
        match into
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
        {
            Some(e) => *e = kv,
            None => into.push(kv),
        }
    }
}

/// `-e` values: `KEY=VALUE`, or `KEY` taken from boxr's own environment (skipped if unset).
fn cli_env(opts: &RunOptions) -> Result<Vec<String>, ContainerError> {
    let mut out = Vec::new();
    for f in &opts.env_files {
        let text = fs::read_to_string(f).map_err(io_err("read", f))?;
        for line in text.lines() {
            let line = line.trim_start();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            out.push(line.to_owned());
        }
    }
    out.extend(opts.env.iter().cloned());
    let mut resolved = Vec::new();
    for e in out {
        if e.contains('=') {
            if e.starts_with('=') {
                return Err(invalid(format!("invalid environment variable `{e}`"), None));
            }
            resolved.push(e);
        } else if let Ok(v) = std::env::var(&e) {
            resolved.push(format!("{e}={v}"));
        }
    }
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_follow_docker() {
        let ep = v(&["/app"]);
        let cmd = v(&["--port=80"]);
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), None, &[]),
            v(&["/app", "--port=80"])
        );
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), None, &v(&["-x"])),
            v(&["/app", "-x"])
        );
        assert_eq!(
            process_args(Some(&ep), Some(&cmd), Some("/bin/sh"), &[]),
            v(&["/bin/sh"])
        );
        assert_eq!(
            process_args(None, Some(&cmd), Some(""), &v(&["ls"])),
            v(&["ls"])
        );
        assert_eq!(process_args(None, None, None, &[]), Vec::<String>::new());
    }

    #[test]
    fn env_merges_by_key() {
        let mut e = v(&["A=1", "B=2"]);
        merge_env(&mut e, v(&["B=3", "C=4"]));
        assert_eq!(e, v(&["A=1", "B=3", "C=4"]));
    }

    #[test]
    fn a_failed_cleanup_is_reported_with_the_error_it_followed() {
        use miette::Diagnostic;
        let e = invalid("the name `web` is taken", None);
        assert!(matches!(
            e.with_cleanup(Vec::new()),
            ContainerError::Invalid { .. }
        ));
        let e = invalid("the name `web` is taken", None)
            .with_cleanup(vec!["volume v1: Permission denied".into()]);
        assert_eq!(e.to_string(), "the name `web` is taken");
        let help = e.help().unwrap().to_string();
        assert!(
            help.contains("volume v1: Permission denied") && help.contains("boxr gc"),
            "{help}"
        );
        assert_eq!(e.exit_code(), 125);
        let start = ContainerError::Start {
            code: 127,
            message: "not found".into(),
        };
        assert_eq!(start.with_cleanup(vec!["x".into()]).exit_code(), 127);
    }
}
