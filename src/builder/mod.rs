//! `boxr build`: runs a [`Plan`] — each step looked up in the cache by its key, the misses run
//! in throwaway sandboxes (or the fs helper for `copy` and `workdir`), independent branches in
//! parallel on rayon — and names the resulting images.
//!
//! Scheduling: a step starts as soon as every step it needs is done (its parent, and the last
//! step of each `copy from=` image). Two steps with the same key are the same work: the second
//! waits for the first and takes its result. After a failure no new step starts; those already
//! running finish (and are cached), and the error of the first failure is returned.
//!
//! Progress goes through the [`Reporter`] trait; this module never prints.
//!
//! Files: `mod.rs` the scheduler, cache lookups, `--explain` and image assembly; `step.rs` one
//! step's execution (`from`, `run` in the sandbox, the step's directories and commit);
//! `fs_step.rs` `copy` and `workdir` in the fs helper; `state.rs` the image config as steps
//! change it;
//! `secrets.rs` the values of `--secret`.

pub mod bases;
mod fs_step;
mod images;
mod network;
pub mod secrets;
mod state;
mod step;
mod workspace;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use miette::{Diagnostic, NamedSource};
use thiserror::Error;

pub use images::{ImagesError, build_images};
pub use state::State;

use crate::digest::Digest;
use crate::manifest::{Manifest, Span};
use crate::plan::{Plan, Step};
use crate::store::{CacheEntry, Image, Store, StoreError};

/// How to build.
pub struct BuildOptions<'a> {
    /// COPY sources are relative to it.
    pub context: &'a Path,
    /// `dir:`, `tar:` and `oci:` bases are relative to it.
    pub manifest_dir: &'a Path,
    /// Steps running at once (at least 1).
    pub jobs: usize,
    /// Run every step, ignoring (but refreshing) the cache.
    pub no_cache: bool,
    /// SOURCE_DATE_EPOCH: every mtime in a layer tar is clamped to it, and it is the images'
    /// `created` time.
    pub epoch: u64,
    /// The names each image gets: image name → `name:tag`s.
    pub tags: BTreeMap<String, Vec<String>>,
    /// Values of the secrets steps may mount: name → bytes.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// Say why each step that runs missed the cache.
    pub explain: bool,
    /// A build cache elsewhere (`--cache-from`), asked on a local miss.
    pub remote_cache: Option<&'a dyn RemoteCache>,
}

/// A build cache outside the store (a registry's, `--cache-from`): asked when the store's own
/// cache misses, before the step runs.
pub trait RemoteCache: Sync {
    /// If the remote cache has `key`, makes its result local (the layer fetched, verified and
    /// unpacked over `lowers`, topmost first, and a cache entry written) and returns it. A
    /// failure to fetch is a miss (the step runs); the cache keeps the reason for its caller.
    fn import(&self, store: &Store, key: &Digest, lowers: &[PathBuf]) -> Option<CacheEntry>;
}

/// What the build tells its reporter.
#[derive(Debug)]
pub enum Event<'a> {
    /// The build starts: how many steps do work (config-only steps are not counted).
    Started { steps: usize },
    /// A step's result was found in the cache: it does not run.
    Cached { step: &'a Step },
    /// A step starts.
    Running { step: &'a Step },
    /// Why a step missed the cache (`--explain`).
    Explain { step: &'a Step, reason: &'a str },
    /// A line of a running step's output (stdout and stderr).
    Output { step: &'a Step, line: &'a str },
    /// A step finished; `layer` is the size of the layer it made.
    Done {
        step: &'a Step,
        seconds: f64,
        layer: Option<u64>,
    },
    /// A step failed.
    Failed { step: &'a Step, seconds: f64 },
    /// An image was named.
    Tagged {
        image: &'a str,
        name: &'a str,
        /// The image's id (its config's digest), as `boxr images` shows it.
        id: &'a Digest,
        /// Its manifest's digest (what `NAME@DIGEST` names).
        digest: &'a Digest,
    },
}

/// Receives build progress (the CLI renders it for a terminal, as plain lines or as JSON).
pub trait Reporter: Sync {
    fn event(&self, event: Event<'_>);
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _: Event<'_>) {}
}

/// An image the build produced.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub image: Image,
    pub tags: Vec<String>,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub images: Vec<Built>,
    /// Steps that ran.
    pub ran: usize,
    /// Steps found in the cache.
    pub cached: usize,
    pub seconds: f64,
}

/// A step's command exited with a non-zero status.
#[derive(Debug, Error, Diagnostic)]
#[error("{image}: `{description}` failed with exit code {code}")]
#[diagnostic(code(boxr::builder::step_failed))]
pub struct StepFailed {
    pub image: String,
    pub description: String,
    pub code: i32,
    #[source_code]
    pub src: NamedSource<std::sync::Arc<str>>,
    #[label("this step failed")]
    pub span: Span,
    /// The last lines of the step's output.
    #[help]
    pub tail: Option<String>,
}

/// What a program prints when it cannot resolve a name or reach a network (apt, curl, wget,
/// pip, npm, getaddrinfo's own words, busybox).
const NO_NETWORK_SIGNS: &[&str] = &[
    "temporary failure resolving",
    "temporary failure in name resolution",
    "could not resolve host",
    "name or service not known",
    "network is unreachable",
    "bad address",
    "getaddrinfo",
    "eai_again",
    "name resolution",
];

impl StepFailed {
    /// The help of a failed step: the last lines of its output, and, for a step that ran with
    /// `network "none"` (`offline`, the default) whose output says it could not resolve a name
    /// or reach a network, why.
    fn help(tail: &[String], offline: bool) -> Option<String> {
        let mut help = (!tail.is_empty()).then(|| {
            format!(
                "the last lines of its output:\n{}",
                tail.iter()
                    .map(|l| format!("  │ {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        let lower = tail.join("\n").to_ascii_lowercase();
        if offline && NO_NETWORK_SIGNS.iter().any(|s| lower.contains(s)) {
            let why = "a `run` step has no network unless it says so: add `network \"bridge\"` \
                       (egress through NAT) or `network \"host\"` in its block";
            help = Some(match help {
                Some(h) => format!("{h}\n{why}"),
                None => why.to_owned(),
            });
        }
        help
    }
}

/// A step could not be carried out (a copy source missing, a helper that could not start...).
#[derive(Debug, Error, Diagnostic)]
#[error("{image}: `{description}`: {message}")]
#[diagnostic(code(boxr::builder::step))]
pub struct StepProblem {
    pub image: String,
    pub description: String,
    pub message: String,
    #[source_code]
    pub src: NamedSource<std::sync::Arc<str>>,
    #[label("here")]
    pub span: Span,
}

/// Why a build failed.
#[derive(Debug, Error, Diagnostic)]
pub enum BuildError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    StepFailed(Box<StepFailed>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Step(Box<StepProblem>),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] StoreError),
    #[error("cannot start the build: {0}")]
    #[diagnostic(code(boxr::builder::start))]
    Start(String),
}

/// Shared by every step of one build.
struct Ctx<'a> {
    store: &'a Store,
    manifest: &'a Manifest,
    plan: &'a Plan,
    opts: &'a BuildOptions<'a>,
    reporter: &'a dyn Reporter,
    /// The result of each step, once done.
    results: Vec<OnceLock<State>>,
    /// The first failure.
    failed: Mutex<Option<BuildError>>,
    stop: AtomicBool,
    ran: AtomicUsize,
    cached: AtomicUsize,
    /// `SOURCE_DATE_EPOCH` as RFC 3339, for history entries.
    created: String,
    /// With `--explain`: each step's entry in the last build of its image.
    previous: HashMap<usize, serde_json::Value>,
}

impl Ctx<'_> {
    fn step_error(&self, step: &Step, message: String) -> BuildError {
        BuildError::Step(Box::new(StepProblem {
            image: step.image.clone(),
            description: step.description.clone(),
            message,
            src: self.source(),
            span: step.span,
        }))
    }

    fn source(&self) -> NamedSource<std::sync::Arc<str>> {
        NamedSource::new(&self.manifest.name, self.manifest.source.clone()).with_language("kdl")
    }

    fn fail(&self, e: BuildError) {
        self.stop.store(true, Ordering::SeqCst);
        let mut f = self.failed.lock().expect("not poisoned");
        if f.is_none() {
            *f = Some(e);
        }
    }
}

/// Builds `plan` (made from `manifest`) into `store`.
pub fn build(
    store: &Store,
    manifest: &Manifest,
    plan: &Plan,
    opts: &BuildOptions,
    reporter: &dyn Reporter,
) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    // The cgroups of steps a killed build left (ARCHITECTURE decision 12: the next command
    // cleans up), with any of its step's processes still on their way out.
    let _ = store.clean_orphan_journal("cgroup", crate::sandbox::cgroup::destroy_journal_entry);
    let ctx = Ctx {
        store,
        manifest,
        plan,
        opts,
        reporter,
        results: (0..plan.steps.len()).map(|_| OnceLock::new()).collect(),
        failed: Mutex::new(None),
        stop: AtomicBool::new(false),
        ran: AtomicUsize::new(0),
        cached: AtomicUsize::new(0),
        created: crate::time::rfc3339(opts.epoch as i64),
        previous: if opts.explain {
            previous_records(store, plan)
        } else {
            HashMap::new()
        },
    };
    // A step whose key an earlier step has is that step's twin: it waits for it.
    let mut first_with_key: HashMap<Digest, usize> = HashMap::new();
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(plan.steps.len());
    let mut twin_of: Vec<Option<usize>> = vec![None; plan.steps.len()];
    for s in &plan.steps {
        let mut d = s.needs.clone();
        match first_with_key.get(&s.key) {
            Some(&first) => {
                twin_of[s.id] = Some(first);
                d.push(first);
            }
            None => {
                first_with_key.insert(s.key, s.id);
            }
        }
        deps.push(d);
    }
    let working = plan
        .steps
        .iter()
        .filter(|s| s.layer && twin_of[s.id].is_none())
        .count();
    reporter.event(Event::Started { steps: working });

    let pending: Vec<AtomicUsize> = deps.iter().map(|d| AtomicUsize::new(d.len())).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); plan.steps.len()];
    for (i, d) in deps.iter().enumerate() {
        for &n in d {
            dependents[n].push(i);
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("boxr-build-{i}"))
        .build()
        .map_err(|e| BuildError::Start(e.to_string()))?;
    let sched = Sched {
        ctx: &ctx,
        pending: &pending,
        dependents: &dependents,
        twin_of: &twin_of,
    };
    pool.scope(|scope| {
        for (i, d) in deps.iter().enumerate() {
            if d.is_empty() {
                let sched = &sched;
                scope.spawn(move |sc| sched.run(sc, i));
            }
        }
    });
    if let Some(e) = ctx.failed.lock().expect("not poisoned").take() {
        return Err(e);
    }
    let mut images = Vec::new();
    for planned in &plan.images {
        // The image's last step (for an image that only names an in-file base, its base's).
        let last = plan
            .steps
            .iter()
            .rposition(|s| s.key == planned.key)
            .expect("an image's key is its last step's");
        let state = ctx.results[last].get().expect("every step ran");
        let image = put_image(store, state, &ctx.created)?;
        let default = vec![format!("{}:latest", planned.name)];
        let names = opts.tags.get(&planned.name).unwrap_or(&default);
        let mut tags = Vec::new();
        for n in names {
            let key = crate::store::ref_key(n)?;
            if store.refs()?.get(&key) != Some(&image.manifest_digest) {
                store.set_ref(&key, image.manifest_digest)?;
            }
            reporter.event(Event::Tagged {
                image: &planned.name,
                name: &key,
                id: &image.id,
                digest: &image.manifest_digest,
            });
            tags.push(key);
        }
        store.put_build_record(&planned.name, &record(plan, planned))?;
        images.push(Built {
            name: planned.name.clone(),
            image,
            tags,
        });
    }
    Ok(BuildReport {
        images,
        ran: ctx.ran.load(Ordering::SeqCst),
        cached: ctx.cached.load(Ordering::SeqCst),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What `--explain` compares a later build with: each step of the image with its key fields.
fn record(plan: &Plan, planned: &crate::plan::PlannedImage) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = planned
        .steps
        .iter()
        .map(|&id| {
            let s = &plan.steps[id];
            let mut parts = serde_json::json!(s.key_parts);
            // A listing too long to keep in every build's record: `--explain` then only says
            // that the sources changed.
            if s.key_parts.files.len() > crate::plan::MAX_LISTED_FILES
                && let Some(p) = parts.as_object_mut()
            {
                p.remove("files");
            }
            serde_json::json!({
                "description": s.description,
                "key": s.key.to_string(),
                "definition": s.definition,
                "parts": parts,
            })
        })
        .collect();
    serde_json::json!({ "schema": crate::plan::SCHEMA, "steps": steps })
}

/// Step id → its entry in the last recorded build of its image (same position).
fn previous_records(store: &Store, plan: &Plan) -> HashMap<usize, serde_json::Value> {
    let mut out = HashMap::new();
    for img in &plan.images {
        let Some(rec) = store.build_record(&img.name) else {
            continue;
        };
        for (i, &id) in img.steps.iter().enumerate() {
            if let Some(prev) = rec["steps"].get(i) {
                out.insert(id, prev.clone());
            }
        }
    }
    out
}

/// What differs between a copy's listing in the last build and now (`src/app.py` changed,
/// `new.txt` added, `old.txt` removed; the first three, then how many more), if the last build
/// listed it.
fn changed_files(prev: &serde_json::Value, now: &[(String, String)]) -> Option<String> {
    let prev: std::collections::BTreeMap<&str, &str> = prev
        .as_array()?
        .iter()
        .filter_map(|e| Some((e.get(0)?.as_str()?, e.get(1)?.as_str()?)))
        .collect();
    let now: std::collections::BTreeMap<&str, &str> =
        now.iter().map(|(p, f)| (p.as_str(), f.as_str())).collect();
    let mut what = Vec::new();
    for (path, fp) in &now {
        match prev.get(path) {
            Some(old) if old == fp => {}
            Some(_) => what.push(format!("`{path}` changed")),
            None => what.push(format!("`{path}` added")),
        }
    }
    for path in prev.keys().filter(|p| !now.contains_key(*p)) {
        what.push(format!("`{path}` removed"));
    }
    if what.is_empty() {
        return None;
    }
    let more = what.len().saturating_sub(3);
    what.truncate(3);
    let mut text = what.join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    Some(text)
}

/// Why `step` missed the cache, compared with its image's last build.
fn explain(ctx: &Ctx, step: &Step, stale_clamp: Option<u64>) -> String {
    if let Some(old) = stale_clamp {
        return format!(
            "SOURCE_DATE_EPOCH changed from {old} to {} (the layer's timestamps depend on it)",
            ctx.opts.epoch
        );
    }
    if ctx.opts.no_cache {
        return "--no-cache".into();
    }
    let Some(prev) = ctx.previous.get(&step.id) else {
        return format!("no earlier build of `{}` had this step", step.image);
    };
    let parts = &step.key_parts;
    if prev["definition"] != step.definition.canonical() {
        return format!(
            "the step changed (was `{}`)",
            prev["description"].as_str().unwrap_or("?")
        );
    }
    if prev["parts"]["config"] != parts.config {
        let changed: Vec<&str> = ["env", "user", "workdir", "shell"]
            .into_iter()
            .filter(|k| prev["parts"]["config"][k] != parts.config[k])
            .collect();
        return format!("the {} it runs with changed", changed.join(", "));
    }
    if prev["parts"]["inputs"] != serde_json::json!(parts.inputs) {
        return match &step.definition {
            crate::plan::StepDef::Copy(crate::plan::CopyDef {
                from: Some(img), ..
            }) => format!("the image it copies from (`{img}`) changed"),
            _ => match changed_files(&prev["parts"]["files"], &parts.files) {
                Some(what) => format!("the content of its sources changed: {what}"),
                None => "the content of its sources changed".into(),
            },
        };
    }
    if prev["parts"]["parent"] != serde_json::json!(parts.parent) {
        return match step.parent {
            None => "the base changed".into(),
            Some(p) if ctx.plan.steps[p].image == step.image => {
                format!("the step before it (#{}) changed", p + 1)
            }
            Some(p) => format!("its base image `{}` changed", ctx.plan.steps[p].image),
        };
    }
    "its cached result is gone (removed by `boxr gc --build-cache`?)".into()
}

/// Writes an image's config and manifest, unless the store has them already (a build that
/// changed nothing writes nothing).
fn put_image(store: &Store, state: &State, created: &str) -> Result<Image, StoreError> {
    let config = state.image_config(created);
    let layers = state.layers.iter().map(|(d, _)| d.clone()).collect();
    store.put_image(&config, layers)
}

struct Sched<'a, 'b> {
    ctx: &'a Ctx<'b>,
    pending: &'a [AtomicUsize],
    dependents: &'a [Vec<usize>],
    twin_of: &'a [Option<usize>],
}

impl Sched<'_, '_> {
    fn run<'s>(&'s self, scope: &rayon::Scope<'s>, id: usize) {
        if self.ctx.stop.load(Ordering::SeqCst) {
            return;
        }
        let step = &self.ctx.plan.steps[id];
        let result = match self.twin_of[id] {
            Some(first) => Ok(self.ctx.results[first]
                .get()
                .expect("a twin runs after its first")
                .clone()),
            None => step::step(self.ctx, step),
        };
        match result {
            Ok(state) => {
                let _ = self.ctx.results[id].set(state);
            }
            Err(e) => {
                self.ctx.fail(e);
                return;
            }
        }
        for &d in &self.dependents[id] {
            if self.pending[d].fetch_sub(1, Ordering::SeqCst) == 1 {
                scope.spawn(move |sc| self.run(sc, d));
            }
        }
    }
}

/// Where a step's temporary files live: removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    /// The directory's own (unique) name.
    fn name(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = crate::store::remove_dir_tree(&self.0);
    }
}
