//! `boxr logs`: a detached container's output as its monitor logged it (`container.log`, JSON
//! lines `{"time", "stream", "log"}`, rotated into `container.log.N` by size), read back oldest
//! first, limited by time (`--since`, `--until`) and count (`--tail`), and followed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::state::{self, Info, Status};
use super::{ContainerError, invalid};

/// `boxr logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// Only the last N lines (of those in the time range).
    pub tail: Option<usize>,
    /// Nanoseconds since the epoch: lines at or after it.
    pub since: Option<i128>,
    /// Nanoseconds since the epoch: lines before it (and `follow` stops there).
    pub until: Option<i128>,
}

/// One logged line.
pub struct Line<'a> {
    pub stream: &'a str,
    pub time: &'a str,
    /// The text, with its newline.
    pub text: &'a str,
}

fn now_nanos() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// An RFC 3339 time (with or without a fraction) in nanoseconds since the epoch.
fn rfc3339_nanos(text: &str) -> Option<i128> {
    let secs = crate::time::parse_rfc3339(text)? as i128;
    let frac = text
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|f| {
            f.bytes()
                .take_while(u8::is_ascii_digit)
                .collect::<Vec<u8>>()
        })
        .unwrap_or_default();
    let mut nanos: i128 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| (d - b'0') as i128);
    }
    Some(secs * 1_000_000_000 + nanos)
}

/// A time as `docker logs --since/--until` takes it: RFC 3339, seconds since the epoch (with a
/// fraction or not), or a duration before now (`10m`, `1h30m`).
pub fn parse_time(flag: &str, text: &str) -> Result<i128, ContainerError> {
    if let Some(t) = rfc3339_nanos(text) {
        return Ok(t);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (s, f) = text.split_once('.').unwrap_or((text, ""));
        let secs: i128 = s.parse().unwrap_or(0);
        let mut nanos: i128 = 0;
        for i in 0..9 {
            nanos = nanos * 10 + f.as_bytes().get(i).map_or(0, |d| (d - b'0') as i128);
        }
        return Ok(secs * 1_000_000_000 + nanos);
    }
    match crate::values::parse_duration(text) {
        Ok(d) => Ok(now_nanos() - d.as_nanos() as i128),
        Err(_) => Err(invalid(
            format!("{flag} {text}: not a time"),
            Some(
                "RFC 3339 (2026-11-29T10:00:00Z), seconds since the epoch, or a duration before now (10m)",
            ),
        )),
    }
}

/// The rotated log files, oldest first, then the current one.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    let i = n.strip_prefix("container.log.")?.parse().ok()?;
                    Some((i, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    rotated.sort_by_key(|e| std::cmp::Reverse(e.0));
    rotated
        .into_iter()
        .map(|(_, p)| p)
        .chain(std::iter::once(dir.join("container.log")))
        .collect()
}

/// Reads the container's log, calling `out` for each line that passes the options; with
/// `follow`, keeps reading until the container ends (or `until` passes).
pub fn read(
    info: &Info,
    opts: &LogOptions,
    mut out: impl FnMut(Line<'_>),
) -> Result<(), ContainerError> {
    let current = info.dir.join("container.log");
    if !current.exists() {
        return Err(invalid(
            format!(
                "{} has no logs: only detached containers (`run -d`) keep their output",
                &info.id[..12]
            ),
            None,
        ));
    }
    let in_range = |v: &serde_json::Value| {
        let t = v["time"].as_str().and_then(rfc3339_nanos).unwrap_or(0);
        opts.since.is_none_or(|s| t >= s) && opts.until.is_none_or(|u| t < u)
    };
    let emit = |v: &serde_json::Value, out: &mut dyn FnMut(Line<'_>)| {
        out(Line {
            stream: v["stream"].as_str().unwrap_or("stdout"),
            time: v["time"].as_str().unwrap_or_default(),
            text: v["log"].as_str().unwrap_or_default(),
        })
    };
    // The file being read now, and where in it: read to its end before it is rotated away.
    let mut f =
        File::open(&current).map_err(|e| invalid(format!("cannot read the log: {e}"), None))?;
    let mut ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
    let mut text = String::new();
    for p in files(&info.dir) {
        if p == current {
            let _ = f.read_to_string(&mut text);
        } else {
            text.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
    }
    let mut pos = f.stream_position().unwrap_or(0);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v| in_range(v))
        .collect();
    let skip = opts.tail.map_or(0, |n| lines.len().saturating_sub(n));
    for v in &lines[skip..] {
        emit(v, &mut out);
    }
    if !opts.follow {
        return Ok(());
    }
    let mut partial = String::new();
    loop {
        let running = matches!(
            state::status(info),
            Status::Running { .. } | Status::Created | Status::Restarting { .. }
        );
        // Rotated: what is left of the old file, then the new one from its start.
        let rotated = std::fs::metadata(&current).is_ok_and(|m| m.ino() != ino);
        let mut more = String::new();
        if f.seek(SeekFrom::Start(pos)).is_ok() {
            let _ = f.read_to_string(&mut more);
        }
        pos += more.len() as u64;
        if rotated && let Ok(g) = File::open(&current) {
            ino = g.metadata().map(|m| m.ino()).unwrap_or(0);
            f = g;
            pos = 0;
        }
        partial.push_str(&more);
        while let Some(i) = partial.find('\n') {
            let line: String = partial.drain(..=i).collect();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim_end())
                && in_range(&v)
            {
                emit(&v, &mut out);
            }
        }
        let past_until = opts.until.is_some_and(|u| now_nanos() >= u);
        if past_until || (!running && more.is_empty() && !rotated) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
