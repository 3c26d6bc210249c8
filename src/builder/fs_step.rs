//! The steps the fs helper does (`boxr __fs`, nothing of the image runs): `copy` and
//! `workdir`, each into a fresh upper dir over the parent's layers, then committed.

use std::fs;

use super::workspace::{StepDirs, lowers, supervise};
use super::{BuildError, Ctx, State};
use crate::digest::Digest;
use crate::plan::{CopyDef, Step};
use crate::sandbox;
use crate::sandbox::fs_helper::{FsOp, FsSource, FsSpec};

/// `copy`: Docker's COPY through the fs helper.
pub(super) fn copy(
    ctx: &Ctx,
    step: &Step,
    def: &CopyDef,
    state: &State,
) -> Result<Option<(Digest, u64)>, BuildError> {
    let err = |m: String| ctx.step_error(step, m);
    let dirs = StepDirs::new(ctx, step, state)?;
    let source = match &def.from {
        None => {
            let ignore =
                crate::ignore::Ignore::load(ctx.opts.context).map_err(|e| err(e.to_string()))?;
            let path = fs::canonicalize(ctx.opts.context)
                .map_err(|e| err(format!("the build context: {e}")))?;
            FsSource::Dir {
                path,
                ignore: ignore.lines,
            }
        }
        Some(from) => {
            let other = match step.needs.iter().find(|n| Some(**n) != step.parent) {
                // Another image of this file: its last step's result.
                Some(&n) => ctx.results[n].get().expect("the source is done").clone(),
                None => {
                    let image = match step.planned_image() {
                        Some(d) => ctx.store.image(&d)?,
                        None => ctx.store.resolve(from)?,
                    };
                    ctx.store.unpack_image(&image)?;
                    State::of_image(&image)
                }
            };
            let ls = lowers(ctx, step, &other)?;
            if ls.is_empty() {
                return Err(err(format!("`{from}` is empty: there is nothing to copy")));
            }
            FsSource::Layers {
                lowers: ls,
                target: dirs.scratch.0.join("src"),
            }
        }
    };
    let spec = FsSpec {
        rootfs: Some(dirs.rootfs()),
        source: Some(source),
        op: FsOp::Copy {
            sources: def.sources.clone(),
            dest: def.to.clone(),
            chmod: def.chmod,
            chown: def.chown.clone(),
        },
    };
    run_helper(ctx, step, dirs, &spec)
}

/// `workdir`: the directory, created when the image lacks it.
pub(super) fn workdir(
    ctx: &Ctx,
    step: &Step,
    path: &str,
    state: &State,
) -> Result<Option<(Digest, u64)>, BuildError> {
    let dirs = StepDirs::new(ctx, step, state)?;
    let spec = FsSpec {
        rootfs: Some(dirs.rootfs()),
        source: None,
        op: FsOp::Mkdir {
            path: path.to_owned(),
        },
    };
    run_helper(ctx, step, dirs, &spec)
}

/// Runs the fs helper on `spec` and commits the step's upper dir, or fails with its output.
fn run_helper(
    ctx: &Ctx,
    step: &Step,
    dirs: StepDirs,
    spec: &FsSpec,
) -> Result<Option<(Digest, u64)>, BuildError> {
    let (code, tail) = supervise(ctx, step, |o, e| sandbox::spawn_fs_helper(spec, o, e), &[])?;
    if code != 0 {
        return Err(ctx.step_error(step, tail.join("\n")));
    }
    dirs.commit(ctx)
}
