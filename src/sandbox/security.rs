//! Confinement of the init and the command: capabilities, no_new_privs, and (in `rootfs`) the
//! masked and read-only paths. The defaults are Docker's (RUNTIME-DEFAULTS.md).
//!
//! The init confines *itself* before it starts the command, which inherits the result and
//! only execs, so nothing in the container ever runs with more than the command. The order of
//! those steps (limits, filter, bounding set, ids, final sets) is `confine`'s, unit-tested there.

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
    ) -> Result<SecuritySpec, CapabilityError> {
        let own = caps::read(None, CapSet::Bounding).map_err(CapabilityError::Bounding)?;
        let parse = |n: &String| -> Result<Option<Capability>, CapabilityError> {
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
                .map_err(|_| CapabilityError::Unknown(n.clone()))
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
}

/// Why a capability set could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CapabilityError {
    #[error("unknown capability `{0}`")]
    Unknown(String),
    #[error("cannot read boxr's bounding set: {0}")]
    Bounding(#[source] caps::errors::CapsError),
}
