//! A new container: its options checked first, then its directory, network, /etc files, cgroup
//! and sandbox spec (`prepare`), and `boxr run` in the foreground (`run`).

use super::*;

/// Prepares the container's directory and its sandbox spec.
pub fn prepare(store: &Store, opts: &RunOptions) -> Result<SandboxSpec, ContainerError> {
    prepare_from(store, opts, store.resolve(&opts.image))
}

/// [`prepare`] with the image already looked up (or why it could not be).
pub(super) fn prepare_from(
    store: &Store,
    opts: &RunOptions,
    img: Result<crate::store::Image, StoreError>,
) -> Result<SandboxSpec, ContainerError> {
    // Every option is checked before anything is created.
    if let Some(f) = &opts.cidfile
        && f.exists()
    {
        return Err(invalid(
            format!("--cidfile {}: the file exists", f.display()),
            Some("another container may have written it: remove it first"),
        ));
    }
    let rlimits: Vec<sandbox::Rlimit> = opts
        .ulimits
        .iter()
        .map(|u| sandbox::Rlimit::parse(u).map_err(super::invalid_value))
        .collect::<Result<_, _>>()?;
    let (mut extra_mounts, anonymous) = mounts(store, opts)?;
    user_namespace(opts)?;
    rootless_check(opts)?;
    for h in &opts.hooks {
        let p = Path::new(h);
        if !p.is_absolute() || !p.is_file() {
            return Err(invalid(
                format!("--hook {h}: not an absolute path to a program"),
                None,
            ));
        }
    }
    let extra_env = cli_env(opts)?;
    if !opts.network_aliases.is_empty()
        && !matches!(&opts.network, Some(Network::Named(n)) if n != crate::net::DEFAULT)
    {
        return Err(invalid(
            "--network-alias needs a user network (`boxr network create`)",
            Some("the default network `bridge` has no names, as Docker's"),
        ));
    }
    if !opts.publish.is_empty() && !matches!(opts.network, Some(Network::Named(_))) {
        return Err(invalid(
            "published ports (-p) need a bridge network (--network bridge or NAME)",
            Some("with --network host the container's ports are the host's already"),
        ));
    }
    let security = security(store, opts)?;
    let mut limits = limits(&opts.limits, opts.privileged)?;
    let devices = opts
        .devices
        .iter()
        .map(|d| host_device(d))
        .collect::<Result<Vec<_>, _>>()?;
    // Each one is allowed in the devices cgroup too (there is no list when privileged).
    if let Some(rules) = limits.devices.as_mut() {
        for (d, access) in &devices {
            rules.push(sandbox::cgroup::DeviceRule {
                kind: d.kind,
                major: Some(d.major as u32),
                minor: Some(d.minor as u32),
                access: access.clone(),
            });
        }
    }
    let confinement = Confinement {
        security,
        limits,
        devices: devices.into_iter().map(|(d, _)| d).collect(),
    };
    let img = img?;
    let run = img.config.config.clone().unwrap_or_default();
    let args = process_args(
        run.entrypoint.as_deref(),
        run.cmd.as_deref(),
        opts.entrypoint.as_deref(),
        &opts.command,
    );
    if args.is_empty() {
        return Err(invalid(
            format!(
                "no command specified: the image {} has no entrypoint or cmd",
                opts.image
            ),
            Some("give the command after the image: boxr run IMAGE COMMAND [ARG...]"),
        ));
    }
    // A pulled image's layers are unpacked when first used.
    store.unpack_image(&img)?;
    let mut lowers = Vec::new();
    for d in img.config.rootfs.diff_ids.iter().rev() {
        if !store.has_layer(d) {
            return Err(invalid(
                format!("layer {d} of {} is missing from the store", opts.image),
                Some("load or import the image again"),
            ));
        }
        lowers.push(store.layer_root(d));
    }
    let anonymous = anonymous_volumes(store, &img, &mut extra_mounts, anonymous)?;
    // What could not be removed, for the error that made the removal needed.
    let remove_anonymous = |left: &mut Vec<String>| {
        for n in &anonymous {
            if let Err(e) = store.remove_volume(n) {
                left.push(format!("volume {n}: {e}"));
            }
        }
    };
    if let Err(e) = populate_new_volumes(store, &extra_mounts, &lowers) {
        let mut left = Vec::new();
        remove_anonymous(&mut left);
        return Err(e.with_cleanup(left));
    }
    let claimed = new_id().and_then(|id| match &opts.name {
        Some(n) => state::claim_name(store, n, &id).map(|()| id),
        None => Ok(id),
    });
    let id = match claimed {
        Ok(id) => id,
        Err(e) => {
            let mut left = Vec::new();
            remove_anonymous(&mut left);
            return Err(e.with_cleanup(left));
        }
    };
    let dir = store.container_dir(&id);
    let result = create(
        store,
        opts,
        &img,
        &id,
        &dir,
        args,
        lowers,
        rlimits,
        extra_mounts,
        extra_env,
        confinement,
        &anonymous,
    );
    // `--cidfile`: written once the container exists, never over another file.
    let result = result.and_then(|spec| match &opts.cidfile {
        Some(f) => fs::File::options()
            .write(true)
            .create_new(true)
            .open(f)
            .and_then(|mut file| std::io::Write::write_all(&mut file, id.as_bytes()))
            .map(|()| spec)
            .map_err(io_err("write the --cidfile", f)),
        None => Ok(spec),
    });
    result.map_err(|e| {
        let mut left = Vec::new();
        remove_anonymous(&mut left);
        if let Err(c) = crate::net::release(store, &id) {
            left.push(format!("its network: {c}"));
        }
        if let Err(c) = crate::store::remove_dir_tree(&dir) {
            left.push(format!("{}: {c}", dir.display()));
        }
        if let Some(n) = &opts.name
            && let Err(c) = fs::remove_file(store.name_file(n))
            && c.kind() != std::io::ErrorKind::NotFound
        {
            left.push(format!("the name {n}: {c}"));
        }
        e.with_cleanup(left)
    })
}

/// A container's labels: the image's, then `--label-file` lines, then `--label` (a later value
/// of a key wins), as Docker merges them.
pub(super) fn container_labels(
    opts: &RunOptions,
    image: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<std::collections::BTreeMap<String, String>, ContainerError> {
    let mut labels = image.cloned().unwrap_or_default();
    let mut given = Vec::new();
    for f in &opts.label_files {
        let text = fs::read_to_string(f)
            .map_err(|e| invalid(format!("--label-file {}: {e}", f.display()), None))?;
        given.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    given.extend(opts.labels.iter().cloned());
    for l in given {
        let (k, v) = l.split_once('=').unwrap_or((&l, ""));
        if k.is_empty() {
            return Err(invalid(format!("--label {l}: the key is empty"), None));
        }
        labels.insert(k.to_owned(), v.to_owned());
    }
    Ok(labels)
}

/// What confines a new container: capabilities, seccomp and the like, its cgroup's limits, and
/// the host devices it gets.
pub(super) struct Confinement {
    security: sandbox::SecuritySpec,
    limits: sandbox::cgroup::Limits,
    devices: Vec<sandbox::DeviceSpec>,
}

/// `--device HOST[:CONTAINER][:PERMS]`, as docker reads it: the node and the cgroup access
/// (`rwm` by default, a subset of it otherwise).
pub(super) fn host_device(arg: &str) -> Result<(sandbox::DeviceSpec, String), ContainerError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let perms = |p: &str| !p.is_empty() && p.len() <= 3 && p.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = arg.split(':').collect();
    let (host, path, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms(p) => (*h, *h, *p),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if perms(p) => (*h, *c, *p),
        _ => {
            return Err(invalid(
                format!("--device {arg}: expected HOST[:CONTAINER][:PERMS]"),
                Some("PERMS is made of r, w and m, e.g. /dev/sdc:/dev/xvdc:r"),
            ));
        }
    };
    if !host.starts_with('/') || !path.starts_with('/') {
        return Err(invalid(
            format!("--device {arg}: the paths must be absolute"),
            None,
        ));
    }
    let m =
        fs::metadata(host).map_err(|e| invalid(format!("--device {arg}: {host}: {e}"), None))?;
    let kind = if m.file_type().is_char_device() {
        'c'
    } else if m.file_type().is_block_device() {
        'b'
    } else {
        return Err(invalid(
            format!("--device {arg}: {host} is not a device node"),
            None,
        ));
    };
    let rdev = m.rdev();
    Ok((
        sandbox::DeviceSpec {
            host: host.into(),
            path: path.to_owned(),
            kind,
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        },
        access.to_owned(),
    ))
}

/// Creates the container's directory and files, and returns its spec.
#[allow(clippy::too_many_arguments)]
pub(super) fn create(
    store: &Store,
    opts: &RunOptions,
    img: &crate::store::Image,
    id: &str,
    dir: &Path,
    args: Vec<String>,
    mut lowers: Vec<PathBuf>,
    rlimits: Vec<sandbox::Rlimit>,
    extra_mounts: Vec<MountSpec>,
    extra_env: Vec<String>,
    confinement: Confinement,
    anonymous: &[String],
) -> Result<SandboxSpec, ContainerError> {
    let Confinement {
        security,
        limits,
        devices,
    } = confinement;
    let run = img.config.config.clone().unwrap_or_default();
    // `empty`: the one lower layer of an image without layers. Only what is needed: on a file
    // system mounted `discard`, every directory removed at the end costs a discard.
    // The rootfs is mounted on the store's one mount point (in the container's own mount
    // namespace), not on a directory of its own.
    let dirs: &[&str] = match lowers.is_empty() {
        true => &["upper", "work", "empty"],
        false => &["upper", "work"],
    };
    for d in dirs {
        let p = dir.join(d);
        fs::create_dir_all(&p).map_err(io_err("create", &p))?;
    }
    let mount_point = store.rootfs_mount_point();
    fs::create_dir_all(&mount_point).map_err(io_err("create", &mount_point))?;
    let userns = user_namespace(opts)?;
    if let Some(u) = &userns {
        // The rootfs's root directory is the upper dir's: the container's root owns it.
        let uid = IdMap::host_of(&u.uid_map, 0).expect("checked");
        let gid = IdMap::host_of(&u.gid_map, 0).expect("checked");
        for d in dirs.iter().filter(|d| matches!(**d, "upper" | "empty")) {
            let p = dir.join(d);
            std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io_err("chown", &p))?;
        }
    }
    if lowers.is_empty() {
        lowers.push(dir.join("empty"));
    }
    let uts_ns = namespace_share(store, "--uts", opts.uts.as_deref(), &["host"])?;
    if opts.userns.is_some() || !opts.uidmaps.is_empty() || !opts.gidmaps.is_empty() {
        let shared = [&opts.pid, &opts.ipc, &opts.uts]
            .into_iter()
            .flatten()
            .any(|v| !matches!(v.as_str(), "" | "private" | "shareable"));
        if shared {
            return Err(invalid(
                "--pid, --ipc and --uts cannot share a namespace with a user namespace here",
                None,
            ));
        }
    }
    let own_hosts =
        || "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_owned();
    let host_file = |path: &str| fs::read_to_string(path).unwrap_or_default();
    let (network, hostname, hosts, resolv) = match &opts.network {
        Some(Network::Container(name)) => {
            let other = network_container(store, name, opts)?;
            let file = |f: &str| fs::read_to_string(other.dir.join(f)).unwrap_or_default();
            (
                NetworkMode::Sandbox(other.dir.join("pid")),
                file("hostname").trim().to_owned(),
                file("hosts"),
                file("resolv.conf"),
            )
        }
        mode => {
            let exposed: Vec<String> = run
                .exposed_ports
                .as_ref()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let publish = crate::net::ports::merge(
                opts.publish.clone(),
                if opts.publish_all {
                    crate::net::ports::exposed(&exposed)
                } else {
                    Vec::new()
                },
            );
            // Rootless, the default network is pasta's (see `net::pasta`).
            let pasta = crate::rootless::active()
                && matches!(mode, Some(Network::Named(n)) if n == crate::net::DEFAULT);
            let endpoint = match mode {
                Some(Network::Named(_)) if pasta => {
                    crate::net::pasta::attach(store, id, dir, &publish)?;
                    None
                }
                Some(Network::Named(name)) => {
                    let names = super::network::names_on_network(
                        opts.name.as_deref(),
                        id,
                        &opts.network_aliases,
                    );
                    let ep = crate::net::attach(
                        store,
                        name,
                        id,
                        opts.ip.as_deref(),
                        &names,
                        &dir.join("netns"),
                    )?;
                    for more in &opts.more_networks {
                        let Network::Named(more) = more else {
                            return Err(invalid(
                                "only bridge networks can be given more than once (--network)",
                                Some(
                                    "none, host, container: and ns: are a container's only network",
                                ),
                            ));
                        };
                        crate::net::connect(store, more, id, None, &names)?;
                    }
                    // What `inspect` shows as NetworkSettings.
                    state::write_atomic(dir, state::NETWORK, &ep)
                        .map_err(io_err("write", &dir.join(state::NETWORK)))?;
                    if !publish.is_empty() {
                        crate::net::publish::set_requests(store, dir, &ep, &publish)?;
                    }
                    Some(ep)
                }
                _ if !opts.more_networks.is_empty() => {
                    return Err(invalid(
                        "only bridge networks can be given more than once (--network)",
                        Some("none, host, container: and ns: are a container's only network"),
                    ));
                }
                _ if opts.ip.is_some() => {
                    return Err(invalid(
                        "--ip needs a bridge network (--network bridge or NAME)",
                        None,
                    ));
                }
                _ => None,
            };
            let mode = match (mode, &endpoint) {
                (_, Some(ep)) => NetworkMode::Join(ep.netns.clone()),
                _ if pasta => NetworkMode::Join(dir.join("netns")),
                (Some(Network::Mode(m)), None) => m.clone(),
                _ => NetworkMode::None,
            };
            let hosts = match mode {
                NetworkMode::Host => host_file("/etc/hosts"),
                _ => own_hosts(),
            };
            let hostname = match (&uts_ns, &opts.hostname) {
                (NsShare::Host, Some(_)) => {
                    return Err(invalid(
                        "conflicting options: --hostname and --uts host",
                        Some("the container has the host's hostname"),
                    ));
                }
                (NsShare::Host, None) => nix::unistd::gethostname()
                    .map(|h| h.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                (_, Some(h)) => h.clone(),
                (_, None) => id[..12].to_owned(),
            };
            // On a network, its own name resolves to its address (as Docker writes it).
            let hosts = match &endpoint {
                Some(ep) => format!("{hosts}{}\t{hostname}\n", ep.ip),
                None => hosts,
            };
            let hosts =
                hosts + &etc::host_entries(&opts.add_hosts).map_err(super::invalid_value)?;
            // On a network, the network's resolver (on its gateway) answers: the names of the
            // network, and the rest through the host's resolvers (a loopback one included,
            // which the container could not reach itself). The host's search and options stay.
            let host_resolv = match &endpoint {
                None if pasta => crate::net::dns::resolv_conf_for(crate::net::pasta::RESOLVER),
                None => host_file("/etc/resolv.conf"),
                Some(ep) => crate::net::dns::resolv_conf_for(ep.gateway),
            };
            let resolv =
                etc::resolv_conf(&host_resolv, &opts.dns, &opts.dns_search, &opts.dns_options)
                    .map_err(super::invalid_value)?;
            (mode, hostname, hosts, resolv)
        }
    };
    // A network namespace of the container's own: a new one (`none`), or the one boxr made for
    // it on a bridge network.
    let own_netns = network == NetworkMode::None || matches!(opts.network, Some(Network::Named(_)));
    let sysctls = etc::sysctls(&opts.sysctls, own_netns).map_err(super::invalid_value)?;
    let shm_size = opts
        .shm_size
        .as_deref()
        .map(|t| {
            crate::values::parse_size(t)
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| invalid(format!("--shm-size {t}: not a size"), Some("e.g. 256m")))
        })
        .transpose()?;
    // What `stop` and the monitor send first (real-time signals too: `SIGRTMIN+3` stops systemd).
    let signal = |s: &str| crate::values::parse_signal(s).map_err(|b| b.reason);
    let stop_signal = match &opts.stop_signal {
        Some(s) => Some(signal(s).map_err(|m| invalid(format!("--stop-signal {s}: {m}"), None))?),
        // An image's signal that cannot be used is ignored: SIGTERM then.
        None => run.stop_signal.as_deref().and_then(|s| signal(s).ok()),
    };
    let mut etc_files = Vec::new();
    for (name, content) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv),
    ] {
        let p = dir.join(name);
        fs::write(&p, content).map_err(io_err("write", &p))?;
        etc_files.push(EtcFile {
            source: p,
            target: format!("/etc/{name}"),
        });
    }
    let mut env = vec![format!("HOSTNAME={hostname}")];
    if opts.tty {
        env.push("TERM=xterm".to_owned());
    }
    merge_env(&mut env, run.env.clone().unwrap_or_default());
    merge_env(&mut env, extra_env);
    let config = serde_json::json!({
        "Id": id,
        "Name": opts.name,
        "Detached": opts.detach,
        "Image": opts.image,
        "ImageId": img.id.to_string(),
        "Args": args,
        // Where `ps`, `stats` and `pause` find the cgroup without reading the whole spec.
        "CgroupPath": format!("boxr/{id}"),
        "AnonymousVolumes": anonymous,
        "Labels": container_labels(opts, run.labels.as_ref())?,
        "StopSignal": stop_signal.map(|s| s.to_string()),
        "StopSignalNumber": stop_signal.map(|s| s.0),
        "StopTimeout": opts.stop_timeout,
        // With nanoseconds, as Docker's: `ps` orders by it (`-n`, `-l`).
        "Created": monitor::now(),
    });
    let cfg = dir.join("config.json");
    fs::write(
        &cfg,
        serde_json::to_vec_pretty(&config).expect("serializes"),
    )
    .map_err(io_err("write", &cfg))?;
    let mut spec = SandboxSpec {
        rootfs: RootfsSpec {
            lowers,
            upper: dir.join("upper"),
            work: dir.join("work"),
            target: mount_point,
            read_only: opts.read_only,
            // A `--rm` container's upper dir is thrown away at its end: no sync of it, ever
            // (its unmount would otherwise write back and flush the disk's cache; podman mounts
            // transient containers so too).
            volatile: opts.remove,
            classic_mount: RootfsSpec::classic_requested(),
            userxattr: crate::rootless::active(),
        },
        hostname,
        network,
        etc_files,
        mounts: extra_mounts,
        process: ProcessSpec {
            args,
            env,
            cwd: opts
                .workdir
                .clone()
                .or(run.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".to_owned()),
            user: opts
                .user
                .clone()
                .or(run.user.clone())
                .filter(|u| !u.is_empty()),
            stdin: opts.interactive,
            tty: opts.tty,
            rlimits,
            group_add: opts.group_add.clone(),
            oom_score_adj: opts.oom_score_adj,
        },
        init: opts.init,
        security,
        owner: None,
        // A foreground container holds the store lock while it runs (gc waits); a detached one
        // cannot, and gc keeps the layers of every container instead.
        keep_fd: (!opts.detach).then(|| store.lock_fd()),
        console_fd: None,
        die_with_parent: false,
        // Rootless, a cgroup only under a subtree delegated to the user (see `rootless_check`),
        // without the devices program (an eBPF program needs privileges of the host's).
        cgroup: match crate::rootless::active() {
            false => Some(sandbox::CgroupSpec {
                path: format!("boxr/{id}"),
                limits,
                journal: Some(store.journal_entry("cgroup", id)),
            }),
            true => crate::rootless::delegated_cgroup().map(|base| sandbox::CgroupSpec {
                path: format!("{base}/boxr/{id}"),
                limits: sandbox::cgroup::Limits {
                    devices: None,
                    ..limits
                },
                journal: Some(store.journal_entry("cgroup", id)),
            }),
        },
        cgroup_sync_fd: None,
        detach: false,
        report_fd: None,
        exit_fd: None,
        userns: userns.clone(),
        rootfs_mounted: false,
        hooks: opts
            .hooks
            .iter()
            .map(|h| sandbox::Hook {
                path: h.into(),
                args: Vec::new(),
                timeout: None,
            })
            .collect(),
        pid_file: Some(dir.join("pid")),
        shm_size,
        sysctls,
        pid_ns: namespace_share(store, "--pid", opts.pid.as_deref(), &["host"])?,
        ipc_ns: namespace_share(
            store,
            "--ipc",
            opts.ipc.as_deref(),
            &["host", "private", "shareable"],
        )?,
        uts_ns: uts_ns.clone(),
        shm_from: None,
        devices,
    };
    // The sandbox records `start` and `die` (each run, when a restart policy applies); a
    // container that stays (no --rm) keeps its exit status and OOM flag, which a detached
    // one's monitor folds into its state.
    record::Record {
        id: id.to_owned(),
        store_root: store.root().to_owned(),
        network: matches!(opts.network, Some(Network::Named(_))),
        boxr: std::env::current_exe().ok(),
        end_file: if opts.detach {
            Some(dir.join(state::EXIT))
        } else {
            (!opts.remove).then(|| dir.join(state::STATE))
        },
        remove: if opts.remove {
            std::iter::once(dir.to_owned())
                .chain(anonymous.iter().map(|n| store.volume_dir(n)))
                .collect()
        } else {
            Vec::new()
        },
    }
    .set(&mut spec);
    // `boxr exec` starts later processes with the same confinement.
    let path = dir.join("spec.json");
    fs::write(&path, serde_json::to_vec(&spec).expect("serializes"))
        .map_err(io_err("write", &path))?;
    // With the container's labels beside, as Docker's events carry them (`--filter label=`).
    let mut attrs = config["Labels"].clone();
    if let Some(a) = attrs.as_object_mut() {
        a.insert("image".into(), serde_json::json!(opts.image));
        a.insert("name".into(), serde_json::json!(opts.name));
    }
    events::record(store.root(), "create", id, attrs);
    Ok(spec)
}
