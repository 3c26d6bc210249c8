//! Images to and from the rest of the ecosystem: `import` (a rootfs as a one-layer image),
//! `load` and `save` (OCI image layouts and docker-archive tarballs).

mod archive;
mod load;
mod save;

pub use load::Loaded;
pub use save::{ExportedImage, SaveFormat};

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::image::ref_key;
use super::{Image, LayerMeta, Store, StoreError, io_err, remove_tree};
use crate::layer::{self, WriteOptions, compress};
use crate::oci::{self, Descriptor, History, ImageConfig};

/// Removes a staging directory unless disarmed (on every error path).
struct Staged<'a> {
    path: Option<&'a Path>,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.path {
            let _ = remove_tree(p);
        }
    }
}

impl Store {
    /// Unpacks a layer tar (plain, gzip or zstd) into a new staged layer, re-commits it with
    /// boxr's reproducible writer, and publishes it. Returns the layer's meta.
    pub fn add_layer_from_tar(
        &self,
        tar: impl Read,
        lowers: &[&Path],
        clamp_mtime: Option<u64>,
    ) -> Result<LayerMeta, StoreError> {
        let staged = self.stage_layer()?;
        let mut guard = Staged {
            path: Some(&staged),
        };
        let root = staged.join("root");
        let (_, reader) = compress::decompressing(tar).map_err(|e| StoreError::Archive {
            message: format!("cannot read the layer: {e}"),
            help: None,
        })?;
        layer::apply(reader, &root, lowers)?;
        let stats = layer::diff_id(&root, WriteOptions { clamp_mtime })?;
        let meta = self.publish(&staged, stats, clamp_mtime)?;
        guard.path = None;
        Ok(meta)
    }

    /// Copies a directory tree into a new layer: its reproducible tar is streamed through a
    /// pipe straight into `apply`, so the bytes exist once, in flight.
    pub fn add_layer_from_dir(
        &self,
        dir: &Path,
        clamp_mtime: u64,
    ) -> Result<LayerMeta, StoreError> {
        let staged = self.stage_layer()?;
        let mut guard = Staged {
            path: Some(&staged),
        };
        let opts = WriteOptions {
            clamp_mtime: Some(clamp_mtime),
        };
        let stats = copy_through_tar(dir, opts, &staged.join("root"), &[])?;
        let meta = self.publish(&staged, stats, Some(clamp_mtime))?;
        guard.path = None;
        Ok(meta)
    }

    /// A new layer from an overlay upper dir that may still be in use (a container's): its
    /// tar is streamed through a pipe into `apply` over `lowers` (topmost first), so the copy
    /// is the layer's own; `fixup` then adjusts the copy (drops what is no change of the
    /// container's, maps ids back) before its DiffID is taken. `None` when nothing is left.
    pub fn add_layer_from_upper(
        &self,
        upper: &Path,
        lowers: &[&Path],
        clamp_mtime: u64,
        fixup: impl FnOnce(&Path) -> Result<(), StoreError>,
    ) -> Result<Option<LayerMeta>, StoreError> {
        let staged = self.stage_layer()?;
        let mut guard = Staged {
            path: Some(&staged),
        };
        let root = staged.join("root");
        let opts = WriteOptions {
            clamp_mtime: Some(clamp_mtime),
        };
        copy_through_tar(upper, opts, &root, lowers)?;
        fixup(&root)?;
        let empty = fs::read_dir(&root)
            .map_err(io_err("read", &root))?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        let stats = layer::diff_id(&root, opts)?;
        let meta = self.publish(&staged, stats, Some(clamp_mtime))?;
        guard.path = None;
        Ok(Some(meta))
    }

    /// Publishes a staged layer whose tar has `stats` (made with `clamp_mtime`).
    fn publish(
        &self,
        staged: &Path,
        stats: layer::LayerStats,
        clamp_mtime: Option<u64>,
    ) -> Result<LayerMeta, StoreError> {
        let meta = LayerMeta {
            diff_id: stats.diff_id,
            size: stats.size,
            clamp_mtime,
        };
        self.put_layer(staged, &meta)?;
        Ok(meta)
    }

    /// `boxr import ROOTFS NAME:TAG`: a one-layer image from a root filesystem directory or
    /// tarball (.tar, .tar.gz, .tar.zst). Reproducible: `Created` and every mtime are clamped to
    /// `epoch` (SOURCE_DATE_EPOCH, else 0), so the same rootfs gives the same Id in any store.
    pub fn import(&self, source: &Path, name: &str, epoch: u64) -> Result<Image, StoreError> {
        let key = ref_key(name)?;
        let meta = fs::metadata(source).map_err(io_err("read", source))?;
        let layer = if meta.is_dir() {
            self.add_layer_from_dir(source, epoch)?
        } else {
            let f = File::open(source).map_err(io_err("open", source))?;
            self.add_layer_from_tar(f, &[], Some(epoch))?
        };
        let created = crate::time::rfc3339(epoch as i64);
        let mut config = ImageConfig::linux(vec![layer.diff_id], Some(created.clone()));
        config.history = vec![History {
            created: Some(created),
            created_by: Some("boxr import".to_owned()),
            ..Default::default()
        }];
        let img = self.put_image(
            &config,
            vec![Descriptor::new(oci::MEDIA_LAYER, layer.diff_id, layer.size)],
        )?;
        self.set_ref(&key, img.manifest_digest)?;
        Ok(img)
    }
}

/// Copies the overlay-format tree `dir` into the empty directory `root` as a layer would carry
/// it: its reproducible tar streamed through a pipe straight into `apply` (over `lowers`), so
/// the bytes exist once, in flight. Returns the tar's stats.
fn copy_through_tar(
    dir: &Path,
    opts: WriteOptions,
    root: &Path,
    lowers: &[&Path],
) -> Result<layer::LayerStats, StoreError> {
    let (reader, writer) = io::pipe().map_err(io_err("create a pipe for", dir))?;
    let (written, applied) = std::thread::scope(|s| {
        let producer = s.spawn(move || layer::write_tar(dir, opts, writer).map(|(st, _)| st));
        let applied = layer::apply(reader, root, lowers);
        (
            producer.join().expect("the tar writer does not panic"),
            applied,
        )
    });
    // The writer's error is the cause when both fail (apply then sees a broken stream).
    let stats = written?;
    applied?;
    Ok(stats)
}

/// Makes the staged root of a layer look like a root directory (0755), whatever the umask.
pub(super) fn fix_root_mode(root: &Path) -> Result<(), StoreError> {
    fs::set_permissions(root, fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", root))
}
