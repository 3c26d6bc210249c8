//! Garbage collection: mark everything reachable from the refs, sweep the rest, and empty
//! `tmp/`. Runs with the store locked exclusively, so no command is half-way through publishing
//! something, and everything in `tmp/` was left by a process that died.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::{Access, Store, StoreError, io_err, remove_tree};
use crate::digest::Digest;

/// What a gc removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub blobs: usize,
    pub layers: usize,
    pub tmp: usize,
    /// Build cache entries removed (with `build_cache`, or whose layer was gone).
    pub cache_entries: usize,
    /// cgroups of killed containers removed (filled in by the caller, which knows them).
    pub cgroups: usize,
    /// Network resources of removed containers and networks removed (network namespaces,
    /// veths, published ports, bridges, resolvers; filled in by the caller).
    pub network: usize,
    pub bytes: u64,
    /// Refs whose image could not be read (left in place, reported).
    pub broken_refs: Vec<String>,
}

fn tree_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    walkdir::WalkDir::new(p)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

impl Store {
    /// Removes unreferenced blobs and layers and stale temporary files. The store must have
    /// been opened with [`Access::Exclusive`].
    ///
    /// The build cache keeps its layers (so a later build hits) unless `build_cache` is set:
    /// then every cache entry and cache mount goes too, as `docker builder prune` does.
    pub fn gc(&self, access: Access, build_cache: bool) -> Result<GcReport, StoreError> {
        assert_eq!(access, Access::Exclusive, "gc needs the store to itself");
        let mut report = GcReport::default();
        let mut blobs: BTreeSet<Digest> = BTreeSet::new();
        let mut layers: BTreeSet<Digest> = BTreeSet::new();
        for (path, entry) in self.cache_entries()? {
            match entry.layer {
                Some((d, _)) if !build_cache && self.has_layer(&d) => {
                    layers.insert(d);
                }
                None if !build_cache => {}
                _ => {
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                    report.cache_entries += 1;
                }
            }
        }
        if build_cache {
            let _ = fs::remove_file(self.stat_cache_path());
        }
        let mounts = self.root.join("cache-mounts");
        if build_cache && mounts.exists() {
            report.bytes += tree_size(&mounts);
            remove_tree(&mounts)?;
        }
        for (name, d) in self.refs()? {
            match self.image(&d) {
                Ok(img) => {
                    blobs.insert(d);
                    blobs.insert(img.id);
                    blobs.extend(img.manifest.layers.iter().map(|l| l.digest));
                    layers.extend(img.config.rootfs.diff_ids.iter().copied());
                }
                Err(_) => {
                    // Keep what we can find of it; the user decides (rmi).
                    blobs.insert(d);
                    report.broken_refs.push(name);
                }
            }
        }
        // Containers keep their image's config and layers, tagged or not (a detached container
        // runs without holding the store lock).
        if let Ok(rd) = fs::read_dir(self.root.join("containers")) {
            for e in rd.flatten() {
                let image_id = fs::read(e.path().join("config.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v["ImageId"].as_str().and_then(Digest::parse));
                let Some(id) = image_id else { continue };
                blobs.insert(id);
                if let Ok(bytes) = self.read_blob(&id)
                    && let Ok(cfg) = serde_json::from_slice::<crate::oci::ImageConfig>(&bytes)
                {
                    layers.extend(cfg.rootfs.diff_ids);
                }
            }
        }
        let blob_dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blob_dir).map_err(io_err("list", &blob_dir))? {
            let e = e.map_err(io_err("list", &blob_dir))?;
            let name = e.file_name();
            let keep = name
                .to_str()
                .and_then(Digest::from_hex)
                .is_some_and(|d| blobs.contains(&d));
            if !keep {
                report.bytes += tree_size(&e.path());
                fs::remove_file(e.path()).map_err(io_err("remove", e.path()))?;
                report.blobs += 1;
            }
        }
        let layer_dir = self.root.join("layers");
        for e in fs::read_dir(&layer_dir).map_err(io_err("list", &layer_dir))? {
            let e = e.map_err(io_err("list", &layer_dir))?;
            let keep = e
                .file_name()
                .to_str()
                .and_then(Digest::from_hex)
                .is_some_and(|d| layers.contains(&d));
            if !keep {
                report.bytes += tree_size(&e.path());
                remove_tree(&e.path())?;
                report.layers += 1;
            }
        }
        let tmp = self.root.join("tmp");
        for e in fs::read_dir(&tmp).map_err(io_err("list", &tmp))? {
            let e = e.map_err(io_err("list", &tmp))?;
            report.bytes += tree_size(&e.path());
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            } else {
                fs::remove_file(e.path()).map_err(io_err("remove", e.path()))?;
            }
            report.tmp += 1;
        }
        Ok(report)
    }
}
