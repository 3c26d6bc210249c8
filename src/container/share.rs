//! What a new container shares with others: the namespaces of the host or of a running
//! container (`--pid`, `--ipc`, `--uts`, `--network container:NAME`).

use super::*;

/// `--pid`, `--ipc` or `--uts` (`flag`) as a namespace to share: one of `modes` (`host`, and
/// `private`/`shareable` for a namespace of its own), or `container:NAME` where allowed (every
/// flag but `--uts`).
pub(super) fn namespace_share(
    store: &Store,
    flag: &str,
    value: Option<&str>,
    modes: &[&str],
) -> Result<NsShare, ContainerError> {
    let usage = || {
        let mut m = modes.join("|");
        if flag != "--uts" {
            m.push_str("|container:NAME");
        }
        invalid(format!("{flag} {}: use {m}", value.unwrap_or("")), None)
    };
    match value.unwrap_or("") {
        "" => Ok(NsShare::Private),
        "host" if modes.contains(&"host") => Ok(NsShare::Host),
        m @ ("private" | "shareable") if modes.contains(&m) => Ok(NsShare::Private),
        v => match v.strip_prefix("container:") {
            Some(name) if flag != "--uts" && !name.is_empty() => {
                let other = running_container(store, name, &format!("{flag} container:{name}"))?;
                Ok(NsShare::Sandbox(other.dir.join("pid")))
            }
            _ => Err(usage()),
        },
    }
}

/// The running container whose network namespace `--network container:NAME` shares.
pub(super) fn network_container(
    store: &Store,
    name: &str,
    opts: &RunOptions,
) -> Result<state::Info, ContainerError> {
    if opts.hostname.is_some() {
        return Err(invalid(
            "conflicting options: --hostname and --network container:NAME",
            Some("the container takes the hostname of the one whose network it shares"),
        ));
    }
    if !(opts.add_hosts.is_empty()
        && opts.dns.is_empty()
        && opts.dns_search.is_empty()
        && opts.dns_options.is_empty())
    {
        return Err(invalid(
            "conflicting options: --add-host or --dns and --network container:NAME",
            Some("the container shares /etc/hosts and /etc/resolv.conf with that one"),
        ));
    }
    running_container(
        store,
        name,
        &format!("cannot join the network of container {name}"),
    )
}

/// The container `name`, which must be running for `what` (said in the error).
pub(super) fn running_container(
    store: &Store,
    name: &str,
    what: &str,
) -> Result<state::Info, ContainerError> {
    let other = state::find(store, name)?;
    if !matches!(state::status(&other), state::Status::Running { .. }) {
        return Err(invalid(format!("{what}: it is not running"), None));
    }
    Ok(other)
}
