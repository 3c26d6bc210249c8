//! The content-addressed store under one root directory:
//!
//! ```text
//! blobs/sha256/<hex>   immutable OCI blobs (configs, manifests, layer tars kept from elsewhere)
//! layers/<hex>/        an unpacked layer (DiffID <hex>): root/ in overlay format + layer.json
//! refs.json            image name:tag → manifest digest
//! tmp/                 staging for atomic renames (all of it is stale when gc holds the lock)
//! journal/             kernel resources to clean up after a crash (written by the sandbox)
//! containers/<id>/     a container's upper/work dirs, /etc files, config and state
//! mnt/                 where every container's rootfs is mounted, each in its own mount namespace
//! names/<name>         a container name → its id
//! volumes/<name>/      named volumes
//! events.jsonl         the container event log
//! lock, refs.lock      flock files
//! ```
//!
//! Crash safety: everything is written under `tmp/` and renamed into place, data first and the
//! name that publishes it last, so a `kill -9` at any point leaves the old state or the new one.
//! Small metadata (JSON blobs, refs) is fsynced with its directory; layer contents are not, as
//! containerd does not. Every command holds a shared lock on `lock` for its whole run; `gc`
//! takes it exclusively, so it never collects something a running command is about to publish,
//! and whatever is left in `tmp/` then belongs to no live process.

mod cache;
mod error;
pub mod exchange;
mod gc;
mod image;
mod paths;
mod volume;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use cache::CacheEntry;
pub use error::StoreError;
use error::io_err;
pub use gc::GcReport;
pub use image::{HistoryRow, Image, ImageSummary, Untagged, ref_key, remote_key};
pub use paths::{journal_entry_in, root_of_container_dir};
pub use volume::valid_volume_name;

use crate::digest::{Digest, HashingWriter};

/// How a command holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading and adding: many at once.
    Shared,
    /// Removing (gc, rmi): alone.
    Exclusive,
}

/// An open store. The lock is held until it is dropped.
pub struct Store {
    root: PathBuf,
    _lock: Flock<File>,
    /// `--sync`: sync the filesystem once before publishing layer contents.
    sync: bool,
}

/// What the store keeps about an unpacked layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub diff_id: Digest,
    /// Size of the uncompressed layer tar.
    pub size: u64,
    /// The mtime clamp its tar was made with, when boxr made it (so it can be regenerated).
    pub clamp_mtime: Option<u64>,
}

/// Opens (creating) a lock file and takes an flock on it; released when dropped. The file is
/// opened O_CLOEXEC (std's default), so no child process inherits the lock.
fn flock(path: &Path, arg: FlockArg) -> Result<Flock<File>, StoreError> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    Flock::lock(file, arg).map_err(|(_, e)| io_err("lock", path)(e.into()))
}

/// `PREFIX` + `PID.STARTTIME-`: the name of a temporary file or directory under `tmp/` that
/// this process owns (tempfile adds random characters after it).
pub(crate) fn owned_prefix(prefix: &str) -> String {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let owner = OWNER.get_or_init(|| {
        let pid = std::process::id() as i32;
        let start = crate::platform::process_start_time(pid).unwrap_or(0);
        format!("{pid}.{start}-")
    });
    format!("{prefix}{owner}")
}

/// The owner (pid, start time) an [`owned_prefix`] name carries.
fn owner_of(name: &str) -> Option<(i32, u64)> {
    name.split('-').find_map(|part| {
        let (pid, start) = part.split_once('.')?;
        if pid.is_empty() || start.is_empty() {
            return None;
        }
        Some((pid.parse().ok()?, start.parse().ok()?))
    })
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: &Path, access: Access) -> Result<Store, StoreError> {
        for d in ["blobs/sha256", "layers", "tmp", "journal"] {
            let p = root.join(d);
            fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        }
        let arg = match access {
            Access::Shared => FlockArg::LockShared,
            Access::Exclusive => FlockArg::LockExclusive,
        };
        let lock = flock(&root.join("lock"), arg)?;
        let store = Store {
            root: root.to_owned(),
            _lock: lock,
            sync: false,
        };
        store.clean_orphans();
        Ok(store)
    }

    /// Removes what processes that are gone (a killed build, import or pull) left in `tmp/`:
    /// each entry names its owner (pid and start time), so one listing of `tmp/` tells, and
    /// nothing a live command is writing is touched. Entries of older boxr versions carry no
    /// owner and stay for `gc`. Returns how many were removed.
    pub fn clean_orphans(&self) -> usize {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return 0;
        };
        let mut removed = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((pid, start)) = owner_of(&name) else {
                continue;
            };
            if crate::platform::process_start_time(pid) == Some(start) {
                continue;
            }
            let path = e.path();
            let gone = if path.is_dir() {
                remove_tree(&path).is_ok()
            } else {
                fs::remove_file(&path).is_ok()
            };
            removed += usize::from(gone);
        }
        removed
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `--sync`: before a layer or a layer blob is published, sync the store's filesystem once,
    /// so its contents are on disk before its name is (layer files are not synced one by one).
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    fn sync_contents(&self) -> Result<(), StoreError> {
        if self.sync {
            let f = File::open(&self.root).map_err(io_err("open", &self.root))?;
            nix::unistd::syncfs(&f).map_err(|e| io_err("sync", &self.root)(e.into()))?;
        }
        Ok(())
    }

    /// The descriptor of the store lock this handle holds (a sandbox keeps it while it runs,
    /// so `gc` cannot collect the layers under a running container).
    pub fn lock_fd(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self._lock.as_raw_fd()
    }

    /// A fresh private directory under `tmp/`, named for this process (see [`owned_prefix`]).
    pub fn tmp_dir(&self, prefix: &str) -> Result<PathBuf, StoreError> {
        let tmp = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&owned_prefix(prefix))
            .tempdir_in(&tmp)
            .map(|d| d.keep())
            .map_err(io_err("create a directory in", tmp))
    }

    // ---- blobs -------------------------------------------------------------------------------

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// Stores a small blob (JSON) durably and returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let d = Digest::of(bytes);
        if self.has_blob(&d) {
            // Blobs are immutable: one that is there is complete (it was renamed into place).
            return Ok(d);
        }
        let mut w = self.blob_writer()?;
        w.write_all(bytes).map_err(io_err("write", &w.path))?;
        w.commit(None, true)
    }

    /// A writer for a blob of unknown digest; see [`BlobWriter::commit`].
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>, StoreError> {
        let tmp = self.root.join("tmp");
        let (file, path) = tempfile::Builder::new()
            .prefix(&owned_prefix("blob-"))
            .tempfile_in(&tmp)
            .map_err(io_err("create a file in", &tmp))?
            .keep()
            .map_err(|e| io_err("create a file in", &tmp)(e.error))?;
        Ok(BlobWriter {
            store: self,
            inner: Some(HashingWriter::new(io::BufWriter::with_capacity(
                1 << 20,
                file,
            ))),
            path,
        })
    }

    /// Reads a blob and checks it against its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(d);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing { digest: *d },
            _ => io_err("read", &path)(e),
        })?;
        let actual = Digest::of(&bytes);
        if actual != *d {
            return Err(StoreError::Corrupt { digest: *d, actual });
        }
        Ok(bytes)
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File, StoreError> {
        let path = self.blob_path(d);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::Missing { digest: *d },
            _ => io_err("open", &path)(e),
        })
    }

    // ---- layers ------------------------------------------------------------------------------

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// The unpacked tree of a layer, for use as an overlay lowerdir.
    pub fn layer_root(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("root")
    }

    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).join("layer.json").is_file()
    }

    pub fn layer_meta(&self, diff_id: &Digest) -> Result<LayerMeta, StoreError> {
        let p = self.layer_dir(diff_id).join("layer.json");
        let bytes = fs::read(&p).map_err(io_err("read", &p))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
            what: "layer record",
            digest: *diff_id,
            reason: e.to_string(),
        })
    }

    /// A staging directory for a new layer: fill `<dir>/root`, then [`Store::put_layer`].
    pub fn stage_layer(&self) -> Result<PathBuf, StoreError> {
        let dir = self.tmp_dir("layer-")?;
        let root = dir.join("root");
        fs::create_dir(&root).map_err(io_err("create", &root))?;
        exchange::fix_root_mode(&root)?;
        Ok(dir)
    }

    /// Publishes a staged layer under its DiffID. If the layer already exists (another process
    /// won the race, or it was already there), the staged copy is dropped.
    pub fn put_layer(&self, staged: &Path, meta: &LayerMeta) -> Result<(), StoreError> {
        self.sync_contents()?;
        let json = staged.join("layer.json");
        fs::write(&json, serde_json::to_vec(meta).expect("serializes"))
            .map_err(io_err("write", &json))?;
        let target = self.layer_dir(&meta.diff_id);
        match fs::rename(staged, &target) {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == io::ErrorKind::DirectoryNotEmpty
                    || e.kind() == io::ErrorKind::AlreadyExists =>
            {
                remove_tree(staged)
            }
            Err(e) => Err(io_err("publish", &target)(e)),
        }
    }

    // ---- refs --------------------------------------------------------------------------------

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    /// Every name:tag and the manifest it points to.
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>, StoreError> {
        let p = self.refs_path();
        match fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
                action: "parse",
                path: p,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err("read", p)(e)),
        }
    }

    /// Changes the refs under the refs lock: read, modify, write to tmp, fsync, rename.
    fn update_refs<T>(
        &self,
        f: impl FnOnce(&mut BTreeMap<String, Digest>) -> T,
    ) -> Result<T, StoreError> {
        let _lock = flock(&self.root.join("refs.lock"), FlockArg::LockExclusive)?;
        let mut refs = self.refs()?;
        let out = f(&mut refs);
        let tmp = self.root.join("tmp");
        let mut t = tempfile::Builder::new()
            .prefix(&owned_prefix("refs-"))
            .tempfile_in(&tmp)
            .map_err(io_err("create a file in", &tmp))?;
        let mut json = serde_json::to_vec_pretty(&refs).expect("serializes");
        json.push(b'\n');
        t.write_all(&json).map_err(io_err("write", t.path()))?;
        t.as_file().sync_all().map_err(io_err("sync", t.path()))?;
        t.persist(self.refs_path())
            .map_err(|e| io_err("publish", self.refs_path())(e.error))?;
        sync_dir(&self.root)?;
        Ok(out)
    }

    /// Points `name` (a full `repository:tag`) at a manifest; returns what it pointed at before.
    pub fn set_ref(&self, name: &str, manifest: Digest) -> Result<Option<Digest>, StoreError> {
        self.update_refs(|r| r.insert(name.to_owned(), manifest))
    }

    pub fn remove_ref(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        self.update_refs(|r| r.remove(name))
    }
}

/// A blob being written: hashed as it is written, published by [`BlobWriter::commit`].
pub struct BlobWriter<'s> {
    store: &'s Store,
    /// `None` once committed.
    inner: Option<HashingWriter<io::BufWriter<File>>>,
    path: PathBuf,
}

impl BlobWriter<'_> {
    /// Publishes the blob under its digest. With `expected`, a mismatch is an error and nothing
    /// is published; `durable` fsyncs the blob and its directory first.
    pub fn commit(
        mut self,
        expected: Option<&Digest>,
        durable: bool,
    ) -> Result<Digest, StoreError> {
        let inner = self.inner.take().expect("committed once");
        let (digest, _size, buf) = inner.finish();
        let file = buf
            .into_inner()
            .map_err(|e| io_err("write", &self.path)(e.into_error()))?;
        if let Some(want) = expected
            && *want != digest
        {
            let _ = fs::remove_file(&self.path);
            return Err(StoreError::Corrupt {
                digest: *want,
                actual: digest,
            });
        }
        if durable {
            file.sync_all().map_err(io_err("sync", &self.path))?;
        } else {
            self.store.sync_contents()?;
        }
        drop(file);
        let target = self.store.blob_path(&digest);
        fs::rename(&self.path, &target).map_err(io_err("publish", &target))?;
        if durable {
            sync_dir(target.parent().expect("blobs have a directory"))?;
        }
        Ok(digest)
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.inner.as_ref().map_or(0, |w| w.count())
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Not committed (an error on the way): leave nothing behind.
        if self.inner.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes a directory tree (a container's directory, a staged layer).
pub fn remove_dir_tree(path: &Path) -> Result<(), StoreError> {
    remove_tree(path)
}

/// Removes a directory tree that may hold read-only directories.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            // Make every directory writable and try again (a layer may hold 0555 dirs and the
            // store may be used without CAP_DAC_OVERRIDE).
            for e in walkdir::WalkDir::new(path).into_iter().flatten() {
                if e.file_type().is_dir() {
                    use std::os::unix::fs::PermissionsExt;
                    let _ = fs::set_permissions(e.path(), fs::Permissions::from_mode(0o700));
                }
            }
            fs::remove_dir_all(path).map_err(io_err("remove", path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_carry_their_owner() {
        let name = format!("{}abc123", owned_prefix("layer-"));
        let (pid, start) = owner_of(&name).unwrap();
        assert_eq!(pid, std::process::id() as i32);
        assert_eq!(crate::platform::process_start_time(pid), Some(start));
        assert_eq!(owner_of("layer-abc123"), None);
        assert_eq!(owner_of("blob-.5-x"), None);
    }

    #[test]
    fn open_removes_what_dead_processes_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Access::Shared).unwrap();
        let mine = store.tmp_dir("step-").unwrap();
        // A pid that cannot be alive with this start time, and an untagged entry.
        let dead = dir.path().join("tmp/step-999999999.1-xyz");
        fs::create_dir_all(dead.join("root/sub")).unwrap();
        let old = dir.path().join("tmp/layer-old");
        fs::create_dir(&old).unwrap();
        assert_eq!(store.clean_orphans(), 1);
        assert!(mine.exists() && old.exists() && !dead.exists());
    }
}
