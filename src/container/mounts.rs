//! `-v`, `--mount`, `--tmpfs` and the image's volumes: bind mounts, named and anonymous volumes
//! (a new volume gets what the image has at its path, as in Docker).

use super::*;

/// A `--mount` as the `-v` or `--tmpfs` value it means.
pub(super) enum MountFlag {
    Volume(String),
    Tmpfs(String),
}

/// `--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,tmpfs-size=N][,tmpfs-mode=M]`
/// (`src`, `dst` and `destination`, `ro` are accepted too; the type defaults to `volume`).
pub(super) fn mount_flag(m: &str) -> Result<MountFlag, ContainerError> {
    let bad = |why: String| {
        invalid(
            format!("--mount {m}: {why}"),
            Some("e.g. --mount type=bind,source=/host/dir,target=/dir,readonly"),
        )
    };
    let (mut kind, mut source, mut target, mut ro) = ("volume", None, None, false);
    let mut tmpfs_opts = Vec::new();
    for field in m.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = v,
            "source" | "src" => source = Some(v),
            "target" | "destination" | "dst" => target = Some(v),
            "readonly" | "ro" => {
                ro = match v {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad(format!("`{field}`: true or false"))),
                }
            }
            "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
            _ => return Err(bad(format!("unknown field `{k}`"))),
        }
    }
    let target = target.ok_or_else(|| bad("no target".into()))?;
    let suffix = if ro { ":ro" } else { "" };
    match (kind, source) {
        ("bind", Some(s)) if s.starts_with('/') => {
            Ok(MountFlag::Volume(format!("{s}:{target}{suffix}")))
        }
        ("bind", _) => Err(bad("a bind mount needs an absolute source".into())),
        ("volume", Some(s)) if !s.is_empty() => {
            Ok(MountFlag::Volume(format!("{s}:{target}{suffix}")))
        }
        ("volume", _) if !ro => Ok(MountFlag::Volume(target.to_owned())),
        ("volume", _) => Err(bad("an anonymous volume cannot be read-only".into())),
        ("tmpfs", None) => {
            if tmpfs_opts.is_empty() {
                tmpfs_opts.push("mode=1777".into());
            }
            Ok(MountFlag::Tmpfs(format!(
                "{target}:{}",
                tmpfs_opts.join(",")
            )))
        }
        ("tmpfs", Some(_)) => Err(bad("a tmpfs has no source".into())),
        (other, _) => Err(bad(format!("unknown type `{other}` (bind, volume, tmpfs)"))),
    }
}

/// The mounts of `-v` and `--tmpfs`, and the targets of `-v /path` (anonymous volumes, made
/// once every option is checked).
pub(super) fn mounts(
    store: &Store,
    opts: &RunOptions,
) -> Result<(Vec<MountSpec>, Vec<String>), ContainerError> {
    let mut out = Vec::new();
    let mut anonymous = Vec::new();
    // `--mount` says the same as `-v` and `--tmpfs`, in docker's other syntax.
    let (mut volumes, mut tmpfs) = (opts.volumes.clone(), opts.tmpfs.clone());
    for m in &opts.mounts {
        match mount_flag(m)? {
            MountFlag::Volume(v) => volumes.push(v),
            MountFlag::Tmpfs(t) => tmpfs.push(t),
        }
    }
    for v in &volumes {
        let parts: Vec<&str> = v.split(':').collect();
        if let [target] = parts.as_slice()
            && target.starts_with('/')
        {
            anonymous.push((*target).to_owned());
            continue;
        }
        let (src, dst, ro) = match parts.as_slice() {
            [s, d] => (*s, *d, false),
            [s, d, "ro"] => (*s, *d, true),
            [s, d, "rw"] => (*s, *d, false),
            _ => {
                return Err(invalid(
                    format!("invalid volume `{v}`"),
                    Some(
                        "write -v /host/path:/container/path[:ro], -v NAME:/container/path[:ro] or -v /container/path (an anonymous volume)",
                    ),
                ));
            }
        };
        if !dst.starts_with('/') {
            return Err(invalid(
                format!("volume target `{dst}` is not an absolute path"),
                None,
            ));
        }
        let source = if src.starts_with('/') {
            fs::canonicalize(src).map_err(io_err("find the volume source", Path::new(src)))?
        } else if crate::store::valid_volume_name(src) {
            store.volume(src)?
        } else {
            return Err(invalid(
                format!("`{src}` is neither an absolute host path nor a volume name"),
                Some(
                    "host paths start with `/`; volume names are letters, digits, `_`, `.` and `-`",
                ),
            ));
        };
        out.push(MountSpec::Bind {
            source,
            target: dst.to_owned(),
            read_only: ro,
        });
    }
    for t in &tmpfs {
        let (target, options) = match t.split_once(':') {
            Some((p, o)) => (p, o.to_owned()),
            None => (t.as_str(), "mode=1777".to_owned()),
        };
        if !target.starts_with('/') {
            return Err(invalid(
                format!("tmpfs target `{target}` is not an absolute path"),
                None,
            ));
        }
        out.push(MountSpec::Tmpfs {
            target: target.to_owned(),
            options,
        });
    }
    Ok((out, anonymous))
}

/// Makes the container's anonymous volumes: one for each `-v /path`, and one for each volume
/// the image declares that no mount covers, as Docker does. Returns their names (64 hex
/// digits); they are removed with the container by `rm -v` and `--rm`.
pub(super) fn anonymous_volumes(
    store: &Store,
    img: &crate::store::Image,
    mounts: &mut Vec<MountSpec>,
    targets: Vec<String>,
) -> Result<Vec<String>, ContainerError> {
    let covered = |mounts: &[MountSpec], t: &str| {
        mounts.iter().any(|m| match m {
            MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => {
                target.trim_end_matches('/') == t.trim_end_matches('/')
            }
        })
    };
    let declared = img
        .config
        .config
        .as_ref()
        .and_then(|c| c.volumes.as_ref())
        .map(|v| v.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for target in targets.into_iter().chain(declared) {
        if covered(mounts, &target) {
            continue;
        }
        let name = new_id()?;
        let source = match store.volume(&name) {
            Ok(s) => s,
            Err(e) => {
                for n in &names {
                    let _ = store.remove_volume(n);
                }
                return Err(e.into());
            }
        };
        names.push(name);
        mounts.push(MountSpec::Bind {
            source,
            target,
            read_only: false,
        });
    }
    Ok(names)
}

/// A named volume that is still empty gets what the image has at its mount point (owners and
/// modes kept), as Docker does on a volume's first use.
pub(super) fn populate_new_volumes(
    store: &Store,
    mounts: &[MountSpec],
    lowers: &[PathBuf],
) -> Result<(), ContainerError> {
    let volumes = store.volumes_dir();
    for m in mounts {
        let MountSpec::Bind { source, target, .. } = m else {
            continue;
        };
        let empty = fs::read_dir(source).is_ok_and(|mut d| d.next().is_none());
        if !source.starts_with(&volumes) || !empty || lowers.is_empty() {
            continue;
        }
        let scratch = store.tmp_dir("populate-")?;
        let spec = sandbox::fs_helper::FsSpec {
            rootfs: None,
            source: Some(sandbox::fs_helper::FsSource::Layers {
                lowers: lowers.to_vec(),
                target: scratch.clone(),
            }),
            op: sandbox::fs_helper::FsOp::Populate {
                path: target.clone(),
                into: source.clone(),
            },
        };
        let out = sandbox::spawn_fs_helper(
            &spec,
            std::process::Stdio::null(),
            std::process::Stdio::piped(),
        )
        .map_err(ContainerError::from)
        .and_then(|c| {
            c.wait_with_output()
                .map_err(|e| invalid(format!("populate the volume: {e}"), None))
        });
        let _ = crate::store::remove_dir_tree(&scratch);
        let out = out?;
        if !out.status.success() {
            return Err(invalid(
                format!(
                    "cannot fill the new volume {} from the image: {}",
                    source.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                None,
            ));
        }
    }
    Ok(())
}
