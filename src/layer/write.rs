//! An overlay-format directory → a reproducible OCI layer tar.
//!
//! Reproducible means: the same tree gives the same bytes, whatever the inode numbers, the
//! directory order on disk, the atime/ctime or the user names of the machine. Entries are written
//! depth-first with the children of each directory in bytewise name order (parents before their
//! children, as `tar` and BuildKit do); mtimes are clamped to the given epoch (so the unpacked
//! layer keeps its real mtimes and the same clamp regenerates the same tar); uid/gid are numeric
//! with empty names; xattrs are PAX records in sorted order, `trusted.overlay.*` dropped (overlay
//! writes `origin`/`impure` on copy-up; `opaque` becomes a marker entry); hardlinks stay links;
//! sparse files are stored as regular files; sockets are skipped (tar cannot hold them).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashingWriter};

use super::{LayerError, OPAQUE_MARKER, WHITEOUT_PREFIX};

/// How a layer tar is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriteOptions {
    /// Clamp every mtime to at most this (SOURCE_DATE_EPOCH).
    pub clamp_mtime: Option<u64>,
}

/// What a written layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerStats {
    /// The SHA-256 of the uncompressed tar: the layer's DiffID.
    pub diff_id: Digest,
    /// The size of the uncompressed tar.
    pub size: u64,
    /// The number of entries (whiteouts and opaque markers included).
    pub entries: u64,
}

/// The DiffID of the layer `root` would give, without writing the tar anywhere: the commit
/// of an upper dir streams it through SHA-256 in one pass.
pub fn diff_id(root: &Path, opts: WriteOptions) -> Result<LayerStats, LayerError> {
    write_tar(root, opts, io::sink()).map(|(stats, _)| stats)
}

/// Writes the layer tar of `root` to `out`, returning its stats and the writer.
pub fn write_tar<W: Write>(
    root: &Path,
    opts: WriteOptions,
    out: W,
) -> Result<(LayerStats, W), LayerError> {
    let hashing = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, out));
    let mut w = Writer {
        builder: tar::Builder::new(hashing),
        opts,
        links: HashMap::new(),
        entries: 0,
        buf: vec![0; 1 << 20],
    };
    w.dir(root, Path::new(""))?;
    let hashing = w.builder.into_inner().map_err(LayerError::Write)?;
    let (diff_id, size, buffered) = hashing.finish();
    let out = buffered
        .into_inner()
        .map_err(|e| LayerError::Write(e.into_error()))?;
    Ok((
        LayerStats {
            diff_id,
            size,
            entries: w.entries,
        },
        out,
    ))
}

struct Writer<W: Write> {
    builder: tar::Builder<HashingWriter<io::BufWriter<W>>>,
    opts: WriteOptions,
    /// (dev, ino) → the archive path of the first link, for hardlinks.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
    buf: Vec<u8>,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Read {
        path: path.to_owned(),
        source,
    }
}

impl<W: Write> Writer<W> {
    /// Writes the children of `dir` (archive path `rel`), sorted by name bytes.
    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<(), LayerError> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .map_err(read_err(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(read_err(dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let path = dir.join(&name);
            let arc = rel.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(read_err(&path))?;
            self.entry(&path, &arc, &meta)?;
            if meta.is_dir() {
                self.dir(&path, &arc)?;
            }
        }
        Ok(())
    }

    fn header(&self, meta: &fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        let mtime = meta.mtime().max(0) as u64;
        h.set_mtime(match self.opts.clamp_mtime {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        });
        h.set_size(0);
        h
    }

    fn entry(&mut self, path: &Path, arc: &Path, meta: &fs::Metadata) -> Result<(), LayerError> {
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // An overlay whiteout becomes `.wh.NAME`.
            let name = arc.file_name().expect("entries have names");
            let mut wh = std::ffi::OsString::from(WHITEOUT_PREFIX);
            wh.push(name);
            let wh_path = arc.with_file_name(wh);
            let mut h = self.header(meta, tar::EntryType::Regular);
            return self.append(&mut h, &wh_path, io::empty());
        }
        if ft.is_socket() {
            return Ok(());
        }
        self.xattrs(path, ft.is_symlink())?;
        if ft.is_dir() {
            let mut h = self.header(meta, tar::EntryType::Directory);
            let mut p = arc.as_os_str().to_owned();
            p.push("/");
            self.append(&mut h, Path::new(&p), io::empty())?;
            if xattr::get(path, super::opaque_xattr())
                .map_err(read_err(path))?
                .as_deref()
                == Some(b"y")
            {
                let mut h = self.header(meta, tar::EntryType::Regular);
                h.set_mode(0);
                return self.append(&mut h, &arc.join(OPAQUE_MARKER), io::empty());
            }
            return Ok(());
        }
        if ft.is_symlink() {
            let target = fs::read_link(path).map_err(read_err(path))?;
            let mut h = self.header(meta, tar::EntryType::Symlink);
            self.entries += 1;
            return self
                .builder
                .append_link(&mut h, arc, &target)
                .map_err(LayerError::Write);
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let id = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&id) {
                    let first = first.clone();
                    let mut h = self.header(meta, tar::EntryType::Link);
                    self.entries += 1;
                    return self
                        .builder
                        .append_link(&mut h, arc, &first)
                        .map_err(LayerError::Write);
                }
                self.links.insert(id, arc.to_owned());
            }
            let mut h = self.header(meta, tar::EntryType::Regular);
            h.set_size(meta.len());
            let file = File::options()
                .read(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits())
                .open(path)
                .map_err(read_err(path))?;
            return self.append_file(&mut h, arc, path, file, meta.len());
        }
        let kind = if ft.is_char_device() {
            tar::EntryType::Char
        } else if ft.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        let mut h = self.header(meta, kind);
        if !ft.is_fifo() {
            let rdev = meta.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(LayerError::Write)?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(LayerError::Write)?;
        }
        self.append(&mut h, arc, io::empty())
    }

    /// PAX xattr records for the next entry, sorted; overlay's own attributes dropped.
    fn xattrs(&mut self, path: &Path, symlink: bool) -> Result<(), LayerError> {
        if symlink {
            // Only trusted.* and security.* can be set on symlinks; none matter in images.
            return Ok(());
        }
        let mut records = BTreeMap::new();
        for name in xattr::list(path).map_err(read_err(path))? {
            let name_str = name.to_string_lossy();
            if super::is_overlay_xattr(&name_str) {
                continue;
            }
            if let Some(value) = xattr::get(path, &name).map_err(read_err(path))? {
                records.insert(format!("SCHILY.xattr.{name_str}"), value);
            }
        }
        if !records.is_empty() {
            self.builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(LayerError::Write)?;
        }
        Ok(())
    }

    fn append(
        &mut self,
        h: &mut tar::Header,
        arc: &Path,
        data: impl Read,
    ) -> Result<(), LayerError> {
        self.entries += 1;
        self.builder
            .append_data(h, arc, data)
            .map_err(LayerError::Write)
    }

    fn append_file(
        &mut self,
        h: &mut tar::Header,
        arc: &Path,
        path: &Path,
        mut file: File,
        size: u64,
    ) -> Result<(), LayerError> {
        // Small files go through one buffer; larger ones stream. Either way the header's size
        // must match what is read, or the archive would be corrupt.
        if size <= self.buf.len() as u64 {
            let n = size as usize;
            let mut buf = std::mem::take(&mut self.buf);
            let result = read_exact_or_changed(&mut file, &mut buf[..n], path)
                .and_then(|()| self.append(h, arc, &buf[..n]));
            self.buf = buf;
            return result;
        }
        let mut reader = Exact {
            inner: file.take(size),
            left: size,
            path,
        };
        self.append(h, arc, &mut reader)?;
        if reader.left != 0 {
            return Err(LayerError::Changed {
                path: path.to_owned(),
            });
        }
        Ok(())
    }
}

fn read_exact_or_changed(file: &mut File, buf: &mut [u8], path: &Path) -> Result<(), LayerError> {
    file.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => LayerError::Changed {
            path: path.to_owned(),
        },
        _ => LayerError::Read {
            path: path.to_owned(),
            source: e,
        },
    })
}

/// Reads exactly `left` bytes; an early end means the file shrank while being read.
struct Exact<'a> {
    inner: io::Take<File>,
    left: u64,
    path: &'a Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being read", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Removes the attributes overlay writes into an upper dir (`origin`, `impure`, `nlink`, ...)
/// except the opaque marker, so the committed dir is a clean layer in overlay format (it is a
/// lowerdir of later steps, where stale `origin`s would point at inodes of another mount).
pub fn strip_overlay_xattrs(root: &Path) -> Result<(), LayerError> {
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(root).to_owned();
            LayerError::Read {
                path: p,
                source: e.into(),
            }
        })?;
        if entry.path_is_symlink() {
            continue;
        }
        let path = entry.path();
        for name in xattr::list(path).map_err(read_err(path))? {
            let n = name.to_string_lossy();
            if super::is_overlay_xattr(&n) && n != super::opaque_xattr() {
                xattr::remove(path, &name).map_err(read_err(path))?;
            }
        }
    }
    Ok(())
}
