//! Joining namespaces that already exist: another container's (`--network container:`,
//! `--ipc container:`, `--pid container:`) or a named one (`--network ns:PATH`); and the order
//! in which a sandbox's first process joins and creates its namespaces ([`enter`], behind the
//! [`Namespaces`] trait so the order is unit-tested).

use std::fs::File;

use nix::sched::CloneFlags;

use super::SetupError;
use super::spec::{NetworkMode, NsShare, SandboxSpec};
use crate::platform::process_start_time;

/// Joins the network namespace the spec names (`Join`, `Sandbox`), if any.
pub(super) fn join_network(spec: &SandboxSpec) -> Result<(), SetupError> {
    let (ns, what) = match &spec.network {
        NetworkMode::None | NetworkMode::Host => return Ok(()),
        NetworkMode::Join(path) => {
            let what = format!("cannot join the network namespace {}", path.display());
            (File::open(path).map_err(SetupError::io(&what))?, what)
        }
        NetworkMode::Sandbox(pid_file) => {
            let what = "of the container whose network is shared";
            let (f, _) = sandbox_ns(pid_file, "net", what)?;
            (f, format!("cannot join the network namespace {what}"))
        }
    };
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(SetupError::at(what))
}

/// Namespace `kind` (`net`, `pid`, ...) of the sandbox whose helper wrote `pid_file`, if it
/// still runs, and that sandbox's init pid. `what` names the sandbox in the error.
pub(super) fn sandbox_ns(
    pid_file: &std::path::Path,
    kind: &'static str,
    what: &str,
) -> Result<(File, i32), SetupError> {
    let not_running = || SetupError::NotRunning {
        kind,
        what: what.to_owned(),
    };
    let text = std::fs::read_to_string(pid_file).map_err(|_| not_running())?;
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (it.next(), it.next()) else {
        return Err(not_running());
    };
    let pid = i32::try_from(pid).map_err(|_| not_running())?;
    let ns = File::open(format!("/proc/{pid}/ns/{kind}")).map_err(|_| not_running())?;
    // Checked once the namespace is held: the pid was not reused in between.
    if process_start_time(pid) != Some(start) {
        return Err(not_running());
    }
    Ok((ns, pid))
}

/// Joins the shared namespace `share` of kind `kind` if it is another sandbox's; whether the
/// sandbox needs one of its own (`Private`). Returns the other sandbox's init pid, if any.
pub(super) fn join_shared(
    share: &NsShare,
    kind: &'static str,
    flag: CloneFlags,
) -> Result<(bool, Option<i32>), SetupError> {
    match share {
        NsShare::Private => Ok((true, None)),
        NsShare::Host => Ok((false, None)),
        NsShare::Sandbox(pid_file) => {
            let (f, pid) = sandbox_ns(pid_file, kind, "of the container")?;
            nix::sched::setns(&f, flag).map_err(SetupError::at(format!(
                "cannot join the {kind} namespace of the container"
            )))?;
            Ok((false, Some(pid)))
        }
    }
}

/// The namespace calls of a sandbox's first process (without a user namespace), behind a
/// trait so that their order is unit-tested without root; [`Linux`] makes them.
pub(super) trait Namespaces {
    /// Joins the network namespace the spec names, if any.
    fn join_network(&mut self, spec: &SandboxSpec) -> Result<(), SetupError>;
    /// See [`join_shared`].
    fn join_shared(
        &mut self,
        share: &NsShare,
        kind: &'static str,
        flag: CloneFlags,
    ) -> Result<(bool, Option<i32>), SetupError>;
    fn unshare(&mut self, flags: CloneFlags) -> Result<(), SetupError>;
    fn loopback_up(&mut self) -> Result<(), SetupError>;
}

/// The first process's namespaces: those given by path or shared with another sandbox are
/// joined first (while /proc and the host's mounts are still this process's), then the rest are
/// created in one `unshare`, and a new network namespace's loopback is brought up. Returns where
/// /dev/shm comes from when the IPC namespace is shared.
pub(super) fn enter(
    k: &mut impl Namespaces,
    spec: &SandboxSpec,
) -> Result<Option<super::spec::SharedShm>, SetupError> {
    k.join_network(spec)?;
    let mut flags = CloneFlags::CLONE_NEWNS;
    if spec.network == NetworkMode::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let (own_uts, _) = k.join_shared(&spec.uts_ns, "uts", CloneFlags::CLONE_NEWUTS)?;
    let (own_ipc, ipc_pid) = k.join_shared(&spec.ipc_ns, "ipc", CloneFlags::CLONE_NEWIPC)?;
    if own_uts {
        flags |= CloneFlags::CLONE_NEWUTS;
    }
    if own_ipc {
        flags |= CloneFlags::CLONE_NEWIPC;
    }
    k.unshare(flags)?;
    if spec.network == NetworkMode::None {
        k.loopback_up()?;
    }
    // A shared IPC namespace comes with its /dev/shm: the host's, or the other container's.
    Ok((!own_ipc).then_some(match ipc_pid {
        Some(pid) => super::spec::SharedShm::Sandbox { pid },
        None => super::spec::SharedShm::Host,
    }))
}

/// The kernel's [`Namespaces`].
pub(super) struct Linux;

impl Namespaces for Linux {
    fn join_network(&mut self, spec: &SandboxSpec) -> Result<(), SetupError> {
        join_network(spec)
    }

    fn join_shared(
        &mut self,
        share: &NsShare,
        kind: &'static str,
        flag: CloneFlags,
    ) -> Result<(bool, Option<i32>), SetupError> {
        join_shared(share, kind, flag)
    }

    fn unshare(&mut self, flags: CloneFlags) -> Result<(), SetupError> {
        nix::sched::unshare(flags).map_err(SetupError::at("cannot create namespaces"))
    }

    fn loopback_up(&mut self) -> Result<(), SetupError> {
        super::sys::loopback_up().map_err(SetupError::io("cannot bring up the loopback interface"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the calls; a shared namespace is "joined" (another sandbox's has pid 42).
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl Namespaces for Recorder {
        fn join_network(&mut self, spec: &SandboxSpec) -> Result<(), SetupError> {
            if matches!(spec.network, NetworkMode::Join(_) | NetworkMode::Sandbox(_)) {
                self.0.push("setns net".into());
            }
            Ok(())
        }

        fn join_shared(
            &mut self,
            share: &NsShare,
            kind: &'static str,
            _flag: CloneFlags,
        ) -> Result<(bool, Option<i32>), SetupError> {
            Ok(match share {
                NsShare::Private => (true, None),
                NsShare::Host => (false, None),
                NsShare::Sandbox(_) => {
                    self.0.push(format!("setns {kind}"));
                    (false, Some(42))
                }
            })
        }

        fn unshare(&mut self, flags: CloneFlags) -> Result<(), SetupError> {
            let names = [
                (CloneFlags::CLONE_NEWNS, "mnt"),
                (CloneFlags::CLONE_NEWNET, "net"),
                (CloneFlags::CLONE_NEWUTS, "uts"),
                (CloneFlags::CLONE_NEWIPC, "ipc"),
            ];
            let set: Vec<&str> = names
                .iter()
                .filter(|(f, _)| flags.contains(*f))
                .map(|(_, n)| *n)
                .collect();
            self.0.push(format!("unshare {}", set.join(",")));
            Ok(())
        }

        fn loopback_up(&mut self) -> Result<(), SetupError> {
            self.0.push("lo up".into());
            Ok(())
        }
    }

    fn spec(network: NetworkMode, uts: NsShare, ipc: NsShare) -> SandboxSpec {
        let mut s: SandboxSpec = serde_json::from_value(serde_json::json!({
            "rootfs": {"lowers": [], "upper": "/u", "work": "/w", "target": "/t",
                       "read_only": false},
            "hostname": "h",
            "network": "None",
            "etc_files": [],
            "mounts": [],
            "process": {"args": ["true"], "env": [], "cwd": "/", "user": null,
                        "stdin": false, "rlimits": []},
            "init": true,
            "security": {"capabilities": [], "added": [], "no_new_privileges": false,
                         "privileged": false},
            "keep_fd": null,
        }))
        .expect("a minimal spec");
        s.network = network;
        s.uts_ns = uts;
        s.ipc_ns = ipc;
        s
    }

    #[test]
    fn a_private_sandbox_creates_every_namespace_at_once_then_brings_up_lo() {
        let mut k = Recorder::default();
        let shm = enter(
            &mut k,
            &spec(NetworkMode::None, NsShare::Private, NsShare::Private),
        )
        .unwrap();
        assert_eq!(k.0, ["unshare mnt,net,uts,ipc", "lo up"]);
        assert!(shm.is_none());
    }

    #[test]
    fn namespaces_of_others_are_joined_before_the_rest_is_created() {
        let mut k = Recorder::default();
        let other = || NsShare::Sandbox("/x/pid".into());
        let shm = enter(
            &mut k,
            &spec(NetworkMode::Sandbox("/x/pid".into()), other(), other()),
        )
        .unwrap();
        assert_eq!(k.0, ["setns net", "setns uts", "setns ipc", "unshare mnt"]);
        assert_eq!(
            shm,
            Some(super::super::spec::SharedShm::Sandbox { pid: 42 })
        );
    }

    #[test]
    fn the_hosts_namespaces_are_kept_and_its_shm_used() {
        let mut k = Recorder::default();
        let shm = enter(
            &mut k,
            &spec(NetworkMode::Host, NsShare::Host, NsShare::Host),
        )
        .unwrap();
        assert_eq!(
            k.0,
            ["unshare mnt"],
            "no network namespace, no lo to bring up"
        );
        assert_eq!(shm, Some(super::super::spec::SharedShm::Host));
    }
}
