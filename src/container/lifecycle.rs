//! Starting, stopping and attaching to containers through their monitor's control socket
//! (`boxr start`, `stop`, `restart`, `attach`). A container whose monitor is gone (killed, or
//! the machine rebooted) is stopped with signals, as before a monitor existed.

use std::fs;
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use serde_json::Value;

use super::control::{Request, frame};
use super::monitor::{self, MonitorSpec};
use super::record::Record;
use super::state::{self, Info, Status};
use super::{ContainerError, invalid};
use crate::sandbox::{SandboxSpec, term};

/// Connects to the container's monitor, if it runs.
fn connect(info: &Info) -> Option<UnixStream> {
    let s = state::read_state(info)?;
    if !s.monitor_alive() {
        return None;
    }
    // Through the directory's descriptor: the socket's full path may be too long for an
    // address.
    let dir = fs::File::open(&info.dir).ok()?;
    let path = format!("/proc/self/fd/{}/{}", dir.as_raw_fd(), monitor::SOCKET);
    UnixStream::connect(path).ok()
}

/// Sends one request line; the connection stays open for the answer.
fn request(info: &Info, line: &str) -> Option<UnixStream> {
    let mut s = connect(info)?;
    s.write_all(format!("{line}\n").as_bytes()).ok()?;
    Some(s)
}

/// The monitor's `status` answer.
fn monitor_status(info: &Info) -> Option<Value> {
    let s = request(info, &Request::Status.line())?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).ok()?;
    serde_json::from_str(&line).ok()
}

/// Sends `sig` to the container's init; false if it does not run.
pub fn signal(info: &Info, sig: Signal) -> Result<bool, ContainerError> {
    signal_number(info, sig as i32)
}

/// Sends signal number `signo` (real-time ones included) to the container's init; false if it
/// does not run.
pub fn signal_number(info: &Info, signo: i32) -> Result<bool, ContainerError> {
    let Some(pid) = state::live_pid(&info.dir) else {
        return Ok(false);
    };
    // A frozen process handles no signal: thaw it first (as Docker does for stop and kill).
    if state::paused(info) {
        state::set_paused(info, false)?;
    }
    match crate::sandbox::send_signal(pid, signo) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => Ok(false),
        Err(e) => Err(invalid(
            format!("cannot signal {}: {e}", &info.id[..12]),
            None,
        )),
    }
}

/// Waits until the container no longer runs and its end is recorded; false on timeout.
pub fn wait_exit(info: &Info, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let running = matches!(
            state::status(info),
            Status::Running { .. } | Status::Restarting { .. }
        );
        // A detached container's monitor records the end (or that its restart policy starts
        // it again) a moment after the init is gone: until it has, the end is not known.
        if !running
            && !state::read_state(info)
                .is_some_and(|s| s.status.as_deref() != Some("exited") && s.monitor_alive())
        {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `boxr stop`: the container's stop signal, SIGKILL after `timeout` (default: the
/// container's stop timeout, else 10 s); the restart policy leaves it down.
pub fn stop(info: &Info, timeout: Option<Duration>) -> Result<(), ContainerError> {
    let timeout = timeout.unwrap_or_else(|| Duration::from_secs(info.stop_timeout.unwrap_or(10)));
    let stop_signal = info.stop_signal.unwrap_or(Signal::SIGTERM as i32);
    state::mark_stopped(info);
    if state::paused(info) {
        state::set_paused(info, false)?;
    }
    let req = Request::Stop {
        timeout,
        signal: stop_signal,
    }
    .line();
    if let Some(s) = request(info, &req) {
        // The monitor answers with the exit code once the end is recorded.
        let mut line = String::new();
        if std::io::BufReader::new(s).read_line(&mut line).is_ok() && !line.is_empty() {
            return Ok(());
        }
    }
    if signal_number(info, stop_signal)? && !wait_exit(info, Some(timeout)) {
        signal(info, Signal::SIGKILL)?;
        wait_exit(info, None);
    }
    Ok(())
}

/// A container's monitor spec: the one it was started with, or (for a container first run
/// in the foreground) one made from its sandbox spec.
fn monitor_spec(info: &Info) -> Result<MonitorSpec, ContainerError> {
    if let Ok(b) = fs::read(info.dir.join("monitor.json"))
        && let Ok(ms) = serde_json::from_slice::<MonitorSpec>(&b)
    {
        return Ok(ms);
    }
    let path = info.dir.join("spec.json");
    let mut spec: SandboxSpec = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid(format!("cannot read {}", path.display()), None))?;
    spec.keep_fd = None;
    if let Some(mut r) = Record::of(&spec) {
        r.remove.clear();
        r.set(&mut spec);
    }
    let ms = MonitorSpec {
        dir: info.dir.clone(),
        runtime: crate::sandbox::binary()?,
        tty: spec.process.tty,
        stdin: spec.process.stdin,
        sandbox: serde_json::to_value(detached(spec, &info.dir)).expect("serializes"),
        name_file: None,
        restart: Default::default(),
        log_max_size: None,
        log_max_files: 1,
        hold: false,
        health: None,
    };
    Ok(ms)
}

/// The spec of a sandbox that runs under a monitor.
pub(super) fn detached(mut spec: SandboxSpec, dir: &std::path::Path) -> SandboxSpec {
    spec.die_with_parent = false;
    spec.detach = true;
    // Its end goes to the monitor, which folds it into the state.
    if let Some(mut r) = Record::of(&spec) {
        r.end_file = Some(dir.join(state::EXIT));
        r.set(&mut spec);
    }
    spec
}

/// `boxr start`: runs a stopped container again, detached, with its own filesystem.
pub fn start(info: &Info) -> Result<(), ContainerError> {
    start_with(info, false)
}

/// `boxr start -a`: starts the container with this process attached from its first byte of
/// output (the monitor holds the start until the attach request), and returns its exit code.
pub fn start_attached(info: &Info, opts: &AttachOptions) -> Result<i32, ContainerError> {
    if matches!(state::status(info), Status::Running { .. }) {
        return attach(info, opts);
    }
    start_with(info, true)?;
    attach(info, opts)
}

fn start_with(info: &Info, hold: bool) -> Result<(), ContainerError> {
    match state::status(info) {
        Status::Running { .. } => return Ok(()),
        Status::Restarting { .. } => {
            return Err(invalid(
                format!("container {} is restarting", &info.id[..12]),
                Some("it comes back by itself; `boxr stop` it first to start it by hand"),
            ));
        }
        _ => {}
    }
    let mut ms = monitor_spec(info)?;
    ms.hold = hold;
    let _ = fs::remove_file(info.dir.join("stopped"));
    super::start_monitor(&ms).map(|_| ())
}

/// `boxr restart`: stop (if it runs), then start.
pub fn restart(info: &Info, timeout: Option<Duration>) -> Result<(), ContainerError> {
    if matches!(
        state::status(info),
        Status::Running { .. } | Status::Restarting { .. }
    ) {
        stop(info, timeout)?;
    }
    start(info)
}

/// `boxr attach` options.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// Do not send the terminal's input (`--no-stdin`).
    pub no_stdin: bool,
    /// Forward SIGINT and SIGTERM to the container (`--sig-proxy`, the default).
    pub sig_proxy: bool,
}

/// `boxr attach`: the container's output from now on (and input, if it was started with
/// `-i`), until it exits (its exit code) or the user detaches with Ctrl-P Ctrl-Q (0).
pub fn attach(info: &Info, opts: &AttachOptions) -> Result<i32, ContainerError> {
    let not_running = || invalid(format!("container {} is not running", &info.id[..12]), None);
    let st = monitor_status(info).ok_or_else(not_running)?;
    // `created`: the monitor holds the start for this attach (`start -a`), or it is starting.
    if st["Status"] != "running" && st["Status"] != "created" {
        return Err(not_running());
    }
    let tty = st["Tty"].as_bool().unwrap_or(false);
    let send_stdin = st["OpenStdin"].as_bool().unwrap_or(false) && !opts.no_stdin;
    let mut sock =
        request(info, &Request::Attach { stdin: send_stdin }.line()).ok_or_else(not_running)?;
    let stdin = std::io::stdin();
    let _raw = (tty && send_stdin && term::size(&stdin).is_some()).then(term::RawMode::enter);
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGWINCH);
    if opts.sig_proxy && !tty {
        signals.add(Signal::SIGINT);
        signals.add(Signal::SIGTERM);
    }
    signals
        .thread_block()
        .map_err(|e| invalid(format!("cannot block signals: {}", e.desc()), None))?;
    let sigfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| invalid(format!("signalfd: {}", e.desc()), None))?;
    let send_size = |sock: &mut UnixStream| {
        if tty && let Some((rows, cols)) = term::size(&std::io::stdin()) {
            let _ = sock.write_all(&frame::resize(rows, cols));
        }
    };
    send_size(&mut sock);
    let mut stdin_open = send_stdin;
    let mut input = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    // Ctrl-P seen last: with Ctrl-Q next, the user detaches.
    let mut ctrl_p = false;
    loop {
        let (sock_ready, stdin_ready, sig_ready) = {
            let mut fds = vec![
                PollFd::new(sock.as_fd(), PollFlags::POLLIN),
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
            ];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(invalid(format!("poll: {}", e.desc()), None)),
            }
            let r = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (r(0), r(2), r(1))
        };
        if sock_ready {
            let n = sock.read(&mut buf).unwrap_or(0);
            if n == 0 {
                // The monitor is gone without a word: the container's recorded end, if any.
                return Ok(match state::status(info) {
                    Status::Exited { code, .. } => code.unwrap_or(125),
                    _ => 125,
                });
            }
            input.extend_from_slice(&buf[..n]);
            while let Some((kind, payload)) = frame::decode(&mut input) {
                match kind {
                    frame::STDOUT => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&payload);
                        let _ = out.flush();
                    }
                    frame::STDERR => {
                        let _ = std::io::stderr().write_all(&payload);
                    }
                    frame::EXIT => {
                        return Ok(String::from_utf8_lossy(&payload).parse().unwrap_or(125));
                    }
                    _ => {}
                }
            }
        }
        if stdin_ready {
            let n = stdin.lock().read(&mut buf).unwrap_or(0);
            if n == 0 {
                stdin_open = false;
                let _ = sock.write_all(&frame::encode(frame::STDIN_EOF, b""));
            } else {
                let mut data = &buf[..n];
                let mut detach = false;
                if tty {
                    for (i, &b) in data.iter().enumerate() {
                        if ctrl_p && b == 0x11 {
                            // What came before Ctrl-P Ctrl-Q still goes to the container.
                            data = &data[..i.saturating_sub(1)];
                            detach = true;
                            break;
                        }
                        ctrl_p = b == 0x10;
                    }
                }
                if !data.is_empty() && sock.write_all(&frame::encode(frame::STDIN, data)).is_err() {
                    stdin_open = false;
                }
                if detach {
                    return Ok(0);
                }
            }
        }
        if sig_ready {
            while let Ok(Some(s)) = sigfd.read_signal() {
                match Signal::try_from(s.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => send_size(&mut sock),
                    Ok(other) => {
                        let _ = signal(info, other);
                    }
                    Err(_) => {}
                }
            }
        }
    }
}

/// `boxr rm [-f]`: removes a container (killing it first with `force`): its cgroup (when no
/// monitor is left to remove it), its name, its directory (upper dir and all).
pub fn remove(
    store: &crate::store::Store,
    info: &Info,
    force: bool,
    volumes: bool,
) -> Result<(), ContainerError> {
    if matches!(
        state::status(info),
        Status::Running { .. } | Status::Restarting { .. }
    ) {
        if !force {
            return Err(invalid(
                format!("container {} is running", &info.id[..12]),
                Some("stop it first, or use rm -f"),
            ));
        }
        state::mark_stopped(info);
        let _ = signal(info, Signal::SIGKILL);
        wait_exit(info, Some(Duration::from_secs(10)));
    } else {
        wait_exit(info, Some(Duration::from_secs(2)));
    }
    // Its monitor exits a moment after it recorded the end: `rm` returns once nothing of the
    // container runs (a monitor whose container is removed under it would be a leak).
    let deadline = Instant::now() + Duration::from_secs(2);
    while state::read_state(info).is_some_and(|s| s.monitor_alive()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    // A live monitor has removed the cgroup when it recorded the end; without one (killed,
    // or gone with a reboot), nobody has.
    if !state::read_state(info).is_some_and(|s| s.monitor_alive())
        && let Some(cg) = state::cgroup(info)
    {
        cg.destroy()?;
        let _ = fs::remove_file(store.journal_entry("cgroup", &info.id));
    }
    // `-v`: its anonymous volumes go with it (named volumes stay, as Docker's).
    let anonymous: Vec<String> = if volumes {
        fs::read(info.dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|c| serde_json::from_value(c["AnonymousVolumes"].clone()).ok())
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    state::release_name(store, info);
    // Its network namespace is a mount point in its directory.
    crate::net::release(store, &info.id)?;
    crate::store::remove_dir_tree(&info.dir)?;
    for n in &anonymous {
        let _ = store.remove_volume(n);
    }
    super::events::record(
        store.root(),
        "destroy",
        &info.id,
        serde_json::json!({"name": info.name}),
    );
    Ok(())
}

/// `boxr update`: new limits for a container, written to its cgroup at once if it runs and
/// kept for its next starts, and a new restart policy (`restart`) its monitor applies from the
/// next end on. Only what is given changes; the devices allowlist stays.
pub fn update(
    info: &Info,
    opts: &super::LimitOptions,
    restart: Option<&str>,
) -> Result<(), ContainerError> {
    let restart = restart
        .map(|r| {
            crate::values::parse_restart(r)
                .map_err(|b| invalid(format!("--restart {r}: {}", b.reason), b.help.as_deref()))
        })
        .transpose()?;
    if let Some(r) = &restart {
        let ms = fs::read(info.dir.join("monitor.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<MonitorSpec>(&b).ok())
            .ok_or_else(|| {
                invalid(
                    "--restart: only a detached container (`run -d`) has a restart policy",
                    None,
                )
            })?;
        let removes = serde_json::from_value::<SandboxSpec>(ms.sandbox.clone())
            .ok()
            .and_then(|s| Record::of(&s))
            .is_some_and(|r| r.removes());
        if removes && *r != crate::values::RestartPolicy::No {
            return Err(invalid(
                "--restart and --rm do not go together",
                Some("a container that is removed when it exits cannot be restarted"),
            ));
        }
    }
    let spec_path = info.dir.join("spec.json");
    let mut spec: SandboxSpec = fs::read(&spec_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid(format!("cannot read {}", spec_path.display()), None))?;
    let Some(cg) = spec.cgroup.as_mut() else {
        return Err(invalid("the container has no cgroup", None));
    };
    let old = cg.limits.clone();
    // `--memory-swap` is memory plus swap: checked against the memory limit it will have.
    let mut opts = opts.clone();
    if opts.memory_swap.is_some() && opts.memory.is_none() {
        opts.memory = old.memory.map(|m| m.to_string());
    }
    // Privileged: no devices allowlist is made, so the container's stays as it is.
    let new = super::limits(&opts, true)?;
    if new == crate::sandbox::cgroup::Limits::default() && restart.is_none() {
        return Err(invalid(
            "nothing to update: give a limit (--memory, --cpus, --pids-limit, ...) or --restart",
            None,
        ));
    }
    if new.memory.is_some()
        && opts.memory_swap.is_none()
        && let (Some(s), Some(m)) = (old.memory_swap, new.memory)
        && s != -1
        && (m as i64) > s
    {
        return Err(invalid(
            "--memory is above the container's --memory-swap (memory plus swap)",
            Some("update --memory-swap at the same time"),
        ));
    }
    let mut merged = old.clone();
    macro_rules! take {
        ($($field:ident),*) => {$(
            if new.$field.is_some() {
                merged.$field = new.$field.clone();
            }
        )*};
    }
    take!(
        memory,
        memory_swap,
        memory_reservation,
        cpus,
        cpu_shares,
        cpuset_cpus,
        cpuset_mems,
        pids,
        blkio_weight
    );
    if !new.device_read_bps.is_empty() {
        merged.device_read_bps = new.device_read_bps.clone();
    }
    if !new.device_write_bps.is_empty() {
        merged.device_write_bps = new.device_write_bps.clone();
    }
    if !new.hugetlb.is_empty() {
        return Err(invalid(
            "--hugetlb cannot be updated: the huge page limits are set when the container is created",
            None,
        ));
    }
    if matches!(state::status(info), Status::Running { .. }) {
        let layout = crate::sandbox::cgroup::Layout::detect()
            .map_err(|e| invalid(format!("cannot read the cgroup layout: {e}"), None))?;
        let mut live =
            state::cgroup(info).ok_or_else(|| invalid("the container has no cgroup", None))?;
        // The devices allowlist is not rewritten (`None` leaves it), nor the huge pages.
        let write = crate::sandbox::cgroup::Limits {
            devices: None,
            hugetlb: Default::default(),
            ..merged.clone()
        };
        // A controller no limit used until now has no directory yet.
        live.extend(&layout, &cg.path, &write)
            .map_err(|m| invalid(format!("cannot update {}: {m}", &info.id[..12]), None))?;
        live.apply(&layout, &write)
            .map_err(|m| invalid(format!("cannot update {}: {m}", &info.id[..12]), None))?;
    }
    cg.limits = merged;
    let value = serde_json::to_value(&spec).expect("serializes");
    state::write_atomic(&info.dir, "spec.json", &value)
        .map_err(|e| invalid(format!("cannot write spec.json: {e}"), None))?;
    // A detached container starts again from monitor.json's copy of the spec.
    let mpath = info.dir.join("monitor.json");
    if let Ok(b) = fs::read(&mpath)
        && let Ok(mut ms) = serde_json::from_slice::<MonitorSpec>(&b)
    {
        ms.sandbox["cgroup"]["limits"] =
            serde_json::to_value(&spec.cgroup.as_ref().expect("checked").limits)
                .expect("serializes");
        if let Some(r) = restart {
            ms.restart = r;
        }
        let value = serde_json::to_value(&ms).expect("serializes");
        state::write_atomic(&info.dir, "monitor.json", &value)
            .map_err(|e| invalid(format!("cannot write monitor.json: {e}"), None))?;
    }
    Ok(())
}

/// `boxr rename`: the container's name is `new` from now on; the old one is free.
pub fn rename(store: &crate::store::Store, info: &Info, new: &str) -> Result<(), ContainerError> {
    if info.name.as_deref() == Some(new) {
        return Ok(());
    }
    state::claim_name(store, new, &info.id)?;
    let renamed = (|| -> std::io::Result<()> {
        let mut config: Value = serde_json::from_slice(&fs::read(info.dir.join("config.json"))?)
            .map_err(std::io::Error::other)?;
        config["Name"] = new.into();
        state::write_atomic(&info.dir, "config.json", &config)?;
        // The monitor of a later start frees the new name with a `--rm` container.
        if let Ok(b) = fs::read(info.dir.join("monitor.json"))
            && let Ok(mut ms) = serde_json::from_slice::<MonitorSpec>(&b)
        {
            ms.name_file = Some(store.name_file(new));
            let v = serde_json::to_value(&ms).map_err(std::io::Error::other)?;
            state::write_atomic(&info.dir, "monitor.json", &v)?;
        }
        Ok(())
    })();
    if let Err(e) = renamed {
        let _ = fs::remove_file(store.name_file(new));
        return Err(invalid(
            format!("cannot rename {}: {e}", &info.id[..12]),
            None,
        ));
    }
    state::release_name(store, info);
    super::events::record(
        store.root(),
        "rename",
        &info.id,
        serde_json::json!({"name": new, "oldName": info.name}),
    );
    Ok(())
}

/// `boxr start --boot`: starts the containers a restart policy keeps running, for the init
/// system after a reboot (a daemonless tool has no daemon to do it): `always`, and
/// `unless-stopped` unless the user stopped it. Returns each one tried, with how it went.
pub fn start_at_boot(store: &crate::store::Store) -> Vec<(Info, Result<(), ContainerError>)> {
    use crate::values::RestartPolicy;
    let mut out = Vec::new();
    for info in state::list(store) {
        if !matches!(
            state::status(&info),
            Status::Exited { .. } | Status::Created
        ) {
            continue;
        }
        let Some(ms) = fs::read(info.dir.join("monitor.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<MonitorSpec>(&b).ok())
        else {
            continue;
        };
        let wanted = match ms.restart {
            RestartPolicy::Always => true,
            RestartPolicy::UnlessStopped => !info.dir.join("stopped").exists(),
            RestartPolicy::No | RestartPolicy::OnFailure { .. } => false,
        };
        if wanted {
            let r = start(&info);
            out.push((info, r));
        }
    }
    out
}
