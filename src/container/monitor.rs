//! The per-container monitor of a detached container: its own small binary, `boxr-monitor`,
//! the only long-lived piece of boxr beside a network's resolver (ARCHITECTURE decision 13),
//! event-driven on one thread (one `poll` over a signalfd, the container's output, and a
//! control socket). A container that publishes ports has them held here too
//! (`net::publish`): the sockets, and the loopback proxy on threads of its own.
//!
//! `boxr run -d` (and `start`, `restart`) starts it and waits only for its one-line start
//! report. The monitor leaves boxr's session, becomes a child subreaper, and starts the sandbox
//! helper (`boxr-sandbox __sandbox`) in detached mode: the helper sets the container up and exits once
//! the command runs, so the container's init is reparented to the monitor, which reaps it. The
//! monitor holds the container's stdio (pipes, or the pty master with `-t`), writes every line
//! to `container.log` as JSON (`{"time", "stream", "log"}`, rotated by size), records
//! `state.json` atomically when the container starts and ends, runs `boxr-sandbox __finish` when it ends
//! (OOM check, cgroup removal, exit status), applies the restart policy with Docker's backoff,
//! and exits when the container is gone for good.
//!
//! Its control socket, `monitor.sock` in the container's directory, takes one request line:
//! `status` (a JSON line back), `stop SECONDS SIGNAL` (stop signal, SIGKILL after the timeout,
//! then the exit code back once the end is recorded), `attach` or `attach stdin` (then frames
//! both ways: output out; input, stdin's end and window sizes in; the exit code last). The
//! protocol itself, with its unit tests, is `control`.
//!
//! Why this file is over 700 lines: it is one state machine (the phases of a container under
//! its monitor) whose handlers all change the one `Monitor` value; split by handler, each file
//! would need the whole of it. The protocol and the state file are outside it already.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::control::Request;
use super::state::{EXIT, INIT_EXIT, STATE, StateFile};
use crate::sandbox::{self, term};
use crate::values::RestartPolicy;

/// What the monitor runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSpec {
    /// The container's directory.
    pub dir: PathBuf,
    /// The sandbox runtime (`boxr-sandbox`): the monitor runs its helper (`__sandbox`) and
    /// `__finish`.
    pub runtime: PathBuf,
    /// The container's `SandboxSpec` (with `detach`), passed through as it is.
    pub sandbox: Value,
    /// `-t`: the container's stdio is a pty, whose master the init sends the monitor.
    #[serde(default)]
    pub tty: bool,
    /// `-i`: the container's stdin stays open for `boxr attach`.
    #[serde(default)]
    pub stdin: bool,
    /// `names/<name>` of the container: freed when `--rm` removed the container.
    pub name_file: Option<PathBuf>,
    /// `--restart`: no, on-failure[:N], always, unless-stopped.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--log-opt max-size`: rotate `container.log` past this many bytes.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file`: how many log files to keep (with the current one).
    #[serde(default = "one")]
    pub log_max_files: u32,
    /// `boxr start -a`: report at once, and start the container when the first attach client
    /// connects (so it misses nothing of a short command's output), or after 10 s without one.
    /// Not kept in `monitor.json`.
    #[serde(default)]
    pub hold: bool,
    /// The container's health check, if it has one.
    #[serde(default)]
    pub health: Option<super::health::HealthSpec>,
}

fn one() -> u32 {
    1
}

/// The monitor's file name, beside the boxr binary.
pub const BINARY: &str = "boxr-monitor";
pub use super::control::SOCKET;

use super::control::frame;

/// Why the monitor could not start a container's helper: what it was doing, and the cause.
#[derive(Debug, thiserror::Error)]
enum HelperStartError {
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
}

impl HelperStartError {
    fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> HelperStartError {
        move |source| HelperStartError::Io { what, source }
    }
}

pub(super) fn now() -> String {
    crate::time::now_rfc3339_nanos()
}

/// Starts a monitor for `spec` and waits for its start report: the container's init pid once
/// the command runs, or the exit code (125, 126, 127) and message of a failed start.
pub fn start(spec: &MonitorSpec) -> Result<i32, (i32, String)> {
    let err = |m: String| (125, m);
    let exe = std::env::current_exe().map_err(|e| err(format!("where is boxr? {e}")))?;
    let bin = exe.with_file_name(BINARY);
    if !bin.exists() {
        return Err(err(format!(
            "{} is missing: it is installed beside boxr",
            bin.display()
        )));
    }
    let kept = MonitorSpec {
        hold: false,
        ..spec.clone()
    };
    fs::write(
        spec.dir.join("monitor.json"),
        serde_json::to_vec(&kept).expect("serializes"),
    )
    .map_err(|e| err(format!("cannot write monitor.json: {e}")))?;
    let (ready_r, ready_w) =
        std::io::pipe().map_err(|e| err(format!("cannot make a pipe: {e}")))?;
    let ready_w = OwnedFd::from(ready_w);
    let fd = sandbox::json_memfd_inherited(spec).map_err(|e| err(e.to_string()))?;
    // `boxr run -d` starts no thread: nothing else can inherit these two.
    term::inheritable(&ready_w).map_err(|e| err(format!("cannot pass a pipe on: {e}")))?;
    let child = Command::new(&bin)
        .args([
            "--spec-fd",
            &fd.as_raw_fd().to_string(),
            "--ready-fd",
            &ready_w.as_raw_fd().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| err(format!("cannot start {}: {e}", bin.display())))?;
    drop((fd, ready_w));
    // Not waited for: it outlives boxr, reparented to init (or the nearest subreaper).
    drop(child);
    let mut text = String::new();
    let _ = std::io::BufReader::new(ready_r).read_to_string(&mut text);
    let (code, rest) = text
        .split_once('\n')
        .ok_or_else(|| err("the monitor exited before the container started".into()))?;
    match code.parse::<i32>() {
        Ok(0) => Ok(rest.trim().parse().unwrap_or(0)),
        Ok(c) => Err((c, rest.trim().to_owned())),
        Err(_) => Err(err(format!("the monitor said `{}`", text.trim()))),
    }
}

/// `boxr-monitor --spec-fd N --ready-fd M`.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let fd_arg = |name| sandbox::number_arg(&args, name);
    let (Some(spec_fd), Some(ready_fd)) = (fd_arg("--spec-fd"), fd_arg("--ready-fd")) else {
        eprintln!("usage: {BINARY} --spec-fd N --ready-fd M (started by `boxr run -d`)");
        return 2;
    };
    sandbox::close_inherited_fds(&[spec_fd, ready_fd]);
    let ready = sandbox::own_inherited_fd(ready_fd).map(fs::File::from);
    let spec: MonitorSpec = match sandbox::read_json_fd(spec_fd) {
        Ok(s) => s,
        Err(e) => {
            if let Some(mut r) = ready {
                let _ = write!(r, "125\ncannot read the monitor's spec: {e}");
            }
            return 125;
        }
    };
    match Monitor::new(spec, ready) {
        Ok(mut m) => m.run(),
        Err((mut ready, message)) => {
            if let Some(r) = ready.as_mut() {
                let _ = write!(r, "125\n{message}");
            }
            125
        }
    }
}

/// `container.log`, rotated by size when `--log-opt max-size` says so: `container.log.1` is the
/// newest rotated file, up to `max-file` files in all.
struct Log {
    dir: PathBuf,
    file: fs::File,
    size: u64,
    max_size: Option<u64>,
    max_files: u32,
}

impl Log {
    fn open(dir: &Path, max_size: Option<u64>, max_files: u32) -> std::io::Result<Log> {
        let file = fs::File::options()
            .create(true)
            .append(true)
            .open(dir.join("container.log"))?;
        let size = file.metadata()?.len();
        Ok(Log {
            dir: dir.to_owned(),
            file,
            size,
            max_size,
            max_files: max_files.max(1),
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let name = |i: u32| self.dir.join(format!("container.log.{i}"));
        let _ = fs::remove_file(name(self.max_files - 1));
        for i in (1..self.max_files - 1).rev() {
            let _ = fs::rename(name(i), name(i + 1));
        }
        if self.max_files > 1 {
            fs::rename(self.dir.join("container.log"), name(1))?;
        }
        self.file = fs::File::options()
            .create(true)
            .write(true)
            .truncate(true)
            .open(self.dir.join("container.log"))?;
        self.size = 0;
        Ok(())
    }

    fn line(&mut self, stream: &str, line: &[u8]) {
        let entry = json!({
            "time": now(),
            "stream": stream,
            "log": String::from_utf8_lossy(line),
        });
        let text = format!("{entry}\n");
        if let Some(max) = self.max_size
            && self.size > 0
            && self.size + text.len() as u64 > max
        {
            let _ = self.rotate();
        }
        if self.file.write_all(text.as_bytes()).is_ok() {
            self.size += text.len() as u64;
        }
    }
}

/// One output stream of the container: a pipe, or the pty master (as `stdout`).
struct Output {
    kind: u8,
    name: &'static str,
    file: fs::File,
    partial: Vec<u8>,
}

/// A connection on the control socket.
struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    /// Attached: gets the output as frames (and may send input).
    attached: bool,
    /// Waits for the end of a `stop`.
    stopping: bool,
}

/// Where the container is.
enum Phase {
    /// Waiting for the first attach client (or `until`) to start the container (`hold`).
    Held { until: Instant },
    /// The helper (this pid) is setting the container up.
    Starting(Pid),
    /// The container's init (this pid) runs.
    Running(Pid),
    /// The init exited with this code; the output is drained until `until`.
    Draining { code: i32, until: Instant },
    /// Ended; the restart policy starts it again at `until`.
    Backoff { until: Instant },
    /// Ended for good.
    Done,
}

struct Monitor {
    spec: MonitorSpec,
    ready: Option<fs::File>,
    log: Log,
    sigfd: SignalFd,
    listener: UnixListener,
    clients: Vec<Client>,
    outputs: Vec<Output>,
    /// The container's stdin (`-i`): a pipe, or the pty master.
    stdin: Option<fs::File>,
    /// The pty master, for window sizes.
    master: Option<fs::File>,
    /// Before the pty master arrives: the socket the init sends it over.
    console: Option<OwnedFd>,
    phase: Phase,
    /// Children reaped before their pid was known (the init can end before its helper).
    early: Vec<(Pid, i32)>,
    restarts: super::restart::Restarts,
    base: StateFile,
    started: Instant,
    /// When a `stop` turns into SIGKILL.
    kill_at: Option<Instant>,
    /// What a `stop` request asked for: the signal, and how long before SIGKILL.
    stop_with: (i32, Duration),
    /// The exit code recorded at the end (kept here too: `--rm` removes `state.json`).
    exit_code: Option<i32>,
    /// The health checks, while the container runs.
    health: Option<super::health::Checker>,
    /// The last line the failed helper printed.
    last_err: String,
    buf: Vec<u8>,
    /// The container's published ports, held while this monitor lives (across restarts).
    ports: Option<crate::net::publish::Publication>,
}

type NewError = (Option<fs::File>, String);

impl Monitor {
    fn new(spec: MonitorSpec, ready: Option<fs::File>) -> Result<Monitor, NewError> {
        // Out of the user's session, and the parent of the container's init once its helper
        // is gone.
        let _ = nix::unistd::setsid();
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            return Err((ready, format!("cannot become a subreaper: {}", e.desc())));
        }
        // The socket's path is relative: a store's path can be longer than a socket address.
        if let Err(e) = std::env::set_current_dir(&spec.dir) {
            return Err((ready, format!("cannot enter {}: {e}", spec.dir.display())));
        }
        let mut signals = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGHUP] {
            signals.add(s);
        }
        if let Err(e) = signals.thread_block() {
            return Err((ready, format!("cannot block signals: {}", e.desc())));
        }
        let sigfd =
            match SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC) {
                Ok(s) => s,
                Err(e) => return Err((ready, format!("signalfd: {}", e.desc()))),
            };
        let _ = fs::remove_file(SOCKET);
        let listener = match UnixListener::bind(SOCKET).and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(l)
        }) {
            Ok(l) => l,
            Err(e) => return Err((ready, format!("cannot listen on {SOCKET}: {e}"))),
        };
        let log = match Log::open(&spec.dir, spec.log_max_size, spec.log_max_files) {
            Ok(l) => l,
            Err(e) => return Err((ready, format!("cannot open the log: {e}"))),
        };
        let ports = match super::network::publish(&spec.dir) {
            Ok(p) => p,
            Err(e) => return Err((ready, e.to_string())),
        };
        let policy = spec.restart;
        let pid = std::process::id() as i32;
        let health = spec.health.clone().map(|h| {
            let boxr = std::env::current_exe()
                .map(|e| e.with_file_name("boxr"))
                .unwrap_or_else(|_| PathBuf::from("boxr"));
            super::health::Checker::new(h, boxr, &spec.dir)
        });
        Ok(Monitor {
            base: StateFile {
                monitor_pid: Some(pid),
                monitor_start: sandbox::process_start_time(pid),
                ..StateFile::default()
            },
            spec,
            ready,
            log,
            sigfd,
            listener,
            clients: Vec::new(),
            outputs: Vec::new(),
            stdin: None,
            master: None,
            console: None,
            phase: Phase::Done,
            early: Vec::new(),
            restarts: super::restart::Restarts::new(policy),
            started: Instant::now(),
            kill_at: None,
            stop_with: (Signal::SIGTERM as i32, Duration::from_secs(10)),
            exit_code: None,
            health,
            last_err: String::new(),
            buf: vec![0u8; 32 * 1024],
            ports,
        })
    }

    fn dir(&self) -> &Path {
        &self.spec.dir
    }

    fn stopped(&self) -> bool {
        Path::new("stopped").exists()
    }

    /// Writes `state.json`: what every state of this monitor has (`base`), the status, and
    /// what `set` adds.
    fn write_state(&self, status: &str, set: impl FnOnce(&mut StateFile)) {
        let mut state = StateFile {
            status: Some(status.to_owned()),
            ..self.base.clone()
        };
        set(&mut state);
        if self.dir().exists() {
            let _ = state.write(self.dir(), STATE);
        }
    }

    fn report(&mut self, text: String) {
        if let Some(mut r) = self.ready.take() {
            let _ = r.write_all(text.as_bytes());
        }
    }

    /// The main loop; returns the monitor's exit code.
    fn run(&mut self) -> i32 {
        if self.spec.hold {
            self.phase = Phase::Held {
                until: Instant::now() + Duration::from_secs(10),
            };
            // What `attach` connects by: this monitor's pid and start time.
            self.write_state("created", |_| {});
            self.report("0\n0".into());
        } else {
            self.launch();
        }
        loop {
            if matches!(self.phase, Phase::Done) {
                break;
            }
            let deadline = match &self.phase {
                Phase::Draining { until, .. }
                | Phase::Backoff { until }
                | Phase::Held { until } => Some(*until),
                _ => None,
            };
            let health = match (&self.phase, &self.health) {
                (Phase::Running(_), Some(h)) => h.deadline(),
                _ => None,
            };
            let deadline = [deadline, self.kill_at, health].into_iter().flatten().min();
            self.wait(deadline);
            self.tick();
        }
        for c in &mut self.clients {
            if c.attached || c.stopping {
                let _ = c.stream.set_nonblocking(false);
            }
        }
        // The ports are free again before `stop` returns, and a container that stays gives its
        // network namespace and veth back until it starts again.
        self.ports = None;
        super::network::give_back(self.dir());
        let code = self.exit_code.unwrap_or_else(last_exit_code);
        for c in &mut self.clients {
            if c.attached {
                let _ = c
                    .stream
                    .write_all(&frame::encode(frame::EXIT, code.to_string().as_bytes()));
            } else if c.stopping {
                let _ = c.stream.write_all(format!("{code}\n").as_bytes());
            }
        }
        let _ = fs::remove_file(SOCKET);
        // A removed (`--rm`) container's name, if it is still this container's (it may have
        // been renamed, and the name taken by another since).
        let id = self
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        if !self.dir().exists()
            && let Some(n) = &self.spec.name_file
            && fs::read_to_string(n).ok().map(|s| s.trim().to_owned()) == id
        {
            let _ = fs::remove_file(n);
        }
        0
    }

    /// Starts the container once: the helper, with the container's stdio.
    /// Takes what changed since this monitor started from monitor.json: `boxr update`'s
    /// limits and restart policy, `rename`'s name. A restart by the policy runs with them.
    fn refresh_spec(&mut self) {
        if let Ok(b) = fs::read("monitor.json")
            && let Ok(saved) = serde_json::from_slice::<MonitorSpec>(&b)
        {
            self.spec.sandbox = saved.sandbox;
            self.spec.name_file = saved.name_file;
            self.restarts.policy = saved.restart;
        }
    }

    fn launch(&mut self) {
        self.refresh_spec();
        let _ = fs::remove_file("pid");
        let _ = fs::remove_file(EXIT);
        self.started = Instant::now();
        self.outputs.clear();
        self.stdin = None;
        self.master = None;
        self.console = None;
        if let Err(message) = self.spawn_helper() {
            self.log
                .line("stderr", format!("boxr: {message}\n").as_bytes());
            self.report(format!("125\n{message}"));
            self.ended(125, false);
        }
    }

    fn spawn_helper(&mut self) -> Result<(), HelperStartError> {
        let io = HelperStartError::io;
        let output = |kind, name, r: std::io::PipeReader| Output {
            kind,
            name,
            file: fs::File::from(OwnedFd::from(r)),
            partial: Vec::new(),
        };
        let mut sandbox = self.spec.sandbox.clone();
        // The init's end of the console socket, held until the helper has inherited it.
        let mut theirs = None;
        let (stdout, stderr, stdin) = if self.spec.tty {
            let (ours, t) = nix::sys::socket::socketpair(
                nix::sys::socket::AddressFamily::Unix,
                nix::sys::socket::SockType::Stream,
                None,
                nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|e| io("socketpair")(e.into()))?;
            term::inheritable(&t).map_err(io("cannot pass a socket on"))?;
            sandbox["console_fd"] = json!(t.as_raw_fd());
            theirs = Some(t);
            self.console = Some(ours);
            // The command's stdio is the pty; what the helper and init print before it runs
            // (why a start failed) still reaches the log.
            let (r, w) = std::io::pipe().map_err(io("pipe"))?;
            self.outputs.push(output(frame::STDERR, "stderr", r));
            let w2 = w.try_clone().map_err(io("dup"))?;
            (Stdio::from(w2), Stdio::from(w), Stdio::null())
        } else {
            let (out_r, out_w) = std::io::pipe().map_err(io("pipe"))?;
            let (err_r, err_w) = std::io::pipe().map_err(io("pipe"))?;
            self.outputs.push(output(frame::STDOUT, "stdout", out_r));
            self.outputs.push(output(frame::STDERR, "stderr", err_r));
            let stdin = if self.spec.stdin {
                let (r, w) = std::io::pipe().map_err(io("pipe"))?;
                self.stdin = Some(fs::File::from(OwnedFd::from(w)));
                Stdio::from(r)
            } else {
                Stdio::null()
            };
            (Stdio::from(out_w), Stdio::from(err_w), stdin)
        };
        // Where the init writes the command's end, for a later boxr if this monitor is killed.
        let exit_file = fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(INIT_EXIT)
            .map_err(io("cannot create the init's exit file"))?;
        term::inheritable(&exit_file).map_err(io("cannot pass a file on"))?;
        sandbox["exit_fd"] = json!(exit_file.as_raw_fd());
        let fd = sandbox::json_memfd_inherited(&sandbox)?;
        let spec_fd = fd.as_raw_fd().to_string();
        let child = sandbox::runtime_command(
            &self.spec.runtime,
            &[sandbox::HELPER_ARG, "--spec-fd", &spec_fd],
        )
        .stdin(stdin)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .map_err(io("cannot start the helper"))?;
        drop((fd, theirs, exit_file));
        // Reaped by the SIGCHLD handler, not through `child`.
        self.phase = Phase::Starting(Pid::from_raw(child.id() as i32));
        Ok(())
    }

    /// Waits for something to happen (or `deadline`), and handles it.
    fn wait(&mut self, deadline: Option<Instant>) {
        let timeout = match deadline {
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                PollTimeout::try_from(left.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        // [signals, listener, console?, outputs..., clients...]
        let (ready, n_out) = {
            let mut fds = vec![
                PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(c) = &self.console {
                fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
            }
            let n_out = self.outputs.len();
            for o in &self.outputs {
                fds.push(PollFd::new(o.file.as_fd(), PollFlags::POLLIN));
            }
            for c in &self.clients {
                fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(_) => return,
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            (ready, n_out)
        };
        let mut i = 2;
        if self.console.is_some() {
            if ready[i] {
                self.take_console();
            }
            i += 1;
        }
        let out_ready: Vec<usize> = (0..n_out).filter(|k| ready[i + k]).collect();
        i += n_out;
        let client_ready: Vec<usize> = (0..self.clients.len()).filter(|k| ready[i + k]).collect();
        for k in out_ready {
            self.read_output(k);
        }
        for k in client_ready.into_iter().rev() {
            self.read_client(k);
        }
        if ready[1] {
            self.accept();
        }
        if ready[0] {
            self.signals();
        }
        // Ended outputs were marked with no name.
        self.outputs.retain(|o| !o.name.is_empty());
    }

    /// The init sent the pty master: it is the container's stdout and stdin now.
    fn take_console(&mut self) {
        let Some(console) = self.console.take() else {
            return;
        };
        let Some(master) = term::receive_master(&console) else {
            return;
        };
        let master = fs::File::from(master);
        if let Ok(copy) = master.try_clone() {
            self.outputs.push(Output {
                kind: frame::STDOUT,
                name: "stdout",
                file: copy,
                partial: Vec::new(),
            });
        }
        if self.spec.stdin {
            self.stdin = master.try_clone().ok();
        }
        self.master = Some(master);
    }

    fn read_output(&mut self, k: usize) {
        let n = match self.outputs[k].file.read(&mut self.buf) {
            Ok(n) => n,
            // EIO: the pty's last slave closed.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        let o = &mut self.outputs[k];
        if n == 0 {
            if !o.partial.is_empty() {
                let rest = std::mem::take(&mut o.partial);
                self.log.line(o.name, &rest);
            }
            // Marked for removal (see the end of `wait`).
            o.name = "";
            return;
        }
        let chunk = &self.buf[..n];
        o.partial.extend_from_slice(chunk);
        while let Some(pos) = o.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = o.partial.drain(..=pos).collect();
            if o.kind == frame::STDERR && matches!(self.phase, Phase::Starting(_)) {
                self.last_err = String::from_utf8_lossy(&line)
                    .trim()
                    .trim_start_matches("boxr: ")
                    .to_owned();
            }
            self.log.line(o.name, &line);
        }
        let f = frame::encode(o.kind, chunk);
        // A client that cannot keep up is dropped; the log has everything.
        self.clients.retain_mut(|c| {
            !c.attached || {
                match c.stream.write(&f) {
                    Ok(w) if w == f.len() => true,
                    Ok(w) => {
                        let _ = c.stream.set_nonblocking(false);
                        let ok = c.stream.write_all(&f[w..]).is_ok();
                        let _ = c.stream.set_nonblocking(true);
                        ok
                    }
                    Err(_) => false,
                }
            }
        });
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream,
                    input: Vec::new(),
                    attached: false,
                    stopping: false,
                });
            }
        }
    }

    fn read_client(&mut self, k: usize) {
        let n = match self.clients[k].stream.read(&mut self.buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => 0,
        };
        if n == 0 {
            // A stop waits for its answer even if the client closed its side.
            if !self.clients[k].stopping {
                self.clients.remove(k);
            }
            return;
        }
        let data = self.buf[..n].to_vec();
        self.clients[k].input.extend_from_slice(&data);
        if !self.clients[k].attached && !self.clients[k].stopping {
            let Some(pos) = self.clients[k].input.iter().position(|&b| b == b'\n') else {
                if self.clients[k].input.len() > 4096 {
                    self.clients.remove(k);
                }
                return;
            };
            let line: Vec<u8> = self.clients[k].input.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_owned();
            if !self.request(k, &line) {
                self.clients.remove(k);
                return;
            }
        }
        if self.clients[k].attached {
            while let Some((kind, payload)) = frame::decode(&mut self.clients[k].input) {
                self.input(kind, &payload);
            }
        }
    }

    /// A request line; false when the connection is done with.
    fn request(&mut self, k: usize, line: &str) -> bool {
        match Request::parse(line) {
            Some(Request::Status) => {
                let (status, pid) = match &self.phase {
                    Phase::Held { .. } | Phase::Starting(_) => ("created", 0),
                    Phase::Running(p) => ("running", p.as_raw()),
                    Phase::Draining { .. } | Phase::Done => ("exited", 0),
                    Phase::Backoff { .. } => ("restarting", 0),
                };
                let reply = json!({
                    "Status": status, "Pid": pid, "RestartCount": self.restarts.count,
                    "Tty": self.spec.tty, "OpenStdin": self.spec.stdin,
                });
                let s = &mut self.clients[k].stream;
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(format!("{reply}\n").as_bytes());
                false
            }
            Some(Request::Attach { .. }) => {
                self.clients[k].attached = true;
                if matches!(self.phase, Phase::Held { .. }) {
                    self.launch();
                }
                true
            }
            Some(Request::Stop { timeout, signal }) => {
                self.stop_with = (signal, timeout);
                let _ = fs::write("stopped", "");
                self.clients[k].stopping = true;
                match self.phase {
                    Phase::Running(pid) => {
                        let _ = sandbox::send_signal(pid.as_raw(), self.stop_with.0);
                        self.kill_at = Some(Instant::now() + self.stop_with.1);
                    }
                    // The backoff is cut short, or the held start called off: it stays down.
                    Phase::Backoff { .. } | Phase::Held { .. } => self.done(last_exit_code(), None),
                    _ => {}
                }
                true
            }
            None => false,
        }
    }

    /// Input from an attached client.
    fn input(&mut self, kind: u8, payload: &[u8]) {
        match kind {
            frame::STDIN => {
                if let Some(s) = &mut self.stdin
                    && s.write_all(payload).is_err()
                {
                    self.stdin = None;
                }
            }
            frame::STDIN_EOF if self.master.is_none() => self.stdin = None,
            frame::RESIZE => {
                if let (Some(m), Some((rows, cols))) = (&self.master, frame::size(payload)) {
                    let _ = term::resize(m, rows, cols);
                }
            }
            _ => {}
        }
    }

    fn signals(&mut self) {
        while let Ok(Some(info)) = self.sigfd.read_signal() {
            if info.ssi_signo as i32 != Signal::SIGCHLD as i32 {
                continue;
            }
            while let Some((pid, code)) = sandbox::reap(None) {
                self.reaped(Pid::from_raw(pid), code);
            }
        }
    }

    fn reaped(&mut self, pid: Pid, code: i32) {
        if let Some(h) = &mut self.health
            && h.owns(pid)
        {
            let changed = h.finished(code);
            self.health_recorded(changed);
            return;
        }
        match self.phase {
            Phase::Starting(helper) if pid == helper => {
                if code != 0 {
                    // The helper has finished the failed start itself (cgroup, exit status).
                    let message = std::mem::take(&mut self.last_err);
                    self.report(format!("{code}\n{message}"));
                    self.ended(code, false);
                    return;
                }
                let Some(init) = super::state::live_pid(self.dir())
                    .or_else(|| super::state::recorded_pid(self.dir()).map(|(pid, _)| pid))
                    .map(Pid::from_raw)
                else {
                    self.report("125\nthe container's helper recorded no pid".into());
                    self.ended(125, true);
                    return;
                };
                // Recorded before `run -d` returns, so the next command finds it running.
                if let Some(h) = &mut self.health {
                    h.start(Instant::now());
                    self.base.health = Some(h.json());
                }
                self.write_state("running", |s| {
                    s.pid = Some(init.as_raw());
                    s.started_at = Some(now());
                });
                self.report(format!("0\n{init}"));
                self.phase = Phase::Running(init);
                // What the start needed is not kept resident for the container's lifetime.
                sandbox::trim_heap();
                sandbox::map_code_on_demand();
                if self.clients.iter().any(|c| c.stopping) {
                    // Stopped while it started.
                    let _ = sandbox::send_signal(init.as_raw(), self.stop_with.0);
                    self.kill_at = Some(Instant::now() + self.stop_with.1);
                }
                if let Some(i) = self.early.iter().position(|(p, _)| *p == init) {
                    let (_, code) = self.early.remove(i);
                    self.reaped(init, code);
                }
            }
            Phase::Running(init) if pid == init => {
                // The container's processes are gone with their PID namespace: the output
                // ends in a moment.
                self.kill_at = None;
                if let Some(h) = &mut self.health {
                    h.stop();
                }
                self.phase = Phase::Draining {
                    code,
                    until: Instant::now() + Duration::from_secs(2),
                };
            }
            Phase::Starting(_) => self.early.push((pid, code)),
            _ => {}
        }
    }

    /// Timers and the end of draining.
    fn tick(&mut self) {
        let now = Instant::now();
        if let (Phase::Running(_), Some(h)) = (&self.phase, &mut self.health)
            && let Some(changed) = h.tick(now)
        {
            self.health_recorded(changed);
        }
        if let (Some(at), Phase::Running(pid)) = (self.kill_at, &self.phase)
            && now >= at
        {
            let _ = kill(*pid, Signal::SIGKILL);
            self.kill_at = None;
        }
        match self.phase {
            Phase::Draining { code, until } if self.outputs.is_empty() || now >= until => {
                self.ended(code, true);
            }
            Phase::Held { until } if now >= until => self.launch(),
            Phase::Backoff { until } if now >= until => {
                if self.stopped() || !self.dir().exists() {
                    let code = last_exit_code();
                    self.done(code, None);
                } else {
                    self.restarts.restarting();
                    self.base.restart_count = self.restarts.count.into();
                    self.launch();
                }
            }
            _ => {}
        }
    }

    /// Keeps the health checks' state in `state.json` (and `base`, for later writes), and
    /// records an event when the status `changed`.
    fn health_recorded(&mut self, changed: Option<super::health::Status>) {
        let Some(h) = &self.health else {
            return;
        };
        let health = h.json();
        self.base.health = Some(health.clone());
        if let Some(mut s) = StateFile::read(self.dir(), STATE) {
            s.health = Some(health);
            let _ = s.write(self.dir(), STATE);
        }
        if let Some(status) = changed
            && let Some(root) = crate::store::root_of_container_dir(self.dir())
        {
            let id = self
                .dir()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            super::events::record(
                root,
                &format!("health_status: {}", status.as_str()),
                &id,
                json!({}),
            );
        }
        // What starting the check needed is not kept resident until the next one.
        sandbox::trim_heap();
        sandbox::map_code_on_demand();
    }

    /// The container ended with `code`; `finish`: run `__finish` (the helper has not).
    fn ended(&mut self, code: i32, finish: bool) {
        // What is left of the output (the pty's, the helper's last words).
        for k in 0..self.outputs.len() {
            let o = &mut self.outputs[k];
            if !o.partial.is_empty() {
                let rest = std::mem::take(&mut o.partial);
                self.log.line(o.name, &rest);
            }
        }
        self.outputs.clear();
        self.stdin = None;
        self.master = None;
        self.console = None;
        if finish {
            self.finish(code);
        }
        self.report(format!("{code}\nthe container exited at once"));
        let exit = StateFile::read(self.dir(), EXIT);
        let code = exit.as_ref().and_then(|e| e.exit_code).unwrap_or(code);
        self.refresh_spec();
        let wait = if self.dir().exists() && !self.stopped() {
            self.restarts.after_exit(code, self.started.elapsed())
        } else {
            None
        };
        let Some(wait) = wait else {
            self.done(code, exit.as_ref());
            return;
        };
        self.write_state("restarting", |s| s.exit_code = Some(code));
        let _ = fs::remove_file(EXIT);
        self.phase = Phase::Backoff {
            until: Instant::now() + wait,
        };
    }

    /// Ended for good: the final state.
    fn done(&mut self, code: i32, exit: Option<&StateFile>) {
        let prev = StateFile::read(self.dir(), STATE).unwrap_or_default();
        let oom = exit.is_some_and(|e| e.oom_killed);
        self.write_state("exited", |s| {
            s.started_at = prev.started_at;
            s.pid = prev.pid;
            s.exit_code = Some(code);
            s.oom_killed = oom;
            s.finished_at = Some(now());
        });
        self.exit_code = Some(code);
        self.phase = Phase::Done;
    }

    /// The sandbox runtime in `mode`, its spec in the (inherited) descriptor `spec`.
    fn runtime(&self, mode: &str, spec: &OwnedFd) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(&self.spec.runtime);
        c.arg0("boxr")
            .args([mode, "--spec-fd", &spec.as_raw_fd().to_string()]);
        c
    }

    /// `boxr-sandbox __finish`: the cgroup (and whatever is left in it), OOM, events, exit status, --rm.
    fn finish(&mut self, code: i32) {
        let run = sandbox::json_memfd_inherited(&self.spec.sandbox).and_then(|fd| {
            let r = self
                .runtime(sandbox::FINISH_ARG, &fd)
                .args(["--code", &code.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output();
            r.map_err(|source| sandbox::SandboxError::Spawn {
                path: self.spec.runtime.clone(),
                source,
            })
        });
        match run {
            Ok(out) => {
                for line in String::from_utf8_lossy(&out.stderr).lines() {
                    self.log.line("stderr", format!("{line}\n").as_bytes());
                }
            }
            Err(e) => self
                .log
                .line("stderr", format!("boxr: cannot finish: {e}\n").as_bytes()),
        }
    }
}

/// The exit code `state.json` records (while restarting: the last run's).
fn last_exit_code() -> i32 {
    StateFile::read(Path::new("."), STATE)
        .and_then(|s| s.exit_code)
        .unwrap_or(-1)
}
