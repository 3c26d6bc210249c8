//! `boxr up` in the foreground: every container's output merged as it arrives; Ctrl-C (or
//! SIGTERM) stops the stack gracefully, in dependency order; a second one kills it. With
//! `abort_on_exit`, the first container to end stops the rest.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use signal_hook::consts::{SIGINT, SIGTERM};

use super::{LogLine, Project, StackError, follow_logs, service_of, stop_services};
use crate::container::lifecycle;
use crate::container::logs::LogOptions;
use crate::container::state::{self, Info, Status};

/// What the foreground `up` does and reports.
pub struct Foreground<'a> {
    /// Only lines logged from this time on (nanoseconds since the epoch).
    pub since: Option<i128>,
    /// Stop everything when any container ends (`--abort-on-container-exit`).
    pub abort_on_exit: bool,
    /// Hears what is going on (`Gracefully stopping...`, `web-1 exited with code 0`).
    pub notice: &'a (dyn Fn(&str) + Sync),
    /// Whether a container's output is shown (`--attach`, `--no-attach`); the others are
    /// stopped, watched and waited for all the same.
    pub shown: &'a (dyn Fn(&Info) -> bool + Sync),
}

/// Follows `containers` until they have all ended (stopped by a signal, or on their own);
/// `out` gets each line of those `fg.shown` picks. Returns whether the stack was stopped by a signal or an exit.
pub fn attach(
    project: &Project<'_>,
    containers: &[Info],
    fg: &Foreground<'_>,
    out: impl FnMut(LogLine),
) -> Result<bool, StackError> {
    let stop = AtomicBool::new(false);
    let signals = AtomicU8::new(0);
    let done = AtomicBool::new(false);
    let mut sigs = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| StackError::invalid(format!("cannot handle signals: {e}"), None))?;
    let handle = sigs.handle();
    let opts = LogOptions {
        since: fg.since,
        ..Default::default()
    };
    let stopping = |why: &str| {
        if !stop.swap(true, Ordering::SeqCst) {
            (fg.notice)(why);
            let _ = stop_services(project, containers, None, &|_| {});
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in sigs.forever() {
                if signals.fetch_add(1, Ordering::SeqCst) == 0 {
                    // The stop runs in a thread of its own, so a second signal is heard.
                    scope
                        .spawn(|| stopping("Gracefully stopping... (press Ctrl+C again to force)"));
                } else {
                    (fg.notice)("Killing...");
                    for i in containers {
                        state::mark_stopped(i);
                        let _ = lifecycle::signal(i, Signal::SIGKILL);
                    }
                }
            }
        });
        // Says when each container ends, and stops the rest on the first with abort_on_exit.
        scope.spawn(|| {
            let mut ended = vec![false; containers.len()];
            while !done.load(Ordering::SeqCst) {
                for (k, i) in containers.iter().enumerate() {
                    if ended[k] {
                        continue;
                    }
                    if let Status::Exited { code, .. } = state::status(i) {
                        ended[k] = true;
                        let name = i.name.as_deref().unwrap_or(service_of(i));
                        (fg.notice)(&format!(
                            "{name} exited with code {}",
                            code.map_or("?".to_owned(), |c| c.to_string())
                        ));
                        if fg.abort_on_exit && !stop.load(Ordering::SeqCst) {
                            scope.spawn(|| stopping("Aborting on container exit..."));
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let shown: Vec<Info> = containers
            .iter()
            .filter(|i| (fg.shown)(i))
            .cloned()
            .collect();
        follow_logs(&shown, &opts, &AtomicBool::new(false), out);
        // Those not shown may still run.
        while !containers
            .iter()
            .all(|i| matches!(state::status(i), Status::Exited { .. } | Status::Created))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        done.store(true, Ordering::SeqCst);
        handle.close();
    });
    Ok(stop.load(Ordering::SeqCst))
}
