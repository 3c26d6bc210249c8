//! `boxr exec`: another process in a running container's namespaces, cgroup and confinement.

use super::*;

/// What `boxr exec` runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub container: String,
    pub command: Vec<String>,
    /// `KEY=VALUE` (or `KEY`: boxr's own value) added to the container's environment.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub workdir: Option<String>,
    pub interactive: bool,
    /// `-t`: a pty of the container's own for the command.
    pub tty: bool,
}

/// `boxr exec`: becomes a process in the running container. Returns only on failure.
pub fn exec(store: &Store, opts: &ExecOptions) -> ContainerError {
    match exec_spec(store, opts) {
        Ok(spec) => sandbox::exec::exec(&spec).into(),
        Err(e) => e,
    }
}

/// `boxr exec -d`: starts the process in the running container and returns.
pub fn exec_detached(store: &Store, opts: &ExecOptions) -> Result<(), ContainerError> {
    if opts.interactive || opts.tty {
        return Err(invalid(
            "exec -d does not go with -i or -t: nothing stays to relay them",
            None,
        ));
    }
    let spec = exec_spec(store, opts)?;
    sandbox::exec::spawn_detached(&spec).map_err(ContainerError::from)
}

pub(super) fn exec_spec(
    store: &Store,
    opts: &ExecOptions,
) -> Result<sandbox::exec::ExecSpec, ContainerError> {
    let info = state::find(store, &opts.container)?;
    let Some(pid) = state::live_pid(&info.dir) else {
        return Err(invalid(
            format!("container {} is not running", opts.container),
            None,
        ));
    };
    if state::paused(&info) {
        return Err(invalid(
            format!("container {} is paused", opts.container),
            Some("`boxr unpause` it first"),
        ));
    }
    let path = info.dir.join("spec.json");
    let spec: SandboxSpec = fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid(format!("cannot read {}", path.display()), None))?;
    if opts.command.is_empty() {
        return Err(invalid(
            "exec needs a command",
            Some("boxr exec CONTAINER COMMAND [ARG...]"),
        ));
    }
    let layout = sandbox::cgroup::Layout::detect()
        .map_err(|e| invalid(format!("cannot read the mount table: {e}"), None))?;
    let cgroup_dirs = match &spec.cgroup {
        Some(c) => {
            let mut dirs: Vec<PathBuf> = layout.v1.values().map(|r| r.join(&c.path)).collect();
            dirs.extend(layout.v2.as_ref().map(|r| r.join(&c.path)));
            dirs.sort();
            dirs.dedup();
            dirs.into_iter().filter(|d| d.exists()).collect()
        }
        None => Vec::new(),
    };
    let mut env = spec.process.env.clone();
    let extra: Vec<String> = opts
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                std::env::var(e).ok().map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    merge_env(&mut env, extra);
    events::record(
        store.root(),
        "exec_start",
        &info.id,
        serde_json::json!({"execID": opts.command.join(" "), "name": info.name}),
    );
    Ok(sandbox::exec::ExecSpec {
        pid,
        pid_start: sandbox::process_start_time(pid).unwrap_or_default(),
        cgroup_dirs,
        process: ProcessSpec {
            args: opts.command.clone(),
            env,
            cwd: opts
                .workdir
                .clone()
                .unwrap_or_else(|| spec.process.cwd.clone()),
            user: opts.user.clone().or(spec.process.user.clone()),
            stdin: opts.interactive,
            tty: opts.tty,
            rlimits: spec.process.rlimits.clone(),
            group_add: spec.process.group_add.clone(),
            oom_score_adj: spec.process.oom_score_adj,
        },
        security: spec.security.clone(),
    })
}
