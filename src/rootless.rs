//! Rootless: an unprivileged boxr runs in a user namespace of its own, in which the user is root
//! and the ids of the user's /etc/subuid and /etc/subgid ranges are the other users (podman's
//! rootless model). The namespace, with a mount namespace it owns, is made once by
//! `newuidmap`/`newgidmap` (the uidmap package: setuid helpers of the distribution, none of
//! boxr's) and held by a pause process (`boxr __pause`); every command joins it first thing,
//! while it is still single-threaded. So the store, the layers (with the ownership they declare,
//! shifted into the user's range), the overlay mounts and the containers are all made inside
//! it, and every command sees the same ones: a later `exec` can enter a container an earlier
//! `run -d` made.
//!
//! Without a range for the user, only the user is mapped (to root): a warning says what will
//! fail (a file of another owner in an image becomes root's; `chown` to another id fails).
//!
//! Where the user namespace is joined from (the pause process's pid) lives in the user's runtime
//! directory: `$XDG_RUNTIME_DIR/boxr`, or when that is unset (after `su` or `runuser`) a private
//! `/tmp/boxr-run-UID`, checked for owner and mode as podman checks its fallback.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::CloneFlags;

use crate::platform::process_start_time;

/// The hidden mode of the pause process.
pub const PAUSE_ARG: &str = "__pause";

/// Why an unprivileged boxr could not get into its user namespace.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RootlessError {
    #[error("rootless: {what}: {source}")]
    #[diagnostic(code(boxr::rootless::io))]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rootless: the runtime directory {} is not private to this user", .0.display())]
    #[diagnostic(
        code(boxr::rootless::runtime_dir),
        help(
            "it must be a directory owned by you with mode 0700; remove it, or set XDG_RUNTIME_DIR"
        )
    )]
    RuntimeDir(PathBuf),
    #[error("rootless: cannot create a user namespace: {0}")]
    #[diagnostic(
        code(boxr::rootless::userns),
        help(
            "unprivileged user namespaces must be allowed (sysctl user.max_user_namespaces > 0, \
             and kernel.apparmor_restrict_unprivileged_userns = 0 where AppArmor has it)"
        )
    )]
    Userns(String),
    #[error("rootless: {tool} failed: {message}")]
    #[diagnostic(
        code(boxr::rootless::idmap),
        help(
            "boxr maps the user's /etc/subuid and /etc/subgid ranges with newuidmap and newgidmap \
             (apt-get install uidmap)"
        )
    )]
    IdMap { tool: &'static str, message: String },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RootlessError {
    let what = what.into();
    move |source| RootlessError::Io { what, source }
}

/// One range of a map: `inside` ids from `outside` on, `count` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// The id maps of the rootless user namespace: the user as root, then its subordinate range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub uid: Vec<Range>,
    pub gid: Vec<Range>,
}

impl Mapping {
    /// The maps for user `uid`/`gid` named `user`, from the texts of /etc/subuid and
    /// /etc/subgid (`NAME_OR_ID:START:COUNT` lines; the first range of the user is taken).
    pub fn of(user: &str, uid: u32, gid: u32, subuid: &str, subgid: &str) -> Mapping {
        let range = |text: &str, id: u32, own: u32| {
            let sub = text.lines().find_map(|l| {
                let mut f = l.trim().split(':');
                let who = f.next()?;
                if who != user && who != id.to_string() {
                    return None;
                }
                let start: u32 = f.next()?.parse().ok()?;
                let count: u32 = f.next()?.parse().ok()?;
                (count > 0).then_some((start, count))
            });
            let mut v = vec![Range {
                inside: 0,
                outside: own,
                count: 1,
            }];
            if let Some((start, count)) = sub {
                v.push(Range {
                    inside: 1,
                    outside: start,
                    count,
                });
            }
            v
        };
        Mapping {
            uid: range(subuid, uid, uid),
            gid: range(subgid, uid, gid),
        }
    }

    /// Only the user is mapped (no subordinate range).
    pub fn is_single(&self) -> bool {
        self.uid.len() == 1 || self.gid.len() == 1
    }
}

/// Whether this process runs rootless: in a user namespace other than the host's (an
/// unprivileged boxr after [`enter`], or anything it started). Read once: call it only after
/// [`enter`].
pub fn active() -> bool {
    static ACTIVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ACTIVE.get_or_init(crate::platform::in_user_namespace)
}

/// The cgroup subtree delegated to this rootless boxr's user (a pure v2 host with a systemd
/// user session), under which its containers' cgroups go; `None` where there is none (cgroup v1
/// or hybrid hosts, like this one, or v2 without delegation).
pub fn delegated_cgroup() -> Option<String> {
    let layout = crate::sandbox::cgroup::Layout::detect().ok()?;
    let own = crate::sandbox::cgroup::own_path()?;
    crate::sandbox::cgroup::delegated_base(&layout, &own, nix::unistd::getuid().as_raw())
}

/// The user's runtime directory for boxr (see the module's doc), created if missing.
pub fn runtime_dir() -> Result<PathBuf, RootlessError> {
    // Owner checks in this process's terms; the name in the host's (inside the user namespace
    // the user is 0).
    let uid = nix::unistd::getuid().as_raw();
    let (dir, private_parent) = match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())
    {
        Some(d) => (Path::new(&d).join("boxr"), false),
        None => (
            std::env::temp_dir().join(format!("boxr-run-{}", host_uid())),
            true,
        ),
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("create {}", dir.display()))(e)),
    }
    // In a shared /tmp, another user could have made it first.
    let meta = fs::symlink_metadata(&dir).map_err(io(format!("read {}", dir.display())))?;
    let private = meta.is_dir()
        && meta.uid() == uid
        && (!private_parent || meta.permissions().mode() & 0o077 == 0);
    if !private {
        return Err(RootlessError::RuntimeDir(dir));
    }
    Ok(dir)
}

/// The user's id on the host: this process's, or in the rootless user namespace the host id
/// its root maps to.
fn host_uid() -> u32 {
    let own = nix::unistd::getuid().as_raw();
    if !crate::platform::in_user_namespace() {
        return own;
    }
    std::fs::read_to_string("/proc/self/uid_map")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let f: Vec<u32> = l
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                (f.len() == 3 && f[0] <= own && own - f[0] < f[2]).then(|| f[1] + (own - f[0]))
            })
        })
        .unwrap_or(own)
}

/// Joins the rootless user namespace (making it first if no pause process holds one), when
/// this process is unprivileged and not in it yet. Must be called while the process is
/// single-threaded. Returns the mapping when it made the namespace (the caller may warn).
pub fn enter() -> Result<Option<Mapping>, RootlessError> {
    if nix::unistd::geteuid().is_root() || crate::platform::in_user_namespace() {
        return Ok(None);
    }
    let dir = runtime_dir()?;
    let pid_file = dir.join("pause.pid");
    if let Some(pid) = live_pause(&pid_file) {
        join(pid)?;
        return Ok(None);
    }
    // One command makes it; one started meanwhile waits here, then joins that one.
    let lock = File::create(dir.join("pause.lock")).map_err(io("create the pause lock"))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io("lock the pause lock")(e.into()))?;
    if let Some(pid) = live_pause(&pid_file) {
        join(pid)?;
        return Ok(None);
    }
    let mapping = user_mapping();
    let pid = start_pause(&mapping)?;
    let start = process_start_time(pid).unwrap_or_default();
    let tmp = dir.join("pause.pid.tmp");
    fs::write(&tmp, format!("{pid} {start}\n"))
        .and_then(|()| fs::rename(&tmp, &pid_file))
        .map_err(io(format!("write {}", pid_file.display())))?;
    join(pid)?;
    Ok(Some(mapping))
}

/// The pause process's pid, if the file names one that still runs.
fn live_pause(pid_file: &Path) -> Option<i32> {
    let text = fs::read_to_string(pid_file).ok()?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (it.next(), it.next()) else {
        return None;
    };
    let pid = i32::try_from(pid).ok()?;
    (process_start_time(pid) == Some(start)).then_some(pid)
}

/// The maps of this process's user, from /etc/subuid and /etc/subgid.
fn user_mapping() -> Mapping {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid().as_raw();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    let read = |p| fs::read_to_string(p).unwrap_or_default();
    Mapping::of(
        &name,
        uid.as_raw(),
        gid,
        &read("/etc/subuid"),
        &read("/etc/subgid"),
    )
}

/// Starts the pause process, maps its user namespace, and waits until it has made its mount
/// namespace private. Returns its pid.
fn start_pause(mapping: &Mapping) -> Result<i32, RootlessError> {
    let exe = std::env::current_exe().map_err(io("find boxr's own binary"))?;
    let mut child = Command::new(exe)
        .arg(PAUSE_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .current_dir("/")
        .spawn()
        .map_err(io("start the pause process"))?;
    let pid = child.id() as i32;
    let mut out = child.stdout.take().expect("piped");
    let mut input = child.stdin.take().expect("piped");
    let mut byte = [0u8; 1];
    let made = out.read_exact(&mut byte).is_ok() && byte[0] == b'1';
    let result = if made {
        write_maps(pid, mapping).and_then(|()| {
            input
                .write_all(b"1")
                .map_err(io("talk to the pause process"))?;
            // It made / private in its mount namespace.
            match out.read_exact(&mut byte) {
                Ok(()) if byte[0] == b'2' => Ok(pid),
                _ => Err(RootlessError::Userns(
                    "the pause process could not set up its mount namespace".into(),
                )),
            }
        })
    } else {
        Err(RootlessError::Userns(
            "the pause process could not unshare its namespaces".into(),
        ))
    };
    if result.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    result
}

/// Writes the maps of the pause process `pid`'s user namespace: through newuidmap and
/// newgidmap for a subordinate range, directly for the user alone (allowed for one's own id,
/// once setgroups is denied).
fn write_maps(pid: i32, m: &Mapping) -> Result<(), RootlessError> {
    let args = |ranges: &[Range]| -> Vec<String> {
        ranges
            .iter()
            .flat_map(|r| [r.inside, r.outside, r.count])
            .map(|n| n.to_string())
            .collect()
    };
    for (tool, file, ranges) in [
        ("newuidmap", "uid_map", &m.uid),
        ("newgidmap", "gid_map", &m.gid),
    ] {
        if ranges.len() == 1 {
            let r = ranges[0];
            if file == "gid_map" {
                fs::write(format!("/proc/{pid}/setgroups"), "deny")
                    .map_err(io("deny setgroups in the user namespace"))?;
            }
            fs::write(
                format!("/proc/{pid}/{file}"),
                format!("{} {} {}\n", r.inside, r.outside, r.count),
            )
            .map_err(io(format!("write the user namespace's {file}")))?;
            continue;
        }
        let out = Command::new(tool)
            .arg(pid.to_string())
            .args(args(ranges))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RootlessError::IdMap {
                tool,
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(RootlessError::IdMap {
                tool,
                message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
    }
    Ok(())
}

/// Joins the user and mount namespaces of the pause process `pid`.
fn join(pid: i32) -> Result<(), RootlessError> {
    let open = |kind: &str| {
        File::open(format!("/proc/{pid}/ns/{kind}"))
            .map_err(io(format!("open the pause process's {kind} namespace")))
    };
    let (user, mnt) = (open("user")?, open("mnt")?);
    // Joining a mount namespace moves the process to its root: the working directory is
    // taken back by path (the namespace holds the host's mounts).
    let cwd = std::env::current_dir().ok();
    nix::sched::setns(&user, CloneFlags::CLONE_NEWUSER)
        .map_err(|e| io("join the user namespace")(e.into()))?;
    nix::sched::setns(&mnt, CloneFlags::CLONE_NEWNS)
        .map_err(|e| io("join the mount namespace")(e.into()))?;
    if let Some(d) = cwd {
        std::env::set_current_dir(&d).map_err(io(format!(
            "return to the working directory {}",
            d.display()
        )))?;
    }
    Ok(())
}

/// `boxr __pause`: unshares a user and a mount namespace, says so (`1`), waits for its maps,
/// makes its mounts private (`2`), then holds the namespaces until it is killed.
pub fn pause_main() -> i32 {
    let mut out = std::io::stdout();
    if nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS).is_err() {
        let _ = out.write_all(b"0");
        return 1;
    }
    if out.write_all(b"1").and_then(|()| out.flush()).is_err() {
        return 1;
    }
    let mut byte = [0u8; 1];
    if std::io::stdin().read_exact(&mut byte).is_err() {
        return 1;
    }
    // Root of the namespace now: the host's mount events stay out, ours stay in.
    let private = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    if private.is_err() || out.write_all(b"2").and_then(|()| out.flush()).is_err() {
        return 1;
    }
    // Detached from the command that started it and from its terminal.
    let _ = nix::unistd::setsid();
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let mut ignored = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGPIPE,
    ] {
        ignored.add(s);
    }
    let _ = ignored.thread_block();
    loop {
        // Woken only by a signal that ends it.
        nix::unistd::pause();
    }
}

/// `boxr __pause` as the binary's hidden mode, before any argument parsing.
pub fn pause_mode() -> Option<i32> {
    (std::env::args().nth(1).as_deref() == Some(PAUSE_ARG)).then(pause_main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_users_first_range_follows_its_own_id() {
        let m = Mapping::of(
            "dev",
            1000,
            1001,
            "other:200000:65536\ndev:100000:65536\ndev:300000:10\n",
            "1000:400000:1000\n",
        );
        assert_eq!(
            m.uid,
            [
                Range {
                    inside: 0,
                    outside: 1000,
                    count: 1
                },
                Range {
                    inside: 1,
                    outside: 100000,
                    count: 65536
                }
            ]
        );
        assert_eq!(m.gid[0].outside, 1001, "root's group is the user's group");
        assert_eq!(m.gid[1].outside, 400000, "a line may name the user by id");
        assert!(!m.is_single());
    }

    #[test]
    fn without_a_range_only_the_user_is_mapped() {
        let m = Mapping::of("dev", 1000, 1000, "other:1:2\n", "");
        assert_eq!(m.uid.len(), 1);
        assert!(m.is_single());
        let m = Mapping::of("dev", 1000, 1000, "dev:100000:0\n", "dev:100000:0\n");
        assert!(m.is_single(), "an empty range is none");
    }
}
