//! The registry images a manifest starts from, pinned: every `from`, `copy from=` and service
//! `image` that names a registry image is resolved to a digest, pulled when the store lacks
//! it, and recorded in `boxr.lock` beside the manifest. Later builds use the locked digests
//! (the same bytes on every machine, a reproducible CI) until `--update` resolves the tags
//! again.
//!
//! A name the store has as written (`busybox:demo`, an image built or imported here) is local
//! and never locked or pulled; so is anything under `localhost/`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use miette::Diagnostic;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::manifest::{Base, ImageSource, Instruction, Manifest};
use crate::plan;
use crate::reference::ImageRef;
use crate::registry::{self, Client, Observer, PullOptions, RegistryError};
use crate::store::{Store, StoreError, ref_key};

/// The lock file's name, beside the manifest.
pub const LOCK_FILE: &str = "boxr.lock";

/// `boxr.lock`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lock {
    /// The format's version.
    pub version: u32,
    /// Each registry reference as the manifest writes it (`debian:12`) → what it resolved to.
    pub images: BTreeMap<String, Locked>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Locked {
    /// The full name (`docker.io/library/debian:12`).
    pub name: String,
    /// The digest the registry gave for it (an index or a manifest).
    pub digest: String,
}

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lock, BasesError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| BasesError::Lock {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Lock {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(BasesError::Lock {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Writes `path` atomically (a temp file beside it, renamed).
    pub fn write(&self, path: &Path) -> Result<(), BasesError> {
        let err = |e: std::io::Error| BasesError::Lock {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let mut t = tempfile::Builder::new()
            .prefix(".boxr.lock-")
            .tempfile_in(dir)
            .map_err(err)?;
        let mut bytes = serde_json::to_vec_pretty(self).expect("serializes");
        bytes.push(b'\n');
        t.write_all(&bytes).map_err(err)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o644)).map_err(err)?;
        t.persist(path).map_err(|e| err(e.error))?;
        Ok(())
    }
}

impl Lock {
    /// The pinned reference (`NAME@DIGEST`) the lock holds for `r`, if any.
    pub fn pinned(&self, r: &ImageRef) -> Option<ImageRef> {
        let l = self.images.get(&r.to_string())?;
        let name = ImageRef::parse(&l.name).ok()?;
        Some(ImageRef {
            tag: None,
            digest: Some(l.digest.clone()),
            ..name
        })
    }
}

/// The lock file of a manifest file.
pub fn lock_path(manifest_file: &Path) -> PathBuf {
    match manifest_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join(LOCK_FILE),
        _ => PathBuf::from(LOCK_FILE),
    }
}

#[derive(Debug, Error, Diagnostic)]
pub enum BasesError {
    #[error("cannot use the lock file {}: {reason}", path.display())]
    #[diagnostic(
        code(boxr::builder::lock),
        help("fix it, or remove it and let `boxr build` write it again")
    )]
    Lock { path: PathBuf, reason: String },
    #[error("`{reference}` is not in the store, and --pull never forbids pulling it")]
    #[diagnostic(
        code(boxr::builder::not_pulled),
        help("pull it (`boxr pull {reference}`) or build with --pull missing")
    )]
    NotPulled { reference: String },
    #[error("cannot pull `{reference}`")]
    #[diagnostic(code(boxr::builder::pull))]
    Pull {
        reference: String,
        #[source]
        #[diagnostic_source]
        source: RegistryError,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
}

/// When `build`, `run` and `create` pull (`--pull`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pull {
    /// Pull every time (a build pulls by the locked digest when there is one)
    Always,
    /// Pull only what the store does not have
    #[default]
    Missing,
    /// Never pull: an image the store does not have is an error
    Never,
}

/// Every store or registry reference a manifest uses, as written.
pub fn references(m: &Manifest) -> BTreeSet<ImageRef> {
    let mut out = BTreeSet::new();
    for img in &m.images {
        if let Base::Store(r) = &img.from.value {
            out.insert(r.clone());
        }
        for ins in &img.instructions {
            if let Instruction::Copy(c) = &ins.value
                && let Some(src) = &c.from
                && let ImageSource::Store(r) = &src.value
            {
                out.insert(r.clone());
            }
        }
    }
    for s in &m.services {
        if let ImageSource::Store(r) = &s.image.value {
            out.insert(r.clone());
        }
    }
    out
}

/// Whether a reference names an image of this store rather than of a registry.
fn is_local(store_refs: &BTreeMap<String, crate::digest::Digest>, r: &ImageRef) -> bool {
    let domain = r.explicit_domain();
    if domain == Some("localhost") {
        return true;
    }
    domain.is_none()
        && r.digest.is_none()
        && ref_key(&r.to_string()).is_ok_and(|k| store_refs.contains_key(&k))
}

/// The registry digest a pull recorded for `img` (the store keeps `REPOSITORY@DIGEST` for
/// each reference it pulled).
fn registry_digest(
    refs: &BTreeMap<String, crate::digest::Digest>,
    repository: &str,
    img: &crate::store::Image,
) -> Option<String> {
    refs.iter()
        .filter(|(_, d)| **d == img.manifest_digest)
        .find_map(|(k, _)| {
            k.strip_prefix(repository)?
                .strip_prefix('@')
                .map(str::to_owned)
        })
}

/// The images a manifest's references resolve to: reference → manifest digest in the store.
#[derive(Debug, Clone, Default)]
pub struct Bases {
    pub resolved: BTreeMap<ImageRef, String>,
}

impl plan::ImageResolver for Bases {
    fn resolve(&self, reference: &ImageRef) -> Option<String> {
        self.resolved.get(reference).cloned()
    }
}

/// What [`resolve`] does.
pub struct BasesOptions<'a> {
    pub lock_file: &'a Path,
    pub pull: Pull,
    /// Resolve tags again and rewrite their lock entries (`--update`).
    pub update: bool,
}

/// Resolves every reference of `m` (pulling as `opts.pull` says) and brings the lock file up to
/// date. Local names resolve to the store's images and stay out of the lock.
pub fn resolve(
    store: &Store,
    client: &Client,
    m: &Manifest,
    opts: &BasesOptions<'_>,
    obs: &dyn Observer,
) -> Result<Bases, BasesError> {
    let old = Lock::read(opts.lock_file)?;
    let mut lock = Lock {
        version: 1,
        images: BTreeMap::new(),
    };
    let refs = store.refs()?;
    let mut bases = Bases::default();
    for r in references(m) {
        if is_local(&refs, &r) {
            if let Ok(img) = store.resolve(&r.to_string()) {
                bases
                    .resolved
                    .insert(r.clone(), img.manifest_digest.to_string());
            }
            continue;
        }
        let key = r.to_string();
        let normalized = r.normalized();
        // What to get: the reference's own digest, the locked one, or the tag.
        let pinned: Option<String> = match (&r.digest, old.images.get(&key)) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(l)) if !opts.update && l.name == normalized.to_string() => {
                Some(l.digest.clone())
            }
            _ => None,
        };
        let want = ImageRef {
            repository: normalized.repository.clone(),
            tag: if pinned.is_some() {
                None
            } else {
                r.tag.clone()
            },
            digest: pinned.clone(),
        };
        let have = store.resolve(&want.to_string()).ok();
        let (manifest, digest) = match (have, opts.pull) {
            (Some(img), Pull::Missing | Pull::Never) if pinned.is_some() => (
                img.manifest_digest.to_string(),
                pinned.clone().expect("pinned"),
            ),
            (None, Pull::Never) => {
                return Err(BasesError::NotPulled { reference: key });
            }
            (Some(img), Pull::Missing | Pull::Never)
                if let Some(d) = registry_digest(&refs, &normalized.repository, &img) =>
            {
                // A tag pulled before: its registry digest is known, no request needed.
                (img.manifest_digest.to_string(), d)
            }
            (Some(img), Pull::Never) => {
                // A tag the store has without its registry digest: pin the manifest it holds.
                (
                    img.manifest_digest.to_string(),
                    img.manifest_digest.to_string(),
                )
            }
            _ => {
                let pulled = registry::pull(client, store, &want, &PullOptions::default(), obs)
                    .map_err(|source| BasesError::Pull {
                        reference: want.to_string(),
                        source,
                    })?;
                (
                    pulled.image.manifest_digest.to_string(),
                    pulled.digest.to_string(),
                )
            }
        };
        bases.resolved.insert(r.clone(), manifest);
        if r.digest.is_none() {
            lock.images.insert(
                key,
                Locked {
                    name: normalized.to_string(),
                    digest,
                },
            );
        }
    }
    // A manifest with no registry reference gets no lock file (an empty lock equals a missing one).
    if lock != old {
        lock.write(opts.lock_file)?;
    }
    Ok(bases)
}

/// How a lock file differs from a manifest's registry references (`boxr check`): references
/// missing from it, and entries no reference uses. Local names are not expected in it.
pub fn lock_drift(
    store_refs: &BTreeMap<String, crate::digest::Digest>,
    m: &Manifest,
    lock: &Lock,
) -> (Vec<String>, Vec<String>) {
    let refs = store_refs;
    let wanted: BTreeSet<String> = references(m)
        .into_iter()
        .filter(|r| r.digest.is_none() && !is_local(refs, r))
        .map(|r| r.to_string())
        .collect();
    let missing = wanted
        .iter()
        .filter(|k| !lock.images.contains_key(*k))
        .cloned()
        .collect();
    let unused = lock
        .images
        .keys()
        .filter(|k| !wanted.contains(*k))
        .cloned()
        .collect();
    (missing, unused)
}
