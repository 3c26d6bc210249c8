//! The event log: `events.jsonl` in the store, one JSON object per line, appended with
//! `O_APPEND` (a line is one write, so concurrent writers never interleave): what happened to
//! which container, when. `boxr events` reads and follows it.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde_json::{Value, json};

/// The log's path under a store root.
pub fn path(store_root: &Path) -> std::path::PathBuf {
    store_root.join("events.jsonl")
}

/// Appends an event (errors are ignored: the event log never stops a container).
pub fn record(store_root: &Path, action: &str, id: &str, attrs: Value) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut e = json!({
        "time": d.as_secs(),
        "timeNano": d.as_nanos() as u64,
        "type": "container",
        "action": action,
        "id": id,
    });
    if let (Some(o), Value::Object(a)) = (e.as_object_mut(), attrs) {
        o.insert("attributes".into(), Value::Object(a));
    }
    if let Ok(mut f) = fs::File::options()
        .create(true)
        .append(true)
        .open(path(store_root))
    {
        let _ = f.write_all(format!("{e}\n").as_bytes());
    }
}

/// The store root of a container directory (`<root>/containers/<id>`).
pub fn root_of(container_dir: &Path) -> Option<&Path> {
    container_dir.parent()?.parent()
}
