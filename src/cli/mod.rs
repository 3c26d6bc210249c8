//! The `boxr` command line: clap types, settings, output. Each command is a few lines that call
//! one library function and print its result.

pub(crate) mod build;
mod changes;
mod check;
mod containers;
mod format;
mod images;
mod info;
mod network;
mod observe;
mod plan;
pub mod printer;
mod progress;
pub(crate) mod registry;
mod run;
mod stack;
mod template;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::values::Bad;

pub use printer::{Printer, Progress};

/// Exit codes, as `docker` uses them.
pub mod exit {
    /// Everything went well.
    pub const OK: i32 = 0;
    /// The manifest (or what it refers to) has errors.
    pub const INVALID: i32 = 1;
    /// boxr itself failed (bad flags, I/O errors, ...).
    pub const FAILED: i32 = 125;
    /// What a failure exits with: 1 when an image, container or network named on the command
    /// line does not exist (as `docker rm`, `rmi`, `inspect`, `stop`, `logs` exit), else 125.
    pub fn of(diag: &dyn miette::Diagnostic) -> i32 {
        const NOT_FOUND: [&str; 4] = [
            "boxr::store::no_such_image",
            "boxr::container::not_found",
            "boxr::net::not_found",
            "boxr::cli::no_such_object",
        ];
        match diag.code().map(|c| c.to_string()) {
            Some(c) if NOT_FOUND.contains(&c.as_str()) => INVALID,
            _ => FAILED,
        }
    }
}

#[derive(Debug, Parser)]
#[command(
    name = "boxr",
    version,
    about = "Build and run containers from a boxr.kdl manifest",
    long_about = "Build container images from a boxr.kdl manifest into cached, reproducible OCI layers, and run them as containers or local stacks. Daemonless: every command is a short process.",
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Root of the store (images, layers, cache, containers)
    #[arg(long, global = true, env = "BOXR_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,

    /// The manifest to read (also accepted after `check`, `plan` and `build`)
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        default_value = "boxr.kdl"
    )]
    file: PathBuf,

    /// How to show progress and diagnostics
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto, value_name = "MODE")]
    progress: Progress,

    /// Sync the filesystem before publishing layer contents (slower; survives power loss)
    #[arg(long, global = true)]
    sync: bool,

    /// Print only errors and requested data
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    /// Print more about what boxr does (no short form: `-v` is `run`'s volume, as in docker)
    #[arg(long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Check a manifest and report every problem in it
    Check(check::CheckArgs),
    /// Show the build steps of a manifest with their cache keys
    Plan(plan::PlanArgs),
    /// Build the images of a manifest
    Build(build::BuildArgs),
    /// Run a command in a new container
    Run(Box<run::RunArgs>),
    /// List containers
    Ps(containers::PsArgs),
    /// Run a command in a running container
    Exec(run::ExecArgs),
    /// Print a detached container's output
    Logs(containers::LogsArgs),
    /// Stop containers: the stop signal, then SIGKILL after a grace period
    Stop(containers::StopArgs),
    /// Start stopped containers again (detached)
    Start(containers::StartArgs),
    /// Stop and start containers
    Restart(containers::RestartArgs),
    /// Attach the terminal to a running container's output (and input, with -i); Ctrl-P Ctrl-Q detaches
    Attach(containers::AttachArgs),
    /// Show what happened to containers (follows new events unless --until)
    Events(observe::EventsArgs),
    /// Show the processes of a container
    Top(observe::TopArgs),
    /// List a container's published ports, or the host address of one
    Port(observe::PortArgs),
    /// Show CPU, memory and process use of running containers
    Stats(observe::StatsArgs),
    /// Freeze every process of containers
    Pause(containers::PauseArgs),
    /// Thaw paused containers
    Unpause(containers::PauseArgs),
    /// Send a signal to containers
    Kill(containers::KillArgs),
    /// Remove containers
    Rm(containers::RmArgs),
    /// Wait for containers to end and print their exit codes
    Wait(containers::WaitArgs),
    /// Create a container as `run -d` would, without starting it (`boxr start` does)
    Create(Box<run::RunArgs>),
    /// Change the limits of containers (memory, CPU, processes, block I/O), live if they run
    Update(containers::UpdateArgs),
    /// Give a container another name
    Rename(containers::RenameArgs),
    /// Write a container's filesystem as one tar
    Export(changes::ExportArgs),
    /// Create an image from a container's changes
    Commit(changes::CommitArgs),
    /// Copy files between a container and the host: CONTAINER:PATH to a host path, or back
    Cp(changes::CpArgs),
    /// List the files a container added (A), changed (C) or deleted (D)
    Diff(changes::DiffArgs),
    /// Create an image from a root filesystem directory or tarball
    Import(images::ImportArgs),
    /// List images
    Images(images::ImagesArgs),
    /// Show details of images as JSON
    Inspect(images::InspectArgs),
    /// Give an image another name
    Tag(images::TagArgs),
    /// Show the steps an image was made of, with the size of each one's layer
    History(images::HistoryArgs),
    /// Save images to an OCI layout or docker-archive
    Save(images::SaveArgs),
    /// Load images from an OCI layout or docker-archive
    Load(images::LoadArgs),
    /// Remove images
    Rmi(images::RmiArgs),
    /// Pull an image from a registry
    Pull(registry::PullArgs),
    /// Push an image to a registry; prints the pushed manifest's digest
    Push(registry::PushArgs),
    /// Log in to a registry (the credentials are checked, then kept in boxr's auth file)
    Login(registry::LoginArgs),
    /// Forget the credentials for a registry
    Logout(registry::LogoutArgs),
    /// Remove unused data: unreferenced blobs and layers, leftovers of interrupted commands
    Gc(images::GcArgs),
    /// How boxr runs here: root or rootless (and its id maps), store, storage driver, cgroups
    Info(info::InfoArgs),
    /// Manage named volumes
    #[command(subcommand)]
    Volume(images::VolumeCommand),
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Start the manifest's services as a stack: build, network, containers in dependency order
    Up(Box<stack::UpArgs>),
    /// Stop and remove a stack: containers, networks (and volumes with -v)
    Down(stack::DownArgs),
    /// Commands on one stack: ps, logs, exec, run, start, stop, restart, config
    #[command(subcommand)]
    Stack(stack::StackCommand),
    /// Print a shell completion script
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Settings resolved once from flags and the environment.
pub struct Settings {
    pub root: PathBuf,
    pub sync: bool,
    pub file: PathBuf,
    pub printer: Printer,
}

impl Settings {
    fn resolve(cli: &Cli) -> Settings {
        Settings {
            root: cli.root.clone().unwrap_or_else(default_root),
            sync: cli.sync,
            file: cli.file.clone(),
            printer: Printer::new(cli.progress, cli.quiet, cli.verbose),
        }
    }

    /// The directory the manifest is in (relative paths in it are relative to this).
    pub fn manifest_dir(&self) -> PathBuf {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        }
    }
}

/// `/var/lib/boxr` for root, `$XDG_DATA_HOME/boxr` (or `~/.local/share/boxr`) otherwise (also
/// for a boxr started in the rootless user namespace, where the user is root).
fn default_root() -> PathBuf {
    if nix::unistd::geteuid().is_root() && !crate::platform::in_user_namespace() {
        return PathBuf::from("/var/lib/boxr");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&d).join("boxr");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    Path::new(&home).join(".local/share/boxr")
}

/// `--arg NAME=VALUE` (or `--arg NAME`, taking the value from the environment, as
/// `docker build --build-arg` does).
#[derive(Debug, Clone, clap::Args)]
pub struct ArgOverrides {
    /// Set a build arg declared with `arg` in the manifest
    #[arg(long = "arg", value_name = "NAME=VALUE")]
    args: Vec<String>,
    /// The manifest to read (as `boxr -f FILE`)
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

impl ArgOverrides {
    fn map(&self) -> Result<BTreeMap<String, String>, Bad> {
        let mut out = BTreeMap::new();
        for a in &self.args {
            let (k, v) = match a.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => match std::env::var(a) {
                    Ok(v) => (a.clone(), v),
                    Err(_) => continue,
                },
            };
            if k.is_empty() {
                return Err(Bad::new(
                    format!("--arg {a}: the name is empty"),
                    Some("write --arg NAME=VALUE"),
                ));
            }
            out.insert(k, v);
        }
        Ok(out)
    }

    /// Rejects overrides of args the manifest does not declare.
    fn check_used(
        &self,
        map: &BTreeMap<String, String>,
        m: &crate::manifest::Manifest,
    ) -> Result<(), Bad> {
        for k in map.keys() {
            if !m.args.iter().any(|a| a.name.value == *k) {
                let names = m.args.iter().map(|a| a.name.value.as_str());
                let hint = crate::values::suggest(k, names).map(|s| format!("did you mean `{s}`?"));
                return Err(Bad::new(
                    format!("--arg {k}: {} declares no `arg \"{k}\"`", m.name),
                    hint.as_deref(),
                ));
            }
        }
        Ok(())
    }
}

/// Runs boxr with the process's arguments and returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                exit::FAILED
            } else {
                exit::OK
            };
            let _ = e.print();
            return code;
        }
    };
    let mut settings = Settings::resolve(&cli);
    // An unprivileged boxr works in its user namespace (see `rootless`): joined first, while
    // this process is single-threaded.
    if !matches!(cli.command, Commands::Completions { .. }) {
        match crate::rootless::enter() {
            Ok(Some(m)) if m.is_single() => settings.printer.note(
                "boxr: warning: no subordinate ids for this user in /etc/subuid and /etc/subgid: \
                 only your user is mapped (to root) in containers; files of other owners in \
                 images become root's and changing owners fails (add a range: `usermod \
                 --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)",
            ),
            Ok(_) => {}
            Err(e) => return fail_with(&settings.printer, &e),
        }
    }
    // `boxr build -f FILE` as well as `boxr -f FILE build`.
    let sub_file = match &cli.command {
        Commands::Check(a) => a.overrides().file.clone(),
        Commands::Plan(a) => a.overrides().file.clone(),
        Commands::Build(a) => a.overrides().file.clone(),
        Commands::Up(a) => a.project().file(),
        Commands::Down(a) => a.project().file(),
        Commands::Stack(c) => c.project().file(),
        _ => None,
    };
    if let Some(f) = sub_file {
        settings.file = f;
    }
    match &cli.command {
        Commands::Check(args) => check::run(args, &settings),
        Commands::Plan(args) => plan::run(args, &settings),
        Commands::Build(args) => build::run(args, &settings),
        Commands::Run(args) => run::run(args, &settings),
        Commands::Exec(args) => run::exec(args, &settings),
        Commands::Ps(args) => containers::ps(args, &settings),
        Commands::Logs(args) => containers::logs(args, &settings),
        Commands::Stop(args) => containers::stop(args, &settings),
        Commands::Start(args) => containers::start(args, &settings),
        Commands::Restart(args) => containers::restart(args, &settings),
        Commands::Attach(args) => containers::attach(args, &settings),
        Commands::Kill(args) => containers::kill(args, &settings),
        Commands::Pause(args) => containers::pause(args, &settings, true),
        Commands::Top(args) => observe::top(args, &settings),
        Commands::Port(args) => observe::port(args, &settings),
        Commands::Events(args) => observe::events(args, &settings),
        Commands::Stats(args) => observe::stats(args, &settings),
        Commands::Unpause(args) => containers::pause(args, &settings, false),
        Commands::Rm(args) => containers::rm(args, &settings),
        Commands::Wait(args) => containers::wait(args, &settings),
        Commands::Create(args) => run::create(args, &settings),
        Commands::Update(args) => containers::update(args, &settings),
        Commands::Rename(args) => containers::rename(args, &settings),
        Commands::Export(args) => changes::export(args, &settings),
        Commands::Commit(args) => changes::commit(args, &settings),
        Commands::Cp(args) => changes::cp(args, &settings),
        Commands::Diff(args) => changes::diff(args, &settings),
        Commands::Import(args) => images::import(args, &settings),
        Commands::Images(args) => images::images(args, &settings),
        Commands::Inspect(args) => images::inspect(args, &settings),
        Commands::Tag(args) => images::tag(args, &settings),
        Commands::History(args) => images::history(args, &settings),
        Commands::Save(args) => images::save(args, &settings),
        Commands::Load(args) => images::load(args, &settings),
        Commands::Rmi(args) => images::rmi(args, &settings),
        Commands::Pull(args) => registry::pull(args, &settings),
        Commands::Push(args) => registry::push(args, &settings),
        Commands::Login(args) => registry::login(args, &settings),
        Commands::Logout(args) => registry::logout(args, &settings),
        Commands::Gc(args) => images::gc(args, &settings),
        Commands::Info(args) => info::run(args, &settings),
        Commands::Volume(cmd) => images::volume(cmd, &settings),
        Commands::Network(cmd) => network::network(cmd, &settings),
        Commands::Up(args) => stack::up(args, &settings),
        Commands::Down(args) => stack::down(args, &settings),
        Commands::Stack(cmd) => stack::command(cmd, &settings),
        Commands::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "boxr", &mut buf);
            settings.printer.data(String::from_utf8_lossy(&buf));
            exit::OK
        }
    }
}

/// Prints a one-line error for a failure that has no diagnostic of its own.
fn fail(printer: &Printer, message: &str) -> i32 {
    printer.diagnostic(&miette::MietteDiagnostic::new(message));
    exit::FAILED
}

/// Prints a failure that has its own diagnostic.
fn fail_with(printer: &Printer, diag: &dyn miette::Diagnostic) -> i32 {
    printer.diagnostic(diag);
    exit::of(diag)
}

/// Loads the manifest, printing diagnostics on failure. `Err` carries the exit code.
fn load_manifest(
    settings: &Settings,
    overrides: &ArgOverrides,
) -> Result<crate::manifest::Manifest, i32> {
    let map = overrides
        .map()
        .map_err(|b| fail_with(&settings.printer, &b))?;
    let started = std::time::Instant::now();
    match crate::manifest::load(&settings.file, &map) {
        Ok(m) => {
            settings.printer.verbose(format!(
                "read {} ({} bytes, {} args, {} images, {} services) in {:.1} ms",
                m.name,
                m.source.len(),
                m.args.len(),
                m.images.len(),
                m.services.len(),
                started.elapsed().as_secs_f64() * 1e3
            ));
            overrides
                .check_used(&map, &m)
                .map_err(|b| fail_with(&settings.printer, &b))?;
            Ok(m)
        }
        Err(crate::manifest::LoadError::Invalid(errs)) => {
            settings.printer.diagnostic(errs.as_ref());
            Err(exit::INVALID)
        }
        Err(e) => {
            settings.printer.diagnostic(&e);
            Err(exit::FAILED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
