//! Building the images a caller needs by name (what `boxr up` asks for): the manifest is
//! planned for those targets, built with the cache, and each image is named `NAME:latest`, as
//! `boxr build` names it.

use std::collections::BTreeMap;
use std::path::Path;

use miette::Diagnostic;
use thiserror::Error;

use super::{BuildError, BuildOptions, Reporter};
use crate::manifest::Manifest;
use crate::plan::{self, PlanErrors, PlanOptions};
use crate::store::Store;

/// Why the images could not be built.
#[derive(Debug, Error, Diagnostic)]
pub enum ImagesError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Plan(Box<PlanErrors>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Build(#[from] BuildError),
    #[error("{0}")]
    #[diagnostic(code(boxr::builder::images))]
    Other(String),
}

/// Builds `targets` (images of `manifest`, with what they need) from the context
/// `manifest_dir`, its `from` references resolved by `resolver`; returns each target's image id (`sha256:...`).
pub fn build_images(
    store: &Store,
    manifest: &Manifest,
    manifest_dir: &Path,
    targets: &[String],
    resolver: &dyn plan::ImageResolver,
    reporter: &dyn Reporter,
) -> Result<BTreeMap<String, String>, ImagesError> {
    if targets.is_empty() {
        return Ok(BTreeMap::new());
    }
    let hashes = plan::hashcache::FileHashCache::from_bytes(&store.stat_cache());
    let plan = plan::plan(
        manifest,
        &PlanOptions {
            context: manifest_dir,
            manifest_dir,
            targets,
            resolver,
            hashes: Some(&hashes),
        },
    )
    .map_err(|errors| ImagesError::Plan(Box::new(PlanErrors::new(manifest, errors))))?;
    if hashes.changed() {
        store
            .put_stat_cache(&hashes.to_bytes())
            .map_err(BuildError::from)?;
    }
    let epoch = crate::time::source_date_epoch(crate::time::EpochDefault::GitCommit(manifest_dir))
        .map_err(|e| ImagesError::Other(e.to_string()))?;
    let tags = plan
        .images
        .iter()
        .map(|i| (i.name.clone(), vec![format!("{}:latest", i.name)]))
        .collect();
    let opts = BuildOptions {
        context: manifest_dir,
        manifest_dir,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        no_cache: false,
        explain: false,
        epoch,
        tags,
        remote_cache: None,
        secrets: super::secrets::resolve(&[], &plan)
            .map_err(|e| ImagesError::Other(e.to_string()))?,
    };
    let report = super::build(store, manifest, &plan, &opts, reporter)?;
    Ok(report
        .images
        .into_iter()
        .filter(|b| targets.contains(&b.name))
        .map(|b| (b.name, b.image.id.to_string()))
        .collect())
}
