//! `boxr run -d` and `boxr create`: a container under its monitor, started now or later.

use super::*;

/// `boxr run -d`: prepares the container, starts its monitor, and returns the container's id
/// once it runs (or has already ended).
pub fn run_detached(store: &Store, opts: &RunOptions) -> Result<String, ContainerError> {
    crate::net::publish::check_free(store, &opts.publish)?;
    let (id, ms) = create_detached(store, opts)?;
    start_monitor(&ms)?;
    Ok(id)
}

/// `boxr create`: a container made as `run -d` makes it, not started (`boxr start` does):
/// `ps -a` shows it `Created`. Returns its id.
pub fn create_only(store: &Store, opts: &RunOptions) -> Result<String, ContainerError> {
    let (id, ms) = create_detached(store, opts)?;
    let value = serde_json::to_value(&ms).expect("serializes");
    state::write_atomic(&ms.dir, "monitor.json", &value)
        .map_err(io_err("write", &ms.dir.join("monitor.json")))?;
    Ok(id)
}

/// The directory, files and monitor spec of a detached container.
pub(super) fn create_detached(
    store: &Store,
    opts: &RunOptions,
) -> Result<(String, monitor::MonitorSpec), ContainerError> {
    if let Some(r) = &opts.restart {
        crate::values::parse_restart(r)
            .map_err(|b| invalid(format!("--restart {r}: {}", b.reason), b.help.as_deref()))?;
        if opts.remove && r != "no" {
            return Err(invalid(
                "--restart and --rm do not go together",
                Some("a container that is removed when it exits cannot be restarted"),
            ));
        }
    }
    let (mut log_max_size, mut log_max_files) = (None, 1u32);
    for o in &opts.log_opts {
        let bad = |m: String| {
            invalid(
                format!("--log-opt {o}: {m}"),
                Some("max-size=SIZE or max-file=N"),
            )
        };
        match o.split_once('=') {
            Some(("max-size", v)) => {
                let n = crate::values::parse_size(v).map_err(|b| bad(b.reason))?;
                if n < 4096 {
                    return Err(bad("the least is 4 KiB".into()));
                }
                log_max_size = Some(n);
            }
            Some(("max-file", v)) => {
                log_max_files =
                    v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                        bad(format!("`{v}` is not a number of files (1 or more)"))
                    })?;
            }
            _ => return Err(bad("unknown option".into())),
        }
    }
    // The image's health check, if any, under the options (checked before anything exists).
    let img = store.resolve(&opts.image);
    let image_health = img
        .as_ref()
        .ok()
        .and_then(|i| i.config.config.as_ref())
        .and_then(|c| c.healthcheck.as_ref());
    let health = health::spec(&opts.health, image_health).map_err(super::invalid_value)?;
    let spec = prepare_from(store, opts, img)?;
    let dir = dir_of(&spec);
    let spec = lifecycle::detached(spec, &dir);
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runtime = sandbox::binary()?;
    let ms = monitor::MonitorSpec {
        dir: dir.clone(),
        runtime,
        tty: spec.process.tty,
        stdin: spec.process.stdin,
        sandbox: serde_json::to_value(&spec).expect("serializes"),
        name_file: opts.name.as_ref().map(|n| store.name_file(n)),
        restart: match &opts.restart {
            Some(r) => crate::values::parse_restart(r)
                .map_err(|b| invalid(format!("--restart {r}: {}", b.reason), b.help.as_deref()))?,
            None => Default::default(),
        },
        log_max_size,
        log_max_files,
        hold: false,
        health,
    };
    Ok((id, ms))
}

/// Starts a detached container's monitor; returns once the command runs (or failed to start).
pub(super) fn start_monitor(ms: &monitor::MonitorSpec) -> Result<i32, ContainerError> {
    monitor::start(ms).map_err(|(code, message)| ContainerError::Start { code, message })
}
