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

type Result<T> = std::result::Result<T, String>;

fn at(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> String {
    move |e| format!("{what}: {}", e.desc())
}

/// `boxr __fs --spec-fd N`: returns the exit code (0, or 1 with a message on stderr).
pub fn main(spec_fd: i32) -> i32 {
    let spec: FsSpec = match super::helper::read_spec_fd(spec_fd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boxr: {e}");
            return 125;
        }
    };
    if spec_fd == 0
        && let Err(e) = super::helper::stdin_from_dev_null()
    {
        eprintln!("boxr: {e}");
        return 125;
    }
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    super::helper::cloexec_all_fds();
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
            crate::layer::write_tar(target, crate::layer::WriteOptions::default(), out)
                .map_err(|e| format!("boxr: export: {e}"))?;
        return std::io::Write::flush(&mut out).map_err(|e| format!("boxr: export: {e}"));
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
                    return Err("boxr: the container is not running".into());
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
                Some(FsSource::Dir { path, ignore }) => (
                    path.clone(),
                    crate::ignore::Ignore::parse(ignore.clone())
                        .map_err(|e| format!("boxr: {e}"))?,
                ),
                Some(FsSource::Layers { lowers, target }) => {
                    if lowers.len() == 1 {
                        (lowers[0].clone(), crate::ignore::Ignore::default())
                    } else {
                        mount_layers(lowers, &[], target)?;
                        (target.clone(), crate::ignore::Ignore::default())
                    }
                }
                None => return Err("copy: no source".into()),
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
    let r = spec.rootfs.as_ref().ok_or("boxr: no rootfs to mount")?;
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
        _ => return Err("populate: the source must be an image's layers".into()),
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
    super::sys::mount_overlay_fsconfig(&ls, &opts, target)
        .map_err(|e| format!("boxr: cannot mount the layers at {}: {e}", target.display()))
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("boxr: cannot open {}: {e}", path.display()))
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
                return Err(format!("cannot create {prefix}: a file is in the way"));
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
            return Err(format!(
                "copy: chown: unable to find user {user}: no matching entries in passwd file"
            ));
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
                .ok_or_else(|| {
                    format!(
                        "copy: chown: unable to find group {g}: no matching entries in group file"
                    )
                })?,
        },
    };
    Ok((uid, gid))
}

struct Copier<'a> {
    src_path: &'a Path,
    src: OwnedFd,
    dst: OwnedFd,
    chmod: Option<u32>,
    /// The owner of everything copied; `None` keeps each source entry's own.
    owner: Option<(u32, u32)>,
    ignore: crate::ignore::Ignore,
    /// Device nodes are made (else skipped, with a warning): not when a container's files come
    /// to the host, where a node the container made would open a host device.
    make_devices: bool,
    /// Set-user-ID and set-group-ID bits are kept (else dropped, as cp drops them when it does
    /// not keep owners): not when a container's files come to the host as the user's.
    keep_setid: bool,
}

impl Copier<'_> {
    fn run(&self, sources: &[String], dest: &str) -> Result<()> {
        let mut expanded = Vec::new();
        for s in sources {
            let rel = normalize(s);
            if is_glob(&rel) {
                let found = self.glob(&rel)?;
                if found.is_empty() {
                    return Err(format!("copy: no source files match `{s}`"));
                }
                expanded.extend(found);
            } else {
                if self.ignore.is_ignored(&rel) {
                    return Err(format!("copy: `{s}` is excluded by .boxrignore"));
                }
                expanded.push(rel);
            }
        }
        let dest_is_dir = dest.ends_with('/');
        if expanded.len() > 1 && !dest_is_dir {
            return Err(format!(
                "copy: with more than one source file, the destination must be a directory and end with a /: `{dest}`"
            ));
        }
        for rel in &expanded {
            let (parent, name) = self.src_entry(rel)?;
            let st = match &name {
                Some(n) => fstatat(&parent, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
                None => nix::sys::stat::fstat(&parent),
            }
            .map_err(|e| format!("copy: `{rel}`: {}", e.desc()))?;
            if kind(&st) == SFlag::S_IFDIR {
                // A directory's contents are copied, not the directory itself.
                let (d, created) = mkdir_p(&self.dst, dest, self.owner)?;
                let from = open_entry_dir(parent, &name, rel)?;
                if created {
                    self.set_meta(&d, &st)?;
                }
                self.copy_children(&from, rel, &d, dest)?;
                continue;
            }
            let name = name.expect("only the root has no name, and it is a directory");
            let base = name.clone();
            let (dir, target) = if dest_is_dir {
                (mkdir_p(&self.dst, dest, self.owner)?.0, base)
            } else {
                match open_in(&self.dst, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                    // An existing directory (or a link to one, inside the image) receives it.
                    Ok(d) => (d, base),
                    Err(_) => {
                        let (p, n) = split(dest);
                        (mkdir_p(&self.dst, p, self.owner)?.0, n.to_owned())
                    }
                }
            };
            self.copy_entry(&parent, &name, &st, &dir, &target, dest)?;
        }
        Ok(())
    }

    /// `docker cp SRC DEST`: a directory is copied as itself into an existing directory, as
    /// DEST when that does not exist, and only its contents when SRC ends with `/.`; a file
    /// goes into an existing directory, or becomes DEST (whose parent must exist). Links are
    /// copied as links. Both paths are resolved inside their roots.
    fn cp(&self, src: &str, dest: &str) -> Result<()> {
        let contents = src == "." || src.ends_with("/.");
        let rel = normalize(src);
        let (parent, name) = self.src_entry(&rel)?;
        let st = match &name {
            Some(n) => fstatat(&parent, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
            None => nix::sys::stat::fstat(&parent),
        }
        .map_err(|e| format!("{src}: {}", e.desc()))?;
        let existing = open_in(&self.dst, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY);
        if kind(&st) == SFlag::S_IFDIR {
            let target = match (&existing, &name) {
                (Ok(_), Some(n)) if !contents => format!("{}/{n}", dest.trim_end_matches('/')),
                (Err(Errno::ENOTDIR), _) => {
                    return Err(format!(
                        "cannot copy the directory {src} to the file {dest}"
                    ));
                }
                _ => dest.to_owned(),
            };
            let (d, created) = mkdir_p(&self.dst, &target, self.owner)?;
            let from = open_entry_dir(parent, &name, src)?;
            if created {
                self.set_meta(&d, &st)?;
            }
            return self.copy_children(&from, &rel, &d, &target);
        }
        if contents {
            return Err(format!("{src}: not a directory"));
        }
        let name = name.expect("only the root has no name, and it is a directory");
        let (dir, to_name) = match existing {
            Ok(d) => (d, name.clone()),
            Err(_) if dest.ends_with('/') => {
                return Err(format!("{dest}: no such directory"));
            }
            Err(_) => {
                let (p, n) = split(dest.trim_end_matches('/'));
                let d = open_in(&self.dst, p, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(|e| format!("{}: {}", if p.is_empty() { "/" } else { p }, e.desc()))?;
                (d, n.to_owned())
            }
        };
        self.copy_entry(&parent, &name, &st, &dir, &to_name, dest)
    }

    /// The directory holding `rel` in the source (resolved in its root) and `rel`'s name
    /// (`None` for the root itself). The last component is not followed: a link is copied as
    /// a link.
    fn src_entry(&self, rel: &str) -> Result<(OwnedFd, Option<String>)> {
        if rel.is_empty() {
            let root = open_in(&self.src, "", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(at("copy: open the source root"))?;
            return Ok((root, None));
        }
        let (p, n) = split(rel);
        let parent = open_in(&self.src, p, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| format!("copy: `{rel}`: {}", e.desc()))?;
        Ok((parent, Some(n.to_owned())))
    }

    /// Walks the source root for paths matching `pattern` (`*` does not cross `/`).
    fn glob(&self, pattern: &str) -> Result<Vec<String>> {
        let matcher = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("copy: invalid pattern `{pattern}`: {}", e.kind()))?
            .compile_matcher();
        let depth = pattern.split('/').count();
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(self.src_path)
            .min_depth(1)
            .max_depth(depth)
            .sort_by_file_name()
        {
            let e = e.map_err(|e| format!("copy: {e}"))?;
            let rel = e
                .path()
                .strip_prefix(self.src_path)
                .expect("below the root")
                .to_string_lossy()
                .into_owned();
            if matcher.is_match(&rel) && !self.ignore.is_ignored(&rel) {
                out.push(rel);
            }
        }
        Ok(out)
    }

    fn copy_children(&self, from: &OwnedFd, rel: &str, to: &OwnedFd, dest: &str) -> Result<()> {
        let dir =
            nix::dir::Dir::from_fd(nix::unistd::dup(from).map_err(at(format!("copy: `{rel}`")))?)
                .map_err(at(format!("copy: read `{rel}`")))?;
        let mut names: Vec<Vec<u8>> = Vec::new();
        for e in dir {
            let e = e.map_err(at(format!("copy: read `{rel}`")))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        names.sort();
        for n in names {
            let name = String::from_utf8(n)
                .map_err(|n| format!("copy: `{rel}` holds a non-UTF-8 name {:?}", n.as_bytes()))?;
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if self.ignore.is_ignored(&child_rel) {
                let st = fstatat(from, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(at(format!("copy: `{child_rel}`")))?;
                if !(kind(&st) == SFlag::S_IFDIR && self.ignore.may_reinclude_below(&child_rel)) {
                    continue;
                }
            }
            let st = fstatat(from, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(at(format!("copy: `{child_rel}`")))?;
            self.copy_entry_rel(from, &name, &st, to, &name, dest, &child_rel)?;
        }
        Ok(())
    }

    fn copy_entry(
        &self,
        from_dir: &OwnedFd,
        name: &str,
        st: &FileStat,
        to_dir: &OwnedFd,
        to_name: &str,
        dest: &str,
    ) -> Result<()> {
        self.copy_entry_rel(from_dir, name, st, to_dir, to_name, dest, name)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_entry_rel(
        &self,
        from_dir: &OwnedFd,
        name: &str,
        st: &FileStat,
        to_dir: &OwnedFd,
        to_name: &str,
        dest: &str,
        rel: &str,
    ) -> Result<()> {
        let what = || format!("copy `{rel}` to {dest}");
        let existing = fstatat(to_dir, to_name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let k = kind(st);
        if let Some(e) = &existing {
            let both_dirs = kind(e) == SFlag::S_IFDIR && k == SFlag::S_IFDIR;
            if !both_dirs {
                let flag = if kind(e) == SFlag::S_IFDIR {
                    UnlinkatFlags::RemoveDir
                } else {
                    UnlinkatFlags::NoRemoveDir
                };
                unlinkat(to_dir, to_name, flag).map_err(|e| {
                    format!("{}: cannot replace what is there: {}", what(), e.desc())
                })?;
            }
        }
        match k {
            SFlag::S_IFREG => {
                let src = openat(
                    from_dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(at(what()))?;
                let dst = openat(
                    to_dir,
                    to_name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(at(what()))?;
                let mut r = File::from(src);
                let mut w = File::from(dst);
                io::copy(&mut r, &mut w).map_err(|e| format!("{}: {e}", what()))?;
                let fd = OwnedFd::from(w);
                self.set_meta(&fd, st)?;
            }
            SFlag::S_IFDIR => {
                let created = existing.is_none();
                if created {
                    mkdirat(to_dir, to_name, Mode::from_bits_truncate(0o700))
                        .map_err(at(what()))?;
                }
                let d = openat(
                    to_dir,
                    to_name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(at(what()))?;
                let s = openat(
                    from_dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(at(what()))?;
                self.copy_children(&s, rel, &d, dest)?;
                if created {
                    self.set_meta(&d, st)?;
                }
            }
            SFlag::S_IFLNK => {
                let target = readlinkat(from_dir, name).map_err(at(what()))?;
                symlinkat(target.as_os_str(), to_dir, to_name).map_err(at(what()))?;
                let (uid, gid) = self.owner_of(st);
                fchownat(
                    to_dir,
                    to_name,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(at(what()))?;
                let t = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
                nix::sys::stat::utimensat(to_dir, to_name, &t, &t, UtimensatFlags::NoFollowSymlink)
                    .map_err(at(what()))?;
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK if !self.make_devices => {
                eprintln!("boxr: {rel}: a device node, not copied");
            }
            SFlag::S_IFIFO | SFlag::S_IFCHR | SFlag::S_IFBLK => {
                mknodat(
                    to_dir,
                    to_name,
                    k,
                    Mode::from_bits_truncate(0o600),
                    st.st_rdev,
                )
                .map_err(at(what()))?;
                let fd = openat(
                    to_dir,
                    to_name,
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(at(what()))?;
                // fchmod and futimens do not take O_PATH descriptors: go through /proc.
                let p = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let (uid, gid) = self.owner_of(st);
                nix::unistd::chown(
                    p.as_str(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                )
                .map_err(at(what()))?;
                nix::sys::stat::fchmodat(
                    nix::fcntl::AT_FDCWD,
                    p.as_str(),
                    self.mode(st),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(at(what()))?;
            }
            // Sockets are not copied (as Docker).
            _ => {}
        }
        Ok(())
    }

    fn mode(&self, st: &FileStat) -> Mode {
        let setid = if self.keep_setid { 0o7777 } else { 0o1777 };
        Mode::from_bits_truncate(self.chmod.unwrap_or(st.st_mode & setid))
    }

    /// Owner, then mode (chown clears setuid bits), then times of a copied file or directory.
    fn owner_of(&self, st: &FileStat) -> (u32, u32) {
        self.owner.unwrap_or((st.st_uid, st.st_gid))
    }

    fn set_meta(&self, fd: &OwnedFd, st: &FileStat) -> Result<()> {
        let (uid, gid) = self.owner_of(st);
        chown_fd(fd, uid, gid).map_err(at("copy: chown"))?;
        nix::sys::stat::fchmod(fd, self.mode(st)).map_err(at("copy: chmod"))?;
        let t = TimeSpec::new(st.st_mtime, st.st_mtime_nsec);
        nix::sys::stat::futimens(fd.as_fd(), &t, &t).map_err(at("copy: set times"))?;
        Ok(())
    }
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// A source path relative to its root, cleaned (`..` cannot climb above the root).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", p),
    }
}
