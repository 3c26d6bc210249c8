//! [`Manifest`] → [`Plan`]: a DAG with one node per build step, in topological order, each with
//! its cache key ([`StepKey`], schema in [`key`]). Planning is pure and deterministic; its only
//! I/O is hashing what steps read (COPY sources, `dir:`/`tar:`/`oci:` bases).

pub mod hashcache;
pub mod inputs;
pub mod key;
pub mod step;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use miette::Diagnostic;
use serde::Serialize;
use serde_json::{Value, json};
use thiserror::Error;

pub use key::{Digest256, SCHEMA, StepKey};
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
    #[error("{message}")]
    #[diagnostic(code(boxr::plan::ignore))]
    Ignore { message: String },
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
    let ignore = crate::ignore::Ignore::load(opts.context)
        .map_err(|message| vec![PlanError::Ignore { message }])?;
    let mut planner = Planner {
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

struct Planner<'a> {
    opts: &'a PlanOptions<'a>,
    /// The context's `.boxrignore`.
    ignore: crate::ignore::Ignore,
    steps: Vec<Step>,
    images: Vec<PlannedImage>,
    /// Image name → (its last step, its config).
    done: HashMap<String, (Option<usize>, ImageConfig)>,
    errors: Vec<PlanError>,
}

impl Planner<'_> {
    fn push(
        &mut self,
        image: &str,
        parent: Option<usize>,
        extra_needs: &[usize],
        parts: StepParts,
        config: &ImageConfig,
    ) -> usize {
        let parent_key = match parent {
            Some(p) => self.steps[p].key.hex(),
            None => parts.base_digest.clone().unwrap_or_default(),
        };
        let effective = config.effective();
        let key = key::step_key(
            &parent_key,
            &parts.definition.canonical(),
            &effective,
            &parts.inputs,
        );
        let id = self.steps.len();
        let mut needs: Vec<usize> = parent.into_iter().collect();
        for n in extra_needs {
            if !needs.contains(n) {
                needs.push(*n);
            }
        }
        self.steps.push(Step {
            id,
            image: image.to_owned(),
            op: parts.definition.op(),
            description: parts.description,
            key,
            parent,
            needs,
            layer: parts.layer,
            definition: parts.definition,
            key_parts: KeyParts {
                parent: parent_key,
                config: effective,
                inputs: parts.inputs,
            },
            span: parts.span,
        });
        id
    }

    fn input_error(&mut self, span: Span, label: &str, err: inputs::InputError) {
        let help = match &err {
            inputs::InputError::NotFound { .. } => Some(
                "paths are relative to the build context (by default the manifest's directory)"
                    .into(),
            ),
            _ => None,
        };
        let mut message = err.to_string();
        if let inputs::InputError::Io { source, .. } = &err {
            message = format!("{message}: {source}");
        }
        self.errors.push(PlanError::Input {
            message,
            span,
            label: label.into(),
            help,
        });
    }

    fn image(&mut self, img: &Image) {
        let name = img.name.value.as_str();
        let mut own_steps = Vec::new();
        let (mut current, mut config) = match &img.from.value {
            // A parent that could not be planned has reported its errors already.
            Base::Image(parent) => match self.done.get(parent) {
                Some(done) => done.clone(),
                None => return,
            },
            base => {
                let Some(parts) = self.base_step(base, img.from.span) else {
                    return;
                };
                let cfg = ImageConfig::new();
                let id = self.push(name, None, &[], parts, &cfg);
                own_steps.push(id);
                (Some(id), cfg)
            }
        };
        let mut cmd_set = false;
        for ins in &img.instructions {
            let mut extra = Vec::new();
            let parts = match &ins.value {
                Instruction::Env(pairs) => {
                    let set = pair_texts(pairs);
                    for (k, v) in &set {
                        config.set_env(k, v);
                    }
                    let desc = set
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    StepParts::config(format!("env {desc}"), StepDef::Env { set }, ins.span)
                }
                Instruction::Label(pairs) => {
                    for (k, v) in pairs {
                        config.labels.insert(k.value.clone(), v.value.clone());
                    }
                    let set = pair_texts(pairs);
                    let desc = set
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ");
                    StepParts::config(format!("label {desc}"), StepDef::Label { set }, ins.span)
                }
                Instruction::Workdir(p) => {
                    config.workdir = normalize(&config.resolve(&p.value));
                    // The directory is created in the image, so workdir makes a layer.
                    StepParts {
                        layer: true,
                        ..StepParts::config(
                            format!("workdir {}", config.workdir),
                            StepDef::Workdir {
                                path: config.workdir.clone(),
                            },
                            ins.span,
                        )
                    }
                }
                Instruction::User(u) => {
                    config.user = Some(u.value.to_string());
                    StepParts::config(
                        format!("user {}", u.value),
                        StepDef::User {
                            user: u.value.to_string(),
                        },
                        ins.span,
                    )
                }
                Instruction::Expose(ports) => {
                    let ps: Vec<String> = ports.iter().map(|p| p.value.to_string()).collect();
                    config.exposed_ports.extend(ps.iter().cloned());
                    StepParts::config(
                        format!("expose {}", ps.join(" ")),
                        StepDef::Expose { ports: ps },
                        ins.span,
                    )
                }
                Instruction::Entrypoint(args) => {
                    let a = texts(args);
                    if !cmd_set {
                        config.cmd = None;
                    }
                    config.entrypoint = Some(a.clone());
                    StepParts::config(
                        format!("entrypoint {}", argv(&a)),
                        StepDef::Entrypoint { args: a },
                        ins.span,
                    )
                }
                Instruction::Cmd(args) => {
                    let a = texts(args);
                    cmd_set = true;
                    config.cmd = Some(a.clone());
                    StepParts::config(
                        format!("cmd {}", argv(&a)),
                        StepDef::Cmd { args: a },
                        ins.span,
                    )
                }
                Instruction::Shell(args) => {
                    let a = texts(args);
                    config.shell = a.clone();
                    StepParts::config(
                        format!("shell {}", argv(&a)),
                        StepDef::Shell { args: a },
                        ins.span,
                    )
                }
                Instruction::Volume(paths) => {
                    let a = texts(paths);
                    config.volumes.extend(a.iter().cloned());
                    StepParts::config(
                        format!("volume {}", a.join(" ")),
                        StepDef::Volume { paths: a },
                        ins.span,
                    )
                }
                Instruction::StopSignal(s) => {
                    config.stop_signal = Some(s.value.to_string());
                    StepParts::config(
                        format!("stop-signal {}", s.value),
                        StepDef::StopSignal {
                            signal: s.value.to_string(),
                        },
                        ins.span,
                    )
                }
                Instruction::Run(run) => {
                    let command = match &run.command {
                        Command::Shell(s) => RunCommand::Shell(s.value.clone()),
                        Command::Exec(a) => RunCommand::Exec(texts(a)),
                    };
                    let description = match &command {
                        RunCommand::Shell(s) => format!("run {s}"),
                        RunCommand::Exec(a) => format!("run {}", argv(a)),
                    };
                    let definition = StepDef::Run(RunDef {
                        command,
                        env: pair_texts(&run.env),
                        network: run.network.value,
                        caches: run
                            .caches
                            .iter()
                            .map(|c| CacheDef {
                                target: c.target.value.clone(),
                                id: c.id.value.clone(),
                                sharing: c.sharing,
                            })
                            .collect(),
                        secrets: run
                            .secrets
                            .iter()
                            .map(|s| SecretDef {
                                name: s.name.value.clone(),
                                env: s.env.as_ref().map(|e| e.value.clone()),
                                file: s.file.value.clone(),
                            })
                            .collect(),
                    });
                    StepParts {
                        description,
                        definition,
                        inputs: Vec::new(),
                        layer: true,
                        base_digest: None,
                        span: ins.span,
                    }
                }
                Instruction::Copy(copy) => {
                    let Some((parts, needs)) = self.copy(copy, &config, ins.span) else {
                        continue;
                    };
                    extra = needs;
                    parts
                }
            };
            let id = self.push(name, current, &extra, parts, &config);
            own_steps.push(id);
            current = Some(id);
        }
        let key = match current {
            Some(id) => self.steps[id].key,
            None => return,
        };
        self.images.push(PlannedImage {
            name: name.to_owned(),
            key,
            steps: own_steps,
            needs: image_deps(img).into_iter().map(str::to_owned).collect(),
            config: config.clone(),
        });
        self.done.insert(name.to_owned(), (current, config));
    }

    fn base_step(&mut self, base: &Base, span: Span) -> Option<StepParts> {
        let dir = self.opts.manifest_dir;
        // `./x` under `.` reads better in messages as `./x` than `././x`.
        let under = |p: &str| {
            if dir == Path::new(".") {
                Path::new(p).to_owned()
            } else {
                dir.join(p)
            }
        };
        let (what, digest) = match base {
            Base::Scratch => ("scratch".to_owned(), Ok("scratch".to_owned())),
            Base::Dir(p) => (
                format!("dir:{p}"),
                inputs::dir_base(&under(p), self.opts.hashes).map(|d| d.to_string()),
            ),
            Base::Tar(p) => (
                format!("tar:{p}"),
                inputs::file_digest(&under(p)).map(|d| d.to_string()),
            ),
            Base::Oci { path, tag } => (
                match tag {
                    Some(t) => format!("oci:{path}:{t}"),
                    None => format!("oci:{path}"),
                },
                inputs::oci_manifest(&under(path), tag.as_deref()),
            ),
            Base::Store(r) => match self.opts.resolver.resolve(r) {
                Some(d) => (r.to_string(), Ok(d)),
                None => {
                    self.errors.push(PlanError::ImageNotFound {
                        reference: r.to_string(),
                        span,
                    });
                    return None;
                }
            },
            Base::Image(_) => unreachable!("in-file bases have no base step"),
        };
        let digest = match digest {
            Ok(d) => d,
            Err(e) => {
                self.input_error(span, "cannot read this base", e);
                return None;
            }
        };
        let kind = match base {
            Base::Scratch => BaseKind::Scratch,
            Base::Dir(_) => BaseKind::Dir,
            Base::Tar(_) => BaseKind::Tar,
            Base::Oci { .. } => BaseKind::Oci,
            Base::Store(_) => BaseKind::Image,
            Base::Image(_) => unreachable!(),
        };
        Some(StepParts {
            description: format!("from {what}"),
            // The digest, not the path, identifies the base: moving the context keeps keys.
            definition: StepDef::From { kind },
            inputs: Vec::new(),
            layer: !matches!(base, Base::Scratch),
            base_digest: Some(digest),
            span,
        })
    }

    fn copy(
        &mut self,
        copy: &Copy,
        config: &ImageConfig,
        span: Span,
    ) -> Option<(StepParts, Vec<usize>)> {
        let sources: Vec<&str> = copy.sources.iter().map(|s| s.value.as_str()).collect();
        // A destination ending in `/` (or `.`) is a directory: keep that after normalizing.
        let dir_dest =
            copy.to.value.ends_with('/') || copy.to.value.ends_with("/.") || copy.to.value == ".";
        let mut to = normalize(&config.resolve(&copy.to.value));
        if dir_dest && !to.ends_with('/') {
            to.push('/');
        }
        let chmod = copy.chmod.as_ref().map(|m| m.value);
        let mut needs = Vec::new();
        let (from, input) = match &copy.from {
            None => match inputs::copy_sources(
                self.opts.context,
                &sources,
                chmod,
                &self.ignore,
                self.opts.hashes,
            ) {
                Ok(d) => (None, d.to_string()),
                Err(e) => {
                    let at = match &e {
                        inputs::InputError::NotFound { path, .. }
                        | inputs::InputError::Outside { path, .. } => copy
                            .sources
                            .iter()
                            .find(|s| s.value == *path)
                            .map_or(span, |s| s.span),
                        _ => span,
                    };
                    self.input_error(at, "cannot copy this", e);
                    return None;
                }
            },
            Some(src) => match &src.value {
                ImageSource::Image(other) => {
                    let Some((Some(last), _)) = self.done.get(other) else {
                        return None; // `other` failed to plan and reported why
                    };
                    needs.push(*last);
                    (Some(other.clone()), self.steps[*last].key.hex())
                }
                ImageSource::Store(r) => match self.opts.resolver.resolve(r) {
                    Some(d) => (Some(r.to_string()), d),
                    None => {
                        self.errors.push(PlanError::ImageNotFound {
                            reference: r.to_string(),
                            span: src.span,
                        });
                        return None;
                    }
                },
            },
        };
        let chown = copy.chown.as_ref().map(|c| c.value.to_string());
        let mut description = format!("copy {} → {to}", sources.join(" "));
        if let Some(f) = &copy.from {
            let name = match &f.value {
                ImageSource::Image(n) => n.clone(),
                ImageSource::Store(r) => r.to_string(),
            };
            description.push_str(&format!(" (from {name})"));
        }
        Some((
            StepParts {
                description,
                definition: StepDef::Copy(CopyDef {
                    sources: sources.iter().map(|s| (*s).to_owned()).collect(),
                    to,
                    from,
                    chmod,
                    chown,
                }),
                inputs: vec![input],
                layer: true,
                base_digest: None,
                span,
            },
            needs,
        ))
    }
}

/// What a step contributes to the plan before its key is computed.
struct StepParts {
    description: String,
    definition: StepDef,
    inputs: Vec<String>,
    layer: bool,
    base_digest: Option<String>,
    span: Span,
}

impl StepParts {
    fn config(description: String, definition: StepDef, span: Span) -> Self {
        StepParts {
            description,
            definition,
            inputs: Vec::new(),
            layer: false,
            base_digest: None,
            span,
        }
    }
}

fn texts(v: &[crate::manifest::Spanned<String>]) -> Vec<String> {
    v.iter().map(|s| s.value.clone()).collect()
}

fn pair_texts(v: &[crate::manifest::Pair]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, val)| (k.value.clone(), val.value.clone()))
        .collect()
}

/// An argv shown as a JSON array, the way Dockerfile exec form reads.
fn argv(a: &[String]) -> String {
    serde_json::to_string(a).expect("strings serialize")
}

/// Collapses `.`, `..` and repeated slashes of an absolute path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
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
