//! A container on a network: its namespace, veth pair, address and lease (`attach`), and their
//! release (`release`, the hidden `boxr __net-release`, and `gc`'s journal cleanup).

use super::rootless::{Need, within};
use super::*;

/// `boxr __net-release STORE_ROOT ID`: a hidden mode of the boxr binary, started before
/// argument parsing, with which the end of a `--rm` container releases its network (the
/// sandbox runtime does not carry the network code).
pub const RELEASE_ARG: &str = "__net-release";
/// [`RELEASE_ARG`]'s last argument for a container that stops but stays: see [`stop`].
pub const STOP_ARG: &str = "--stop";

/// [`RELEASE_ARG`]'s entry point, if this process was started as it. It takes the networks lock
/// and unmounts the container's namespace, then says `ready` on stdout, so the container's end
/// can return (and remove the container's directory) while it deletes the veth: an RTM_DELLINK
/// waits about 20 ms for an RCU grace period. Every later network operation waits for the lock,
/// so none sees the lease or the veth half-released.
pub fn release_mode() -> Option<i32> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().take(5).collect();
    if args.get(1).is_none_or(|a| a != RELEASE_ARG) {
        return None;
    }
    // `--stop`: a container that stays gives back its namespace and veth, keeping its address.
    let stopping = args.get(4).is_some_and(|a| a == STOP_ARG);
    let (Some(root), Some(id)) = (args.get(2), args.get(3).and_then(|i| i.to_str())) else {
        eprintln!("usage: boxr {RELEASE_ARG} STORE_ROOT ID (run by boxr)");
        return Some(125);
    };
    // Out of the container's session: its end does not end this.
    let _ = nix::unistd::setsid();
    let ready = || {
        let mut out = std::io::stdout();
        let _ = std::io::Write::write_all(&mut out, b"ready\n");
        let _ = std::io::Write::flush(&mut out);
        if let Ok(null) = fs::File::options().write(true).open("/dev/null") {
            let _ = nix::unistd::dup2_stdout(null);
        }
    };
    let released = Store::open(Path::new(root), crate::store::Access::Shared)
        .map_err(|e| e.to_string())
        .and_then(|store| {
            super::publish::release(&store, id);
            super::pasta::release(&store, id, stopping);
            let eps = entries(&store, id);
            let Some((_, first)) = eps.first() else {
                ready();
                return Ok(());
            };
            let l = lock(&store).map_err(|e| e.to_string())?;
            within(&store, Need::Existing, || {
                // Every endpoint shares the one namespace.
                unmount(first);
                // The veths by index, read under the lock: a start of the same container that
                // makes them again meanwhile gets new ones, which a late deletion cannot take.
                let indexes: Vec<u32> = Netlink::open()
                    .map(|mut nl| {
                        eps.iter()
                            .filter(|(_, ep)| ep.host_netns == own_netns())
                            .filter_map(|(_, ep)| nl.link_index(&ep.veth).ok().flatten())
                            .collect()
                    })
                    .unwrap_or_default();
                ready();
                // The veths go without the lock (other containers start meanwhile); their
                // leases stay taken until they are gone, so no one gets an address early.
                drop(l);
                if let Ok(mut nl) = Netlink::open() {
                    for i in indexes {
                        let _ = nl.del_link_index(i);
                    }
                }
                // The leases go with the store if it was removed meanwhile.
                if !stopping && store.root().exists() {
                    let _l = lock(&store)?;
                    for (entry, ep) in &eps {
                        forget(&store, ep, entry);
                    }
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
            super::rootless::release_if_unused(&store);
            Ok(())
        });
    Some(match released {
        Ok(()) => 0,
        Err(e) => {
            ready();
            eprintln!("boxr: {e}");
            1
        }
    })
}

/// Puts container `id` on network `name`: its address, and a network namespace at
/// `netns` (a file the sandbox then joins) wired to the network's bridge.
///
/// `ip` asks for a fixed address (`--ip`), which must be a free host address of the subnet;
/// `names` are what the container's address answers to on the network's resolver (a user
/// network's: the default one has no names, as Docker's).
pub fn attach(
    store: &Store,
    name: &str,
    id: &str,
    ip: Option<&str>,
    names: &[String],
    netns: &Path,
) -> Result<Endpoint, NetError> {
    let _l = lock(store)?;
    let mut net = load_or_default(store, name)?;
    within(store, Need::Make, || {
        let entry = first_entry(store, id);
        let ep = claim(
            store,
            &mut net,
            Claim {
                id,
                ip,
                names,
                entry: &entry,
                interface: 0,
                netns,
            },
        )?;
        wire_or_release(store, &net, &ep, &entry, true)?;
        Ok(ep)
    })
}

/// `boxr network connect`: puts container `id`, already on a bridge network, on network `name`
/// too, as its next interface (`eth1`, …). A running (or created) container gets the interface
/// at once; a stopped one when it starts. No default route: that stays its first network's.
pub fn connect(
    store: &Store,
    name: &str,
    id: &str,
    ip: Option<&str>,
    names: &[String],
) -> Result<Endpoint, NetError> {
    let _l = lock(store)?;
    let eps = entries(store, id);
    let Some((_, first)) = eps.first() else {
        return Err(NetError::Endpoint(format!(
            "container {} is on no bridge network (--network none, host, container: or ns:): \
             only a container on a bridge network can be connected to another",
            short(id)
        )));
    };
    let mut net = load_or_default(store, name)?;
    if eps.iter().any(|(_, e)| e.network == net.name) {
        return Err(NetError::Endpoint(format!(
            "container {} is already on network {}",
            short(id),
            net.name
        )));
    }
    let interface = (0..=255u8)
        .find(|n| !eps.iter().any(|(_, e)| e.interface == format!("eth{n}")))
        .ok_or_else(|| NetError::Endpoint("a container has at most 256 networks".into()))?;
    let entry = other_entry(store, id, &net.name);
    within(store, Need::Make, || {
        let ep = claim(
            store,
            &mut net,
            Claim {
                id,
                ip,
                names,
                entry: &entry,
                interface,
                netns: &first.netns,
            },
        )?;
        if wired(first) {
            wire_or_release(store, &net, &ep, &entry, false)?;
        }
        Ok(ep)
    })
}

/// Wires `ep` (see [`wire`]) and makes sure its network's resolver runs; on failure gives back
/// what was claimed: its veth and lease, and the namespace only if it was the `first` network's
/// (a later network's endpoint shares the container's namespace).
fn wire_or_release(
    store: &Store,
    net: &Network,
    ep: &Endpoint,
    entry: &Path,
    first: bool,
) -> Result<(), NetError> {
    let wired = wire(store, net, ep, first).and_then(|()| super::dns::ensure(store, net));
    if wired.is_err() {
        if first {
            unmount(ep);
        }
        delete_veth(ep);
        forget(store, ep, entry);
    }
    wired
}

/// `boxr network disconnect`: takes container `id` off network `name` (its interface there goes
/// at once if it runs). A container keeps at least one network. When its first network goes,
/// the next one becomes first (the default route moves to its gateway); returns it then.
pub fn disconnect(store: &Store, name: &str, id: &str) -> Result<Option<Endpoint>, NetError> {
    let _l = lock(store)?;
    let eps = entries(store, id);
    let Some(pos) = eps.iter().position(|(_, e)| e.network == name) else {
        return Err(NetError::Endpoint(format!(
            "container {} is not on network {name}",
            short(id)
        )));
    };
    if eps.len() == 1 {
        return Err(NetError::Endpoint(format!(
            "network {name} is the only network of container {}: connect it to another first \
             (or remove it)",
            short(id)
        )));
    }
    if pos == 0 && !super::publish::requests(&store.container_dir(id)).is_empty() {
        return Err(NetError::Endpoint(format!(
            "container {} publishes ports on network {name}, its first: they cannot move to \
             another network (recreate the container on the network it should keep)",
            short(id)
        )));
    }
    let (entry, ep) = &eps[pos];
    let live = wired(&eps[0].1);
    within(store, Need::Existing, || {
        delete_veth(ep);
        forget(store, ep, entry);
        Ok(())
    })?;
    if pos != 0 {
        return Ok(None);
    }
    // The next network becomes the first: its entry takes the first's place.
    let (next_entry, next) = &eps[1];
    let first = first_entry(store, id);
    fs::rename(next_entry, &first).map_err(io(format!("write {}", first.display())))?;
    let internal = load(store, &next.network).is_ok_and(|n| n.internal);
    if live && !internal {
        let ns = File::open(&next.netns).map_err(io(format!("open {}", next.netns.display())))?;
        let gateway = next.gateway;
        in_netns(&ns, move || Netlink::open()?.add_default_route(gateway))
            .map_err(io("move the container's default route"))?;
    }
    Ok(Some(next.clone()))
}

fn short(id: &str) -> &str {
    &id[..12.min(id.len())]
}

fn load_or_default(store: &Store, name: &str) -> Result<Network, NetError> {
    if name == DEFAULT {
        ensure_default(store)
    } else {
        load(store, name)
    }
}

/// The journal entry of a container's first network's endpoint.
fn first_entry(store: &Store, id: &str) -> PathBuf {
    store.journal_entry("netns", id)
}

/// The journal entry of a container's endpoint on a network it was connected to later.
fn other_entry(store: &Store, id: &str, network: &str) -> PathBuf {
    store.journal_entry("netns", &format!("{id}.{network}"))
}

/// Every endpoint of container `id` with its journal entry: its first network's first, then
/// the others by interface.
fn entries(store: &Store, id: &str) -> Vec<(PathBuf, Endpoint)> {
    let read = |p: &Path| {
        fs::read(p)
            .ok()
            .and_then(|b| serde_json::from_slice::<Endpoint>(&b).ok())
    };
    let first = first_entry(store, id);
    let mut out: Vec<(PathBuf, Endpoint)> = read(&first).map(|e| (first, e)).into_iter().collect();
    let prefix = format!("netns-{id}.");
    let mut others: Vec<(PathBuf, Endpoint)> = fs::read_dir(store.journal_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            // `netns-<id>.json` is the first network's.
            name.starts_with(&prefix) && name[prefix.len()..] != *"json"
        })
        .filter_map(|e| {
            let p = e.path();
            read(&p).filter(|ep| ep.container == id).map(|ep| (p, ep))
        })
        .collect();
    let number = |ep: &Endpoint| {
        ep.interface
            .strip_prefix("eth")
            .and_then(|n| n.parse::<u16>().ok())
            .unwrap_or(u16::MAX)
    };
    others.sort_by_key(|(_, ep)| number(ep));
    out.extend(others);
    out
}

/// Every network endpoint of container `id`, its first network's first.
pub fn endpoints(store: &Store, id: &str) -> Vec<Endpoint> {
    entries(store, id).into_iter().map(|(_, e)| e).collect()
}

/// What [`claim`] takes.
struct Claim<'a> {
    id: &'a str,
    ip: Option<&'a str>,
    names: &'a [String],
    entry: &'a Path,
    /// `ethN`'s N.
    interface: u8,
    netns: &'a Path,
}

/// Takes an address (and the container's names) on `net` and journals the endpoint, before
/// anything of it exists. Under the networks lock.
fn claim(store: &Store, net: &mut Network, c: Claim<'_>) -> Result<Endpoint, NetError> {
    let id = c.id;
    let ip = match (net.leases.get(id), c.ip) {
        (Some(ip), _) => *ip,
        (None, Some(want)) => {
            let want: Ipv4Addr = want
                .parse()
                .map_err(|_| NetError::Subnet(format!("--ip {want}: not an IPv4 address")))?;
            if !net.subnet.contains(want)
                || want == net.subnet.base()
                || want == net.subnet.broadcast()
                || want == net.gateway
            {
                return Err(NetError::Subnet(format!(
                    "--ip {want} is not a free host address of {} ({}, gateway {})",
                    net.name, net.subnet, net.gateway
                )));
            }
            if let Some((other, _)) = net.leases.iter().find(|(_, a)| **a == want) {
                return Err(NetError::Subnet(format!(
                    "--ip {want} is taken on {} by container {}",
                    net.name,
                    short(other)
                )));
            }
            want
        }
        (None, None) => {
            let used: std::collections::BTreeSet<Ipv4Addr> = net.leases.values().copied().collect();
            (2..net.subnet.size().saturating_sub(1))
                .filter_map(|n| net.subnet.host(n))
                .find(|a| *a != net.gateway && !used.contains(a))
                .ok_or_else(|| NetError::Full {
                    network: net.name.clone(),
                    subnet: net.subnet.to_string(),
                })?
        }
    };
    let veth = match c.interface {
        0 => format!("vb{}", &id[..11]),
        n => format!("vb{}{n:02x}", &id[..11]),
    };
    let ep = Endpoint {
        container: id.to_owned(),
        network: net.name.clone(),
        ip,
        prefix: net.subnet.prefix(),
        gateway: net.gateway,
        mac: mac_text(mac_of(&net.id, ip)),
        veth,
        netns: c.netns.to_owned(),
        host_netns: own_netns(),
        interface: format!("eth{}", c.interface),
    };
    // Journaled before anything exists; the lease is kept with the network.
    fs::write(c.entry, serde_json::to_vec(&ep).expect("serializes"))
        .map_err(io(format!("write {}", c.entry.display())))?;
    let names = c.names;
    if net.name != DEFAULT {
        // A container's own name (the first of its names: its name, else its short id) is its
        // alone on the network; aliases may be shared, as Docker's are (the resolver then
        // answers with every address).
        let others = net
            .names
            .iter()
            // Not this container's, nor one already removed whose veth is still going.
            .filter(|(other, _)| *other != id && store.container_dir(other).exists());
        let mut clash = None;
        for (_, theirs) in others {
            let same = |a: &String, b: &String| a.eq_ignore_ascii_case(b);
            if let Some(first) = theirs.first()
                && let Some(n) = names.iter().find(|n| same(n, first))
            {
                clash = Some(n.clone());
            } else if let Some(mine) = names.first()
                && theirs.iter().any(|t| same(t, mine))
            {
                clash = Some(mine.clone());
            }
            if clash.is_some() {
                break;
            }
        }
        if let Some(n) = clash {
            let _ = fs::remove_file(c.entry);
            return Err(NetError::Subnet(format!(
                "the name {n} is taken on network {} by another container",
                net.name
            )));
        }
        net.names.insert(id.to_owned(), names.to_vec());
    }
    net.leases.insert(id.to_owned(), ip);
    save(store, net)?;
    Ok(ep)
}

/// Makes the veth pair of `ep` (and, for a container's `first` network, its namespace), and
/// configures both ends: the default route goes through the first network's gateway.
pub(super) fn wire(
    store: &Store,
    net: &Network,
    ep: &Endpoint,
    first: bool,
) -> Result<(), NetError> {
    let mut nl = Netlink::open().map_err(io("open a netlink socket"))?;
    let bridge = ensure_bridge(store, net, &mut nl)?;
    let mtu = nl.mtu(bridge).ok().flatten().filter(|m| *m >= 1280);
    if first {
        super::netns::make_netns(&ep.netns)?;
    }
    let ns = File::open(&ep.netns).map_err(io(format!("open {}", ep.netns.display())))?;
    let mac = mac_of(&net.id, ep.ip);
    nl.add_link(
        NewLink::Veth {
            name: &ep.veth,
            peer: &ep.interface,
            peer_netns: ns.as_raw_fd(),
            peer_mac: mac,
        },
        mtu,
    )
    .map_err(io(format!("create the veth pair {}", ep.veth)))?;
    let host_end = nl
        .link_index(&ep.veth)
        .map_err(io("read the links"))?
        .ok_or_else(|| io("find the new veth")(std::io::ErrorKind::NotFound.into()))?;
    nl.set_up(host_end, Some(bridge))
        .map_err(io(format!("connect {} to {}", ep.veth, net.bridge)))?;
    nl.set_hairpin(host_end)
        .map_err(io(format!("set {}'s hairpin mode", ep.veth)))?;
    let (ip, prefix, gateway) = (ep.ip, ep.prefix, ep.gateway);
    let route = first && !net.internal;
    let interface = ep.interface.clone();
    in_netns(&ns, move || {
        let mut nl = Netlink::open()?;
        if let Some(lo) = nl.link_index("lo")? {
            nl.set_up(lo, None)?;
        }
        let eth = nl
            .link_index(&interface)?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        nl.add_address(eth, ip, prefix)?;
        nl.set_up(eth, None)?;
        if route {
            nl.add_default_route(gateway)?;
        }
        Ok(())
    })
    .map_err(io(format!("configure the container's {}", ep.interface)))
}

/// Runs `f` on a thread of its own inside the network namespace `ns`.
pub(super) fn in_netns<T: Send + 'static>(
    ns: &File,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = ns.try_clone()?;
    std::thread::spawn(move || {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
}

/// Takes container `id` off its networks: deletes the host ends of its veths (namespace
/// teardown is asynchronous), drops its namespace's mount and its leases. Nothing if it had none.
pub fn release(store: &Store, id: &str) -> Result<(), NetError> {
    super::publish::release(store, id);
    super::pasta::release(store, id, false);
    let eps = entries(store, id);
    if eps.is_empty() {
        // A torn first entry (its writer died before creating anything).
        let _ = fs::remove_file(first_entry(store, id));
        return Ok(());
    }
    {
        let _l = lock(store)?;
        within(store, Need::Existing, || {
            for (entry, ep) in &eps {
                release_locked(store, ep, entry);
            }
            Ok(())
        })?;
    }
    super::rootless::release_if_unused(store);
    Ok(())
}

/// Whether the namespace file of `ep` holds a namespace (a bind mount: another device than
/// its directory's).
fn wired(ep: &Endpoint) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = ep.netns.parent().and_then(|p| fs::metadata(p).ok());
    matches!((fs::metadata(&ep.netns), parent), (Ok(f), Some(d)) if f.dev() != d.dev())
}

/// A container that stopped but stays gives back its network namespace and veths, as Docker's
/// do (an exited container holds no kernel resource); its leases, names and journal entries
/// stay, so [`rewire`] gives it the same addresses when it starts again.
pub fn stop(store: &Store, id: &str) {
    super::publish::release(store, id);
    super::pasta::release(store, id, true);
    let eps = endpoints(store, id);
    let Some(first) = eps.first() else {
        return;
    };
    unmount(first);
    let _ = within(store, Need::Existing, || {
        for ep in &eps {
            delete_veth(ep);
        }
        Ok(())
    });
}

/// A container that starts again gets a new network namespace and veths with its addresses
/// (nothing if it is on no network, or still has them).
pub fn rewire(store: &Store, id: &str) -> Result<(), NetError> {
    super::pasta::rewire(store, id, &store.container_dir(id))?;
    let eps = endpoints(store, id);
    let Some(first) = eps.first() else {
        return Ok(());
    };
    if wired(first) {
        return Ok(());
    }
    let _l = lock(store)?;
    // What a boxr killed half-way through a stop left; veths the stop's `__net-release` may
    // still be deleting (it does so after the container's end returned) are waited for.
    unmount(first);
    within(store, Need::Make, || {
        for ep in &eps {
            delete_veth(ep);
            wait_gone(ep);
        }
        for (i, ep) in eps.iter().enumerate() {
            let net = load_or_default(store, &ep.network)?;
            wire(store, &net, ep, i == 0).and_then(|()| super::dns::ensure(store, &net))?;
        }
        Ok(())
    })
}

/// Drops the bind mount that keeps the container's network namespace.
fn unmount(ep: &Endpoint) {
    let _ = nix::mount::umount2(&ep.netns, nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_file(&ep.netns);
}

fn release_locked(store: &Store, ep: &Endpoint, entry: &Path) {
    unmount(ep);
    delete_veth(ep);
    forget(store, ep, entry);
}

/// Deletes the host end of the container's veth (and so the pair), if boxr made it in this
/// network namespace.
fn delete_veth(ep: &Endpoint) {
    if ep.host_netns == own_netns()
        && let Ok(mut nl) = Netlink::open()
    {
        let _ = nl.del_link(&ep.veth);
    }
}

/// Waits (up to two seconds) until the host end of `ep`'s veth is gone.
fn wait_gone(ep: &Endpoint) {
    let Ok(mut nl) = Netlink::open() else {
        return;
    };
    for _ in 0..100 {
        if !matches!(nl.link_index(&ep.veth), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Frees the container's lease and names on the endpoint's network (the network's resolver
/// stops with its last container) and the endpoint's journal `entry`. Under the networks lock.
fn forget(store: &Store, ep: &Endpoint, entry: &Path) {
    free_lease(store, ep);
    let _ = fs::remove_file(entry);
}

/// Frees the container's lease and names on the endpoint's network.
fn free_lease(store: &Store, ep: &Endpoint) {
    if let Ok(mut net) = load(store, &ep.network)
        && net.leases.remove(&ep.container).is_some()
    {
        net.names.remove(&ep.container);
        let _ = save(store, &net);
        if net.leases.is_empty() {
            super::dns::stop(store, &net.name);
        }
    }
}

/// Releases the leases of `net` whose container is gone (a `--rm` container whose veth is
/// still being deleted, or one a killed boxr left); returns the network as it is then. Under
/// the networks lock.
pub(super) fn reap_stale(store: &Store, net: Network) -> Network {
    let stale: Vec<String> = net
        .leases
        .keys()
        .filter(|id| !store.container_dir(id).exists())
        .cloned()
        .collect();
    if stale.is_empty() {
        return net;
    }
    for id in &stale {
        let eps = entries(store, id);
        for (entry, ep) in &eps {
            release_locked(store, ep, entry);
        }
        // A lease without an endpoint (its entry was torn).
        if !eps.iter().any(|(_, ep)| ep.network == net.name)
            && let Ok(mut n) = load(store, &net.name)
        {
            n.leases.remove(id);
            n.names.remove(id);
            let _ = save(store, &n);
        }
    }
    load(store, &net.name).unwrap_or(net)
}

/// `gc`: the namespace, veth and lease of a container whose directory is gone (a boxr killed
/// while it removed it, or while it wired it). `Ok(true)` when the entry may go (the store
/// removes it).
pub fn clean_journal_entry(store: &Store, entry: &[u8]) -> Result<bool, NetError> {
    let Ok(ep) = serde_json::from_slice::<Endpoint>(entry) else {
        return Ok(true);
    };
    if store.container_dir(&ep.container).exists() {
        return Ok(false);
    }
    unmount(&ep);
    within(store, Need::Existing, || {
        delete_veth(&ep);
        free_lease(store, &ep);
        Ok(())
    })?;
    Ok(true)
}
