//! Container networks: bridges, veth pairs, addresses (IPAM under a lock), masquerade and
//! isolation rules in boxr's own nftables table.
//!
//! A network is a file `networks/<name>.json` in the store (its subnet, gateway, bridge and the
//! leases of its containers), changed only under `networks/.lock`. A container on a network gets
//! a network namespace of its own before its sandbox starts, kept as a bind mount at
//! `containers/<id>/netns` (the sandbox joins it by path, as podman's containers join the
//! namespace netavark configured): a veth pair with one end in the bridge and the other as the
//! container's `eth0`, its address, and a default route through the gateway.
//!
//! Every kernel resource is journaled in the store before it is created (`journal/netns-<id>`
//! for a container's namespace and veth, `journal/bridge-<name>` for a bridge), so `rm`, `gc`
//! and `network rm` can remove what a killed boxr left.
//!
//! Published ports (`ports`: the `-p` grammar; `publish`: the sockets that hold them, their DNAT
//! entries and the loopback proxy) live as long as the process that runs the container.
//!
//! Names between containers: `dns`, one resolver process per network on its gateway address.
//!
//! Rootless, all of this lives in the user's rootless network namespace (`rootless`): the code
//! is the same, run on a thread that joined it.
//!
//! A container may be on several networks (`network connect`, several `--network`s): one
//! namespace, one veth pair per network (`eth0`, `eth1`, …), the default route through its
//! first network's gateway. The first network's endpoint is journaled as `journal/netns-<id>`,
//! each other one as `journal/netns-<id>.<network>`.

pub mod dns;
mod endpoint;
mod firewall;
pub mod netlink;
mod netns;
pub mod pasta;
pub mod ports;
pub mod publish;
pub mod rootless;
mod subnet;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use endpoint::{
    RELEASE_ARG, STOP_ARG, attach, clean_journal_entry, connect, disconnect, endpoints, release,
    release_mode, rewire, stop,
};
pub use subnet::Subnet;

use crate::store::Store;
use netlink::{Netlink, NewLink};

/// The default network's name (Docker's).
pub const DEFAULT: &str = "bridge";
/// The default network's bridge device.
pub const DEFAULT_BRIDGE: &str = "boxr0";

/// Why a network operation failed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NetError {
    #[error("network `{0}` does not exist")]
    #[diagnostic(
        code(boxr::net::not_found),
        help("`boxr network ls` lists the networks")
    )]
    NotFound(String),
    #[error("`{0}` is a pre-defined network and cannot be removed")]
    #[diagnostic(code(boxr::net::predefined))]
    Predefined(String),
    #[error("network `{0}` exists already")]
    #[diagnostic(code(boxr::net::exists))]
    Exists(String),
    #[error(
        "invalid network name `{0}`: letters, digits, `_`, `.` and `-`, starting with a letter or digit"
    )]
    #[diagnostic(code(boxr::net::name))]
    BadName(String),
    #[error("{0}")]
    #[diagnostic(code(boxr::net::subnet))]
    Subnet(String),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] crate::store::StoreError),
    /// pasta, the rootless network's, refused or failed (its own message).
    #[error("rootless network (pasta): {0}")]
    #[diagnostic(
        code(boxr::net::pasta),
        help("boxr connects rootless containers with pasta (apt-get install passt)")
    )]
    Pasta(String),
    /// A value of an option (`--subnet`) that does not parse.
    #[error("{reason}")]
    #[diagnostic(code(boxr::net::value))]
    Value {
        reason: String,
        #[help]
        help: Option<String>,
    },
    #[error("{0}")]
    #[diagnostic(code(boxr::net::endpoint))]
    Endpoint(String),
    #[error("network `{network}` is in use by {}", containers.join(", "))]
    #[diagnostic(
        code(boxr::net::in_use),
        help("remove those containers first (`boxr rm -f`)")
    )]
    InUse {
        network: String,
        containers: Vec<String>,
    },
    #[error("no address left in {network} ({subnet})")]
    #[diagnostic(code(boxr::net::full))]
    Full { network: String, subnet: String },
    #[error("cannot {action}: {source}")]
    #[diagnostic(code(boxr::net::io))]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the firewall (nft) refused boxr's rules for {network}: {source}")]
    #[diagnostic(
        code(boxr::net::firewall),
        help("boxr needs nftables (`apt-get install nftables`) and CAP_NET_ADMIN")
    )]
    Firewall {
        network: String,
        #[source]
        source: firewall::NftError,
    },
    #[error("cannot publish {port}: {reason}{}", holder_text(holder))]
    #[diagnostic(
        code(boxr::net::port_taken),
        help("publish another host port (-p OTHER:PORT), or let boxr pick one (-p PORT)")
    )]
    PortTaken {
        port: String,
        reason: String,
        holder: String,
    },
    #[error("cannot start the resolver of network {network}: {message}")]
    #[diagnostic(
        code(boxr::net::resolver),
        help("it listens on the network's gateway address, port 53 (UDP and TCP)")
    )]
    Resolver { network: String, message: String },
}

fn holder_text(holder: &str) -> String {
    if holder.is_empty() {
        String::new()
    } else {
        format!(" (held by {holder})")
    }
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let action = action.into();
    move |source| NetError::Io { action, source }
}

/// A network as `boxr network inspect` shows it, and as its file keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    /// No egress: containers reach each other and nothing else.
    pub internal: bool,
    /// The bridge device (at most 15 bytes, whatever the network's name).
    pub bridge: String,
    pub created: String,
    /// Container id → its address on this network.
    #[serde(default)]
    pub leases: BTreeMap<String, Ipv4Addr>,
    /// Container id → the names its address answers to on this network (its name, its
    /// `--network-alias`es, its short id), first its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub names: BTreeMap<String, Vec<String>>,
}

/// `boxr network create` options.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub internal: bool,
}

/// A container's place on a network, journaled before its resources exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub container: String,
    pub network: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mac: String,
    /// The host end of the veth pair.
    pub veth: String,
    /// The bind mount that keeps the container's network namespace.
    pub netns: PathBuf,
    /// The inode of the network namespace boxr ran in when it made the veth (a later command
    /// in another namespace must not delete a namesake there).
    pub host_netns: u64,
    /// The interface in the container: `eth0` on its first network, then `eth1`, … for the
    /// networks it is connected to later (`network connect`, a second `--network`).
    #[serde(default = "first_interface")]
    pub interface: String,
}

fn first_interface() -> String {
    "eth0".to_owned()
}

/// The networks directory, made on first use.
fn dir(store: &Store) -> Result<PathBuf, NetError> {
    let d = store.networks_dir();
    // Not the store itself: a late `__net-release` of a store removed meanwhile must not make
    // it again.
    match fs::create_dir(&d) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(io(format!("create {}", d.display()))(e))
        }
        _ => Ok(d),
    }
}

/// Holds `networks/.lock` exclusively while a network or a lease changes.
fn lock(store: &Store) -> Result<Flock<File>, NetError> {
    let p = dir(store)?.join(".lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io(format!("open {}", p.display())))?;
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| io(format!("lock {}", p.display()))(e.into()))
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 128
}

fn path(store: &Store, name: &str) -> Result<PathBuf, NetError> {
    if !valid_name(name) {
        return Err(NetError::BadName(name.to_owned()));
    }
    Ok(store.networks_dir().join(format!("{name}.json")))
}

fn load(store: &Store, name: &str) -> Result<Network, NetError> {
    let p = path(store, name)?;
    let bytes = fs::read(&p).map_err(|_| NetError::NotFound(name.to_owned()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        io(format!("read {}", p.display()))(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    })
}

fn save(store: &Store, net: &Network) -> Result<(), NetError> {
    let p = path(store, &net.name)?;
    let tmp = p.with_extension(format!("json.tmp-{}", std::process::id()));
    fs::write(
        &tmp,
        serde_json::to_vec_pretty(net).expect("a network serializes"),
    )
    .and_then(|()| fs::rename(&tmp, &p))
    .map_err(io(format!("write {}", p.display())))
}

/// Every network, by name.
pub fn list(store: &Store) -> Result<Vec<Network>, NetError> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(store.networks_dir()) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_suffix(".json")
            && let Ok(net) = load(store, n)
        {
            out.push(net);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One network (the default one is made on first use).
pub fn inspect(store: &Store, name: &str) -> Result<Network, NetError> {
    if name == DEFAULT {
        let _l = lock(store)?;
        return ensure_default(store);
    }
    load(store, name)
}

/// The subnets a new network must not overlap: other networks' and the host's routes other
/// than the default route (and other than boxr's own bridges').
fn taken(store: &Store) -> Result<Vec<(String, Subnet)>, NetError> {
    let mut out: Vec<(String, Subnet)> = list(store)?
        .into_iter()
        .map(|n| (format!("network `{}`", n.name), n.subnet))
        .collect();
    let mut nl = Netlink::open().map_err(io("open a netlink socket"))?;
    for (dest, len, _) in nl.routes().map_err(io("read the routes"))? {
        if len == 0 {
            continue;
        }
        if let Some(s) = Subnet::new(dest, len)
            && !out.iter().any(|(_, o)| *o == s)
        {
            out.push((format!("the host route {s}"), s));
        }
    }
    Ok(out)
}

/// Docker's pools: 172.17.0.0/16 for the default network, then 172.18–31.0.0/16, then
/// 192.168.0.0/20 blocks.
fn pool() -> impl Iterator<Item = Subnet> {
    (18..=31)
        .map(|b| Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16))
        .chain((0..16).map(|i| Subnet::new(Ipv4Addr::new(192, 168, i * 16, 0), 20)))
        .flatten()
}

/// `boxr network create`.
pub fn create(store: &Store, opts: &CreateOptions) -> Result<Network, NetError> {
    let _l = lock(store)?;
    create_locked(store, opts)
}

fn create_locked(store: &Store, opts: &CreateOptions) -> Result<Network, NetError> {
    let p = path(store, &opts.name)?;
    if p.exists() {
        return Err(NetError::Exists(opts.name.clone()));
    }
    let taken = taken(store)?;
    let subnet = match &opts.subnet {
        Some(s) => {
            let s: Subnet = s.parse().map_err(|b: crate::values::Bad| NetError::Value {
                reason: b.reason,
                help: b.help,
            })?;
            if let Some((what, o)) = taken.iter().find(|(_, o)| o.overlaps(&s)) {
                return Err(NetError::Subnet(format!(
                    "--subnet {s} overlaps {what} ({o})"
                )));
            }
            s
        }
        None if opts.name == DEFAULT => {
            Subnet::new(Ipv4Addr::new(172, 17, 0, 0), 16).expect("a valid subnet")
        }
        None => pool()
            .find(|s| !taken.iter().any(|(_, o)| o.overlaps(s)))
            .ok_or_else(|| NetError::Subnet("every subnet of the pool is taken".into()))?,
    };
    let gateway = match &opts.gateway {
        Some(g) => {
            let g: Ipv4Addr = g
                .parse()
                .map_err(|_| NetError::Subnet(format!("--gateway {g}: not an IPv4 address")))?;
            if !subnet.contains(g) || g == subnet.base() || g == subnet.broadcast() {
                return Err(NetError::Subnet(format!(
                    "--gateway {g} is not a host address of {subnet}"
                )));
            }
            g
        }
        None => subnet.host(1).expect("a /30 or larger has a first host"),
    };
    let id = crate::digest::Digest::of(
        format!(
            "{}\n{}\n{}",
            opts.name,
            crate::time::now_rfc3339_nanos(),
            std::process::id()
        )
        .as_bytes(),
    )
    .hex()
    .to_owned();
    let bridge = if opts.name == DEFAULT {
        DEFAULT_BRIDGE.to_owned()
    } else {
        format!("br-{}", &id[..12])
    };
    let net = Network {
        name: opts.name.clone(),
        id,
        subnet,
        gateway,
        internal: opts.internal,
        bridge,
        created: crate::time::now_rfc3339_nanos(),
        leases: BTreeMap::new(),
        names: BTreeMap::new(),
    };
    save(store, &net)?;
    Ok(net)
}

fn ensure_default(store: &Store) -> Result<Network, NetError> {
    match load(store, DEFAULT) {
        Err(NetError::NotFound(_)) => create_locked(
            store,
            &CreateOptions {
                name: DEFAULT.into(),
                ..CreateOptions::default()
            },
        ),
        r => r,
    }
}

/// What [`reload`] restored.
#[derive(Debug, Default, PartialEq)]
pub struct Reloaded {
    /// Networks whose rules were made again.
    pub networks: Vec<String>,
    /// Containers whose published ports were put back.
    pub published: usize,
}

/// `boxr network reload` (and, when needed, every `boxr network` command): makes the rules of
/// every network whose bridge exists here again, and puts back the published ports of running
/// containers, if a firewall reload took them (`force`: whatever is there).
pub fn reload(store: &Store, force: bool) -> Result<Reloaded, NetError> {
    let _l = lock(store)?;
    rootless::within(store, rootless::Need::Existing, || {
        reload_here(store, force)
    })
}

fn reload_here(store: &Store, force: bool) -> Result<Reloaded, NetError> {
    let mut out = Reloaded::default();
    let mut nl = Netlink::open().map_err(io("open a netlink socket"))?;
    for net in list(store)? {
        let here = nl
            .link_index(&net.bridge)
            .map_err(io("read the links"))?
            .is_some();
        if !here || (!force && firewall::present(&net)) {
            continue;
        }
        firewall::apply(&net)?;
        open_iptables(store, &net)?;
        out.networks.push(net.name);
    }
    if !out.networks.is_empty() {
        out.published = publish::restore(store);
    }
    Ok(out)
}

/// `boxr network prune`: removes every network but `bridge` that no container is on; returns
/// their names.
pub fn prune(store: &Store) -> Result<Vec<String>, NetError> {
    let mut removed = Vec::new();
    for n in list(store)? {
        if n.name != DEFAULT && n.leases.is_empty() {
            match remove(store, &n.name) {
                Ok(()) => removed.push(n.name),
                // Taken by a container in the meantime.
                Err(NetError::InUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// `boxr network rm`: refused while containers are on it; removes its bridge and rules.
pub fn remove(store: &Store, name: &str) -> Result<(), NetError> {
    if name == DEFAULT {
        return Err(NetError::Predefined(name.to_owned()));
    }
    let _l = lock(store)?;
    rootless::within(store, rootless::Need::Existing, || {
        let net = endpoint::reap_stale(store, load(store, name)?);
        if !net.leases.is_empty() {
            return Err(NetError::InUse {
                network: name.to_owned(),
                containers: net.leases.keys().map(|id| id[..12].to_owned()).collect(),
            });
        }
        remove_bridge(store, &net)
    })?;
    let p = path(store, name)?;
    fs::remove_file(&p).map_err(io(format!("remove {}", p.display())))
}

#[derive(Serialize, Deserialize)]
struct BridgeEntry {
    bridge: String,
    host_netns: u64,
    /// Accept rules were inserted into iptables' FORWARD chain (its policy is DROP).
    #[serde(default)]
    iptables: bool,
}

/// Whether a container that still exists has an endpoint (journal `netns-*`): then the rootless
/// network namespace (see `rootless`) must stay.
fn endpoints_in_use(store: &Store) -> bool {
    let Ok(rd) = fs::read_dir(store.journal_dir()) else {
        return false;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("netns-"))
        .filter_map(|e| fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice::<Endpoint>(&b).ok())
        .any(|ep| store.container_dir(&ep.container).exists())
}

/// The inode of the network namespace this process runs in.
fn own_netns() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/thread-self/ns/net").map_or(0, |m| m.ino())
}

fn remove_bridge(store: &Store, net: &Network) -> Result<(), NetError> {
    let entry = store.journal_entry("bridge", &net.name);
    firewall::remove(&net.bridge);
    if fs::read(&entry)
        .ok()
        .and_then(|b| serde_json::from_slice::<BridgeEntry>(&b).ok())
        .is_some_and(|b| b.iptables)
    {
        firewall::close_iptables_forward(&net.bridge);
    }
    let mut nl = Netlink::open().map_err(io("open a netlink socket"))?;
    nl.del_link(&net.bridge)
        .map_err(io(format!("delete the bridge {}", net.bridge)))?;
    let _ = fs::remove_file(entry);
    Ok(())
}

/// The bridge of `net`, made (with its address, its rules and forwarding) if it is not there.
fn ensure_bridge(store: &Store, net: &Network, nl: &mut Netlink) -> Result<u32, NetError> {
    if let Some(i) = nl.link_index(&net.bridge).map_err(io("read the links"))? {
        return Ok(i);
    }
    let entry = store.journal_entry("bridge", &net.name);
    let record = BridgeEntry {
        bridge: net.bridge.clone(),
        host_netns: own_netns(),
        iptables: false,
    };
    fs::write(&entry, serde_json::to_vec(&record).expect("serializes"))
        .map_err(io(format!("write {}", entry.display())))?;
    let mac = mac_of(&net.id, net.gateway);
    nl.add_link(
        NewLink::Bridge {
            name: &net.bridge,
            mac,
        },
        None,
    )
    .map_err(io(format!("create the bridge {}", net.bridge)))?;
    let index = nl
        .link_index(&net.bridge)
        .map_err(io("read the links"))?
        .ok_or_else(|| io("find the new bridge")(std::io::ErrorKind::NotFound.into()))?;
    nl.add_address(index, net.gateway, net.subnet.prefix())
        .map_err(io(format!("address the bridge {}", net.bridge)))?;
    nl.set_up(index, None)
        .map_err(io(format!("set {} up", net.bridge)))?;
    // Forwarding in the namespace boxr runs in (as Docker does), loose reverse-path filtering on
    // the bridge (traffic DNATed to it comes back on another interface).
    let _ = fs::write("/proc/sys/net/ipv4/ip_forward", "1");
    let _ = fs::write(
        format!("/proc/sys/net/ipv4/conf/{}/rp_filter", net.bridge),
        "2",
    );
    firewall::apply(net)?;
    open_iptables(store, net)?;
    Ok(index)
}

/// Opens iptables' FORWARD chain for `net`'s bridge if its policy drops, and records that in
/// the bridge's journal entry.
fn open_iptables(store: &Store, net: &Network) -> Result<(), NetError> {
    if !firewall::open_iptables_forward(&net.bridge) {
        return Ok(());
    }
    let entry = store.journal_entry("bridge", &net.name);
    let record = BridgeEntry {
        bridge: net.bridge.clone(),
        host_netns: own_netns(),
        iptables: true,
    };
    fs::write(&entry, serde_json::to_vec(&record).expect("serializes"))
        .map_err(io(format!("write {}", entry.display())))
}

/// A locally administered MAC address derived from `seed` and `ip` (stable per address, as
/// Docker's 02:42:ac:11:00:02 are).
fn mac_of(seed: &str, ip: Ipv4Addr) -> [u8; 6] {
    let h = crate::digest::Digest::of(seed.as_bytes()).hex().to_owned();
    let o = ip.octets();
    let first = u8::from_str_radix(&h[..2], 16).unwrap_or(0x42);
    [0x02, first, o[0], o[1], o[2], o[3]]
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// `gc`: the bridge and rules of a network whose file is gone (a boxr killed in `network rm`).
/// `Ok(true)` when the entry may go.
pub fn clean_bridge_entry(store: &Store, entry: &[u8]) -> Result<bool, NetError> {
    let Ok(b) = serde_json::from_slice::<BridgeEntry>(entry) else {
        return Ok(true);
    };
    let in_use = list(store)?.iter().any(|n| n.bridge == b.bridge);
    if in_use {
        return Ok(false);
    }
    rootless::within(store, rootless::Need::Existing, || {
        if b.host_netns == own_netns() {
            firewall::remove(&b.bridge);
            if b.iptables {
                firewall::close_iptables_forward(&b.bridge);
            }
            let mut nl = Netlink::open().map_err(io("open a netlink socket"))?;
            nl.del_link(&b.bridge)
                .map_err(io(format!("delete the bridge {}", b.bridge)))?;
        }
        Ok(())
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_follows_dockers_order() {
        let p: Vec<String> = pool().take(2).map(|s| s.to_string()).collect();
        assert_eq!(p, ["172.18.0.0/16", "172.19.0.0/16"]);
        assert_eq!(pool().nth(14).unwrap().to_string(), "192.168.0.0/20");
    }

    #[test]
    fn names_and_macs() {
        assert!(valid_name("my-net_1.x"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a/b"));
        let m = mac_of("abc", Ipv4Addr::new(172, 18, 0, 2));
        assert_eq!(m[0], 0x02, "locally administered, unicast");
        assert_eq!(&m[2..], &[172, 18, 0, 2]);
        assert_eq!(mac_text(m).len(), 17);
    }
}
