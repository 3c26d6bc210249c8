//! `boxr pull`: a reference → its manifest (negotiated, the platform picked from an index) →
//! its config and layer blobs, several at once, each verified against its size and digest
//! while it streams into the store → the image published (manifest last, as received) and
//! tagged with its full name. Layers stay as received until first used (`Store::unpack_image`).
//!
//! A pull of an image the store already has costs one manifest request and no blob.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::client::{Endpoint, Payload, error_detail, header, read_small};
use super::{Client, Event, Observer, Outcome, RegistryError};
use crate::digest::Digest;
use crate::oci::{self, Descriptor, Index, Manifest};
use crate::reference::ImageRef;
use crate::store::{Image, Store, StoreError, remote_key};

/// Manifests and indexes are small: the distribution spec lets registries refuse more than 4 MiB.
const MANIFEST_CAP: u64 = 4 << 20;
const CONFIG_CAP: u64 = 16 << 20;

/// Every manifest type boxr takes, best first.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// `OS/ARCH[/VARIANT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// The platform boxr runs on.
    pub fn host() -> PlatformSpec {
        PlatformSpec {
            os: crate::platform::os().to_owned(),
            architecture: crate::platform::architecture().to_owned(),
            variant: None,
        }
    }

    pub fn parse(text: &str) -> Result<PlatformSpec, crate::values::Bad> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts[..] {
            [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_owned(),
                architecture: arch.to_owned(),
                variant: parts.get(2).map(|v| v.to_string()),
            }),
            _ => Err(crate::values::Bad::new(
                format!("`{text}` is not OS/ARCH[/VARIANT] (e.g. linux/amd64)"),
                None,
            )),
        }
    }

    fn matches(&self, p: &oci::Platform) -> bool {
        p.os == self.os
            && p.architecture == self.architecture
            && (self.variant.is_none() || p.variant == self.variant)
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: PlatformSpec,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: PlatformSpec::host(),
        }
    }
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub image: Image,
    /// The store key the image is tagged with (`docker.io/library/debian:12`).
    pub name: String,
    /// What the reference resolved to in the registry: the index or manifest digest (what a
    /// lock pins and `name@digest` pulls again).
    pub digest: Digest,
    /// Blobs downloaded (0 when the store had the image).
    pub downloaded: usize,
}

/// A repository being read: its endpoint, path, pull scope, and the reference for errors.
pub(super) struct Repo<'a> {
    pub ep: &'a Endpoint,
    pub path: String,
    pub scope: String,
    pub reference: String,
}

impl Repo<'_> {
    /// `GET /v2/<repo>/manifests/<tag|digest>` → (bytes, media type), checked against the
    /// digest asked for, or the one the registry says it sent.
    pub fn manifest(&self, target: &str) -> Result<(Vec<u8>, String), RegistryError> {
        let url = self
            .ep
            .url(&format!("/v2/{}/manifests/{target}", self.path));
        let resp = self.ep.send(
            "GET",
            &url,
            &self.scope,
            &[("Accept", ACCEPT)],
            Payload::Empty,
        )?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(RegistryError::NotFound {
                    reference: self.reference.clone(),
                    what: format!("manifest `{target}`"),
                });
            }
            s => {
                return Err(RegistryError::Status {
                    host: self.ep.host.clone(),
                    action: format!("GET manifest {target} of {}", self.path),
                    status: s,
                    detail: error_detail(resp, &self.ep.host),
                });
            }
        }
        let content_type = header(&resp, "content-type").unwrap_or("").to_owned();
        let claimed = header(&resp, "docker-content-digest").map(str::to_owned);
        let bytes = read_small(resp, MANIFEST_CAP + 1, &self.ep.host, "a manifest")?;
        if bytes.len() as u64 > MANIFEST_CAP {
            return Err(RegistryError::Unsupported {
                reference: self.reference.clone(),
                reason: format!("the manifest {target} is larger than 4 MiB"),
            });
        }
        let actual = Digest::of(&bytes);
        let expected = if target.starts_with("sha256:") {
            Some(target.to_owned())
        } else {
            claimed.filter(|c| c.starts_with("sha256:"))
        };
        if let Some(want) = expected
            && want != actual.to_string()
        {
            return Err(RegistryError::Mismatch {
                host: self.ep.host.clone(),
                what: "manifest",
                digest: want,
                reason: format!("its content hashes to {actual}"),
            });
        }
        // The media type inside the document wins over a generic Content-Type.
        let media = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or(content_type);
        Ok((bytes, media))
    }

    /// A blob streamed into the store, verified against its size and digest as it arrives.
    pub fn blob_into_store(
        &self,
        store: &Store,
        desc: &Descriptor,
        obs: &dyn Observer,
    ) -> Result<(), RegistryError> {
        let mut attempt = 0;
        loop {
            match self.try_blob(store, desc, obs) {
                Err(RegistryError::Unreachable { .. }) if attempt < 2 => attempt += 1,
                other => return other,
            }
        }
    }

    fn try_blob(
        &self,
        store: &Store,
        desc: &Descriptor,
        obs: &dyn Observer,
    ) -> Result<(), RegistryError> {
        let url = self
            .ep
            .url(&format!("/v2/{}/blobs/{}", self.path, desc.digest));
        let resp = self
            .ep
            .send("GET", &url, &self.scope, &[], Payload::Empty)?;
        match resp.status().as_u16() {
            200 => {}
            404 => {
                return Err(RegistryError::NotFound {
                    reference: self.reference.clone(),
                    what: format!("blob {}", desc.digest),
                });
            }
            s => {
                return Err(RegistryError::Status {
                    host: self.ep.host.clone(),
                    action: format!("GET blob {}", desc.digest),
                    status: s,
                    detail: error_detail(resp, &self.ep.host),
                });
            }
        }
        let mismatch = |reason: String| RegistryError::Mismatch {
            host: self.ep.host.clone(),
            what: "blob",
            digest: desc.digest.to_string(),
            reason,
        };
        if let Some(len) = header(&resp, "content-length").and_then(|l| l.parse::<u64>().ok())
            && len != desc.size
        {
            return Err(mismatch(format!(
                "the registry sends {len} bytes, the manifest says {}",
                desc.size
            )));
        }
        obs.event(Event::Started {
            digest: &desc.digest,
            size: desc.size,
        });
        let mut body = resp
            .into_body()
            .into_with_config()
            .limit(desc.size.saturating_add(1))
            .reader();
        let mut w = store.blob_writer()?;
        let mut buf = vec![0u8; 1 << 17];
        let mut total: u64 = 0;
        let mut reported: u64 = 0;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if total >= desc.size => {
                    // ureq's limit: the body goes on past the size the manifest gives.
                    return Err(mismatch(format!(
                        "the registry sends more than the {} bytes the manifest says ({e})",
                        desc.size
                    )));
                }
                Err(e) => {
                    return Err(RegistryError::Unreachable {
                        host: self.ep.host.clone(),
                        reason: format!("reading blob {}: {e}", desc.digest),
                    });
                }
            };
            total += n as u64;
            if total > desc.size {
                return Err(mismatch(format!(
                    "the registry sends more than the {} bytes the manifest says",
                    desc.size
                )));
            }
            w.write_all(&buf[..n]).map_err(|e| StoreError::Io {
                action: "write",
                path: store.root().join("tmp"),
                source: e,
            })?;
            if total - reported >= 1 << 20 {
                reported = total;
                obs.event(Event::Progress {
                    digest: &desc.digest,
                    bytes: total,
                });
            }
        }
        if total != desc.size {
            return Err(mismatch(format!(
                "the registry sent {total} bytes, the manifest says {}",
                desc.size
            )));
        }
        match w.commit(Some(&desc.digest), false) {
            Ok(_) => {}
            Err(StoreError::Corrupt { actual, .. }) => {
                return Err(mismatch(format!("its content hashes to {actual}")));
            }
            Err(e) => return Err(e.into()),
        }
        obs.event(Event::Done {
            digest: &desc.digest,
            outcome: Outcome::Downloaded,
        });
        Ok(())
    }
}

fn is_index(media: &str) -> bool {
    matches!(media, oci::MEDIA_INDEX | oci::DOCKER_MANIFEST_LIST)
}

/// Pulls `reference` into `store` and tags it with its full name.
pub fn pull(
    client: &Client,
    store: &Store,
    reference: &ImageRef,
    opts: &PullOptions,
    obs: &dyn Observer,
) -> Result<Pulled, RegistryError> {
    let (domain, path) = reference.domain_and_path();
    let ep = client.endpoint(&domain)?;
    let repo = Repo {
        ep: &ep,
        scope: format!("repository:{path}:pull"),
        path,
        reference: reference.to_string(),
    };
    let target = match (&reference.digest, reference.tag_or_latest()) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => unreachable!("a reference has a tag or a digest"),
    };
    let (bytes, media) = repo.manifest(&target)?;
    let resolved = Digest::of(&bytes);
    obs.event(Event::Resolved {
        reference: &repo.reference,
        digest: &resolved,
    });
    let manifest_bytes = if is_index(&media) {
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Unsupported {
                reference: repo.reference.clone(),
                reason: format!("the image index {resolved} is not valid: {e}"),
            })?;
        let entry = index
            .manifests
            .iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| opts.platform.matches(p))
            })
            .ok_or_else(|| RegistryError::NoPlatform {
                reference: repo.reference.clone(),
                want: opts.platform.to_string(),
                have: index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .filter(|p| p.os != "unknown")
                    .map(|p| match &p.variant {
                        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                        None => format!("{}/{}", p.os, p.architecture),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        // The store has this platform's image: nothing more to ask.
        if let Ok(img) = complete_image(store, &entry.digest) {
            return finish(store, reference, img, resolved, 0);
        }
        let (m, m_media) = repo.manifest(&entry.digest.to_string())?;
        if is_index(&m_media) {
            return Err(RegistryError::Unsupported {
                reference: repo.reference.clone(),
                reason: "an index inside an index".into(),
            });
        }
        m
    } else {
        bytes
    };
    let manifest_digest = Digest::of(&manifest_bytes);
    if let Ok(img) = complete_image(store, &manifest_digest) {
        return finish(store, reference, img, resolved, 0);
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| RegistryError::Unsupported {
            reference: repo.reference.clone(),
            reason: format!(
                "the manifest {manifest_digest} is not an OCI or Docker v2 image manifest: {e}"
            ),
        })?;
    if !matches!(
        manifest.config.media_type.as_str(),
        oci::MEDIA_CONFIG | oci::DOCKER_CONFIG
    ) {
        return Err(RegistryError::Unsupported {
            reference: repo.reference.clone(),
            reason: format!(
                "{manifest_digest} is not a container image (its config is `{}`)",
                manifest.config.media_type
            ),
        });
    }
    if let Some(l) = manifest
        .layers
        .iter()
        .find(|l| oci::Compression::of_media_type(&l.media_type).is_none())
    {
        return Err(RegistryError::Unsupported {
            reference: repo.reference.clone(),
            reason: format!(
                "layer {} has the unknown media type `{}`",
                l.digest, l.media_type
            ),
        });
    }
    let config_bytes = config(store, &repo, &manifest.config)?;
    let config: oci::ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| RegistryError::Unsupported {
            reference: repo.reference.clone(),
            reason: format!(
                "the image config {} is not valid: {e}",
                manifest.config.digest
            ),
        })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Unsupported {
            reference: repo.reference.clone(),
            reason: format!(
                "the manifest has {} layers but its config {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            ),
        });
    }
    let downloaded = layers(
        client,
        store,
        &repo,
        &manifest.layers,
        &config.rootfs.diff_ids,
        obs,
    )?;
    let img = store.add_image(&manifest_bytes, &config_bytes)?;
    finish(store, reference, img, resolved, downloaded)
}

/// The image of `manifest` if the store has it whole (each layer unpacked or as its blob).
fn complete_image(store: &Store, manifest: &Digest) -> Result<Image, StoreError> {
    let img = store.image(manifest)?;
    let missing = img
        .manifest
        .layers
        .iter()
        .zip(&img.config.rootfs.diff_ids)
        .find(|(desc, diff_id)| !store.has_layer(diff_id) && !store.has_blob(&desc.digest));
    match missing {
        Some((desc, _)) => Err(StoreError::Missing {
            digest: desc.digest,
        }),
        None => Ok(img),
    }
}

fn finish(
    store: &Store,
    reference: &ImageRef,
    image: Image,
    digest: Digest,
    downloaded: usize,
) -> Result<Pulled, RegistryError> {
    let name = remote_key(reference);
    store.set_ref(&name, image.manifest_digest)?;
    // Also by the registry digest, so a lock that pins it finds the image without a request.
    if reference.digest.is_none() {
        let pinned = ImageRef {
            tag: None,
            digest: Some(digest.to_string()),
            ..reference.clone()
        };
        store.set_ref(&remote_key(&pinned), image.manifest_digest)?;
    }
    Ok(Pulled {
        image,
        name,
        digest,
        downloaded,
    })
}

/// The config blob: small, read whole and checked.
fn config(store: &Store, repo: &Repo<'_>, desc: &Descriptor) -> Result<Vec<u8>, RegistryError> {
    if let Ok(b) = store.read_blob(&desc.digest) {
        return Ok(b);
    }
    let url = repo
        .ep
        .url(&format!("/v2/{}/blobs/{}", repo.path, desc.digest));
    let resp = repo
        .ep
        .send("GET", &url, &repo.scope, &[], Payload::Empty)?;
    match resp.status().as_u16() {
        200 => {}
        404 => {
            return Err(RegistryError::NotFound {
                reference: repo.reference.clone(),
                what: format!("config blob {}", desc.digest),
            });
        }
        s => {
            return Err(RegistryError::Status {
                host: repo.ep.host.clone(),
                action: format!("GET blob {}", desc.digest),
                status: s,
                detail: error_detail(resp, &repo.ep.host),
            });
        }
    }
    let bytes = read_small(resp, CONFIG_CAP, &repo.ep.host, "an image config")?;
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(RegistryError::Mismatch {
            host: repo.ep.host.clone(),
            what: "config",
            digest: desc.digest.to_string(),
            reason: format!("its content hashes to {actual}"),
        });
    }
    Ok(bytes)
}

/// Downloads the layer blobs the store has in no form, `client.jobs()` at once. They are kept
/// as received; `run`, `create` or a build unpacks them when it first uses the image.
/// Returns how many were downloaded.
fn layers(
    client: &Client,
    store: &Store,
    repo: &Repo<'_>,
    descs: &[Descriptor],
    diff_ids: &[Digest],
    obs: &dyn Observer,
) -> Result<usize, RegistryError> {
    let mut queue: Vec<&Descriptor> = Vec::new();
    for (d, diff_id) in descs.iter().zip(diff_ids) {
        if store.has_blob(&d.digest) || store.has_layer(diff_id) {
            obs.event(Event::Done {
                digest: &d.digest,
                outcome: Outcome::Present,
            });
        } else if !queue.iter().any(|q| q.digest == d.digest) {
            queue.push(d);
        }
    }
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let first_error: std::sync::Mutex<Option<RegistryError>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..client.jobs().min(queue.len()) {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(desc) = queue.get(k) else { break };
                    if let Err(e) = repo.blob_into_store(store, desc, obs) {
                        stop.store(true, Ordering::Relaxed);
                        first_error.lock().expect("not poisoned").get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(queue.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_platforms() {
        let p = PlatformSpec::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(PlatformSpec::parse("linux").is_err());
        assert!(PlatformSpec::parse("linux//").is_err());
        let want = PlatformSpec::parse("linux/arm").unwrap();
        let arm7 = oci::Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        assert!(want.matches(&arm7));
        assert!(!PlatformSpec::parse("linux/arm/v6").unwrap().matches(&arm7));
    }
}
