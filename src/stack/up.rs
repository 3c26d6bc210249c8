//! `boxr up`: build what the services need, make the project's networks, then reconcile and
//! start each service the moment its own `depends-on` conditions hold (the dependency graph,
//! not levels: a service never waits for one it does not depend on).

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::service::{hash_of, run_options};
use super::{LABEL_CONFIG_HASH, Project, StackError, is_oneoff, number_of, service_of};
use crate::builder::Reporter;
use crate::builder::bases::Bases;
use crate::container::state::{self, Info, Status};
use crate::container::{self, lifecycle};
use crate::digest::Digest;
use crate::manifest::{Condition, ImageSource, MAX_REPLICAS, Service};
use crate::store::{Store, StoreError};

/// `boxr up` options.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Services named on the command line (none: every active one).
    pub services: Vec<String>,
    /// Not the services the named ones depend on.
    pub no_deps: bool,
    /// Use the images in the store as they are (`--no-build`).
    pub no_build: bool,
    pub force_recreate: bool,
    pub remove_orphans: bool,
    /// Return only when every service runs (and is healthy where it has a check) or has
    /// completed; fail naming the first that does not, after `wait_timeout` at most.
    pub wait: bool,
    pub wait_timeout: Option<Duration>,
    /// The manifest's registry images, resolved (and pulled) by the caller.
    pub bases: Bases,
    /// `--scale SERVICE=N`: replicas instead of the manifest's `replicas`, for this `up`.
    pub scale: BTreeMap<String, u32>,
}

/// What `up` did to one container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Made and started.
    Created,
    /// Its config or image changed: removed and made again.
    Recreated,
    /// It had stopped: started again.
    Started,
    /// Running, unchanged.
    Running,
    /// A replica past the service's count, or an orphan (`--remove-orphans`): removed.
    Removed,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "Created",
            Change::Recreated => "Recreated",
            Change::Started => "Started",
            Change::Running => "Running",
            Change::Removed => "Removed",
        }
    }
}

/// What `up` did.
#[derive(Debug, Default)]
pub struct UpReport {
    /// Container name → what happened, in the order it happened.
    pub changes: Vec<(String, Change)>,
    /// Containers of the project whose service is gone (left alone without `remove_orphans`).
    pub orphans: Vec<String>,
}

/// Brings the project up: see the module's doc. `on_change` hears of each container as it is
/// handled (from several threads).
pub fn up(
    store: &Store,
    project: &Project<'_>,
    opts: &UpOptions,
    reporter: &dyn Reporter,
    on_change: &(dyn Fn(&str, Change) + Sync),
) -> Result<UpReport, StackError> {
    let selected = project.select(&opts.services, opts.no_deps)?;
    check_scale(project, &opts.scale)?;
    let images = images(
        store,
        project,
        &selected,
        opts.no_build,
        &opts.bases,
        reporter,
    )?;
    networks(store, project, &selected)?;
    let mut report = UpReport::default();
    for info in project.containers(store) {
        if is_oneoff(&info) || project.service(service_of(&info)).is_some() {
            continue;
        }
        let name = info
            .name
            .clone()
            .unwrap_or_else(|| info.id[..12].to_owned());
        if opts.remove_orphans {
            remove(store, &info).map_err(|e| StackError::container(service_of(&info), e))?;
            on_change(&name, Change::Removed);
            report.changes.push((name, Change::Removed));
        } else {
            report.orphans.push(name);
        }
    }
    let changes = Mutex::new(Vec::new());
    let noted = |name: &str, c: Change| {
        on_change(name, c);
        changes
            .lock()
            .expect("not poisoned")
            .push((name.to_owned(), c));
    };
    let result = start_services(store, project, &selected, &images, opts, &noted);
    report
        .changes
        .extend(changes.into_inner().expect("not poisoned"));
    result?;
    if opts.wait {
        wait_ready(store, project, &selected, opts.wait_timeout)?;
    }
    Ok(report)
}

/// The image of each selected service: built (with the cache) for images of the manifest, or
/// resolved in the store.
pub(super) fn images(
    store: &Store,
    project: &Project<'_>,
    selected: &[&Service],
    no_build: bool,
    bases: &Bases,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, String>, StackError> {
    let mut targets: Vec<String> = Vec::new();
    for s in selected {
        if let ImageSource::Image(n) = &s.image.value
            && !targets.contains(n)
        {
            targets.push(n.clone());
        }
    }
    let built = if no_build {
        BTreeMap::new()
    } else {
        crate::builder::build_images(
            store,
            project.manifest,
            &project.dir,
            &targets,
            bases,
            reporter,
        )?
    };
    let mut out = BTreeMap::new();
    for s in selected {
        let id = match &s.image.value {
            ImageSource::Image(n) => match built.get(n) {
                Some(id) => id.clone(),
                None => store
                    .resolve(&format!("{n}:latest"))
                    .map(|i| i.id.to_string())
                    .map_err(|_| {
                        StackError::invalid(
                            format!("service `{}`: image `{n}` is not built", s.name.value),
                            Some("run `boxr up` without --no-build, or `boxr build`".into()),
                        )
                    })?,
            },
            ImageSource::Store(r) => bases
                .resolved
                .get(r)
                .map_or_else(
                    || store.resolve(&r.to_string()),
                    |d| {
                        Digest::parse(d)
                            .ok_or_else(|| StoreError::NoSuchImage { query: d.clone() })
                            .and_then(|d| store.image(&d))
                    },
                )
                .map(|i| i.id.to_string())
                .map_err(|_| {
                    StackError::invalid(
                        format!("service `{}`: no image `{r}` in the store", s.name.value),
                        Some("`boxr pull` or `boxr build` it first".into()),
                    )
                })?,
        };
        out.insert(s.name.value.clone(), id);
    }
    Ok(out)
}

/// Makes the project's networks the selected services join (external ones must exist).
pub(super) fn networks(
    store: &Store,
    project: &Project<'_>,
    selected: &[&Service],
) -> Result<(), StackError> {
    let mut done: Vec<String> = Vec::new();
    for (s, (name, decl_name)) in selected
        .iter()
        .flat_map(|s| project.networks_of(s).into_iter().map(move |n| (s, n)))
    {
        if done.contains(&name) {
            continue;
        }
        let decl = project
            .manifest
            .networks
            .iter()
            .find(|n| n.name.value == decl_name);
        match crate::net::inspect(store, &name) {
            Ok(_) => {}
            Err(_) if decl.is_some_and(|d| d.external) => {
                return Err(StackError::invalid(
                    format!(
                        "service `{}`: the external network `{name}` does not exist",
                        s.name.value
                    ),
                    Some(format!("make it with `boxr network create {name}`")),
                ));
            }
            Err(_) => {
                crate::net::create(
                    store,
                    &crate::net::CreateOptions {
                        name: name.clone(),
                        subnet: decl
                            .and_then(|d| d.subnet.as_ref())
                            .map(|s| s.value.clone()),
                        gateway: None,
                        internal: decl.is_some_and(|d| d.internal),
                    },
                )?;
            }
        }
        done.push(name);
    }
    Ok(())
}

/// Where a service is while the stack starts.
#[derive(Debug, Clone, PartialEq)]
enum Progress {
    Pending,
    Up,
    Failed,
}

/// Reconciles and starts `selected`, each in a thread of its own that first waits for its
/// dependencies' conditions. Returns the first failure (the others' services still start).
pub fn start_services(
    store: &Store,
    project: &Project<'_>,
    selected: &[&Service],
    images: &BTreeMap<String, String>,
    opts: &UpOptions,
    noted: &(dyn Fn(&str, Change) + Sync),
) -> Result<(), StackError> {
    let progress: Mutex<BTreeMap<&str, Progress>> = Mutex::new(
        selected
            .iter()
            .map(|s| (s.name.value.as_str(), Progress::Pending))
            .collect(),
    );
    let changed = Condvar::new();
    let errors: Mutex<Vec<StackError>> = Mutex::new(Vec::new());
    let existing = project.containers(store);
    std::thread::scope(|scope| {
        for svc in selected {
            let (progress, changed, errors, existing) = (&progress, &changed, &errors, &existing);
            scope.spawn(move || {
                let name = svc.name.value.as_str();
                let r = wait_dependencies(store, project, svc, progress, changed).and_then(|()| {
                    reconcile(store, project, svc, &images[name], existing, opts, noted)
                });
                let outcome = match r {
                    Ok(()) => Progress::Up,
                    Err(e) => {
                        errors.lock().expect("not poisoned").push(e);
                        Progress::Failed
                    }
                };
                progress.lock().expect("not poisoned").insert(name, outcome);
                changed.notify_all();
            });
        }
    });
    super::first_error(errors)
}

/// Waits until each dependency of `svc` (that is being started) meets its condition.
fn wait_dependencies(
    store: &Store,
    project: &Project<'_>,
    svc: &Service,
    progress: &Mutex<BTreeMap<&str, Progress>>,
    changed: &Condvar,
) -> Result<(), StackError> {
    for d in &svc.depends_on {
        let dep = d.service.value.as_str();
        let mut p = progress.lock().expect("not poisoned");
        if !p.contains_key(dep) {
            // Not selected (`--no-deps`): whatever state it is in.
            continue;
        }
        while p[dep] == Progress::Pending {
            p = changed.wait(p).expect("not poisoned");
        }
        if p[dep] == Progress::Failed {
            return Err(StackError::Service {
                message: format!(
                    "service `{}` was not started: `{dep}`, which it depends on, failed",
                    svc.name.value
                ),
                help: None,
            });
        }
        drop(p);
        let replicas = containers_of_service(store, project, dep);
        for info in &replicas {
            wait_for(info, Want::Condition(d.condition), None).map_err(|why| {
                StackError::Service {
                    message: format!(
                        "service `{}` depends on `{dep}` being {}, but {} {why}",
                        svc.name.value,
                        condition_word(d.condition),
                        info.name.as_deref().unwrap_or(dep),
                    ),
                    help: last_logs(info),
                }
            })?;
        }
    }
    Ok(())
}

fn condition_word(c: Condition) -> &'static str {
    match c {
        Condition::Started => "started",
        Condition::Healthy => "healthy",
        Condition::Completed => "completed",
    }
}

/// The service's containers (not one-offs), by number.
fn containers_of_service(store: &Store, project: &Project<'_>, service: &str) -> Vec<Info> {
    project
        .containers(store)
        .into_iter()
        .filter(|i| service_of(i) == service && !is_oneoff(i))
        .collect()
}

/// What a wait for a container asks of it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// A `depends-on` condition.
    Condition(Condition),
    /// `up --wait`: running (and healthy where it has a check), or exited 0.
    Ready,
}

/// Why a container is not where a stack needs it; the message follows its name (`db is
/// unhealthy: …`).
#[derive(Debug, thiserror::Error)]
enum NotReady {
    /// With the last health check's output (`: OUTPUT`), if any.
    #[error("is unhealthy{0}")]
    Unhealthy(String),
    #[error("has no health check")]
    NoHealthCheck,
    #[error("exited with code {0}")]
    ExitedWith(i32),
    #[error("exited")]
    Exited,
    #[error("is not healthy yet{0}")]
    NotHealthyYet(String),
    #[error("is not running")]
    NotRunning,
}

/// Waits until the container is where `want` asks (`started`: at once), until `deadline` if
/// any; `Err` says why it is not (and never will be, before the deadline).
fn wait_for(info: &Info, want: Want, deadline: Option<Instant>) -> Result<(), NotReady> {
    use Condition::{Completed, Healthy, Started};
    let mut unknown_since: Option<Instant> = None;
    loop {
        let status = state::status(info);
        let health = match &status {
            Status::Running { health, .. } => Some(health.as_deref()),
            _ => None,
        };
        match (want, &status, health) {
            (Want::Condition(Started), _, _) => return Ok(()),
            (Want::Condition(Healthy) | Want::Ready, _, Some(Some("healthy"))) => return Ok(()),
            (Want::Ready, _, Some(None)) => return Ok(()),
            (Want::Condition(Healthy) | Want::Ready, _, Some(Some("unhealthy"))) => {
                return Err(NotReady::Unhealthy(last_health(info)));
            }
            (Want::Condition(Healthy), _, Some(None)) => {
                return Err(NotReady::NoHealthCheck);
            }
            (Want::Condition(Completed) | Want::Ready, Status::Exited { code: Some(0), .. }, _) => {
                return Ok(());
            }
            (
                _,
                Status::Exited {
                    code: Some(code), ..
                },
                _,
            ) => {
                return Err(NotReady::ExitedWith(*code));
            }
            // Its init is gone and its monitor has not recorded the code yet: a moment.
            (_, Status::Exited { code: None, .. }, _) => {
                let since = *unknown_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(5) {
                    return Err(NotReady::Exited);
                }
            }
            _ => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(match health {
                Some(_) => NotReady::NotHealthyYet(last_health(info)),
                None => NotReady::NotRunning,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `: OUTPUT` of the last health check, if there was one.
fn last_health(info: &Info) -> String {
    let out = state::read_state(info)
        .and_then(|s| s.health)
        .and_then(|h| {
            h["Log"].as_array().and_then(|l| l.last()).map(|e| {
                let o = e["Output"].as_str().unwrap_or("").trim().to_owned();
                let code = e["ExitCode"].as_i64().unwrap_or(-1);
                match o.is_empty() {
                    true => format!("the last check exited with {code}"),
                    false => format!("the last check exited with {code}: {o}"),
                }
            })
        });
    out.map_or_else(String::new, |o| format!(" ({o})"))
}

/// The last lines of a container's log, as a help text.
fn last_logs(info: &Info) -> Option<String> {
    let mut lines = Vec::new();
    let opts = container::logs::LogOptions {
        tail: Some(5),
        ..Default::default()
    };
    let _ = container::logs::read(info, &opts, |l| lines.push(l.text.trim_end().to_owned()));
    (!lines.is_empty()).then(|| format!("its last output:\n{}", lines.join("\n")))
}

/// How many containers run `svc`: `--scale`'s count, else the manifest's `replicas`, else 1.
fn replicas_of(svc: &Service, scale: &BTreeMap<String, u32>) -> u32 {
    scale
        .get(&svc.name.value)
        .copied()
        .unwrap_or_else(|| svc.replicas.as_ref().map_or(1, |r| r.value))
}

/// `--scale`: each service exists, each count is within the manifest's bounds, and a service
/// scaled past one publishes no fixed host port (its replicas could not all hold it).
fn check_scale(project: &Project<'_>, scale: &BTreeMap<String, u32>) -> Result<(), StackError> {
    for (name, &n) in scale {
        let Some(svc) = project.service(name) else {
            return Err(StackError::invalid(
                format!(
                    "--scale {name}={n}: no such service in {}",
                    project.manifest.name
                ),
                None,
            ));
        };
        if n > MAX_REPLICAS {
            return Err(StackError::invalid(
                format!("--scale {name}={n}: at most {MAX_REPLICAS} replicas"),
                None,
            ));
        }
        if n > 1
            && let Some((p, (lo, hi))) = svc
                .publish
                .iter()
                .find_map(|p| Some((p, p.fixed_host_ports()?)))
        {
            return Err(StackError::invalid(
                format!(
                    "--scale {name}={n}: each of the {n} replicas would publish host port {}/{}",
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}-{hi}")
                    },
                    p.proto
                ),
                Some(format!(
                    "leave the host port out (`publish \"{}\"`): each replica then gets a free one",
                    crate::values::Publish {
                        host_ip: None,
                        host_ports: None,
                        ..p.value
                    }
                )),
            ));
        }
    }
    Ok(())
}

/// Makes the service's containers match its config: each replica made, started again or
/// recreated as needed; replicas past the count removed.
fn reconcile(
    store: &Store,
    project: &Project<'_>,
    svc: &Service,
    image: &str,
    existing: &[Info],
    opts: &UpOptions,
    noted: &(dyn Fn(&str, Change) + Sync),
) -> Result<(), StackError> {
    let name = svc.name.value.as_str();
    let replicas = replicas_of(svc, &opts.scale);
    let mine: Vec<&Info> = existing
        .iter()
        .filter(|i| service_of(i) == name && !is_oneoff(i))
        .collect();
    let fail = |e| StackError::container(name, e);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for n in 1..=replicas {
            let old = mine.iter().find(|i| number_of(i) == n).copied();
            handles.push(scope.spawn(move || -> Result<(), StackError> {
                let o = run_options(project, svc, image, n)?;
                let cname = o.name.clone().unwrap_or_default();
                let change = match old {
                    Some(info)
                        if !opts.force_recreate
                            && info.labels.get(LABEL_CONFIG_HASH).map(String::as_str)
                                == Some(hash_of(&o)) =>
                    {
                        match state::status(info) {
                            Status::Running { .. } | Status::Restarting { .. } => Change::Running,
                            _ => {
                                lifecycle::start(info).map_err(fail)?;
                                Change::Started
                            }
                        }
                    }
                    Some(info) => {
                        remove(store, info).map_err(fail)?;
                        container::run_detached(store, &o).map_err(fail)?;
                        Change::Recreated
                    }
                    None => {
                        container::run_detached(store, &o).map_err(fail)?;
                        Change::Created
                    }
                };
                noted(&cname, change);
                Ok(())
            }));
        }
        for info in mine.iter().filter(|i| number_of(i) > replicas) {
            remove(store, info).map_err(fail)?;
            noted(
                info.name.as_deref().unwrap_or(&info.id[..12]),
                Change::Removed,
            );
        }
        let mut first = Ok(());
        for h in handles {
            let r = h.join().expect("a replica's thread does not panic");
            if first.is_ok() {
                first = r;
            }
        }
        first
    })
}

/// Stops (with its stop signal and timeout) and removes a container.
pub(super) fn remove(store: &Store, info: &Info) -> Result<(), container::ContainerError> {
    if matches!(
        state::status(info),
        Status::Running { .. } | Status::Restarting { .. }
    ) {
        lifecycle::stop(info, None)?;
    }
    lifecycle::remove(store, info, true, false)
}

/// `up --wait`: every container of the selected services running (and healthy where it has a
/// check), or exited 0 (a one-shot service that is done).
fn wait_ready(
    store: &Store,
    project: &Project<'_>,
    selected: &[&Service],
    timeout: Option<Duration>,
) -> Result<(), StackError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    for svc in selected {
        for info in containers_of_service(store, project, &svc.name.value) {
            wait_for(&info, Want::Ready, deadline).map_err(|why| StackError::Service {
                message: format!(
                    "service `{}`: {} {why}",
                    svc.name.value,
                    info.name.as_deref().unwrap_or(&svc.name.value)
                ),
                help: last_logs(&info),
            })?;
        }
    }
    Ok(())
}
