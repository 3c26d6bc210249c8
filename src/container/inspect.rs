//! `boxr inspect CONTAINER`: what a container is, in Docker's key names, from its files: the
//! state, its config and sandbox spec (or, after `update`, its monitor's copy), its networks and
//! ports.

use std::collections::BTreeMap;
use std::fs;

use serde_json::Value;

use super::monitor::MonitorSpec;
use super::state::{Info, STATE, StateFile, Status, paused, ports, read_json, status};
use crate::sandbox::spec::{MountSpec, NetworkMode, SandboxSpec};
use crate::store::Store;
use crate::values::RestartPolicy;

/// `boxr inspect CONTAINER`: Docker's keys where they exist, plus `State.MonitorPid` and
/// `State.MonitorLost` (a running container whose monitor is gone).
pub fn inspect(store: &Store, info: &Info) -> Value {
    let config = read_json(&info.dir.join("config.json")).unwrap_or(Value::Null);
    // The limits and restart policy as `update` left them (monitor.json), else as created.
    let monitor: Option<MonitorSpec> = fs::read(info.dir.join("monitor.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let spec: Option<SandboxSpec> = monitor
        .as_ref()
        .and_then(|m| serde_json::from_value(m.sandbox.clone()).ok())
        .or_else(|| {
            read_json(&info.dir.join("spec.json")).and_then(|v| serde_json::from_value(v).ok())
        });
    let state = StateFile::read(&info.dir, STATE).unwrap_or_default();
    let st = status(info);
    let monitor_lost = matches!(
        st,
        Status::Running {
            monitor_lost: true,
            ..
        }
    );
    let (status, running, pid, code, oom) = match &st {
        Status::Created => ("created", false, 0, 0, false),
        Status::Running { pid, .. } => ("running", true, *pid, 0, false),
        Status::Exited { code, oom, .. } => ("exited", false, 0, code.unwrap_or(-1), *oom),
        Status::Restarting { code } => ("restarting", false, 0, code.unwrap_or(-1), false),
    };
    let mut v = serde_json::json!({
        "Id": info.id,
        "Name": info.name.as_ref().map(|n| format!("/{n}")).unwrap_or_default(),
        "Created": info.created,
        "Image": config["ImageId"],
        "Config": {
            "Image": info.image,
            "Cmd": info.args,
            "Labels": info.labels,
        },
        "RestartCount": state.restart_count,
        "Path": info.args.first(),
        "Args": info.args.get(1..).unwrap_or_default(),
        "State": {
            "Status": if running && paused(info) { "paused" } else { status },
            "Running": running,
            "Paused": running && paused(info),
            "Pid": pid,
            "ExitCode": code,
            "OOMKilled": oom,
            "StartedAt": state.started_at,
            "FinishedAt": state.finished_at,
            "MonitorPid": state.monitor_pid,
            "MonitorLost": monitor_lost,
        },
    });
    // Only for a container with a health check, as Docker has it.
    if let Some(h) = state.health {
        v["State"]["Health"] = h;
    }
    // Every network the container is on, its first network's in the top-level keys.
    let eps = crate::net::endpoints(store, &info.id);
    let mut networks = serde_json::Map::new();
    for ep in &eps {
        networks.insert(
            ep.network.clone(),
            serde_json::json!({
                "IPAddress": ep.ip, "IPPrefixLen": ep.prefix, "Gateway": ep.gateway,
                "MacAddress": ep.mac,
            }),
        );
    }
    v["NetworkSettings"] = match eps.first() {
        Some(ep) => serde_json::json!({
            "IPAddress": ep.ip, "IPPrefixLen": ep.prefix, "Gateway": ep.gateway,
            "MacAddress": ep.mac,
            "Networks": networks,
        }),
        None => serde_json::json!({"Networks": {}}),
    };
    // Docker's maps: "80/tcp" → [{HostIp, HostPort}], as asked and as held now.
    let requested = crate::net::publish::requests(&info.dir);
    let mut bindings = serde_json::Map::new();
    let mut held = serde_json::Map::new();
    for r in &requested {
        let key = format!("{}/{}", r.container_port, r.proto);
        let port = match r.host_ports {
            (0, 0) => String::new(),
            (a, b) if a == b => a.to_string(),
            (a, b) => format!("{a}-{b}"),
        };
        let ip = r.host_ip.map(|i| i.to_string()).unwrap_or_default();
        if let Value::Array(a) = bindings
            .entry(key.clone())
            .or_insert(Value::Array(Vec::new()))
        {
            a.push(serde_json::json!({"HostIp": ip, "HostPort": port}));
        }
        held.insert(key, Value::Null);
    }
    for p in ports(info, &st) {
        let entry = held.entry(p.private()).or_insert(Value::Null);
        if !entry.is_array() {
            *entry = Value::Array(Vec::new());
        }
        if let Value::Array(a) = entry {
            a.push(serde_json::json!({"HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string()}));
        }
    }
    if v["NetworkSettings"]["IPAddress"].is_string() {
        v["NetworkSettings"]["Ports"] = Value::Object(held);
    }
    let exposed: BTreeMap<String, Value> = store
        .resolve(config["ImageId"].as_str().unwrap_or_default())
        .ok()
        .and_then(|img| img.config.config.and_then(|c| c.exposed_ports))
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .chain(bindings.keys().cloned())
        .map(|k| (k, serde_json::json!({})))
        .collect();
    v["Config"]["ExposedPorts"] = serde_json::json!(exposed);
    v["HostConfig"] = serde_json::json!({"PortBindings": bindings});
    if let Some(spec) = &spec {
        config_of(&mut v, spec);
        host_config(&mut v, store, info, spec, monitor.as_ref());
    }
    v
}

/// `Config`'s process keys, from the container's sandbox spec.
fn config_of(v: &mut Value, spec: &SandboxSpec) {
    let p = &spec.process;
    let c = &mut v["Config"];
    c["Hostname"] = serde_json::json!(spec.hostname);
    c["Env"] = serde_json::json!(p.env);
    c["User"] = serde_json::json!(p.user.clone().unwrap_or_default());
    c["WorkingDir"] = serde_json::json!(p.cwd);
    c["Tty"] = serde_json::json!(p.tty);
    c["OpenStdin"] = serde_json::json!(p.stdin);
}

/// `HostConfig` (limits, binds, restart policy, network mode, ...) and `Mounts`, as Docker
/// names them.
fn host_config(
    v: &mut Value,
    store: &Store,
    info: &Info,
    spec: &SandboxSpec,
    monitor: Option<&MonitorSpec>,
) {
    let volumes = store.volumes_dir();
    let mut binds = Vec::new();
    let mut tmpfs = serde_json::Map::new();
    let mut mounts = Vec::new();
    for m in &spec.mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let mode = if *read_only { "ro" } else { "" };
                // A named (or anonymous) volume is a directory of the store's volumes/.
                let volume = source
                    .strip_prefix(&volumes)
                    .ok()
                    .and_then(|r| r.iter().next())
                    .map(|n| n.to_string_lossy().into_owned());
                let name = volume
                    .clone()
                    .unwrap_or_else(|| source.display().to_string());
                binds.push(match mode {
                    "" => format!("{name}:{target}"),
                    m => format!("{name}:{target}:{m}"),
                });
                mounts.push(serde_json::json!({
                    "Type": if volume.is_some() { "volume" } else { "bind" },
                    "Name": volume, "Source": source, "Destination": target,
                    "Mode": mode, "RW": !read_only,
                }));
            }
            MountSpec::Tmpfs { target, options } => {
                tmpfs.insert(target.clone(), serde_json::json!(options));
                mounts.push(serde_json::json!({
                    "Type": "tmpfs", "Source": "", "Destination": target, "Mode": options,
                    "RW": true,
                }));
            }
        }
    }
    let limits = spec
        .cgroup
        .as_ref()
        .map(|c| c.limits.clone())
        .unwrap_or_default();
    let restart = monitor.map(|m| m.restart).unwrap_or_default();
    let (name, max) = match restart {
        RestartPolicy::No => ("no", 0),
        RestartPolicy::OnFailure { max_retries } => ("on-failure", max_retries.unwrap_or(0)),
        RestartPolicy::Always => ("always", 0),
        RestartPolicy::UnlessStopped => ("unless-stopped", 0),
    };
    let network = match (
        &spec.network,
        crate::net::endpoints(store, &info.id).first(),
    ) {
        (_, Some(ep)) => ep.network.clone(),
        (NetworkMode::Host, None) => "host".to_owned(),
        // Another container's: its id is the name of the directory its pid file is in.
        (NetworkMode::Sandbox(pid_file), None) => format!(
            "container:{}",
            pid_file
                .parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        (NetworkMode::Join(path), None) => format!("ns:{}", path.display()),
        (NetworkMode::None, None) => "none".to_owned(),
    };
    let h = &mut v["HostConfig"];
    h["Binds"] = serde_json::json!(binds);
    h["Tmpfs"] = Value::Object(tmpfs);
    h["Memory"] = serde_json::json!(limits.memory.unwrap_or(0));
    h["MemorySwap"] = serde_json::json!(limits.memory_swap.unwrap_or(0));
    h["MemoryReservation"] = serde_json::json!(limits.memory_reservation.unwrap_or(0));
    h["NanoCpus"] = serde_json::json!(limits.cpus.map_or(0, |c| (c * 1e9).round() as u64));
    h["CpuShares"] = serde_json::json!(limits.cpu_shares.unwrap_or(0));
    h["CpusetCpus"] = serde_json::json!(limits.cpuset_cpus.unwrap_or_default());
    h["CpusetMems"] = serde_json::json!(limits.cpuset_mems.unwrap_or_default());
    h["PidsLimit"] = serde_json::json!(limits.pids);
    h["BlkioWeight"] = serde_json::json!(limits.blkio_weight.unwrap_or(0));
    h["RestartPolicy"] = serde_json::json!({"Name": name, "MaximumRetryCount": max});
    h["NetworkMode"] = serde_json::json!(network);
    h["Privileged"] = serde_json::json!(spec.security.privileged);
    h["ReadonlyRootfs"] = serde_json::json!(spec.rootfs.read_only);
    h["CapAdd"] = serde_json::json!(spec.security.added);
    h["Init"] = serde_json::json!(spec.init);
    h["ShmSize"] = serde_json::json!(spec.shm_size.unwrap_or(64 << 20));
    v["Mounts"] = serde_json::json!(mounts);
}
