//! `boxr commit` and `boxr diff`: a container's own changes — its overlay upper dir, less what
//! its mount points left there — as a new image on top of the one it was created from, or as a
//! list of added, changed and deleted paths.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::state::{self, Info, Status};
use super::{ContainerError, invalid};
use crate::layer::stack;
use crate::oci::{self, Descriptor, History, RunConfig};
use crate::sandbox::{IdMap, MountSpec, SandboxSpec};
use crate::store::{Image, Store, StoreError};

/// `boxr commit` options.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// `REPOSITORY[:TAG]` to name the new image (none: only its id).
    pub reference: Option<String>,
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the image's author.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions applied to the image's config (`CMD`, `ENTRYPOINT`,
    /// `ENV`, `WORKDIR`, `USER`, `LABEL`, `EXPOSE`, `VOLUME`, `STOPSIGNAL`).
    pub changes: Vec<String>,
    /// The image's `Created` time, and the clamp of the layer's mtimes (SOURCE_DATE_EPOCH, else
    /// now).
    pub epoch: u64,
}

/// What `diff` reports of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed,
    Deleted,
}

impl Change {
    /// Docker's letter for it.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Changed => 'C',
            Change::Deleted => 'D',
        }
    }
}

fn store_err(e: StoreError) -> ContainerError {
    ContainerError::Store(e)
}

/// The container's sandbox spec, as it was created.
fn spec_of(info: &Info) -> Result<SandboxSpec, ContainerError> {
    let path = info.dir.join("spec.json");
    fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid(format!("cannot read {}", path.display()), None))
}

/// Where the sandbox mounts something over the rootfs: what it may have left in the upper dir.
fn mount_targets(spec: &SandboxSpec) -> Vec<String> {
    let mut targets: Vec<String> = ["/proc", "/dev", "/sys"].map(str::to_owned).to_vec();
    targets.extend(spec.etc_files.iter().map(|f| f.target.clone()));
    targets.extend(spec.mounts.iter().map(|m| match m {
        MountSpec::Bind { target, .. } | MountSpec::Tmpfs { target, .. } => target.clone(),
    }));
    targets
}

/// `boxr export`: the container's filesystem (its upper dir over its image's layers, without
/// its mounts) as one tar written to `out`. A running container is frozen meanwhile, so the tar
/// is one moment of it.
pub fn export(
    store: &Store,
    info: &Info,
    out: &mut dyn std::io::Write,
) -> Result<(), ContainerError> {
    let spec = spec_of(info)?;
    let target = store.tmp_dir("export-").map_err(store_err)?;
    let mut layers = vec![spec.rootfs.upper.clone()];
    layers.extend(spec.rootfs.lowers.iter().cloned());
    let op = crate::sandbox::fs_helper::FsSpec {
        rootfs: None,
        source: None,
        op: crate::sandbox::fs_helper::FsOp::Export {
            layers,
            target: target.clone(),
        },
    };
    let result = while_frozen(info, || {
        let mut child = crate::sandbox::spawn_fs_helper(
            &op,
            std::process::Stdio::piped(),
            std::process::Stdio::piped(),
        )
        .map_err(ContainerError::from)?;
        let copied = child.stdout.take().map(|mut o| std::io::copy(&mut o, out));
        let output = child
            .wait_with_output()
            .map_err(|e| invalid(format!("export: {e}"), None))?;
        if !output.status.success() {
            let message = String::from_utf8_lossy(&output.stderr);
            return Err(invalid(
                format!("export: {}", message.trim().trim_start_matches("boxr: ")),
                None,
            ));
        }
        match copied {
            Some(Err(e)) => Err(invalid(format!("export: cannot write the tar: {e}"), None)),
            _ => Ok(()),
        }
    });
    let _ = crate::store::remove_dir_tree(&target);
    result
}

/// [`export`] to the file `path`, written beside it and renamed: a failed export leaves no half
/// tar.
pub fn export_to_file(store: &Store, info: &Info, path: &Path) -> Result<(), ContainerError> {
    let tmp = path.with_extension("partial");
    let written = fs::File::create(&tmp)
        .map_err(|e| invalid(format!("cannot create {}: {e}", tmp.display()), None))
        .and_then(|mut f| export(store, info, &mut f))
        .and_then(|()| {
            fs::rename(&tmp, path)
                .map_err(|e| invalid(format!("cannot write {}: {e}", path.display()), None))
        });
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Runs `read` with a running container frozen (thawed after, whatever happened): what is
/// read is one moment of it, and nothing in it can swap a directory for a symlink while a
/// reader that goes by path (the tar writer) is below it (`docker commit --pause=false`
/// allows that race; boxr does not). A container paused already stays paused.
fn while_frozen<T>(
    info: &Info,
    read: impl FnOnce() -> Result<T, ContainerError>,
) -> Result<T, ContainerError> {
    let freeze = matches!(state::status(info), Status::Running { .. }) && !state::paused(info);
    let cgroup = if freeze { state::cgroup(info) } else { None };
    if let Some(cg) = &cgroup {
        cg.set_frozen(true)?;
    }
    let result = read();
    if let Some(cg) = &cgroup {
        let _ = cg.set_frozen(false);
    }
    result
}

/// `boxr diff`: the paths the container added, changed or deleted, in path order.
pub fn diff(info: &Info) -> Result<Vec<(Change, String)>, ContainerError> {
    let spec = spec_of(info)?;
    let upper = &spec.rootfs.upper;
    let lowers = &spec.rootfs.lowers;
    let leftovers: HashSet<PathBuf> =
        stack::mount_point_leftovers(upper, lowers, &mount_targets(&spec))
            .into_iter()
            .collect();
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(upper)
        .min_depth(1)
        .sort_by(|a, b| a.file_name().cmp(b.file_name()));
    for entry in walk {
        let entry =
            entry.map_err(|e| invalid(format!("cannot read the container's files: {e}"), None))?;
        if leftovers.contains(entry.path()) {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(upper)
            .expect("below the upper dir");
        let name = format!("/{}", rel.display());
        let meta = entry
            .metadata()
            .map_err(|e| invalid(format!("{name}: {e}"), None))?;
        let kind = if meta.file_type().is_char_device() && meta.rdev() == 0 {
            Change::Deleted
        } else if stack::find_in_layers(lowers, &name).is_some() {
            Change::Changed
        } else {
            Change::Added
        };
        out.push((kind, name));
    }
    Ok(out)
}

/// `boxr commit`: a new image, the container's image plus one layer of its changes (none when
/// it changed nothing) and the config changes asked for. Returns the image.
pub fn commit(store: &Store, info: &Info, opts: &CommitOptions) -> Result<Image, ContainerError> {
    let spec = spec_of(info)?;
    let key = opts
        .reference
        .as_deref()
        .map(crate::store::ref_key)
        .transpose()
        .map_err(store_err)?;
    let image_id = info.image_id.as_deref().ok_or_else(|| {
        invalid(
            format!("container {} does not say its image", &info.id[..12]),
            None,
        )
    })?;
    let base = store.resolve(image_id).map_err(|e| {
        invalid(
            format!("the image of container {} is gone: {e}", &info.id[..12]),
            None,
        )
    })?;
    let mut run = base.config.config.clone().unwrap_or_default();
    for c in &opts.changes {
        apply_change(&mut run, c).map_err(|m| invalid(format!("-c {c}: {m}"), None))?;
    }
    let lowers: Vec<&Path> = spec.rootfs.lowers.iter().map(PathBuf::as_path).collect();
    let targets = mount_targets(&spec);
    let layer = while_frozen(info, || {
        store
            .add_layer_from_upper(&spec.rootfs.upper, &lowers, opts.epoch, |root| {
                if let Some(u) = &spec.userns {
                    map_ids_back(root, &u.uid_map, &u.gid_map)?;
                }
                stack::remove_mount_points(root, &spec.rootfs.lowers, &targets);
                Ok(())
            })
            .map_err(store_err)
    })?;
    let created = crate::time::rfc3339(opts.epoch as i64);
    let mut config = base.config.clone();
    config.created = Some(created.clone());
    if opts.author.is_some() {
        config.author = opts.author.clone();
    }
    config.config = Some(run);
    let mut layers = base.manifest.layers.clone();
    if let Some(meta) = &layer {
        config.rootfs.diff_ids.push(meta.diff_id);
        layers.push(Descriptor::new(oci::MEDIA_LAYER, meta.diff_id, meta.size));
    }
    config.history.push(History {
        created: Some(created),
        created_by: Some(info.args.join(" ")),
        comment: opts.message.clone(),
        empty_layer: layer.is_none().then_some(true),
    });
    let img = store.put_image(&config, layers).map_err(store_err)?;
    if let Some(key) = &key {
        store.set_ref(key, img.manifest_digest).map_err(store_err)?;
    }
    super::events::record(
        store.root(),
        "commit",
        &info.id,
        serde_json::json!({"name": info.name, "image": img.id.to_string()}),
    );
    Ok(img)
}

/// Gives the files of a user-namespaced container's layer the ids they have inside it: on
/// disk they belong to the host ids the maps send the container's ids to.
fn map_ids_back(root: &Path, uid_map: &[IdMap], gid_map: &[IdMap]) -> Result<(), StoreError> {
    let back = |maps: &[IdMap], id: u32| {
        maps.iter()
            .find(|m| id >= m.host && id - m.host < m.size)
            .map_or(id, |m| id - m.host + m.container)
    };
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(|e| StoreError::Io {
            action: "read",
            path: root.to_owned(),
            source: e.into(),
        })?;
        let meta = entry.metadata().map_err(|e| StoreError::Io {
            action: "read",
            path: entry.path().to_owned(),
            source: e.into(),
        })?;
        let (uid, gid) = (back(uid_map, meta.uid()), back(gid_map, meta.gid()));
        if (uid, gid) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)).map_err(|e| {
                StoreError::Io {
                    action: "chown",
                    path: entry.path().to_owned(),
                    source: e,
                }
            })?;
            // chown clears the set-id bits of a file: they were part of the change.
            if !meta.file_type().is_symlink() && meta.mode() & 0o6000 != 0 {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(
                    entry.path(),
                    fs::Permissions::from_mode(meta.mode() & 0o7777),
                )
                .map_err(|e| StoreError::Io {
                    action: "chmod",
                    path: entry.path().to_owned(),
                    source: e,
                })?;
            }
        }
    }
    Ok(())
}

/// Why a `-c` instruction was refused.
#[derive(Debug, thiserror::Error)]
enum ChangeError {
    #[error("an instruction and its value, e.g. CMD [\"sh\"]")]
    NoValue,
    #[error("not a JSON array of strings: {0}")]
    NotArray(#[source] serde_json::Error),
    #[error("`{0}` is not KEY=VALUE")]
    NotKeyValue(String),
    #[error("{0}")]
    Signal(#[source] crate::values::Bad),
    #[error("`{0}` is not PORT[/tcp|udp|sctp]")]
    Port(String),
    #[error("`{0}` is not an absolute path")]
    Relative(String),
    #[error(
        "`{0}` cannot be changed (CMD, ENTRYPOINT, ENV, LABEL, WORKDIR, USER, STOPSIGNAL, EXPOSE, VOLUME can)"
    )]
    Unknown(String),
}

/// Applies one `-c` instruction (Dockerfile syntax) to a run config.
fn apply_change(run: &mut RunConfig, change: &str) -> Result<(), ChangeError> {
    let change = change.trim();
    let (word, rest) = change
        .split_once(char::is_whitespace)
        .map_or((change, ""), |(w, r)| (w, r.trim()));
    if rest.is_empty() {
        return Err(ChangeError::NoValue);
    }
    // Exec form (a JSON array) or shell form (run by /bin/sh -c).
    let command = |rest: &str| -> Result<Vec<String>, ChangeError> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).map_err(ChangeError::NotArray)
        } else {
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
        }
    };
    // `K=V K2=V2`, or the old `K V` form.
    let pairs = |rest: &str| -> Result<Vec<(String, String)>, ChangeError> {
        if !rest.split_whitespace().next().unwrap_or("").contains('=') {
            let (k, v) = rest
                .split_once(char::is_whitespace)
                .ok_or_else(|| ChangeError::NotKeyValue(rest.to_owned()))?;
            return Ok(vec![(k.to_owned(), v.trim().to_owned())]);
        }
        rest.split_whitespace()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| ChangeError::NotKeyValue(kv.to_owned()))
            })
            .collect()
    };
    match word.to_ascii_uppercase().as_str() {
        "CMD" => run.cmd = Some(command(rest)?),
        "ENTRYPOINT" => {
            run.entrypoint = Some(command(rest)?);
            // As in a Dockerfile, a new entrypoint drops the inherited cmd.
            run.cmd = None;
        }
        "ENV" => {
            let env = run.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs(rest)? {
                env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
                env.push(format!("{k}={v}"));
            }
        }
        "LABEL" => {
            let labels = run.labels.get_or_insert_with(Default::default);
            for (k, v) in pairs(rest)? {
                labels.insert(k, v);
            }
        }
        "WORKDIR" => run.working_dir = Some(rest.to_owned()),
        "USER" => run.user = Some(rest.to_owned()),
        "STOPSIGNAL" => {
            crate::values::parse_signal(rest).map_err(ChangeError::Signal)?;
            run.stop_signal = Some(rest.to_owned());
        }
        "EXPOSE" => {
            let ports = run.exposed_ports.get_or_insert_with(Default::default);
            for p in rest.split_whitespace() {
                let (num, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    return Err(ChangeError::Port(p.to_owned()));
                }
                ports.insert(format!("{num}/{proto}"), oci::Empty {});
            }
        }
        "VOLUME" => {
            let paths: Vec<String> = if rest.starts_with('[') {
                serde_json::from_str(rest).map_err(ChangeError::NotArray)?
            } else {
                rest.split_whitespace().map(str::to_owned).collect()
            };
            let volumes = run.volumes.get_or_insert_with(Default::default);
            for p in paths {
                if !p.starts_with('/') {
                    return Err(ChangeError::Relative(p));
                }
                volumes.insert(p, oci::Empty {});
            }
        }
        other => {
            return Err(ChangeError::Unknown(other.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_follow_dockerfile_syntax() {
        let mut run = RunConfig {
            cmd: Some(vec!["sh".into()]),
            env: Some(vec!["A=1".into(), "PATH=/bin".into()]),
            ..Default::default()
        };
        apply_change(&mut run, r#"CMD ["httpd", "-f"]"#).unwrap();
        assert_eq!(run.cmd, Some(vec!["httpd".to_owned(), "-f".to_owned()]));
        apply_change(&mut run, "ENV A=2 B=3").unwrap();
        apply_change(&mut run, "env C four five").unwrap();
        assert_eq!(
            run.env.as_deref().unwrap(),
            ["PATH=/bin", "A=2", "B=3", "C=four five"]
        );
        apply_change(&mut run, "ENTRYPOINT exec server").unwrap();
        assert_eq!(
            run.entrypoint,
            Some(vec!["/bin/sh".into(), "-c".into(), "exec server".into()])
        );
        assert_eq!(run.cmd, None);
        apply_change(&mut run, "EXPOSE 80 53/udp").unwrap();
        let ports: Vec<&String> = run.exposed_ports.as_ref().unwrap().keys().collect();
        assert_eq!(ports, ["53/udp", "80/tcp"]);
        apply_change(&mut run, "LABEL a=b").unwrap();
        apply_change(&mut run, "WORKDIR /srv").unwrap();
        apply_change(&mut run, "STOPSIGNAL SIGQUIT").unwrap();
        assert_eq!(run.stop_signal.as_deref(), Some("SIGQUIT"));
        for bad in [
            "RUN make",
            "CMD",
            "EXPOSE http",
            "STOPSIGNAL NOPE",
            "VOLUME data",
            "ENV =",
        ] {
            assert!(apply_change(&mut run, bad).is_err(), "{bad}");
        }
    }
}
