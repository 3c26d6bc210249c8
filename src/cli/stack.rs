//! `boxr up`, `boxr down` and `boxr stack ...`: a manifest's services as one project.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::containers::{ports_text, status_text};
use super::{ArgOverrides, Settings, exit, fail, fail_with, load_manifest};
use crate::container::{self, logs, state};
use crate::manifest::Manifest;
use crate::stack::{self, Change, Project, StackError};
use crate::store::{Access, Store};

/// What names the project: shared by `up`, `down` and `stack`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectArgs {
    /// The project's name (default: the manifest directory's name)
    #[arg(
        short = 'p',
        long = "project-name",
        value_name = "NAME",
        env = "BOXR_PROJECT"
    )]
    project: Option<String>,
    /// A profile to activate: its services start too (repeatable; also BOXR_PROFILES, comma-separated)
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// Set an arg declared with `arg` in the manifest
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    args: Vec<String>,
    /// The manifest to read (as `boxr -f FILE`; `-f` is `logs --follow` here)
    #[arg(long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl ProjectArgs {
    pub(super) fn file(&self) -> Option<PathBuf> {
        self.file.clone()
    }

    fn overrides(&self) -> ArgOverrides {
        ArgOverrides {
            args: self.args.clone(),
            file: self.file.clone(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Start in the background and return
    #[arg(short, long)]
    detach: bool,
    /// Return once every service runs (and is healthy where it has a check) or has completed; implies -d
    #[arg(long)]
    wait: bool,
    /// Seconds --wait waits at most
    #[arg(long, value_name = "SECONDS", requires = "wait")]
    wait_timeout: Option<u64>,
    /// Build the images of the manifest that services use (the default: a no-op build is a cache lookup)
    #[arg(long, conflicts_with = "no_build")]
    build: bool,
    /// Use the images in the store as they are
    #[arg(long)]
    no_build: bool,
    /// Recreate every container, changed or not
    #[arg(long)]
    force_recreate: bool,
    /// Remove containers of the project whose service is gone from the manifest
    #[arg(long)]
    remove_orphans: bool,
    /// Do not start the services the named ones depend on
    #[arg(long)]
    no_deps: bool,
    /// Stop every container when one ends (foreground)
    #[arg(long, conflicts_with_all = ["detach", "wait"])]
    abort_on_container_exit: bool,
    /// Exit with this service's exit code (implies --abort-on-container-exit)
    #[arg(long, value_name = "SERVICE", conflicts_with_all = ["detach", "wait"])]
    exit_code_from: Option<String>,
    /// The services to start (default: every one whose profiles are active)
    services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Seconds to wait for each container to stop before SIGKILL (default: its stop timeout)
    #[arg(short, long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Remove the project's named volumes too
    #[arg(short, long)]
    volumes: bool,
    /// Remove images too: `local` (those the manifest builds) or `all`
    #[arg(long, value_name = "local|all", value_parser = ["local", "all"])]
    rmi: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum StackCommand {
    /// List the project's containers: service, state, health and ports
    Ps {
        #[command(flatten)]
        project: ProjectArgs,
        /// Exited containers too
        #[arg(short, long)]
        all: bool,
        /// Only the names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the services' output, merged in time order
    Logs {
        #[command(flatten)]
        project: ProjectArgs,
        /// Keep printing new output
        #[arg(short, long)]
        follow: bool,
        /// Prefix each line with its time
        #[arg(short, long)]
        timestamps: bool,
        /// Only the last N lines of each container
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// No `service |` prefixes
        #[arg(long)]
        no_log_prefix: bool,
        services: Vec<String>,
    },
    /// Run a command in a running container of a service
    Exec {
        #[command(flatten)]
        project: ProjectArgs,
        /// Which replica (default 1)
        #[arg(long, value_name = "N", default_value_t = 1)]
        index: u32,
        /// Set environment variables
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        /// User to run as
        #[arg(short, long)]
        user: Option<String>,
        /// Working directory
        #[arg(short, long, value_name = "DIR")]
        workdir: Option<String>,
        service: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Run a one-off container of a service (after starting what it depends on)
    Run {
        #[command(flatten)]
        project: ProjectArgs,
        /// Remove the container when it exits
        #[arg(long)]
        rm: bool,
        /// Do not start the services it depends on
        #[arg(long)]
        no_deps: bool,
        /// Set environment variables (over the service's)
        #[arg(short, long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
        service: String,
        /// The command (default: the service's)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Start the project's stopped containers
    Start {
        #[command(flatten)]
        project: ProjectArgs,
        services: Vec<String>,
    },
    /// Stop the project's containers, dependents first
    Stop {
        #[command(flatten)]
        project: ProjectArgs,
        /// Seconds to wait before SIGKILL (default: each one's stop timeout)
        #[arg(short, long, value_name = "SECONDS")]
        timeout: Option<u64>,
        services: Vec<String>,
    },
    /// Stop and start the project's containers
    Restart {
        #[command(flatten)]
        project: ProjectArgs,
        #[arg(short, long, value_name = "SECONDS")]
        timeout: Option<u64>,
        services: Vec<String>,
    },
    /// Print the services as resolved: every `${...}` replaced, paths absolute
    Config {
        #[command(flatten)]
        project: ProjectArgs,
        /// Only the service names
        #[arg(long)]
        services: bool,
    },
}

impl StackCommand {
    pub(super) fn project(&self) -> &ProjectArgs {
        match self {
            StackCommand::Ps { project, .. }
            | StackCommand::Logs { project, .. }
            | StackCommand::Exec { project, .. }
            | StackCommand::Run { project, .. }
            | StackCommand::Start { project, .. }
            | StackCommand::Stop { project, .. }
            | StackCommand::Restart { project, .. }
            | StackCommand::Config { project, .. } => project,
        }
    }
}

impl UpArgs {
    pub(super) fn project(&self) -> &ProjectArgs {
        &self.project
    }
}

impl DownArgs {
    pub(super) fn project(&self) -> &ProjectArgs {
        &self.project
    }
}

/// The manifest, the store and the project, or the exit code of what failed.
fn open(settings: &Settings, args: &ProjectArgs) -> Result<(Manifest, Store), i32> {
    let m = load_manifest(settings, &args.overrides())?;
    let store = Store::open(&settings.root, Access::Shared)
        .map_err(|e| fail_with(&settings.printer, &e))?;
    Ok((m, store))
}

fn project<'m>(
    settings: &Settings,
    args: &ProjectArgs,
    m: &'m Manifest,
) -> Result<Project<'m>, i32> {
    let mut profiles = args.profiles.clone();
    if let Ok(p) = std::env::var("BOXR_PROFILES") {
        profiles.extend(
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    Project::new(
        m,
        &settings.manifest_dir(),
        args.project.as_deref(),
        profiles,
    )
    .map_err(|e| fail_stack(settings, &e))
}

fn fail_stack(settings: &Settings, e: &StackError) -> i32 {
    settings.printer.diagnostic(e);
    match e {
        StackError::Build(crate::builder::ImagesError::Plan(_)) => exit::INVALID,
        StackError::Build(crate::builder::ImagesError::Build(
            crate::builder::BuildError::StepFailed(_) | crate::builder::BuildError::Step(_),
        )) => exit::INVALID,
        StackError::Service { .. } | StackError::Invalid { .. } => exit::INVALID,
        _ => exit::FAILED,
    }
}

pub fn up(args: &UpArgs, settings: &Settings) -> i32 {
    let (m, store) = match open(settings, &args.project) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let project = match project(settings, &args.project, &m) {
        Ok(p) => p,
        Err(c) => return c,
    };
    if let Some(s) = &args.exit_code_from
        && project.service(s).is_none()
    {
        return fail(
            &settings.printer,
            &format!("--exit-code-from {s}: no such service"),
        );
    }
    let since = now_nanos();
    let opts = stack::UpOptions {
        services: args.services.clone(),
        no_deps: args.no_deps,
        no_build: args.no_build,
        force_recreate: args.force_recreate,
        remove_orphans: args.remove_orphans,
        wait: args.wait,
        wait_timeout: args.wait_timeout.map(Duration::from_secs),
    };
    let reporter = super::progress::reporter(settings.printer.mode(), settings.printer.quiet());
    let printer = &settings.printer;
    let on_change =
        |name: &str, c: Change| printer.note(format!(" ✔ Container {name}  {}", c.as_str()));
    let report = match stack::up(&store, &project, &opts, reporter.as_ref(), &on_change) {
        Ok(r) => r,
        Err(e) => return fail_stack(settings, &e),
    };
    drop(reporter);
    if !report.orphans.is_empty() {
        printer.note(format!(
            "found orphan containers ({}) for this project: a service of theirs is gone from {}; remove them with --remove-orphans",
            report.orphans.join(", "),
            m.name
        ));
    }
    if args.detach || args.wait {
        return exit::OK;
    }
    // The foreground: every container of the selected services, merged.
    let names: Vec<String> = match project.select(&args.services, args.no_deps) {
        Ok(s) => s.iter().map(|s| s.name.value.clone()).collect(),
        Err(e) => return fail_stack(settings, &e),
    };
    let containers: Vec<state::Info> = project
        .containers(&store)
        .into_iter()
        .filter(|i| {
            names.iter().any(|n| n == stack::service_of(i))
                && !i.labels.contains_key(stack::LABEL_ONEOFF)
        })
        .collect();
    let width = containers
        .iter()
        .map(|i| prefix_of(&project, i).len())
        .max()
        .unwrap_or(0);
    let colour = use_colour();
    let notice = |s: &str| printer.note(s);
    let fg = stack::Foreground {
        since: Some(since),
        abort_on_exit: args.abort_on_container_exit || args.exit_code_from.is_some(),
        notice: &notice,
    };
    let r = stack::attach(&project, &containers, &fg, |l| {
        let index = containers
            .iter()
            .position(|i| i.name.as_deref() == Some(l.container.as_str()))
            .unwrap_or(0);
        let prefix = containers
            .get(index)
            .map(|i| prefix_of(&project, i))
            .unwrap_or_default();
        print_line(
            &format!("{prefix:width$} | "),
            colour.then_some(index),
            &l.text,
        );
    });
    if let Err(e) = r {
        return fail_stack(settings, &e);
    }
    match &args.exit_code_from {
        Some(s) => containers
            .iter()
            .filter(|i| stack::service_of(i) == s)
            .find_map(|i| match state::status(i) {
                state::Status::Exited { code, .. } => Some(code.unwrap_or(255)),
                _ => None,
            })
            .unwrap_or(exit::OK),
        None => exit::OK,
    }
}

/// `web-1` for container `PROJECT-web-1` (`web` alone when the service has one replica).
fn prefix_of(project: &Project<'_>, i: &state::Info) -> String {
    let service = stack::service_of(i);
    let replicas = project
        .service(service)
        .and_then(|s| s.replicas.as_ref())
        .map_or(1, |r| r.value);
    if replicas > 1 {
        format!("{service}-{}", stack::number_of(i))
    } else {
        service.to_owned()
    }
}

fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints one line of a container's output after its prefix, the prefix in the container's
/// colour (a stable one per container: its place in the list).
fn print_line(prefix: &str, colour: Option<usize>, text: &str) {
    const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];
    let mut o = std::io::stdout().lock();
    let text = text.strip_suffix('\n').unwrap_or(text);
    let _ = match colour {
        Some(i) => writeln!(
            o,
            "\x1b[{}m{prefix}\x1b[0m{text}",
            COLOURS[i % COLOURS.len()]
        ),
        None => writeln!(o, "{prefix}{text}"),
    };
    let _ = o.flush();
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

pub fn down(args: &DownArgs, settings: &Settings) -> i32 {
    let (m, store) = match open(settings, &args.project) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let project = match project(settings, &args.project, &m) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let printer = &settings.printer;
    let opts = stack::DownOptions {
        timeout: args.timeout.map(Duration::from_secs),
        volumes: args.volumes,
        rmi: args.rmi.clone(),
    };
    let on_stop = |i: &state::Info| {
        printer.note(format!(
            " ✔ Container {}  Stopped",
            i.name.as_deref().unwrap_or(&i.id[..12])
        ))
    };
    match stack::down(&store, &project, &opts, &on_stop) {
        Ok(r) => {
            for c in &r.containers {
                printer.note(format!(" ✔ Container {c}  Removed"));
            }
            for n in &r.networks {
                printer.note(format!(" ✔ Network {n}  Removed"));
            }
            for v in &r.volumes {
                printer.note(format!(" ✔ Volume {v}  Removed"));
            }
            for i in &r.images {
                printer.note(format!(" ✔ Image {i}  Removed"));
            }
            exit::OK
        }
        Err(e) => fail_stack(settings, &e),
    }
}

pub fn command(cmd: &StackCommand, settings: &Settings) -> i32 {
    let (m, store) = match open(settings, cmd.project()) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let project = match project(settings, cmd.project(), &m) {
        Ok(p) => p,
        Err(c) => return c,
    };
    let printer = &settings.printer;
    let of_services = |services: &[String]| -> Result<Vec<state::Info>, i32> {
        for s in services {
            if project.service(s).is_none() {
                return Err(fail(
                    printer,
                    &format!("no service named `{s}` in {}", m.name),
                ));
            }
        }
        Ok(project
            .containers(&store)
            .into_iter()
            .filter(|i| services.is_empty() || services.iter().any(|s| s == stack::service_of(i)))
            .collect())
    };
    match cmd {
        StackCommand::Ps { all, quiet, .. } => {
            let rows = stack::ps(&project.containers(&store), *all);
            if *quiet {
                for r in &rows {
                    printer.data(format!("{}\n", r.name));
                }
                return exit::OK;
            }
            if printer.is_json() {
                for r in &rows {
                    let info = state::find(&store, &r.id).ok();
                    printer.data(format!(
                        "{}\n",
                        serde_json::json!({
                            "Name": r.name, "Service": r.service, "Number": r.number,
                            "ID": &r.id[..12], "Image": r.image,
                            "State": state_word(&r.status),
                            "Health": health_of(&r.status),
                            "Status": info.as_ref().map(|i| status_text(i, &r.status)),
                            "Ports": r.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                        })
                    ));
                }
                return exit::OK;
            }
            let mut table = vec![vec![
                "NAME".to_owned(),
                "SERVICE".into(),
                "STATUS".into(),
                "PORTS".into(),
            ]];
            for r in &rows {
                let Ok(info) = state::find(&store, &r.id) else {
                    continue;
                };
                table.push(vec![
                    r.name.clone(),
                    r.service.clone(),
                    status_text(&info, &r.status),
                    ports_text(&info, &r.status),
                ]);
            }
            printer.data(super::format::table(&table));
            exit::OK
        }
        StackCommand::Logs {
            follow,
            timestamps,
            tail,
            no_log_prefix,
            services,
            ..
        } => {
            let containers = match of_services(services) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let width = containers
                .iter()
                .map(|i| i.name.as_deref().unwrap_or("").len())
                .max()
                .unwrap_or(0);
            let colour = use_colour();
            let show = |l: &stack::LogLine| {
                let index = containers
                    .iter()
                    .position(|i| i.name.as_deref() == Some(l.container.as_str()))
                    .unwrap_or(0);
                let mut prefix = String::new();
                if !no_log_prefix {
                    prefix = format!("{:width$} | ", l.container);
                }
                if *timestamps {
                    prefix.push_str(&l.time);
                    prefix.push(' ');
                }
                print_line(
                    &prefix,
                    (colour && !no_log_prefix).then_some(index),
                    &l.text,
                );
            };
            let opts = logs::LogOptions {
                tail: *tail,
                ..Default::default()
            };
            let lines = match stack::logs(&containers, &opts) {
                Ok(l) => l,
                Err(e) => return fail_stack(settings, &e),
            };
            for l in &lines {
                show(l);
            }
            if *follow {
                let since = lines
                    .iter()
                    .filter_map(|l| crate::time::parse_rfc3339(&l.time))
                    .max();
                let opts = logs::LogOptions {
                    since: Some(since.map_or_else(now_nanos, |_| now_nanos())),
                    ..Default::default()
                };
                stack::follow_logs(
                    &containers,
                    &opts,
                    &std::sync::atomic::AtomicBool::new(false),
                    |l| show(&l),
                );
            }
            exit::OK
        }
        StackCommand::Exec {
            index,
            env,
            user,
            workdir,
            service,
            command,
            ..
        } => {
            let info = match of_services(std::slice::from_ref(service)) {
                Ok(c) => c.into_iter().find(|i| {
                    stack::number_of(i) == *index && !i.labels.contains_key(stack::LABEL_ONEOFF)
                }),
                Err(code) => return code,
            };
            let Some(info) = info else {
                return fail(
                    printer,
                    &format!("service `{service}` has no container {index}: is the stack up?"),
                );
            };
            let opts = container::ExecOptions {
                container: info.id.clone(),
                command: command.clone(),
                env: env.clone(),
                user: user.clone(),
                workdir: workdir.clone(),
                interactive: std::io::stdin().is_terminal(),
                tty: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            };
            let e = container::exec(&store, &opts);
            fail_with(printer, &e)
        }
        StackCommand::Run {
            rm,
            no_deps,
            env,
            service,
            command,
            ..
        } => {
            let reporter = super::progress::reporter(printer.mode(), printer.quiet());
            let opts = stack::RunOneOff {
                service: service.clone(),
                command: command.clone(),
                env: env.clone(),
                remove: *rm,
                no_deps: *no_deps,
                tty: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            };
            let run = stack::prepare_run(&store, &project, &opts, reporter.as_ref());
            drop(reporter);
            match run {
                // On success this process becomes the container's helper.
                Ok(o) => match container::run(&store, &o) {
                    Ok(code) => code,
                    Err(e) => fail_with(printer, &e),
                },
                Err(e) => fail_stack(settings, &e),
            }
        }
        StackCommand::Start { services, .. } => {
            let containers = match of_services(services) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match stack::start_existing(&project, &containers) {
                Ok(started) => {
                    for n in started {
                        printer.note(format!(" ✔ Container {n}  Started"));
                    }
                    exit::OK
                }
                Err(e) => fail_stack(settings, &e),
            }
        }
        StackCommand::Stop {
            timeout, services, ..
        }
        | StackCommand::Restart {
            timeout, services, ..
        } => {
            let containers = match of_services(services) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let on_stop = |i: &state::Info| {
                printer.note(format!(
                    " ✔ Container {}  Stopped",
                    i.name.as_deref().unwrap_or(&i.id[..12])
                ))
            };
            let t = timeout.map(Duration::from_secs);
            if let Err(e) = stack::stop_services(&project, &containers, t, &on_stop) {
                return fail_stack(settings, &e);
            }
            if matches!(cmd, StackCommand::Restart { .. }) {
                match stack::start_existing(&project, &containers) {
                    Ok(started) => {
                        for n in started {
                            printer.note(format!(" ✔ Container {n}  Started"));
                        }
                    }
                    Err(e) => return fail_stack(settings, &e),
                }
            }
            exit::OK
        }
        StackCommand::Config { services, .. } => {
            let selected = match project.select(&[], false) {
                Ok(s) => s,
                Err(e) => return fail_stack(settings, &e),
            };
            if *services {
                for s in &selected {
                    printer.data(format!("{}\n", s.name.value));
                }
            } else {
                printer.data(stack::config_text(&project, &selected));
            }
            exit::OK
        }
    }
}

fn state_word(s: &state::Status) -> &'static str {
    match s {
        state::Status::Created => "created",
        state::Status::Running { .. } => "running",
        state::Status::Exited { .. } => "exited",
        state::Status::Restarting { .. } => "restarting",
    }
}

fn health_of(s: &state::Status) -> Option<&str> {
    match s {
        state::Status::Running { health, .. } => health.as_deref(),
        _ => None,
    }
}
