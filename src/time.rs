//! Time: RFC 3339 formatting and parsing (what OCI configs, logs and events carry), the clock,
//! and the one `SOURCE_DATE_EPOCH` resolver of boxr.
//!
//! A leaf module: it imports no other module of boxr.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time since the Unix epoch (zero for a clock set before it).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Now, in Unix seconds.
pub fn now_secs() -> i64 {
    since_epoch().as_secs() as i64
}

/// Now as RFC 3339 with nanoseconds (`2026-11-29T06:00:00.123456789Z`), as Docker's logs and
/// container states have it.
pub fn now_rfc3339_nanos() -> String {
    let d = since_epoch();
    let secs = rfc3339(d.as_secs() as i64);
    format!("{}.{:09}Z", secs.trim_end_matches('Z'), d.subsec_nanos())
}

/// What `SOURCE_DATE_EPOCH` defaults to when the environment does not set it; each command
/// that stamps a time says which (ARCHITECTURE decision 5).
#[derive(Debug, Clone, Copy)]
pub enum EpochDefault<'a> {
    /// `boxr build`: the time of the build context's last git commit, else 0, so two builds of
    /// one commit agree wherever they run.
    GitCommit(&'a Path),
    /// `boxr import`: 0, so the same rootfs gives the same image id in any store.
    Zero,
    /// `boxr commit`: now, as `docker commit` stamps its images.
    Now,
}

/// `SOURCE_DATE_EPOCH=X` that is not a whole number of seconds.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("SOURCE_DATE_EPOCH=`{0}` is not a number of seconds")]
#[diagnostic(
    code(boxr::source_date_epoch),
    help("unset it, or set it to Unix seconds such as `$(git log -1 --format=%ct)`")
)]
pub struct EpochError(pub String);

/// `SOURCE_DATE_EPOCH`: the environment's value when set and not empty, else `default`.
pub fn source_date_epoch(default: EpochDefault) -> Result<u64, EpochError> {
    if let Ok(v) = std::env::var("SOURCE_DATE_EPOCH")
        && !v.is_empty()
    {
        return v.trim().parse().map_err(|_| EpochError(v));
    }
    Ok(match default {
        EpochDefault::Zero => 0,
        EpochDefault::Now => now_secs().max(0) as u64,
        EpochDefault::GitCommit(context) => git_commit_time(context).unwrap_or(0),
    })
}

/// The commit time of `dir`'s last git commit, if it is in a repository and git is installed.
fn git_commit_time(dir: &Path) -> Option<u64> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["log", "-1", "--format=%ct"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// RFC 3339 UTC time for Unix seconds: `1970-01-01T00:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Unix seconds of an RFC 3339 time (fractions and offsets honoured), if it parses.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &text[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (oh * 3600 + om * 60)
        }
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset)
}

// Howard Hinnant's days-from-civil algorithms.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        for t in [0, 86_399, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20.123456789+01:00"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn now_has_nanoseconds() {
        let t = now_rfc3339_nanos();
        assert_eq!(t.len(), "2026-11-29T06:00:00.123456789Z".len(), "{t}");
        assert!(parse_rfc3339(&t).is_some());
    }
}
