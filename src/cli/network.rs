//! `boxr network create|ls|inspect|rm|prune|connect|disconnect|reload`.

use super::format::table;
use super::{Settings, exit, fail_with};
use crate::net::{self, CreateOptions};
use crate::store::{Access, Store};

#[derive(Debug, clap::Subcommand)]
pub enum NetworkCommand {
    /// Create a bridge network
    Create {
        /// Its subnet (IPv4 CIDR; default: the next free one of 172.18-31.0.0/16, 192.168.N.0/20)
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// The bridge's address (default: the subnet's first host address)
        #[arg(long, value_name = "IP")]
        gateway: Option<String>,
        /// No traffic in or out of the network: its containers reach only each other
        #[arg(long)]
        internal: bool,
        name: String,
    },
    /// List networks
    #[command(alias = "list")]
    Ls {
        /// Only show names
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container is on (but `bridge`)
    Prune,
    /// Remove networks (refused while a container is on one)
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Connect a container to one more network (a running one gets the interface at once)
    Connect {
        /// A fixed IPv4 address on the network
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
        /// Another name the container answers to on this network
        #[arg(long = "alias", value_name = "NAME", value_parser = parse_alias)]
        aliases: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network (it keeps at least one)
    Disconnect {
        /// Accepted for Docker's sake: disconnecting never waits for the container
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Make boxr's firewall rules again (after a firewall reload removed them) and put back the
    /// published ports of running containers
    Reload,
}

/// A name a container answers to (`--alias`, `--network-alias`, `--hostname`): a hostname, as
/// the manifest checks it.
pub(super) fn parse_alias(s: &str) -> Result<String, crate::values::Bad> {
    crate::values::parse_hostname(s)
}

pub fn network(cmd: &NetworkCommand, settings: &Settings) -> i32 {
    let store = match Store::open(&settings.root, Access::Shared) {
        Ok(s) => s,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    // A firewall reload (or `nft flush ruleset`) takes boxr's table with the others: every
    // network command puts it back first.
    let reloaded = match net::reload(&store, matches!(cmd, NetworkCommand::Reload)) {
        Ok(r) => r,
        Err(e) => return fail_with(&settings.printer, &e),
    };
    match cmd {
        NetworkCommand::Reload => {
            settings.printer.out(format!(
                "restored the rules of {} network{} and the ports of {} container{}",
                reloaded.networks.len(),
                if reloaded.networks.len() == 1 {
                    ""
                } else {
                    "s"
                },
                reloaded.published,
                if reloaded.published == 1 { "" } else { "s" },
            ));
            exit::OK
        }
        NetworkCommand::Create {
            subnet,
            gateway,
            internal,
            name,
        } => {
            let opts = CreateOptions {
                name: name.clone(),
                subnet: subnet.clone(),
                gateway: gateway.clone(),
                internal: *internal,
            };
            match net::create(&store, &opts) {
                Ok(n) => {
                    settings.printer.data(format!("{}\n", n.id));
                    exit::OK
                }
                Err(e) => fail_with(&settings.printer, &e),
            }
        }
        NetworkCommand::Ls { quiet } => {
            // The default network is always listed, as Docker's `bridge` is.
            let nets = match net::inspect(&store, net::DEFAULT).and_then(|_| net::list(&store)) {
                Ok(n) => n,
                Err(e) => return fail_with(&settings.printer, &e),
            };
            if *quiet {
                let names: String = nets.iter().map(|n| format!("{}\n", n.name)).collect();
                settings.printer.data(names);
                return exit::OK;
            }
            let mut rows = vec![
                ["NETWORK ID", "NAME", "DRIVER", "SUBNET", "INTERNAL"]
                    .map(String::from)
                    .to_vec(),
            ];
            for n in &nets {
                rows.push(vec![
                    n.id[..12].to_owned(),
                    n.name.clone(),
                    "bridge".into(),
                    n.subnet.to_string(),
                    n.internal.to_string(),
                ]);
            }
            settings.printer.data(table(&rows));
            exit::OK
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            let mut code = exit::OK;
            for name in names {
                match net::inspect(&store, name) {
                    Ok(n) => out.push(serde_json::json!({
                        "Name": n.name,
                        "Id": n.id,
                        "Created": n.created,
                        "Driver": "bridge",
                        "Internal": n.internal,
                        "IPAM": {"Config": [{"Subnet": n.subnet.to_string(), "Gateway": n.gateway}]},
                        "Options": {"com.docker.network.bridge.name": n.bridge},
                        "Containers": n.leases.iter().map(|(id, ip)| {
                            let names = n.names.get(id);
                            (id.clone(), serde_json::json!({
                                "IPv4Address": format!("{ip}/{}", n.subnet.prefix()),
                                "Name": names.and_then(|v| v.first()),
                                "Aliases": names,
                            }))
                        }).collect::<serde_json::Map<_, _>>(),
                    })),
                    Err(e) => {
                        settings.printer.diagnostic(&e);
                        code = exit::INVALID;
                    }
                }
            }
            let text = serde_json::to_string_pretty(&out).expect("serializes");
            settings.printer.data(format!("{text}\n"));
            code
        }
        NetworkCommand::Connect {
            ip,
            aliases,
            network,
            container,
        } => {
            match crate::container::network::connect(
                &store,
                container,
                network,
                ip.as_deref(),
                aliases,
            ) {
                Ok(_) => exit::OK,
                Err(e) => fail_with(&settings.printer, &e),
            }
        }
        NetworkCommand::Disconnect {
            network, container, ..
        } => match crate::container::network::disconnect(&store, container, network) {
            Ok(()) => exit::OK,
            Err(e) => fail_with(&settings.printer, &e),
        },
        NetworkCommand::Prune => match net::prune(&store) {
            Ok(names) => {
                for n in names {
                    settings.printer.out(n);
                }
                exit::OK
            }
            Err(e) => fail_with(&settings.printer, &e),
        },
        NetworkCommand::Rm { names } => {
            let mut code = exit::OK;
            for name in names {
                match net::remove(&store, name) {
                    Ok(()) => settings.printer.out(name),
                    Err(e) => {
                        settings.printer.diagnostic(&e);
                        code = exit::INVALID;
                    }
                }
            }
            code
        }
    }
}
