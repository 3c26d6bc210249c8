//! `boxr ps`, `logs`, `start`, `stop`, `restart`, `attach`, `kill`, `pause`, `rm`, `wait`, `update`,
//! `rename`: containers and their lifecycle, as any boxr process sees them.

use std::io::Write;
use std::time::Duration;

use super::format::{human_size, since};
use super::{Settings, exit, fail, fail_with};
use crate::container::ContainerError;
use crate::container::lifecycle;
use crate::container::logs;
use crate::container::state::{self, Info, Status};
use crate::store::{Access, Store};

fn open(settings: &Settings) -> Result<Store, i32> {
    Store::open(&settings.root, Access::Shared).map_err(|e| fail_with(&settings.printer, &e))
}

pub(super) fn status_text(info: &Info, st: &Status) -> String {
    match st {
        Status::Created => "Created".into(),
        Status::Running {
            started_at,
            health,
            monitor_lost,
            ..
        } => {
            let up = format!(
                "Up {}",
                started_at
                    .as_deref()
                    .map(since)
                    .unwrap_or_else(|| "?".into())
            );
            if *monitor_lost {
                return format!("{up} (monitor lost)");
            }
            if state::paused(info) {
                return format!("{up} (Paused)");
            }
            match health.as_deref() {
                Some("starting") => format!("{up} (health: starting)"),
                Some(h) => format!("{up} ({h})"),
                None => up,
            }
        }
        Status::Restarting { code } => format!(
            "Restarting ({})",
            code.map_or("?".to_owned(), |c| c.to_string())
        ),
        Status::Exited {
            code, finished_at, ..
        } => {
            let code = code.map_or("?".to_owned(), |c| c.to_string());
            match finished_at {
                Some(f) => format!("Exited ({code}) {} ago", since(f)),
                None => format!("Exited ({code})"),
            }
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show every container (default: running ones)
    #[arg(short, long)]
    all: bool,
    /// Only ids
    #[arg(short, long)]
    quiet: bool,
    /// table, json, or a Go template for each container ({{.ID}}, {{.Names}}, {{.Status}}, ...)
    #[arg(long, default_value = "table")]
    format: String,
    /// Only matching containers: id=, name=, status=, exited=, ancestor=, health=, label=KEY[=VALUE]
    /// (repeatable; the same key: any of)
    #[arg(short, long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// The N containers created last (any state)
    #[arg(short = 'n', long = "last", value_name = "N")]
    last: Option<usize>,
    /// The container created last (any state)
    #[arg(short, long)]
    latest: bool,
    /// Show each container's size: its own files (and with its image's, "virtual")
    #[arg(short, long)]
    size: bool,
}

pub fn ps(args: &PsArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let filters = match crate::container::filter::Filters::parse(&args.filter) {
        Ok(f) => f,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    let last = if args.latest { Some(1) } else { args.last };
    // As in Docker: a status filter, -n and -l look at every container.
    let all = args.all || last.is_some() || filters.has("status") || filters.has("exited");
    let mut rows: Vec<(Info, Status)> = state::list(&store)
        .into_iter()
        .map(|i| {
            let s = state::status(&i);
            (i, s)
        })
        .filter(|(_, s)| all || matches!(s, Status::Running { .. } | Status::Restarting { .. }))
        .filter(|(i, s)| filters.matches(i, s))
        .collect();
    if let Some(n) = last {
        rows.truncate(n);
    }
    if args.quiet {
        for (i, _) in &rows {
            settings.printer.data(format!("{}\n", &i.id[..12]));
        }
        return exit::OK;
    }
    if args.format == "json" || args.format.contains("{{") {
        for (i, s) in &rows {
            let mut v = serde_json::json!({
                "ID": i.id, "Names": i.name, "Image": i.image, "Command": i.args.join(" "),
                "CreatedAt": i.created, "Status": status_text(i, s), "Ports": ports_text(i, s),
                "Labels": i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
                "State": match s { Status::Created => "created", Status::Running { .. } => "running", Status::Exited { .. } => "exited", Status::Restarting { .. } => "restarting" },
            });
            if args.size {
                let (own, virtual_size) = state::size(&store, i);
                v["Size"] =
                    format!("{} (virtual {})", human_size(own), human_size(virtual_size)).into();
            }
            if args.format == "json" {
                settings.printer.data(format!("{v}\n"));
                continue;
            }
            match super::template::render(&args.format, &v) {
                Ok(text) => settings.printer.data(format!("{text}\n")),
                Err(e) => return fail_with(&settings.printer, &e),
            }
        }
        return exit::OK;
    }
    let mut header: Vec<String> = [
        "CONTAINER ID",
        "IMAGE",
        "COMMAND",
        "CREATED",
        "STATUS",
        "PORTS",
        "NAMES",
    ]
    .map(String::from)
    .to_vec();
    if args.size {
        header.push("SIZE".into());
    }
    let mut table = vec![header];
    for (i, s) in &rows {
        let mut cmd = format!("\"{}\"", i.args.join(" "));
        if cmd.chars().count() > 22 {
            cmd = format!("{}…\"", cmd.chars().take(20).collect::<String>());
        }
        let mut row = vec![
            i.id[..12].to_owned(),
            i.image.clone(),
            cmd,
            format!("{} ago", since(&i.created)),
            status_text(i, s),
            ports_text(i, s),
            i.name.clone().unwrap_or_default(),
        ];
        if args.size {
            let (own, virtual_size) = state::size(&store, i);
            row.push(format!(
                "{} (virtual {})",
                human_size(own),
                human_size(virtual_size)
            ));
        }
        table.push(row);
    }
    settings.printer.data(super::format::table(&table));
    exit::OK
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container ends
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Only output since this time: RFC 3339, seconds since the epoch, or a duration before
    /// now (10m)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only output before this time (same forms)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Prefix each line with its time
    #[arg(short, long)]
    timestamps: bool,
    container: String,
}

pub fn logs(args: &LogsArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let time = |flag: &str, t: &Option<String>| {
        t.as_deref().map(|t| logs::parse_time(flag, t)).transpose()
    };
    let opts = time("--since", &args.since).and_then(|since| {
        Ok(logs::LogOptions {
            follow: args.follow,
            tail: args.tail,
            since,
            until: time("--until", &args.until)?,
        })
    });
    let mut last_time = None;
    let mut lost = false;
    let read = opts.and_then(|mut opts| {
        let info = state::find(&store, &args.container)?;
        // A container whose monitor is gone writes no more log: nothing to follow.
        lost = matches!(
            state::status(&info),
            Status::Running {
                monitor_lost: true,
                ..
            }
        );
        opts.follow &= !lost;
        logs::read(&info, &opts, |line| {
            last_time = Some(line.time.to_owned());
            let text = if args.timestamps {
                format!("{} {}", line.time, line.text)
            } else {
                line.text.to_owned()
            };
            if line.stream == "stderr" {
                let _ = std::io::stderr().write_all(text.as_bytes());
            } else {
                let mut o = std::io::stdout().lock();
                let _ = o.write_all(text.as_bytes());
                let _ = o.flush();
            }
        })
    });
    if lost {
        settings.printer.note(format!(
            "warning: the monitor of {} is gone (killed?): its output after {} was not recorded",
            args.container,
            last_time.as_deref().unwrap_or("its start")
        ));
    }
    match read {
        Ok(()) => exit::OK,
        Err(e) => fail_with(&settings.printer, &e),
    }
}

/// Runs `act` on each container named, printing the name when it succeeds and the diagnostic
/// when it fails; returns the exit code of the last failure (0 if none).
fn each_container(
    settings: &Settings,
    names: &[String],
    mut act: impl FnMut(&Store, &Info) -> Result<(), ContainerError>,
) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut code = exit::OK;
    for c in names {
        match state::find(&store, c).and_then(|i| act(&store, &i)) {
            Ok(()) => settings.printer.out(c),
            Err(e) => {
                settings.printer.diagnostic(&e);
                code = failure_code(&e);
            }
        }
    }
    code
}

#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL (default: the container's
    /// --stop-timeout, else 10)
    #[arg(short = 't', long = "time")]
    time: Option<u64>,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn stop(args: &StopArgs, settings: &Settings) -> i32 {
    let timeout = args.time.map(Duration::from_secs);
    each_container(settings, &args.containers, |_, info| {
        lifecycle::stop(info, timeout)
    })
}

#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach to the container's output (and input, with -i) once it runs
    #[arg(short, long)]
    attach: bool,
    /// Attach the terminal's input too (with -a)
    #[arg(short, long)]
    interactive: bool,
    /// Start every container a restart policy keeps running (always; unless-stopped unless
    /// stopped by hand): for the init system at boot (see contrib/boxr-restart.service)
    #[arg(long, conflicts_with_all = ["attach", "containers"])]
    boot: bool,
    #[arg(required_unless_present = "boot")]
    containers: Vec<String>,
}

pub fn start(args: &StartArgs, settings: &Settings) -> i32 {
    if args.boot {
        let store = match open(settings) {
            Ok(s) => s,
            Err(c) => return c,
        };
        let mut code = exit::OK;
        for (info, r) in lifecycle::start_at_boot(&store) {
            match r {
                Ok(()) => settings
                    .printer
                    .out(info.name.as_deref().unwrap_or(&info.id[..12])),
                Err(e) => {
                    settings.printer.diagnostic(&e);
                    code = e.exit_code();
                }
            }
        }
        return code;
    }
    if !args.attach {
        return each_container(settings, &args.containers, |_, info| lifecycle::start(info));
    }
    let [c] = args.containers.as_slice() else {
        return fail(&settings.printer, "start -a attaches to one container");
    };
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let opts = lifecycle::AttachOptions {
        no_stdin: !args.interactive,
        sig_proxy: true,
    };
    let attached = state::find(&store, c).and_then(|i| lifecycle::start_attached(&i, &opts));
    match attached {
        Ok(code) => code,
        Err(e) => {
            settings.printer.diagnostic(&e);
            failure_code(&e)
        }
    }
}

/// `restart` takes `stop`'s arguments.
pub type RestartArgs = StopArgs;

pub fn restart(args: &RestartArgs, settings: &Settings) -> i32 {
    let timeout = args.time.map(Duration::from_secs);
    each_container(settings, &args.containers, |_, info| {
        lifecycle::restart(info, timeout)
    })
}

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// Do not attach the terminal's input
    #[arg(long)]
    no_stdin: bool,
    /// Forward SIGINT and SIGTERM to the container
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sig_proxy: bool,
    container: String,
}

/// Exits with the container's exit code when it ends while attached.
pub fn attach(args: &AttachArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let opts = lifecycle::AttachOptions {
        no_stdin: args.no_stdin,
        sig_proxy: args.sig_proxy,
    };
    match state::find(&store, &args.container).and_then(|i| lifecycle::attach(&i, &opts)) {
        Ok(code) => code,
        Err(e) => fail_with(&settings.printer, &e),
    }
}

#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// The signal (name or number)
    #[arg(short, long, default_value = "KILL")]
    signal: String,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn kill(args: &KillArgs, settings: &Settings) -> i32 {
    let sig = match crate::values::parse_signal(&args.signal).ok() {
        Some(s) => s.0,
        None => {
            return fail(
                &settings.printer,
                &format!("unknown signal `{}`", args.signal),
            );
        }
    };
    each_container(settings, &args.containers, |_, info| {
        if lifecycle::signal_number(info, sig)? {
            Ok(())
        } else {
            Err(ContainerError::Invalid {
                message: format!("container {} is not running", &info.id[..12]),
                help: None,
            })
        }
    })
}

#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill a running container first
    #[arg(short, long)]
    force: bool,
    /// Remove the container's anonymous volumes too
    #[arg(short, long)]
    volumes: bool,
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn rm(args: &RmArgs, settings: &Settings) -> i32 {
    each_container(settings, &args.containers, |store, info| {
        lifecycle::remove(store, info, args.force, args.volumes)
    })
}

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

pub fn wait(args: &WaitArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let mut code = exit::OK;
    for c in &args.containers {
        match state::find(&store, c) {
            Ok(info) => {
                lifecycle::wait_exit(&info, None);
                let exit_code = match state::status(&info) {
                    Status::Exited { code: Some(c), .. } => c.to_string(),
                    _ => "-1".into(),
                };
                settings.printer.data(format!("{exit_code}\n"));
            }
            Err(e) => {
                settings.printer.diagnostic(&e);
                code = exit::of(&e);
            }
        }
    }
    code
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `boxr pause` (`frozen`) and `boxr unpause`.
pub fn pause(args: &PauseArgs, settings: &Settings, frozen: bool) -> i32 {
    each_container(settings, &args.containers, |_, info| {
        state::set_paused(info, frozen)
    })
}

#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    limits: super::run::LimitArgs,
    /// A new restart policy: no, on-failure[:N], always, unless-stopped (from the next end on)
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    #[arg(required = true)]
    containers: Vec<String>,
}

/// `boxr update`: new limits, live for a running container and kept for later starts.
pub fn update(args: &UpdateArgs, settings: &Settings) -> i32 {
    let opts = args.limits.options();
    each_container(settings, &args.containers, |_, info| {
        lifecycle::update(info, &opts, args.restart.as_deref())
    })
}

#[derive(Debug, clap::Args)]
pub struct RenameArgs {
    container: String,
    new_name: String,
}

/// `boxr rename CONTAINER NEW_NAME`.
pub fn rename(args: &RenameArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    match state::find(&store, &args.container)
        .and_then(|i| lifecycle::rename(&store, &i, &args.new_name))
    {
        Ok(()) => exit::OK,
        Err(e) => fail_with(&settings.printer, &e),
    }
}

/// `ps`'s PORTS: what the container holds published, as Docker shows it.
pub(super) fn ports_text(i: &state::Info, s: &Status) -> String {
    crate::net::ports::grouped(&state::ports(i, s)).join(", ")
}

/// A container command's failure: the command's own 126/127 where it could not start, 1 for a
/// container that does not exist, else 125.
fn failure_code(e: &crate::container::ContainerError) -> i32 {
    match e.exit_code() {
        exit::FAILED => exit::of(e),
        c => c,
    }
}
