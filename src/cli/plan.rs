//! `boxr plan`

use std::path::PathBuf;

use super::{ArgOverrides, Settings, exit, load_manifest};
use crate::plan::{self, Plan, PlanErrors, PlanOptions};
use crate::reference::ImageRef;
use crate::store::{Access, Store};

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Images to plan, with what they need (default: all)
    #[arg(value_name = "TARGET")]
    targets: Vec<String>,

    /// Print the plan as JSON
    #[arg(long)]
    json: bool,

    /// The build context (default: the manifest's directory)
    #[arg(long, value_name = "DIR")]
    context: Option<PathBuf>,

    #[command(flatten)]
    overrides: ArgOverrides,
}

/// Resolves `NAME:TAG` bases against the store, when there is one (planning never creates it
/// and never pulls), a registry reference by the digest boxr.lock pins.
struct StoreResolver(Option<Store>, crate::builder::bases::Lock);

impl plan::ImageResolver for StoreResolver {
    fn resolve(&self, reference: &ImageRef) -> Option<String> {
        let store = self.0.as_ref()?;
        let query = self
            .1
            .pinned(reference)
            .unwrap_or_else(|| reference.clone());
        let img = store.resolve(&query.to_string()).ok()?;
        Some(img.manifest_digest.to_string())
    }
}

pub fn run(args: &PlanArgs, settings: &Settings) -> i32 {
    let m = match load_manifest(settings, &args.overrides) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let manifest_dir = settings.manifest_dir();
    let context = args.context.clone().unwrap_or_else(|| manifest_dir.clone());
    let resolver = StoreResolver(
        settings
            .root
            .join("refs.json")
            .exists()
            .then(|| Store::open(&settings.root, Access::Shared).ok())
            .flatten(),
        crate::builder::bases::Lock::read(&crate::builder::bases::lock_path(&settings.file))
            .unwrap_or_default(),
    );
    let opts = PlanOptions {
        context: &context,
        manifest_dir: &manifest_dir,
        targets: &args.targets,
        resolver: &resolver,
        hashes: None,
    };
    let started = std::time::Instant::now();
    let result = plan::plan(&m, &opts);
    settings.printer.verbose(format!(
        "planned with context {} in {:.1} ms",
        context.display(),
        started.elapsed().as_secs_f64() * 1e3
    ));
    match result {
        Ok(p) if args.json => {
            let text = serde_json::to_string_pretty(&p).expect("plan serializes");
            settings.printer.data(format!("{text}\n"));
            exit::OK
        }
        Ok(p) => {
            settings.printer.data(render(&p));
            exit::OK
        }
        Err(errors) => {
            let unknown_target = errors
                .iter()
                .all(|e| matches!(e, plan::PlanError::UnknownTarget { .. }));
            settings.printer.diagnostic(&PlanErrors::new(&m, errors));
            if unknown_target {
                exit::FAILED
            } else {
                exit::INVALID
            }
        }
    }
}

/// The plan as text: each image with its steps, short keys and what each step needs beyond the
/// line above it.
fn render(p: &Plan) -> String {
    let mut out = String::new();
    for img in &p.images {
        out.push_str(&format!("image {}  {}", img.name, img.key.short()));
        if !img.needs.is_empty() {
            out.push_str(&format!("  (needs {})", img.needs.join(", ")));
        }
        out.push('\n');
        let mut prev: Option<usize> = None;
        for &id in &img.steps {
            let s = &p.steps[id];
            // Steps are numbered from 1 for people; ids in --json count from 0.
            let mut needs: Vec<String> = Vec::new();
            if let Some(parent) = s.parent.filter(|p| Some(*p) != prev) {
                needs.push(format!("#{}", parent + 1));
            }
            needs.extend(
                s.needs
                    .iter()
                    .filter(|n| Some(**n) != s.parent)
                    .map(|n| format!("#{}", n + 1)),
            );
            let layer = if s.layer { '+' } else { ' ' };
            out.push_str(&format!(
                "  #{:<4} {} {layer} {}",
                s.id + 1,
                s.key.short(),
                s.description
            ));
            if !needs.is_empty() {
                out.push_str(&format!("  ← {}", needs.join(", ")));
            }
            out.push('\n');
            prev = Some(id);
        }
    }
    let layers = p.steps.iter().filter(|s| s.layer).count();
    out.push_str(&format!(
        "{} image{}, {} step{} ({layers} with a layer), key schema v{}\n",
        p.images.len(),
        if p.images.len() == 1 { "" } else { "s" },
        p.steps.len(),
        if p.steps.len() == 1 { "" } else { "s" },
        p.schema
    ));
    out
}

impl PlanArgs {
    pub(super) fn overrides(&self) -> &ArgOverrides {
        &self.overrides
    }
}
