//! Published ports as users write them: Docker's `-p` grammar, `-P` from an image's exposed
//! ports, and the `0.0.0.0:8080->80/tcp` form `ps`, `port` and `inspect` show.

use std::fmt;
use std::net::IpAddr;

use crate::values::Bad;

use serde::{Deserialize, Serialize};

/// A transport protocol a port is published for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One container port to publish, as asked (`-p`, or `-P` for an exposed port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The host address to listen on; none: every address, IPv4 and IPv6.
    pub host_ip: Option<IpAddr>,
    /// The host ports to take one of, first free first: `(0, 0)` for any free port, `(p, p)`
    /// for exactly `p`.
    pub host_ports: (u16, u16),
    pub container_port: u16,
    pub proto: Proto,
}

/// One published port as it is held: a host address and port forwarded to a container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// `0.0.0.0` or `::` for every address of the family.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl fmt::Display for Published {
    /// Docker's form: `0.0.0.0:8080->80/tcp`, `[::]:8080->80/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            IpAddr::V4(a) => write!(f, "{a}:")?,
            IpAddr::V6(a) => write!(f, "[{a}]:")?,
        }
        write!(
            f,
            "{}->{}/{}",
            self.host_port, self.container_port, self.proto
        )
    }
}

impl Published {
    /// The host side alone, as `boxr port` prints it: `0.0.0.0:8080`, `[::]:8080`.
    pub fn host(&self) -> String {
        match self.host_ip {
            IpAddr::V4(a) => format!("{a}:{}", self.host_port),
            IpAddr::V6(a) => format!("[{a}]:{}", self.host_port),
        }
    }

    /// The container side: `80/tcp`.
    pub fn private(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
}

/// Published ports as Docker lists them in `ps`: runs of consecutive ports on one address and
/// protocol, whose host and container ports both go up by one, as one range
/// (`0.0.0.0:8000-8002->8000-8002/tcp`); the rest one by one.
pub fn grouped(ports: &[Published]) -> Vec<String> {
    let mut sorted: Vec<&Published> = ports.iter().collect();
    sorted.sort_by_key(|p| {
        (
            p.host_ip,
            p.proto.to_string(),
            p.container_port,
            p.host_port,
        )
    });
    let mut runs: Vec<(&Published, &Published)> = Vec::new();
    for p in sorted {
        if let Some((_, last)) = runs.last_mut()
            && last.host_ip == p.host_ip
            && last.proto == p.proto
            && last.container_port.checked_add(1) == Some(p.container_port)
            && last.host_port.checked_add(1) == Some(p.host_port)
        {
            *last = p;
            continue;
        }
        runs.push((p, p));
    }
    runs.into_iter()
        .map(|(first, last)| {
            if first == last {
                return first.to_string();
            }
            let ip = match first.host_ip {
                IpAddr::V4(a) => a.to_string(),
                IpAddr::V6(a) => format!("[{a}]"),
            };
            format!(
                "{ip}:{}-{}->{}-{}/{}",
                first.host_port,
                last.host_port,
                first.container_port,
                last.container_port,
                first.proto
            )
        })
        .collect()
}

impl TryFrom<crate::values::Proto> for Proto {
    type Error = Bad;

    fn try_from(p: crate::values::Proto) -> Result<Proto, Bad> {
        match p {
            crate::values::Proto::Tcp => Ok(Proto::Tcp),
            crate::values::Proto::Udp => Ok(Proto::Udp),
            crate::values::Proto::Sctp => Err(Bad::new("sctp is not supported (tcp or udp)", None)),
        }
    }
}

/// Parses one `-p` value ([`crate::values::parse_publish`], the grammar a service's `publish`
/// uses too) into the container ports to publish; the error names the value.
pub fn parse(text: &str) -> Result<Vec<Publish>, Bad> {
    crate::values::parse_publish(text)
        .and_then(|p| expand(&p))
        .map_err(|b| Bad::new(format!("-p {text}: {}", b.reason), b.help.as_deref()))
}

/// A publication as written, as the container ports it publishes: a container range port for
/// port (onto the host range of the same length, or each onto any free port); one container
/// port onto its host port, the first free one of a host range, or any free one.
pub fn expand(p: &crate::values::Publish) -> Result<Vec<Publish>, Bad> {
    let proto = Proto::try_from(p.proto)?;
    let one = |host_ports, container_port| Publish {
        host_ip: p.host_ip,
        host_ports,
        container_port,
        proto,
    };
    let (clo, chi) = p.container_ports;
    Ok(match p.host_ports {
        None => (clo..=chi).map(|c| one((0, 0), c)).collect(),
        Some(range) if clo == chi => vec![one(range, clo)],
        Some((hlo, _)) => (clo..=chi)
            .map(|c| {
                let h = hlo + (c - clo);
                one((h, h), c)
            })
            .collect(),
    })
}

/// `-P`: each of an image's exposed ports (`80/tcp`, `53/udp`, `8080`) to a free host port.
/// Ports of other protocols are left out.
pub fn exposed(ports: &[String]) -> Vec<Publish> {
    ports
        .iter()
        .filter_map(|p| {
            let (n, proto) = match p.split_once('/') {
                Some((n, "tcp")) | Some((n, "TCP")) => (n, Proto::Tcp),
                Some((n, "udp")) | Some((n, "UDP")) => (n, Proto::Udp),
                Some(_) => return None,
                None => (p.as_str(), Proto::Tcp),
            };
            Some(Publish {
                host_ip: None,
                host_ports: (0, 0),
                container_port: crate::values::parse_port_number(n).ok()?,
                proto,
            })
        })
        .collect()
}

/// `-p` and `-P` together: a container port `-p` names is published only as `-p` says.
pub fn merge(explicit: Vec<Publish>, all: Vec<Publish>) -> Vec<Publish> {
    let mut out = explicit;
    for p in all {
        if !out
            .iter()
            .any(|e| e.container_port == p.container_port && e.proto == p.proto)
        {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Publish {
        let mut v = parse(text).unwrap();
        assert_eq!(v.len(), 1, "{text}");
        v.remove(0)
    }

    #[test]
    fn ps_groups_runs_of_ports_as_docker_does() {
        let p = |ip: &str, host: u16, container: u16, proto: Proto| Published {
            host_ip: ip.parse().unwrap(),
            host_port: host,
            container_port: container,
            proto,
        };
        let ports = [
            p("0.0.0.0", 8002, 8002, Proto::Tcp),
            p("0.0.0.0", 8000, 8000, Proto::Tcp),
            p("0.0.0.0", 8001, 8001, Proto::Tcp),
            p("::", 8000, 8000, Proto::Tcp),
            p("::", 8001, 8001, Proto::Tcp),
            p("0.0.0.0", 8001, 8001, Proto::Udp),
            p("0.0.0.0", 9000, 80, Proto::Tcp),
            p("0.0.0.0", 9005, 81, Proto::Tcp),
        ];
        assert_eq!(
            grouped(&ports),
            [
                "0.0.0.0:9000->80/tcp",
                "0.0.0.0:9005->81/tcp",
                "0.0.0.0:8000-8002->8000-8002/tcp",
                "0.0.0.0:8001->8001/udp",
                "[::]:8000-8001->8000-8001/tcp",
            ]
        );
    }

    #[test]
    fn dockers_forms() {
        let p = one("8080:80");
        assert_eq!(
            (p.host_ip, p.host_ports, p.container_port),
            (None, (8080, 8080), 80)
        );
        assert_eq!(p.proto, Proto::Tcp);
        assert_eq!(one("80").host_ports, (0, 0));
        let p = one("127.0.0.1:8080:80/udp");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(p.proto, Proto::Udp);
        let p = one("127.0.0.1::80");
        assert_eq!((p.host_ports, p.container_port), ((0, 0), 80));
        let p = one("[::1]:8080:80");
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        assert_eq!(one("[::]::53/udp").host_ports, (0, 0));
        let r = parse("8000-8002:9000-9002").unwrap();
        assert_eq!(
            r.iter()
                .map(|p| (p.host_ports.0, p.container_port))
                .collect::<Vec<_>>(),
            [(8000, 9000), (8001, 9001), (8002, 9002)]
        );
        assert_eq!(one("8000-8010:80").host_ports, (8000, 8010));
        assert_eq!(parse("7000-7001").unwrap().len(), 2);
    }

    #[test]
    fn a_bad_value_is_named_in_its_error() {
        for text in ["8080:", "80/sctp", "8000-8001:80-82"] {
            let e = parse(text).unwrap_err();
            assert!(e.reason.starts_with(&format!("-p {text}:")), "{}", e.reason);
        }
    }

    #[test]
    fn shown_as_docker_shows_them() {
        let p = Published {
            host_ip: "0.0.0.0".parse().unwrap(),
            host_port: 8080,
            container_port: 80,
            proto: Proto::Tcp,
        };
        assert_eq!(p.to_string(), "0.0.0.0:8080->80/tcp");
        let p = Published {
            host_ip: "::".parse().unwrap(),
            proto: Proto::Udp,
            ..p
        };
        assert_eq!(p.to_string(), "[::]:8080->80/udp");
        assert_eq!(p.host(), "[::]:8080");
        assert_eq!(p.private(), "80/udp");
    }

    #[test]
    fn publish_all_leaves_explicit_ports_alone() {
        let all = exposed(&[
            "80/tcp".into(),
            "53/udp".into(),
            "9/sctp".into(),
            "x".into(),
        ]);
        assert_eq!(all.len(), 2);
        let merged = merge(parse("8080:80").unwrap(), all);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].host_ports, (8080, 8080));
        assert_eq!(merged[1].proto, Proto::Udp);
    }
}
