//! `boxr up`, `boxr down` and `boxr stack ...`: a manifest's services as one project.
//! The `stack` subcommands are in `commands`.

mod commands;

pub use commands::{StackCommand, command};

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::registry::TlsArgs;
use super::{ArgOverrides, Settings, exit, fail, fail_with, load_manifest};
use crate::builder::bases::Pull;
use crate::container::state;
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
    /// When to pull the registry images of the manifest (services' `image`, builds' `from`)
    #[arg(long, value_enum, default_value_t = Pull::Missing, value_name = "POLICY")]
    pull: Pull,
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
    /// Show only these services' output (repeatable; the others run all the same)
    #[arg(long, value_name = "SERVICE", conflicts_with_all = ["detach", "wait"])]
    attach: Vec<String>,
    /// Do not show these services' output (repeatable)
    #[arg(long, value_name = "SERVICE", conflicts_with_all = ["detach", "wait"])]
    no_attach: Vec<String>,
    /// Run N containers of SERVICE instead of its `replicas` (repeatable)
    #[arg(long, value_name = "SERVICE=N", value_parser = parse_scale)]
    scale: Vec<(String, u32)>,
    /// The services to start (default: every one whose profiles are active)
    services: Vec<String>,
}

/// `--scale SERVICE=N`.
fn parse_scale(s: &str) -> Result<(String, u32), crate::values::Bad> {
    let bad = |m: String| crate::values::Bad::new(m, Some("write --scale SERVICE=N"));
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| bad(format!("`{s}` is not SERVICE=N")))?;
    let n = n
        .parse()
        .map_err(|_| bad(format!("`{n}` is not a number of replicas")))?;
    if name.is_empty() {
        return Err(bad(format!("`{s}` names no service")));
    }
    Ok((name.to_owned(), n))
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

/// Runs `f` on the project of the manifest, with the store; or returns the exit code of what
/// failed to load.
fn with_project(
    settings: &Settings,
    args: &ProjectArgs,
    f: impl FnOnce(&Store, &Project<'_>) -> i32,
) -> i32 {
    let m = match load_manifest(settings, &args.overrides()) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let store = match Store::open(&settings.root, Access::Shared) {
        Ok(s) => s,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    let mut profiles = args.profiles.clone();
    if let Ok(p) = std::env::var("BOXR_PROFILES") {
        profiles.extend(
            p.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    match Project::new(
        &m,
        &settings.manifest_dir(),
        args.project.as_deref(),
        profiles,
    ) {
        Ok(project) => f(&store, &project),
        Err(e) => fail_stack(settings, &e),
    }
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
    with_project(settings, &args.project, |store, project| {
        let named = [(
            "--exit-code-from",
            args.exit_code_from.iter().collect::<Vec<_>>(),
        )]
        .into_iter()
        .chain([("--attach", args.attach.iter().collect())])
        .chain([("--no-attach", args.no_attach.iter().collect())]);
        for (flag, services) in named {
            if let Some(s) = services.into_iter().find(|s| project.service(s).is_none()) {
                return fail(&settings.printer, &format!("{flag} {s}: no such service"));
            }
        }
        let bases = match super::build::resolve_bases(
            store,
            project.manifest,
            args.pull,
            false,
            &TlsArgs::default(),
            settings,
        ) {
            Ok(b) => b,
            Err(code) => return code,
        };
        let since = now_nanos();
        let opts = stack::UpOptions {
            bases,
            services: args.services.clone(),
            no_deps: args.no_deps,
            no_build: args.no_build,
            force_recreate: args.force_recreate,
            remove_orphans: args.remove_orphans,
            wait: args.wait,
            wait_timeout: args.wait_timeout.map(Duration::from_secs),
            scale: args.scale.iter().cloned().collect(),
        };
        let reporter = super::progress::reporter(settings.printer.mode(), settings.printer.quiet());
        let printer = &settings.printer;
        let on_change =
            |name: &str, c: Change| printer.note(format!(" ✔ Container {name}  {}", c.as_str()));
        let report = match stack::up(store, project, &opts, reporter.as_ref(), &on_change) {
            Ok(r) => r,
            Err(e) => return fail_stack(settings, &e),
        };
        drop(reporter);
        if !report.orphans.is_empty() {
            printer.note(format!(
                "found orphan containers ({}) for this project: a service of theirs is gone from {}; remove them with --remove-orphans",
                report.orphans.join(", "),
                project.manifest.name
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
            .containers(store)
            .into_iter()
            .filter(|i| {
                names.iter().any(|n| n == stack::service_of(i))
                    && !i.labels.contains_key(stack::LABEL_ONEOFF)
            })
            .collect();
        let width = containers
            .iter()
            .map(|i| prefix_of(project, i).len())
            .max()
            .unwrap_or(0);
        let colour = use_colour();
        let notice = |s: &str| printer.note(s);
        let fg = stack::Foreground {
            since: Some(since),
            abort_on_exit: args.abort_on_container_exit || args.exit_code_from.is_some(),
            notice: &notice,
            shown: &|i: &state::Info| {
                let service = stack::service_of(i);
                (args.attach.is_empty() || args.attach.iter().any(|s| s == service))
                    && !args.no_attach.iter().any(|s| s == service)
            },
        };
        let r = stack::attach(project, &containers, &fg, |l| {
            let index = containers
                .iter()
                .position(|i| i.name.as_deref() == Some(l.container.as_str()))
                .unwrap_or(0);
            let prefix = containers
                .get(index)
                .map(|i| prefix_of(project, i))
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
    })
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
    with_project(settings, &args.project, |store, project| {
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
        match stack::down(store, project, &opts, &on_stop) {
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
    })
}
