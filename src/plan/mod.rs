//! [`Manifest`] → [`Plan`]: a DAG with one node per build step, in topological order, each with
//! its cache key ([`StepKey`], schema in [`key`]). Planning is pure and deterministic; its only
//! I/O is hashing what steps read (COPY sources, `dir:`/`tar:`/`oci:` bases).

pub mod hashcache;
pub mod inputs;
pub mod key;
mod planner;
pub mod step;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use miette::Diagnostic;
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

pub use key::{Digest256, SCHEMA, StepKey};

/// The most entries of a `copy` the build record lists for `--explain` ([`KeyParts::files`]
/// holds one more when there are more, and the record then keeps none).
pub const MAX_LISTED_FILES: usize = 1000;
pub use step::{BaseKind, CacheDef, CopyDef, RunCommand, RunDef, SecretDef, StepDef};

use crate::manifest::{Base, Command, Copy, Image, ImageSource, Instruction, Manifest, Span};
use crate::reference::ImageRef;

/// Finds images that are not in the manifest (the store, later registries). Planning never
/// touches the store itself; the caller passes what can answer.
pub trait ImageResolver {
    /// The manifest digest (`sha256:...`) of `reference`, if known.
    fn resolve(&self, reference: &ImageRef) -> Option<String>;
}

/// What a plan is made from besides the manifest.
pub struct PlanOptions<'a> {
    /// The build context: COPY sources are relative to it.
    pub context: &'a Path,
    /// The manifest's directory: `dir:`, `tar:` and `oci:` paths are relative to it.
    pub manifest_dir: &'a Path,
    /// Images to plan (with everything they need); empty means all.
    pub targets: &'a [String],
    pub resolver: &'a dyn ImageResolver,
    /// A stat cache that spares re-reading unchanged files (see [`hashcache`]).
    pub hashes: Option<&'a hashcache::FileHashCache>,
}

/// A problem found while planning.
#[derive(Debug, Error, Diagnostic)]
pub enum PlanError {
    #[error("{message}")]
    #[diagnostic(code(boxr::plan::input))]
    Input {
        message: String,
        #[label("{label}")]
        span: Span,
        label: String,
        #[help]
        help: Option<String>,
    },
    #[error("image `{reference}` is not in the store")]
    #[diagnostic(
        code(boxr::plan::image_not_found),
        help(
            "`boxr images` lists the images in the store; `boxr import` and `boxr load` add images"
        )
    )]
    ImageNotFound {
        reference: String,
        #[label("not in the store")]
        span: Span,
    },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Ignore(#[from] crate::ignore::IgnoreError),
    #[error("no image named `{name}` in this manifest")]
    #[diagnostic(code(boxr::plan::unknown_target))]
    UnknownTarget {
        name: String,
        #[help]
        help: Option<String>,
    },
}

/// The build plan: every step in an order where each comes after what it needs.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub schema: u32,
    pub images: Vec<PlannedImage>,
    pub steps: Vec<Step>,
}

/// One image of the plan: its steps (indices into [`Plan::steps`]) and final config.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedImage {
    pub name: String,
    /// The key of the image's last step: the image's identity in the cache.
    pub key: StepKey,
    pub steps: Vec<usize>,
    /// Images of this manifest that this one is built from or copies from.
    pub needs: Vec<String>,
    pub config: ImageConfig,
}

/// One build step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub id: usize,
    pub image: String,
    /// `from`, `env`, `copy`, `run`, ...
    pub op: &'static str,
    /// A one-line human description: `copy Makefile src/ → /src/`.
    pub description: String,
    pub key: StepKey,
    /// The step this one builds on (its filesystem and config parent).
    pub parent: Option<usize>,
    /// Every step this one needs: the parent, and the last step of each `copy from=` image.
    pub needs: Vec<usize>,
    /// Whether the step makes a filesystem layer (config-only steps do not).
    pub layer: bool,
    /// What the step does; its canonical JSON went into the key.
    pub definition: StepDef,
    /// The key's other fields, for `boxr build --explain`.
    #[serde(skip)]
    pub key_parts: KeyParts,
    #[serde(skip)]
    pub span: Span,
}

impl Step {
    /// The store image a `from` of a store or registry image, or a `copy from=` one, was
    /// planned with: the manifest digest its key was made of (the builder uses exactly it,
    /// not whatever the name points at by then).
    pub fn planned_image(&self) -> Option<crate::digest::Digest> {
        match &self.definition {
            StepDef::From {
                kind: BaseKind::Image,
            } => crate::digest::Digest::parse(&self.key_parts.parent),
            StepDef::Copy(c) if c.from.is_some() => self
                .key_parts
                .inputs
                .first()
                .and_then(|i| crate::digest::Digest::parse(i)),
            _ => None,
        }
    }
}

/// The fields of a step's key besides its definition (see [`key`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct KeyParts {
    /// The parent step's key, or the base's digest.
    pub parent: String,
    /// The effective env, user, workdir and shell.
    pub config: Value,
    /// The digests of what the step reads.
    pub inputs: Vec<String>,
    /// A `copy` from the context: each entry it reads with a fingerprint (not in the key; the
    /// build record keeps it so `--explain` can name the files that changed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, String)>,
}

/// The image config a manifest sets on top of its base (an in-file base's config is inherited
/// whole; a store or OCI base's own config is merged under it when the image is built).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ImageConfig {
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub workdir: String,
    pub shell: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
}

impl ImageConfig {
    fn new() -> Self {
        ImageConfig {
            workdir: "/".into(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            ..Default::default()
        }
    }

    fn set_env(&mut self, k: &str, v: &str) {
        match self.env.iter_mut().find(|(n, _)| n == k) {
            Some(e) => e.1 = v.to_owned(),
            None => self.env.push((k.to_owned(), v.to_owned())),
        }
    }

    /// What a step runs with, the fourth field of its key.
    fn effective(&self) -> Value {
        json!({
            "env": self.env,
            "user": self.user,
            "workdir": self.workdir,
            "shell": self.shell,
        })
    }

    /// Resolves a container path against the working directory.
    fn resolve(&self, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else if self.workdir.ends_with('/') {
            format!("{}{path}", self.workdir)
        } else {
            format!("{}/{path}", self.workdir)
        }
    }
}

/// Plans `manifest`. All problems are returned together.
pub fn plan(manifest: &Manifest, opts: &PlanOptions) -> Result<Plan, Vec<PlanError>> {
    let wanted = wanted_images(manifest, opts.targets)?;
    let order = topological(manifest, &wanted);
    let ignore =
        crate::ignore::Ignore::load(opts.context).map_err(|e| vec![PlanError::Ignore(e)])?;
    let mut planner = planner::Planner {
        opts,
        ignore,
        steps: Vec::new(),
        images: Vec::new(),
        done: HashMap::new(),
        errors: Vec::new(),
    };
    for image in order {
        planner.image(image);
    }
    if planner.errors.is_empty() {
        Ok(Plan {
            schema: SCHEMA,
            images: planner.images,
            steps: planner.steps,
        })
    } else {
        Err(planner.errors)
    }
}

/// The images to plan: the targets and everything they need, or all.
fn wanted_images<'m>(
    manifest: &'m Manifest,
    targets: &[String],
) -> Result<BTreeSet<&'m str>, Vec<PlanError>> {
    if targets.is_empty() {
        return Ok(manifest
            .images
            .iter()
            .map(|i| i.name.value.as_str())
            .collect());
    }
    let mut errors = Vec::new();
    let mut wanted = BTreeSet::new();
    let mut stack = Vec::new();
    for t in targets {
        match manifest.image(t) {
            Some(img) => stack.push(img),
            None => {
                let names = manifest.images.iter().map(|i| i.name.value.as_str());
                errors.push(PlanError::UnknownTarget {
                    name: t.clone(),
                    help: crate::values::suggest(t, names).map(|s| format!("did you mean `{s}`?")),
                });
            }
        }
    }
    while let Some(img) = stack.pop() {
        if wanted.insert(img.name.value.as_str()) {
            for dep in image_deps(img) {
                if let Some(d) = manifest.image(dep) {
                    stack.push(d);
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(wanted)
    } else {
        Err(errors)
    }
}

/// The in-file images `img` is built from or copies from, in file order, without repeats.
fn image_deps(img: &Image) -> Vec<&str> {
    let mut deps = Vec::new();
    if let Base::Image(p) = &img.from.value {
        deps.push(p.as_str());
    }
    for ins in &img.instructions {
        if let Instruction::Copy(Copy {
            from: Some(src), ..
        }) = &ins.value
            && let ImageSource::Image(o) = &src.value
            && !deps.contains(&o.as_str())
        {
            deps.push(o);
        }
    }
    deps
}

/// Kahn's algorithm, ties broken by file order, so the order is stable and readable.
fn topological<'m>(manifest: &'m Manifest, wanted: &BTreeSet<&str>) -> Vec<&'m Image> {
    let images: Vec<&Image> = manifest
        .images
        .iter()
        .filter(|i| wanted.contains(i.name.value.as_str()))
        .collect();
    let index: HashMap<&str, usize> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.name.value.as_str(), i))
        .collect();
    let mut pending = vec![0usize; images.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); images.len()];
    for (i, img) in images.iter().enumerate() {
        for dep in image_deps(img) {
            if let Some(&d) = index.get(dep) {
                pending[i] += 1;
                dependents[d].push(i);
            }
        }
    }
    let mut ready: BTreeSet<usize> = (0..images.len()).filter(|&i| pending[i] == 0).collect();
    let mut out = Vec::with_capacity(images.len());
    while let Some(i) = ready.pop_first() {
        out.push(images[i]);
        for &j in &dependents[i] {
            pending[j] -= 1;
            if pending[j] == 0 {
                ready.insert(j);
            }
        }
    }
    // The manifest has no cycles (checked when it was parsed), so every image was placed.
    debug_assert_eq!(out.len(), images.len(), "image graph is acyclic");
    out
}

/// Every planning problem of one manifest, with the manifest's text for the snippets.
#[derive(Debug, Error, Diagnostic)]
#[error("cannot plan {name}: {count} problem{plural}", plural = if *count == 1 { "" } else { "s" })]
pub struct PlanErrors {
    name: String,
    count: usize,
    #[source_code]
    source_code: miette::NamedSource<std::sync::Arc<str>>,
    #[related]
    pub errors: Vec<PlanError>,
}

impl PlanErrors {
    pub fn new(manifest: &Manifest, errors: Vec<PlanError>) -> Self {
        PlanErrors {
            name: manifest.name.clone(),
            count: errors.len(),
            source_code: miette::NamedSource::new(&manifest.name, manifest.source.clone())
                .with_language("kdl"),
            errors,
        }
    }
}
