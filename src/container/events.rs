//! The event log: `events.jsonl` in the store, one JSON object per line, appended with
//! `O_APPEND` (a line is one write, so concurrent writers never interleave): what happened to
//! which container, when. `boxr events` reads and follows it. [`record`] is its one writer.

use std::io::Write;
use std::path::Path;

use serde_json::Value;

/// The log's path under a store root.
pub fn path(store_root: &Path) -> std::path::PathBuf {
    store_root.join("events.jsonl")
}

/// Appends one container event to the store's log, as one `O_APPEND` write. Errors are
/// ignored: the event log never stops a container.
pub fn record(store_root: &Path, action: &str, id: &str, attrs: Value) {
    let d = crate::time::since_epoch();
    let e = serde_json::json!({
        "time": d.as_secs(), "timeNano": d.as_nanos() as u64, "type": "container",
        "action": action, "id": id, "attributes": attrs,
    });
    if let Ok(mut f) = std::fs::File::options()
        .create(true)
        .append(true)
        .open(path(store_root))
    {
        let _ = f.write_all(format!("{e}\n").as_bytes());
    }
}

/// Which events `boxr events` shows (Docker's rules: different keys must all match, the
/// values of one key are alternatives).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Unix seconds.
    pub since: Option<u64>,
    pub until: Option<u64>,
    /// Container names or id prefixes.
    pub containers: Vec<String>,
    /// Actions (`start`, `die`, `health_status: healthy`, ...).
    pub actions: Vec<String>,
    /// Labels the container must all have (`KEY`, or `KEY` and its value), as `ps -f label=`.
    pub labels: Vec<(String, Option<String>)>,
    /// Labels of which the container must have one (when any are given): `stack events`'
    /// services.
    pub any_label: Vec<(String, Option<String>)>,
}

/// A filter or time option of `boxr events` that does not parse.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum FilterError {
    #[error("--{option} {value}: write RFC 3339, seconds since the epoch, or now")]
    #[diagnostic(code(boxr::events::time))]
    Time { option: &'static str, value: String },
    #[error("--filter {0}: use container=NAME|ID, event=ACTION or label=KEY[=VALUE]")]
    #[diagnostic(code(boxr::events::filter))]
    Filter(String),
}

impl Filter {
    /// From `--since`, `--until` (RFC 3339, seconds, or `now`) and `--filter KEY=VALUE`s.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        filters: &[String],
    ) -> Result<Filter, FilterError> {
        let time = |option: &'static str, t: &str| {
            parse_time(t).ok_or_else(|| FilterError::Time {
                option,
                value: t.to_owned(),
            })
        };
        let mut f = Filter {
            since: since.map(|t| time("since", t)).transpose()?,
            until: until.map(|t| time("until", t)).transpose()?,
            ..Filter::default()
        };
        for spec in filters {
            match spec.split_once('=') {
                Some(("container", v)) => f.containers.push(v.to_owned()),
                Some(("event", v)) => f.actions.push(v.to_owned()),
                Some(("label", v)) if !v.is_empty() => f.labels.push(match v.split_once('=') {
                    Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                    None => (v.to_owned(), None),
                }),
                _ => return Err(FilterError::Filter(spec.clone())),
            }
        }
        Ok(f)
    }
}

fn parse_time(t: &str) -> Option<u64> {
    if t == "now" {
        return Some(crate::time::now_secs().max(0) as u64);
    }
    t.parse::<u64>()
        .ok()
        .or_else(|| crate::time::parse_rfc3339(t).map(|v| v.max(0) as u64))
}

/// Reads the store's event log from the start and calls `on_event` with each event `filter`
/// lets through, in order; then follows the log for new ones until `filter.until` has passed
/// (forever without it).
pub fn follow(store_root: &Path, filter: &Filter, mut on_event: impl FnMut(&Value)) {
    // Names and labels are known from `create` events (read first, in order); other events
    // carry the id.
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut created: std::collections::HashMap<String, Value> = std::collections::HashMap::new();
    let mut matches = |e: &Value| -> bool {
        if let (Some(n), Some(id)) = (e["attributes"]["name"].as_str(), e["id"].as_str()) {
            names.insert(id.to_owned(), n.to_owned());
        }
        if e["action"] == "create"
            && let Some(id) = e["id"].as_str()
        {
            created.insert(id.to_owned(), e["attributes"].clone());
        }
        let t = e["time"].as_u64().unwrap_or(0);
        if filter.since.is_some_and(|s| t < s) || filter.until.is_some_and(|u| t > u) {
            return false;
        }
        if !filter.actions.is_empty() && !filter.actions.iter().any(|a| e["action"] == *a) {
            return false;
        }
        if !filter.labels.is_empty() || !filter.any_label.is_empty() {
            let attrs = e["id"].as_str().and_then(|id| created.get(id));
            let has = |(k, v): &(String, Option<String>)| {
                attrs.is_some_and(|a| match (&a[k.as_str()], v) {
                    (Value::String(_), None) => true,
                    (Value::String(got), Some(want)) => got == want,
                    _ => false,
                })
            };
            if !filter.labels.iter().all(has)
                || !(filter.any_label.is_empty() || filter.any_label.iter().any(has))
            {
                return false;
            }
        }
        if !filter.containers.is_empty() {
            let id = e["id"].as_str().unwrap_or_default();
            if !filter
                .containers
                .iter()
                .any(|w| id.starts_with(w.as_str()) || names.get(id).is_some_and(|n| n == w))
            {
                return false;
            }
        }
        true
    };
    let log = path(store_root);
    let mut pos = 0usize;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.len() > pos {
            // Only whole lines; a line being written is read on the next round.
            let end = text[pos..].rfind('\n').map_or(pos, |i| pos + i + 1);
            for line in text[pos..end].lines() {
                if let Ok(e) = serde_json::from_str::<Value>(line)
                    && matches(&e)
                {
                    on_event(&e);
                }
            }
            pos = end;
        }
        if filter
            .until
            .is_some_and(|u| crate::time::now_secs().max(0) as u64 >= u)
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_follow_dockers_rules() {
        let dir = tempfile::tempdir().unwrap();
        record(
            dir.path(),
            "create",
            "aaa111",
            serde_json::json!({"name": "web"}),
        );
        record(dir.path(), "start", "aaa111", serde_json::json!({}));
        record(dir.path(), "start", "bbb222", serde_json::json!({}));
        record(dir.path(), "die", "aaa111", serde_json::json!({}));
        let until = Some("now");
        let seen = |filters: &[&str]| {
            let filters: Vec<String> = filters.iter().map(|f| (*f).to_owned()).collect();
            let f = Filter::parse(None, until, &filters).unwrap();
            let mut out = Vec::new();
            follow(dir.path(), &f, |e| {
                out.push(format!(
                    "{} {}",
                    e["action"].as_str().unwrap(),
                    e["id"].as_str().unwrap()
                ))
            });
            out
        };
        assert_eq!(seen(&[]).len(), 4);
        // A name from the create event matches the id's later events.
        assert_eq!(seen(&["container=web", "event=start"]), ["start aaa111"]);
        assert_eq!(
            seen(&["event=start", "event=die"]),
            ["start aaa111", "start bbb222", "die aaa111"]
        );
        assert_eq!(seen(&["container=bbb"]), ["start bbb222"]);
        assert!(matches!(
            Filter::parse(Some("yesterday"), None, &[]),
            Err(FilterError::Time {
                option: "since",
                ..
            })
        ));
        assert!(Filter::parse(None, None, &["image=x".into()]).is_err());
    }
}
