//! What a project shows: `stack ps` rows, and its containers' output merged, in time order
//! (`stack logs`) or as it arrives (`up` in the foreground, `stack logs -f`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{StackError, number_of, service_of};
use crate::container::logs::{self, LogOptions};
use crate::container::state::{self, Info, Status};

/// One container of `stack ps`.
#[derive(Debug, Clone)]
pub struct ServiceRow {
    pub name: String,
    pub service: String,
    pub number: u32,
    pub id: String,
    pub image: String,
    pub status: Status,
    pub ports: Vec<crate::net::ports::Published>,
}

/// The rows of `stack ps`: running containers, or (with `all`) every one.
pub fn ps(containers: &[Info], all: bool) -> Vec<ServiceRow> {
    containers
        .iter()
        .filter_map(|i| {
            let status = state::status(i);
            let running = matches!(status, Status::Running { .. } | Status::Restarting { .. });
            (all || running).then(|| ServiceRow {
                name: i.name.clone().unwrap_or_else(|| i.id[..12].to_owned()),
                service: service_of(i).to_owned(),
                number: number_of(i),
                id: i.id.clone(),
                image: i.image.clone(),
                ports: state::ports(i, &status),
                status,
            })
        })
        .collect()
}

/// One line of a container's output.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// The container's name.
    pub container: String,
    pub service: String,
    pub stream: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
    pub text: String,
}

/// The logged output of `containers`, merged in time order.
pub fn logs(containers: &[Info], opts: &LogOptions) -> Result<Vec<LogLine>, StackError> {
    let mut all = Vec::new();
    for i in containers {
        let name = i.name.clone().unwrap_or_else(|| i.id[..12].to_owned());
        logs::read(
            i,
            &LogOptions {
                follow: false,
                ..opts.clone()
            },
            |l| {
                all.push(LogLine {
                    container: name.clone(),
                    service: service_of(i).to_owned(),
                    stream: l.stream.to_owned(),
                    time: l.time.to_owned(),
                    text: l.text.to_owned(),
                })
            },
        )
        .map_err(|e| StackError::container(service_of(i), e))?;
    }
    // RFC 3339 times of one clock sort as text, and the sort is stable within a container.
    all.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(all)
}

/// Follows the output of `containers` as it arrives, calling `out` for each line (from this
/// thread), until every container has ended or `stop` is set. `since_now`: only new lines.
pub fn follow_logs(
    containers: &[Info],
    opts: &LogOptions,
    stop: &AtomicBool,
    mut out: impl FnMut(LogLine),
) {
    let (tx, rx) = mpsc::channel::<LogLine>();
    std::thread::scope(|scope| {
        for i in containers {
            let tx = tx.clone();
            let opts = LogOptions {
                follow: true,
                ..opts.clone()
            };
            scope.spawn(move || {
                let name = i.name.clone().unwrap_or_else(|| i.id[..12].to_owned());
                let service = service_of(i).to_owned();
                let _ = logs::read(i, &opts, |l| {
                    let _ = tx.send(LogLine {
                        container: name.clone(),
                        service: service.clone(),
                        stream: l.stream.to_owned(),
                        time: l.time.to_owned(),
                        text: l.text.to_owned(),
                    });
                });
            });
        }
        drop(tx);
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => out(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if stop.load(Ordering::SeqCst) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        // Readers of containers that still run end with them; when stopping, the caller
        // stops them, and what they print until then is shown.
        while let Ok(line) = rx.recv() {
            out(line);
        }
    });
}
