//! How the CLI words things for people, as Docker does: ages, durations, sizes, plurals and
//! tables. One place, so `ps`, `images`, `history`, `gc` and `check` agree.

/// A duration in Docker's words (`units.HumanDuration`): "Less than a second", "1 second",
/// "3 minutes", "About an hour", "5 days", "2 weeks", "3 months", "2 years".
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        _ if s < 60 => format!("{s} seconds"),
        _ if m == 1 => "About a minute".into(),
        _ if m < 60 => format!("{m} minutes"),
        _ if h == 1 => "About an hour".into(),
        _ if h < 48 => format!("{h} hours"),
        _ if h < 24 * 7 * 2 => format!("{} days", h / 24),
        _ if h < 24 * 30 * 2 => format!("{} weeks", h / 24 / 7),
        _ if h < 24 * 365 * 2 => format!("{} months", h / 24 / 30),
        _ => format!("{} years", h / 24 / 365),
    }
}

/// "3 seconds ago", "About an hour ago", for a time `secs` seconds before now.
pub fn ago(secs: i64) -> String {
    format!("{} ago", duration(secs))
}

/// The time since an RFC 3339 instant (the fraction of a second that the monitor's times
/// carry is dropped), in Docker's words; "?" when it does not parse.
pub fn since(rfc3339: &str) -> String {
    let whole = match rfc3339.split_once('.') {
        Some((s, _)) => format!("{s}Z"),
        None => rfc3339.to_owned(),
    };
    match crate::time::parse_rfc3339(&whole) {
        Some(t) => duration(crate::time::now_secs() - t),
        None => "?".into(),
    }
}

/// Sizes in decimal units, as docker prints them: `5.58MB`.
pub fn human_size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
            + units[i]
    }
}

/// "s" unless `n` is 1.
pub fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Left-aligned columns as wide as their widest cell, three spaces apart, like Docker's
/// tabwriter; the first row is the header. Lines carry no trailing spaces.
pub fn table<R: AsRef<[String]>>(rows: &[R]) -> String {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.as_ref().iter().enumerate() {
            if i + 1 == columns {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_like_docker() {
        assert_eq!(ago(30), "30 seconds ago");
        assert_eq!(ago(90), "About a minute ago");
        assert_eq!(ago(3 * 86_400), "3 days ago");
        assert_eq!(ago(56 * 31_536_000 + 5), "56 years ago");
        assert_eq!(duration(0), "Less than a second");
        assert_eq!(duration(47 * 3600), "47 hours");
        assert_eq!(duration(15 * 86_400), "2 weeks");
        assert_eq!(duration(70 * 86_400), "2 months");
        assert_eq!(since("yesterday"), "?");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(5_580_000), "5.58MB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(plural(1), "");
        assert_eq!(plural(2), "s");
    }

    #[test]
    fn tables_align_and_trim() {
        let rows = vec![
            vec!["ID".to_owned(), "NAME".into(), "X".into()],
            vec!["abc".to_owned(), "".into(), "".into()],
        ];
        assert_eq!(table(&rows), "ID    NAME   X\nabc\n");
    }
}
