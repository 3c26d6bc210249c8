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
    let steps: usize = m.images.iter().map(|i| i.instructions.len() + 1).sum();
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

impl CheckArgs {
    pub(super) fn overrides(&self) -> &ArgOverrides {
        &self.overrides
    }
}
