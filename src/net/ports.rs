//! Published ports as users write them: Docker's `-p` grammar, `-P` from an image's exposed
//! ports, and the `0.0.0.0:8080->80/tcp` form `ps`, `port` and `inspect` show.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

fn port(text: &str, what: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{text}` is not a {what} port (1-65535)")),
    }
}

/// `a` or `a-b`.
fn range(text: &str, what: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = match text.split_once('-') {
        Some((lo, hi)) => (port(lo, what)?, port(hi, what)?),
        None => {
            let p = port(text, what)?;
            (p, p)
        }
    };
    if lo > hi {
        return Err(format!("`{text}`: the range ends before it starts"));
    }
    Ok((lo, hi))
}

/// Parses one `-p` value: `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`, where the ports may be
/// ranges (`8000-8010:8000-8010`; a host range for one container port takes the first free
/// port of it), HOST_PORT may be empty (`127.0.0.1::80`: any free port), an IPv6 address is in
/// brackets (`[::1]:8080:80`), and PROTO is `tcp` (the default) or `udp`.
pub fn parse(text: &str) -> Result<Vec<Publish>, String> {
    let bad = |m: String| format!("-p {text}: {m}");
    let (rest, proto) = match text.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((_, "sctp")) => return Err(bad("sctp is not supported (tcp or udp)".into())),
        Some((_, p)) => return Err(bad(format!("unknown protocol `{p}` (tcp or udp)"))),
        None => (text, Proto::Tcp),
    };
    let (host_ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, after) = r
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 address without its closing `]`".into()))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| bad(format!("`{ip}` is not an IPv6 address")))?;
        let after = after
            .strip_prefix(':')
            .ok_or_else(|| bad("a port after the address, e.g. [::1]:8080:80".into()))?;
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
            _ => return Err(bad("too many `:` (an IPv6 address goes in brackets)".into())),
        }
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None if host_ip.is_some() => {
            return Err(bad("a container port after the host port".into()));
        }
        None => ("", rest),
    };
    if container.is_empty() {
        return Err(bad("no container port".into()));
    }
    let (clo, chi) = range(container, "container").map_err(bad)?;
    let one = |host_ports, container_port| Publish {
        host_ip,
        host_ports,
        container_port,
        proto,
    };
    if host.is_empty() {
        return Ok((clo..=chi).map(|c| one((0, 0), c)).collect());
    }
    let (hlo, hi) = range(host, "host").map_err(bad)?;
    if clo == chi {
        return Ok(vec![one((hlo, hi), clo)]);
    }
    if hi - hlo != chi - clo {
        return Err(bad(
            "the host and container ranges have different lengths".into()
        ));
    }
    Ok((clo..=chi)
        .map(|c| {
            let h = hlo + (c - clo);
            one((h, h), c)
        })
        .collect())
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
                container_port: port(n, "container").ok()?,
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
    fn bad_forms_say_what_is_wrong() {
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
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with(&format!("-p {text}:")), "{e}");
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
