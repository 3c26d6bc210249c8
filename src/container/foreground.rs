//! `boxr run` in the foreground: the process becomes the container's sandbox helper, or, when
//! the container publishes ports, stays as the helper's parent and holds them.

use super::*;

/// `boxr run` in the foreground: prepares the container and becomes its sandbox helper, or,
/// when it publishes ports, runs the helper as a child and holds the ports (sockets, DNAT
/// entries, loopback proxy) until it ends. Returns the container's exit code in that case;
/// otherwise returns only on failure.
pub fn run(store: &Store, opts: &RunOptions) -> Result<i32, ContainerError> {
    crate::net::publish::check_free(store, &opts.publish)?;
    let spec = prepare(store, opts)?;
    let dir = dir_of(&spec);
    let fail = |e: ContainerError| {
        // The helper never ran: `--rm` is this process's to honour.
        if let Some(dir) = record::Record::of(&spec).and_then(|r| r.remove.into_iter().next()) {
            let _ = crate::net::release(
                store,
                &dir.file_name().unwrap_or_default().to_string_lossy(),
            );
            let _ = crate::store::remove_dir_tree(&dir);
        }
        Err(e)
    };
    if crate::net::publish::requests(&dir).is_empty() {
        return fail(sandbox::exec(&spec, &record::Recorder).into());
    }
    // Before the proxy's threads start, so they inherit the mask and the signals come here.
    if let Err(e) = sandbox::block_relayed() {
        return fail(invalid(format!("cannot block signals: {}", e.desc()), None));
    }
    let publication = match crate::net::publish::Publication::open(store, &dir) {
        Ok(p) => p,
        Err(e) => return fail(e.into()),
    };
    let code = sandbox::run_foreground(&spec);
    drop(publication);
    match code {
        Ok(code) => Ok(code),
        Err(e) => fail(e.into()),
    }
}
