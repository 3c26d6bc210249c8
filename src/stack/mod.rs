//! Stacks: the `service` nodes of a manifest run as containers of one project, as `docker
//! compose` runs a compose file. `boxr up` builds what the services need (through `builder`),
//! makes the project's networks (through `net`), and creates and starts each service's
//! containers the moment its own `depends-on` conditions hold; a second `up` reconciles by a
//! hash of each container's resolved config and image, recreating only what changed. `down`
//! stops dependents before what they depend on and removes everything the project made.
//!
//! Files: `service` a service → `RunOptions` (and its config hash, and `stack config`'s KDL);
//! `up` reconcile and start; `down` stop and remove; `view` `stack ps`, merged logs;
//! `foreground` `up` without `-d`.

mod down;
mod foreground;
mod run;
mod service;
mod up;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use thiserror::Error;

use crate::container::state::{self, Info};
use crate::manifest::{Manifest, Service};
use crate::store::Store;

pub use down::{DownOptions, DownReport, down, stop_services};
pub use foreground::{Foreground, attach};
pub use run::{RunOneOff, prepare_run, start_existing};
pub use service::{config_text, run_options};
pub use up::{Change, UpOptions, UpReport, start_services, up};
pub use view::{LogLine, ServiceRow, follow_logs, logs, ps};

/// The label that names a container's project.
pub const LABEL_PROJECT: &str = "boxr.project";
/// The label that names a container's service.
pub const LABEL_SERVICE: &str = "boxr.service";
/// The label with a container's number among its service's replicas (1, 2, ...).
pub const LABEL_NUMBER: &str = "boxr.number";
/// The label with the hash of a container's resolved config and image.
pub const LABEL_CONFIG_HASH: &str = "boxr.config-hash";
/// The label of a one-off container of `stack run`.
pub const LABEL_ONEOFF: &str = "boxr.oneoff";

#[derive(Debug, Error, Diagnostic)]
pub enum StackError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(#[from] crate::builder::ImagesError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Net(#[from] crate::net::NetError),
    /// A service's container could not be made or started.
    #[error("service `{service}`: {source}")]
    #[diagnostic(code(boxr::stack::container))]
    Container {
        service: String,
        #[source]
        source: crate::container::ContainerError,
        #[help]
        help: Option<String>,
    },
    /// A service did not get where another needs it (unhealthy, exited, failed to start).
    #[error("{message}")]
    #[diagnostic(code(boxr::stack::service))]
    Service {
        message: String,
        #[help]
        help: Option<String>,
    },
    #[error("{message}")]
    #[diagnostic(code(boxr::stack::invalid))]
    Invalid {
        message: String,
        #[help]
        help: Option<String>,
    },
}

impl StackError {
    fn invalid(message: impl Into<String>, help: Option<String>) -> StackError {
        StackError::Invalid {
            message: message.into(),
            help,
        }
    }

    fn container(service: &str, source: crate::container::ContainerError) -> StackError {
        StackError::Container {
            service: service.to_owned(),
            source,
            help: None,
        }
    }
}

/// A manifest's services as one project.
pub struct Project<'m> {
    /// The project's name: containers are `NAME-SERVICE-N`, the default network `NAME_default`.
    pub name: String,
    pub manifest: &'m Manifest,
    /// The manifest's directory (relative paths of services are relative to it).
    pub dir: PathBuf,
    /// Active profiles (`--profile`, `BOXR_PROFILES`).
    pub profiles: Vec<String>,
}

impl<'m> Project<'m> {
    /// The project of `manifest` (in `dir`): named `name`, else after the directory.
    pub fn new(
        manifest: &'m Manifest,
        dir: &Path,
        name: Option<&str>,
        profiles: Vec<String>,
    ) -> Result<Project<'m>, StackError> {
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
        let name = match name {
            Some(n) => {
                if !valid_project_name(n) {
                    return Err(StackError::invalid(
                        format!("`{n}` is not a valid project name"),
                        Some(
                            "use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
                                .into(),
                        ),
                    ));
                }
                n.to_owned()
            }
            None => project_name_of(&dir).ok_or_else(|| {
                StackError::invalid(
                    format!(
                        "cannot name a project after the directory {}",
                        dir.display()
                    ),
                    Some("name it with -p NAME".into()),
                )
            })?,
        };
        Ok(Project {
            name,
            manifest,
            dir,
            profiles,
        })
    }

    pub fn service(&self, name: &str) -> Option<&'m Service> {
        self.manifest.services.iter().find(|s| s.name.value == name)
    }

    /// The services to act on: those named (with, unless `no_deps`, what they depend on), else
    /// every service whose profiles are active (a service without profiles always is). A named
    /// service starts even when its profile is not active.
    pub fn select(&self, named: &[String], no_deps: bool) -> Result<Vec<&'m Service>, StackError> {
        for n in named {
            if self.service(n).is_none() {
                let names = self.manifest.services.iter().map(|s| s.name.value.as_str());
                let help = match crate::values::suggest(n, names) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("{} has no `service \"{n}\"`", self.manifest.name),
                };
                return Err(StackError::invalid(
                    format!("no service named `{n}`"),
                    Some(help),
                ));
            }
        }
        let mut chosen: BTreeSet<&str> = if named.is_empty() {
            self.manifest
                .services
                .iter()
                .filter(|s| self.active(s))
                .map(|s| s.name.value.as_str())
                .collect()
        } else {
            named.iter().map(String::as_str).collect()
        };
        if !no_deps {
            let mut todo: Vec<&str> = chosen.iter().copied().collect();
            while let Some(n) = todo.pop() {
                for d in &self.service(n).expect("checked").depends_on {
                    if chosen.insert(&d.service.value) {
                        todo.push(&d.service.value);
                    }
                }
            }
        }
        Ok(self
            .manifest
            .services
            .iter()
            .filter(|s| chosen.contains(s.name.value.as_str()))
            .collect())
    }

    /// Whether a service's profiles let it start without being named.
    pub fn active(&self, s: &Service) -> bool {
        s.profiles.is_empty() || s.profiles.iter().any(|p| self.profiles.contains(&p.value))
    }

    /// The name of a container of the project.
    pub fn container_name(&self, service: &str, number: u32) -> String {
        format!("{}-{service}-{number}", self.name)
    }

    /// The networks a service joins, its first first: the project's `default` or those it
    /// declares (`PROJECT_NAME`), or external ones by their own names. Each with its
    /// declaration's name.
    pub fn networks_of<'s>(&self, s: &'s Service) -> Vec<(String, &'s str)> {
        let declared: Vec<&str> = match s.networks.is_empty() {
            true => vec!["default"],
            false => s.networks.iter().map(|n| n.value.as_str()).collect(),
        };
        declared
            .into_iter()
            .map(|name| {
                let full = match self.manifest.networks.iter().find(|n| n.name.value == name) {
                    Some(n) if n.external => name.to_owned(),
                    _ => format!("{}_{name}", self.name),
                };
                (full, name)
            })
            .collect()
    }

    /// The project's containers (one-offs of `stack run` too), by service and number.
    pub fn containers(&self, store: &Store) -> Vec<Info> {
        containers_of(store, &self.name)
    }
}

/// The containers labelled with project `name`, by service, then number.
pub fn containers_of(store: &Store, name: &str) -> Vec<Info> {
    let mut v: Vec<Info> = state::list(store)
        .into_iter()
        .filter(|i| i.labels.get(LABEL_PROJECT).is_some_and(|p| p == name))
        .collect();
    v.sort_by_key(|i| (service_of(i).to_owned(), number_of(i)));
    v
}

/// A container's service, from its label.
pub fn service_of(i: &Info) -> &str {
    i.labels.get(LABEL_SERVICE).map_or("", String::as_str)
}

/// A container's number among its service's replicas.
pub fn number_of(i: &Info) -> u32 {
    i.labels
        .get(LABEL_NUMBER)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn is_oneoff(i: &Info) -> bool {
    i.labels.contains_key(LABEL_ONEOFF)
}

/// A project name: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
pub fn valid_project_name(n: &str) -> bool {
    n.len() <= 63
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A directory's name made a valid project name (as Compose makes it): lowercased, other
/// characters dropped.
pub fn project_name_of(dir: &Path) -> Option<String> {
    let base = dir.file_name()?.to_string_lossy().to_lowercase();
    let n: String = base
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')
        .collect();
    let n = n.trim_start_matches(['-', '_']);
    let n: String = n.chars().take(63).collect();
    (!n.is_empty()).then_some(n)
}

/// The first of the failures threads of one operation collected, if any.
fn first_error(errors: std::sync::Mutex<Vec<StackError>>) -> Result<(), StackError> {
    match errors
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Each service's depth in the dependency graph: 0 for one that depends on nothing, else one
/// more than the deepest of what it depends on (so sorting by it starts dependencies first).
fn dependency_ranks<'m>(services: &[&'m Service]) -> BTreeMap<&'m str, usize> {
    let mut rank: BTreeMap<&str, usize> = BTreeMap::new();
    // At most one pass per service settles a graph without cycles (the manifest check
    // rejects cycles).
    for _ in 0..=services.len() {
        let mut moved = false;
        for s in services {
            let r = s
                .depends_on
                .iter()
                .map(|d| rank.get(d.service.value.as_str()).map_or(1, |r| r + 1))
                .max()
                .unwrap_or(0);
            if rank.get(s.name.value.as_str()) != Some(&r) {
                rank.insert(&s.name.value, r);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    rank
}

/// Services that depend on each service (the reverse edges), within `selected`.
fn dependents<'m>(selected: &[&'m Service]) -> BTreeMap<&'m str, Vec<&'m str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in selected {
        out.entry(&s.name.value).or_default();
        for d in &s.depends_on {
            out.entry(&d.service.value).or_default().push(&s.name.value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names_follow_compose() {
        assert_eq!(
            project_name_of(Path::new("/src/My App")),
            Some("myapp".into())
        );
        assert_eq!(
            project_name_of(Path::new("/src/_x.y-1")),
            Some("xy-1".into())
        );
        assert_eq!(project_name_of(Path::new("/src/...")), None);
        assert!(valid_project_name("web_1-a"));
        assert!(!valid_project_name("Web"));
        assert!(!valid_project_name("-web"));
    }
}
