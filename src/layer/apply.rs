//! An OCI layer tar → an overlay-format directory that stacks as a lowerdir.
//!
//! Safety: nothing is written outside `dest`. Each entry's name is normalized (absolute names are
//! taken relative to the root; a `..` that would climb above it is refused), then its parent is
//! resolved the way a chroot would see it in the merged view — this layer over its lower layers —
//! following symlinks from this layer or a lower one (real images ship `lib -> usr/lib`), with
//! absolute targets and `..` kept inside the root. Directories are then opened one component at
//! a time from a descriptor of `dest` with `O_NOFOLLOW`, and every file is created relative to
//! its parent's descriptor, so no symlink is ever followed while writing. Refused, failing closed:
//! names climbing out, hardlinks to anything but an earlier entry of this layer, a symlink named
//! `.`, whiteouts of `.`/`..`, and paths through a non-directory.
//!
//! Whiteouts become overlay whiteouts (character device 0/0) and `.wh..wh..opq` sets
//! `trusted.overlay.opaque=y`, which needs CAP_MKNOD and CAP_SYS_ADMIN (root).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, fchmod, fchmodat, mkdirat, mknodat, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

use super::error::refused;
use super::{LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// What an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    pub entries: u64,
    pub whiteouts: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Applies the (uncompressed) layer tar `tar` into the empty directory `dest`. `lowers` are the
/// unpacked layers below it, topmost first; they are read (to resolve symlinks), never written.
pub fn apply(tar: impl Read, dest: &Path, lowers: &[&Path]) -> Result<ApplyStats, LayerError> {
    let root = open_dir_path(dest).map_err(|source| LayerError::Create {
        entry: dest.display().to_string(),
        source,
    })?;
    let mut a = Applier {
        dest: dest.to_owned(),
        root,
        lowers: lowers.iter().map(|p| p.to_path_buf()).collect(),
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        known_dirs: HashSet::new(),
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(LayerError::Archive)? {
        let mut entry = entry.map_err(LayerError::Archive)?;
        a.entry(&mut entry)?;
    }
    // Directory mtimes last, deepest first: creating children changed them.
    a.dir_times.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
    for (comps, mtime) in std::mem::take(&mut a.dir_times) {
        let name = display(&comps);
        let (parent, last) = match comps.split_last() {
            Some((last, parent)) => (a.open_parent(parent, &name)?, last.clone()),
            None => (
                a.root.try_clone().map_err(|e| create_err(&name, e))?,
                OsString::from("."),
            ),
        };
        set_mtime(&parent, &last, mtime).map_err(|e| create_err(&name, e.into()))?;
    }
    Ok(a.stats)
}

struct Applier {
    dest: PathBuf,
    root: OwnedFd,
    lowers: Vec<PathBuf>,
    dir_times: Vec<(Vec<OsString>, u64)>,
    stats: ApplyStats,
    /// Canonical paths known to be directories in the merged view (a cache of `lookup`).
    known_dirs: HashSet<Vec<OsString>>,
}

/// What a path is in the merged view.
enum Kind {
    Missing,
    Dir,
    Symlink(PathBuf),
    Other,
}

fn create_err(entry: &str, source: io::Error) -> LayerError {
    LayerError::Create {
        entry: entry.to_owned(),
        source,
    }
}

fn display(comps: &[OsString]) -> String {
    let v: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    v.join("/")
}

fn open_dir_path(p: &Path) -> io::Result<OwnedFd> {
    Ok(File::open(p)?.into())
}

fn open_dir_at(parent: &impl AsFd, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        parent,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn set_mtime(parent: &impl AsFd, name: &OsStr, mtime: u64) -> nix::Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(parent, name, &t, &t, UtimensatFlags::NoFollowSymlink)
}

/// Splits an archive name into normal components; `None` if `..` climbs above the root.
fn normalize(name: &[u8]) -> Option<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Some(out)
}

impl Applier {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), LayerError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let Some(comps) = normalize(&raw) else {
            return Err(refused(&name, "it climbs out of the layer with `..`"));
        };
        let kind = entry.header().entry_type();
        self.stats.entries += 1;
        let Some((base, parent)) = comps.split_last() else {
            // The root itself (`./`): only a directory may describe it.
            if kind.is_dir() {
                let mtime = entry.header().mtime().map_err(LayerError::Archive)?;
                let dup = self.root.try_clone().map_err(|e| create_err(&name, e))?;
                self.set_owner_mode(&dup, OsStr::new("."), entry, &name)?;
                self.dir_times.push((Vec::new(), mtime));
                return Ok(());
            }
            if kind.is_symlink() {
                return Err(refused(&name, "a symlink named `.`"));
            }
            return Err(refused(&name, "only a directory can be the layer's root"));
        };
        let base_bytes = base.as_bytes();

        // Whiteouts.
        if base_bytes == OPAQUE_MARKER.as_bytes() {
            let dir = self.resolve(parent, &name)?;
            let fd = self.ensure_dirs(&dir, &name)?;
            let f = File::from(fd);
            xattr::FileExt::set_xattr(&f, super::opaque_xattr(), b"y")
                .map_err(|e| create_err(&name, e))?;
            self.stats.whiteouts += 1;
            return Ok(());
        }
        if let Some(hidden) = base_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(refused(&name, "a whiteout of `.` or `..`"));
            }
            let dir = self.resolve(parent, &name)?;
            let fd = self.ensure_dirs(&dir, &name)?;
            let hidden = OsStr::from_bytes(hidden);
            self.remove_existing(&fd, hidden, &name)?;
            mknodat(&fd, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| create_err(&name, e.into()))?;
            self.forget(&dir, hidden);
            self.stats.whiteouts += 1;
            return Ok(());
        }

        let dir = self.resolve(parent, &name)?;
        let fd = self.ensure_dirs(&dir, &name)?;
        let header = entry.header();
        let mode = header.mode().map_err(LayerError::Archive)? & 0o7777;
        let mtime = header.mtime().map_err(LayerError::Archive)?;
        let mut full = dir.clone();
        full.push(base.clone());

        match kind {
            tar::EntryType::Directory => {
                let exists_as_dir =
                    fs::symlink_metadata(self.dest.join(full.iter().collect::<PathBuf>()))
                        .map(|m| m.is_dir())
                        .unwrap_or(false);
                if !exists_as_dir {
                    self.remove_existing(&fd, base, &name)?;
                    mkdirat(&fd, base.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| create_err(&name, e.into()))?;
                }
                let d = open_dir_at(&fd, base).map_err(|e| create_err(&name, e.into()))?;
                fchmod(&d, Mode::from_bits_truncate(mode))
                    .map_err(|e| create_err(&name, e.into()))?;
                self.set_owner_mode(&fd, base, entry, &name)?;
                self.xattrs(&d, entry, &name)?;
                self.known_dirs.insert(full.clone());
                self.dir_times.push((full, mtime));
                return Ok(());
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove_existing(&fd, base, &name)?;
                let file = openat(
                    &fd,
                    base.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| create_err(&name, e.into()))?;
                let mut file = File::from(file);
                let n = io::copy(entry, &mut file).map_err(LayerError::Archive)?;
                self.stats.bytes += n;
                fchmod(&file, Mode::from_bits_truncate(mode))
                    .map_err(|e| create_err(&name, e.into()))?;
                self.xattrs(&file, entry, &name)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&name, "a symlink without a target"))?
                    .into_owned();
                self.remove_existing(&fd, base, &name)?;
                symlinkat(OsStr::from_bytes(&target), &fd, base.as_os_str())
                    .map_err(|e| create_err(&name, e.into()))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&name, "a hardlink without a target"))?
                    .into_owned();
                let Some(tcomps) = normalize(&target) else {
                    return Err(refused(
                        &name,
                        "a hardlink whose target climbs out with `..`",
                    ));
                };
                let Some((tbase, tparent)) = tcomps.split_last() else {
                    return Err(refused(&name, "a hardlink to the root"));
                };
                // The target must be an earlier, non-directory entry of this layer, reached
                // without following any symlink.
                let tfd = self
                    .open_parent(tparent, &name)
                    .map_err(|_| refused(&name, "a hardlink to something outside this layer"))?;
                match nix::sys::stat::fstatat(&tfd, tbase.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                {
                    Ok(st)
                        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
                            != SFlag::S_IFDIR => {}
                    _ => return Err(refused(&name, "a hardlink to something outside this layer")),
                }
                self.remove_existing(&fd, base, &name)?;
                linkat(
                    &tfd,
                    tbase.as_os_str(),
                    &fd,
                    base.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| create_err(&name, e.into()))?;
                self.forget(&dir, base);
                // A hardlink shares its target's inode: owner, mode and mtime are the target's.
                return Ok(());
            }
            // A user namespace may not make device nodes: a rootless store leaves them out
            // (as rootless podman does); a container gets its devices bound from the host.
            tar::EntryType::Char | tar::EntryType::Block if crate::rootless::active() => {
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = header
                            .device_major()
                            .map_err(LayerError::Archive)?
                            .unwrap_or(0);
                        let minor = header
                            .device_minor()
                            .map_err(LayerError::Archive)?
                            .unwrap_or(0);
                        let s = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (s, nix::sys::stat::makedev(major as u64, minor as u64))
                    }
                };
                self.remove_existing(&fd, base, &name)?;
                mknodat(
                    &fd,
                    base.as_os_str(),
                    sflag,
                    Mode::from_bits_truncate(mode),
                    dev,
                )
                .map_err(|e| create_err(&name, e.into()))?;
                fchmodat(
                    &fd,
                    base.as_os_str(),
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(|e| create_err(&name, e.into()))?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(()),
            other => {
                return Err(refused(&name, format!("unsupported entry type {other:?}")));
            }
        }
        self.forget(&dir, base);
        self.set_owner_mode(&fd, base, entry, &name)?;
        set_mtime(&fd, base, mtime).map_err(|e| create_err(&name, e.into()))?;
        Ok(())
    }

    fn set_owner_mode<R: Read>(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &tar::Entry<R>,
        entry_name: &str,
    ) -> Result<(), LayerError> {
        let h = entry.header();
        let uid = h.uid().map_err(LayerError::Archive)? as u32;
        let gid = h.gid().map_err(LayerError::Archive)? as u32;
        chown_at(parent, name, uid, gid).map_err(|e| create_err(entry_name, e.into()))?;
        let mode = h.mode().map_err(LayerError::Archive)? & 0o7777;
        if name == OsStr::new(".") {
            fchmod(parent, Mode::from_bits_truncate(mode))
                .map_err(|e| create_err(entry_name, e.into()))?;
        } else if mode & 0o6000 != 0 && h.entry_type() != tar::EntryType::Symlink {
            // chown clears the setuid and setgid bits: set the mode again after it.
            fchmodat(
                parent,
                name,
                Mode::from_bits_truncate(mode),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| create_err(entry_name, e.into()))?;
        }
        Ok(())
    }

    /// Sets the PAX `SCHILY.xattr.*` records of an entry on an open file or directory.
    fn xattrs<R: Read>(
        &self,
        fd: &impl AsFd,
        entry: &mut tar::Entry<R>,
        name: &str,
    ) -> Result<(), LayerError> {
        let Some(exts) = entry.pax_extensions().map_err(LayerError::Archive)? else {
            return Ok(());
        };
        let fd = fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| create_err(name, e))?;
        let f = File::from(fd);
        for ext in exts {
            let ext = ext.map_err(LayerError::Archive)?;
            let Ok(key) = ext.key() else { continue };
            if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                if super::is_overlay_xattr(attr) {
                    continue; // never let a layer forge overlay metadata
                }
                xattr::FileExt::set_xattr(&f, attr, ext.value_bytes())
                    .map_err(|e| create_err(name, e))?;
            }
        }
        Ok(())
    }

    /// Removes whatever this layer already has at `parent/name` (a later entry replaces an
    /// earlier one, as tar extraction does).
    fn remove_existing(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        entry: &str,
    ) -> Result<(), LayerError> {
        match nix::sys::stat::fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(create_err(entry, e.into())),
            Ok(st) => {
                let is_dir =
                    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR;
                if is_dir {
                    let d = open_dir_at(parent, name).map_err(|e| create_err(entry, e.into()))?;
                    remove_tree_at(&d).map_err(|e| create_err(entry, e))?;
                    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
                } else {
                    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                }
                .map_err(|e| create_err(entry, e.into()))
            }
        }
    }

    /// Drops cached knowledge about `dir/name` and below after it was replaced.
    fn forget(&mut self, dir: &[OsString], name: &OsStr) {
        if self.known_dirs.is_empty() {
            return;
        }
        let mut p = dir.to_vec();
        p.push(name.to_owned());
        self.known_dirs.retain(|k| !k.starts_with(&p));
    }

    /// Opens an existing directory of this layer without following symlinks.
    fn open_parent(&self, comps: &[OsString], entry: &str) -> Result<OwnedFd, LayerError> {
        let mut fd = self.root.try_clone().map_err(|e| create_err(entry, e))?;
        for c in comps {
            fd = open_dir_at(&fd, c).map_err(|e| create_err(entry, e.into()))?;
        }
        Ok(fd)
    }

    /// Makes sure every directory of `comps` exists in this layer (creating a missing one with
    /// the metadata of the same directory in the layers below, as overlay's copy-up would) and
    /// returns a descriptor of the last.
    fn ensure_dirs(&mut self, comps: &[OsString], entry: &str) -> Result<OwnedFd, LayerError> {
        let mut fd = self.root.try_clone().map_err(|e| create_err(entry, e))?;
        for (i, c) in comps.iter().enumerate() {
            match open_dir_at(&fd, c) {
                Ok(next) => fd = next,
                Err(Errno::ENOENT) => {
                    let lower = self.lower_meta(&comps[..=i]);
                    let (mode, uid, gid, mtime) = match &lower {
                        Some(m) => (
                            m.mode() & 0o7777,
                            m.uid(),
                            m.gid(),
                            Some(m.mtime().max(0) as u64),
                        ),
                        None => (0o755, 0, 0, None),
                    };
                    mkdirat(&fd, c.as_os_str(), Mode::from_bits_truncate(0o700))
                        .map_err(|e| create_err(entry, e.into()))?;
                    let next = open_dir_at(&fd, c).map_err(|e| create_err(entry, e.into()))?;
                    fchmod(&next, Mode::from_bits_truncate(mode))
                        .map_err(|e| create_err(entry, e.into()))?;
                    chown_at(&fd, c.as_os_str(), uid, gid)
                        .map_err(|e| create_err(entry, e.into()))?;
                    if let Some(mtime) = mtime {
                        self.dir_times.push((comps[..=i].to_vec(), mtime));
                    }
                    fd = next;
                }
                Err(Errno::ELOOP | Errno::ENOTDIR) => {
                    return Err(refused(
                        entry,
                        "its parent in this layer is not a directory",
                    ));
                }
                Err(e) => return Err(create_err(entry, e.into())),
            }
        }
        Ok(fd)
    }

    /// The metadata of a directory in the topmost lower layer that has it.
    fn lower_meta(&self, comps: &[OsString]) -> Option<fs::Metadata> {
        let rel: PathBuf = comps.iter().collect();
        for (i, lower) in self.lowers.iter().enumerate() {
            if !self.lower_reaches(i, comps) {
                return None;
            }
            if let Ok(m) = fs::symlink_metadata(lower.join(&rel)) {
                return m.is_dir().then_some(m);
            }
        }
        None
    }

    /// Whether lower layer `i` contributes to `comps`: every proper prefix of it is a real
    /// directory there, not hidden by an opaque directory or whiteout above.
    fn lower_reaches(&self, i: usize, comps: &[OsString]) -> bool {
        let mut prefix = PathBuf::new();
        for c in &comps[..comps.len().saturating_sub(1)] {
            prefix.push(c);
            for layer in std::iter::once(&self.dest).chain(&self.lowers[..i]) {
                if let Ok(m) = fs::symlink_metadata(layer.join(&prefix)) {
                    if !m.is_dir() {
                        return false; // a whiteout or a non-directory above hides the rest
                    }
                    if xattr::get(layer.join(&prefix), super::opaque_xattr())
                        .ok()
                        .flatten()
                        .as_deref()
                        == Some(b"y")
                    {
                        return false;
                    }
                }
            }
            match fs::symlink_metadata(self.lowers[i].join(&prefix)) {
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
        true
    }

    /// What `comps` is in the merged view: this layer first, then the lowers that reach it.
    fn lookup(&self, comps: &[OsString]) -> Kind {
        let rel: PathBuf = comps.iter().collect();
        let layers = std::iter::once(&self.dest).chain(&self.lowers);
        for (i, layer) in layers.enumerate() {
            if i > 0 && !self.lower_reaches(i - 1, comps) {
                return Kind::Missing;
            }
            if i == 0 && !self.upper_reaches(comps) {
                continue;
            }
            let Ok(m) = fs::symlink_metadata(layer.join(&rel)) else {
                continue;
            };
            let ft = m.file_type();
            return if ft.is_char_device() && m.rdev() == 0 {
                Kind::Missing // whited out
            } else if ft.is_dir() {
                Kind::Dir
            } else if ft.is_symlink() {
                match fs::read_link(layer.join(&rel)) {
                    Ok(t) => Kind::Symlink(t),
                    Err(_) => Kind::Other,
                }
            } else {
                Kind::Other
            };
        }
        Kind::Missing
    }

    /// Whether this layer's own tree reaches `comps` through real directories only.
    fn upper_reaches(&self, comps: &[OsString]) -> bool {
        let mut prefix = self.dest.clone();
        for c in &comps[..comps.len().saturating_sub(1)] {
            prefix.push(c);
            match fs::symlink_metadata(&prefix) {
                Ok(m) if m.is_dir() => {}
                _ => return false,
            }
        }
        true
    }

    /// Resolves a parent directory path as a chroot at the layer root would: symlinks (from
    /// this layer or a lower one) are followed, absolute targets restart at the root, `..` stops
    /// at the root. Returns normal components that are directories or do not exist yet.
    fn resolve(&mut self, comps: &[OsString], entry: &str) -> Result<Vec<OsString>, LayerError> {
        if self.known_dirs.contains(comps) {
            return Ok(comps.to_vec());
        }
        let mut out: Vec<OsString> = Vec::new();
        let mut queue: std::collections::VecDeque<OsString> = comps.iter().cloned().collect();
        let mut links = 0;
        let mut missing = false;
        while let Some(c) = queue.pop_front() {
            match c.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    out.pop();
                    missing = false;
                    continue;
                }
                _ => {}
            }
            out.push(c);
            if missing || self.known_dirs.contains(&out) {
                continue;
            }
            match self.lookup(&out) {
                Kind::Dir => {
                    self.known_dirs.insert(out.clone());
                }
                Kind::Missing => missing = true,
                Kind::Symlink(target) => {
                    links += 1;
                    if links > 40 {
                        return Err(refused(entry, "too many levels of symbolic links"));
                    }
                    out.pop();
                    let t = target.as_os_str().as_bytes();
                    if t.starts_with(b"/") {
                        out.clear();
                    }
                    let mut parts: Vec<OsString> = t
                        .split(|&b| b == b'/')
                        .map(|p| OsString::from_vec(p.to_vec()))
                        .collect();
                    parts.extend(queue.drain(..));
                    queue = parts.into();
                }
                Kind::Other => {
                    return Err(refused(
                        entry,
                        "a path through something that is not a directory",
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Removes everything inside the directory `dir` without following symlinks.
fn remove_tree_at(dir: &OwnedFd) -> io::Result<()> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsString::from_vec(n.to_vec()));
        }
    }
    for n in names {
        let st = nix::sys::stat::fstatat(dir, n.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
            let sub = open_dir_at(dir, &n)?;
            remove_tree_at(&sub)?;
            unlinkat(dir, n.as_os_str(), UnlinkatFlags::RemoveDir)?;
        } else {
            unlinkat(dir, n.as_os_str(), UnlinkatFlags::NoRemoveDir)?;
        }
    }
    Ok(())
}

/// Gives `parent/name` its owner. Rootless, an id outside the user's ranges cannot be had
/// (EINVAL): the file keeps the owner it was made with (root of the namespace), as rootless
/// podman does with a warning at setup (see `rootless`).
fn chown_at(parent: &OwnedFd, name: &OsStr, uid: u32, gid: u32) -> nix::Result<()> {
    match fchownat(
        parent,
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Err(Errno::EINVAL) if crate::rootless::active() => Ok(()),
        r => r,
    }
}
