//! What a step that changes files works in: the layers below it (`lowers`), its scratch
//! directories and overlay (`StepDirs`, committed as a layer), and the supervision of its
//! sandboxed process (`supervise`: output streamed, secrets redacted, the tail kept for an
//! error). Shared by `run` steps (`step`) and filesystem steps (`fs_step`).

use std::collections::VecDeque;
use std::fs::{self};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use super::{BuildError, Ctx, Event, Scratch, State};
use crate::digest::Digest;
use crate::layer::{self, WriteOptions};
use crate::plan::Step;
use crate::sandbox::{self, RootfsSpec};
use crate::store::{LayerMeta, StoreError};

/// How many lines of a failed step's output its error shows.
const TAIL: usize = 12;

/// The layer roots of a state, topmost first (overlay lowerdir order).
pub(super) fn lowers(ctx: &Ctx, step: &Step, state: &State) -> Result<Vec<PathBuf>, BuildError> {
    let mut out = Vec::new();
    for (_, d) in state.layers.iter().rev() {
        if !ctx.store.has_layer(d) {
            return Err(ctx.step_error(
                step,
                format!("layer {d} of the base is missing from the store"),
            ));
        }
        out.push(ctx.store.layer_root(d));
    }
    Ok(out)
}

/// The directories of one step: scratch (work dir, mount point, ...) and the staged layer
/// whose `root` is the overlay's upper dir.
pub(super) struct StepDirs {
    pub(super) scratch: Scratch,
    pub(super) staged: Scratch,
    pub(super) lowers: Vec<PathBuf>,
}

impl StepDirs {
    pub(super) fn new(ctx: &Ctx, step: &Step, state: &State) -> Result<StepDirs, BuildError> {
        let scratch = Scratch(ctx.store.tmp_dir("step-")?);
        for d in ["work", "mnt", "empty", "src"] {
            let p = scratch.0.join(d);
            fs::create_dir(&p).map_err(|e| StoreError::Io {
                action: "create",
                path: p.clone(),
                source: e,
            })?;
        }
        let staged = Scratch(ctx.store.stage_layer()?);
        let mut lowers = lowers(ctx, step, state)?;
        if lowers.is_empty() {
            lowers.push(scratch.0.join("empty"));
        }
        Ok(StepDirs {
            scratch,
            staged,
            lowers,
        })
    }

    pub(super) fn rootfs(&self) -> RootfsSpec {
        RootfsSpec {
            lowers: self.lowers.clone(),
            upper: self.staged.0.join("root"),
            work: self.scratch.0.join("work"),
            target: self.scratch.0.join("mnt"),
            read_only: false,
            volatile: true,
            classic_mount: RootfsSpec::classic_requested(),
            userxattr: crate::rootless::active(),
        }
    }

    /// Commits the upper dir: no layer when the step changed nothing, else the layer is
    /// published under its DiffID.
    pub(super) fn commit(self, ctx: &Ctx) -> Result<Option<(Digest, u64)>, BuildError> {
        let StepDirs {
            scratch, staged, ..
        } = self;
        // The overlay's work dir goes first: it is on the same filesystem and may be large.
        drop(scratch);
        let root = staged.0.join("root");
        let empty = fs::read_dir(&root)
            .map_err(|e| StoreError::Io {
                action: "read",
                path: root.clone(),
                source: e,
            })?
            .next()
            .is_none();
        if empty {
            return Ok(None);
        }
        layer::write::strip_overlay_xattrs(&root).map_err(StoreError::from)?;
        let stats = layer::diff_id(
            &root,
            WriteOptions {
                clamp_mtime: Some(ctx.opts.epoch),
            },
        )
        .map_err(StoreError::from)?;
        let meta = LayerMeta {
            diff_id: stats.diff_id,
            size: stats.size,
            clamp_mtime: Some(ctx.opts.epoch),
        };
        ctx.store.put_layer(&staged.0, &meta)?;
        Ok(Some((meta.diff_id, meta.size)))
    }
}

/// Runs a child helper, streaming its output lines to the reporter; returns its exit code and
/// the last lines.
pub(super) fn supervise(
    ctx: &Ctx,
    step: &Step,
    start: impl FnOnce(Stdio, Stdio) -> Result<std::process::Child, sandbox::SandboxError>,
    redact: &[Vec<u8>],
) -> Result<(i32, Vec<String>), BuildError> {
    let io_fail = |e: std::io::Error| ctx.step_error(step, format!("output pipe: {e}"));
    let (reader, writer) = std::io::pipe().map_err(io_fail)?;
    let writer2 = writer.try_clone().map_err(io_fail)?;
    let mut child = start(Stdio::from(writer), Stdio::from(writer2))
        .map_err(|e| ctx.step_error(step, e.to_string()))?;
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL);
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {
                let mut bytes = buf.clone();
                for secret in redact.iter().filter(|s| !s.is_empty()) {
                    bytes = replace_all(&bytes, secret, b"****");
                }
                let text = String::from_utf8_lossy(&bytes);
                let line = text.trim_end_matches(['\n', '\r']);
                ctx.reporter.event(Event::Output { step, line });
                if tail.len() == TAIL {
                    tail.pop_front();
                }
                tail.push_back(line.to_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_fail(e)),
        }
    }
    let status = child.wait().map_err(io_fail)?;
    let code = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => 125,
    };
    Ok((code, tail.into()))
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}
