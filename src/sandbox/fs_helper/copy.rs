//! COPY's work: one source entry (a file, a directory tree, a symlink, a glob's matches) copied
//! below a destination directory, every path resolved inside its root, with the owner, mode and
//! times the step asks for.

use super::*;
use crate::ignore::{clean as normalize, is_glob};

pub(super) struct Copier<'a> {
    pub(super) src_path: &'a Path,
    pub(super) src: OwnedFd,
    pub(super) dst: OwnedFd,
    pub(super) chmod: Option<u32>,
    /// The owner of everything copied; `None` keeps each source entry's own.
    pub(super) owner: Option<(u32, u32)>,
    pub(super) ignore: crate::ignore::Ignore,
    /// Device nodes are made (else skipped, with a warning): not when a container's files come
    /// to the host, where a node the container made would open a host device.
    pub(super) make_devices: bool,
    /// Set-user-ID and set-group-ID bits are kept (else dropped, as cp drops them when it does
    /// not keep owners): not when a container's files come to the host as the user's.
    pub(super) keep_setid: bool,
}

impl Copier<'_> {
    pub(super) fn run(&self, sources: &[String], dest: &str) -> Result<()> {
        let mut expanded = Vec::new();
        for s in sources {
            let rel = normalize(s);
            if is_glob(&rel) {
                let found = self.glob(&rel)?;
                if found.is_empty() {
                    return Err(FsError::NoMatch(s.clone()));
                }
                expanded.extend(found);
            } else {
                if self.ignore.is_ignored(&rel) {
                    return Err(FsError::Ignored(s.clone()));
                }
                expanded.push(rel);
            }
        }
        let dest_is_dir = dest.ends_with('/');
        if expanded.len() > 1 && !dest_is_dir {
            return Err(FsError::ManyIntoOne(dest.to_owned()));
        }
        for rel in &expanded {
            let (parent, name) = self.src_entry(rel)?;
            let st = match &name {
                Some(n) => fstatat(&parent, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
                None => nix::sys::stat::fstat(&parent),
            }
            .map_err(at(format!("copy: `{rel}`")))?;
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
    pub(super) fn cp(&self, src: &str, dest: &str) -> Result<()> {
        let contents = src == "." || src.ends_with("/.");
        let rel = normalize(src);
        let (parent, name) = self.src_entry(&rel)?;
        let st = match &name {
            Some(n) => fstatat(&parent, n.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
            None => nix::sys::stat::fstat(&parent),
        }
        .map_err(at(src))?;
        let existing = open_in(&self.dst, dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY);
        if kind(&st) == SFlag::S_IFDIR {
            let target = match (&existing, &name) {
                (Ok(_), Some(n)) if !contents => format!("{}/{n}", dest.trim_end_matches('/')),
                (Err(Errno::ENOTDIR), _) => {
                    return Err(FsError::DirectoryOntoFile {
                        src: src.to_owned(),
                        dest: dest.to_owned(),
                    });
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
            return Err(FsError::NotADirectory(src.to_owned()));
        }
        let name = name.expect("only the root has no name, and it is a directory");
        let (dir, to_name) = match existing {
            Ok(d) => (d, name.clone()),
            Err(_) if dest.ends_with('/') => {
                return Err(FsError::NoSuchDirectory(dest.to_owned()));
            }
            Err(_) => {
                let (p, n) = split(dest.trim_end_matches('/'));
                let d = open_in(&self.dst, p, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                    .map_err(at(if p.is_empty() { "/" } else { p }))?;
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
            .map_err(at(format!("copy: `{rel}`")))?;
        Ok((parent, Some(n.to_owned())))
    }

    /// Walks the source root for paths matching `pattern` (`*` does not cross `/`).
    fn glob(&self, pattern: &str) -> Result<Vec<String>> {
        let matcher = globset::GlobBuilder::new(pattern)
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| FsError::Pattern {
                pattern: pattern.to_owned(),
                reason: e.kind().to_string(),
            })?
            .compile_matcher();
        let depth = pattern.split('/').count();
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(self.src_path)
            .min_depth(1)
            .max_depth(depth)
            .sort_by_file_name()
        {
            let e = e?;
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

    pub(super) fn copy_children(
        &self,
        from: &OwnedFd,
        rel: &str,
        to: &OwnedFd,
        dest: &str,
    ) -> Result<()> {
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
            let name = String::from_utf8(n).map_err(|n| FsError::NonUtf8Name {
                dir: rel.to_owned(),
                name: n.into_bytes(),
            })?;
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
                unlinkat(to_dir, to_name, flag)
                    .map_err(at(format!("{}: cannot replace what is there", what())))?;
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
                io::copy(&mut r, &mut w).map_err(io_at(what()))?;
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

/// `a/b/c` → (`a/b`, `c`); `c` → (``, `c`).
fn split(path: &str) -> (&str, &str) {
    let p = path.trim_end_matches('/');
    match p.rsplit_once('/') {
        Some((d, n)) => (d, n),
        None => ("", p),
    }
}
