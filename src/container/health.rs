//! Health checks of a detached container, run by its monitor (Docker's HEALTHCHECK).
//!
//! Every `interval` while the container runs, the monitor starts `boxr exec CONTAINER TEST...`
//! (the same way into the container as any exec: its namespaces, cgroup and confinement) with
//! its output in `health.out`, and waits for it without blocking (it is reaped like every
//! child of the monitor). Exit 0 is a success; anything else, or running past `timeout` (then
//! it is killed), a failure. The status starts as `starting`, is `healthy` after a success and
//! `unhealthy` after `retries` failures in a row; failures during `start_period` do not count.
//! The last five results are kept, as Docker keeps them, in `state.json`'s `Health`.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::values::Bad;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Results kept, as Docker keeps them.
const KEPT: usize = 5;
/// Bytes of a check's output kept.
const OUTPUT_MAX: usize = 4096;

/// A container's health check (`--health-*`, or the image's `Healthcheck`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSpec {
    /// The command, as `exec` runs it (`CMD-SHELL` forms are `/bin/sh -c ...`).
    pub test: Vec<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub start_period_ms: u64,
    /// The interval of checks during the start period (0: `interval_ms`).
    #[serde(default)]
    pub start_interval_ms: u64,
    pub retries: u32,
}

impl HealthSpec {
    /// Docker's defaults: every 30 s, 30 s at most each, unhealthy after 3 failures.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    pub const DEFAULT_RETRIES: u32 = 3;
}

/// `--health-*` as given.
#[derive(Debug, Clone, Default)]
pub struct HealthOptions {
    /// `--health-cmd`: run by `/bin/sh -c`.
    pub cmd: Option<String>,
    /// A command in exec form (a manifest's `healthcheck "CMD" "ARG"...`), instead of `cmd`.
    pub exec: Option<Vec<String>>,
    /// Checks during the start period this often (a manifest's `start-interval=`).
    pub start_interval: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub start_period: Option<String>,
    pub retries: Option<u32>,
    /// `--no-healthcheck`: none, whatever the image says.
    pub disable: bool,
}

/// The health check a container gets: the options over the image's `Healthcheck`.
pub fn spec(
    o: &HealthOptions,
    image: Option<&crate::oci::HealthConfig>,
) -> Result<Option<HealthSpec>, Bad> {
    let given = o.cmd.is_some()
        || o.exec.is_some()
        || o.start_interval.is_some()
        || o.interval.is_some()
        || o.timeout.is_some()
        || o.start_period.is_some()
        || o.retries.is_some();
    if o.disable {
        if given {
            return Err(Bad::new(
                "--no-healthcheck conflicts with the --health-* options",
                None,
            ));
        }
        return Ok(None);
    }
    let test = match (&o.cmd, image.map(|i| i.test.as_slice())) {
        _ if o.exec.as_ref().is_some_and(|e| !e.is_empty()) => o.exec.clone().unwrap_or_default(),
        (Some(c), _) => vec!["/bin/sh".to_owned(), "-c".to_owned(), c.clone()],
        (None, Some([kind, rest @ ..])) if kind == "CMD" && !rest.is_empty() => rest.to_vec(),
        (None, Some([kind, cmd])) if kind == "CMD-SHELL" => {
            vec!["/bin/sh".to_owned(), "-c".to_owned(), cmd.clone()]
        }
        _ if given => {
            return Err(Bad::new(
                "--health-* options need a health check",
                Some("give --health-cmd, or use an image that has one"),
            ));
        }
        _ => return Ok(None),
    };
    let duration = |flag: &str,
                    given: &Option<String>,
                    image_ns: Option<u64>,
                    default: Duration| {
        match given {
            Some(t) => crate::values::parse_duration(t)
                .map_err(|b| Bad::new(format!("{flag} {t}: {}", b.reason), b.help.as_deref()))
                .map(|d| d.as_millis() as u64),
            None => Ok(image_ns
                .filter(|n| *n > 0)
                .map_or(default.as_millis() as u64, |n| n / 1_000_000)),
        }
    };
    let interval = duration(
        "--health-interval",
        &o.interval,
        image.and_then(|i| i.interval),
        HealthSpec::DEFAULT_INTERVAL,
    )?;
    let timeout = duration(
        "--health-timeout",
        &o.timeout,
        image.and_then(|i| i.timeout),
        HealthSpec::DEFAULT_TIMEOUT,
    )?;
    let start_period = duration(
        "--health-start-period",
        &o.start_period,
        image.and_then(|i| i.start_period),
        Duration::ZERO,
    )?;
    let start_interval = duration(
        "--health-start-interval",
        &o.start_interval,
        image.and_then(|i| i.start_interval),
        Duration::ZERO,
    )?;
    if interval == 0 || timeout == 0 {
        return Err(Bad::new(
            "--health-interval and --health-timeout must be at least 1ms",
            None,
        ));
    }
    Ok(Some(HealthSpec {
        test,
        interval_ms: interval,
        timeout_ms: timeout,
        start_period_ms: start_period,
        start_interval_ms: start_interval,
        retries: o
            .retries
            .or(image.and_then(|i| i.retries))
            .filter(|r| *r > 0)
            .unwrap_or(HealthSpec::DEFAULT_RETRIES),
    }))
}

/// Where a container's health is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Starting,
    Healthy,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Healthy => "healthy",
            Status::Unhealthy => "unhealthy",
        }
    }
}

struct Running {
    pid: Pid,
    began: String,
    deadline: Instant,
}

/// The checks of one container, driven by the monitor's loop.
pub struct Checker {
    spec: HealthSpec,
    /// `boxr`, and the arguments before the test: `--root ROOT exec ID`.
    boxr: PathBuf,
    prefix: Vec<String>,
    output: PathBuf,
    status: Status,
    streak: u32,
    log: VecDeque<Value>,
    started: Instant,
    next: Option<Instant>,
    running: Option<Running>,
}

impl Checker {
    /// The checker of the container in `dir` (`ROOT/containers/ID`); `boxr` runs the checks.
    pub fn new(spec: HealthSpec, boxr: PathBuf, dir: &Path) -> Checker {
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let root = dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"));
        Checker {
            prefix: vec![
                "--root".into(),
                root.display().to_string(),
                "--progress".into(),
                "plain".into(),
                "exec".into(),
                id,
            ],
            boxr,
            output: dir.join("health.out"),
            spec,
            status: Status::Starting,
            streak: 0,
            log: VecDeque::new(),
            started: Instant::now(),
            next: None,
            running: None,
        }
    }

    /// The container (re)started: `starting` again, the first check after one interval.
    pub fn start(&mut self, now: Instant) {
        self.stop();
        self.status = Status::Starting;
        self.streak = 0;
        self.started = now;
        self.next = Some(now + self.interval(now));
    }

    /// The time to the next check: `start_interval` while in the start period (and still
    /// `starting`), else `interval`.
    fn interval(&self, now: Instant) -> Duration {
        let in_start = self.status == Status::Starting
            && now.duration_since(self.started) < Duration::from_millis(self.spec.start_period_ms);
        match self.spec.start_interval_ms {
            n if n > 0 && in_start => Duration::from_millis(n),
            _ => Duration::from_millis(self.spec.interval_ms),
        }
    }

    /// The container ended: no more checks (one running is killed).
    pub fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = kill(r.pid, Signal::SIGKILL);
        }
        self.next = None;
    }

    /// When the monitor must wake up for the checks.
    pub fn deadline(&self) -> Option<Instant> {
        match &self.running {
            Some(r) => Some(r.deadline),
            None => self.next,
        }
    }

    /// Whether `pid` is the running check.
    pub fn owns(&self, pid: Pid) -> bool {
        self.running.as_ref().is_some_and(|r| r.pid == pid)
    }

    /// Starts a check when one is due, or fails one that ran past its timeout: then
    /// `Some(the new status, if it changed)`.
    pub fn tick(&mut self, now: Instant) -> Option<Option<Status>> {
        if let Some(r) = &self.running
            && now >= r.deadline
        {
            let pid = r.pid;
            let _ = kill(pid, Signal::SIGKILL);
            let message = format!(
                "Health check exceeded timeout ({} ms)",
                self.spec.timeout_ms
            );
            return Some(self.record(-1, message));
        }
        if self.running.is_none() && self.next.is_some_and(|n| now >= n) {
            self.next = None;
            if let Err(e) = self.spawn(now) {
                return Some(self.record(-1, format!("cannot run the health check: {e}")));
            }
        }
        None
    }

    fn spawn(&mut self, now: Instant) -> std::io::Result<()> {
        let out = fs::File::create(&self.output).and_then(|f| Ok((f.try_clone()?, f)));
        let child = out.and_then(|(o, e)| {
            Command::new(&self.boxr)
                .args(&self.prefix)
                .args(&self.spec.test)
                .stdin(Stdio::null())
                .stdout(o)
                .stderr(e)
                .spawn()
        });
        let c = child?;
        self.running = Some(Running {
            pid: Pid::from_raw(c.id() as i32),
            began: crate::time::now_rfc3339_nanos(),
            deadline: now + Duration::from_millis(self.spec.timeout_ms),
        });
        Ok(())
    }

    /// The running check exited with `code`. Returns the new status when it changed.
    pub fn finished(&mut self, code: i32) -> Option<Status> {
        let mut output = fs::read(&self.output).unwrap_or_default();
        output.truncate(OUTPUT_MAX);
        self.record(code, String::from_utf8_lossy(&output).into_owned())
    }

    fn record(&mut self, code: i32, output: String) -> Option<Status> {
        let began = self
            .running
            .take()
            .map_or_else(crate::time::now_rfc3339_nanos, |r| r.began);
        self.log.push_back(json!({
            "Start": began, "End": crate::time::now_rfc3339_nanos(), "ExitCode": code, "Output": output,
        }));
        while self.log.len() > KEPT {
            self.log.pop_front();
        }
        let before = self.status;
        let now = Instant::now();
        if code == 0 {
            self.streak = 0;
            self.status = Status::Healthy;
        } else {
            let in_start_period = self.status == Status::Starting
                && now.duration_since(self.started)
                    < Duration::from_millis(self.spec.start_period_ms);
            if !in_start_period {
                self.streak += 1;
                if self.streak >= self.spec.retries {
                    self.status = Status::Unhealthy;
                }
            }
        }
        self.next = Some(now + self.interval(now));
        (self.status != before).then_some(self.status)
    }

    /// `State.Health`, as Docker has it.
    pub fn json(&self) -> Value {
        json!({
            "Status": self.status.as_str(),
            "FailingStreak": self.streak,
            "Log": self.log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::HealthConfig;

    #[test]
    fn options_over_the_image_s_check() {
        let image = HealthConfig {
            test: vec![
                "CMD".into(),
                "curl".into(),
                "-f".into(),
                "http://localhost/".into(),
            ],
            interval: Some(5_000_000_000),
            timeout: None,
            start_period: Some(0),
            start_interval: None,
            retries: Some(4),
        };
        let s = spec(&HealthOptions::default(), Some(&image))
            .unwrap()
            .unwrap();
        assert_eq!(s.test, ["curl", "-f", "http://localhost/"]);
        assert_eq!((s.interval_ms, s.timeout_ms, s.retries), (5000, 30_000, 4));
        let o = HealthOptions {
            cmd: Some("pg_isready".into()),
            interval: Some("1s".into()),
            ..Default::default()
        };
        let s = spec(&o, Some(&image)).unwrap().unwrap();
        assert_eq!(s.test, ["/bin/sh", "-c", "pg_isready"]);
        assert_eq!((s.interval_ms, s.retries), (1000, 4));
        let shell = HealthConfig {
            test: vec!["CMD-SHELL".into(), "exit 0".into()],
            ..Default::default()
        };
        assert_eq!(
            spec(&HealthOptions::default(), Some(&shell))
                .unwrap()
                .unwrap()
                .test,
            ["/bin/sh", "-c", "exit 0"]
        );
        let none = HealthConfig {
            test: vec!["NONE".into()],
            ..Default::default()
        };
        assert_eq!(spec(&HealthOptions::default(), Some(&none)).unwrap(), None);
        let off = HealthOptions {
            disable: true,
            ..Default::default()
        };
        assert_eq!(spec(&off, Some(&image)).unwrap(), None);
        let lonely = HealthOptions {
            retries: Some(2),
            ..Default::default()
        };
        assert!(spec(&lonely, None).is_err());
        let bad = HealthOptions {
            cmd: Some("true".into()),
            interval: Some("soon".into()),
            ..Default::default()
        };
        assert!(spec(&bad, None).is_err());
    }
}
