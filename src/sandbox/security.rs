//! Confinement of the init and the command: capabilities, no_new_privs, and (in `rootfs`) the
//! masked and read-only paths. The defaults are Docker's (RUNTIME-DEFAULTS.md).
//!
//! Order matters. The init confines *itself* before it starts the command, which inherits the
//! result and only execs, so nothing in the container ever runs with more than the command:
//! 1. Resource limits first (raising a hard limit needs CAP_SYS_RESOURCE).
//! 2. The bounding set is cut: it limits what any later exec can gain.
//! 3. The ids change *with* the capabilities (CAP_SETUID/CAP_SETGID are needed even when the
//!    container drops them), then the final sets are set: for root, permitted = effective = the
//!    container's set; for another user, the kernel clears them on setuid and only explicitly
//!    added capabilities are kept, through inheritable and ambient (as podman does), so that
//!    they survive the exec.
//! 4. no_new_privs, when asked for, last.

use std::collections::HashSet;

use caps::{CapSet, Capability};
use serde::{Deserialize, Serialize};

/// Docker's default capabilities (bounding, permitted and effective for root).
pub const DEFAULT_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Docker's masked paths: files get /dev/null bound over them, directories an empty read-only
/// tmpfs.
pub const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// How a sandbox is confined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    /// The container's capabilities (`CAP_…` names).
    pub capabilities: Vec<String>,
    /// Capabilities added explicitly (`--cap-add`): the ones a non-root user keeps.
    pub added: Vec<String>,
    pub no_new_privileges: bool,
    /// Masked and read-only paths are skipped (`--privileged`).
    pub privileged: bool,
    /// The seccomp program to load (raw `struct sock_filter`s, hex), or none (`unconfined`).
    #[serde(default)]
    pub seccomp: Option<String>,
}

impl SecuritySpec {
    /// The set for `cap-add`/`cap-drop`/`privileged` over Docker's defaults. `ALL` means every
    /// capability in boxr's own bounding set (a host may lack some; asking for them must not
    /// fail the start).
    pub fn new(
        add: &[String],
        drop: &[String],
        privileged: bool,
        no_new_privileges: bool,
    ) -> Result<SecuritySpec, String> {
        let own = caps::read(None, CapSet::Bounding).map_err(|e| e.to_string())?;
        let parse = |n: &String| -> Result<Option<Capability>, String> {
            let upper = n.to_ascii_uppercase();
            if upper == "ALL" {
                return Ok(None);
            }
            let full = if upper.starts_with("CAP_") {
                upper
            } else {
                format!("CAP_{upper}")
            };
            full.parse::<Capability>()
                .map(Some)
                .map_err(|_| format!("unknown capability `{n}`"))
        };
        let mut set: HashSet<Capability> = DEFAULT_CAPS.iter().copied().collect();
        let mut added = Vec::new();
        if privileged {
            set.extend(own.iter().copied());
        }
        for d in drop {
            match parse(d)? {
                None => set.clear(),
                Some(c) => {
                    set.remove(&c);
                }
            }
        }
        for a in add {
            match parse(a)? {
                None => {
                    set.extend(own.iter().copied());
                    added.extend(own.iter().copied());
                }
                Some(c) => {
                    set.insert(c);
                    added.push(c);
                }
            }
        }
        // Nothing outside boxr's own bounding set can be had.
        set.retain(|c| own.contains(c));
        added.retain(|c| set.contains(c));
        let mut names: Vec<String> = set.iter().map(|c| c.to_string()).collect();
        names.sort();
        let mut added: Vec<String> = added.iter().map(|c| c.to_string()).collect();
        added.sort();
        added.dedup();
        Ok(SecuritySpec {
            capabilities: names,
            added,
            no_new_privileges,
            privileged,
            seccomp: None,
        })
    }

    fn set(&self, names: &[String]) -> HashSet<Capability> {
        names.iter().filter_map(|n| n.parse().ok()).collect()
    }
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("cannot {what}: {e}")
}

/// Cuts the bounding set to the container's capabilities (in the init, before it forks).
pub fn limit_bounding(spec: &SecuritySpec) -> Result<(), String> {
    let keep = spec.set(&spec.capabilities);
    for c in caps::read(None, CapSet::Bounding).map_err(|e| err("read the bounding set", e))? {
        if !keep.contains(&c) {
            caps::drop(None, CapSet::Bounding, c).map_err(|e| err("drop a capability", e))?;
        }
    }
    Ok(())
}

/// Before changing ids: keep the permitted set across setuid when a non-root user is to keep
/// added capabilities.
pub fn before_setuid(spec: &SecuritySpec, uid: u32) -> Result<(), String> {
    if uid != 0 && !spec.added.is_empty() {
        nix::sys::prctl::set_keepcaps(true).map_err(|e| err("keep capabilities", e))?;
    }
    Ok(())
}

/// After changing ids, right before exec: the final capability sets and no_new_privs.
pub fn after_setuid(spec: &SecuritySpec, uid: u32) -> Result<(), String> {
    let none = HashSet::new();
    caps::clear(None, CapSet::Ambient).map_err(|e| err("clear the ambient set", e))?;
    caps::set(None, CapSet::Inheritable, &none).map_err(|e| err("clear the inheritable set", e))?;
    if uid == 0 {
        let set = spec.set(&spec.capabilities);
        caps::set(None, CapSet::Effective, &set).map_err(|e| err("set the effective set", e))?;
        caps::set(None, CapSet::Permitted, &set).map_err(|e| err("set the permitted set", e))?;
    } else {
        // The kernel emptied the effective set on setuid; only added capabilities survive,
        // through inheritable and ambient, as podman does.
        let added = spec.set(&spec.added);
        caps::set(None, CapSet::Permitted, &added).map_err(|e| err("set the permitted set", e))?;
        caps::set(None, CapSet::Effective, &added).map_err(|e| err("set the effective set", e))?;
        caps::set(None, CapSet::Inheritable, &added)
            .map_err(|e| err("set the inheritable set", e))?;
        for c in &added {
            caps::raise(None, CapSet::Ambient, *c)
                .map_err(|e| err("raise an ambient capability", e))?;
        }
    }
    if spec.no_new_privileges {
        nix::sys::prctl::set_no_new_privs().map_err(|e| err("set no_new_privs", e))?;
    }
    Ok(())
}
