//! The event log: `events.jsonl` in the store, one JSON object per line, appended with
//! `O_APPEND` (a line is one write, so concurrent writers never interleave): what happened to
//! which container, when. `boxr events` reads and follows it.

use std::path::Path;

use serde_json::Value;

/// The log's path under a store root.
pub fn path(store_root: &Path) -> std::path::PathBuf {
    store_root.join("events.jsonl")
}

/// Appends an event (see [`crate::sandbox::append_event`], the one writer of the log).
pub fn record(store_root: &Path, action: &str, id: &str, attrs: Value) {
    crate::sandbox::append_event(&path(store_root), action, id, attrs);
}

/// The store root of a container directory (`<root>/containers/<id>`).
pub fn root_of(container_dir: &Path) -> Option<&Path> {
    container_dir.parent()?.parent()
}
