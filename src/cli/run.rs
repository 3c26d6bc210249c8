//! `boxr run`, and the hidden entry points of the sandbox helper and init.

use std::path::PathBuf;

use super::registry::{TlsArgs, ensure_image};
use super::{Settings, fail_with};
use crate::builder::bases::Pull;
use crate::container::{self, Network, RunOptions};
use crate::sandbox::NetworkMode;
use crate::store::{Access, Store};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Remove the container when it exits
    #[arg(long)]
    rm: bool,
    /// Run in the background under a monitor and print the container's id
    #[arg(short, long)]
    detach: bool,
    /// A name for the container (unique)
    #[arg(long)]
    name: Option<String>,
    /// Restart policy of a detached container: no, on-failure[:N], always, unless-stopped
    #[arg(long, value_name = "POLICY")]
    restart: Option<String>,
    /// Log options of a detached container: max-size=SIZE (rotate past it), max-file=N
    #[arg(long, value_name = "KEY=VALUE")]
    log_opt: Vec<String>,
    /// A user namespace: `auto` maps the container's ids 0-65535 to the range /etc/subuid
    /// gives root (else 100000-165535); `host` (the default) uses none
    #[arg(long, value_name = "MODE")]
    userns: Option<String>,
    /// A user namespace with this uid map, CONTAINER:HOST:SIZE (repeatable)
    #[arg(long, value_name = "MAP")]
    uidmap: Vec<String>,
    /// Its gid map, CONTAINER:HOST:SIZE (default: the uid map)
    #[arg(long, value_name = "MAP")]
    gidmap: Vec<String>,
    /// A program to run once the container's namespaces exist, before its command starts, with
    /// the OCI state on stdin and BOXR_PID set (repeatable; a failing hook stops the start)
    #[arg(long, value_name = "PATH")]
    hook: Vec<String>,
    /// Keep stdin open (otherwise the command reads /dev/null)
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass boxr's own)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long = "env-file", value_name = "FILE")]
    env_file: Vec<PathBuf>,
    /// Working directory inside the container
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: USER[:GROUP], names or numeric ids
    #[arg(short, long)]
    user: Option<String>,
    /// Container host name (default: the first 12 digits of its id)
    #[arg(long, value_parser = super::network::parse_alias)]
    hostname: Option<String>,
    /// Network: a bridge network (`bridge`, the default, as Docker's, or one of `boxr network
    /// create`), none (only loopback), host, container:NAME (share a running container's), or
    /// ns:PATH (join an existing network namespace). Given again, more bridge networks: the
    /// container is on each (eth0 on the first, which has the default route, then eth1, …)
    #[arg(long, default_value = "bridge", value_parser = parse_network)]
    network: Vec<Network>,
    /// A fixed IPv4 address on the bridge network
    #[arg(long, value_name = "IP")]
    ip: Option<String>,
    /// Publish a container's port on the host: [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp],
    /// ports or ranges (e.g. 8080:80, 127.0.0.1::80, [::1]:53:53/udp, 8000-8010:8000-8010)
    #[arg(short = 'p', long, value_name = "PORTS", value_parser = check_publish)]
    publish: Vec<String>,
    /// Publish every port the image exposes, each on a free host port
    #[arg(short = 'P', long)]
    publish_all: bool,
    /// Another name the container answers to on its network's resolver
    #[arg(long, value_name = "NAME", value_parser = super::network::parse_alias)]
    network_alias: Vec<String>,
    /// Run boxr's init as PID 1 (reaps zombies, forwards signals); --init=false runs the command as PID 1
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    init: bool,
    /// Overwrite the image's entrypoint ("" clears it)
    #[arg(long)]
    entrypoint: Option<String>,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    read_only: bool,
    /// Bind-mount a host path: /host/path:/container/path[:ro]
    #[arg(short, long = "volume", value_name = "SRC:DST[:ro]")]
    volume: Vec<String>,
    /// Add a capability (with or without CAP_, any case, or ALL)
    #[arg(long, value_name = "CAP")]
    cap_add: Vec<String>,
    /// Drop a capability (with or without CAP_, any case, or ALL)
    #[arg(long, value_name = "CAP")]
    cap_drop: Vec<String>,
    /// Give the container every capability boxr has and no masked paths (dangerous)
    #[arg(long)]
    privileged: bool,
    /// Security options: no-new-privileges[=true|false], seccomp=unconfined
    #[arg(long, value_name = "OPT")]
    security_opt: Vec<String>,
    /// Set a resource limit: NAME=SOFT[:HARD] (nofile, nproc, core, ...)
    #[arg(long, value_name = "NAME=SOFT[:HARD]")]
    ulimit: Vec<String>,
    /// Mount a tmpfs: /path[:options]
    #[arg(long, value_name = "PATH[:OPTIONS]")]
    tmpfs: Vec<String>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Add a line to /etc/hosts: NAME:IP
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_host: Vec<String>,
    /// A nameserver for /etc/resolv.conf instead of the host's
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// A search domain for /etc/resolv.conf instead of the host's (`.`: none)
    #[arg(long = "dns-search", value_name = "DOMAIN")]
    dns_search: Vec<String>,
    /// An option for /etc/resolv.conf instead of the host's
    #[arg(long = "dns-option", value_name = "OPTION")]
    dns_option: Vec<String>,
    /// The size of /dev/shm (default 64m)
    #[arg(long = "shm-size", value_name = "SIZE")]
    shm_size: Option<String>,
    /// A kernel parameter of the container's own namespaces: net.*, kernel.shm*, ...
    #[arg(long, value_name = "NAME=VALUE")]
    sysctl: Vec<String>,
    /// A supplementary group for the command (name or id)
    #[arg(long = "group-add", value_name = "GROUP")]
    group_add: Vec<String>,
    /// The signal `boxr stop` sends first (default: the image's, else SIGTERM)
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    stop_signal: Option<String>,
    /// Seconds `boxr stop` waits before SIGKILL (default 10)
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    stop_timeout: Option<u64>,
    /// A health check, run by /bin/sh -c in the container (detached containers)
    #[arg(long = "health-cmd", value_name = "COMMAND")]
    health_cmd: Option<String>,
    /// Time between health checks (default 30s)
    #[arg(long = "health-interval", value_name = "DURATION")]
    health_interval: Option<String>,
    /// Time a health check may take (default 30s)
    #[arg(long = "health-timeout", value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Time after the start when failed checks do not count (default 0s)
    #[arg(long = "health-start-period", value_name = "DURATION")]
    health_start_period: Option<String>,
    /// Time between health checks during the start period (default: the interval)
    #[arg(long = "health-start-interval", value_name = "DURATION")]
    health_start_interval: Option<String>,
    /// Failures in a row that make the container unhealthy (default 3)
    #[arg(long = "health-retries", value_name = "N")]
    health_retries: Option<u32>,
    /// No health check, whatever the image says
    #[arg(long = "no-healthcheck")]
    no_healthcheck: bool,
    /// PID namespace: host, or container:NAME (default: its own)
    #[arg(long, value_name = "MODE")]
    pid: Option<String>,
    /// IPC namespace and /dev/shm: host, container:NAME, or private/shareable (its own)
    #[arg(long, value_name = "MODE")]
    ipc: Option<String>,
    /// UTS namespace (the hostname): host (default: its own)
    #[arg(long, value_name = "MODE")]
    uts: Option<String>,
    /// How readily the OOM killer picks the container's processes (-1000 to 1000)
    #[arg(long = "oom-score-adj", value_name = "N", allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-1000..=1000))]
    oom_score_adj: Option<i32>,
    /// Write the container's id to this file (which must not exist)
    #[arg(long, value_name = "FILE")]
    cidfile: Option<PathBuf>,
    /// A mount in docker's syntax: type=bind|volume|tmpfs,source=...,target=...[,readonly]
    #[arg(long = "mount", value_name = "FIELDS")]
    mount: Vec<String>,
    /// A label: KEY=VALUE (after the image's)
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    label: Vec<String>,
    /// Labels from a file of KEY=VALUE lines
    #[arg(long = "label-file", value_name = "FILE")]
    label_file: Vec<PathBuf>,
    /// A host device for the container: HOST[:CONTAINER][:PERMS] (PERMS of r, w, m; default rwm)
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:PERMS]")]
    device: Vec<String>,
    /// When to pull the image from its registry
    #[arg(long, value_enum, default_value_t = Pull::Missing, value_name = "POLICY")]
    pull: Pull,
    #[command(flatten)]
    tls: TlsArgs,
    /// The image: NAME[:TAG] or an id
    image: String,
    /// The command and its arguments (default: the image's)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// The resource limit flags of `run` (and `update`, less `--hugetlb`).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Memory limit (e.g. 256m, 1g)
    #[arg(short = 'm', long, allow_hyphen_values = true, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap; default: as much swap as memory)
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Soft memory limit
    #[arg(long, allow_hyphen_values = true, value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// CPUs of time the container may use (e.g. 0.5)
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub cpus: Option<f64>,
    /// Relative CPU weight (default 1024)
    #[arg(short = 'c', long, allow_hyphen_values = true, value_name = "N")]
    pub cpu_shares: Option<u64>,
    /// CPUs the container may run on (e.g. 0-3, 0,2)
    #[arg(long, allow_hyphen_values = true, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block I/O weight (10-1000)
    #[arg(long, allow_hyphen_values = true, value_name = "N")]
    pub blkio_weight: Option<u16>,
    /// Read rate limit for a device: DEVICE:RATE (e.g. /dev/sda:1mb)
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_read_bps: Vec<String>,
    /// Write rate limit for a device: DEVICE:RATE
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
    /// Huge page limit: PAGESIZE=LIMIT (e.g. 2MB=64MiB)
    #[arg(long, value_name = "PAGESIZE=LIMIT")]
    pub hugetlb: Vec<String>,
}

impl LimitArgs {
    pub fn options(&self) -> container::LimitOptions {
        container::LimitOptions {
            memory: self.memory.clone(),
            memory_swap: self.memory_swap.clone(),
            memory_reservation: self.memory_reservation.clone(),
            cpus: self.cpus,
            cpu_shares: self.cpu_shares,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            pids_limit: self.pids_limit,
            blkio_weight: self.blkio_weight,
            device_read_bps: self.device_read_bps.clone(),
            device_write_bps: self.device_write_bps.clone(),
            hugetlb: self.hugetlb.clone(),
        }
    }
}

/// clap's check of a `-p` value (the value stays text: `RunOptions` expands it).
fn check_publish(s: &str) -> Result<String, crate::values::Bad> {
    crate::net::ports::parse(s).map(|_| s.to_owned())
}

fn parse_network(s: &str) -> Result<Network, crate::values::Bad> {
    match s {
        "none" => Ok(Network::Mode(NetworkMode::None)),
        "host" => Ok(Network::Mode(NetworkMode::Host)),
        _ => match (s.strip_prefix("ns:"), s.strip_prefix("container:")) {
            (Some(p), _) if p.starts_with('/') => Ok(Network::Mode(NetworkMode::Join(p.into()))),
            (_, Some(c)) if !c.is_empty() => Ok(Network::Container(c.to_owned())),
            _ if !s.is_empty() && !s.contains(':') && !s.contains('/') => {
                Ok(Network::Named(s.to_owned()))
            }
            // clap shows the reason alone: it says what to write.
            _ => Err(crate::values::Bad::new(
                "use none, host, NETWORK, container:NAME or ns:/path/to/netns",
                None,
            )),
        },
    }
}

pub fn run(args: &RunArgs, settings: &Settings) -> i32 {
    let store = match Store::open(&settings.root, Access::Shared) {
        Ok(s) => s,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    if let Err(code) = ensure_image(&store, &args.image, args.pull, &args.tls, &settings.printer) {
        return code;
    }
    let opts = options(args);
    if args.restart.as_deref().is_some_and(|r| r != "no") && !args.detach {
        return super::fail(
            &settings.printer,
            "--restart needs -d: a restart policy is applied by a detached container's monitor",
        );
    }
    if args.detach {
        return print_id(container::run_detached(&store, &opts), settings);
    }
    // On success this process becomes the container's helper and returns here only when it
    // holds the container's published ports.
    match container::run(&store, &opts) {
        Ok(code) => code,
        // Docker's rule for `run`: 125 for every failure of its own, whatever is missing.
        Err(e) => {
            settings.printer.diagnostic(&e);
            e.exit_code()
        }
    }
}

/// `boxr create`: `run`'s options (the container is detached when started); prints the id.
pub fn create(args: &RunArgs, settings: &Settings) -> i32 {
    let store = match Store::open(&settings.root, Access::Shared) {
        Ok(s) => s,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    if let Err(code) = ensure_image(&store, &args.image, args.pull, &args.tls, &settings.printer) {
        return code;
    }
    let mut opts = options(args);
    opts.detach = true;
    print_id(container::create_only(&store, &opts), settings)
}

fn print_id(r: Result<String, container::ContainerError>, settings: &Settings) -> i32 {
    match r {
        Ok(id) => {
            settings.printer.data(format!("{id}\n"));
            super::exit::OK
        }
        Err(e) => {
            settings.printer.diagnostic(&e);
            e.exit_code()
        }
    }
}

fn options(args: &RunArgs) -> RunOptions {
    RunOptions {
        image: args.image.clone(),
        command: args.command.clone(),
        entrypoint: args.entrypoint.clone(),
        env: args.env.clone(),
        env_files: args.env_file.clone(),
        workdir: args.workdir.clone(),
        user: args.user.clone(),
        hostname: args.hostname.clone(),
        network: args.network.first().cloned(),
        more_networks: args.network.iter().skip(1).cloned().collect(),
        ip: args.ip.clone(),
        init: args.init,
        remove: args.rm,
        read_only: args.read_only,
        volumes: args.volume.clone(),
        tmpfs: args.tmpfs.clone(),
        interactive: args.interactive,
        ulimits: args.ulimit.clone(),
        tty: args.tty,
        cap_add: args.cap_add.clone(),
        cap_drop: args.cap_drop.clone(),
        privileged: args.privileged,
        security_opt: args.security_opt.clone(),
        limits: args.limits.options(),
        detach: args.detach,
        name: args.name.clone(),
        restart: args.restart.clone(),
        log_opts: args.log_opt.clone(),
        userns: args.userns.clone(),
        uidmaps: args.uidmap.clone(),
        gidmaps: args.gidmap.clone(),
        hooks: args.hook.clone(),
        add_hosts: args.add_host.clone(),
        publish: args
            .publish
            .iter()
            .flat_map(|p| crate::net::ports::parse(p).unwrap_or_default())
            .collect(),
        publish_all: args.publish_all,
        network_aliases: args.network_alias.clone(),
        dns: args.dns.clone(),
        dns_search: args.dns_search.clone(),
        dns_options: args.dns_option.clone(),
        shm_size: args.shm_size.clone(),
        sysctls: args.sysctl.clone(),
        group_add: args.group_add.clone(),
        stop_signal: args.stop_signal.clone(),
        stop_timeout: args.stop_timeout,
        health: container::health::HealthOptions {
            cmd: args.health_cmd.clone(),
            interval: args.health_interval.clone(),
            timeout: args.health_timeout.clone(),
            start_period: args.health_start_period.clone(),
            start_interval: args.health_start_interval.clone(),
            exec: None,
            retries: args.health_retries,
            disable: args.no_healthcheck,
        },
        devices: args.device.clone(),
        mounts: args.mount.clone(),
        oom_score_adj: args.oom_score_adj,
        cidfile: args.cidfile.clone(),
        labels: args.label.clone(),
        label_files: args.label_file.clone(),
        pid: args.pid.clone(),
        ipc: args.ipc.clone(),
        uts: args.uts.clone(),
    }
}

#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep stdin attached
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal (a pty of the container's own)
    #[arg(short, long)]
    tty: bool,
    /// Set environment variables (KEY=VALUE, or KEY to pass boxr's own)
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// User to run as: USER[:GROUP] (default: the container's)
    #[arg(short, long)]
    user: Option<String>,
    /// Working directory (default: the container's)
    #[arg(short, long, value_name = "DIR")]
    workdir: Option<String>,
    /// Start the command in the background and return
    #[arg(short, long)]
    detach: bool,
    /// The container: name, id or unique id prefix
    container: String,
    /// The command and its arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

/// `boxr exec`: on success this process becomes the command's helper.
pub fn exec(args: &ExecArgs, settings: &Settings) -> i32 {
    let store = match Store::open(&settings.root, Access::Shared) {
        Ok(s) => s,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    let opts = container::ExecOptions {
        container: args.container.clone(),
        command: args.command.clone(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        interactive: args.interactive,
        tty: args.tty,
    };
    if args.detach {
        return match container::exec_detached(&store, &opts) {
            Ok(()) => super::exit::OK,
            Err(e) => fail_with(&settings.printer, &e),
        };
    }
    let e = container::exec(&store, &opts);
    fail_with(&settings.printer, &e)
}
