//! Running one step: a cache lookup, and on a miss the work itself — a base imported or
//! loaded, a `run` in a sandbox, or a `copy` or `workdir` in the fs helper (`fs_step.rs`) — then
//! the upper dir committed as a layer and the result cached.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::fcntl::{Flock, FlockArg};

use super::workspace::{StepDirs, lowers, supervise};
use super::{BuildError, Ctx, Event, State};
use crate::digest::Digest;
use crate::manifest::Base;
use crate::plan::step::{RunNetwork, Sharing};
use crate::plan::{RunCommand, RunDef, Step, StepDef};
use crate::sandbox::{
    self, EtcFile, MountSpec, NetworkMode, ProcessSpec, SandboxSpec, SecuritySpec,
};
use crate::store::CacheEntry;

/// Where secrets are written for the step that mounts them: memory, never disk.
const SECRETS_TMPFS: &str = "/dev/shm";

/// Writes a file only its owner can read.
fn write_private(path: &Path, value: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    f.write_all(value)
}

/// Runs (or finds in the cache) one step on top of its parent's result.
pub(super) fn step(ctx: &Ctx, step: &Step) -> Result<State, BuildError> {
    let mut state = match step.parent {
        Some(p) => {
            let mut s = ctx.results[p].get().expect("the parent is done").clone();
            if ctx.plan.steps[p].image != step.image {
                // A new image over an in-file base: its own `cmd` is not set yet.
                s.cmd_set = false;
            }
            s
        }
        None => State::scratch(),
    };
    match &step.definition {
        StepDef::From { .. } => from(ctx, step),
        def @ (StepDef::Run(_) | StepDef::Copy(_) | StepDef::Workdir { .. }) => {
            let layer = cached_or(ctx, step, &state, |ctx| match def {
                StepDef::Run(r) => run(ctx, step, r, &state),
                StepDef::Copy(c) => super::fs_step::copy(ctx, step, c, &state),
                StepDef::Workdir { path } => super::fs_step::workdir(ctx, step, path, &state),
                _ => unreachable!("matched above"),
            })?;
            if let StepDef::Workdir { .. } = def {
                state.apply_config(def);
            }
            if let Some((d, size)) = layer {
                state.push_layer(d, size);
            }
            state.record(step.description.clone(), &ctx.created, layer.is_none());
            Ok(state)
        }
        _ => {
            state.apply_config(&step.definition);
            state.record(step.description.clone(), &ctx.created, true);
            Ok(state)
        }
    }
}

/// Looks the step up in the cache; on a miss runs `work` and caches what it made.
fn cached_or(
    ctx: &Ctx,
    step: &Step,
    state: &State,
    work: impl FnOnce(&Ctx) -> Result<Option<(Digest, u64)>, BuildError>,
) -> Result<Option<(Digest, u64)>, BuildError> {
    let mut stale_clamp = None;
    let local = if ctx.opts.no_cache {
        None
    } else {
        ctx.store.cache_get(&step.key)
    };
    // On a local miss, a remote cache may have it (its layer goes over this step's lowers).
    let entry = match (local, ctx.opts.remote_cache) {
        (Some(e), _) => Some(e),
        (None, Some(remote)) if !ctx.opts.no_cache => {
            let below = lowers(ctx, step, state)?;
            remote.import(ctx.store, &step.key, &below)
        }
        _ => None,
    };
    if let Some(entry) = entry {
        if entry.layer.is_none() || entry.clamp_mtime == ctx.opts.epoch {
            ctx.cached.fetch_add(1, Ordering::SeqCst);
            ctx.reporter.event(Event::Cached { step });
            return Ok(entry.layer);
        }
        stale_clamp = Some(entry.clamp_mtime);
    }
    ctx.reporter.event(Event::Running { step });
    if ctx.opts.explain {
        let reason = super::explain(ctx, step, stale_clamp);
        ctx.reporter.event(Event::Explain {
            step,
            reason: &reason,
        });
    }
    let started = Instant::now();
    let result = work(ctx);
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(layer) => {
            ctx.store.cache_put(
                &step.key,
                &CacheEntry {
                    layer,
                    clamp_mtime: ctx.opts.epoch,
                },
            )?;
            ctx.ran.fetch_add(1, Ordering::SeqCst);
            ctx.reporter.event(Event::Done {
                step,
                seconds,
                layer: layer.map(|(_, s)| s),
            });
            Ok(layer)
        }
        Err(e) => {
            ctx.reporter.event(Event::Failed { step, seconds });
            Err(e)
        }
    }
}

/// A base: scratch, a directory or tarball (imported as one layer), an OCI layout, or an image
/// of the store.
fn from(ctx: &Ctx, step: &Step) -> Result<State, BuildError> {
    let img = ctx
        .manifest
        .image(&step.image)
        .expect("a planned image is in the manifest");
    let dir = ctx.opts.manifest_dir;
    let under = |p: &str| -> PathBuf {
        if dir == Path::new(".") {
            PathBuf::from(p)
        } else {
            dir.join(p)
        }
    };
    let err = |m: String| ctx.step_error(step, m);
    let mut state = State::scratch();
    match &img.from.value {
        Base::Scratch => return Ok(state),
        Base::Dir(p) => {
            let path = under(p);
            let layer = cached_or(ctx, step, &state, |ctx| {
                let meta = ctx.store.add_layer_from_dir(&path, ctx.opts.epoch)?;
                Ok(Some((meta.diff_id, meta.size)))
            })?;
            if let Some((d, s)) = layer {
                state.push_layer(d, s);
            }
        }
        Base::Tar(p) => {
            let path = under(p);
            let layer = cached_or(ctx, step, &state, |ctx| {
                let f = File::open(&path).map_err(|e| {
                    ctx.step_error(step, format!("cannot open {}: {e}", path.display()))
                })?;
                let meta = ctx.store.add_layer_from_tar(f, &[], Some(ctx.opts.epoch))?;
                Ok(Some((meta.diff_id, meta.size)))
            })?;
            if let Some((d, s)) = layer {
                state.push_layer(d, s);
            }
        }
        Base::Oci { path, tag } => {
            let layout = under(path);
            let digest = crate::plan::inputs::oci_manifest(&layout, tag.as_deref())
                .map_err(|e| err(e.to_string()))?;
            let digest =
                Digest::parse(&digest).ok_or_else(|| err(format!("bad digest {digest}")))?;
            let image = if ctx.store.image(&digest).is_ok() {
                ctx.cached.fetch_add(1, Ordering::SeqCst);
                ctx.reporter.event(Event::Cached { step });
                ctx.store.image(&digest)?
            } else {
                ctx.reporter.event(Event::Running { step });
                let t = Instant::now();
                let image = ctx.store.load_oci_image(&layout, &digest)?;
                ctx.ran.fetch_add(1, Ordering::SeqCst);
                ctx.reporter.event(Event::Done {
                    step,
                    seconds: t.elapsed().as_secs_f64(),
                    layer: None,
                });
                image
            };
            return Ok(State::of_image(&image));
        }
        Base::Store(r) => {
            let image = match step.planned_image() {
                Some(d) => ctx.store.image(&d)?,
                None => ctx.store.resolve(&r.to_string())?,
            };
            // A pulled image's layers are unpacked when first used.
            ctx.store.unpack_image(&image)?;
            ctx.cached.fetch_add(1, Ordering::SeqCst);
            ctx.reporter.event(Event::Cached { step });
            return Ok(State::of_image(&image));
        }
        Base::Image(_) => unreachable!("an in-file base has no step of its own"),
    }
    state.record(step.description.clone(), &ctx.created, false);
    Ok(state)
}

fn failed(ctx: &Ctx, step: &Step, code: i32, tail: Vec<String>, offline: bool) -> BuildError {
    BuildError::StepFailed(Box::new(super::StepFailed {
        image: step.image.clone(),
        description: step.description.clone(),
        code,
        src: ctx.source(),
        span: step.span,
        tail: super::StepFailed::help(&tail, offline),
    }))
}

/// A held cache-mount lock (released when dropped).
enum CacheLock {
    None,
    Held(#[allow(dead_code)] Flock<File>),
}

/// `run`: the command in a sandbox over the parent's layers; the upper dir is the layer.
fn run(
    ctx: &Ctx,
    step: &Step,
    def: &RunDef,
    state: &State,
) -> Result<Option<(Digest, u64)>, BuildError> {
    let err = |m: String| ctx.step_error(step, m);
    let args = match &def.command {
        RunCommand::Shell(cmd) => {
            let mut a = state.shell.clone();
            a.push(cmd.clone());
            a
        }
        RunCommand::Exec(a) => a.clone(),
    };
    let mut env = state.env();
    for (k, v) in &def.env {
        super::state::set_var(&mut env, k, v);
    }
    let dirs = StepDirs::new(ctx, step, state)?;
    let scratch = dirs.scratch.0.clone();
    let write = |name: &str, content: &str| -> Result<PathBuf, BuildError> {
        let p = scratch.join(name);
        fs::write(&p, content).map_err(|e| err(format!("cannot write {}: {e}", p.display())))?;
        Ok(p)
    };
    // On the default bridge network, the step has a namespace, address and veth of its own
    // for as long as it runs (released when this goes, also on failure).
    let bridge = match def.network {
        RunNetwork::Bridge if crate::rootless::active() => {
            return Err(err(
                "network \"bridge\" needs root: a rootless build step has `none` or `host`".into(),
            ));
        }
        RunNetwork::Bridge => Some(
            super::network::StepNetwork::attach(ctx, &scratch.join("netns"))
                .map_err(|e| err(format!("cannot put the step on the bridge network: {e}")))?,
        ),
        _ => None,
    };
    let network = match (def.network, &bridge) {
        (RunNetwork::Host, _) => NetworkMode::Host,
        (_, Some(b)) => NetworkMode::Join(b.endpoint.netns.clone()),
        _ => NetworkMode::None,
    };
    let hosts = match network {
        NetworkMode::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        _ => "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned(),
    };
    let resolv = match (&network, &bridge) {
        (NetworkMode::Host, _) => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        // The network's resolver forwards to the host's, with the host's search domains.
        (_, Some(b)) => crate::net::dns::resolv_conf_for(b.endpoint.gateway),
        _ => String::new(),
    };
    let etc_files = vec![
        EtcFile {
            source: write("hosts", &hosts)?,
            target: "/etc/hosts".into(),
        },
        EtcFile {
            source: write("resolv.conf", &resolv)?,
            target: "/etc/resolv.conf".into(),
        },
    ];
    let mut mounts = Vec::new();
    let mut locks = Vec::new();
    let mut targets: Vec<String> = vec![
        "/proc".into(),
        "/dev".into(),
        "/sys".into(),
        "/etc/hosts".into(),
        "/etc/resolv.conf".into(),
    ];
    for c in &def.caches {
        let (target, id) = (c.target.clone(), &c.id);
        let (dir, lock_path) = ctx.store.cache_mount(id)?;
        let open_lock = || {
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| err(format!("cannot open the lock of cache `{id}`: {e}")))
        };
        let (source, lock) = match c.sharing {
            Sharing::Locked => {
                let held = Flock::lock(open_lock()?, FlockArg::LockExclusive)
                    .map_err(|(_, e)| err(format!("cannot lock cache `{id}`: {e}")))?;
                (dir, CacheLock::Held(held))
            }
            Sharing::Private => match Flock::lock(open_lock()?, FlockArg::LockExclusiveNonblock) {
                Ok(held) => (dir, CacheLock::Held(held)),
                // In use: this step gets a fresh, throwaway directory of its own.
                Err(_) => {
                    let own = scratch.join(format!("cache-{}", locks.len()));
                    fs::create_dir(&own)
                        .map_err(|e| err(format!("cannot create {}: {e}", own.display())))?;
                    (own, CacheLock::None)
                }
            },
            Sharing::Shared => (dir, CacheLock::None),
        };
        locks.push(lock);
        mounts.push(MountSpec::Bind {
            source,
            target: target.clone(),
            read_only: false,
        });
        targets.push(target);
    }
    // Secrets: each in a file of its own on a tmpfs (/dev/shm), bound read-only for this step;
    // the directory goes when the step ends. Their values are masked in the step's output.
    let mut redact = Vec::new();
    let mut secret_dir = None;
    for sec in &def.secrets {
        let name = sec.name.as_str();
        let value = ctx.opts.secrets.get(name).ok_or_else(|| {
            err(format!(
                "the secret `{name}` is not given: pass --secret id={name},src=FILE (or env=VAR), or set {name} in the environment"
            ))
        })?;
        if secret_dir.is_none() {
            secret_dir = Some(
                tempfile::Builder::new()
                    .prefix("boxr-secrets-")
                    .tempdir_in(SECRETS_TMPFS)
                    .map_err(|e| {
                        err(format!("cannot create a directory in {SECRETS_TMPFS}: {e}"))
                    })?,
            );
        }
        let dir = secret_dir.as_ref().expect("created above");
        let path = dir.path().join(name);
        write_private(&path, value)
            .map_err(|e| err(format!("cannot write the secret `{name}`: {e}")))?;
        let file = sec.file.clone();
        mounts.push(MountSpec::Bind {
            source: path,
            target: file.clone(),
            read_only: true,
        });
        targets.push(file);
        if let Some(var) = &sec.env {
            env.push(format!("{var}={}", String::from_utf8_lossy(value)));
        }
        redact.push(value.clone());
    }
    let mut security = SecuritySpec::new(&[], &[], false, false).map_err(|e| err(e.to_string()))?;
    security.seccomp = Some(
        sandbox::seccomp::program(
            sandbox::seccomp::DEFAULT_PROFILE.as_bytes(),
            &security.capabilities,
            |key, make| ctx.store.cached_artifact("seccomp", key, make),
        )
        .map_err(|m| err(format!("seccomp: {m}")))?,
    );
    let spec = SandboxSpec {
        rootfs: dirs.rootfs(),
        hostname: "boxr".into(),
        network,
        etc_files,
        mounts,
        process: ProcessSpec {
            args,
            env,
            cwd: state.workdir(),
            user: state.run.user.clone().filter(|u| !u.is_empty()),
            stdin: false,
            tty: false,
            rlimits: Vec::new(),
            group_add: Vec::new(),
            oom_score_adj: None,
        },
        init: true,
        security,
        owner: None,
        keep_fd: None,
        console_fd: None,
        die_with_parent: true,
        // No limits, but Docker's devices allowlist (and a cgroup to clean up after); none
        // rootless, where none can be made (devices are bound from the host there).
        cgroup: (!crate::rootless::active()).then(|| sandbox::CgroupSpec {
            path: format!("boxr/build-{}", dirs.scratch.name()),
            limits: sandbox::cgroup::Limits {
                devices: Some(sandbox::cgroup::default_devices()),
                ..Default::default()
            },
            journal: Some(
                ctx.store
                    .journal_entry("cgroup", &format!("build-{}", dirs.scratch.name())),
            ),
        }),
        cgroup_sync_fd: None,
        detach: false,
        report_fd: None,
        exit_fd: None,
        userns: None,
        rootfs_mounted: false,
        hooks: Vec::new(),
        pid_file: None,
        shm_size: None,
        sysctls: Vec::new(),
        pid_ns: Default::default(),
        ipc_ns: Default::default(),
        uts_ns: Default::default(),
        shm_from: None,
        devices: Vec::new(),
    };
    let (code, tail) = supervise(ctx, step, |o, e| sandbox::spawn(&spec, o, e), &redact)?;
    drop(bridge);
    drop(locks);
    drop(secret_dir);
    if code != 0 {
        let offline = def.network == crate::manifest::RunNetwork::None;
        return Err(failed(ctx, step, code, tail, offline));
    }
    crate::layer::stack::remove_mount_points(&dirs.staged.0.join("root"), &dirs.lowers, &targets);
    dirs.commit(ctx)
}
