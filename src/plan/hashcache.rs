//! A stat cache for content hashing, like git's index: a file whose (device, inode, size, mtime,
//! ctime) are unchanged since it was hashed has the same content, so a rebuild of an unchanged
//! context reads no file. Keys still depend on content only: the cache only skips re-reading.
//!
//! A file modified within the same clock tick as its hashing could keep its stamp ("racily
//! clean" in git's words), so files changed less than [`RACY`] before the hashing are not
//! cached. The cache is plain data: the caller loads and saves it (the CLI keeps it in the
//! store), planning stays free of the store.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::key::Digest256;

/// Files modified this recently are hashed every time.
const RACY: i64 = 2;
/// At most this many entries are kept (those used last first).
const CAP: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    digest: Digest256,
    #[serde(skip)]
    used: bool,
}

/// Content digests of files, by path, valid while their stamp is unchanged.
#[derive(Debug, Default)]
pub struct FileHashCache {
    entries: Mutex<HashMap<PathBuf, Entry>>,
    changed: Mutex<bool>,
}

impl FileHashCache {
    /// A cache from what [`FileHashCache::to_bytes`] wrote (empty when unreadable).
    pub fn from_bytes(bytes: &[u8]) -> FileHashCache {
        let entries: HashMap<PathBuf, Entry> = serde_json::from_slice(bytes).unwrap_or_default();
        FileHashCache {
            entries: Mutex::new(entries),
            changed: Mutex::new(false),
        }
    }

    /// Whether anything was added or replaced since it was loaded.
    pub fn changed(&self) -> bool {
        *self.changed.lock().expect("not poisoned")
    }

    /// The entries to keep: those used by this plan, then others, up to a cap.
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries = self.entries.lock().expect("not poisoned");
        let mut kept: Vec<(&PathBuf, &Entry)> = entries.iter().filter(|(_, e)| e.used).collect();
        kept.extend(entries.iter().filter(|(_, e)| !e.used));
        kept.truncate(CAP);
        let map: HashMap<&PathBuf, &Entry> = kept.into_iter().collect();
        serde_json::to_vec(&map).expect("serializes")
    }

    /// The digest of `path` (whose metadata is `meta`), from the cache when its stamp is
    /// unchanged, else computed by `hash` (and remembered unless the file is too new).
    pub fn digest<E>(
        &self,
        path: &Path,
        meta: &Metadata,
        hash: impl FnOnce() -> Result<Digest256, E>,
    ) -> Result<Digest256, E> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.digest_at(path, meta, now, hash)
    }

    /// [`FileHashCache::digest`] with the time of the hashing given (`now`, in seconds).
    fn digest_at<E>(
        &self,
        path: &Path,
        meta: &Metadata,
        now: i64,
        hash: impl FnOnce() -> Result<Digest256, E>,
    ) -> Result<Digest256, E> {
        let stamp = Stamp::of(meta);
        if let Some(e) = self.entries.lock().expect("not poisoned").get_mut(path)
            && e.stamp == stamp
        {
            e.used = true;
            return Ok(e.digest);
        }
        let digest = hash()?;
        let newest = stamp.mtime.0.max(stamp.ctime.0);
        if now - newest >= RACY {
            self.entries.lock().expect("not poisoned").insert(
                path.to_owned(),
                Entry {
                    stamp,
                    digest,
                    used: true,
                },
            );
            *self.changed.lock().expect("not poisoned") = true;
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a").unwrap();
        // A minute after the file was written: not racy any more.
        let later = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            + 60;
        let cache = FileHashCache::default();
        let reads = Cell::new(0);
        let hash = || {
            reads.set(reads.get() + 1);
            Ok::<_, ()>(Digest256::of(&std::fs::read(&p).unwrap()))
        };
        let m = std::fs::metadata(&p).unwrap();
        let a = cache.digest_at(&p, &m, later, hash).unwrap();
        assert!(cache.changed());
        let again = FileHashCache::from_bytes(&cache.to_bytes());
        assert_eq!(again.digest_at(&p, &m, later, hash).unwrap(), a);
        assert_eq!(reads.get(), 1, "the second lookup read nothing");
        // A change of content changes the stamp (size, mtime or ctime): read again.
        std::fs::write(&p, "bb").unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_ne!(again.digest_at(&p, &m, later, hash).unwrap(), a);
        assert_eq!(reads.get(), 2);
    }

    #[test]
    fn racy_files_are_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, "a").unwrap();
        let cache = FileHashCache::default();
        let m = std::fs::metadata(&p).unwrap();
        cache
            .digest(&p, &m, || Ok::<_, ()>(Digest256::of(b"a")))
            .unwrap();
        assert!(!cache.changed());
    }
}
