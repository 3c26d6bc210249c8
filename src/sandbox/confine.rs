//! The last steps before exec: a process gives up what the container may not have, in an order
//! that matters. The steps are the kernel's, behind the [`Privileges`] trait (as youki keeps its
//! syscalls behind one), so that the order is unit-tested without root: [`confine`] decides what
//! is done and when, [`Linux`] does it.
//!
//! The order (see `security` for why each step is where it is):
//! 1. resource limits and the OOM score, while raising a hard limit is still allowed
//!    (CAP_SYS_RESOURCE);
//! 2. no_new_privs if asked for, then the seccomp filter, while the process still has
//!    CAP_SYS_ADMIN (no_new_privs is off by default, as in Docker); capset, setuid and exec are
//!    allowed by the filter;
//! 3. the bounding set cut to the container's capabilities: it limits what any later exec can
//!    gain;
//! 4. keepcaps for a non-root user who keeps added capabilities, then supplementary groups, gid,
//!    uid (CAP_SETGID and CAP_SETUID are needed, even when the container drops them);
//! 5. the final sets: ambient and inheritable cleared; for root, permitted = effective = the
//!    container's set; for another user only the added capabilities, through inheritable and
//!    ambient so they survive the exec; no_new_privs again when asked for (idempotent).

use std::collections::HashSet;

use caps::{CapSet, Capability};

use super::SetupError;
use super::process::Resolved;
use super::security::SecuritySpec;
use super::spec::Rlimit;

/// Applies the resource limits and takes the process's identity and final capabilities: the
/// init does this before it starts the command, which inherits it.
pub fn apply(p: &Resolved, security: &SecuritySpec) -> Result<(), super::process::StartError> {
    confine(&mut Linux, p, security).map_err(|e| super::process::start_err(125, e.to_string()))
}

/// The kernel calls of the last steps before exec.
pub(super) trait Privileges {
    fn set_rlimit(&mut self, limit: &Rlimit) -> Result<(), SetupError>;
    fn set_oom_score_adj(&mut self, adj: i32) -> Result<(), SetupError>;
    fn set_no_new_privs(&mut self) -> Result<(), SetupError>;
    fn load_seccomp(&mut self, program: &[u8]) -> Result<(), SetupError>;
    fn bounding_set(&mut self) -> Result<HashSet<Capability>, SetupError>;
    fn drop_bounding(&mut self, cap: Capability) -> Result<(), SetupError>;
    fn keep_caps(&mut self) -> Result<(), SetupError>;
    /// Supplementary groups, then gid, then uid.
    fn set_ids(&mut self, groups: &[u32], gid: u32, uid: u32) -> Result<(), SetupError>;
    fn clear_ambient(&mut self) -> Result<(), SetupError>;
    fn set_caps(&mut self, set: CapSet, caps: &HashSet<Capability>) -> Result<(), SetupError>;
    fn raise_ambient(&mut self, cap: Capability) -> Result<(), SetupError>;
}

/// Confines the calling process as `p` and `security` say, in the order above.
pub(super) fn confine(
    k: &mut impl Privileges,
    p: &Resolved,
    security: &SecuritySpec,
) -> Result<(), SetupError> {
    for l in &p.rlimits {
        k.set_rlimit(l)?;
    }
    // While the process may still lower it; its children inherit it.
    if let Some(adj) = p.oom_score_adj {
        k.set_oom_score_adj(adj)?;
    }
    if let Some(hex_program) = &security.seccomp {
        let program = hex::decode(hex_program).map_err(|_| SetupError::BadSeccompProgram)?;
        if security.no_new_privileges {
            k.set_no_new_privs()?;
        }
        k.load_seccomp(&program)?;
    }
    let keep = caps_of(&security.capabilities);
    for c in k.bounding_set()? {
        if !keep.contains(&c) {
            k.drop_bounding(c)?;
        }
    }
    let added = caps_of(&security.added);
    if p.uid != 0 && !added.is_empty() {
        k.keep_caps()?;
    }
    k.set_ids(&p.groups, p.gid, p.uid)?;
    k.clear_ambient()?;
    k.set_caps(CapSet::Inheritable, &HashSet::new())?;
    if p.uid == 0 {
        k.set_caps(CapSet::Effective, &keep)?;
        k.set_caps(CapSet::Permitted, &keep)?;
    } else {
        // The kernel emptied the effective set on setuid; only added capabilities survive,
        // through inheritable and ambient, as podman does. Permitted first: effective and
        // inheritable may not exceed it.
        k.set_caps(CapSet::Permitted, &added)?;
        k.set_caps(CapSet::Effective, &added)?;
        k.set_caps(CapSet::Inheritable, &added)?;
        let mut sorted: Vec<Capability> = added.iter().copied().collect();
        sorted.sort_by_key(|c| c.index());
        for c in sorted {
            k.raise_ambient(c)?;
        }
    }
    if security.no_new_privileges {
        k.set_no_new_privs()?;
    }
    Ok(())
}

fn caps_of(names: &[String]) -> HashSet<Capability> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

/// The kernel's [`Privileges`].
pub(super) struct Linux;

impl Privileges for Linux {
    fn set_rlimit(&mut self, l: &Rlimit) -> Result<(), SetupError> {
        use nix::sys::resource::{Resource, setrlimit};
        let r = match l.name.as_str() {
            "as" => Resource::RLIMIT_AS,
            "core" => Resource::RLIMIT_CORE,
            "cpu" => Resource::RLIMIT_CPU,
            "data" => Resource::RLIMIT_DATA,
            "fsize" => Resource::RLIMIT_FSIZE,
            "locks" => Resource::RLIMIT_LOCKS,
            "memlock" => Resource::RLIMIT_MEMLOCK,
            "msgqueue" => Resource::RLIMIT_MSGQUEUE,
            "nice" => Resource::RLIMIT_NICE,
            "nofile" => Resource::RLIMIT_NOFILE,
            "nproc" => Resource::RLIMIT_NPROC,
            "rss" => Resource::RLIMIT_RSS,
            "rtprio" => Resource::RLIMIT_RTPRIO,
            "rttime" => Resource::RLIMIT_RTTIME,
            "sigpending" => Resource::RLIMIT_SIGPENDING,
            "stack" => Resource::RLIMIT_STACK,
            other => return Err(SetupError::UnknownRlimit(other.to_owned())),
        };
        setrlimit(r, l.soft, l.hard)
            .map_err(SetupError::at(format!("cannot set ulimit {}", l.name)))
    }

    fn set_oom_score_adj(&mut self, adj: i32) -> Result<(), SetupError> {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(SetupError::io("cannot set oom_score_adj"))
    }

    fn set_no_new_privs(&mut self) -> Result<(), SetupError> {
        nix::sys::prctl::set_no_new_privs().map_err(SetupError::at("cannot set no_new_privs"))
    }

    fn load_seccomp(&mut self, program: &[u8]) -> Result<(), SetupError> {
        super::sys::load_seccomp(program).map_err(SetupError::io("cannot load the seccomp filter"))
    }

    fn bounding_set(&mut self) -> Result<HashSet<Capability>, SetupError> {
        caps::read(None, CapSet::Bounding).map_err(SetupError::caps("read the bounding set"))
    }

    fn drop_bounding(&mut self, cap: Capability) -> Result<(), SetupError> {
        caps::drop(None, CapSet::Bounding, cap).map_err(SetupError::caps("drop a capability"))
    }

    fn keep_caps(&mut self) -> Result<(), SetupError> {
        nix::sys::prctl::set_keepcaps(true).map_err(SetupError::at("cannot keep capabilities"))
    }

    fn set_ids(&mut self, groups: &[u32], gid: u32, uid: u32) -> Result<(), SetupError> {
        use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
        let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
        setgroups(&groups)
            .and_then(|()| setgid(Gid::from_raw(gid)))
            .and_then(|()| setuid(Uid::from_raw(uid)))
            .map_err(SetupError::at(format!("cannot become {uid}:{gid}")))
    }

    fn clear_ambient(&mut self) -> Result<(), SetupError> {
        caps::clear(None, CapSet::Ambient).map_err(SetupError::caps("clear the ambient set"))
    }

    fn set_caps(&mut self, set: CapSet, caps: &HashSet<Capability>) -> Result<(), SetupError> {
        let what = match set {
            CapSet::Effective => "set the effective set",
            CapSet::Permitted => "set the permitted set",
            CapSet::Inheritable => "set the inheritable set",
            CapSet::Ambient => "set the ambient set",
            CapSet::Bounding => "set the bounding set",
        };
        caps::set(None, set, caps).map_err(SetupError::caps(what))
    }

    fn raise_ambient(&mut self, cap: Capability) -> Result<(), SetupError> {
        caps::raise(None, CapSet::Ambient, cap)
            .map_err(SetupError::caps("raise an ambient capability"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records every call; the bounding set it reports is `bounding`.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<String>,
        bounding: Vec<Capability>,
        fail_at: Option<&'static str>,
    }

    impl Recorder {
        fn call(&mut self, name: &'static str, detail: String) -> Result<(), SetupError> {
            self.calls.push(if detail.is_empty() {
                name.to_owned()
            } else {
                format!("{name} {detail}")
            });
            match self.fail_at {
                Some(f) if f == name => Err(SetupError::at(name)(nix::errno::Errno::EPERM)),
                _ => Ok(()),
            }
        }

        fn position(&self, prefix: &str) -> usize {
            self.calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {:?}", self.calls))
        }
    }

    fn names(caps: &HashSet<Capability>) -> String {
        let mut v: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        v.sort();
        v.join(",")
    }

    impl Privileges for Recorder {
        fn set_rlimit(&mut self, l: &Rlimit) -> Result<(), SetupError> {
            self.call("rlimit", l.name.clone())
        }
        fn set_oom_score_adj(&mut self, adj: i32) -> Result<(), SetupError> {
            self.call("oom", adj.to_string())
        }
        fn set_no_new_privs(&mut self) -> Result<(), SetupError> {
            self.call("nnp", String::new())
        }
        fn load_seccomp(&mut self, program: &[u8]) -> Result<(), SetupError> {
            self.call("seccomp", program.len().to_string())
        }
        fn bounding_set(&mut self) -> Result<HashSet<Capability>, SetupError> {
            self.call("read-bounding", String::new())?;
            Ok(self.bounding.iter().copied().collect())
        }
        fn drop_bounding(&mut self, cap: Capability) -> Result<(), SetupError> {
            self.call("drop-bounding", cap.to_string())
        }
        fn keep_caps(&mut self) -> Result<(), SetupError> {
            self.call("keepcaps", String::new())
        }
        fn set_ids(&mut self, groups: &[u32], gid: u32, uid: u32) -> Result<(), SetupError> {
            self.call("ids", format!("{groups:?} {gid} {uid}"))
        }
        fn clear_ambient(&mut self) -> Result<(), SetupError> {
            self.call("clear-ambient", String::new())
        }
        fn set_caps(&mut self, set: CapSet, caps: &HashSet<Capability>) -> Result<(), SetupError> {
            self.call("caps", format!("{set:?}={}", names(caps)))
        }
        fn raise_ambient(&mut self, cap: Capability) -> Result<(), SetupError> {
            self.call("raise-ambient", cap.to_string())
        }
    }

    fn process(uid: u32) -> Resolved {
        Resolved {
            args: vec!["/bin/true".into()],
            env: Vec::new(),
            cwd: "/".into(),
            uid,
            gid: uid,
            groups: vec![10],
            stdin: false,
            tty: false,
            rlimits: vec![Rlimit {
                name: "nofile".into(),
                soft: 10,
                hard: 20,
            }],
            oom_score_adj: Some(500),
        }
    }

    fn security(added: &[&str], nnp: bool) -> SecuritySpec {
        SecuritySpec {
            capabilities: ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            added: added.iter().map(|s| s.to_string()).collect(),
            no_new_privileges: nnp,
            privileged: false,
            seccomp: Some("0600000000000000".into()),
        }
    }

    fn recorder() -> Recorder {
        Recorder {
            bounding: vec![
                Capability::CAP_CHOWN,
                Capability::CAP_KILL,
                Capability::CAP_SYS_ADMIN,
                Capability::CAP_NET_BIND_SERVICE,
            ],
            ..Recorder::default()
        }
    }

    #[test]
    fn root_is_confined_in_order() {
        let mut k = recorder();
        confine(&mut k, &process(0), &security(&[], false)).unwrap();
        assert_eq!(
            k.calls,
            [
                "rlimit nofile",
                "oom 500",
                "seccomp 8",
                "read-bounding",
                "drop-bounding CAP_SYS_ADMIN",
                "ids [10] 0 0",
                "clear-ambient",
                "caps Inheritable=",
                "caps Effective=CAP_CHOWN,CAP_KILL,CAP_NET_BIND_SERVICE",
                "caps Permitted=CAP_CHOWN,CAP_KILL,CAP_NET_BIND_SERVICE",
            ]
        );
    }

    #[test]
    fn a_user_keeps_only_added_capabilities_through_ambient() {
        let mut k = recorder();
        confine(
            &mut k,
            &process(1000),
            &security(&["CAP_NET_BIND_SERVICE"], true),
        )
        .unwrap();
        // no_new_privs before the filter (so it may be loaded without CAP_SYS_ADMIN too), and
        // again at the end.
        assert!(k.position("nnp") < k.position("seccomp"));
        assert_eq!(k.calls.last().map(String::as_str), Some("nnp"));
        // keepcaps before the ids change, or the kernel clears the permitted set.
        assert!(k.position("keepcaps") < k.position("ids"));
        let after_ids = &k.calls[k.position("ids") + 1..];
        assert_eq!(
            after_ids,
            [
                "clear-ambient",
                "caps Inheritable=",
                "caps Permitted=CAP_NET_BIND_SERVICE",
                "caps Effective=CAP_NET_BIND_SERVICE",
                "caps Inheritable=CAP_NET_BIND_SERVICE",
                "raise-ambient CAP_NET_BIND_SERVICE",
                "nnp",
            ]
        );
    }

    #[test]
    fn the_bounding_set_is_cut_before_the_ids_change_and_after_the_filter() {
        let mut k = recorder();
        confine(&mut k, &process(1000), &security(&[], false)).unwrap();
        assert!(k.position("rlimit") < k.position("seccomp"));
        assert!(k.position("seccomp") < k.position("drop-bounding"));
        assert!(k.position("drop-bounding") < k.position("ids"));
        assert!(
            !k.calls
                .iter()
                .any(|c| c == "keepcaps" || c.starts_with("raise")),
            "a user without added capabilities keeps none: {:?}",
            k.calls
        );
    }

    #[test]
    fn a_failed_step_stops_the_rest() {
        let mut k = Recorder {
            fail_at: Some("seccomp"),
            ..recorder()
        };
        let e = confine(&mut k, &process(0), &security(&[], false)).unwrap_err();
        assert!(e.to_string().contains("seccomp"), "{e}");
        assert_eq!(k.calls.last().map(String::as_str), Some("seccomp 8"));
        let mut k = recorder();
        let mut s = security(&[], false);
        s.seccomp = Some("not hex".into());
        assert!(matches!(
            confine(&mut k, &process(0), &s),
            Err(SetupError::BadSeccompProgram)
        ));
        assert!(!k.calls.iter().any(|c| c.starts_with("ids")));
    }

    #[test]
    fn without_a_filter_nothing_is_loaded() {
        let mut k = recorder();
        let mut s = security(&[], false);
        s.seccomp = None;
        confine(&mut k, &process(0), &s).unwrap();
        assert!(!k.calls.iter().any(|c| c.starts_with("seccomp")));
    }
}
