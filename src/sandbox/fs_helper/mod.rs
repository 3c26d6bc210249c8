//! Filesystem steps that run nothing of the image: `copy` and `workdir`.
//!
//! They run in a freshly exec'd helper (`boxr __fs`, single-threaded) in a private mount
//! namespace: the step's overlay (the parent's layers under a fresh upper dir) is mounted and
//! the operation is done through it. Overlay then copies up the parent directories the copy
//! touches, with their own metadata, so the upper dir is exactly the step's diff, as for a
//! `run`. The mounts vanish with the helper's namespace, however it ends.
//!
//! Every path is resolved inside its root with `openat2(RESOLVE_IN_ROOT)`: a symlink in the
//! image or in the build context cannot lead a copy outside either of them. Entries are created
//! with `*at` calls and `O_NOFOLLOW` below a directory descriptor resolved that way.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sched::{CloneFlags, unshare};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fstatat, mkdirat, mknodat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, symlinkat, unlinkat};
use serde::{Deserialize, Serialize};

use super::spec::RootfsSpec;

mod copy;

use copy::Copier;

/// A filesystem step: where to do it and what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FsSpec {
    /// The step's overlay: the parent's layers and the fresh upper dir that becomes its layer
    /// (none for [`FsOp::Populate`], which writes into a plain directory).
    pub rootfs: Option<RootfsSpec>,
    /// Where `copy` reads from.
    pub source: Option<FsSource>,
    pub op: FsOp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FsSource {
    /// A host directory (the build context), with `.boxrignore` lines that hide entries.
    Dir { path: PathBuf, ignore: Vec<String> },
    /// Another image's layer roots (topmost first), mounted read-only at `target`.
    Layers {
        lowers: Vec<PathBuf>,
        target: PathBuf,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FsOp {
    /// Docker's COPY: `sources` relative to the source root (globs allowed), `dest` absolute;
    /// a `dest` ending in `/` is a directory.
    Copy {
        sources: Vec<String>,
        dest: String,
        chmod: Option<u32>,
        /// `USER[:GROUP]`, names resolved through the destination image's files.
        chown: Option<String>,
    },
    /// `workdir`: the directory and its missing parents (0755, root).
    Mkdir { path: String },
    /// A new named volume gets what the image has at `path` (owners and modes kept), as in
    /// Docker; nothing when the image has no directory there.
    Populate { path: String, into: PathBuf },
    /// `boxr cp`: `src` to `dest` with `docker cp`'s rules, one of them a path in a container
    /// and the other on the host. The container's root is a running process's (`/proc/PID/root`,
    /// with its mounts), else its overlay (`rootfs`, mounted here).
    Cp {
        /// The container's init (pid, start time) when it runs.
        running: Option<(i32, u64)>,
        src: String,
        dest: String,
        /// Host → container (else container → host).
        into_container: bool,
        /// The owner of everything copied; `None` keeps each entry's own (`-a`).
        owner: Option<(u32, u32)>,
    },
    /// `boxr export`: the merged view of `layers` (topmost first: a container's upper dir over
    /// its image's layers), mounted read-only at `target`, as one tar on stdout.
    Export {
        layers: Vec<PathBuf>,
        target: PathBuf,
    },
}

/// Why a filesystem step failed. Printed by the helper as its last word (exit code 1); the
/// caller shows it as the step's error.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A failed system call or I/O operation, with what was being done.
    #[error(transparent)]
    Setup(#[from] super::SetupError),
    #[error("copy: no source files match `{0}`")]
    NoMatch(String),
    #[error("copy: `{0}` is excluded by .boxrignore")]
    Ignored(String),
    #[error(
        "copy: with more than one source file, the destination must be a directory and end with a /: `{0}`"
    )]
    ManyIntoOne(String),
    #[error("cannot copy the directory {src} to the file {dest}")]
    DirectoryOntoFile { src: String, dest: String },
    #[error("{0}: not a directory")]
    NotADirectory(String),
    #[error("{0}: no such directory")]
    NoSuchDirectory(String),
    #[error("cannot create {0}: a file is in the way")]
    InTheWay(String),
    #[error("copy: invalid pattern `{pattern}`: {reason}")]
    Pattern { pattern: String, reason: String },
    #[error("copy: {0}")]
    Walk(#[from] walkdir::Error),
    #[error("copy: `{dir}` holds a non-UTF-8 name {name:?}")]
    NonUtf8Name { dir: String, name: Vec<u8> },
    #[error("copy: chown: unable to find {kind} {name}: no matching entries in {file} file")]
    UnknownId {
        kind: &'static str,
        name: String,
        file: &'static str,
    },
    #[error("boxr: the container is not running")]
    NotRunning,
    #[error("copy: no source")]
    NoSource,
    #[error("boxr: no rootfs to mount")]
    NoRootfs,
    #[error("populate: the source must be an image's layers")]
    NotLayers,
    #[error("boxr: {0}")]
    Ignore(#[from] crate::ignore::IgnoreError),
    #[error("boxr: export: {0}")]
    Export(#[from] crate::layer::LayerError),
}

type Result<T> = std::result::Result<T, FsError>;

fn at(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> FsError {
    move |errno| super::SetupError::at(what)(errno).into()
}

fn io_at(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> FsError {
    move |source| super::SetupError::io(what)(source).into()
}

/// `boxr __fs --spec-fd N`: returns the exit code (0, or 1 with a message on stderr).
pub fn main(spec_fd: i32) -> i32 {
    let spec: FsSpec = match super::fds::read_spec_fd(spec_fd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boxr: {e}");
            return 125;
        }
    };
    if spec_fd == 0
        && let Err(e) = super::fds::stdin_from_dev_null()
    {
        eprintln!("boxr: {e}");
        return 125;
    }
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    super::fds::cloexec_all_fds();
    match run(&spec) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn run(spec: &FsSpec) -> Result<()> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(at("cannot create a mount namespace"))?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(at("make / private"))?;
    if let FsOp::Populate { path, into } = &spec.op {
        return populate(spec, path, into);
    }
    if let FsOp::Export { layers, target } = &spec.op {
        mount_layers(layers, &[], target)?;
        let out = std::io::BufWriter::new(std::io::stdout().lock());
        let (_, mut out) =
            crate::layer::write_tar(target, crate::layer::WriteOptions::default(), out)?;
        return std::io::Write::flush(&mut out).map_err(io_at("boxr: export"));
    }
    if let FsOp::Cp {
        running,
        src,
        dest,
        into_container,
        owner,
    } = &spec.op
    {
        let container = match running {
            Some((pid, start)) => {
                let root = open_dir(Path::new(&format!("/proc/{pid}/root")))?;
                // Checked once the root is held: the pid was not reused in between.
                if super::process_start_time(*pid) != Some(*start) {
                    return Err(FsError::NotRunning);
                }
                root
            }
            None => mount_rootfs(spec)?,
        };
        let host = open_dir(Path::new("/"))?;
        let (from, to) = if *into_container {
            (host, container)
        } else {
            (container, host)
        };
        let copy = Copier {
            src_path: Path::new("/"),
            src: from,
            dst: to,
            chmod: None,
            owner: *owner,
            ignore: crate::ignore::Ignore::default(),
            make_devices: *into_container,
            keep_setid: *into_container || owner.is_none(),
        };
        return copy.cp(src, dest);
    }
    let dst = mount_rootfs(spec)?;
    match &spec.op {
        FsOp::Populate { .. } | FsOp::Cp { .. } | FsOp::Export { .. } => {
            unreachable!("handled above")
        }
        FsOp::Mkdir { path } => mkdir_p(&dst, path, None).map(drop),
        FsOp::Copy {
            sources,
            dest,
            chmod,
            chown,
        } => {
            let (src_path, ignore) = match &spec.source {
                Some(FsSource::Dir { path, ignore }) => {
                    (path.clone(), crate::ignore::Ignore::parse(ignore.clone())?)
                }
                Some(FsSource::Layers { lowers, target }) => {
                    if lowers.len() == 1 {
                        (lowers[0].clone(), crate::ignore::Ignore::default())
                    } else {
                        mount_layers(lowers, &[], target)?;
                        (target.clone(), crate::ignore::Ignore::default())
                    }
                }
                None => return Err(FsError::NoSource),
            };
            let owner = match chown {
                Some(c) => Some(resolve_owner(&dst, c)?),
                None => None,
            };
            let copy = Copier {
                src_path: &src_path,
                src: open_dir(&src_path)?,
                dst,
                chmod: *chmod,
                owner: Some(owner.unwrap_or((0, 0))),
                ignore,
                make_devices: true,
                keep_setid: true,
            };
            copy.run(sources, dest)
        }
    }
}

/// Mounts the spec's overlay (its layers under its upper dir) at its target; returns the
/// target's descriptor.
fn mount_rootfs(spec: &FsSpec) -> Result<OwnedFd> {
    let r = spec.rootfs.as_ref().ok_or(FsError::NoRootfs)?;
    let owned = r.overlay_options();
    let options: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    mount_layers(&r.lowers, &options, &r.target)?;
    open_dir(&r.target)
}

/// [`FsOp::Populate`]: the image's directory `path` (resolved inside the image) copied into
/// the plain directory `into`, owners and modes kept, `into` itself given the directory's
/// owner and mode.
fn populate(spec: &FsSpec, path: &str, into: &Path) -> Result<()> {
    let src_path = match &spec.source {
        Some(FsSource::Layers { lowers, target }) => {
            if lowers.len() == 1 {
                lowers[0].clone()
            } else {
                mount_layers(lowers, &[], target)?;
                target.clone()
            }
        }
        _ => return Err(FsError::NotLayers),
    };
    let src = open_dir(&src_path)?;
    let dir = match open_in(&src, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(d) => d,
        // Nothing there (or not a directory): the volume stays empty, as in Docker.
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(at(format!("populate: open {path} in the image"))(e)),
    };
    let st = nix::sys::stat::fstat(&dir).map_err(at(format!("populate: {path}")))?;
    let dst = open_dir(into)?;
    let copy = Copier {
        src_path: &src_path,
        src,
        dst: open_dir(into)?,
        chmod: None,
        owner: None,
        ignore: crate::ignore::Ignore::default(),
        make_devices: true,
        keep_setid: true,
    };
    copy.copy_children(&dir, "", &dst, path)?;
    chown_fd(&dst, st.st_uid, st.st_gid).map_err(at("populate: chown"))?;
    nix::sys::stat::fchmod(&dst, Mode::from_bits_truncate(st.st_mode & 0o7777))
        .map_err(at("populate: chmod"))?;
    Ok(())
}

/// Mounts the overlay of `lowers` (topmost first) at `target`; without an upper dir in
/// `options` it is read-only.
fn mount_layers(lowers: &[PathBuf], options: &[(&str, &str)], target: &Path) -> Result<()> {
    let ls: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let mut opts = vec![("source", "overlay")];
    opts.extend_from_slice(options);
    // A rootless store's layers keep their overlay metadata in user.* xattrs.
    if crate::platform::in_user_namespace() {
        opts.push(("userxattr", ""));
    }
    super::sys::mount_overlay_fsconfig(&ls, &opts, target).map_err(io_at(format!(
        "boxr: cannot mount the layers at {}",
        target.display()
    )))
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(io_at(format!("boxr: cannot open {}", path.display())))
}

fn open_in(root: &OwnedFd, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = path.trim_matches('/');
    openat2(root, Path::new(if rel.is_empty() { "." } else { rel }), how)
}

/// The source directory `name` in `parent` (not followed if a link), or `parent` itself when
/// the entry is the root (as [`Copier::src_entry`] gives it).
fn open_entry_dir(parent: OwnedFd, name: &Option<String>, what: &str) -> Result<OwnedFd> {
    match name {
        Some(n) => openat(
            &parent,
            n.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(at(format!("copy: open `{what}`"))),
        None => Ok(parent),
    }
}

fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Opens the directory `path` inside `root`, creating what is missing (0755, owned by `owner`
/// for the created ones, root otherwise). Returns the descriptor and whether the last
/// component was created.
fn mkdir_p(root: &OwnedFd, path: &str, owner: Option<(u32, u32)>) -> Result<(OwnedFd, bool)> {
    let mut current = open_in(root, "", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
        .map_err(at("cannot open the image root"))?;
    let mut prefix = String::new();
    let mut created = false;
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        prefix.push('/');
        prefix.push_str(c);
        created = false;
        current = match open_in(root, &prefix, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(&current, c, Mode::from_bits_truncate(0o755)) {
                    Ok(()) => created = true,
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(at(format!("cannot create {prefix}"))(e)),
                }
                let fd = open_in(root, &prefix, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(at(format!("cannot open {prefix}")))?;
                if created {
                    // mkdir is subject to the umask.
                    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o755))
                        .map_err(at(format!("chmod {prefix}")))?;
                    let (u, g) = owner.unwrap_or((0, 0));
                    chown_fd(&fd, u, g).map_err(at(format!("chown {prefix}")))?;
                }
                fd
            }
            Err(Errno::ENOTDIR) => {
                return Err(FsError::InTheWay(prefix));
            }
            Err(e) => return Err(at(format!("cannot open {prefix}"))(e)),
        };
    }
    Ok((current, created))
}

fn chown_fd(fd: &OwnedFd, uid: u32, gid: u32) -> nix::Result<()> {
    nix::unistd::fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
}

/// `USER[:GROUP]` → ids, names looked up in the destination image's /etc/passwd and /etc/group.
fn resolve_owner(root: &OwnedFd, spec: &str) -> Result<(u32, u32)> {
    let read = |path: &str| -> String {
        open_in(root, path, OFlag::O_RDONLY)
            .ok()
            .and_then(|fd| io::read_to_string(File::from(fd)).ok())
            .unwrap_or_default()
    };
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read("/etc/passwd");
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && (f[0] == user || f[2] == user))
            .then(|| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
            .flatten()
    });
    let uid = match (user.parse::<u32>(), entry) {
        (Ok(n), _) => n,
        (Err(_), Some((u, _))) => u,
        (Err(_), None) => {
            return Err(FsError::UnknownId {
                kind: "user",
                name: user.to_owned(),
                file: "passwd",
            });
        }
    };
    let gid = match group {
        None => entry.map_or(uid, |(_, g)| g),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read("/etc/group")
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g)
                        .then(|| f[2].parse().ok())
                        .flatten()
                })
                .ok_or_else(|| FsError::UnknownId {
                    kind: "group",
                    name: g.to_owned(),
                    file: "group",
                })?,
        },
    };
    Ok((uid, gid))
}
