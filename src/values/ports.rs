//! Ports: a port number, `PORT[/PROTO]` (`expose`), and Docker's `-p` grammar
//! (`[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`, ranges, `[::1]`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::{Bad, bad};

/// A transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        })
    }
}

fn parse_proto(text: &str) -> Result<Proto, Bad> {
    match text.to_ascii_lowercase().as_str() {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        "sctp" => Ok(Proto::Sctp),
        _ => Err(bad(format!("unknown protocol `{text}`")).help("use tcp, udp or sctp")),
    }
}

/// A port number, 1 to 65535.
pub fn parse_port_number(text: &str) -> Result<u16, Bad> {
    match text.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        Ok(n) => Err(bad(format!("port {n} is out of range")).help("ports are 1 to 65535")),
        Err(_) => Err(bad(format!("`{text}` is not a port number")).help("ports are 1 to 65535")),
    }
}

/// An exposed port: `8080`, `"8080/tcp"`, `"53/udp"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PortSpec {
    pub port: u16,
    pub proto: Proto,
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.proto)
    }
}

pub fn parse_port_spec(text: &str) -> Result<PortSpec, Bad> {
    let (port, proto) = match text.split_once('/') {
        Some((p, proto)) => (p, parse_proto(proto)?),
        None => (text, Proto::Tcp),
    };
    Ok(PortSpec {
        port: parse_port_number(port)?,
        proto,
    })
}

/// A published port or range, as written: Docker's `-p` grammar,
/// `[HOST_IP:][HOST_PORT[-HOST_PORT]:]CONTAINER_PORT[-CONTAINER_PORT][/tcp|udp]`. The one grammar
/// of `boxr run -p` and a service's `publish`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Publish {
    /// The host address to listen on; none: every address, IPv4 and IPv6.
    pub host_ip: Option<IpAddr>,
    /// None: any free port (`80`, `127.0.0.1::80`). For one container port, a range is the
    /// ports to take the first free one of; for a container range, the host range has the same
    /// length and maps port for port.
    pub host_ports: Option<(u16, u16)>,
    pub container_ports: (u16, u16),
    /// `tcp` or `udp` (published SCTP is not supported).
    pub proto: Proto,
}

impl Publish {
    /// The host ports this publication always holds, whoever else asks (`8080:80`,
    /// `8000-8002:8000-8002`); none when it takes any free port or the first free one of a
    /// range, which another publication can share.
    pub fn fixed_host_ports(&self) -> Option<(u16, u16)> {
        let (lo, hi) = self.host_ports?;
        (lo == hi || self.container_ports.0 != self.container_ports.1).then_some((lo, hi))
    }
}

impl fmt::Display for Publish {
    /// The canonical text: `127.0.0.1:8080:80/tcp`, `[::1]::53/udp`, `8000-8002:8000-8002/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = |(lo, hi): (u16, u16)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        };
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(ip) => write!(f, "{ip}:")?,
            None => {}
        }
        match (self.host_ip, self.host_ports) {
            (_, Some(h)) => write!(f, "{}:", range(h))?,
            (Some(_), None) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", range(self.container_ports), self.proto)
    }
}

const PUBLISH_USAGE: &str = "write [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/udp], e.g. \"8080:80\", \"127.0.0.1::80\" or \"8000-8010:8000-8010\"";

/// A port of a `-p` value, 1 to 65535; `what` says which (`host`, `container`).
fn publish_port(text: &str, what: &str) -> Result<u16, Bad> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad(format!("`{text}` is not a {what} port (1-65535)"))),
    }
}

/// `a` or `a-b`.
fn publish_range(text: &str, what: &str) -> Result<(u16, u16), Bad> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (publish_port(lo, what)?, publish_port(hi, what)?),
        None => {
            let p = publish_port(text, what)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(bad(format!("`{text}`: the range ends before it starts")));
    }
    Ok((lo, hi))
}

/// Parses one published port: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`, where the ports may be
/// ranges (`8000-8010:8000-8010`; a host range for one container port takes the first free
/// port of it), HOST_PORT may be empty (`127.0.0.1::80`: any free port), an IPv6 address is in
/// brackets (`[::1]:8080:80`), and PROTO is `tcp` (the default) or `udp`.
pub fn parse_publish(text: &str) -> Result<Publish, Bad> {
    parse_publish_inner(text).map_err(|b| match b.help {
        Some(_) => b,
        None => b.help(PUBLISH_USAGE),
    })
}

fn parse_publish_inner(text: &str) -> Result<Publish, Bad> {
    let (rest, proto) = match text.rsplit_once('/') {
        Some((r, p)) => match parse_proto(p)? {
            Proto::Sctp => {
                return Err(bad("sctp is not supported (tcp or udp)")
                    .help("publish the port over tcp or udp"));
            }
            proto => (r, proto),
        },
        None => (text, Proto::Tcp),
    };
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address without its closing `]`"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| bad(format!("`{ip}` is not an IPv6 address")))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| bad("a port after the address, e.g. [::1]:8080:80"))?;
        (Some(IpAddr::V6(ip)), after)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => {
                let ip: Ipv4Addr = parts[0].parse().map_err(|_| {
                    bad(format!(
                        "`{}` is not an IPv4 address (an IPv6 one goes in brackets)",
                        parts[0]
                    ))
                })?;
                (Some(IpAddr::V4(ip)), &rest[parts[0].len() + 1..])
            }
            _ => return Err(bad("too many `:` (an IPv6 address goes in brackets)")),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None if host_ip.is_some() => {
            return Err(bad("a container port after the host port"));
        }
        None => ("", rest),
    };
    if container.is_empty() {
        return Err(bad("no container port"));
    }
    let container_ports = publish_range(container, "container")?;
    let host_ports = if host.is_empty() {
        None
    } else {
        let (lo, hi) = publish_range(host, "host")?;
        let (clo, chi) = container_ports;
        if clo != chi && hi - lo != chi - clo {
            return Err(bad("the host and container ranges have different lengths"));
        }
        Some((lo, hi))
    };
    Ok(Publish {
        host_ip,
        host_ports,
        container_ports,
        proto,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_publish() {
        assert_eq!(
            parse_port_spec("53/udp"),
            Ok(PortSpec {
                port: 53,
                proto: Proto::Udp
            })
        );
        assert!(parse_port_spec("0").is_err());
        assert!(parse_port_spec("70000").is_err());
        let p = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (p.host_ports, p.container_ports),
            (Some((8080, 8080)), (80, 80))
        );
        assert_eq!(p.proto, Proto::Udp);
        let p = parse_publish("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        let p = parse_publish("80").unwrap();
        assert_eq!((p.host_ports, p.container_ports), (None, (80, 80)));
        assert!(parse_publish("a:b:c:d").is_err());
        assert!(parse_publish("300.1.1.1:80:80").is_err());
    }

    #[test]
    fn every_form_of_the_grammar_and_its_text() {
        for (text, canonical, fixed) in [
            ("8080:80", "8080:80/tcp", Some((8080, 8080))),
            ("80", "80/tcp", None),
            ("127.0.0.1::80", "127.0.0.1::80/tcp", None),
            ("[::1]:8080:80/udp", "[::1]:8080:80/udp", Some((8080, 8080))),
            ("[::]::53/udp", "[::]::53/udp", None),
            (
                "8000-8002:9000-9002",
                "8000-8002:9000-9002/tcp",
                Some((8000, 8002)),
            ),
            ("8000-8010:80", "8000-8010:80/tcp", None),
            ("7000-7001", "7000-7001/tcp", None),
        ] {
            let p = parse_publish(text).unwrap();
            assert_eq!(p.to_string(), canonical, "{text}");
            assert_eq!(parse_publish(canonical).unwrap(), p, "{text}");
            assert_eq!(p.fixed_host_ports(), fixed, "{text}");
        }
    }

    #[test]
    fn bad_published_ports_say_what_is_wrong() {
        for (text, want) in [
            ("", "no container port"),
            ("8080:", "no container port"),
            ("0:80", "not a host port"),
            ("8080:70000", "not a container port"),
            ("80/sctp", "sctp is not supported"),
            ("80/icmp", "unknown protocol"),
            ("::1:8080:80", "too many"),
            ("[::1:8080:80", "closing"),
            ("1.2.3:8080:80", "not an IPv4 address"),
            ("8000-8001:80-82", "different lengths"),
            ("90-80", "ends before it starts"),
            ("127.0.0.1:80", "`127.0.0.1` is not a host port"),
            ("127.0.0.1:", "no container port"),
        ] {
            let e = parse_publish(text).unwrap_err();
            assert!(e.reason.contains(want), "{text}: {}", e.reason);
            assert!(e.help.is_some(), "{text}");
        }
    }
}
