//! A container on a network: its namespace, veth pair, address and lease (`attach`), and their
//! release (`release`, the hidden `boxr __net-release`, and `gc`'s journal cleanup).

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
            let entry = store.journal_entry("netns", id);
            let Ok(bytes) = fs::read(&entry) else {
                ready();
                return Ok(());
            };
            let l = lock(&store).map_err(|e| e.to_string())?;
            match serde_json::from_slice::<Endpoint>(&bytes) {
                Ok(ep) if stopping => {
                    unmount(&ep);
                    ready();
                    drop(l);
                    delete_veth(&ep);
                }
                Ok(ep) => {
                    unmount(&ep);
                    ready();
                    // The veth goes without the lock (other containers start meanwhile); its
                    // lease stays taken until it is gone, so no one gets its address early.
                    drop(l);
                    delete_veth(&ep);
                    let _l = lock(&store).map_err(|e| e.to_string())?;
                    forget(&store, &ep);
                }
                Err(_) => {
                    let _ = fs::remove_file(&entry);
                    ready();
                }
            }
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
    let mut net = if name == DEFAULT {
        ensure_default(store)?
    } else {
        load(store, name)?
    };
    let ip = match (net.leases.get(id), ip) {
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
                    &other[..12]
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
    let ep = Endpoint {
        container: id.to_owned(),
        network: net.name.clone(),
        ip,
        prefix: net.subnet.prefix(),
        gateway: net.gateway,
        mac: mac_text(mac_of(&net.id, ip)),
        veth: format!("vb{}", &id[..11]),
        netns: netns.to_owned(),
        host_netns: own_netns(),
    };
    // Journaled before anything exists; the lease is kept with the network.
    let entry = store.journal_entry("netns", id);
    fs::write(&entry, serde_json::to_vec(&ep).expect("serializes"))
        .map_err(io(format!("write {}", entry.display())))?;
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
            let _ = fs::remove_file(&entry);
            return Err(NetError::Subnet(format!(
                "the name {n} is taken on network {} by another container",
                net.name
            )));
        }
        net.names.insert(id.to_owned(), names.to_vec());
    }
    net.leases.insert(id.to_owned(), ip);
    save(store, &net)?;
    let wired = wire(store, &net, &ep).and_then(|()| super::dns::ensure(store, &net));
    if let Err(e) = wired {
        release_locked(store, &ep);
        return Err(e);
    }
    Ok(ep)
}

/// Makes the namespace and the veth pair of `ep`, and configures both ends.
pub(super) fn wire(store: &Store, net: &Network, ep: &Endpoint) -> Result<(), NetError> {
    let mut nl = Netlink::open().map_err(io("open a netlink socket"))?;
    let bridge = ensure_bridge(store, net, &mut nl)?;
    let mtu = nl.mtu(bridge).ok().flatten().filter(|m| *m >= 1280);
    make_netns(&ep.netns)?;
    let ns = File::open(&ep.netns).map_err(io(format!("open {}", ep.netns.display())))?;
    let mac = mac_of(&net.id, ep.ip);
    nl.add_link(
        NewLink::Veth {
            name: &ep.veth,
            peer: "eth0",
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
    let (ip, prefix, gateway, internal) = (ep.ip, ep.prefix, ep.gateway, net.internal);
    in_netns(&ns, move || {
        let mut nl = Netlink::open()?;
        if let Some(lo) = nl.link_index("lo")? {
            nl.set_up(lo, None)?;
        }
        let eth0 = nl
            .link_index("eth0")?
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        nl.add_address(eth0, ip, prefix)?;
        nl.set_up(eth0, None)?;
        if !internal {
            nl.add_default_route(gateway)?;
        }
        Ok(())
    })
    .map_err(io("configure the container's eth0"))
}

/// A new network namespace kept by a bind mount at `path`.
pub(super) fn make_netns(path: &Path) -> Result<(), NetError> {
    File::create(path).map_err(io(format!("create {}", path.display())))?;
    let target = path.to_owned();
    std::thread::spawn(move || -> std::io::Result<()> {
        // Only this thread moves into the new namespace; it ends here.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    .map_err(io(format!(
        "make a network namespace at {}",
        path.display()
    )))
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

/// Takes container `id` off its network: deletes the host end of its veth (namespace teardown
/// is asynchronous), drops its namespace's mount and its lease. Nothing if it had none.
pub fn release(store: &Store, id: &str) -> Result<(), NetError> {
    super::publish::release(store, id);
    let entry = store.journal_entry("netns", id);
    let Ok(bytes) = fs::read(&entry) else {
        return Ok(());
    };
    let _l = lock(store)?;
    match serde_json::from_slice::<Endpoint>(&bytes) {
        Ok(ep) => release_locked(store, &ep),
        Err(_) => {
            let _ = fs::remove_file(&entry);
        }
    }
    Ok(())
}

/// The endpoint container `id` has on a network, if any.
fn endpoint_of(store: &Store, id: &str) -> Option<Endpoint> {
    fs::read(store.journal_entry("netns", id))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Whether the namespace file of `ep` holds a namespace (a bind mount: another device than
/// its directory's).
fn wired(ep: &Endpoint) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = ep.netns.parent().and_then(|p| fs::metadata(p).ok());
    matches!((fs::metadata(&ep.netns), parent), (Ok(f), Some(d)) if f.dev() != d.dev())
}

/// A container that stopped but stays gives back its network namespace and veth, as Docker's
/// do (an exited container holds no kernel resource); its lease, names and journal entry stay,
/// so [`rewire`] gives it the same address when it starts again.
pub fn stop(store: &Store, id: &str) {
    super::publish::release(store, id);
    if let Some(ep) = endpoint_of(store, id) {
        unmount(&ep);
        delete_veth(&ep);
    }
}

/// A container that starts again gets a new network namespace and veth with its address
/// (nothing if it is on no network, or still has them).
pub fn rewire(store: &Store, id: &str) -> Result<(), NetError> {
    let Some(ep) = endpoint_of(store, id) else {
        return Ok(());
    };
    if wired(&ep) {
        return Ok(());
    }
    let _l = lock(store)?;
    let net = if ep.network == DEFAULT {
        ensure_default(store)?
    } else {
        load(store, &ep.network)?
    };
    // What a boxr killed half-way through a stop left.
    unmount(&ep);
    delete_veth(&ep);
    wire(store, &net, &ep).and_then(|()| super::dns::ensure(store, &net))
}

/// Drops the bind mount that keeps the container's network namespace.
fn unmount(ep: &Endpoint) {
    let _ = nix::mount::umount2(&ep.netns, nix::mount::MntFlags::MNT_DETACH);
    let _ = fs::remove_file(&ep.netns);
}

fn release_locked(store: &Store, ep: &Endpoint) {
    unmount(ep);
    delete_veth(ep);
    forget(store, ep);
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

/// Frees the container's lease and names (the network's resolver stops with its last
/// container) and its journal entry. Under the networks lock.
fn forget(store: &Store, ep: &Endpoint) {
    if let Ok(mut net) = load(store, &ep.network)
        && net.leases.remove(&ep.container).is_some()
    {
        net.names.remove(&ep.container);
        let _ = save(store, &net);
        if net.leases.is_empty() {
            super::dns::stop(store, &net.name);
        }
    }
    let _ = fs::remove_file(store.journal_entry("netns", &ep.container));
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
        let entry = fs::read(store.journal_entry("netns", id))
            .ok()
            .and_then(|b| serde_json::from_slice::<Endpoint>(&b).ok());
        match entry {
            Some(ep) => release_locked(store, &ep),
            None => {
                if let Ok(mut n) = load(store, &net.name) {
                    n.leases.remove(id);
                    n.names.remove(id);
                    let _ = save(store, &n);
                }
            }
        }
    }
    load(store, &net.name).unwrap_or(net)
}

/// `gc`: the namespace, veth and lease of a container whose directory is gone (a boxr killed
/// while it removed it, or while it wired it). `Ok(true)` when the entry may go.
pub fn clean_journal_entry(store: &Store, entry: &[u8]) -> Result<bool, String> {
    let Ok(ep) = serde_json::from_slice::<Endpoint>(entry) else {
        return Ok(true);
    };
    if store.container_dir(&ep.container).exists() {
        return Ok(false);
    }
    release_locked(store, &ep);
    Ok(true)
}
