//! `boxr check`

use super::format::plural;
use super::{ArgOverrides, Settings, exit, load_manifest};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    overrides: ArgOverrides,
}

pub fn run(args: &CheckArgs, settings: &Settings) -> i32 {
    let m = match load_manifest(settings, &args.overrides) {
        Ok(m) => m,
        Err(code) => return code,
    };
    if let Err(code) = check_lock(&m, settings) {
        return code;
    }
    // Counted as `plan` counts them: an image `from` another of this file continues that
    // image's steps, with no `from` step of its own.
    let steps: usize = m
        .images
        .iter()
        .map(|i| {
            let from = usize::from(!matches!(i.from.value, crate::manifest::Base::Image(_)));
            i.instructions.len() + from
        })
        .sum();
    if settings.printer.is_json() {
        let summary = serde_json::json!({
            "ok": true,
            "file": m.name,
            "args": m.args.len(),
            "images": m.images.len(),
            "steps": steps,
            "services": m.services.len(),
        });
        settings.printer.data(format!("{summary}\n"));
    } else {
        settings.printer.out(format!(
            "ok: {} ({} image{}, {steps} step{}, {} service{})",
            m.name,
            m.images.len(),
            plural(m.images.len()),
            plural(steps),
            m.services.len(),
            plural(m.services.len()),
        ));
    }
    exit::OK
}

/// A lock file beside the manifest must pin exactly its registry references.
fn check_lock(m: &crate::manifest::Manifest, settings: &Settings) -> Result<(), i32> {
    use crate::builder::bases::{self, Lock};
    let lock_file = bases::lock_path(&settings.file);
    if !lock_file.exists() {
        return Ok(());
    }
    let lock = Lock::read(&lock_file).map_err(|e| {
        settings.printer.diagnostic(&e);
        exit::INVALID
    })?;
    // Names the store has are local (not locked); without a store every name is a registry's.
    let refs = if settings.root.join("refs.json").exists() {
        crate::store::Store::open(&settings.root, crate::store::Access::Shared)
            .and_then(|s| s.refs())
            .unwrap_or_default()
    } else {
        Default::default()
    };
    let (missing, unused) = bases::lock_drift(&refs, m, &lock);
    if missing.is_empty() && unused.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("not locked: {}", missing.join(", ")));
    }
    if !unused.is_empty() {
        parts.push(format!("locked but not used: {}", unused.join(", ")));
    }
    let diag = miette::MietteDiagnostic::new(format!(
        "{} does not match {} ({})",
        lock_file.display(),
        m.name,
        parts.join("; ")
    ))
    .with_code("boxr::check::lock")
    .with_help("`boxr build` locks new references; `boxr build --update` rewrites the lock");
    settings.printer.diagnostic(&diag);
    Err(exit::INVALID)
}

impl CheckArgs {
    pub(super) fn overrides(&self) -> &ArgOverrides {
        &self.overrides
    }
}
