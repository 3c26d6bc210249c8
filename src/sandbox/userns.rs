//! The user namespace of a container with `--userns`: made before the other namespaces (with
//! its id maps written from outside, as the kernel requires), the image's lower layers opened
//! for an idmapped overlay, and the first process forked into it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, pipe2};

use super::SetupError;
use super::join::join_network;
use super::process::StartError;
use super::spec::{NetworkMode, SandboxSpec};
use super::sys;

/// What a sandbox with a user namespace needs from the helper, made before the first process:
/// the namespace (held by a descriptor) and an idmapped copy of each layer.
pub(super) struct UsernsSetup {
    userns: OwnedFd,
    lowers: Vec<OwnedFd>,
}

impl UsernsSetup {
    pub(super) fn new(
        spec: &SandboxSpec,
        u: &super::spec::UserNs,
    ) -> Result<UsernsSetup, SetupError> {
        let userns = make_userns(u)?;
        let lowers = spec
            .rootfs
            .lowers
            .iter()
            .map(|l| {
                sys::idmapped_clone(l, &userns).map_err(SetupError::io(format!(
                    "cannot make an idmapped mount of {}",
                    l.display()
                )))
            })
            .collect::<Result<_, _>>()?;
        // The init is the first process's child: it comes to us when the first process exits.
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(SetupError::at("cannot become a subreaper"))?;
        Ok(UsernsSetup { userns, lowers })
    }
}

/// A new user namespace with the maps `u`, held by a descriptor: a short-lived child creates
/// it, the helper (root of the host's namespace) writes its maps and opens it.
pub(super) fn make_userns(u: &super::spec::UserNs) -> Result<OwnedFd, SetupError> {
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(SetupError::at("pipe"))?;
    let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC).map_err(SetupError::at("pipe"))?;
    let child = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop((ready_r, done_w));
            let ok = unshare(CloneFlags::CLONE_NEWUSER).is_ok();
            let _ = File::from(ready_w).write_all(&[ok as u8]);
            // Until the helper has opened the namespace.
            let _ = File::from(done_r).read(&mut [0u8; 1]);
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(SetupError::at("fork")(e)),
    };
    drop((ready_w, done_r));
    let result = (|| {
        let mut ok = [0u8; 1];
        File::from(ready_r)
            .read_exact(&mut ok)
            .map_err(SetupError::io("the user namespace's process"))?;
        if ok[0] != 1 {
            return Err(SetupError::NoUserns);
        }
        let lines = |maps: &[super::spec::IdMap]| {
            maps.iter()
                .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
                .collect::<String>()
        };
        for (file, maps) in [("uid_map", &u.uid_map), ("gid_map", &u.gid_map)] {
            let p = format!("/proc/{child}/{file}");
            // One write: the kernel takes a map whole, once.
            std::fs::write(&p, lines(maps)).map_err(SetupError::io(format!("cannot write {p}")))?;
        }
        File::open(format!("/proc/{child}/ns/user"))
            .map(OwnedFd::from)
            .map_err(SetupError::io("cannot open the user namespace"))
    })();
    drop(done_w);
    let _ = waitpid(child, None);
    result
}

/// Joins the user namespace `userns` as its root (ids 0, no supplementary groups), which
/// every process of a container with one is, until the init sets the container's user.
pub(super) fn enter_userns_as_root(userns: &OwnedFd) -> nix::Result<()> {
    let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
    nix::sched::setns(userns, CloneFlags::CLONE_NEWUSER)?;
    nix::unistd::setresgid(gid, gid, gid)?;
    nix::unistd::setgroups(&[])?;
    nix::unistd::setresuid(uid, uid, uid)
}

/// The first process of a sandbox with a user namespace. Still root of the host, it mounts the
/// overlay over the idmapped layers in a mount namespace of its own; then it enters the user
/// namespace as its root, creates the other namespaces there (so they belong to it: the init
/// may mount /proc and /sys), forks the init into the new PID namespace, tells the helper its
/// pid and exits. Returns only on failure.
pub(super) fn first_process_userns(
    spec: &mut SandboxSpec,
    ns: &UsernsSetup,
    pid_w: OwnedFd,
) -> StartError {
    let err = |message: String| StartError { code: 125, message };
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
        return err(format!("cannot create a mount namespace: {}", e.desc()));
    }
    if let Err(e) = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        return err(format!("make / private: {}", e.desc()));
    }
    let lowers: Vec<std::path::PathBuf> = ns
        .lowers
        .iter()
        .map(|fd| format!("/proc/self/fd/{}", fd.as_raw_fd()).into())
        .collect();
    let mounted =
        super::rootfs::mount_overlay(spec, &lowers).and_then(|()| super::rootfs::host_mounts(spec));
    if let Err(e) = mounted {
        return err(e.to_string());
    }
    // The init starts in the rootfs: the path to it may not be searchable by the container's
    // root.
    if let Err(e) = nix::unistd::chdir(&spec.rootfs.target) {
        return err(format!("cannot enter the rootfs: {}", e.desc()));
    }
    // A network namespace of the host's (its own, or one given by path) is joined while we
    // are still the host's root: from inside the user namespace we could not.
    if let Err(e) = join_network(spec) {
        return err(e.to_string());
    }
    if let Err(e) = enter_userns_as_root(&ns.userns) {
        return err(format!("cannot enter the user namespace: {}", e.desc()));
    }
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWPID;
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        return err(format!("cannot create namespaces: {}", e.desc()));
    }
    if spec.network == NetworkMode::None
        && let Err(e) = sys::loopback_up()
    {
        return err(format!("cannot bring up the loopback interface: {e}"));
    }
    spec.rootfs_mounted = true;
    match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(pid_w);
            // Not killed with the first process, which exits now; the init asks for it again
            // once it is the helper's (see `init`).
            let _ = nix::sys::prctl::set_pdeathsig(None);
            super::init::in_place(spec)
        }
        Ok(ForkResult::Parent { child }) => {
            let _ = File::from(pid_w).write_all(child.as_raw().to_string().as_bytes());
            std::process::exit(0);
        }
        Err(e) => err(format!("fork: {}", e.desc())),
    }
}
