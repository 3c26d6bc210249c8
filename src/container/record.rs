//! What a container's sandbox records as it starts and ends: the `start`, `oom` and `die`
//! events, the exit status (in `state.json` for a foreground container that stays, in
//! `exit.json` for the monitor of a detached one), and what `--rm` removes.
//!
//! The sandbox runtime calls [`Recorder`] in its own process (a foreground `boxr run` has become
//! that process); the [`Record`] rides in the sandbox spec's `owner`, which `sandbox` carries
//! and never reads.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::events;
use super::state::StateFile;
use crate::sandbox::{Ended, SandboxSpec};

/// A container's record in its sandbox spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The store root (for the event log).
    pub store_root: PathBuf,
    /// Where the end is written: `state.json` or `exit.json` in the container's directory;
    /// `None` for a foreground `--rm` container (nothing stays to read it).
    pub end_file: Option<PathBuf>,
    /// `--rm`: the container's directory, then its anonymous volumes, removed at the end.
    pub remove: Vec<PathBuf>,
    /// It is on a network (whose namespace, veth and lease `--rm` releases first).
    #[serde(default)]
    pub network: bool,
    /// The boxr binary that made the container, for `boxr __net-release` (the one beside the
    /// sandbox runtime, unless the record says otherwise).
    #[serde(default)]
    pub boxr: Option<PathBuf>,
}

impl Record {
    /// The record a spec carries, if it is a container's.
    pub fn of(spec: &SandboxSpec) -> Option<Record> {
        serde_json::from_value(spec.owner.clone()?).ok()
    }

    /// Puts this record into `spec`.
    pub fn set(&self, spec: &mut SandboxSpec) {
        spec.owner = Some(serde_json::to_value(self).expect("a record serializes"));
    }

    /// Whether the container is removed when it ends (`--rm`).
    pub fn removes(&self) -> bool {
        !self.remove.is_empty()
    }

    fn event(&self, action: &str, attrs: serde_json::Value) {
        events::record(&self.store_root, action, &self.id, attrs);
    }
}

/// Takes the container off its network, if it is on one: through `boxr __net-release` (the
/// network code would nearly double `boxr-sandbox`, which every start copies for PID 1). Waits
/// only until it has unmounted the container's namespace (the directory can go then); the veth's
/// deletion goes on under the networks lock, which every later network operation waits for.
fn release_network(r: &Record, stopping: bool) {
    if r.network {
        super::network::release(&r.store_root, &r.id, stopping, r.boxr.as_deref());
    }
}

/// The container's [`crate::sandbox::Recorder`]: `boxr-sandbox` runs with it.
pub struct Recorder;

impl crate::sandbox::Recorder for Recorder {
    fn started(&self, spec: &SandboxSpec) {
        if let Some(r) = Record::of(spec) {
            r.event("start", serde_json::json!({}));
        }
    }

    fn ended(&self, spec: &SandboxSpec, end: Ended) {
        let Some(r) = Record::of(spec) else {
            return;
        };
        if end.oom {
            r.event("oom", serde_json::json!({}));
        }
        r.event("die", serde_json::json!({"exitCode": end.code()}));
        if let Some(path) = &r.end_file
            && let (Some(dir), Some(name)) = (path.parent(), path.file_name())
        {
            let state = StateFile {
                exit_code: Some(end.code),
                oom_killed: end.oom,
                ..StateFile::default()
            };
            if let Err(e) = state.write(dir, &name.to_string_lossy()) {
                eprintln!(
                    "boxr: cannot record the exit status in {}: {e}",
                    path.display()
                );
            }
        }
        if r.removes() {
            // Before the directory goes: its network namespace is a mount point in it.
            release_network(&r, false);
        } else if r
            .end_file
            .as_ref()
            .is_some_and(|f| f.file_name().is_some_and(|n| n == super::state::STATE))
        {
            // A foreground container that stays gives its namespace and veth back (a detached
            // one's monitor does, when it ends for good: its restarts keep them).
            release_network(&r, true);
        }
        for d in &r.remove {
            if let Err(e) = crate::store::remove_dir_tree(d) {
                eprintln!("boxr: cannot remove {}: {e}", d.display());
            }
        }
    }
}
