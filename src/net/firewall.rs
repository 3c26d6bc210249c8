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
//! chain accepts its own traffic.

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
    if net.internal {
        cmds.push(rule(
            &fwd,
            vec![iface("iifname", "==", br), json!({"drop": null})],
        ));
    } else {
        cmds.push(rule(
            &nat,
            vec![
                json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"prefix": {"addr": net.subnet.base().to_string(), "len": net.subnet.prefix()}}}}),
                iface("oifname", "!=", br),
                json!({"masquerade": null}),
            ],
        ));
    }
    json!({"nftables": cmds})
}

/// The `nft` program: on the PATH, else where Debian and most distributions install it (a
/// PATH without the sbin directories is common for services and `sudo -u`).
fn nft() -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("nft"))
            .find(|f| f.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin/nft", "/sbin/nft"]
                .into_iter()
                .map(std::path::PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| "nft".into())
}

fn run(batch: &Value) -> Result<(), String> {
    let mut child = Command::new(nft())
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.to_string().as_bytes())
            .map_err(|e| format!("cannot write to nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Creates (or replaces) the rules of `net`, in one transaction.
pub(super) fn apply(net: &Network) -> Result<(), NetError> {
    run(&batch(net)).map_err(|message| NetError::Firewall {
        network: net.name.clone(),
        message,
    })
}

/// Removes the rules of the network whose bridge is `bridge` (nothing if they are gone).
pub(super) fn remove(bridge: &str) {
    for name in [format!("fwd-{bridge}"), format!("nat-{bridge}")] {
        let _ = run(&json!({"nftables": [{"delete": {"chain": chain(&name)}}]}));
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
