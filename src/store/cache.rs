//! The build cache: what each build step (named by its StepKey) produced, and the persistent
//! directories of `cache` mounts.
//!
//! `cache/<key hex>.json` records a step's layer (or that it changed nothing). An entry is
//! written after its layer is published, so an entry never names a layer that was not
//! complete; one whose layer has since been collected is a miss.

use std::fs;
use std::io::{self, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{Store, StoreError, io_err, sync_dir};
use crate::digest::Digest;

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheEntry {
    /// The layer's DiffID and size, or `None` when the step changed no file.
    pub layer: Option<(Digest, u64)>,
    /// The mtime clamp the layer's tar was made with (SOURCE_DATE_EPOCH).
    pub clamp_mtime: u64,
}

impl Store {
    fn cache_path(&self, key: &Digest) -> PathBuf {
        self.root.join("cache").join(format!("{}.json", key.hex()))
    }

    /// The cached result of the step with this key, if it is complete.
    pub fn cache_get(&self, key: &Digest) -> Option<CacheEntry> {
        let bytes = fs::read(self.cache_path(key)).ok()?;
        let entry: CacheEntry = serde_json::from_slice(&bytes).ok()?;
        match &entry.layer {
            Some((d, _)) if !self.has_layer(d) => None,
            _ => Some(entry),
        }
    }

    /// Records a step's result (its layer must already be published).
    pub fn cache_put(&self, key: &Digest, entry: &CacheEntry) -> Result<(), StoreError> {
        let dir = self.root.join("cache");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = self.root.join("tmp");
        let mut t = tempfile::Builder::new()
            .prefix(&super::owned_prefix("cache-"))
            .tempfile_in(&tmp)
            .map_err(io_err("create a file in", &tmp))?;
        t.write_all(&serde_json::to_vec(entry).expect("serializes"))
            .map_err(io_err("write", t.path()))?;
        t.as_file().sync_all().map_err(io_err("sync", t.path()))?;
        let path = self.cache_path(key);
        t.persist(&path)
            .map_err(|e| io_err("publish", &path)(e.error))?;
        sync_dir(&dir)
    }

    /// Every cache entry: (key, entry). Unreadable entries are skipped.
    pub(super) fn cache_entries(&self) -> Result<Vec<(PathBuf, CacheEntry)>, StoreError> {
        let dir = self.root.join("cache");
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let e = e.map_err(io_err("list", &dir))?;
            if e.path() == self.stat_cache_path() {
                continue;
            }
            let entry = fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice::<CacheEntry>(&b).ok());
            match entry {
                Some(c) => out.push((e.path(), c)),
                None => {
                    // A torn or foreign file: nothing can use it.
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(out)
    }

    /// The directory of the cache mount `id` (created if missing), and its lock file.
    pub fn cache_mount(&self, id: &str) -> Result<(PathBuf, PathBuf), StoreError> {
        let h = hex::encode(Sha256::digest(id.as_bytes()));
        let base = self.root.join("cache-mounts");
        let dir = base.join(&h);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        Ok((dir, base.join(format!("{h}.lock"))))
    }
}

impl Store {
    fn record_path(&self, name: &str) -> PathBuf {
        let h = hex::encode(Sha256::digest(name.as_bytes()));
        self.root.join("builds").join(format!("{h}.json"))
    }

    /// What the last build of the image `name` recorded (for `boxr build --explain`).
    pub fn build_record(&self, name: &str) -> Option<serde_json::Value> {
        serde_json::from_slice(&fs::read(self.record_path(name)).ok()?).ok()
    }

    /// Replaces the record of the image `name`, unless it is unchanged (then nothing is
    /// written).
    pub fn put_build_record(
        &self,
        name: &str,
        record: &serde_json::Value,
    ) -> Result<(), StoreError> {
        if self.build_record(name).as_ref() == Some(record) {
            return Ok(());
        }
        let dir = self.root.join("builds");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = self.root.join("tmp");
        let mut t = tempfile::Builder::new()
            .prefix(&super::owned_prefix("build-"))
            .tempfile_in(&tmp)
            .map_err(io_err("create a file in", &tmp))?;
        t.write_all(&serde_json::to_vec(record).expect("serializes"))
            .map_err(io_err("write", t.path()))?;
        let path = self.record_path(name);
        t.persist(&path)
            .map_err(|e| io_err("publish", &path)(e.error))?;
        Ok(())
    }
}

impl Store {
    pub(super) fn stat_cache_path(&self) -> PathBuf {
        self.root.join("cache").join("stat-cache.json")
    }

    /// The bytes of the build context stat cache (empty when there is none).
    pub fn stat_cache(&self) -> Vec<u8> {
        fs::read(self.stat_cache_path()).unwrap_or_default()
    }

    /// Replaces the stat cache (written whole and renamed: never torn; not fsynced, since
    /// losing it only costs re-reading files).
    pub fn put_stat_cache(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = self.root.join("cache");
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let tmp = self.root.join("tmp");
        let mut t = tempfile::Builder::new()
            .prefix(&super::owned_prefix("stat-cache-"))
            .tempfile_in(&tmp)
            .map_err(io_err("create a file in", &tmp))?;
        t.write_all(bytes).map_err(io_err("write", t.path()))?;
        let path = self.stat_cache_path();
        t.persist(&path)
            .map_err(|e| io_err("publish", &path)(e.error))?;
        Ok(())
    }
}

impl Store {
    /// A derived artifact (a compiled seccomp program, ...) by kind and key: read when the
    /// store has it, else made by `make` and kept (tmp + rename: never torn).
    pub fn cached_artifact<E>(
        &self,
        kind: &str,
        key: &str,
        make: &dyn Fn() -> Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, E> {
        let dir = self.root.join("artifacts").join(kind);
        let path = dir.join(key);
        if let Ok(bytes) = fs::read(&path) {
            return Ok(bytes);
        }
        let bytes = make()?;
        let write = || -> std::io::Result<()> {
            fs::create_dir_all(&dir)?;
            let mut t = tempfile::Builder::new()
                .prefix(&super::owned_prefix("artifact-"))
                .tempfile_in(self.root.join("tmp"))?;
            t.write_all(&bytes)?;
            t.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        // Not keeping it only costs compiling again next time.
        let _ = write();
        Ok(bytes)
    }
}
