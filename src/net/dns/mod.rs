//! The resolver of a network: one process per network (`boxr __dns STORE_ROOT NETWORK`), on the
//! network's gateway address, UDP and TCP port 53, started with the network's first container
//! and stopped with its last. Its containers' /etc/resolv.conf names it.
//!
//! It answers for the names of the network's containers (their names, `--network-alias`es and
//! short ids, bare or as `NAME.NETWORK`): A at once, NODATA (not NXDOMAIN) for AAAA and other
//! types of a known name (musl drops the A answer of a name whose AAAA query failed), PTR for
//! their addresses, NXDOMAIN at once for unknown names of the network's zone. Everything else
//! goes to the host's resolvers, all queried at once (the first answer wins); a loopback
//! resolver of the host, such as systemd-resolved's 127.0.0.53, is reachable since the
//! resolver runs on the host side. The default network `bridge` has no names (as Docker's): its
//! resolver only forwards; an internal network's does not forward.
//!
//! A container on several networks is answered the names of each of them (known by the source
//! address of its query): see [`State::seen`].
//!
//! Names are read again from the network's file whenever it changed (its inode or mtime),
//! checked at each query: the sockets are never rebound, and answers carry a short TTL.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use serde::{Deserialize, Serialize};

use super::{NetError, Network, io, own_netns};
use crate::store::Store;

mod answer;
use answer::{Names, local_reply, servfail};

/// The hidden mode of the boxr binary that runs a network's resolver.
pub const ARG: &str = "__dns";
/// How long one forwarded query waits for the host's resolvers, per attempt (two attempts).
const UPSTREAM_WAIT: Duration = Duration::from_millis(2500);

/// A running resolver, as journaled (`journal/dns-<network>.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    network: String,
    pid: i32,
    start: Option<u64>,
    host_netns: u64,
}

/// The host's resolver configuration: the file `BOXR_RESOLV_CONF` names, else
/// /etc/resolv.conf (e.g. `/run/systemd/resolve/resolv.conf` on a host whose /etc/resolv.conf
/// is systemd-resolved's stub and whose containers should see the real servers' search list).
pub fn host_resolv_conf() -> String {
    let path = std::env::var_os("BOXR_RESOLV_CONF")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/etc/resolv.conf".into());
    fs::read_to_string(path).unwrap_or_default()
}

/// The /etc/resolv.conf of a container (or build step) on a network whose gateway is
/// `gateway`: the network's resolver as its only name server, with the host's search domains
/// and options.
pub fn resolv_conf_for(gateway: Ipv4Addr) -> String {
    let kept: String = host_resolv_conf()
        .lines()
        .filter(|l| l.split_whitespace().next() != Some("nameserver"))
        .map(|l| format!("{l}\n"))
        .collect();
    format!("{kept}nameserver {gateway}\n")
}

/// The one upstream of a resolver started in the rootless network namespace (pasta's
/// forwarding address there) instead of the host's resolvers.
const UPSTREAM_ENV: &str = "BOXR_DNS_UPSTREAM";

/// The host's resolvers: `nameserver` lines of [`host_resolv_conf`], without `skip` (the
/// resolver's own address).
fn upstreams(skip: Ipv4Addr) -> Vec<SocketAddr> {
    if let Some(a) = std::env::var(UPSTREAM_ENV)
        .ok()
        .and_then(|a| a.parse::<IpAddr>().ok())
    {
        return vec![SocketAddr::new(a, 53)];
    }
    host_resolv_conf()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then(|| w.next()).flatten()
        })
        .filter_map(|a| a.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|a| *a != IpAddr::V4(skip))
        .map(|a| SocketAddr::new(a, 53))
        .collect()
}

/// Sends `query` to every upstream at once over UDP; the first answer with its id.
fn forward_udp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    let id = query.get(..2)?;
    let sockets: Vec<UdpSocket> = upstreams
        .iter()
        .filter_map(|u| {
            let local: SocketAddr = match u {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let s = UdpSocket::bind(local).ok()?;
            s.connect(u).ok()?;
            s.set_nonblocking(true).ok()?;
            Some(s)
        })
        .collect();
    if sockets.is_empty() {
        return None;
    }
    let mut buf = vec![0u8; 65535];
    for _attempt in 0..2 {
        for s in &sockets {
            let _ = s.send(query);
        }
        let until = Instant::now() + UPSTREAM_WAIT;
        while Instant::now() < until {
            let mut fds: Vec<nix::poll::PollFd> = sockets
                .iter()
                .map(|s| {
                    nix::poll::PollFd::new(
                        std::os::fd::AsFd::as_fd(s),
                        nix::poll::PollFlags::POLLIN,
                    )
                })
                .collect();
            let left = until.saturating_duration_since(Instant::now());
            let timeout = nix::poll::PollTimeout::try_from(left.as_millis().min(10_000) as i32 + 1)
                .unwrap_or(nix::poll::PollTimeout::ZERO);
            if nix::poll::poll(&mut fds, timeout).is_err() {
                continue;
            }
            for s in &sockets {
                if let Ok(n) = s.recv(&mut buf)
                    && buf.get(..2) == Some(id)
                {
                    return Some(buf[..n].to_vec());
                }
            }
        }
    }
    None
}

/// Forwards a TCP query to the first upstream that answers over TCP.
fn forward_tcp(query: &[u8], upstreams: &[SocketAddr]) -> Option<Vec<u8>> {
    for u in upstreams {
        let Ok(mut s) = TcpStream::connect_timeout(u, UPSTREAM_WAIT) else {
            continue;
        };
        let _ = s.set_read_timeout(Some(UPSTREAM_WAIT * 2));
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(query);
        if s.write_all(&framed).is_err() {
            continue;
        }
        if let Some(reply) = read_framed(&mut s) {
            return Some(reply);
        }
    }
    None
}

fn read_framed(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut msg).ok()?;
    Some(msg)
}

type Stamp = (u64, i64, i64);

fn stamp_of(p: &Path) -> Option<Stamp> {
    fs::metadata(p)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec()))
}

fn read_network(p: &Path) -> Option<Network> {
    fs::read(p)
        .ok()
        .and_then(|b| serde_json::from_slice::<Network>(&b).ok())
}

/// The resolver's view of its network, read again when the network's file changes, and of the
/// other networks, read when a container of this one asks (a container on several networks
/// resolves the names of each, as with Docker's and podman's resolvers).
struct State {
    file: PathBuf,
    stamp: Option<Stamp>,
    names: Names,
    gateway: Ipv4Addr,
    /// Other networks' files → their names, as last read.
    others: BTreeMap<PathBuf, (Stamp, Names)>,
}

impl State {
    fn refresh(&mut self) -> bool {
        let Some(stamp) = stamp_of(&self.file) else {
            return false;
        };
        if self.stamp != Some(stamp)
            && let Some(net) = read_network(&self.file)
        {
            self.names = Names::of(&net);
            self.stamp = Some(stamp);
            return !net.leases.is_empty();
        }
        true
    }

    /// The names the container at `from` sees: this network's, then those of every other
    /// network it is on.
    fn seen(&mut self, from: IpAddr) -> Vec<Names> {
        self.refresh();
        let mut out = vec![self.names.clone()];
        let IpAddr::V4(from) = from else {
            return out;
        };
        let Some(id) = self.names.members.get(&from).cloned() else {
            return out;
        };
        let Some(dir) = self.file.parent() else {
            return out;
        };
        let files: Vec<PathBuf> = fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json") && *p != self.file)
            .collect();
        self.others.retain(|p, _| files.contains(p));
        for p in files {
            let Some(stamp) = stamp_of(&p) else {
                continue;
            };
            if self.others.get(&p).is_none_or(|(s, _)| *s != stamp)
                && let Some(net) = read_network(&p)
            {
                self.others.insert(p.clone(), (stamp, Names::of(&net)));
            }
            if let Some((_, names)) = self.others.get(&p)
                && names.members.values().any(|m| *m == id)
            {
                out.push(names.clone());
            }
        }
        out
    }
}

/// Answers one query (bytes in, bytes out) from `from`; `tcp` says how to forward it.
fn handle(state: &Mutex<State>, query: &[u8], from: IpAddr, tcp: bool) -> Option<Vec<u8>> {
    let (seen, gateway) = {
        let mut s = state.lock().ok()?;
        (s.seen(from), s.gateway)
    };
    let msg = match Message::from_vec(query) {
        Ok(m) if m.metadata.message_type == MessageType::Query => m,
        Ok(_) => return None,
        Err(_) => {
            // Answer FORMERR when at least the id is there.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    if let Some(reply) = local_reply(&seen, &msg) {
        return reply.to_vec().ok();
    }
    let up = upstreams(gateway);
    let forwarded = if tcp {
        forward_tcp(query, &up)
    } else {
        forward_udp(query, &up)
    };
    forwarded.or_else(|| servfail(query))
}

fn spawn(f: impl FnOnce() + Send + 'static) {
    let _ = std::thread::Builder::new()
        .name("boxr-dns".into())
        .stack_size(256 * 1024)
        .spawn(f);
}

fn serve_udp(sock: Arc<UdpSocket>, state: Arc<Mutex<State>>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (sock, state) = (sock.clone(), state.clone());
        // A forwarded query waits for the host's resolvers: not in the way of the next one.
        spawn(move || {
            if let Some(reply) = handle(&state, &query, from.ip(), false) {
                let _ = sock.send_to(&reply, from);
            }
        });
    }
}

fn serve_tcp(listener: TcpListener, state: Arc<Mutex<State>>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else {
            continue;
        };
        let state = state.clone();
        spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let Ok(from) = conn.peer_addr() else {
                return;
            };
            while let Some(query) = read_framed(&mut conn) {
                let Some(reply) = handle(&state, &query, from.ip(), true) else {
                    break;
                };
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if conn.write_all(&framed).is_err() {
                    break;
                }
            }
        });
    }
}

/// `boxr __dns STORE_ROOT NETWORK`: the resolver's entry point, if this process was started as
/// it. It reports `ok` (or why not) on stdout once it serves, then runs until SIGTERM, or
/// until its network is gone or has no container left.
pub fn mode() -> Option<i32> {
    let args: Vec<String> = std::env::args().take(4).collect();
    if args.get(1).is_none_or(|a| a != ARG) {
        return None;
    }
    let (Some(root), Some(name)) = (args.get(2), args.get(3)) else {
        eprintln!("usage: boxr {ARG} STORE_ROOT NETWORK (run by boxr)");
        return Some(2);
    };
    let mut report = std::io::stdout();
    match serve(Path::new(root), name) {
        Ok(wait) => {
            let _ = writeln!(report, "ok");
            let _ = report.flush();
            // The spawner is gone once it read the line: stdout goes nowhere from now on.
            if let Ok(null) = fs::File::options().write(true).open("/dev/null") {
                let _ = nix::unistd::dup2_stdout(null);
            }
            wait();
            Some(0)
        }
        Err(e) => {
            let _ = writeln!(report, "{e}");
            Some(1)
        }
    }
}

/// Binds the resolver's sockets and starts serving; returns what waits for its end.
fn serve(root: &Path, name: &str) -> Result<impl FnOnce(), NetError> {
    let sys = |what: &'static str| move |e: nix::errno::Errno| io(what)(e.into());
    let _ = nix::unistd::setsid();
    let mut signals = nix::sys::signal::SigSet::empty();
    for s in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        signals.add(s);
    }
    signals.thread_block().map_err(sys("block signals"))?;
    // Non-blocking: read after every poll, which also wakes every two seconds without one.
    let sigfd = nix::sys::signalfd::SignalFd::with_flags(
        &signals,
        nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
    )
    .map_err(sys("make a signalfd"))?;
    let store = Store::open(root, crate::store::Access::Shared)?;
    let file = super::path(&store, name)?;
    let journal = store.journal_entry("dns", name);
    drop(store);
    let net: Network = fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| NetError::NotFound(name.to_owned()))?;
    let addr = SocketAddr::new(IpAddr::V4(net.gateway), 53);
    let udp = UdpSocket::bind(addr).map_err(io(format!("listen on {addr}/udp")))?;
    let tcp = TcpListener::bind(addr).map_err(io(format!("listen on {addr}/tcp")))?;
    let pid = std::process::id() as i32;
    let entry = Entry {
        network: name.to_owned(),
        pid,
        start: crate::sandbox::process_start_time(pid),
        host_netns: own_netns(),
    };
    fs::write(&journal, serde_json::to_vec(&entry).expect("serializes"))
        .map_err(io(format!("write {}", journal.display())))?;
    let state = Arc::new(Mutex::new(State {
        file,
        stamp: None,
        names: Names::of(&net),
        gateway: net.gateway,
        others: BTreeMap::new(),
    }));
    let udp = Arc::new(udp);
    let (s1, s2) = (state.clone(), state.clone());
    spawn(move || serve_udp(udp, s1));
    spawn(move || serve_tcp(tcp, s2));
    Ok(move || {
        loop {
            // A signal, or every two seconds: is there still a network with containers?
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&sigfd),
                nix::poll::PollFlags::POLLIN,
            )];
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(2000u16));
            if matches!(sigfd.read_signal(), Ok(Some(_))) {
                break;
            }
            let live = state.lock().map(|mut s| s.refresh()).unwrap_or(false);
            if !live {
                break;
            }
        }
        if fs::read(&journal)
            .ok()
            .and_then(|b| serde_json::from_slice::<Entry>(&b).ok())
            .is_some_and(|e| e.pid == pid)
        {
            let _ = fs::remove_file(&journal);
        }
    })
}

/// Whether the journaled resolver is this process still.
fn alive(e: &Entry) -> bool {
    e.start.is_some() && crate::sandbox::process_start_time(e.pid) == e.start
}

fn read_entry(store: &Store, network: &str) -> Option<Entry> {
    fs::read(store.journal_entry("dns", network))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Starts the resolver of `net` unless it runs (called under the networks lock, with the
/// network's bridge and gateway address up).
pub(super) fn ensure(store: &Store, net: &Network) -> Result<(), NetError> {
    if read_entry(store, &net.name).is_some_and(|e| alive(&e) && e.host_netns == own_netns()) {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map(|e| e.with_file_name("boxr"))
        .map_err(io("find the boxr binary"))?;
    let mut command = std::process::Command::new(&exe);
    if crate::rootless::active() {
        // In the rootless network namespace, the host's resolvers are pasta's to reach.
        command.env(UPSTREAM_ENV, super::pasta::RESOLVER.to_string());
    }
    let mut child = command
        .arg(ARG)
        .arg(store.root())
        .arg(&net.name)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(io(format!("start the resolver of {}", net.name)))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    if line.trim() == "ok" {
        return Ok(());
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(NetError::Resolver {
        network: net.name.clone(),
        message: if line.trim().is_empty() {
            "it exited".into()
        } else {
            line.trim().to_owned()
        },
    })
}

/// Stops the resolver of network `name` (its last container went), and waits for it.
pub(super) fn stop(store: &Store, name: &str) {
    let Some(e) = read_entry(store, name) else {
        return;
    };
    if alive(&e) && e.host_netns == own_netns() {
        let pid = nix::unistd::Pid::from_raw(e.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let until = Instant::now() + Duration::from_secs(2);
        while alive(&e) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if alive(&e) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
    let _ = fs::remove_file(store.journal_entry("dns", name));
}

/// `gc`: a resolver whose network is gone or has no container. `Ok(true)` when the entry
/// may go.
pub fn clean_journal_entry(store: &Store, entry: &[u8]) -> Result<bool, NetError> {
    let Ok(e) = serde_json::from_slice::<Entry>(entry) else {
        return Ok(true);
    };
    let keep = super::load(store, &e.network).is_ok_and(|n| !n.leases.is_empty());
    if keep && alive(&e) {
        return Ok(false);
    }
    super::rootless::within(store, super::rootless::Need::Existing, || {
        stop(store, &e.network);
        Ok(())
    })?;
    Ok(true)
}
