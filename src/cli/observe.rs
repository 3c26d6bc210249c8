//! `boxr top`, `port`, `stats`, `events`: what a container does, as any boxr process sees it.

use std::time::Duration;

use super::{Settings, exit, fail, fail_with};
use crate::container::state::{self, Info, Status};
use crate::container::{events, top};
use crate::store::{Access, Store};

fn open(settings: &Settings) -> Result<Store, i32> {
    Store::open(&settings.root, Access::Shared).map_err(|e| fail_with(&settings.printer, &e))
}

#[derive(Debug, clap::Args)]
pub struct TopArgs {
    container: String,
}

/// `boxr top`: the container's processes (every process of its cgroup), as the host sees them.
pub fn top(args: &TopArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let procs = match state::find(&store, &args.container).and_then(|i| top::processes(&i)) {
        Ok(p) => p,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    settings.printer.data(top_table(&procs));
    exit::OK
}

/// `top`'s table: UID, PID, PPID, CMD.
pub(super) fn top_table(procs: &[top::Process]) -> String {
    let mut out = format!("{:<8} {:<8} {:<8} {}\n", "UID", "PID", "PPID", "CMD");
    for p in procs {
        out.push_str(&format!(
            "{:<8} {:<8} {:<8} {}\n",
            p.uid, p.pid, p.ppid, p.cmd
        ));
    }
    out
}

/// The host addresses (`0.0.0.0:8080`) a running container publishes its port `want`
/// (`PORT` or `PORT/PROTO`, tcp by default) on; `want` normalized as the first.
pub(super) fn host_addresses(info: &Info, want: &str) -> (String, Vec<String>) {
    let want = if want.contains('/') {
        want.to_owned()
    } else {
        format!("{want}/tcp")
    };
    let held = state::ports(info, &state::status(info));
    let hosts = held
        .iter()
        .filter(|p| p.private() == want)
        .map(|p| p.host().to_string())
        .collect();
    (want, hosts)
}

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    container: String,
    /// A container port, PORT or PORT/PROTO (default tcp): print only its host addresses
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

/// `boxr port`: `80/tcp -> 0.0.0.0:8080` for each published port of a running container, or
/// the host addresses of one container port.
pub fn port(args: &PortArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let info = match state::find(&store, &args.container) {
        Ok(i) => i,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    let held = state::ports(&info, &state::status(&info));
    let Some(want) = &args.port else {
        let lines: String = held
            .iter()
            .map(|p| format!("{} -> {}\n", p.private(), p.host()))
            .collect();
        settings.printer.data(lines);
        return exit::OK;
    };
    let (want, hosts) = host_addresses(&info, want);
    let lines: String = hosts.iter().map(|h| format!("{h}\n")).collect();
    if lines.is_empty() {
        // As `docker port`: 1, like a name that is not there.
        fail(
            &settings.printer,
            &format!("no public port '{want}' published for {}", args.container),
        );
        return exit::INVALID;
    }
    settings.printer.data(lines);
    exit::OK
}

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// One sample, then exit (default: a new sample every second until interrupted)
    #[arg(long)]
    no_stream: bool,
    /// table, json, or a Go template for each container ({{.Name}} {{.CPUPerc}} {{.MemUsage}})
    #[arg(long, default_value = "table")]
    format: String,
    /// Containers (default: every running one)
    containers: Vec<String>,
}

/// `boxr stats`: CPU %, memory, pids of running containers from their cgroups.
pub fn stats(args: &StatsArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let infos: Vec<Info> = if args.containers.is_empty() {
        state::list(&store)
            .into_iter()
            .filter(|i| matches!(state::status(i), Status::Running { .. }))
            .collect()
    } else {
        match args
            .containers
            .iter()
            .map(|c| state::find(&store, c))
            .collect::<Result<_, _>>()
        {
            Ok(v) => v,
            Err(e) => return fail_with(&settings.printer, &e),
        }
    };
    loop {
        let samples = crate::container::stats::sample(&infos, Duration::from_millis(500));
        match stats_text(&samples, &args.format) {
            Ok(text) => settings.printer.data(text),
            Err(e) => return super::fail_with(&settings.printer, &e),
        }
        if args.no_stream {
            return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A sample as a table, JSON lines, or a Go template per container (docker's keys: `ID`,
/// `Name`, `CPUPerc`, `MemUsage`, `MemPerc`, `PIDs`).
fn stats_text(
    samples: &[crate::container::stats::Sample],
    format: &str,
) -> Result<String, super::template::TemplateError> {
    let mib = |b: u64| format!("{:.1}MiB", b as f64 / (1 << 20) as f64);
    let rows = samples.iter().map(|s| {
        let limit = s.memory_limit.map_or("no limit".to_owned(), mib);
        let mem_perc = s.memory_limit.map_or("--".to_owned(), |l| {
            format!("{:.2}%", s.memory_used as f64 / l.max(1) as f64 * 100.0)
        });
        serde_json::json!({
            "ID": &s.id[..12], "Name": s.name, "CPUPerc": format!("{:.2}%", s.cpu_percent),
            "MemUsage": format!("{} / {limit}", mib(s.memory_used)), "MemPerc": mem_perc,
            "PIDs": s.pids.to_string(),
        })
    });
    let mut out = String::new();
    match format {
        "table" => {
            out.push_str(&format!(
                "{:<14}{:<20}{:>8}  {:>22}  {:>6}\n",
                "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"
            ));
            for r in rows {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
                out.push_str(&format!(
                    "{:<14}{:<20}{:>8}  {:>22}  {:>6}\n",
                    s("ID"),
                    s("Name"),
                    s("CPUPerc"),
                    s("MemUsage"),
                    s("PIDs")
                ));
            }
        }
        "json" => {
            for r in rows {
                out.push_str(&format!("{r}\n"));
            }
        }
        t if t.contains("{{") => {
            for r in rows {
                out.push_str(&super::template::render(t, &r)?);
                out.push('\n');
            }
        }
        other => {
            return Err(super::template::TemplateError::UnknownFormat(
                other.to_owned(),
            ));
        }
    }
    Ok(out)
}

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Only events at or after this time (RFC 3339, or seconds since the epoch)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Stop at this time instead of following new events (RFC 3339, seconds, or `now`)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only matching events: container=NAME|ID, event=ACTION (repeatable; same key: any of), label=KEY[=VALUE] (every one must match)
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// table or json
    #[arg(long, default_value = "table")]
    format: String,
}

/// `boxr events`: the event log, filtered; follows it until interrupted unless `--until`.
pub fn events(args: &EventsArgs, settings: &Settings) -> i32 {
    let store = match open(settings) {
        Ok(s) => s,
        Err(c) => return c,
    };
    let filter =
        match events::Filter::parse(args.since.as_deref(), args.until.as_deref(), &args.filter) {
            Ok(f) => f,
            Err(e) => return fail_with(&settings.printer, &e),
        };
    events::follow(store.root(), &filter, |e| {
        settings.printer.data(event_line(e, args.format == "json"));
    });
    exit::OK
}

/// One event as `events` prints it: `TIME container ACTION ID (name=NAME)`, or its JSON.
pub(super) fn event_line(e: &serde_json::Value, json: bool) -> String {
    if json {
        return format!("{e}\n");
    }
    let secs = e["time"].as_i64().unwrap_or(0);
    let name = e["attributes"]["name"]
        .as_str()
        .map(|n| format!(" (name={n})"))
        .unwrap_or_default();
    format!(
        "{} container {} {}{name}\n",
        crate::time::rfc3339(secs),
        e["action"].as_str().unwrap_or("?"),
        e["id"].as_str().unwrap_or("?"),
    )
}
