//! What a resolver answers from the names it knows: a network's names ([`Names`]), the answer to
//! one question ([`answer`], and over every network the asker is on: [`answer_seen`]), and the
//! reply message ([`local_reply`], [`servfail`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use hickory_proto::op::{Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::super::{DEFAULT, Network};

/// The TTL of the network's own answers: names come and go with containers.
const TTL: u32 = 5;

/// The names of a network, as the resolver answers for them.
#[derive(Debug, Default, Clone)]
pub(super) struct Names {
    /// The network's name, lowercased: its zone.
    zone: String,
    /// Lowercased name → its addresses (an alias may be shared by several containers).
    by_name: BTreeMap<String, Vec<Ipv4Addr>>,
    /// Address → the first name of its container.
    by_addr: BTreeMap<Ipv4Addr, String>,
    subnet: Option<super::super::Subnet>,
    forward: bool,
    /// Address → the container that holds it (who asks).
    pub(super) members: BTreeMap<Ipv4Addr, String>,
}

impl Names {
    pub(super) fn of(net: &Network) -> Names {
        let mut n = Names {
            zone: net.name.to_ascii_lowercase(),
            subnet: Some(net.subnet),
            forward: !net.internal,
            members: net
                .leases
                .iter()
                .map(|(id, ip)| (*ip, id.clone()))
                .collect(),
            ..Names::default()
        };
        if net.name == DEFAULT {
            return n;
        }
        for (id, names) in &net.names {
            let Some(ip) = net.leases.get(id) else {
                continue;
            };
            for name in names {
                let ips = n.by_name.entry(name.to_ascii_lowercase()).or_default();
                if !ips.contains(ip) {
                    ips.push(*ip);
                }
            }
            if let Some(first) = names.first() {
                n.by_addr.insert(*ip, first.to_ascii_lowercase());
            }
        }
        n
    }
}

/// What the resolver does with one question.
#[derive(Debug, PartialEq)]
enum Answer {
    Records(Vec<Record>),
    /// The name exists, without records of the type asked.
    NoData,
    NxDomain,
    Forward,
    Refused,
}

/// The answer to `qname`/`qtype` from the network's own names.
fn answer(names: &Names, qname: &Name, qtype: RecordType) -> Answer {
    let text = qname.to_ascii().to_ascii_lowercase();
    let text = text.trim_end_matches('.');
    let forward = if names.forward {
        Answer::Forward
    } else {
        Answer::Refused
    };
    if let Some(rev) = text.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rev
            .split('.')
            .rev()
            .filter_map(|o| o.parse().ok())
            .collect();
        let Ok(o) = <[u8; 4]>::try_from(octets) else {
            return forward;
        };
        let ip = Ipv4Addr::from(o);
        if let Some(name) = names.by_addr.get(&ip) {
            if qtype != RecordType::PTR {
                return Answer::NoData;
            }
            let Ok(target) = Name::from_ascii(format!("{name}.{}.", names.zone)) else {
                return Answer::NoData;
            };
            return Answer::Records(vec![Record::from_rdata(
                qname.clone(),
                TTL,
                RData::PTR(PTR(target)),
            )]);
        }
        if names.subnet.is_some_and(|s| s.contains(ip)) {
            return Answer::NxDomain;
        }
        return forward;
    }
    let in_zone = text.strip_suffix(&format!(".{}", names.zone));
    let label = match in_zone {
        Some(l) => l,
        None if !text.contains('.') => text,
        None => return forward,
    };
    match names.by_name.get(label) {
        Some(ips) if matches!(qtype, RecordType::A | RecordType::ANY) => Answer::Records(
            ips.iter()
                .map(|ip| Record::from_rdata(qname.clone(), TTL, RData::A(A(*ip))))
                .collect(),
        ),
        Some(_) => Answer::NoData,
        None if in_zone.is_some() || text == names.zone => Answer::NxDomain,
        None => forward,
    }
}

/// The answer from the names a container sees: its network's (`seen[0]`), then those of the
/// other networks it is on. A name known on one of them is answered; a name of a zone none of
/// them knows is NXDOMAIN; the rest is the network's own answer (forward, or refuse).
fn answer_seen(seen: &[Names], qname: &Name, qtype: RecordType) -> Answer {
    let mut nx = false;
    let mut own = None;
    for names in seen {
        match answer(names, qname, qtype) {
            a @ (Answer::Records(_) | Answer::NoData) => return a,
            Answer::NxDomain => nx = true,
            other => {
                own.get_or_insert(other);
            }
        }
    }
    match own {
        _ if nx => Answer::NxDomain,
        Some(a) => a,
        None => Answer::Forward,
    }
}

/// The reply to `query` from the names its asker sees, or `None` to forward it.
pub(super) fn local_reply(seen: &[Names], query: &Message) -> Option<Message> {
    let q = query.queries.first()?;
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.add_query(q.clone());
    if query.metadata.op_code != OpCode::Query || query.queries.len() != 1 {
        reply.metadata.response_code = ResponseCode::NotImp;
        return Some(reply);
    }
    match answer_seen(seen, q.name(), q.query_type()) {
        Answer::Records(mut r) => {
            // Several addresses (an alias replicas share): each answer starts at the next, as
            // round-robin DNS does, since clients mostly take the first.
            static TURN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let turn = TURN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let n = r.len();
            r.rotate_left(turn % n);
            reply.metadata.authoritative = true;
            reply.add_answers(r);
        }
        Answer::NoData => reply.metadata.authoritative = true,
        Answer::NxDomain => {
            reply.metadata.authoritative = true;
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        Answer::Refused => reply.metadata.response_code = ResponseCode::Refused,
        Answer::Forward => return None,
    }
    Some(reply)
}

pub(super) fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let mut reply = Message::error_msg(q.metadata.id, q.metadata.op_code, ResponseCode::ServFail);
    reply.metadata.recursion_desired = q.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    for x in q.queries {
        reply.add_query(x);
    }
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        let mut by_name = BTreeMap::new();
        by_name.insert("web".to_owned(), vec![Ipv4Addr::new(172, 18, 0, 2)]);
        by_name.insert("db".to_owned(), vec![Ipv4Addr::new(172, 18, 0, 3)]);
        // An alias two replicas share.
        by_name.insert(
            "api".to_owned(),
            vec![Ipv4Addr::new(172, 18, 0, 4), Ipv4Addr::new(172, 18, 0, 5)],
        );
        let mut by_addr = BTreeMap::new();
        by_addr.insert(Ipv4Addr::new(172, 18, 0, 2), "web".to_owned());
        Names {
            zone: "app".into(),
            by_name,
            by_addr,
            subnet: "172.18.0.0/16".parse().ok(),
            forward: true,
            members: BTreeMap::new(),
        }
    }

    /// A second network, `back`, where `db` is known and `cache` too.
    fn back() -> Names {
        let mut by_name = BTreeMap::new();
        by_name.insert("cache".to_owned(), vec![Ipv4Addr::new(172, 19, 0, 2)]);
        let mut by_addr = BTreeMap::new();
        by_addr.insert(Ipv4Addr::new(172, 19, 0, 2), "cache".to_owned());
        Names {
            zone: "back".into(),
            by_name,
            by_addr,
            subnet: "172.19.0.0/16".parse().ok(),
            forward: true,
            members: BTreeMap::new(),
        }
    }

    #[test]
    fn a_container_on_two_networks_resolves_the_names_of_both() {
        let q = |n: &[Names], q: &str, t| answer_seen(n, &Name::from_ascii(q).unwrap(), t);
        let both = [names(), back()];
        for name in ["cache", "cache.back", "web", "web.app"] {
            assert!(
                matches!(q(&both, name, RecordType::A), Answer::Records(_)),
                "{name}"
            );
        }
        assert_eq!(q(&both, "cache", RecordType::AAAA), Answer::NoData);
        assert_eq!(q(&both, "nosuch.back", RecordType::A), Answer::NxDomain);
        assert_eq!(q(&both, "nosuch", RecordType::A), Answer::Forward);
        assert!(matches!(
            q(&both, "2.0.19.172.in-addr.arpa.", RecordType::PTR),
            Answer::Records(_)
        ));
        // Only the networks the asker is on: `back`'s names are not `app`'s.
        assert_eq!(q(&[names()], "cache", RecordType::A), Answer::Forward);
        assert_eq!(q(&[names()], "cache.back", RecordType::A), Answer::Forward);
    }

    fn ask(n: &Names, q: &str, t: RecordType) -> Answer {
        answer(n, &Name::from_ascii(q).unwrap(), t)
    }

    #[test]
    fn names_of_the_network_bare_and_in_its_zone() {
        let n = names();
        for q in ["web", "WEB.", "web.app", "web.app."] {
            let Answer::Records(r) = ask(&n, q, RecordType::A) else {
                panic!("{q}")
            };
            assert_eq!(r[0].data, RData::A(A(Ipv4Addr::new(172, 18, 0, 2))));
        }
        let Answer::Records(r) = ask(&n, "api", RecordType::A) else {
            panic!("api")
        };
        assert_eq!(r.len(), 2, "an alias answers with every address");
        assert_eq!(ask(&n, "web", RecordType::AAAA), Answer::NoData);
        assert_eq!(ask(&n, "db.app", RecordType::MX), Answer::NoData);
        assert_eq!(ask(&n, "nosuch.app", RecordType::A), Answer::NxDomain);
        assert_eq!(ask(&n, "nosuch", RecordType::A), Answer::Forward);
        assert_eq!(ask(&n, "example.com", RecordType::A), Answer::Forward);
    }

    #[test]
    fn addresses_of_the_network_and_others() {
        let n = names();
        let Answer::Records(r) = ask(&n, "2.0.18.172.in-addr.arpa.", RecordType::PTR) else {
            panic!()
        };
        assert_eq!(r[0].data.to_string(), "web.app.");
        assert_eq!(
            ask(&n, "9.0.18.172.in-addr.arpa.", RecordType::PTR),
            Answer::NxDomain
        );
        assert_eq!(
            ask(&n, "1.1.168.192.in-addr.arpa.", RecordType::PTR),
            Answer::Forward
        );
        let internal = Names {
            forward: false,
            ..names()
        };
        assert_eq!(
            ask(&internal, "example.com", RecordType::A),
            Answer::Refused
        );
    }

    #[test]
    fn a_reply_keeps_the_id_and_the_question() {
        let mut q = Message::query();
        q.metadata.id = 4242;
        q.metadata.recursion_desired = true;
        q.add_query(hickory_proto::op::Query::query(
            Name::from_ascii("nosuch.app.").unwrap(),
            RecordType::A,
        ));
        let r = local_reply(&[names()], &q).unwrap();
        assert_eq!(r.metadata.id, 4242);
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(r.queries, q.queries);
        let bytes = r.to_vec().unwrap();
        assert_eq!(Message::from_vec(&bytes).unwrap().metadata.id, 4242);
    }
}
