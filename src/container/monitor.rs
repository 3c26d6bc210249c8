//! The per-container monitor of a detached container (`boxr __monitor`), the only long-lived
//! piece of boxr (ARCHITECTURE decision 13), kept small and event-driven.
//!
//! `boxr run -d` starts it and returns. Stage 1 leaves boxr's session (`setsid`) and starts
//! stage 2, then exits: stage 2 is nobody's child in the user's session, and is reparented to
//! init (or the nearest subreaper). Stage 2 starts the sandbox helper with its stdout and stderr
//! on pipes, writes every line to `container.log` as JSON (`{"time", "stream", "log"}`),
//! records `state.json` when the container starts and when it ends (exit code, OOM, times),
//! and exits when the container is gone.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::state::write_atomic;
use crate::manifest::values::RestartPolicy;
use crate::sandbox::{self, SandboxSpec};

/// What the monitor runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorSpec {
    /// The container's directory.
    pub dir: PathBuf,
    pub sandbox: SandboxSpec,
    /// 1: leave the session and start stage 2; 2: start the monitor (stage 3) and exit.
    pub stage: u8,
    /// `names/<name>` of the container: freed when `--rm` removed the container.
    pub name_file: Option<PathBuf>,
    /// `--restart`: no, on-failure[:N], always, unless-stopped.
    #[serde(default)]
    pub restart: Option<String>,
    /// `--log-opt max-size`: rotate `container.log` past this many bytes.
    #[serde(default)]
    pub log_max_size: Option<u64>,
    /// `--log-opt max-file`: how many log files to keep (with the current one).
    #[serde(default = "one")]
    pub log_max_files: u32,
}

fn one() -> u32 {
    1
}

/// The hidden subcommand.
pub const MONITOR_ARG: &str = "__monitor";

fn now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = crate::oci::rfc3339(d.as_secs() as i64);
    // 2026-11-29T06:00:00Z → with nanoseconds, as Docker's logs have them.
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), d.subsec_nanos())
}

/// Starts the monitor for `spec` (stage 1, which returns at once).
pub fn start(spec: &MonitorSpec) -> Result<(), String> {
    let fd = sandbox::json_memfd(spec).map_err(|e| e.0)?;
    let status = std::process::Command::new("/proc/self/exe")
        .args([MONITOR_ARG, "--spec-fd", "0"])
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot start the monitor: {e}"))?;
    if !status.success() {
        return Err("the monitor could not start".into());
    }
    Ok(())
}

/// `boxr __monitor --spec-fd N`.
pub fn main(spec_fd: i32) -> i32 {
    let mut spec: MonitorSpec = match sandbox::read_json_fd(spec_fd) {
        Ok(s) => s,
        Err(_) => return 125,
    };
    if spec.stage == 1 {
        if nix::unistd::setsid().is_err() {
            return 125;
        }
        spec.stage = 2;
        return match start(&spec) {
            // `start` waits for its child, which is stage 2 here: so stage 2 detaches itself.
            Ok(()) => 0,
            Err(_) => 125,
        };
    }
    if spec.stage == 2 {
        // Stage 2 forks the real monitor and returns, so stage 1 (and `boxr run -d`) return
        // as soon as the monitor exists.
        spec.stage = 3;
        let fd = match sandbox::json_memfd(&spec) {
            Ok(fd) => fd,
            Err(_) => return 125,
        };
        return match std::process::Command::new("/proc/self/exe")
            .args([MONITOR_ARG, "--spec-fd", "0"])
            .stdin(Stdio::from(fd))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(_) => 0,
            Err(_) => 125,
        };
    }
    monitor(&spec)
}

/// One stream's pending partial line.
struct Stream {
    name: &'static str,
    pipe: Option<std::io::PipeReader>,
    partial: Vec<u8>,
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

fn monitor(spec: &MonitorSpec) -> i32 {
    let dir = &spec.dir;
    let mut log = match Log::open(dir, spec.log_max_size, spec.log_max_files) {
        Ok(l) => l,
        Err(_) => return 125,
    };
    let monitor_pid = std::process::id() as i32;
    let mut base = json!({
        "MonitorPid": monitor_pid,
        "MonitorStart": sandbox::process_start_time(monitor_pid),
        "RestartCount": 0,
    });
    let policy = spec
        .restart
        .as_deref()
        .and_then(|r| crate::manifest::values::parse_restart(r).ok())
        .unwrap_or(RestartPolicy::No);
    // Docker's backoff: 100 ms, doubling to a minute; back to 100 ms after 10 s of running.
    let mut delay = Duration::from_millis(100);
    let mut restarts = 0u32;
    loop {
        let started = Instant::now();
        let code = run_once(spec, &mut log, &base);
        let exit = fs::read(dir.join("exit.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let code = exit
            .as_ref()
            .and_then(|e| e["ExitCode"].as_i64())
            .map_or(code, |c| c as i32);
        // `boxr stop` and `rm -f` leave this behind: a stop by the user is not restarted.
        let stopped = dir.join("stopped").exists();
        let again = dir.exists()
            && !stopped
            && match policy {
                RestartPolicy::No => false,
                RestartPolicy::OnFailure { max_retries } => {
                    code != 0 && max_retries.is_none_or(|m| restarts < m)
                }
                RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            };
        if !again {
            finish(dir, &base, code, exit.as_ref());
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            delay = Duration::from_millis(100);
        }
        let mut state = base.clone();
        state["Status"] = json!("restarting");
        state["ExitCode"] = json!(code);
        let _ = write_atomic(dir, "state.json", &state);
        let _ = fs::remove_file(dir.join("exit.json"));
        // Waits out the backoff, unless the user stops it meanwhile.
        let until = Instant::now() + delay;
        while Instant::now() < until && !dir.join("stopped").exists() && dir.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if dir.join("stopped").exists() || !dir.exists() {
            finish(dir, &base, code, exit.as_ref());
            break;
        }
        delay = (delay * 2).min(Duration::from_secs(60));
        restarts += 1;
        base["RestartCount"] = json!(restarts);
    }
    if !dir.exists()
        && let Some(n) = &spec.name_file
    {
        let _ = fs::remove_file(n);
    }
    0
}

/// Runs the container once: starts the helper, writes its output to the log, records the
/// start; returns the helper's exit code.
fn run_once(spec: &MonitorSpec, log: &mut Log, base: &serde_json::Value) -> i32 {
    let dir = &spec.dir;
    let pipes =
        std::io::pipe().and_then(|(r1, w1)| std::io::pipe().map(|(r2, w2)| (r1, w1, r2, w2)));
    let (out_r, out_w, err_r, err_w) = match pipes {
        Ok(p) => p,
        Err(_) => return 125,
    };
    let _ = fs::remove_file(dir.join("pid"));
    let mut child = match sandbox::spawn(&spec.sandbox, Stdio::from(out_w), Stdio::from(err_w)) {
        Ok(c) => c,
        Err(e) => {
            log.line("stderr", format!("boxr: {}\n", e.0).as_bytes());
            return 125;
        }
    };
    let mut streams = [
        Stream {
            name: "stdout",
            pipe: Some(out_r),
            partial: Vec::new(),
        },
        Stream {
            name: "stderr",
            pipe: Some(err_r),
            partial: Vec::new(),
        },
    ];
    let mut started = false;
    let mut buf = vec![0u8; 64 * 1024];
    while streams.iter().any(|s| s.pipe.is_some()) {
        if !started && let Some(pid) = super::state::live_pid(dir) {
            let mut state = base.clone();
            state["Status"] = json!("running");
            state["Pid"] = json!(pid);
            state["StartedAt"] = json!(now());
            let _ = write_atomic(dir, "state.json", &state);
            started = true;
        }
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> = streams
                .iter()
                .filter_map(|s| s.pipe.as_ref())
                .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
                .collect();
            // Until the start is recorded, look at the pid file every 10 ms; then only wait.
            let timeout = if started {
                PollTimeout::NONE
            } else {
                PollTimeout::from(10u16)
            };
            match poll(&mut fds, timeout) {
                Ok(_) => fds
                    .iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect(),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        };
        let mut i = 0;
        for s in streams.iter_mut() {
            let Some(pipe) = s.pipe.as_mut() else {
                continue;
            };
            let is_ready = ready[i];
            i += 1;
            if !is_ready {
                continue;
            }
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => {
                    if !s.partial.is_empty() {
                        let rest = std::mem::take(&mut s.partial);
                        log.line(s.name, &rest);
                    }
                    s.pipe = None;
                }
                Ok(n) => {
                    s.partial.extend_from_slice(&buf[..n]);
                    while let Some(pos) = s.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = s.partial.drain(..=pos).collect();
                        log.line(s.name, &line);
                    }
                }
            }
        }
    }
    match child.wait() {
        Ok(st) => st
            .code()
            .or_else(|| std::os::unix::process::ExitStatusExt::signal(&st).map(|s| 128 + s))
            .unwrap_or(125),
        Err(_) => 125,
    }
}

/// Records the end (unless the container was removed with `--rm`).
fn finish(dir: &Path, base: &serde_json::Value, code: i32, exit: Option<&serde_json::Value>) {
    if !dir.exists() {
        return;
    }
    let mut state = base.clone();
    if let Ok(prev) = fs::read(dir.join("state.json"))
        && let Ok(prev) = serde_json::from_slice::<serde_json::Value>(&prev)
    {
        state["StartedAt"] = prev["StartedAt"].clone();
        state["Pid"] = prev["Pid"].clone();
    }
    state["Status"] = json!("exited");
    state["ExitCode"] = json!(
        exit.and_then(|e| e["ExitCode"].as_i64())
            .unwrap_or(code as i64)
    );
    state["OOMKilled"] = json!(exit.and_then(|e| e["OOMKilled"].as_bool()).unwrap_or(false));
    state["FinishedAt"] = json!(now());
    let _ = write_atomic(dir, "state.json", &state);
}
