//! `boxr load`: OCI image layouts (directory or tar) and docker-archive tarballs (what
//! `docker save`, `podman save` and `skopeo copy` write) → images in the store.
//!
//! Every blob is copied once into the store and checked against its digest; every layer is then
//! applied from the stored blob into a staged layer directory (see `layer::apply` for the
//! safety rules), its uncompressed stream checked against the config's DiffID. Blobs keep their
//! original bytes, so the image keeps its manifest digest and saves back unchanged.

use std::io;
use std::path::{Path, PathBuf};

use super::super::image::ref_key;
use super::super::{Image, LayerMeta, Store, StoreError, io_err, remove_tree};
use super::archive::Source;
use crate::digest::{Digest, HashingReader};
use crate::layer::{self, compress};
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use crate::reference::ImageRef;

const JSON_CAP: u64 = 16 << 20;

/// An image that `load` added, with the names it was tagged with.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub image: Image,
    pub names: Vec<String>,
}

fn invalid(message: impl Into<String>) -> StoreError {
    StoreError::Archive {
        message: message.into(),
        help: None,
    }
}

impl Store {
    /// Loads every image of the archive or layout at `path`.
    pub fn load(&self, path: &Path) -> Result<Vec<Loaded>, StoreError> {
        let work = self.tmp_dir("load-")?;
        let result = self.load_in(path, &work);
        let _ = remove_tree(&work);
        result
    }

    /// The image `digest` (a manifest, or an index whose entry for this platform is taken) of
    /// the OCI layout directory `layout`, loaded without naming it (an `oci:` build base).
    pub fn load_oci_image(&self, layout: &Path, digest: &Digest) -> Result<Image, StoreError> {
        if let Ok(img) = self.image(digest) {
            return Ok(img);
        }
        let src = Source::open(layout)?;
        let bytes = read_verified(&src, digest)?;
        let media: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{digest}: {e}")))?;
        let manifest = match media["mediaType"].as_str() {
            Some(oci::MEDIA_INDEX | oci::DOCKER_MANIFEST_LIST) => {
                self.pick_platform(&src, digest)?
            }
            _ => *digest,
        };
        self.load_oci_manifest(&src, &manifest)
    }

    fn load_in(&self, path: &Path, work: &Path) -> Result<Vec<Loaded>, StoreError> {
        // A compressed archive (`docker save | gzip`) is decompressed once to a temp file so
        // its members can be read by offset.
        let mut archive_path = path.to_owned();
        if path.is_file() {
            let f = std::fs::File::open(path).map_err(io_err("open", path))?;
            let (kind, mut r) = compress::decompressing(f).map_err(io_err("read", path))?;
            if kind != compress::Compression::None {
                archive_path = work.join("archive.tar");
                let mut out = std::fs::File::create(&archive_path)
                    .map_err(io_err("create", &archive_path))?;
                io::copy(&mut r, &mut out).map_err(io_err("decompress", path))?;
            }
        }
        let src = Source::open(&archive_path)?;
        let fallback = fallback_name(path);
        if src.has("index.json") {
            self.load_oci(&src, &fallback)
        } else if src.has("manifest.json") {
            self.load_docker(&src)
        } else {
            Err(StoreError::Archive {
                message: format!(
                    "{} is neither an OCI image layout nor a docker archive",
                    path.display()
                ),
                help: Some("expected index.json (OCI) or manifest.json (docker save)".into()),
            })
        }
    }

    fn load_oci(&self, src: &Source, fallback: &str) -> Result<Vec<Loaded>, StoreError> {
        let index: Index = serde_json::from_slice(&src.read_small("index.json", JSON_CAP)?)
            .map_err(|e| invalid(format!("index.json: {e}")))?;
        let mut out: Vec<Loaded> = Vec::new();
        for desc in &index.manifests {
            let manifest_digest = match desc.media_type.as_str() {
                oci::MEDIA_INDEX | oci::DOCKER_MANIFEST_LIST => {
                    self.pick_platform(src, &desc.digest)?
                }
                _ => desc.digest,
            };
            let image = self.load_oci_manifest(src, &manifest_digest)?;
            let names = oci_names(desc, fallback);
            for n in &names {
                self.set_ref(n, image.manifest_digest)?;
            }
            match out
                .iter_mut()
                .find(|l| l.image.manifest_digest == image.manifest_digest)
            {
                Some(l) => l.names.extend(names),
                None => out.push(Loaded { image, names }),
            }
        }
        Ok(out)
    }

    /// The manifest for this machine's platform in an image index.
    fn pick_platform(&self, src: &Source, index_digest: &Digest) -> Result<Digest, StoreError> {
        let bytes = read_verified(src, index_digest)?;
        let nested: Index = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("image index {index_digest}: {e}")))?;
        let arch = crate::platform::architecture();
        nested
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == crate::platform::os() && p.architecture == arch)
            })
            .map(|m| m.digest)
            .ok_or_else(|| {
                invalid(format!(
                    "image index {index_digest} has no linux/{arch} image"
                ))
            })
    }

    fn load_oci_manifest(&self, src: &Source, digest: &Digest) -> Result<Image, StoreError> {
        let manifest_bytes = read_verified(src, digest)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
        let config_bytes = read_verified(src, &manifest.config.digest)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("image config {}: {e}", manifest.config.digest)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "manifest {digest} has {} layers but its config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut lowers: Vec<PathBuf> = Vec::new();
        for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            let member = format!("blobs/sha256/{}", desc.digest.hex());
            self.load_layer(src, &member, Some(desc), diff_id, &lowers)?;
            lowers.insert(0, self.layer_root(diff_id));
        }
        self.put_blob(&config_bytes)?;
        self.put_blob(&manifest_bytes)?;
        self.image(digest)
    }

    /// Copies a layer blob into the store (verifying it) and unpacks it (verifying the DiffID),
    /// skipping what the store already has. Returns the blob's descriptor.
    fn load_layer(
        &self,
        src: &Source,
        member: &str,
        desc: Option<&Descriptor>,
        diff_id: &Digest,
        lowers: &[PathBuf],
    ) -> Result<Descriptor, StoreError> {
        let blob_digest = match desc {
            Some(d) if self.has_blob(&d.digest) => d.digest,
            _ => {
                let mut w = self.blob_writer()?;
                let mut r = src.open_member(member)?;
                io::copy(&mut r, &mut w)
                    .map_err(|e| invalid(format!("cannot read `{member}`: {e}")))?;
                w.commit(desc.map(|d| &d.digest), false)?
            }
        };
        let blob = self.open_blob(&blob_digest)?;
        let size = blob
            .metadata()
            .map_err(io_err("read", self.blob_path(&blob_digest)))?
            .len();
        let (kind, _) = compress::decompressing(self.open_blob(&blob_digest)?)
            .map_err(io_err("read", self.blob_path(&blob_digest)))?;
        let media = match desc {
            Some(d) => d.media_type.clone(),
            None => kind.oci_media_type().to_owned(),
        };
        self.unpack_blob(&blob_digest, diff_id, lowers)?;
        Ok(Descriptor::new(&media, blob_digest, size))
    }

    /// Unpacks the stored layer blob `blob_digest` (plain, gzip or zstd) as the layer
    /// `diff_id` over `lowers` (topmost first), checking the uncompressed stream against the
    /// DiffID. Nothing is published when the check fails; a layer already there is kept.
    pub fn unpack_blob(
        &self,
        blob_digest: &Digest,
        diff_id: &Digest,
        lowers: &[PathBuf],
    ) -> Result<(), StoreError> {
        if self.has_layer(diff_id) {
            return Ok(());
        }
        let blob = self.open_blob(blob_digest)?;
        let staged = self.stage_layer()?;
        let result = (|| {
            let (_, r) = compress::decompressing(blob)
                .map_err(io_err("read", self.blob_path(blob_digest)))?;
            let mut hashing = HashingReader::new(r);
            let lower_refs: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
            layer::apply(&mut hashing, &staged.join("root"), &lower_refs)?;
            // The DiffID covers the whole stream, padding after the end marker included.
            io::copy(&mut hashing, &mut io::sink())
                .map_err(io_err("read", self.blob_path(blob_digest)))?;
            let (actual, uncompressed) = hashing.finish();
            if actual != *diff_id {
                return Err(StoreError::Corrupt {
                    digest: *diff_id,
                    actual,
                });
            }
            self.put_layer(
                &staged,
                &LayerMeta {
                    diff_id: *diff_id,
                    size: uncompressed,
                    clamp_mtime: None,
                },
            )
        })();
        if result.is_err() {
            let _ = remove_tree(&staged);
        }
        result
    }

    /// Unpacks the layers of `img` that the store has only as blobs, bottom first (a pulled
    /// image's layers are kept as received and unpacked when first used: by `run`, `create`,
    /// or a build that starts from it).
    pub fn unpack_image(&self, img: &Image) -> Result<(), StoreError> {
        let mut lowers: Vec<PathBuf> = Vec::new();
        for (desc, diff_id) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
            if !self.has_layer(diff_id) {
                if !self.has_blob(&desc.digest) {
                    return Err(StoreError::Missing { digest: *diff_id });
                }
                self.unpack_blob(&desc.digest, diff_id, &lowers)?;
            }
            lowers.insert(0, self.layer_root(diff_id));
        }
        Ok(())
    }

    /// Publishes an image whose layers are all in the store, unpacked or as blobs: its config, then its
    /// manifest (kept byte for byte, so its digest is the one it was received with). The
    /// manifest is published last, so a crash before leaves no image, only blobs for `gc`.
    pub fn add_image(
        &self,
        manifest_bytes: &[u8],
        config_bytes: &[u8],
    ) -> Result<Image, StoreError> {
        let digest = Digest::of(manifest_bytes);
        let manifest: Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
        if Digest::of(config_bytes) != manifest.config.digest {
            return Err(StoreError::Corrupt {
                digest: manifest.config.digest,
                actual: Digest::of(config_bytes),
            });
        }
        let config: ImageConfig = serde_json::from_slice(config_bytes)
            .map_err(|e| invalid(format!("image config {}: {e}", manifest.config.digest)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "manifest {digest} has {} layers but its config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
            if !self.has_layer(diff_id) && !self.has_blob(&desc.digest) {
                return Err(StoreError::Missing {
                    digest: desc.digest,
                });
            }
        }
        self.put_blob(config_bytes)?;
        self.put_blob(manifest_bytes)?;
        self.image(&digest)
    }

    fn load_docker(&self, src: &Source) -> Result<Vec<Loaded>, StoreError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let entries: Vec<Entry> =
            serde_json::from_slice(&src.read_small("manifest.json", JSON_CAP)?)
                .map_err(|e| invalid(format!("manifest.json: {e}")))?;
        let mut out = Vec::new();
        for e in entries {
            let config_bytes = src.read_small(&e.config, JSON_CAP)?;
            let config: ImageConfig = serde_json::from_slice(&config_bytes)
                .map_err(|err| invalid(format!("{}: {err}", e.config)))?;
            if config.rootfs.diff_ids.len() != e.layers.len() {
                return Err(invalid(format!(
                    "{} lists {} layers but its config {} diff_ids",
                    e.config,
                    e.layers.len(),
                    config.rootfs.diff_ids.len()
                )));
            }
            let mut lowers: Vec<PathBuf> = Vec::new();
            let mut descs = Vec::new();
            for (member, diff_id) in e.layers.iter().zip(&config.rootfs.diff_ids) {
                descs.push(self.load_layer(src, member, None, diff_id, &lowers)?);
                lowers.insert(0, self.layer_root(diff_id));
            }
            let id = self.put_blob(&config_bytes)?;
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(oci::MEDIA_MANIFEST.to_owned()),
                config: Descriptor::new(oci::MEDIA_CONFIG, id, config_bytes.len() as u64),
                layers: descs,
                annotations: Default::default(),
            };
            let manifest_digest = self.put_blob(&oci::to_json(&manifest))?;
            let image = self.image(&manifest_digest)?;
            let mut names = Vec::new();
            for t in e.repo_tags.unwrap_or_default() {
                let key = ref_key(&t)?;
                self.set_ref(&key, manifest_digest)?;
                names.push(key);
            }
            out.push(Loaded { image, names });
        }
        Ok(out)
    }
}

/// A blob of an OCI layout, checked against its digest.
fn read_verified(src: &Source, digest: &Digest) -> Result<Vec<u8>, StoreError> {
    let bytes = src.read_small(&format!("blobs/sha256/{}", digest.hex()), JSON_CAP)?;
    let actual = Digest::of(&bytes);
    if actual != *digest {
        return Err(StoreError::Corrupt {
            digest: *digest,
            actual,
        });
    }
    Ok(bytes)
}

/// The names an index entry gives its image: containerd's full name, else the OCI ref name
/// when it is a full reference, else the ref name as a tag of the fallback repository.
fn oci_names(desc: &Descriptor, fallback: &str) -> Vec<String> {
    if let Some(n) = desc.annotations.get("io.containerd.image.name")
        && let Ok(k) = ref_key(n)
    {
        return vec![k];
    }
    match desc.annotations.get(oci::REF_NAME) {
        Some(r) if r.contains(['/', ':']) => ref_key(r).map(|k| vec![k]).unwrap_or_default(),
        Some(tag) => ref_key(&format!("{fallback}:{tag}"))
            .map(|k| vec![k])
            .unwrap_or_default(),
        None => ref_key(fallback).map(|k| vec![k]).unwrap_or_default(),
    }
}

/// A repository name from an archive's file name: `./busybox.tar` → `busybox`.
fn fallback_name(path: &Path) -> String {
    let stem = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("image")
        .split('.')
        .next()
        .unwrap_or("image")
        .to_ascii_lowercase();
    let clean: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let clean = clean.trim_matches('-').to_owned();
    if clean.is_empty() || ImageRef::parse(&clean).is_err() {
        "image".to_owned()
    } else {
        clean
    }
}
