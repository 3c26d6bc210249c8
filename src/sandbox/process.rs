//! The process inside: who it runs as (resolved through the image's /etc/passwd and
//! /etc/group, after pivot_root), its environment, working directory, and exec.

use std::ffi::CString;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde::{Deserialize, Serialize};

use super::spec::ProcessSpec;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A process ready to exec: ids resolved, environment complete.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Resolved {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub stdin: bool,
    pub tty: bool,
    pub rlimits: Vec<super::spec::Rlimit>,
    pub oom_score_adj: Option<i32>,
}

/// Why a process could not be started: the message, and the exit code it maps to
/// (125: boxr's fault or the spec's; 126: cannot be executed; 127: not found).
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

pub(super) fn start_err(code: i32, message: impl Into<String>) -> StartError {
    StartError {
        code,
        message: message.into(),
    }
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

fn passwd_entries() -> Vec<Passwd> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(Passwd {
                name: f[0].to_owned(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_owned(),
            })
        })
        .collect()
}

/// (name, gid, members) of /etc/group.
fn group_entries() -> Vec<(String, u32, Vec<String>)> {
    fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some((
                f[0].to_owned(),
                f[2].parse().ok()?,
                f[3].split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ))
        })
        .collect()
}

/// Resolves user, groups, HOME and PATH against the container's own files (call after
/// pivot_root), and creates the working directory if it is missing, as Docker does.
pub fn resolve(spec: &ProcessSpec) -> Result<Resolved, StartError> {
    let users = passwd_entries();
    let (user, group) = match spec.user.as_deref() {
        None | Some("") => ("0", None),
        Some(u) => match u.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (u, None),
        },
    };
    let entry = users.iter().find(|p| p.name == user).or_else(|| {
        user.parse::<u32>()
            .ok()
            .and_then(|n| users.iter().find(|p| p.uid == n))
    });
    let uid = match (user.parse::<u32>(), entry) {
        (Ok(n), _) => n,
        (Err(_), Some(p)) => p.uid,
        (Err(_), None) => {
            return Err(start_err(
                125,
                format!("unable to find user {user}: no matching entries in passwd file"),
            ));
        }
    };
    let groups_db = group_entries();
    // A group by id, or by name through the container's /etc/group.
    let group_id = |g: &str| match g.parse::<u32>() {
        Ok(n) => Ok(n),
        Err(_) => groups_db
            .iter()
            .find(|(name, _, _)| name == g)
            .map(|(_, id, _)| *id)
            .ok_or_else(|| {
                start_err(
                    125,
                    format!("unable to find group {g}: no matching entries in group file"),
                )
            }),
    };
    let gid = match group {
        Some(g) => group_id(g)?,
        None => entry.map_or(0, |p| p.gid),
    };
    // Supplementary groups: those that list the user by name (only when no group was forced).
    let mut groups = Vec::new();
    if group.is_none()
        && let Some(p) = entry
    {
        groups = groups_db
            .iter()
            .filter(|(_, id, members)| *id != gid && members.contains(&p.name))
            .map(|(_, id, _)| *id)
            .collect();
    }
    for g in &spec.group_add {
        let id = group_id(g)?;
        if !groups.contains(&id) {
            groups.push(id);
        }
    }
    let mut env = spec.env.clone();
    let has = |env: &[String], k: &str| {
        env.iter()
            .any(|e| e.split_once('=').is_some_and(|(n, _)| n == k))
    };
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", entry.map_or("/", |p| p.home.as_str())));
    }
    let cwd = if spec.cwd.is_empty() {
        "/".to_owned()
    } else {
        spec.cwd.clone()
    };
    if fs::metadata(&cwd).is_err() {
        fs::create_dir_all(&cwd).map_err(|e| {
            start_err(
                125,
                format!("cannot create the working directory {cwd}: {e}"),
            )
        })?;
    }
    Ok(Resolved {
        args: spec.args.clone(),
        env,
        cwd,
        uid,
        gid,
        groups,
        stdin: spec.stdin,
        tty: spec.tty,
        rlimits: spec.rlimits.clone(),
        oom_score_adj: spec.oom_score_adj,
    })
}

/// Finds `cmd` as `execvp` would, with the container's PATH.
fn find_executable(cmd: &str, env: &[String]) -> Result<String, StartError> {
    if cmd.contains('/') {
        return Ok(cmd.to_owned());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = None;
    for dir in path.split(':') {
        let candidate = format!("{}/{cmd}", if dir.is_empty() { "." } else { dir });
        if let Ok(m) = fs::metadata(&candidate) {
            if m.is_file() && m.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
            denied.get_or_insert(candidate);
        }
    }
    match denied {
        Some(c) => Ok(c), // exec will report the permission problem (126)
        None => Err(start_err(
            127,
            format!("exec: \"{cmd}\": executable file not found in $PATH"),
        )),
    }
}

/// A command ready for execve: its program's path, its arguments and environment.
pub struct Prepared {
    /// As the user gave it (the first argument), for messages.
    pub command: String,
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
}

/// Readies the command, as already confined by `confine::apply`: finds its program on the
/// `PATH`, gives it /dev/null as stdin when it has none, and enters its working directory (this
/// process's, which the command inherits). What is left is the execve itself, which boxr-init
/// makes (see `stub`).
pub fn prepare(p: &Resolved) -> Result<Prepared, StartError> {
    let Some(cmd) = p.args.first() else {
        return Err(start_err(125, "no command specified"));
    };
    let path = find_executable(cmd, &p.env)?;
    if !p.stdin && !p.tty {
        let null = fs::File::open("/dev/null")
            .map_err(|e| start_err(125, format!("cannot open /dev/null: {e}")))?;
        nix::unistd::dup2_stdin(&null)
            .map_err(|e| start_err(125, format!("cannot detach stdin: {}", e.desc())))?;
    }
    nix::unistd::chdir(p.cwd.as_str()).map_err(|e| {
        start_err(
            125,
            format!("cannot enter the working directory {}: {}", p.cwd, e.desc()),
        )
    })?;
    let to_c = |s: &String| {
        CString::new(s.as_bytes()).map_err(|_| start_err(125, "an argument contains a NUL byte"))
    };
    Ok(Prepared {
        command: cmd.clone(),
        path: CString::new(path.as_bytes())
            .map_err(|_| start_err(125, "the command contains a NUL byte"))?,
        args: p.args.iter().map(to_c).collect::<Result<_, _>>()?,
        env: p.env.iter().map(to_c).collect::<Result<_, _>>()?,
    })
}
