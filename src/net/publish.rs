//! A running container's published ports: the host sockets that reserve them, their entries
//! in the port maps (DNAT from other hosts, from containers and from the host's own
//! addresses), and the user-space proxy for loopback (127.0.0.1 and ::1, which DNAT leaves
//! alone so that `route_localnet` stays off) and IPv6.
//!
//! A [`Publication`] lives in the process that lives as long as the container: the monitor of
//! a detached container, or `boxr run` itself in the foreground. Each published port is held
//! by a bound socket (as docker-proxy holds it), so no host process can take it while the
//! container runs, and a taken port fails the start with an error that names its holder.
//! The map entries are journaled (`journal/ports-<id>`, with the holder's pid) before they
//! exist: `rm` and `gc` remove those of a holder killed with -9.
//!
//! Rootless, the container's address is in the user's rootless network namespace, which the
//! host's rules cannot reach: there are no map entries, and the proxy serves every port,
//! connecting from a thread that joined that namespace.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, listen, setsockopt,
    socket, sockopt,
};
use serde::{Deserialize, Serialize};

use super::firewall::{self, Element};
use super::ports::{Proto, Publish, Published};
use super::{Endpoint, NetError, io, lock, own_netns};
use crate::store::Store;

/// The ports a container asked for (`-p`, `-P`), in its directory.
pub const REQUESTS: &str = "ports.json";
/// The ports it holds while it runs, in its directory (read by `port`, `ps`, `inspect`).
pub const PUBLISHED: &str = "published.json";
/// The container's endpoint, in its directory (written when it joined its network).
pub const ENDPOINT: &str = "network.json";

/// How long a UDP client's flow is kept without traffic (docker-proxy's 90 s).
const UDP_IDLE: Duration = Duration::from_secs(90);

#[derive(Serialize, Deserialize)]
struct JournalEntry {
    /// The network namespace the entries were added in.
    host_netns: u64,
    /// The process that holds them (the monitor, or a foreground `boxr run`) and its start.
    holder: i32,
    holder_start: Option<u64>,
    elements: Vec<Element>,
}

/// A container's published ports, held until this value is dropped.
pub struct Publication {
    store_root: PathBuf,
    journal: PathBuf,
    published_file: PathBuf,
    elements: Vec<Element>,
    /// Clones of the sockets the proxy threads wait on, shut down to end them.
    sockets: Vec<OwnedFd>,
}

/// The ports the container in `dir` asked for (none if it asked for none).
pub fn requests(dir: &Path) -> Vec<Publish> {
    fs::read(dir.join(REQUESTS))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The ports the container in `dir` holds now.
pub fn published(dir: &Path) -> Vec<Published> {
    fs::read(dir.join(PUBLISHED))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records the ports a new container asks for, in its directory `dir`; refused on an internal
/// network (nothing gets in or out of one).
pub fn set_requests(
    store: &Store,
    dir: &Path,
    ep: &Endpoint,
    requests: &[Publish],
) -> Result<(), NetError> {
    if super::load(store, &ep.network).is_ok_and(|n| n.internal) {
        return Err(NetError::Subnet(format!(
            "network {} is internal: no port of its containers can be published",
            ep.network
        )));
    }
    let p = dir.join(REQUESTS);
    fs::write(&p, serde_json::to_vec(requests).expect("serializes"))
        .map_err(io(format!("write {}", p.display())))
}

/// A socket bound for one published port.
pub(super) enum Bound {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

fn bind_one(ip: IpAddr, port: u16, proto: Proto) -> std::io::Result<Bound> {
    let family = match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let kind = match proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = socket(family, kind, SockFlag::SOCK_CLOEXEC, None)?;
    if proto == Proto::Tcp {
        setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    match SocketAddr::new(ip, port) {
        SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => {
            // `::` is IPv6 only: 0.0.0.0 is bound on its own.
            setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            bind(fd.as_raw_fd(), &SockaddrIn6::from(a))?
        }
    }
    Ok(match proto {
        Proto::Tcp => {
            listen(&fd, Backlog::new(512).unwrap_or(Backlog::MAXCONN))?;
            Bound::Tcp(TcpListener::from(fd))
        }
        Proto::Udp => Bound::Udp(UdpSocket::from(fd)),
    })
}

impl Bound {
    fn port(&self) -> u16 {
        match self {
            Bound::Tcp(l) => l.local_addr().map_or(0, |a| a.port()),
            Bound::Udp(s) => s.local_addr().map_or(0, |a| a.port()),
        }
    }
}

/// Binds one request: its IPv4 (or given) address, and for "every address" also `::` on the
/// same port where the host has IPv6.
pub(super) fn bind_request(
    store: &Store,
    r: &Publish,
) -> Result<Vec<(Published, Bound)>, NetError> {
    let first = r.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let candidates: Vec<u16> = if r.host_ports == (0, 0) {
        vec![0]
    } else {
        (r.host_ports.0..=r.host_ports.1).collect()
    };
    let mut last = None;
    for port in candidates {
        match bind_one(first, port, r.proto) {
            Ok(b) => {
                let port = b.port();
                let mut out = vec![(
                    Published {
                        host_ip: first,
                        host_port: port,
                        container_port: r.container_port,
                        proto: r.proto,
                    },
                    b,
                )];
                if r.host_ip.is_none() {
                    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                    // No IPv6 on the host (or `::` of that port taken by another): IPv4 only.
                    if let Ok(b6) = bind_one(any6, port, r.proto) {
                        out.push((
                            Published {
                                host_ip: any6,
                                ..out[0].0.clone()
                            },
                            b6,
                        ));
                    }
                }
                return Ok(out);
            }
            Err(e) => last = Some((port, e)),
        }
    }
    let (port, e) = last.expect("at least one candidate");
    let shown = match first {
        IpAddr::V4(a) => format!("{a}:{port}/{}", r.proto),
        IpAddr::V6(a) => format!("[{a}]:{port}/{}", r.proto),
    };
    let unprivileged_start = || {
        fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    };
    let what = if e.raw_os_error() == Some(nix::libc::EACCES)
        && let Some(start) = unprivileged_start().filter(|s| port < *s)
    {
        format!(
            "{e}: a port below net.ipv4.ip_unprivileged_port_start ({start}) is root's \
             (rootless: publish a higher host port, e.g. -p 8080:{})",
            r.container_port
        )
    } else if r.host_ports.0 != r.host_ports.1 {
        format!(
            "no port of {}-{} is free ({shown}: {e})",
            r.host_ports.0, r.host_ports.1
        )
    } else {
        e.to_string()
    };
    Err(NetError::PortTaken {
        port: shown,
        reason: what,
        holder: holder(store, port, r.proto).unwrap_or_default(),
    })
}

/// Checks, before anything of a new container exists, that its fixed host ports are free.
pub fn check_free(store: &Store, requests: &[Publish]) -> Result<(), NetError> {
    for r in requests.iter().filter(|r| r.host_ports.0 != 0) {
        bind_request(store, r)?;
    }
    Ok(())
}

/// Who holds host port `port`: a container of the store (by name), or a process.
fn holder(store: &Store, port: u16, proto: Proto) -> Option<String> {
    if let Ok(rd) = fs::read_dir(store.containers_dir()) {
        for e in rd.flatten() {
            let held = published(&e.path())
                .iter()
                .any(|p| p.host_port == port && p.proto == proto);
            if held {
                let id = e.file_name().to_string_lossy().into_owned();
                return Some(format!("container {}", container_name(store, &id)));
            }
        }
    }
    let tables: &[&str] = match proto {
        Proto::Tcp => &["/proc/net/tcp", "/proc/net/tcp6"],
        Proto::Udp => &["/proc/net/udp", "/proc/net/udp6"],
    };
    let inode = tables.iter().find_map(|t| {
        let text = fs::read_to_string(t).ok()?;
        text.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            let listening = proto == Proto::Udp || f.get(3) == Some(&"0A");
            (u16::from_str_radix(local_port, 16).ok()? == port && listening)
                .then(|| f.get(9).map(|s| s.to_string()))
                .flatten()
        })
    })?;
    let target = format!("socket:[{inode}]");
    for p in fs::read_dir("/proc").ok()?.flatten() {
        let pid = p.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let owns = fds
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()));
        if owns {
            let comm = fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            return Some(format!("process {pid} ({})", comm.trim()));
        }
    }
    None
}

/// The name of container `id`, else its short id.
fn container_name(store: &Store, id: &str) -> String {
    fs::read_dir(store.names_dir())
        .ok()
        .and_then(|rd| {
            rd.flatten()
                .find(|e| fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == id))
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| id[..12.min(id.len())].to_owned())
}

/// The map entry of a published port (none for loopback and IPv6: the proxy serves those).
fn element(p: &Published, to: Ipv4Addr) -> Option<Element> {
    let value = format!("{to} . {}", p.container_port);
    match p.host_ip {
        IpAddr::V4(a) if a.is_unspecified() => Some(Element {
            map: "ports-any".into(),
            key: format!("{} . {}", p.proto, p.host_port),
            value,
        }),
        IpAddr::V4(a) if !a.is_loopback() => Some(Element {
            map: "ports-addr".into(),
            key: format!("{a} . {} . {}", p.proto, p.host_port),
            value,
        }),
        _ => None,
    }
}

impl Publication {
    /// Publishes the ports the container in `dir` asked for, if any: binds them, adds their
    /// map entries and starts the proxy. The container's endpoint must exist.
    pub fn open(store: &Store, dir: &Path) -> Result<Option<Publication>, NetError> {
        let requests = requests(dir);
        if requests.is_empty() {
            return Ok(None);
        }
        let ep: Endpoint = fs::read(dir.join(ENDPOINT))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                NetError::Subnet(
                    "published ports need a bridge network (--network bridge or NAME)".into(),
                )
            })?;
        let mut bound = Vec::new();
        for r in &requests {
            bound.extend(bind_request(store, r)?);
        }
        let published: Vec<Published> = bound.iter().map(|(p, _)| p.clone()).collect();
        // Rootless, the container's address is in the rootless network namespace, which no
        // rule of the host's reaches: the proxy serves every port, connecting from there.
        let inside = super::netns::rootless_namespace(store);
        let elements: Vec<Element> = match inside {
            Some(_) => Vec::new(),
            None => published.iter().filter_map(|p| element(p, ep.ip)).collect(),
        };
        let holder = std::process::id() as i32;
        let entry = JournalEntry {
            host_netns: own_netns(),
            holder,
            holder_start: crate::sandbox::process_start_time(holder),
            elements: elements.clone(),
        };
        let journal = store.journal_entry("ports", &ep.container);
        fs::write(&journal, serde_json::to_vec(&entry).expect("serializes"))
            .map_err(io(format!("write {}", journal.display())))?;
        let mut publication = Publication {
            store_root: store.root().to_owned(),
            journal,
            published_file: dir.join(PUBLISHED),
            elements,
            sockets: Vec::new(),
        };
        if inside.is_none() {
            let _l = lock(store)?;
            firewall::publish(&publication.elements).map_err(|source| NetError::Firewall {
                network: ep.network.clone(),
                source,
            })?;
        }
        // UDP flows of an earlier holder of these ports may still be tracked to an old
        // address: new datagrams would follow them.
        let udp: Vec<u16> = published
            .iter()
            .filter(|p| p.proto == Proto::Udp)
            .map(|p| p.host_port)
            .collect();
        if !udp.is_empty() && inside.is_none() {
            let _ = super::netlink::Conntrack::open().and_then(|mut c| c.flush_udp_ports(&udp));
        }
        fs::write(
            &publication.published_file,
            serde_json::to_vec(&published).expect("serializes"),
        )
        .map_err(io(format!(
            "write {}",
            publication.published_file.display()
        )))?;
        for (p, b) in bound {
            let to = SocketAddr::new(IpAddr::V4(ep.ip), p.container_port);
            let clone = match &b {
                Bound::Tcp(l) => l.try_clone().map(OwnedFd::from),
                Bound::Udp(s) => s.try_clone().map(OwnedFd::from),
            }
            .map_err(io("clone a published port's socket"))?;
            publication.sockets.push(clone);
            let ns = inside
                .as_ref()
                .map(File::try_clone)
                .transpose()
                .map_err(io("open the rootless network namespace"))?;
            // The proxy's thread joins it before it connects anything (its listening socket
            // stays the host's); its connection threads are born there.
            let join = move || {
                ns.as_ref().is_none_or(|ns| {
                    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
                })
            };
            match b {
                Bound::Tcp(l) => spawn(move || {
                    if join() {
                        serve_tcp(l, to)
                    }
                }),
                Bound::Udp(s) => spawn(move || {
                    if join() {
                        serve_udp(s, to)
                    }
                }),
            }
            .map_err(io("start the port proxy"))?;
        }
        Ok(Some(publication))
    }
}

impl Drop for Publication {
    /// Ends the proxy, takes the map entries out, and frees the ports.
    fn drop(&mut self) {
        for s in &self.sockets {
            let _ = nix::sys::socket::shutdown(s.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        }
        self.sockets.clear();
        if let Ok(store) = Store::open(&self.store_root, crate::store::Access::Shared)
            && let Ok(_l) = lock(&store)
        {
            firewall::unpublish(&self.elements);
        }
        let _ = fs::remove_file(&self.published_file);
        let _ = fs::remove_file(&self.journal);
    }
}

fn spawn(f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("boxr-proxy".into())
        .stack_size(128 * 1024)
        .spawn(f)
        .map(|_| ())
}

/// Accepts connections on `l` and joins each to the container's port `to`.
fn serve_tcp(l: TcpListener, to: SocketAddr) {
    loop {
        match l.accept() {
            Ok((client, _)) => {
                let _ = spawn(move || {
                    if let Ok(upstream) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) {
                        join(client, upstream);
                    }
                });
            }
            Err(e) => match e.raw_os_error() {
                // Out of descriptors for a moment: wait rather than spin.
                Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOBUFS) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Some(nix::libc::EINTR | nix::libc::ECONNABORTED) => {}
                // Shut down: the publication ended.
                _ => return,
            },
        }
    }
}

/// Copies both ways until both sides have finished sending; each end's finish is passed on
/// as a half-close.
fn join(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let back = spawn(move || pipe(b2, a2));
    pipe(a, b);
    // The other direction ends by itself: its reader sees the end or an error.
    let _ = back;
}

/// Copies `from` to `to` until `from` ends, then half-closes `to`: in the kernel with
/// splice(2) through a pipe (no copy through user space), else through a buffer.
fn pipe(from: TcpStream, to: TcpStream) {
    if let Err(e) = splice_all(&from, &to)
        && e == nix::errno::Errno::EINVAL
    {
        copy_all(&from, &to);
    }
    let _ = from.shutdown(Shutdown::Read);
    let _ = to.shutdown(Shutdown::Write);
}

fn splice_all(from: &TcpStream, to: &TcpStream) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, SpliceFFlags, fcntl, splice};
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    // A larger pipe moves more per call; the default (64 KiB) where that is not allowed.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(1 << 20));
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE;
    loop {
        let n = splice(from, None, &w, None, 1 << 20, flags)?;
        if n == 0 {
            return Ok(());
        }
        let mut left = n;
        while left > 0 {
            left -= splice(&r, None, to, None, left, flags)?;
        }
    }
}

fn copy_all(mut from: &TcpStream, mut to: &TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Relays datagrams between clients of `s` and the container's port `to`: one upstream
/// socket per client, forgotten after [`UDP_IDLE`] without an answer.
fn serve_udp(s: UdpSocket, to: SocketAddr) {
    let s = Arc::new(s);
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, client) = match s.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.raw_os_error() == Some(nix::libc::EINTR) => continue,
            Err(_) => return,
        };
        // A shut-down socket reads as empty datagrams from nowhere.
        if n == 0 && client.port() == 0 {
            return;
        }
        let existing = flows.lock().ok().and_then(|f| f.get(&client).cloned());
        let upstream = match existing {
            Some(u) => u,
            None => {
                let Ok(u) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
                    .and_then(|u| u.connect(to).map(|()| u))
                else {
                    continue;
                };
                let u = Arc::new(u);
                if let Ok(mut f) = flows.lock() {
                    f.insert(client, u.clone());
                }
                let (u2, s2, flows2) = (u.clone(), s.clone(), flows.clone());
                let _ = spawn(move || {
                    let _ = u2.set_read_timeout(Some(UDP_IDLE));
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = u2.recv(&mut buf) {
                        let _ = s2.send_to(&buf[..n], client);
                    }
                    if let Ok(mut f) = flows2.lock() {
                        f.remove(&client);
                    }
                });
                u
            }
        };
        let _ = upstream.send(&buf[..n]);
    }
}

/// `rm` and `gc`: the map entries of a holder that is gone (killed with -9). `Ok(true)` when
/// the entry may go.
pub fn clean_journal_entry(store: &Store, entry: &[u8]) -> Result<bool, NetError> {
    let Ok(e) = serde_json::from_slice::<JournalEntry>(entry) else {
        return Ok(true);
    };
    if e.holder_start.is_some() && crate::sandbox::process_start_time(e.holder) == e.holder_start {
        return Ok(false);
    }
    if e.host_netns == own_netns() {
        let _l = lock(store)?;
        firewall::unpublish(&e.elements);
    }
    Ok(true)
}

/// `network reload`: puts the map entries of every live holder in this network namespace back
/// (under the networks lock); returns how many containers'.
pub(super) fn restore(store: &Store) -> usize {
    let mut restored = 0;
    let Ok(rd) = fs::read_dir(store.journal_dir()) else {
        return 0;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("ports-") && name.ends_with(".json")) {
            continue;
        }
        let Some(entry) = fs::read(e.path())
            .ok()
            .and_then(|b| serde_json::from_slice::<JournalEntry>(&b).ok())
        else {
            continue;
        };
        let live = entry.holder_start.is_some()
            && crate::sandbox::process_start_time(entry.holder) == entry.holder_start;
        if live && entry.host_netns == own_netns() && firewall::publish(&entry.elements).is_ok() {
            restored += 1;
        }
    }
    restored
}

/// `rm`: what a killed holder of container `id`'s ports left.
pub(super) fn release(store: &Store, id: &str) {
    let path = store.journal_entry("ports", id);
    if let Ok(bytes) = fs::read(&path)
        && clean_journal_entry(store, &bytes).unwrap_or(false)
    {
        let _ = fs::remove_file(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_ipv6_are_left_to_the_proxy() {
        let to = Ipv4Addr::new(172, 17, 0, 2);
        let p = |ip: &str| Published {
            host_ip: ip.parse().unwrap(),
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp,
        };
        let any = element(&p("0.0.0.0"), to).unwrap();
        assert_eq!(
            (any.map.as_str(), any.key.as_str()),
            ("ports-any", "tcp . 8080")
        );
        assert_eq!(any.value, "172.17.0.2 . 80");
        let one = element(&p("10.1.2.3"), to).unwrap();
        assert_eq!(one.key, "10.1.2.3 . tcp . 8080");
        assert!(element(&p("127.0.0.1"), to).is_none());
        assert!(element(&p("::"), to).is_none());
    }

    #[test]
    fn a_taken_port_cannot_be_bound_again() {
        let first = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, Proto::Tcp).unwrap();
        let port = first.port();
        assert!(bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST), port, Proto::Tcp).is_err());
        let u = bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST), 0, Proto::Udp).unwrap();
        assert!(bind_one(IpAddr::V4(Ipv4Addr::LOCALHOST), u.port(), Proto::Udp).is_err());
    }
}
