//! boxr's nftables rules, in a table of its own (`inet boxr`), one atomic `nft` transaction
//! per change (libnftables' JSON through the `nft` command, as netavark's nftables driver does;
//! no crate speaks nftables' netlink protocol well enough to beat that).
//!
//! Each network has two base chains named after its bridge, so adding or removing one network
//! never touches another's rules:
//!
//! - `fwd-BRIDGE` (filter, forward): into the bridge only replies (established, related) and
//!   traffic between its own containers; everything else into it is dropped (other networks,
//!   other hosts routing the subnet through this one). Out of it anything goes, unless the
//!   network is internal.
//! - `nat-BRIDGE` (nat, postrouting): the subnet's traffic leaving by another interface is
//!   masqueraded (none for an internal network).
//!
//! A drop wins across base chains of one hook, so two networks are isolated even though each
//! chain accepts its own traffic. Traffic DNATed to a published port is let in too, and when
//! it comes from the bridge itself (a container reaching a published port through the host's
//! address: hairpin) it is masqueraded, so the answer goes back through the host.
//!
//! Published ports are two maps looked up by one rule each, whatever the number of ports
//! (Docker's one-rule-per-port nftables backend took seconds per container on a busy host):
//! `ports-any` (protocol . port → address . port, for ports published on every address) and
//! `ports-addr` (host address . protocol . port → …, for one address), used in `ports-pre`
//! (prerouting: from other hosts and containers) and `ports-out` (output: from this host to
//! its own addresses, loopback excepted: the user-space proxy serves 127.0.0.0/8 and ::1, so
//! `route_localnet` stays off). These are written in nft's text syntax: nftables 1.0.6
//! (Debian 12) crashes on the JSON form of maps with concatenated values.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::{NetError, Network};

const TABLE: &str = "boxr";

fn chain(name: &str) -> Value {
    json!({"family": "inet", "table": TABLE, "name": name})
}

fn rule(chain: &str, expr: Vec<Value>) -> Value {
    json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "expr": expr}}})
}

fn iface(key: &str, op: &str, name: &str) -> Value {
    json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": name}})
}

/// The batch that (re)creates `net`'s chains.
fn batch(net: &Network) -> Value {
    let br = net.bridge.as_str();
    let fwd = format!("fwd-{br}");
    let nat = format!("nat-{br}");
    let mut cmds = vec![
        json!({"add": {"table": {"family": "inet", "name": TABLE}}}),
        json!({"add": {"chain": {"family": "inet", "table": TABLE, "name": fwd,
            "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}}),
        json!({"flush": {"chain": chain(&fwd)}}),
        json!({"add": {"chain": {"family": "inet", "table": TABLE, "name": nat,
            "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}}),
        json!({"flush": {"chain": chain(&nat)}}),
        rule(
            &fwd,
            vec![
                iface("oifname", "==", br),
                json!({"match": {"op": "in", "left": {"ct": {"key": "state"}},
                    "right": ["established", "related"]}}),
                json!({"accept": null}),
            ],
        ),
        rule(
            &fwd,
            vec![
                iface("iifname", "==", br),
                iface("oifname", "==", br),
                json!({"accept": null}),
            ],
        ),
        rule(
            &fwd,
            vec![iface("oifname", "==", br), json!({"drop": null})],
        ),
    ];
    let subnet = json!({"match": {"op": "==",
        "left": {"payload": {"protocol": "ip", "field": "saddr"}},
        "right": {"prefix": {"addr": net.subnet.base().to_string(), "len": net.subnet.prefix()}}}});
    let dnat = json!({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}});
    if net.internal {
        cmds.push(rule(
            &fwd,
            vec![iface("iifname", "==", br), json!({"drop": null})],
        ));
    } else {
        // Published ports: what was DNATed to one gets in (before the drop above)...
        cmds.insert(
            cmds.len() - 1,
            rule(
                &fwd,
                vec![
                    iface("oifname", "==", br),
                    dnat.clone(),
                    json!({"accept": null}),
                ],
            ),
        );
        // ... and is masqueraded when it came from the bridge itself (hairpin: postrouting
        // has no input interface to match, the source address tells).
        cmds.push(rule(
            &nat,
            vec![
                iface("oifname", "==", br),
                subnet.clone(),
                dnat,
                json!({"masquerade": null}),
            ],
        ));
        cmds.push(rule(
            &nat,
            vec![
                subnet,
                iface("oifname", "!=", br),
                json!({"masquerade": null}),
            ],
        ));
    }
    json!({"nftables": cmds})
}

/// A program of the firewall (`nft`, `iptables`): on the PATH, else where Debian and most
/// distributions install it (a PATH without the sbin directories is common for services and
/// `sudo -u`).
fn program(name: &str) -> Option<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    on_path.or_else(|| {
        ["/usr/sbin", "/sbin"]
            .into_iter()
            .map(|d| std::path::Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

fn nft() -> std::path::PathBuf {
    program("nft").unwrap_or_else(|| "nft".into())
}

/// The narrow rules for `bridge` in iptables' FORWARD chain (inserted first).
fn iptables_rules(bridge: &str) -> [[String; 8]; 2] {
    let rule = |dir: &str| {
        [
            dir,
            bridge,
            "-m",
            "comment",
            "--comment",
            "boxr",
            "-j",
            "ACCEPT",
        ]
        .map(String::from)
    };
    [rule("-o"), rule("-i")]
}

fn iptables(args: &[String]) -> Option<std::process::Output> {
    Command::new(program("iptables")?)
        .arg("-w")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()
}

/// Where iptables' FORWARD chain has a policy of DROP (Docker sets it so), that chain drops
/// what boxr's own table lets through, since a packet must pass every base chain of a hook:
/// inserts two narrow ACCEPT rules for `bridge` there (as Docker and netavark's iptables
/// driver do), through the `iptables` command so that iptables' own tools keep reading that
/// table. boxr's `fwd-BRIDGE` chain still decides what gets into the bridge. Returns whether
/// it did.
pub(super) fn open_iptables_forward(bridge: &str) -> bool {
    let Some(out) = iptables(&["-S".into(), "FORWARD".into()]) else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.lines().any(|l| l.trim() == "-P FORWARD DROP") {
        return false;
    }
    for rule in iptables_rules(bridge) {
        let check: Vec<String> = ["-C", "FORWARD"]
            .map(String::from)
            .into_iter()
            .chain(rule.clone())
            .collect();
        if iptables(&check).is_some_and(|o| o.status.success()) {
            continue;
        }
        let insert: Vec<String> = ["-I", "FORWARD"]
            .map(String::from)
            .into_iter()
            .chain(rule)
            .collect();
        let _ = iptables(&insert);
    }
    true
}

/// Takes [`open_iptables_forward`]'s rules for `bridge` out again (nothing if there are none).
pub(super) fn close_iptables_forward(bridge: &str) {
    for rule in iptables_rules(bridge) {
        let delete: Vec<String> = ["-D", "FORWARD"]
            .map(String::from)
            .into_iter()
            .chain(rule)
            .collect();
        let _ = iptables(&delete);
    }
}

/// Why `nft` did not take a batch.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("cannot run nft: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("cannot talk to nft: {0}")]
    Pipe(#[source] std::io::Error),
    /// nft's own message (its stderr).
    #[error("{0}")]
    Refused(String),
}

fn run(batch: &Value) -> Result<(), NftError> {
    run_nft(&["-j", "-f", "-"], &batch.to_string())
}

fn run_nft(args: &[&str], input: &str) -> Result<(), NftError> {
    let mut child = Command::new(nft())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NftError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).map_err(NftError::Pipe)?;
    }
    let out = child.wait_with_output().map_err(NftError::Pipe)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Creates (or replaces) the rules of `net`, in one transaction.
pub(super) fn apply(net: &Network) -> Result<(), NetError> {
    run(&batch(net)).map_err(|source| NetError::Firewall {
        network: net.name.clone(),
        source,
    })
}

/// Whether `net`'s chains are in place (a firewall reload or `nft flush ruleset` removes
/// them with every other table).
pub(super) fn present(net: &Network) -> bool {
    Command::new(nft())
        .args([
            "list",
            "chain",
            "inet",
            TABLE,
            &format!("fwd-{}", net.bridge),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Removes the rules of the network whose bridge is `bridge` (nothing if they are gone).
pub(super) fn remove(bridge: &str) {
    for name in [format!("fwd-{bridge}"), format!("nat-{bridge}")] {
        let _ = run(&json!({"nftables": [{"delete": {"chain": chain(&name)}}]}));
    }
}

/// One published port in the maps: `map` is `ports-any` or `ports-addr`, `key` and `value`
/// in nft's syntax (`tcp . 8080`, `172.17.0.2 . 80`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Element {
    pub map: String,
    pub key: String,
    pub value: String,
}

/// The table, the port maps and their chains (made again identically by every change).
fn ports_setup() -> String {
    format!(
        "add table inet {TABLE}
add map inet {TABLE} ports-any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map inet {TABLE} ports-addr {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain inet {TABLE} ports-pre {{ type nat hook prerouting priority -100; policy accept; }}
flush chain inet {TABLE} ports-pre
add rule inet {TABLE} ports-pre meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @ports-any
add rule inet {TABLE} ports-pre dnat ip to ip daddr . meta l4proto . th dport map @ports-addr
add chain inet {TABLE} ports-out {{ type nat hook output priority -100; policy accept; }}
flush chain inet {TABLE} ports-out
add rule inet {TABLE} ports-out meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to meta l4proto . th dport map @ports-any
add rule inet {TABLE} ports-out ip daddr != 127.0.0.0/8 dnat ip to ip daddr . meta l4proto . th dport map @ports-addr
"
    )
}

fn element_line(verb: &str, e: &Element, with_value: bool) -> String {
    let value = if with_value {
        format!(" : {}", e.value)
    } else {
        String::new()
    };
    format!(
        "{verb} element inet {TABLE} {} {{ {}{value} }}\n",
        e.map, e.key
    )
}

/// Adds published ports to the maps, in one transaction.
pub(super) fn publish(elements: &[Element]) -> Result<(), NftError> {
    let mut text = ports_setup();
    for e in elements {
        text += &element_line("add", e, true);
    }
    run_nft(&["-f", "-"], &text)
}

/// Takes published ports out of the maps (those still there: a transaction fails whole when
/// one is gone, so then one at a time).
pub(super) fn unpublish(elements: &[Element]) {
    if elements.is_empty() {
        return;
    }
    let all: String = elements
        .iter()
        .map(|e| element_line("delete", e, false))
        .collect();
    if run_nft(&["-f", "-"], &all).is_err() {
        for e in elements {
            let _ = run_nft(&["-f", "-"], &element_line("delete", e, false));
        }
    }
    // The last published port takes the maps and chains with it (the caller holds the
    // networks lock, so no port is being added meanwhile).
    let has_elements = |map: &str| {
        Command::new(nft())
            .args(["-j", "list", "map", "inet", TABLE, map])
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
            .and_then(|v| {
                v["nftables"].as_array().map(|a| {
                    a.iter()
                        .any(|o| o["map"]["elem"].as_array().is_some_and(|e| !e.is_empty()))
                })
            })
            .unwrap_or(false)
    };
    if !has_elements("ports-any") && !has_elements("ports-addr") {
        let _ = run_nft(
            &["-f", "-"],
            &format!(
                "delete chain inet {TABLE} ports-pre\ndelete chain inet {TABLE} ports-out\n\
                 delete map inet {TABLE} ports-any\ndelete map inet {TABLE} ports-addr\n"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_network_has_no_masquerade_and_no_egress() {
        let mut net = Network {
            name: "n".into(),
            id: "0".repeat(64),
            subnet: "172.18.0.0/16".parse().unwrap(),
            gateway: "172.18.0.1".parse().unwrap(),
            internal: false,
            bridge: "br-000000000000".into(),
            created: String::new(),
            leases: Default::default(),
            names: Default::default(),
        };
        let text = batch(&net).to_string();
        assert!(text.contains("masquerade"));
        assert!(text.contains(r#""addr":"172.18.0.0","len":16"#));
        net.internal = true;
        let text = batch(&net).to_string();
        assert!(!text.contains("masquerade"));
        assert_eq!(text.matches(r#""drop":null"#).count(), 2);
    }
}
