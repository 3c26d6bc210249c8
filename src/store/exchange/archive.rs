//! The outer archives of `save`/`load`: an indexed reader over a tar file (seek to members
//! instead of extracting them) and a deterministic tar writer.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::super::{StoreError, io_err};

/// Where an archive's members are: a directory (OCI layout dir) or an indexed tar file.
pub enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        /// Normalized member name → (offset of the data, size).
        members: BTreeMap<String, (u64, u64)>,
    },
}

/// `a/./b//c` → `a/b/c`; `None` when it climbs with `..` (such members are never read).
fn normalize(name: &str) -> Option<String> {
    let mut out: Vec<&str> = Vec::new();
    for c in name.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => out.push(c),
        }
    }
    Some(out.join("/"))
}

impl Source {
    /// Opens a directory as is, or indexes a tar file in one pass over its headers.
    pub fn open(path: &Path) -> Result<Source, StoreError> {
        if path.is_dir() {
            return Ok(Source::Dir(path.to_owned()));
        }
        let file = File::open(path).map_err(io_err("open", path))?;
        let mut archive = tar::Archive::new(file);
        let mut members = BTreeMap::new();
        let bad = |e: io::Error| StoreError::Archive {
            message: format!(
                "{} is not a readable tar archive: {}",
                path.display(),
                crate::values::printable(&e.to_string())
            ),
            help: Some(
                "boxr loads OCI image layouts (directory or tar) and docker-archive tarballs"
                    .into(),
            ),
        };
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let raw = entry.path().map_err(bad)?.display().to_string();
            if let Some(name) = normalize(&raw) {
                members.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Source::Tar {
            path: path.to_owned(),
            members,
        })
    }

    pub fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => normalize(name).is_some_and(|n| d.join(n).is_file()),
            Source::Tar { members, .. } => {
                normalize(name).is_some_and(|n| members.contains_key(&n))
            }
        }
    }

    /// A reader over one member.
    pub fn open_member(&self, name: &str) -> Result<Box<dyn Read + '_>, StoreError> {
        let missing = || StoreError::Archive {
            message: format!("the archive has no `{name}`"),
            help: None,
        };
        let n = normalize(name).ok_or_else(missing)?;
        match self {
            Source::Dir(d) => {
                let p = d.join(&n);
                // An OCI layout directory is read without following symlinks out of it.
                let meta = std::fs::symlink_metadata(&p).map_err(|_| missing())?;
                if !meta.is_file() {
                    return Err(missing());
                }
                Ok(Box::new(File::open(&p).map_err(io_err("open", &p))?))
            }
            Source::Tar { path, members } => {
                let &(offset, size) = members.get(&n).ok_or_else(missing)?;
                let mut f = File::open(path).map_err(io_err("open", path))?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(io_err("read", path))?;
                Ok(Box::new(f.take(size)))
            }
        }
    }

    /// A whole small member (JSON), at most `cap` bytes.
    pub fn read_small(&self, name: &str, cap: u64) -> Result<Vec<u8>, StoreError> {
        let mut buf = Vec::new();
        self.open_member(name)?
            .take(cap + 1)
            .read_to_end(&mut buf)
            .map_err(|e| StoreError::Archive {
                message: format!("cannot read `{name}`: {e}"),
                help: None,
            })?;
        if buf.len() as u64 > cap {
            return Err(StoreError::Archive {
                message: format!("`{name}` is larger than {cap} bytes"),
                help: None,
            });
        }
        Ok(buf)
    }
}

/// Writes a tar whose bytes depend only on the members: fixed order (the caller's), mtime 0,
/// uid/gid 0 with no names, mode 0644 for files and 0755 for directories.
pub struct DeterministicTar<W: Write> {
    builder: tar::Builder<W>,
}

impl<W: Write> DeterministicTar<W> {
    pub fn new(w: W) -> Self {
        let mut builder = tar::Builder::new(w);
        builder.mode(tar::HeaderMode::Deterministic);
        DeterministicTar { builder }
    }

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }

    pub fn dir(&mut self, name: &str) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0);
        self.builder.append_data(&mut h, name, io::empty())
    }

    pub fn file(&mut self, name: &str, size: u64, data: impl Read) -> io::Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, size);
        self.builder.append_data(&mut h, name, data)
    }

    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }
}
