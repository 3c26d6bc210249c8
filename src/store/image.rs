//! Images in the store: an OCI manifest blob, its config blob, and its layers. Refs name them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Store, StoreError};
use crate::digest::Digest;
use crate::oci::{self, Descriptor, ImageConfig, Manifest};
use crate::reference::ImageRef;

/// An image: its manifest and config, both parsed.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// The config digest: the image's Id.
    pub id: Digest,
    pub config: ImageConfig,
}

/// A line of `boxr images`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageSummary {
    pub repository: String,
    pub tag: String,
    pub id: Digest,
    pub digest: Digest,
    pub created: Option<String>,
    /// Bytes of the image's uncompressed layers.
    pub size: u64,
}

/// A line of `boxr history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HistoryRow {
    pub created: Option<String>,
    pub created_by: String,
    pub comment: String,
    /// Bytes of the layer this step made (0 for a config-only step).
    pub size: u64,
    /// The layer's DiffID, if the step made one.
    pub layer: Option<Digest>,
}

/// The `name:tag` a user-given image name is stored under (`app` means `app:latest`).
pub fn ref_key(name: &str) -> Result<String, StoreError> {
    let r = ImageRef::parse(name).map_err(|reason| StoreError::BadName {
        name: name.to_owned(),
        reason: reason.to_string(),
    })?;
    if r.digest.is_some() {
        return Err(StoreError::BadName {
            name: name.to_owned(),
            reason: "a tag cannot carry a digest".into(),
        });
    }
    Ok(r.to_string())
}

/// The key a pulled image is stored under: its normalized name with the tag it was pulled by
/// (`docker.io/library/debian:12`), or with the digest when pulled by digest.
pub fn remote_key(r: &ImageRef) -> String {
    let n = r.normalized();
    match (&n.tag, &n.digest) {
        (None, Some(d)) => format!("{}@{d}", n.repository),
        _ => ImageRef { digest: None, ..n }.to_string(),
    }
}

impl Store {
    /// Writes an image's config and manifest blobs; the layers must already be in the store.
    pub fn put_image(
        &self,
        config: &ImageConfig,
        layers: Vec<Descriptor>,
    ) -> Result<Image, StoreError> {
        let config_bytes = oci::to_json(config);
        let id = self.put_blob(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::MEDIA_MANIFEST.to_owned()),
            config: Descriptor::new(oci::MEDIA_CONFIG, id, config_bytes.len() as u64),
            layers,
            annotations: BTreeMap::new(),
        };
        let manifest_bytes = oci::to_json(&manifest);
        let manifest_digest = self.put_blob(&manifest_bytes)?;
        Ok(Image {
            manifest_digest,
            manifest,
            id,
            config: config.clone(),
        })
    }

    /// The image whose manifest has this digest.
    pub fn image(&self, manifest_digest: &Digest) -> Result<Image, StoreError> {
        let bytes = self.read_blob(manifest_digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                what: "manifest",
                digest: *manifest_digest,
                reason: e.to_string(),
            })?;
        let id = manifest.config.digest;
        let cbytes = self.read_blob(&id)?;
        let config: ImageConfig =
            serde_json::from_slice(&cbytes).map_err(|e| StoreError::Invalid {
                what: "image config",
                digest: id,
                reason: e.to_string(),
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(StoreError::Invalid {
                what: "image",
                digest: *manifest_digest,
                reason: format!(
                    "{} layers in the manifest but {} diff_ids in the config",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        Ok(Image {
            manifest_digest: *manifest_digest,
            manifest,
            id,
            config,
        })
    }

    /// Finds an image by `name[:tag]`, by Id (`sha256:…`, full hex or a unique prefix), or by
    /// manifest digest, the ways `docker` accepts.
    pub fn resolve(&self, query: &str) -> Result<Image, StoreError> {
        let refs = self.refs()?;
        if let Ok(key) = ref_key(query)
            && let Some(d) = refs.get(&key)
        {
            return self.image(d);
        }
        // A pulled image is stored under its full name (`debian` → docker.io/library/debian),
        // one pulled by digest under `name@digest`.
        if let Ok(r) = ImageRef::parse(query)
            && let Some(d) = refs.get(&remote_key(&r))
        {
            return self.image(d);
        }
        let hex_part = query.strip_prefix("sha256:").unwrap_or(query);
        let is_hex = !hex_part.is_empty() && hex_part.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let hex_part = hex_part.to_ascii_lowercase();
            let mut found: BTreeMap<Digest, Image> = BTreeMap::new();
            for d in refs.values() {
                let img = self.image(d)?;
                if img.id.hex().starts_with(&hex_part) || img.manifest_digest.hex() == hex_part {
                    found.insert(img.id, img);
                }
            }
            return match found.len() {
                1 => Ok(found.into_values().next().expect("one")),
                0 => Err(StoreError::NoSuchImage {
                    query: query.to_owned(),
                }),
                _ => Err(StoreError::Ambiguous {
                    query: query.to_owned(),
                    candidates: found.keys().map(|d| d.short()).collect(),
                }),
            };
        }
        Err(StoreError::NoSuchImage {
            query: query.to_owned(),
        })
    }

    /// Every tag that points at this manifest.
    /// `boxr rmi QUERY`: a name removes that tag; an id removes every tag of the image. The
    /// image's data stays until `gc`.
    pub fn untag(&self, query: &str) -> Result<Untagged, StoreError> {
        let img = self.resolve(query)?;
        let tags = match ref_key(query) {
            Ok(k) if self.refs()?.contains_key(&k) => vec![k],
            _ => self.tags_of(&img.manifest_digest)?,
        };
        for t in &tags {
            self.remove_ref(t)?;
        }
        let deleted = self
            .tags_of(&img.manifest_digest)?
            .is_empty()
            .then_some(img.id);
        Ok(Untagged {
            untagged: tags,
            deleted,
        })
    }

    pub fn tags_of(&self, manifest_digest: &Digest) -> Result<Vec<String>, StoreError> {
        Ok(self
            .refs()?
            .into_iter()
            .filter(|(_, d)| d == manifest_digest)
            .map(|(k, _)| k)
            .collect())
    }

    /// The uncompressed size of an image's layers.
    pub fn image_size(&self, img: &Image) -> u64 {
        img.config
            .rootfs
            .diff_ids
            .iter()
            .zip(&img.manifest.layers)
            .map(|(d, desc)| self.layer_meta(d).map(|m| m.size).unwrap_or(desc.size))
            .sum()
    }

    /// One summary per tag, sorted by name.
    pub fn summaries(&self) -> Result<Vec<ImageSummary>, StoreError> {
        let mut out = Vec::new();
        let refs = self.refs()?;
        let tagged: std::collections::BTreeSet<Digest> = refs
            .iter()
            .filter(|(k, _)| !k.contains('@'))
            .map(|(_, d)| *d)
            .collect();
        for (key, d) in refs {
            // `NAME@DIGEST` (what a pull by tag also records) is listed only for an image
            // that has no tag.
            if key.contains('@') && tagged.contains(&d) {
                continue;
            }
            let img = self.image(&d)?;
            let (repository, tag) = match key.split_once('@') {
                Some((name, _)) => (name, "<none>"),
                None => key.rsplit_once(':').expect("keys are name:tag"),
            };
            out.push(ImageSummary {
                repository: repository.to_owned(),
                tag: tag.to_owned(),
                id: img.id,
                digest: d,
                created: img.config.created.clone(),
                size: self.image_size(&img),
            });
        }
        Ok(out)
    }

    /// `boxr inspect IMAGE`: Docker's top-level keys.
    /// `boxr history`: the image's history entries, newest first, each with the size of the
    /// layer it made (the entries that made one take the layers in order).
    pub fn history(&self, img: &Image) -> Vec<HistoryRow> {
        let mut layers = img.config.rootfs.diff_ids.iter();
        let mut rows: Vec<HistoryRow> = img
            .config
            .history
            .iter()
            .map(|h| {
                let empty = h.empty_layer.unwrap_or(false);
                let layer = if empty { None } else { layers.next() };
                HistoryRow {
                    created: h.created.clone(),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    comment: h.comment.clone().unwrap_or_default(),
                    size: layer
                        .and_then(|d| self.layer_meta(d).ok())
                        .map_or(0, |m| m.size),
                    layer: layer.copied(),
                }
            })
            .collect();
        rows.reverse();
        rows
    }

    pub fn inspect(&self, img: &Image) -> Result<Value, StoreError> {
        let tags = self.tags_of(&img.manifest_digest)?;
        let history: Vec<Value> = img
            .config
            .history
            .iter()
            .map(|h| serde_json::to_value(h).expect("serializes"))
            .collect();
        Ok(json!({
            "Id": img.id.to_string(),
            "Digest": img.manifest_digest.to_string(),
            "RepoTags": tags,
            "Created": img.config.created,
            "Author": img.config.author,
            "Architecture": img.config.architecture,
            "Os": img.config.os,
            "Config": img.config.config.clone().unwrap_or_default(),
            "Size": self.image_size(img),
            "RootFS": {
                "Type": img.config.rootfs.kind,
                "Layers": img.config.rootfs.diff_ids,
            },
            "Layers": img.manifest.layers,
            "History": history,
        }))
    }
}

/// What `Store::untag` removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Untagged {
    /// The names removed.
    pub untagged: Vec<String>,
    /// The image's id, when no name is left on it (its data goes with the next `gc`).
    pub deleted: Option<Digest>,
}
