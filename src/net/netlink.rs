//! A small synchronous rtnetlink client: links (bridge, veth), addresses and routes, in the
//! network namespace of the thread that opened it; and a ctnetlink one that forgets tracked
//! UDP flows of a published port (`netlink-packet-netfilter`, same project).
//!
//! Messages are the `netlink-packet-route` types, sent over a `netlink-sys` socket (both
//! maintained by the rust-netlink project, which rtnetlink is built on); boxr does not use
//! rtnetlink itself, which would bring an async runtime into a short-lived command for a handful
//! of requests. Every request asks for an acknowledgement and fails with the kernel's errno.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_core::{NetlinkDeserializable, NetlinkSerializable};
use netlink_packet_netfilter::conntrack::{
    ConntrackAttribute, ConntrackMessage, ProtoTuple, Protocol, Tuple,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{
    Socket, SocketAddr,
    protocols::{NETLINK_NETFILTER, NETLINK_ROUTE},
};

/// A link to create.
#[derive(Debug, Clone)]
pub enum NewLink<'a> {
    /// A bridge with a fixed MAC address (else it takes the lowest port's, and changes as ports
    /// come and go, which breaks the neighbours' ARP caches).
    Bridge { name: &'a str, mac: [u8; 6] },
    /// A veth pair: `name` here, `peer` created directly in the network namespace `peer_netns`
    /// (an open nsfs descriptor), with the MAC address `peer_mac`.
    Veth {
        name: &'a str,
        peer: &'a str,
        peer_netns: RawFd,
        peer_mac: [u8; 6],
    },
}

/// Sends `msg` with sequence number `seq` on `socket` and returns the replies up to the
/// acknowledgement (or the end of a dump); an error reply is the kernel's errno.
fn transact<M>(socket: &mut Socket, seq: u32, msg: M, flags: u16) -> io::Result<Vec<M>>
where
    M: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    NetlinkPayload<M>: From<M>,
{
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
    packet.finalize();
    let mut buf = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut buf);
    socket.send(&buf, 0)?;
    let mut replies = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<M>::deserialize(&data[offset..])
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            let len = reply.header.length as usize;
            if reply.header.sequence_number == seq {
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(replies),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    _ => {}
                }
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// A netlink socket of `protocol`, bound and talking to the kernel.
fn kernel_socket(protocol: isize) -> io::Result<Socket> {
    let mut socket = Socket::new(protocol)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    Ok(socket)
}

/// A ctnetlink socket (connection tracking), in the calling thread's network namespace: nft
/// cannot delete tracked connections.
pub struct Conntrack {
    socket: Socket,
    seq: u32,
}

impl Conntrack {
    pub fn open() -> io::Result<Conntrack> {
        Ok(Conntrack {
            socket: kernel_socket(NETLINK_NETFILTER)?,
            seq: 0,
        })
    }

    fn request(&mut self, msg: ConntrackMessage, flags: u16) -> io::Result<Vec<NetfilterMessage>> {
        self.seq += 1;
        let msg =
            NetfilterMessage::new(NetfilterHeader::new(NetfilterProtoFamily::IPv4, 0, 0), msg);
        transact(&mut self.socket, self.seq, msg, flags)
    }

    /// Forgets the tracked IPv4 UDP flows to any of `ports`: a port published again must not
    /// send datagrams where an earlier flow's NAT sent them. Returns how many went.
    pub fn flush_udp_ports(&mut self, ports: &[u16]) -> io::Result<usize> {
        let flows = self.request(ConntrackMessage::Get(Vec::new()), NLM_F_DUMP)?;
        let mut deleted = 0;
        for f in flows {
            let NetfilterMessageInner::Conntrack(ConntrackMessage::New(attrs)) = f.inner else {
                continue;
            };
            let Some(orig) = attrs.into_iter().find_map(|a| match a {
                ConntrackAttribute::CtaTupleOrig(t) => Some(t),
                _ => None,
            }) else {
                continue;
            };
            let proto: Vec<&ProtoTuple> = orig
                .iter()
                .filter_map(|t| match t {
                    Tuple::Proto(p) => Some(p.iter()),
                    _ => None,
                })
                .flatten()
                .collect();
            let udp = proto
                .iter()
                .any(|p| matches!(p, ProtoTuple::Protocol(Protocol::Udp)));
            let to_port = proto
                .iter()
                .any(|p| matches!(p, ProtoTuple::DestinationPort(d) if ports.contains(d)));
            if !(udp && to_port) {
                continue;
            }
            match self.request(
                ConntrackMessage::Delete(vec![ConntrackAttribute::CtaTupleOrig(orig)]),
                NLM_F_ACK,
            ) {
                Ok(_) => deleted += 1,
                // Gone by itself meanwhile.
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

/// An rtnetlink socket bound in the calling thread's network namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        Ok(Netlink {
            socket: kernel_socket(NETLINK_ROUTE)?,
            seq: 0,
        })
    }

    /// Sends `msg` and returns the replies up to the acknowledgement (or the end of a dump).
    fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        transact(&mut self.socket, self.seq, msg, flags)
    }

    /// The index of link `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK) {
            Ok(r) => Ok(r.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The MTU of link `index`.
    pub fn mtu(&mut self, index: u32) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let r = self.request(RouteNetlinkMessage::GetLink(msg), NLM_F_ACK)?;
        Ok(r.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(m),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Creates a link (`EEXIST` if one of that name exists).
    pub fn add_link(&mut self, link: NewLink, mtu: Option<u32>) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        match link {
            NewLink::Bridge { name, mac } => {
                msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
                msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
                msg.attributes
                    .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                        InfoKind::Bridge,
                    )]));
            }
            NewLink::Veth {
                name,
                peer,
                peer_netns,
                peer_mac,
            } => {
                let mut p = LinkMessage::default();
                p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
                p.attributes.push(LinkAttribute::NetNsFd(peer_netns));
                p.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
                if let Some(m) = mtu {
                    p.attributes.push(LinkAttribute::Mtu(m));
                }
                msg.attributes.push(LinkAttribute::IfName(name.to_owned()));
                msg.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
                ]));
            }
        }
        if let Some(m) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(m));
        }
        self.request(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Sets link `index` up, and with `controller` makes it a port of that bridge.
    pub fn set_up(&mut self, index: u32, controller: Option<u32>) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if let Some(c) = controller {
            msg.attributes.push(LinkAttribute::Controller(c));
        }
        self.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Lets bridge port `index` send a frame back out the port it came in by (a container
    /// that reaches its own published port through the host: with `br_netfilter` loaded, the
    /// bridge itself turns the DNATed frame around).
    pub fn set_hairpin(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_ACK)
            .map(drop)
    }

    /// Deletes link `name`; false if there was none.
    pub fn del_link(&mut self, name: &str) -> io::Result<bool> {
        let Some(index) = self.link_index(name)? else {
            return Ok(false);
        };
        self.del_link_index(index)
    }

    /// Deletes link `index` (`false`: it is gone already). A link made later under the same
    /// name has another index, so a late deletion cannot take it.
    pub fn del_link_index(&mut self, index: u32) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(msg), NLM_F_ACK) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(nix::libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `ip/prefix` to link `index`.
    pub fn add_address(&mut self, index: u32, ip: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes.push(AddressAttribute::Local(ip.into()));
        msg.attributes.push(AddressAttribute::Address(ip.into()));
        self.request(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// Adds the default route via `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(drop)
    }

    /// The IPv4 routes of the main table: destination, prefix length, and the device's index
    /// (the default route is `0.0.0.0/0`).
    pub fn routes(&mut self) -> io::Result<Vec<(Ipv4Addr, u8, Option<u32>)>> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let r = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
        Ok(r.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r)
                    if r.header.table == RouteHeader::RT_TABLE_MAIN =>
                {
                    let dest = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(d)) => Some(*d),
                        _ => None,
                    });
                    let oif = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Oif(i) => Some(*i),
                        _ => None,
                    });
                    Some((
                        dest.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        r.header.destination_prefix_length,
                        oif,
                    ))
                }
                _ => None,
            })
            .collect())
    }
}
