//! `boxr build`

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::registry::{TlsArgs, View};
use super::{ArgOverrides, Settings, exit, fail, fail_with, load_manifest};
use crate::builder::bases::{self, Bases, BasesOptions, Pull};
use crate::builder::{self, BuildOptions};
use crate::plan::{self, PlanErrors, PlanOptions};
use crate::store::{Access, Store};

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The build context: COPY sources are relative to it (default: the manifest's directory)
    #[arg(value_name = "CONTEXT")]
    context: Option<PathBuf>,

    /// Build this image and what it needs (repeatable; default: every image)
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,

    #[command(flatten)]
    overrides: ArgOverrides,

    /// Run every step, ignoring the cache
    #[arg(long)]
    no_cache: bool,

    /// Steps to run at once (default: the number of CPUs)
    #[arg(long, short = 'j', value_name = "N")]
    jobs: Option<usize>,

    /// Another name for an image of the manifest (repeatable)
    #[arg(long = "tag", short = 't', value_name = "IMAGE=NAME[:TAG]")]
    tags: Vec<String>,

    /// Name each image PREFIX + its manifest name (e.g. `myproject/`), instead of the bare name
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,

    /// Say why each step that runs missed the cache
    #[arg(long)]
    explain: bool,

    /// A secret for `secret` mounts: from a file or an environment variable (default: the
    /// variable named like the secret)
    #[arg(long = "secret", value_name = "id=NAME[,src=FILE|,env=VAR]")]
    secrets: Vec<String>,

    /// When to pull the registry images the manifest starts from
    #[arg(long, value_enum, default_value_t = Pull::Missing, value_name = "POLICY")]
    pull: Pull,

    /// Resolve registry tags again and rewrite boxr.lock (default: use the locked digests)
    #[arg(long)]
    update: bool,

    /// Take the results of steps from a build cache in a registry (pushed with --cache-to)
    #[arg(long = "cache-from", value_name = "REF")]
    cache_from: Vec<String>,

    /// After the build, push its step cache to a registry as REF
    #[arg(long = "cache-to", value_name = "REF")]
    cache_to: Option<String>,

    #[command(flatten)]
    tls: TlsArgs,
}

pub fn run(args: &BuildArgs, settings: &Settings) -> i32 {
    let m = match load_manifest(settings, &args.overrides) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let manifest_dir = settings.manifest_dir();
    let context = args.context.clone().unwrap_or_else(|| manifest_dir.clone());
    if !context.is_dir() {
        return fail(
            &settings.printer,
            &format!("the build context {} is not a directory", context.display()),
        );
    }
    let mut store = match Store::open(&settings.root, Access::Shared) {
        Ok(s) => s,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    store.set_sync(settings.sync);
    let resolver = match resolve_bases(&store, &m, args.pull, args.update, &args.tls, settings) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let hashes = crate::plan::hashcache::FileHashCache::from_bytes(&store.stat_cache());
    let plan = match plan::plan(
        &m,
        &PlanOptions {
            context: &context,
            manifest_dir: &manifest_dir,
            targets: &args.targets,
            resolver: &resolver,
            hashes: Some(&hashes),
        },
    ) {
        Ok(p) => p,
        Err(errors) => {
            let unknown = errors
                .iter()
                .all(|e| matches!(e, plan::PlanError::UnknownTarget { .. }));
            settings.printer.diagnostic(&PlanErrors::new(&m, errors));
            return if unknown { exit::FAILED } else { exit::INVALID };
        }
    };
    if hashes.changed()
        && let Err(e) = store.put_stat_cache(&hashes.to_bytes())
    {
        return fail_with(&settings.printer, &e);
    }
    let tags = match tags(args, &plan) {
        Ok(t) => t,
        Err(b) => return fail_with(&settings.printer, &b),
    };
    let epoch = match crate::time::source_date_epoch(crate::time::EpochDefault::GitCommit(&context))
    {
        Ok(e) => e,
        Err(e) => return super::fail_with(&settings.printer, &e),
    };
    let client = crate::registry::Client::new(args.tls.options());
    let caches = match open_caches(&client, &args.cache_from, settings) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let cache_to = match args
        .cache_to
        .as_deref()
        .map(crate::reference::ImageRef::parse)
    {
        None => None,
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => return fail(&settings.printer, &format!("--cache-to: {e}")),
    };
    let opts = BuildOptions {
        remote_cache: (!caches.0.is_empty()).then_some(&caches as &dyn builder::RemoteCache),
        context: &context,
        manifest_dir: &manifest_dir,
        jobs: args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        no_cache: args.no_cache,
        explain: args.explain,
        epoch,
        tags,
        secrets: match builder::secrets::resolve(&args.secrets, &plan) {
            Ok(s) => s,
            Err(e) => return super::fail_with(&settings.printer, &e),
        },
    };
    let reporter = super::progress::reporter(settings.printer.mode(), settings.printer.quiet());
    match builder::build(&store, &m, &plan, &opts, reporter.as_ref()) {
        Ok(report) => {
            drop(reporter);
            report_caches(&caches, settings);
            if let Some(dest) = &cache_to {
                let keys: Vec<_> = plan.steps.iter().map(|s| s.key).collect();
                let view = View::new(&settings.printer, true);
                match crate::registry::cache::export(&client, &store, &keys, dest, &view) {
                    Ok((digest, n)) => settings.printer.note(format!(
                        "build cache of {n} steps pushed to {dest} ({digest})"
                    )),
                    Err(e) => {
                        settings.printer.diagnostic(&e);
                        return exit::INVALID;
                    }
                }
            }
            for b in &report.images {
                if settings.printer.is_json() {
                    settings.printer.data(format!(
                        "{}\n",
                        serde_json::json!({
                            "image": b.name,
                            "tags": b.tags,
                            "id": b.image.id.to_string(),
                            "digest": b.image.manifest_digest.to_string(),
                        })
                    ));
                } else {
                    // The image's one identity, as `boxr images` shows it; the manifest's digest
                    // (for `NAME@DIGEST`) is said as such.
                    settings.printer.out(format!(
                        "{}  {}  (manifest {})",
                        b.tags.join(", "),
                        b.image.id.short(),
                        b.image.manifest_digest
                    ));
                }
            }
            settings.printer.note(format!(
                "built {} image{} in {:.2}s: {} step{} ran, {} cached",
                report.images.len(),
                if report.images.len() == 1 { "" } else { "s" },
                report.seconds,
                report.ran,
                if report.ran == 1 { "" } else { "s" },
                report.cached
            ));
            exit::OK
        }
        Err(e) => {
            drop(reporter);
            settings.printer.diagnostic(&e);
            match e {
                builder::BuildError::StepFailed(_) | builder::BuildError::Step(_) => exit::INVALID,
                _ => exit::FAILED,
            }
        }
    }
}

/// The `--cache-from` caches; one that cannot be read is reported and skipped (the build runs
/// its steps), as Docker does.
fn open_caches(
    client: &crate::registry::Client,
    refs: &[String],
    settings: &Settings,
) -> Result<crate::registry::cache::Caches, i32> {
    let mut out = Vec::new();
    for r in refs {
        let reference = crate::reference::ImageRef::parse(r)
            .map_err(|e| fail(&settings.printer, &format!("--cache-from {r}: {e}")))?;
        match crate::registry::cache::RegistryCache::open(client, &reference) {
            Ok(c) => {
                settings
                    .printer
                    .verbose(format!("--cache-from {r}: {} steps", c.len()));
                out.push(c);
            }
            Err(e) => settings
                .printer
                .note(format!("warning: --cache-from {r} is not used: {e}")),
        }
    }
    Ok(crate::registry::cache::Caches(out))
}

/// Says how many steps came from `--cache-from` and why any could not.
fn report_caches(caches: &crate::registry::cache::Caches, settings: &Settings) {
    for c in &caches.0 {
        let hits = c.hits.load(std::sync::atomic::Ordering::Relaxed);
        if hits > 0 {
            settings.printer.note(format!(
                "{hits} steps taken from the registry's build cache"
            ));
        }
        for f in c.failures.lock().expect("not poisoned").iter() {
            settings.printer.note(format!(
                "warning: a build cache step could not be fetched: {f}"
            ));
        }
    }
}

/// The manifest's registry images, pulled as `pull` says and pinned in boxr.lock.
pub(super) fn resolve_bases(
    store: &Store,
    m: &crate::manifest::Manifest,
    pull: Pull,
    update: bool,
    tls: &TlsArgs,
    settings: &Settings,
) -> Result<Bases, i32> {
    let client = crate::registry::Client::new(tls.options());
    let lock_file = bases::lock_path(&settings.file);
    let opts = BasesOptions {
        lock_file: &lock_file,
        pull,
        update,
    };
    bases::resolve(
        store,
        &client,
        m,
        &opts,
        &View::new(&settings.printer, false),
    )
    .map_err(|e| {
        settings.printer.diagnostic(&e);
        exit::INVALID
    })
}

/// The names of each image: `PREFIX NAME:latest`, plus every `--tag IMAGE=NAME`.
fn tags(
    args: &BuildArgs,
    plan: &plan::Plan,
) -> Result<BTreeMap<String, Vec<String>>, crate::values::Bad> {
    let bad = |m: String| crate::values::Bad::new(m, Some("write --tag IMAGE=NAME[:TAG]"));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for img in &plan.images {
        let prefix = args.prefix.as_deref().unwrap_or("");
        out.insert(
            img.name.clone(),
            vec![format!("{prefix}{}:latest", img.name)],
        );
    }
    for t in &args.tags {
        let (image, name) = t
            .split_once('=')
            .ok_or_else(|| bad(format!("--tag {t}: not IMAGE=NAME[:TAG]")))?;
        let names = out
            .get_mut(image)
            .ok_or_else(|| bad(format!("--tag {t}: the build makes no image `{image}`")))?;
        crate::store::ref_key(name).map_err(|e| bad(format!("--tag {t}: {e}")))?;
        names.push(name.to_owned());
    }
    Ok(out)
}

impl BuildArgs {
    pub(super) fn overrides(&self) -> &ArgOverrides {
        &self.overrides
    }
}
