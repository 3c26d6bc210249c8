//! Neutral value parsers shared by the manifest, the container options and the CLI: sizes,
//! durations, ports and publish specs, capabilities, modes, users, signals, restart policies,
//! security options, hostnames and names.
//!
//! A leaf module (ARCHITECTURE.md's table): it imports no other module of boxr. Every parser
//! takes the text of one token and returns either the typed value or a [`Bad`] that says why,
//! so a caller can point a diagnostic at the token (the manifest) or print it (a flag).

use std::fmt;
use std::time::Duration;

use serde::Serialize;

mod ports;
pub use ports::*;

/// Why a value was rejected, and what to write instead.
#[derive(Debug, Clone, PartialEq)]
pub struct Bad {
    pub reason: String,
    pub help: Option<String>,
}

fn bad(reason: impl Into<String>) -> Bad {
    Bad {
        reason: reason.into(),
        help: None,
    }
}

impl Bad {
    /// A value rejected for `reason`, with what to write instead.
    pub fn new(reason: impl Into<String>, help: Option<&str>) -> Bad {
        Bad {
            reason: reason.into(),
            help: help.map(str::to_owned),
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Bad {}

/// A rejected value as a diagnostic of its own (its help, if any), for a flag's value.
impl miette::Diagnostic for Bad {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("boxr::value"))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display + 'a>)
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A size in bytes. Units follow Docker: K, M, G, T (with or without `B` or `iB`) are all powers
/// of 1024, so `memory "256m"` means the same as `docker run --memory 256m`.
pub fn parse_size(text: &str) -> Result<u64, Bad> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let usage = "write a number with an optional unit: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB";
    if num.is_empty() {
        return Err(bad(format!("`{text}` does not start with a number")).help(usage));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| bad(format!("`{num}` is not a number")).help(usage))?;
    let unit = unit.trim();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(bad(format!("unknown size unit `{unit}`")).help(usage)),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(bad(format!("`{text}` is too large")));
    }
    if bytes.fract() != 0.0 {
        return Err(bad(format!("`{text}` is not a whole number of bytes")));
    }
    Ok(bytes as u64)
}

/// A duration: `500ms`, `1s`, `1m30s`, `2h`; units ns, us, ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, Bad> {
    let usage = "write a number with a unit, e.g. 500ms, 10s, 1m30s (units: ns, us, ms, s, m, h)";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("the duration is empty").help(usage));
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return Err(bad(format!("`{text}` is not a duration")).help(usage));
        }
        let value: f64 = rest[..n]
            .parse()
            .map_err(|_| bad(format!("`{}` is not a number", &rest[..n])).help(usage))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let secs = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(bad(format!("`{text}` has no unit")).help(usage));
            }
            other => return Err(bad(format!("unknown duration unit `{other}`")).help(usage)),
        };
        let part = value * secs;
        if !part.is_finite() || part > 1e9 {
            return Err(bad(format!("`{text}` is too long")));
        }
        total += Duration::from_secs_f64(part);
    }
    Ok(total)
}

/// A capability name, canonical form `CAP_NAME`, or `ALL`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum CapName {
    All,
    Cap(caps::Capability),
}

impl From<CapName> for String {
    fn from(c: CapName) -> String {
        c.to_string()
    }
}

impl fmt::Display for CapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapName::All => f.write_str("ALL"),
            CapName::Cap(c) => write!(f, "{c}"),
        }
    }
}

/// Accepts names with or without `CAP_`, in any case, and `ALL`.
pub fn parse_capability(text: &str) -> Result<CapName, Bad> {
    let upper = text.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(CapName::All);
    }
    let full = if upper.starts_with("CAP_") {
        upper.clone()
    } else {
        format!("CAP_{upper}")
    };
    if let Ok(cap) = full.parse::<caps::Capability>() {
        return Ok(CapName::Cap(cap));
    }
    let names: Vec<String> = caps::all()
        .iter()
        .map(|c| c.to_string()["CAP_".len()..].to_owned())
        .collect();
    let short = full.trim_start_matches("CAP_");
    let b = bad(format!("unknown capability `{text}`"));
    Err(match suggest(short, names.iter().map(String::as_str)) {
        Some(s) => b.help(format!("did you mean `{s}`?")),
        None => b.help("see capabilities(7) for the names, e.g. NET_ADMIN, SYS_PTRACE, or ALL"),
    })
}

/// A file mode for `chmod=`, written in octal as a string: `"0755"`, `"644"`.
pub fn parse_mode(text: &str) -> Result<u32, Bad> {
    let usage = "write the mode in octal as a string, e.g. \"0755\"";
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad(format!("`{text}` is not an octal mode")).help(usage));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(bad(format!("`{text}` is larger than 7777")).help(usage)),
    }
}

/// A user or group: a name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum Id {
    Num(u32),
    Name(String),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Num(n) => write!(f, "{n}"),
            Id::Name(s) => f.write_str(s),
        }
    }
}

/// `USER[:GROUP]`, each a name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct UserSpec {
    pub user: Id,
    pub group: Option<Id>,
}

impl fmt::Display for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.group {
            Some(g) => write!(f, "{}:{g}", self.user),
            None => write!(f, "{}", self.user),
        }
    }
}

fn parse_id(text: &str, what: &str) -> Result<Id, Bad> {
    let usage = "write USER[:GROUP], each a name (like `nobody`) or a number (like `1000`)";
    if text.is_empty() {
        return Err(bad(format!("the {what} is empty")).help(usage));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(n) if n != u32::MAX => Ok(Id::Num(n)),
            _ => Err(bad(format!("{what} id {text} is out of range")).help(usage)),
        };
    }
    // POSIX portable names plus what useradd accepts: letters, digits, `.`, `_`, `-`, a
    // trailing `$`, not starting with `-`.
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let body = text.strip_suffix('$').unwrap_or(text);
    if text.starts_with('-') || !body.chars().all(ok_char) || text.len() > 32 {
        return Err(bad(format!("`{text}` is not a valid {what} name")).help(usage));
    }
    Ok(Id::Name(text.to_owned()))
}

pub fn parse_user(text: &str) -> Result<UserSpec, Bad> {
    let (user, group) = match text.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (text, None),
    };
    Ok(UserSpec {
        user: parse_id(user, "user")?,
        group: group.map(|g| parse_id(g, "group")).transpose()?,
    })
}

/// A signal, by name (`SIGTERM`, `term`, `SIGRTMIN+3`) or number (`15`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Signal(pub i32);

/// The first and last real-time signal numbers as glibc presents them to programs.
const SIGRTMIN: i32 = 34;
const SIGRTMAX: i32 = 64;

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match nix::sys::signal::Signal::try_from(self.0) {
            Ok(s) => f.write_str(s.as_str()),
            Err(_) => write!(f, "SIGRTMIN+{}", self.0 - SIGRTMIN),
        }
    }
}

pub fn parse_signal(text: &str) -> Result<Signal, Bad> {
    let usage = "write a signal name like SIGTERM, TERM or SIGRTMIN+1, or a number from 1 to 64";
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=SIGRTMAX).contains(&n) {
            Ok(Signal(n))
        } else {
            Err(bad(format!("signal {n} is out of range")).help(usage))
        };
    }
    let upper = text.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(off) = full.strip_prefix("SIGRTMIN+")
        && let Ok(n) = off.parse::<i32>()
        && (0..=SIGRTMAX - SIGRTMIN).contains(&n)
    {
        return Ok(Signal(SIGRTMIN + n));
    }
    if full == "SIGRTMIN" {
        return Ok(Signal(SIGRTMIN));
    }
    if full == "SIGRTMAX" {
        return Ok(Signal(SIGRTMAX));
    }
    if let Ok(s) = full.parse::<nix::sys::signal::Signal>() {
        return Ok(Signal(s as i32));
    }
    let b = bad(format!("unknown signal `{text}`"));
    let names: Vec<&str> = nix::sys::signal::Signal::iterator()
        .map(|s| s.as_str())
        .collect();
    Err(match suggest(&full, names) {
        Some(s) => b.help(format!("did you mean `{s}`?")),
        None => b.help(usage),
    })
}

/// A restart policy: `no`, `on-failure[:MAX]`, `always`, `unless-stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "policy")]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure {
        max_retries: Option<u32>,
    },
    Always,
    UnlessStopped,
}

pub fn parse_restart(text: &str) -> Result<RestartPolicy, Bad> {
    let usage = "use no, on-failure, on-failure:MAX_RETRIES, always or unless-stopped";
    let (name, max) = match text.split_once(':') {
        Some((n, m)) => (n, Some(m)),
        None => (text, None),
    };
    let policy =
        match name {
            "no" => RestartPolicy::No,
            "always" => RestartPolicy::Always,
            "unless-stopped" => RestartPolicy::UnlessStopped,
            "on-failure" => RestartPolicy::OnFailure {
                max_retries: match max {
                    Some(m) => Some(m.parse::<u32>().map_err(|_| {
                        bad(format!("`{m}` is not a number of retries")).help(usage)
                    })?),
                    None => None,
                },
            },
            other => {
                let b = bad(format!("unknown restart policy `{other}`"));
                return Err(
                    match suggest(other, ["no", "on-failure", "always", "unless-stopped"]) {
                        Some(s) => b.help(format!("did you mean `{s}`?")),
                        None => b.help(usage),
                    },
                );
            }
        };
    if max.is_some() && !matches!(policy, RestartPolicy::OnFailure { .. }) {
        return Err(bad(format!("only on-failure takes a retry count, not `{name}`")).help(usage));
    }
    Ok(policy)
}

/// Parses one of a fixed set of keywords (`none|host`, `started|healthy|completed`, ...).
pub fn parse_keyword<T: Copy>(
    text: &str,
    what: &str,
    options: &[(&'static str, T)],
) -> Result<T, Bad> {
    if let Some((_, v)) = options.iter().find(|(k, _)| *k == text) {
        return Ok(*v);
    }
    let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
    let b = bad(format!("unknown {what} `{text}`"));
    Err(match suggest(text, names.iter().copied()) {
        Some(s) => b.help(format!("did you mean `{s}`?")),
        None => b.help(format!("use one of: {}", names.join(", "))),
    })
}

/// A security option, in Docker's `--security-opt` syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecurityOpt {
    /// `seccomp=unconfined`
    SeccompUnconfined,
    /// `seccomp=PATH`: a profile in Docker's JSON format (relative to the manifest's directory).
    SeccompProfile(String),
    /// `no-new-privileges`, `no-new-privileges=true|false` or `no-new-privileges:true|false`.
    NoNewPrivileges(bool),
}

pub fn parse_security_opt(text: &str) -> Result<SecurityOpt, Bad> {
    let usage = "use seccomp=unconfined, seccomp=PROFILE.json or no-new-privileges[=true|false]";
    let (key, value) = match text.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (text, None),
    };
    match (key, value) {
        ("seccomp", Some("unconfined")) => Ok(SecurityOpt::SeccompUnconfined),
        ("seccomp", Some(path)) if !path.is_empty() => {
            Ok(SecurityOpt::SeccompProfile(path.to_owned()))
        }
        ("no-new-privileges", None | Some("true")) => Ok(SecurityOpt::NoNewPrivileges(true)),
        ("no-new-privileges", Some("false")) => Ok(SecurityOpt::NoNewPrivileges(false)),
        ("apparmor" | "label" | "systempaths" | "mask" | "unmask", _) => {
            Err(bad(format!("`{key}` is not supported by boxr")).help(usage))
        }
        _ => {
            let b = bad(format!("unknown security option `{text}`"));
            Err(match suggest(key, ["seccomp", "no-new-privileges"]) {
                Some(s) if s != key => b.help(format!("did you mean `{s}`? ({usage})")),
                _ => b.help(usage),
            })
        }
    }
}

/// A hostname: at most 64 characters (HOST_NAME_MAX), dot-separated labels of letters, digits
/// and `-`, none starting or ending with `-`.
pub fn parse_hostname(text: &str) -> Result<String, Bad> {
    let usage = "use letters, digits, `-` and `.`, at most 64 characters";
    if text.is_empty() || text.len() > 64 {
        return Err(bad(format!("`{text}` is not 1 to 64 characters long")).help(usage));
    }
    for label in text.split('.') {
        if label.is_empty()
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(format!("`{text}` is not a valid hostname")).help(usage));
        }
    }
    Ok(text.to_owned())
}

/// A CPU or memory-node list as cgroups take it (`0-3,5`): the numbers it names, in order.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, Bad> {
    let usage = "write a list like 0-3 or 0,2";
    let mut out = Vec::new();
    for part in text.trim().split(',') {
        let num = |t: &str| {
            t.parse::<u32>()
                .map_err(|_| bad(format!("`{text}` is not a list of numbers")).help(usage))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b || b - a > 65_536 {
            return Err(bad(format!("`{part}` is not a range (low-high)")).help(usage));
        }
        out.extend(a..=b);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `text` (an error message that may quote a file's bytes) made fit for a terminal: control
/// characters escaped, undecodable bytes as `?`, at most 120 characters.
pub fn printable(text: &str) -> String {
    const MAX: usize = 120;
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        match c {
            '\u{FFFD}' => out.push('?'),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// An environment variable name: not empty, no `=` and no NUL.
pub fn check_env_name(text: &str) -> Result<(), Bad> {
    if text.is_empty() {
        return Err(bad("the variable name is empty"));
    }
    if text.contains(['=', '\0']) {
        return Err(bad(format!("`{text}` contains `=` or a NUL byte")));
    }
    Ok(())
}

/// A secret's name (also its file name under /run/secrets): letters, digits, `.`, `_`, `-`.
pub fn check_secret_name(text: &str) -> Result<(), Bad> {
    if text.is_empty() {
        return Err(bad("the secret name is empty"));
    }
    if text.starts_with('.')
        || !text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(bad(format!("`{text}` is not a valid secret name"))
            .help("use letters, digits, `.`, `_` and `-` (not first `.`)"));
    }
    Ok(())
}

/// An absolute path inside a container.
pub fn check_container_path(text: &str) -> Result<(), Bad> {
    if !text.starts_with('/') {
        return Err(
            bad(format!("`{text}` is not an absolute path")).help(format!(
                "paths inside the container start with `/`, e.g. `/{text}`"
            )),
        );
    }
    if text.contains('\0') {
        return Err(bad("the path contains a NUL byte"));
    }
    Ok(())
}

/// A named volume: starts with a letter or digit, then letters, digits, `_`, `.`, `-`.
pub fn check_volume_name(text: &str) -> Result<(), Bad> {
    let mut chars = text.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(bad(format!("`{text}` is not a valid volume name")).help(
            "a bind mount source starts with `/`, `./` or `../`; a named volume uses letters, digits, `_`, `.` and `-`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_docker_units() {
        assert_eq!(parse_size("256MiB"), Ok(256 << 20));
        assert_eq!(parse_size("256m"), Ok(256 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("10"), Ok(10));
        assert_eq!(parse_size("4kb"), Ok(4096));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("0.5B").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn capabilities_any_case_with_or_without_prefix() {
        let want = CapName::Cap(caps::Capability::CAP_NET_ADMIN);
        assert_eq!(parse_capability("net_admin"), Ok(want.clone()));
        assert_eq!(parse_capability("CAP_NET_ADMIN"), Ok(want.clone()));
        assert_eq!(parse_capability("cap_Net_Admin"), Ok(want));
        assert_eq!(parse_capability("all"), Ok(CapName::All));
        let err = parse_capability("NET_ADMN").unwrap_err();
        assert_eq!(err.help.as_deref(), Some("did you mean `NET_ADMIN`?"));
    }

    #[test]
    fn modes_users_signals() {
        assert_eq!(parse_mode("0755"), Ok(0o755));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        assert!(parse_mode("0855").is_err());
        assert!(parse_mode("17777").is_err());
        let u = parse_user("1000:staff").unwrap();
        assert_eq!(u.user, Id::Num(1000));
        assert_eq!(u.group, Some(Id::Name("staff".into())));
        assert!(parse_user("bad user").is_err());
        assert!(parse_user("4294967295").is_err());
        assert_eq!(parse_signal("term"), Ok(Signal(15)));
        assert_eq!(parse_signal("SIGKILL"), Ok(Signal(9)));
        assert_eq!(parse_signal("SIGRTMIN+3"), Ok(Signal(37)));
        assert_eq!(
            parse_signal("SIGRTMIN+3").unwrap().to_string(),
            "SIGRTMIN+3"
        );
        assert_eq!(parse_signal("15").unwrap().to_string(), "SIGTERM");
        assert!(parse_signal("SIGTREM").is_err());
        assert!(parse_signal("65").is_err());
    }

    #[test]
    fn restart_and_security_opts() {
        assert_eq!(
            parse_restart("on-failure:3"),
            Ok(RestartPolicy::OnFailure {
                max_retries: Some(3)
            })
        );
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert_eq!(
            parse_security_opt("no-new-privileges"),
            Ok(SecurityOpt::NoNewPrivileges(true))
        );
        assert_eq!(
            parse_security_opt("no-new-privileges:false"),
            Ok(SecurityOpt::NoNewPrivileges(false))
        );
        assert_eq!(
            parse_security_opt("seccomp=unconfined"),
            Ok(SecurityOpt::SeccompUnconfined)
        );
        assert!(parse_security_opt("apparmor=x").is_err());
    }

    #[test]
    fn hostnames() {
        assert!(parse_hostname("web-1.local").is_ok());
        assert!(parse_hostname("-web").is_err());
        assert!(parse_hostname("we_b").is_err());
        assert!(parse_hostname(&"a".repeat(65)).is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,5").unwrap(), [0, 1, 2, 3, 5]);
        assert_eq!(parse_cpu_list("1").unwrap(), [1]);
        for bad in ["", "-1", "3-1", "a", "0,,1", "1-"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn printable_text() {
        assert_eq!(printable("ok: a\u{1b}[31m\u{FFFD}b"), "ok: a\\u{1b}[31m?b");
        assert_eq!(printable(&"x".repeat(200)).chars().count(), 121);
    }
}
