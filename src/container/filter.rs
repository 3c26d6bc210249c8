//! `boxr ps --filter KEY=VALUE`: Docker's container filters. The same key given twice matches
//! either value (but every `label` filter must match, as in Docker); different keys must all
//! match.

use super::state::{self, Info, Status};
use super::{ContainerError, invalid};

const KEYS: &[&str] = &[
    "id", "name", "status", "exited", "ancestor", "health", "label",
];

/// Parsed `--filter` values.
#[derive(Debug, Clone, Default)]
pub struct Filters(Vec<(String, String)>);

impl Filters {
    pub fn parse(given: &[String]) -> Result<Filters, ContainerError> {
        let mut out = Vec::new();
        for f in given {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| invalid(format!("--filter {f}: expected KEY=VALUE"), None))?;
            if !KEYS.contains(&k) {
                return Err(invalid(
                    format!("--filter {f}: unknown key `{k}`"),
                    Some(&format!("keys: {}", KEYS.join(", "))),
                ));
            }
            let valid = match k {
                "status" => ["created", "running", "paused", "restarting", "exited"].contains(&v),
                "health" => ["starting", "healthy", "unhealthy", "none"].contains(&v),
                "exited" => v.parse::<i32>().is_ok(),
                _ => !v.is_empty(),
            };
            if !valid {
                return Err(invalid(format!("--filter {f}: `{v}` is not a {k}"), None));
            }
            out.push((k.to_owned(), v.to_owned()));
        }
        Ok(Filters(out))
    }

    /// Whether a filter with `key` was given.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Whether the container matches every key given (any of the values given for it; all of
    /// them for `label`).
    pub fn matches(&self, info: &Info, status: &Status) -> bool {
        KEYS.iter().all(|key| {
            if *key == "label" {
                return self
                    .0
                    .iter()
                    .filter(|(k, _)| k == key)
                    .all(|(_, v)| Self::one(key, v, info, status));
            }
            let mut values = self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v);
            let mut any = false;
            let ok = values.any(|v| {
                any = true;
                Self::one(key, v, info, status)
            });
            ok || !any
        })
    }

    fn one(key: &str, v: &str, info: &Info, status: &Status) -> bool {
        match key {
            "id" => info.id.starts_with(v),
            "name" => info.name.as_deref().is_some_and(|n| n.contains(v)),
            "status" => {
                let now = match status {
                    Status::Created => "created",
                    Status::Running { .. } if state::paused(info) => "paused",
                    Status::Running { .. } => "running",
                    Status::Restarting { .. } => "restarting",
                    Status::Exited { .. } => "exited",
                };
                now == v
            }
            "exited" => {
                matches!(status, Status::Exited { code: Some(c), .. } if c.to_string() == v)
            }
            "ancestor" => {
                let image = info.image.as_str();
                image == v
                    || image.strip_suffix(":latest") == Some(v)
                    || v.strip_suffix(":latest") == Some(image)
                    || info.image_id.as_ref().is_some_and(|id| {
                        let hex = id.trim_start_matches("sha256:");
                        let want = v.trim_start_matches("sha256:");
                        want.len() >= 4 && hex.starts_with(want)
                    })
            }
            // `label=KEY` or `label=KEY=VALUE`.
            "label" => {
                let labels = &info.labels;
                match v.split_once('=') {
                    Some((k, want)) => labels.get(k).is_some_and(|have| have == want),
                    None => labels.contains_key(v),
                }
            }
            // Only a running container's checks say anything.
            "health" => {
                let h = match status {
                    Status::Running { health, .. } => health.as_deref(),
                    _ => None,
                };
                h.unwrap_or("none") == v
            }
            _ => false,
        }
    }
}
