//! Where a container meets its network outside `create`: the release at its end (`release`,
//! re-exported), and, for a monitor, the network and published ports at each start and their
//! return at its end.

use std::path::Path;

pub(super) use super::release::release;

/// The store of the container in `dir`, opened for a moment.
fn store_of(dir: &Path) -> Result<crate::store::Store, super::ContainerError> {
    let root = crate::store::root_of_container_dir(dir)
        .ok_or_else(|| super::invalid(format!("{} is not in a store", dir.display()), None))?;
    Ok(crate::store::Store::open(
        root,
        crate::store::Access::Shared,
    )?)
}

fn id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The container's network when it starts again (a stopped container gave its namespace and
/// veth back), and the ports it asked for (the proxy's threads start with the monitor's signals
/// blocked, so those still come to its signalfd).
pub(super) fn publish(
    dir: &Path,
) -> Result<Option<crate::net::publish::Publication>, super::ContainerError> {
    if !dir.join(crate::net::publish::ENDPOINT).exists() && !crate::net::pasta::attached(dir) {
        return Ok(None);
    }
    let store = store_of(dir)?;
    crate::net::rewire(&store, &id_of(dir))?;
    if crate::net::publish::requests(dir).is_empty() {
        return Ok(None);
    }
    Ok(crate::net::publish::Publication::open(&store, dir)?)
}

/// A monitor that ends for good gives the container's namespace and veth back (the container
/// stays: its address is kept for the next start). The veth's deletion, an RCU grace period,
/// goes on after the monitor is gone.
pub(super) fn give_back(dir: &Path) {
    if dir.exists()
        && (dir.join(crate::net::publish::ENDPOINT).exists() || crate::net::pasta::attached(dir))
        && let Some(root) = crate::store::root_of_container_dir(dir)
    {
        release(root, &id_of(dir), true, None);
    }
}

/// `boxr network connect`: puts a container on one more network, as its next interface, under
/// its name, `aliases` and short id there.
pub fn connect(
    store: &crate::store::Store,
    container: &str,
    network: &str,
    ip: Option<&str>,
    aliases: &[String],
) -> Result<crate::net::Endpoint, super::ContainerError> {
    if network == crate::net::DEFAULT && !aliases.is_empty() {
        return Err(super::invalid(
            "--alias needs a user network (`boxr network create`)",
            Some("the default network `bridge` has no names, as Docker's"),
        ));
    }
    let info = super::state::find(store, container)?;
    let names = names_on_network(info.name.as_deref(), &info.id, aliases);
    Ok(crate::net::connect(store, network, &info.id, ip, &names)?)
}

/// `boxr network disconnect`: takes a container off a network. When that was its first one, the
/// next takes its place in what `inspect` shows and in the container's /etc/resolv.conf (the
/// resolver of the new first network's gateway; it answers the names of all its networks).
pub fn disconnect(
    store: &crate::store::Store,
    container: &str,
    network: &str,
) -> Result<(), super::ContainerError> {
    let info = super::state::find(store, container)?;
    let before = crate::net::endpoints(store, &info.id);
    let next = crate::net::disconnect(store, network, &info.id)?;
    if let (Some(next), Some(old)) = (next, before.first()) {
        let dir = &info.dir;
        super::state::write_atomic(dir, super::state::NETWORK, &next)
            .map_err(super::io_err("write", &dir.join(super::state::NETWORK)))?;
        // Written in place: the container sees its /etc/resolv.conf through a bind mount of
        // this very file.
        let resolv = dir.join("resolv.conf");
        if let Ok(text) = std::fs::read_to_string(&resolv) {
            let old_line = format!("nameserver {}", old.gateway);
            let changed: String = text
                .lines()
                .map(|l| {
                    if l.trim() == old_line {
                        format!("nameserver {}\n", next.gateway)
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            if changed != text {
                std::fs::write(&resolv, changed).map_err(super::io_err("write", &resolv))?;
            }
        }
    }
    Ok(())
}

/// What a container answers to on a network's resolver: first its own name (its name, else its
/// short id: the one no other container may take), then its aliases (which others may share),
/// then its short id.
pub(super) fn names_on_network(name: Option<&str>, id: &str, aliases: &[String]) -> Vec<String> {
    let short = id[..12].to_owned();
    std::iter::once(name.map_or_else(|| short.clone(), str::to_owned))
        .chain(aliases.iter().cloned())
        .chain(name.is_some().then_some(short))
        .collect()
}
