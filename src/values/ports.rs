//! Ports: a port number, `PORT[/PROTO]` (`expose`), and Docker's `-p` grammar
//! (`[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]`, ranges, `[::1]`).

use std::fmt;
use std::net::IpAddr;

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

/// A published port: `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`. Without a host port the
/// runtime picks a free one, as `docker run -p 8080` does. An IPv6 host address is written in
/// brackets: `"[::1]:8080:80"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publish {
    pub host_ip: Option<IpAddr>,
    pub host_port: Option<u16>,
    pub container_port: u16,
    pub proto: Proto,
}

pub fn parse_publish(text: &str) -> Result<Publish, Bad> {
    let usage = "write [HOST_IP:]HOST_PORT:CONTAINER_PORT[/udp], e.g. \"8080:80\" or \"127.0.0.1:53:53/udp\"";
    let (rest, proto) = match text.rsplit_once('/') {
        Some((r, p)) => (r, parse_proto(p).map_err(|b| b.help(usage))?),
        None => (text, Proto::Tcp),
    };
    let (host_ip, rest) = if let Some(stripped) = rest.strip_prefix('[') {
        let (ip, after) = stripped
            .split_once("]:")
            .ok_or_else(|| bad(format!("`{text}` has an unclosed `[`")).help(usage))?;
        (Some(ip), after)
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (None, rest),
            3 => (Some(parts[0]), &rest[parts[0].len() + 1..]),
            _ => return Err(bad(format!("`{text}` has too many `:`")).help(usage)),
        }
    };
    let host_ip = match host_ip {
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| bad(format!("`{ip}` is not an IP address")).help(usage))?,
        ),
        None => None,
    };
    let (host_port, container_port) = match rest.split_once(':') {
        Some((h, c)) => (
            Some(parse_port_number(h).map_err(|b| b.help(usage))?),
            parse_port_number(c).map_err(|b| b.help(usage))?,
        ),
        None => (None, parse_port_number(rest).map_err(|b| b.help(usage))?),
    };
    Ok(Publish {
        host_ip,
        host_port,
        container_port,
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
        assert_eq!((p.host_port, p.container_port), (Some(8080), 80));
        assert_eq!(p.proto, Proto::Udp);
        let p = parse_publish("[::1]:8080:80").unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        let p = parse_publish("80").unwrap();
        assert_eq!((p.host_port, p.container_port), (None, 80));
        assert!(parse_publish("a:b:c:d").is_err());
        assert!(parse_publish("300.1.1.1:80:80").is_err());
    }
}
