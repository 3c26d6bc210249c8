//! What a container's own /etc files and kernel parameters are made of, from `boxr run`'s
//! options: `--add-host` lines of /etc/hosts; /etc/resolv.conf from the host's, or from
//! `--dns`, `--dns-search` and `--dns-option`; `--sysctl` names a container may set.

use std::net::IpAddr;

use crate::values::Bad;

fn bad(reason: String) -> Bad {
    Bad::new(reason, None)
}

/// `--add-host NAME:IP` as /etc/hosts lines (`IP<TAB>NAME`). An IPv6 address may be
/// bracketed (`db:[::1]`) or not (`db:::1`).
pub fn host_entries(add_hosts: &[String]) -> Result<String, Bad> {
    let mut out = String::new();
    for h in add_hosts {
        let (name, ip) = h
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && !n.contains(char::is_whitespace))
            .ok_or_else(|| bad(format!("--add-host {h}: expected NAME:IP")))?;
        let ip: IpAddr = ip
            .strip_prefix('[')
            .and_then(|i| i.strip_suffix(']'))
            .unwrap_or(ip)
            .parse()
            .map_err(|_| bad(format!("--add-host {h}: `{ip}` is not an IP address")))?;
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    Ok(out)
}

/// The container's /etc/resolv.conf: the host's, with its nameservers, search domains or
/// options replaced by those given (as Docker: `--dns-search .` means no search domains).
pub fn resolv_conf(
    host: &str,
    dns: &[String],
    search: &[String],
    options: &[String],
) -> Result<String, Bad> {
    if dns.is_empty() && search.is_empty() && options.is_empty() {
        return Ok(host.to_owned());
    }
    for d in dns {
        d.parse::<IpAddr>()
            .map_err(|_| bad(format!("--dns {d}: not an IP address")))?;
    }
    for o in options {
        if o.is_empty() || o.contains(char::is_whitespace) {
            return Err(bad(format!(
                "--dns-option `{o}`: one option, without spaces"
            )));
        }
    }
    for s in search {
        if s.is_empty() || s.contains(char::is_whitespace) {
            return Err(bad(format!(
                "--dns-search `{s}`: one domain, without spaces"
            )));
        }
    }
    // The host's values of a key (`search` and `options` may each list several).
    let host_values = |keys: &[&str]| -> Vec<String> {
        host.lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                keys.contains(&words.next()?)
                    .then(|| words.map(str::to_owned).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    };
    let pick = |given: &[String], keys: &[&str]| {
        if given.is_empty() {
            host_values(keys)
        } else {
            given.iter().filter(|v| *v != ".").cloned().collect()
        }
    };
    let nameservers = pick(dns, &["nameserver"]);
    let search = pick(search, &["search", "domain"]);
    let options = pick(options, &["options"]);
    let mut out = String::new();
    for n in &nameservers {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    Ok(out)
}

/// Kernel parameters of the IPC namespace (always the container's own).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// `--sysctl NAME=VALUE` checked: only parameters of the container's own namespaces may be set
/// (IPC: `kernel.msg*`, `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`; UTS: `kernel.domainname`;
/// network: `net.*`, unless `own_network` is false because it shares one), as Docker allows.
pub fn sysctls(given: &[String], own_network: bool) -> Result<Vec<(String, String)>, Bad> {
    given
        .iter()
        .map(|s| {
            let (name, value) = s
                .split_once('=')
                .ok_or_else(|| bad(format!("--sysctl {s}: expected NAME=VALUE")))?;
            let valid = !name.is_empty()
                && name.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !valid {
                return Err(bad(format!("--sysctl {s}: `{name}` is not a sysctl name")));
            }
            let net = name.starts_with("net.");
            if net && !own_network {
                return Err(bad(format!(
                    "--sysctl {name}: the container shares a network namespace (--network), \
                     which net.* would change for all of it"
                )));
            }
            let allowed = net
                || IPC_SYSCTLS.contains(&name)
                || name.starts_with("fs.mqueue.")
                || name == "kernel.domainname";
            if !allowed {
                return Err(bad(format!(
                    "--sysctl {name}: not a parameter of the container's own namespaces \
                     (net.*, kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.*, \
                     kernel.domainname); it would change the host"
                )));
            }
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn add_host_lines() {
        let h = host_entries(&strings(&["db:10.0.0.2", "v6:::1", "b6:[fe80::1]"])).unwrap();
        assert_eq!(h, "10.0.0.2\tdb\n::1\tv6\nfe80::1\tb6\n");
        assert!(host_entries(&strings(&["db"])).is_err());
        assert!(host_entries(&strings(&[":1.2.3.4"])).is_err());
        assert!(host_entries(&strings(&["db:not-an-ip"])).is_err());
    }

    #[test]
    fn resolv_conf_replaces_what_is_given() {
        let host = "# comment\nnameserver 10.1.1.1\nnameserver 10.1.1.2\nsearch a.example b.example\noptions ndots:2\n";
        assert_eq!(resolv_conf(host, &[], &[], &[]).unwrap(), host);
        assert_eq!(
            resolv_conf(host, &strings(&["9.9.9.9"]), &[], &[]).unwrap(),
            "nameserver 9.9.9.9\nsearch a.example b.example\noptions ndots:2\n"
        );
        assert_eq!(
            resolv_conf(
                host,
                &[],
                &strings(&["."]),
                &strings(&["timeout:1", "rotate"])
            )
            .unwrap(),
            "nameserver 10.1.1.1\nnameserver 10.1.1.2\noptions timeout:1 rotate\n"
        );
        assert!(resolv_conf(host, &strings(&["dns.example"]), &[], &[]).is_err());
    }

    #[test]
    fn only_namespaced_sysctls() {
        let ok = sysctls(
            &strings(&["net.ipv4.ip_forward=1", "kernel.shmmax=1000"]),
            true,
        );
        assert_eq!(
            ok.unwrap(),
            vec![
                ("net.ipv4.ip_forward".to_owned(), "1".to_owned()),
                ("kernel.shmmax".to_owned(), "1000".to_owned())
            ]
        );
        assert!(sysctls(&strings(&["net.ipv4.ip_forward=1"]), false).is_err());
        assert!(sysctls(&strings(&["kernel.hostname=x"]), true).is_err());
        assert!(sysctls(&strings(&["vm.swappiness=1"]), true).is_err());
        assert!(sysctls(&strings(&["net.ipv4/../../x=1"]), true).is_err());
        assert!(sysctls(&strings(&["net.ipv4.ip_forward"]), true).is_err());
    }
}
