//! `boxr down` and `stack stop`: dependents stop before what they depend on, independent
//! services in parallel, each container with its own stop signal and timeout; `down` then
//! removes the containers, the project's networks and (with `-v`) its named volumes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::{Project, StackError, dependents, service_of};
use crate::container::lifecycle;
use crate::container::state::{self, Info, Status};
use crate::manifest::VolumeSource;
use crate::store::Store;

/// `boxr down` options.
#[derive(Debug, Clone, Default)]
pub struct DownOptions {
    /// Seconds to wait after the stop signal (default: each container's stop timeout).
    pub timeout: Option<Duration>,
    /// Remove the project's named volumes too.
    pub volumes: bool,
    /// Remove images: `local` (those the manifest builds), `all` (the services' images too).
    pub rmi: Option<String>,
}

/// Stops the given containers of the project in dependency order (dependents first), the
/// containers of independent services at once. `on_stop` hears of each one stopped.
pub fn stop_services(
    project: &Project<'_>,
    containers: &[Info],
    timeout: Option<Duration>,
    on_stop: &(dyn Fn(&Info) + Sync),
) -> Result<(), StackError> {
    let mut by_service: BTreeMap<&str, Vec<&Info>> = BTreeMap::new();
    for i in containers {
        by_service.entry(service_of(i)).or_default().push(i);
    }
    let services: Vec<_> = project.manifest.services.iter().collect();
    let deps = dependents(&services);
    let stopped: Mutex<BTreeSet<&str>> = Mutex::new(BTreeSet::new());
    let changed = Condvar::new();
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        let by_service = &by_service;
        for (service, infos) in by_service {
            let (stopped, changed, errors, deps) = (&stopped, &changed, &errors, &deps);
            scope.spawn(move || {
                // One-offs and orphans first; a service after every service that depends on
                // it (among those that have containers here).
                let waits_for: Vec<&str> = deps
                    .get(service)
                    .into_iter()
                    .flatten()
                    .copied()
                    .filter(|d| by_service.contains_key(d) && d != service)
                    .collect();
                let mut s = stopped.lock().expect("not poisoned");
                while !waits_for.iter().all(|d| s.contains(d)) {
                    s = changed.wait(s).expect("not poisoned");
                }
                drop(s);
                std::thread::scope(|inner| {
                    for info in infos {
                        inner.spawn(move || {
                            if matches!(
                                state::status(info),
                                Status::Running { .. } | Status::Restarting { .. }
                            ) {
                                match lifecycle::stop(info, timeout) {
                                    Ok(()) => on_stop(info),
                                    Err(e) => errors
                                        .lock()
                                        .expect("not poisoned")
                                        .push(StackError::container(service, e)),
                                }
                            }
                        });
                    }
                });
                stopped.lock().expect("not poisoned").insert(service);
                changed.notify_all();
            });
        }
    });
    super::first_error(errors)
}

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub images: Vec<String>,
}

/// `boxr down`: stops and removes every container of the project (one-offs and orphans too),
/// then its networks, and with the options its volumes and images. Containers already gone
/// and networks never made are not errors: `down` twice is fine.
pub fn down(
    store: &Store,
    project: &Project<'_>,
    opts: &DownOptions,
    on_stop: &(dyn Fn(&Info) + Sync),
) -> Result<DownReport, StackError> {
    let containers = project.containers(store);
    // One-offs have no dependents: they go first, with everything else that runs.
    stop_services(project, &containers, opts.timeout, on_stop)?;
    let mut report = DownReport::default();
    for info in &containers {
        lifecycle::remove(store, info, true, opts.volumes)
            .map_err(|e| StackError::container(service_of(info), e))?;
        report.containers.push(
            info.name
                .clone()
                .unwrap_or_else(|| info.id[..12].to_owned()),
        );
    }
    // The project's own networks: `default` and every declared non-external one.
    let mut nets: Vec<String> = vec![format!("{}_default", project.name)];
    for n in &project.manifest.networks {
        if !n.external && n.name.value != "default" {
            nets.push(format!("{}_{}", project.name, n.name.value));
        }
    }
    for n in nets {
        match crate::net::remove(store, &n) {
            Ok(()) => report.networks.push(n),
            Err(crate::net::NetError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if opts.volumes {
        let mut names = BTreeSet::new();
        for s in &project.manifest.services {
            for v in &s.volumes {
                if let VolumeSource::Named(n) = &v.source.value {
                    names.insert(format!("{}_{n}", project.name));
                }
            }
        }
        for n in names {
            if store.volumes()?.contains(&n) {
                store.remove_volume(&n)?;
                report.volumes.push(n);
            }
        }
    }
    if let Some(which) = &opts.rmi {
        let mut refs = BTreeSet::new();
        for s in &project.manifest.services {
            match &s.image.value {
                crate::manifest::ImageSource::Image(n) => {
                    refs.insert(format!("{n}:latest"));
                }
                crate::manifest::ImageSource::Store(r) if which == "all" => {
                    refs.insert(r.to_string());
                }
                _ => {}
            }
        }
        for r in refs {
            if store.resolve(&r).is_ok() {
                store.untag(&r)?;
                report.images.push(r);
            }
        }
    }
    Ok(report)
}
