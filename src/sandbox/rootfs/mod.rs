//! The sandbox's root filesystem, set up inside its private mount namespace: the overlay, the
//! mounts of RUNTIME-DEFAULTS (/proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys), the
//! per-container /etc files and extra mounts, then `pivot_root`.
//!
//! Every mount target is resolved inside the rootfs with `openat2(RESOLVE_IN_ROOT)` and the
//! mount is made on the resulting descriptor's `/proc/self/fd/N` path, so a symlink in the image
//! (`/etc/hosts -> /host/...`, `/mnt -> /etc`) cannot redirect a mount outside the rootfs.
//! Missing targets are created, also for a read-only rootfs (which is made read-only last).
//!
//! The calls that change mounts, the root, or make device nodes go through [`Kernel`]: the
//! kernel's ([`Linux`]), or in the unit tests a fake that records them, so the order of the
//! setup (private propagation first, the overlay before what is mounted on it, /proc before
//! the masks over it, the read-only remount after every mount, `pivot_root` last) is checked
//! without root.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag, makedev, mkdirat};
use nix::unistd::symlinkat;

use super::spec::{MountSpec, SandboxSpec};

pub(super) use super::error::SetupError;

type Result<T> = std::result::Result<T, SetupError>;

mod kernel;

pub(super) use kernel::{Kernel, Linux, Node};

fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = path.trim_start_matches('/');
    openat2(root, Path::new(if rel.is_empty() { "." } else { rel }), how)
}

/// Opens (creating as needed, mode 0755) the directory `path` inside the rootfs.
fn mkdir_in_root(root: &OwnedFd, path: &str) -> Result<OwnedFd> {
    let mut prefix = String::new();
    let mut current = open_in_root(root, "", OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(SetupError::at("open the rootfs"))?;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        prefix.push('/');
        prefix.push_str(c);
        current = match open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(&current, c, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(SetupError::at(format!("create {prefix}"))(e)),
                }
                open_in_root(root, &prefix, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(SetupError::at(format!("open {prefix}")))?
            }
            Err(e) => return Err(SetupError::at(format!("open {prefix}"))(e)),
        };
    }
    Ok(current)
}

/// Opens (creating an empty file if missing) the file `path` inside the rootfs, O_PATH.
fn file_in_root(root: &OwnedFd, path: &str) -> Result<OwnedFd> {
    match open_in_root(root, path, OFlag::O_PATH) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(SetupError::at(format!("open {path}"))(e)),
    }
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let parent = mkdir_in_root(root, dir)?;
    match openat(
        &parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(SetupError::at(format!("create {path}"))(e)),
    }
    open_in_root(root, path, OFlag::O_PATH).map_err(SetupError::at(format!("open {path}")))
}

fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount_fs(
    k: &dyn Kernel,
    fstype: &str,
    target: &OwnedFd,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> Result<()> {
    k.mount(
        Some(Path::new(fstype)),
        &fd_path(target),
        Some(fstype),
        flags,
        data,
    )
    .map_err(SetupError::at(format!("mount {what}")))
}

fn bind(k: &dyn Kernel, source: &Path, target: &OwnedFd, what: &str) -> Result<()> {
    k.mount(
        Some(source),
        &fd_path(target),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(SetupError::at(format!("bind-mount {what}")))
}

/// Makes the mount now at `path` (inside the rootfs) read-only. The path is resolved again:
/// a descriptor opened before the bind still refers to the directory underneath it.
fn remount_read_only(k: &dyn Kernel, root: &OwnedFd, path: &str) -> Result<()> {
    let fd =
        open_in_root(root, path, OFlag::O_PATH).map_err(SetupError::at(format!("open {path}")))?;
    k.mount(
        None,
        &fd_path(&fd),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None,
    )
    .map_err(SetupError::at(format!("make {path} read-only")))
}

/// Sets up the rootfs and pivots into it. Runs in the sandbox's first process, in its new
/// mount and PID namespaces, before anything of the image runs.
pub fn setup(spec: &SandboxSpec) -> Result<()> {
    setup_with(&Linux, spec)
}

/// [`setup`] through `k`.
pub(super) fn setup_with(k: &dyn Kernel, spec: &SandboxSpec) -> Result<()> {
    // Nothing mounted from here on may propagate back to the host.
    k.mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )
    .map_err(SetupError::at("make / private"))?;
    let target: &Path = if spec.rootfs_mounted {
        // A user namespace's init: the first process mounted the rootfs and the host's mounts
        // in it as the host's root, and left us in it (the store's path may not be searchable
        // by the container's root). Those mounts came from a more privileged mount namespace,
        // so they are locked here and cannot be pivoted into: a bind of them made here can,
        // entered from the parent directory (`.` does not cross onto a mount over itself).
        k.mount(
            Some(Path::new(".")),
            Path::new("."),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(SetupError::at("bind the rootfs onto itself"))?;
        let name = spec
            .rootfs
            .target
            .file_name()
            .ok_or_else(|| SetupError::NoTargetName(spec.rootfs.target.clone()))?;
        k.chdir(Path::new(".."))
            .map_err(SetupError::at("leave the rootfs"))?;
        k.chdir(Path::new(name))
            .map_err(SetupError::at("enter the rootfs again"))?;
        Path::new(".")
    } else {
        mount_overlay_with(k, spec, &spec.rootfs.lowers)?;
        host_mounts_with(k, spec)?;
        &spec.rootfs.target
    };
    let root: OwnedFd = File::open(target)
        .map_err(SetupError::io("open the rootfs"))?
        .into();
    special_filesystems(k, &root, spec)?;
    write_sysctls(&root, &spec.sysctls)?;
    if !spec.security.privileged {
        mask_paths(k, &root)?;
    }
    if spec.rootfs.read_only {
        k.mount(
            None,
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        )
        .map_err(SetupError::at("make the rootfs read-only"))?;
    }
    drop(root);
    // pivot_root(".", "."): the old root ends up on top of the new one; detach it.
    k.chdir(target)
        .map_err(SetupError::at("enter the rootfs"))?;
    k.pivot_root_here().map_err(SetupError::at("pivot_root"))?;
    k.chdir(Path::new("/")).map_err(SetupError::at("chdir /"))?;
    // A shared UTS namespace keeps its hostname.
    if spec.uts_ns == super::spec::NsShare::Private {
        k.sethostname(&spec.hostname)
            .map_err(SetupError::at("set the hostname"))?;
    }
    Ok(())
}

/// The mounts of host paths into the mounted rootfs: the /etc files, `-v` and `--tmpfs`.
/// With a user namespace the first process makes them, as the host's root.
pub fn host_mounts(spec: &SandboxSpec) -> Result<()> {
    host_mounts_with(&Linux, spec)
}

fn host_mounts_with(k: &dyn Kernel, spec: &SandboxSpec) -> Result<()> {
    let root: OwnedFd = File::open(&spec.rootfs.target)
        .map_err(SetupError::io("open the rootfs"))?
        .into();
    for f in &spec.etc_files {
        let t = file_in_root(&root, &f.target)?;
        bind(k, &f.source, &t, &f.target)?;
    }
    for m in &spec.mounts {
        match m {
            MountSpec::Bind {
                source,
                target,
                read_only,
            } => {
                let t = if source.is_dir() {
                    mkdir_in_root(&root, target)?
                } else {
                    file_in_root(&root, target)?
                };
                bind(k, source, &t, target)?;
                if *read_only {
                    remount_read_only(k, &root, target)?;
                }
            }
            MountSpec::Tmpfs { target, options } => {
                let t = mkdir_in_root(&root, target)?;
                // Mounted by the host's root for a user namespace: owned by the container's.
                let mut options = options.clone();
                if let Some(u) = &spec.userns
                    && !options.split(',').any(|o| o.starts_with("uid="))
                {
                    let uid = super::spec::IdMap::host_of(&u.uid_map, 0).unwrap_or(0);
                    let gid = super::spec::IdMap::host_of(&u.gid_map, 0).unwrap_or(0);
                    options.push_str(&format!(",uid={uid},gid={gid}"));
                }
                mount_fs(
                    k,
                    "tmpfs",
                    &t,
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(&options),
                    target,
                )?;
            }
        }
    }
    Ok(())
}

/// Mounts the overlay of `spec.rootfs` at its target, with `lowers` as its layers (the image's,
/// or idmapped copies of them).
pub fn mount_overlay(spec: &SandboxSpec, lowers: &[PathBuf]) -> Result<()> {
    mount_overlay_with(&Linux, spec, lowers)
}

fn mount_overlay_with(k: &dyn Kernel, spec: &SandboxSpec, lowers: &[PathBuf]) -> Result<()> {
    let r = &spec.rootfs;
    // The new mount API takes every layer on its own: no limit on the number of layers.
    let all_lowers = lowers;
    let lowers: Vec<&Path> = lowers.iter().map(PathBuf::as_path).collect();
    let owned = r.overlay_options();
    let mut options = vec![("source", "overlay")];
    options.extend(owned.iter().map(|(k, v)| (*k, v.as_str())));
    let new_api = if r.classic_mount {
        Err(std::io::Error::from_raw_os_error(nix::libc::ENOSYS))
    } else {
        k.mount_overlay(&lowers, &options, &r.target)
    };
    match new_api {
        Ok(()) => return Ok(()),
        // Kernels before 6.8 (no `lowerdir+`) or 5.2 (no fsopen): the classic mount below.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EINVAL | nix::libc::ENOSYS)
            ) => {}
        Err(e) => return Err(SetupError::io("mount the overlay rootfs")(e)),
    }
    // Mount data is one page. Layer roots share a parent (the store's layers/), so listing them
    // relative to it from there fits about 55 layers; more need the new mount API.
    let common = all_lowers
        .first()
        .and_then(|l| l.parent())
        .and_then(|p| p.parent());
    let (dir, lowers): (Option<&Path>, Vec<String>) = match common {
        Some(c) if all_lowers.iter().all(|l| l.starts_with(c)) => (
            Some(c),
            all_lowers
                .iter()
                .map(|l| l.strip_prefix(c).expect("checked").display().to_string())
                .collect(),
        ),
        _ => (
            None,
            all_lowers.iter().map(|l| l.display().to_string()).collect(),
        ),
    };
    let rest: Vec<String> = owned
        .iter()
        .map(|(k, v)| {
            if v.is_empty() {
                (*k).to_owned()
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    let data = format!("lowerdir={},{}", lowers.join(":"), rest.join(","));
    if data.len() >= 4000 {
        return Err(SetupError::TooManyLayers(all_lowers.len()));
    }
    if let Some(d) = dir {
        k.chdir(d)
            .map_err(SetupError::at("enter the layer store"))?;
    }
    k.mount(
        Some(Path::new("overlay")),
        &r.target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(SetupError::at("mount the overlay rootfs"))
}

/// /proc, /dev (tmpfs with the standard nodes), /dev/pts, /dev/shm, /dev/mqueue, /sys. In a
/// user namespace, where mknod is not allowed, the device nodes are bind mounts of the host's.
fn special_filesystems(k: &dyn Kernel, root: &OwnedFd, spec: &SandboxSpec) -> Result<()> {
    // The container's own (`--userns`), or the rootless one this sandbox is made in (whose
    // store's overlay is mounted with `userxattr`: the spec says so without a read of /proc).
    let userns = spec.userns.is_some() || spec.rootfs.userxattr;
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let proc_dir = mkdir_in_root(root, "/proc")?;
    mount_fs(k, "proc", &proc_dir, nosuid_noexec_nodev, None, "/proc")?;

    let dev = mkdir_in_root(root, "/dev")?;
    mount_fs(
        k,
        "tmpfs",
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        "/dev",
    )?;
    let dev = open_in_root(root, "/dev", OFlag::O_DIRECTORY | OFlag::O_RDONLY)
        .map_err(SetupError::at("open /dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        if userns {
            let node = file_in_root(root, &format!("/dev/{name}"))?;
            bind(k, Path::new(&format!("/dev/{name}")), &node, name)?;
            continue;
        }
        let node = Node {
            kind: SFlag::S_IFCHR,
            mode: Mode::from_bits_truncate(0o666),
            dev: makedev(major, minor),
            owner: None,
        };
        k.make_node(&dev, name, &node)
            .map_err(SetupError::at(format!("create /dev/{name}")))?;
    }
    for d in &spec.devices {
        device_node(k, root, d, userns)?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        symlinkat(OsStr::new(target), &dev, link)
            .map_err(SetupError::at(format!("create /dev/{link}")))?;
    }
    let pts = mkdir_in_root(root, "/dev/pts")?;
    mount_fs(
        k,
        "devpts",
        &pts,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        "/dev/pts",
    )?;
    let shm = mkdir_in_root(root, "/dev/shm")?;
    match &spec.shm_from {
        // A shared IPC namespace's /dev/shm.
        Some(super::spec::SharedShm::Host) => bind(k, Path::new("/dev/shm"), &shm, "/dev/shm")?,
        Some(super::spec::SharedShm::Sandbox { pid }) => k.attach_shm_of(*pid, &shm)?,
        None => mount_fs(
            k,
            "tmpfs",
            &shm,
            nosuid_noexec_nodev,
            Some(&format!(
                "mode=1777,size={}",
                spec.shm_size.unwrap_or(64 << 20)
            )),
            "/dev/shm",
        )?,
    }
    let mq = mkdir_in_root(root, "/dev/mqueue")?;
    mount_fs(k, "mqueue", &mq, nosuid_noexec_nodev, None, "/dev/mqueue")?;
    let sys = mkdir_in_root(root, "/sys")?;
    match mount_fs(
        k,
        "sysfs",
        &sys,
        nosuid_noexec_nodev | MsFlags::MS_RDONLY,
        None,
        "/sys",
    ) {
        Ok(()) => {}
        // The kernel gives a sysfs only to the user namespace owning the network namespace.
        // In a user namespace sharing the host's (or another) network namespace, the host's
        // /sys is shown instead, read-only throughout, as rootless podman does.
        Err(_) if userns => {
            bind(k, Path::new("/sys"), &sys, "/sys")?;
            let sys =
                open_in_root(root, "/sys", OFlag::O_PATH).map_err(SetupError::at("open /sys"))?;
            k.read_only_recursive(&sys)
                .map_err(SetupError::io("make /sys read-only"))?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// A `--device` node at its path inside the rootfs: made with mknod (the host node's type,
/// numbers, mode and owner), or in a user namespace the host's node bind-mounted.
fn device_node(
    k: &dyn Kernel,
    root: &OwnedFd,
    d: &super::spec::DeviceSpec,
    userns: bool,
) -> Result<()> {
    let what = format!("the device {}", d.path);
    if userns {
        let node = file_in_root(root, &d.path)?;
        return bind(k, &d.host, &node, &what);
    }
    let (parent, name) = d.path.rsplit_once('/').unwrap_or(("", &d.path));
    let dir = mkdir_in_root(root, parent)?;
    let kind = if d.kind == 'b' {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFCHR
    };
    // Whatever the image has there is replaced, as Docker does.
    let _ = nix::unistd::unlinkat(&dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
    let node = Node {
        kind,
        mode: Mode::from_bits_truncate(d.mode & 0o7777),
        dev: makedev(d.major, d.minor),
        owner: Some((d.uid, d.gid)),
    };
    k.make_node(&dir, name, &node)
        .map_err(SetupError::at(format!("create {what}")))
}

/// Shows at `target` the /dev/shm of the sandbox whose init is `pid`. That mount lives in the
/// other sandbox's mount namespace, where a bind mount cannot reach: the init steps into that
/// namespace, takes a detached copy of the mount, steps back into its own and attaches it.
fn attach_shm_of(pid: i32, target: &OwnedFd) -> Result<()> {
    use nix::sched::{CloneFlags, setns};
    let open = |p: String| File::open(&p).map_err(SetupError::io(format!("open {p}")));
    let own = open("/proc/self/ns/mnt".into())?;
    let theirs = open(format!("/proc/{pid}/ns/mnt"))?;
    setns(&theirs, CloneFlags::CLONE_NEWNS)
        .map_err(SetupError::at("enter the shared /dev/shm's namespace"))?;
    let tree = super::sys::clone_mount(Path::new("/dev/shm"));
    setns(&own, CloneFlags::CLONE_NEWNS)
        .map_err(SetupError::at("return to the container's mount namespace"))?;
    let tree = tree.map_err(SetupError::io("copy the shared /dev/shm"))?;
    super::sys::attach_mount(&tree, target).map_err(SetupError::io("mount the shared /dev/shm"))
}

/// Writes `--sysctl` values through the container's /proc/sys: the init is in the container's
/// namespaces already, so they are the container's own. (Which names may be set is checked
/// before the sandbox starts: only those of namespaces the container does not share.)
fn write_sysctls(root: &OwnedFd, sysctls: &[(String, String)]) -> Result<()> {
    for (key, value) in sysctls {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let fd = open_in_root(root, &path, OFlag::O_WRONLY | OFlag::O_TRUNC)
            .map_err(SetupError::at(format!("sysctl {key}")))?;
        nix::unistd::write(&fd, value.as_bytes())
            .map_err(SetupError::at(format!("sysctl {key}={value}")))?;
    }
    Ok(())
}

/// Docker's masked paths (files: /dev/null bound over them; directories: an empty read-only
/// tmpfs) and read-only paths, inside the rootfs. Paths the kernel does not have are skipped.
fn mask_paths(k: &dyn Kernel, root: &OwnedFd) -> Result<()> {
    let mut masked: Vec<String> = super::security::MASKED_PATHS
        .iter()
        .map(|p| p.to_string())
        .collect();
    if let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") {
        for c in cpus.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            if name.starts_with("cpu") && c.path().join("thermal_throttle").exists() {
                masked.push(format!("/sys/devices/system/cpu/{name}/thermal_throttle"));
            }
        }
    }
    for path in &masked {
        let fd = match open_in_root(root, path, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(SetupError::at(format!("open {path}"))(e)),
        };
        let is_dir = nix::sys::stat::fstat(&fd)
            .map(|st| {
                SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
            })
            .unwrap_or(false);
        if is_dir {
            mount_fs(k, "tmpfs", &fd, MsFlags::MS_RDONLY, Some("size=0"), path)?;
        } else {
            bind(k, Path::new("/dev/null"), &fd, path)?;
        }
    }
    for path in super::security::READONLY_PATHS {
        let fd = match open_in_root(root, path, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(SetupError::at(format!("open {path}"))(e)),
        };
        bind(k, &fd_path(&fd), &fd, path)?;
        remount_read_only(k, root, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
