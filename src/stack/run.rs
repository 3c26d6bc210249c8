//! The stack commands that start containers outside `up`: `stack run` (a one-off container of a
//! service, after what it depends on) and `stack start` (stopped containers, dependencies
//! first).

use super::service::run_options;
use super::up::{UpOptions, images, networks, start_services};
use super::{Project, StackError, service_of};
use crate::builder::Reporter;
use crate::builder::bases::Bases;
use crate::container::state::{self, Info, Status};
use crate::container::{self, lifecycle};
use crate::manifest::Service;
use crate::store::Store;

/// `stack run`: a one-off container of a service.
#[derive(Debug, Clone, Default)]
pub struct RunOneOff {
    pub service: String,
    /// Replaces the service's command (none: the service's).
    pub command: Vec<String>,
    /// More `KEY=VALUE`s, over the service's.
    pub env: Vec<String>,
    pub remove: bool,
    pub no_deps: bool,
    pub tty: bool,
    /// The manifest's registry images, resolved (and pulled) by the caller.
    pub bases: Bases,
}

/// Starts what the service depends on (unless `no_deps`) and returns the options of its
/// one-off container (`PROJECT-SERVICE-run-XXXXXX`, not published, no restart policy), for
/// the caller to run in the foreground.
pub fn prepare_run(
    store: &Store,
    project: &Project<'_>,
    opts: &RunOneOff,
    reporter: &dyn Reporter,
) -> Result<container::RunOptions, StackError> {
    let all = project.select(std::slice::from_ref(&opts.service), opts.no_deps)?;
    let images = images(store, project, &all, false, &opts.bases, reporter)?;
    let deps: Vec<&Service> = all
        .iter()
        .copied()
        .filter(|s| s.name.value != opts.service)
        .collect();
    if !deps.is_empty() {
        networks(store, project, &deps)?;
        start_services(
            store,
            project,
            &deps,
            &images,
            &UpOptions::default(),
            &|_, _| {},
        )?;
    }
    let svc = project.service(&opts.service).expect("selected");
    networks(store, project, &[svc])?;
    let mut o = run_options(project, svc, &images[&opts.service], 0)?;
    let mut suffix = [0u8; 3];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut suffix));
    o.name = Some(format!(
        "{}-{}-run-{}",
        project.name,
        opts.service,
        hex::encode(suffix)
    ));
    o.labels.retain(|l| !l.starts_with(super::LABEL_NUMBER));
    o.labels.push(format!("{}=1", super::LABEL_ONEOFF));
    if !opts.command.is_empty() {
        o.command = opts.command.clone();
        if let Some(ep) = &svc.entrypoint {
            // The service's entrypoint stays; the command replaces what followed it.
            o.command = ep.iter().skip(1).map(|s| s.value.clone()).collect();
            o.command.extend(opts.command.iter().cloned());
        }
    }
    o.env.extend(opts.env.iter().cloned());
    o.detach = false;
    o.remove = opts.remove;
    o.restart = None;
    o.publish.clear();
    // Not one of the service's replicas: the service's name is not its.
    o.network_aliases.clear();
    o.tty = opts.tty;
    o.interactive = opts.tty;
    Ok(o)
}

/// `stack start`: starts the given (stopped) containers, what they depend on first. Returns
/// the names of those started.
pub fn start_existing(
    project: &Project<'_>,
    containers: &[Info],
) -> Result<Vec<String>, StackError> {
    let services: Vec<&Service> = project.manifest.services.iter().collect();
    let mut order: Vec<&Info> = containers.iter().collect();
    let rank = super::dependency_ranks(&services);
    order.sort_by_key(|i| rank.get(service_of(i)).copied().unwrap_or(0));
    let mut started = Vec::new();
    for info in order {
        if matches!(
            state::status(info),
            Status::Running { .. } | Status::Restarting { .. }
        ) {
            continue;
        }
        lifecycle::start(info).map_err(|e| StackError::container(service_of(info), e))?;
        started.push(
            info.name
                .clone()
                .unwrap_or_else(|| info.id[..12].to_owned()),
        );
    }
    Ok(started)
}
