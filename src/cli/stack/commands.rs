//! `boxr stack ps|logs|exec|run|start|stop|restart|config`.

use std::io::IsTerminal;
use std::time::Duration;

use super::{ProjectArgs, fail_stack, now_nanos, print_line, use_colour, with_project};
use crate::cli::containers::{ports_text, status_text};
use crate::cli::{Settings, exit, fail, fail_with};
use crate::container::{self, logs, state};
use crate::stack;

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
    /// Show the processes of the project's running containers
    Top {
        #[command(flatten)]
        project: ProjectArgs,
        services: Vec<String>,
    },
    /// Print the host address a service's container publishes a port on
    Port {
        #[command(flatten)]
        project: ProjectArgs,
        /// Which replica (default 1)
        #[arg(long, value_name = "N", default_value_t = 1)]
        index: u32,
        /// tcp, udp or sctp (default tcp; or PORT/PROTO)
        #[arg(long, value_name = "PROTO")]
        protocol: Option<String>,
        service: String,
        #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
        port: String,
    },
    /// Print the events of the project's containers as they happen
    Events {
        #[command(flatten)]
        project: ProjectArgs,
        /// One JSON object per event
        #[arg(long)]
        json: bool,
        /// Only events at or after this time (RFC 3339, or seconds since the epoch; default: now)
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Stop at this time instead of following (RFC 3339, seconds, or `now`)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
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
    pub(in crate::cli) fn project(&self) -> &ProjectArgs {
        match self {
            StackCommand::Ps { project, .. }
            | StackCommand::Logs { project, .. }
            | StackCommand::Exec { project, .. }
            | StackCommand::Run { project, .. }
            | StackCommand::Start { project, .. }
            | StackCommand::Stop { project, .. }
            | StackCommand::Restart { project, .. }
            | StackCommand::Top { project, .. }
            | StackCommand::Port { project, .. }
            | StackCommand::Events { project, .. }
            | StackCommand::Config { project, .. } => project,
        }
    }
}

pub fn command(cmd: &StackCommand, settings: &Settings) -> i32 {
    with_project(settings, cmd.project(), |store, project| {
        let printer = &settings.printer;
        let of_services = |services: &[String]| -> Result<Vec<state::Info>, i32> {
            for s in services {
                if project.service(s).is_none() {
                    return Err(fail(
                        printer,
                        &format!("no service named `{s}` in {}", project.manifest.name),
                    ));
                }
            }
            Ok(project
                .containers(store)
                .into_iter()
                .filter(|i| {
                    services.is_empty() || services.iter().any(|s| s == stack::service_of(i))
                })
                .collect())
        };
        // Container `index` of `service` (not a one-off).
        let replica = |service: &String, index: u32| -> Result<state::Info, i32> {
            of_services(std::slice::from_ref(service))?
                .into_iter()
                .find(|i| {
                    stack::number_of(i) == index && !i.labels.contains_key(stack::LABEL_ONEOFF)
                })
                .ok_or_else(|| {
                    fail(
                        printer,
                        &format!("service `{service}` has no container {index}: is the stack up?"),
                    )
                })
        };
        match cmd {
            StackCommand::Ps { all, quiet, .. } => {
                let rows = stack::ps(&project.containers(store), *all);
                if *quiet {
                    for r in &rows {
                        printer.data(format!("{}\n", r.name));
                    }
                    return exit::OK;
                }
                if printer.is_json() {
                    for r in &rows {
                        let info = state::find(store, &r.id).ok();
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
                    let Ok(info) = state::find(store, &r.id) else {
                        continue;
                    };
                    table.push(vec![
                        r.name.clone(),
                        r.service.clone(),
                        status_text(&info, &r.status),
                        ports_text(&info, &r.status),
                    ]);
                }
                printer.data(crate::cli::format::table(&table));
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
                let read_from = now_nanos();
                let lines = match stack::logs(&containers, &opts) {
                    Ok(l) => l,
                    Err(e) => return fail_stack(settings, &e),
                };
                for l in &lines {
                    show(l);
                }
                if *follow {
                    // New lines: after the last one shown, else from before the read.
                    let since = lines
                        .iter()
                        .filter_map(|l| logs::parse_time("--since", &l.time).ok())
                        .max()
                        .map_or(read_from, |t| t + 1);
                    let opts = logs::LogOptions {
                        since: Some(since),
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
                let info = match replica(service, *index) {
                    Ok(i) => i,
                    Err(code) => return code,
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
                let e = container::exec(store, &opts);
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
                let reporter = crate::cli::progress::reporter(printer.mode(), printer.quiet());
                let bases = match crate::cli::build::resolve_bases(
                    store,
                    project.manifest,
                    crate::builder::bases::Pull::Missing,
                    false,
                    &crate::cli::registry::TlsArgs::default(),
                    settings,
                ) {
                    Ok(b) => b,
                    Err(code) => return code,
                };
                let opts = stack::RunOneOff {
                    bases,
                    service: service.clone(),
                    command: command.clone(),
                    env: env.clone(),
                    remove: *rm,
                    no_deps: *no_deps,
                    tty: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
                };
                let run = stack::prepare_run(store, project, &opts, reporter.as_ref());
                drop(reporter);
                match run {
                    // On success this process becomes the container's helper.
                    Ok(o) => match container::run(store, &o) {
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
                match stack::start_existing(project, &containers) {
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
                if let Err(e) = stack::stop_services(project, &containers, t, &on_stop) {
                    return fail_stack(settings, &e);
                }
                if matches!(cmd, StackCommand::Restart { .. }) {
                    match stack::start_existing(project, &containers) {
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
            StackCommand::Top { services, .. } => {
                let containers = match of_services(services) {
                    Ok(c) => c,
                    Err(code) => return code,
                };
                let mut out = String::new();
                for info in containers
                    .iter()
                    .filter(|i| matches!(state::status(i), state::Status::Running { .. }))
                {
                    let procs = match crate::container::top::processes(info) {
                        Ok(p) => p,
                        Err(e) => return fail_with(printer, &e),
                    };
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(info.name.as_deref().unwrap_or(&info.id[..12]));
                    out.push('\n');
                    out.push_str(&crate::cli::observe::top_table(&procs));
                }
                printer.data(out);
                exit::OK
            }
            StackCommand::Port {
                index,
                protocol,
                service,
                port,
                ..
            } => {
                let info = match replica(service, *index) {
                    Ok(i) => i,
                    Err(code) => return code,
                };
                let want = match (protocol, port.contains('/')) {
                    (Some(p), false) => format!("{port}/{p}"),
                    (Some(_), true) => {
                        return fail(printer, "give the protocol once: PORT/PROTO or --protocol");
                    }
                    (None, _) => port.clone(),
                };
                let (want, hosts) = crate::cli::observe::host_addresses(&info, &want);
                if hosts.is_empty() {
                    let name = info.name.as_deref().unwrap_or(service);
                    // As `docker port`: 1, like a name that is not there.
                    fail(
                        printer,
                        &format!("no public port '{want}' published for {name}"),
                    );
                    return exit::INVALID;
                }
                printer.data(hosts.iter().map(|h| format!("{h}\n")).collect::<String>());
                exit::OK
            }
            StackCommand::Events {
                json,
                since,
                until,
                services,
                ..
            } => {
                if let Err(code) = of_services(services) {
                    return code;
                }
                let project_label = format!("label={}={}", stack::LABEL_PROJECT, project.name);
                // As `docker compose events`: from now on, unless asked.
                let since = since.clone().unwrap_or_else(|| "now".to_owned());
                let mut filter = match crate::container::events::Filter::parse(
                    Some(&since),
                    until.as_deref(),
                    &[project_label],
                ) {
                    Ok(f) => f,
                    Err(e) => return fail_with(printer, &e),
                };
                filter.any_label = services
                    .iter()
                    .map(|s| (stack::LABEL_SERVICE.to_owned(), Some(s.clone())))
                    .collect();
                crate::container::events::follow(store.root(), &filter, |e| {
                    printer.data(crate::cli::observe::event_line(e, *json));
                });
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
                    printer.data(stack::config_text(project, &selected));
                }
                exit::OK
            }
        }
    })
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
