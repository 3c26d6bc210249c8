//! The rootless network namespace (podman's rootless-netns): where a rootless boxr's bridge
//! networks live. A user cannot make a bridge, a veth or a firewall rule in the host's network
//! namespace, but can in one its user namespace owns. So every user network's bridge, its
//! containers' veths, its nftables rules and its resolver are made in one namespace of the
//! user's, kept by a bind mount at `networks/rootless/netns` (in the pause process's mount
//! namespace, which every rootless command joins), and connected to the host's network by a
//! pasta of its own (egress). Containers of one stack share it, so names between them work as
//! they do for root; their published ports are proxied from the host's side (see
//! `net::publish`).
//!
//! Made by the first endpoint that needs it, under the networks lock (without pasta, and so
//! without egress, if pasta cannot run: a host with no routable interface); gone (pasta ended,
//! mount dropped) when no container has an endpoint any more, and `gc` ends what a crash left.
//!
//! The code that makes and removes bridges, veths, rules and resolvers is root's, unchanged: it
//! runs on a thread of its own that joined this namespace ([`within`]). Only that thread is
//! in it: the process stays in the host's network (a thread cannot come back, since the host's
//! namespace is not the user's), where its published ports and registry connections belong.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;

use nix::sched::CloneFlags;

use super::netns::{open_rootless as open, rootless_dir as dir, rootless_path as path};
use super::{NetError, io, lock};
use crate::store::Store;

/// The journal key of its pasta (`journal/pasta-rootless-netns.json`).
const KEY: &str = "rootless-netns";

/// What a network operation needs of the rootless namespace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Need {
    /// It makes something (a bridge, a veth): the namespace is made if it is not there.
    Make,
    /// It only removes or reads: if the namespace is not there, neither is anything in it, and
    /// the operation runs in an empty namespace of its own (where it finds nothing to remove).
    Existing,
}

/// Runs `f` where this boxr's bridge networks live: for root, here; rootless, on a thread that
/// joined the rootless network namespace (made first for [`Need::Make`], under the networks
/// lock, which the caller holds).
pub(super) fn within<T: Send>(
    store: &Store,
    need: Need,
    f: impl FnOnce() -> Result<T, NetError> + Send,
) -> Result<T, NetError> {
    if !crate::rootless::active() {
        return f();
    }
    let ns = match (open(store), need) {
        (Some(ns), _) => Some(ns),
        (None, Need::Make) => {
            let d = dir(store);
            fs::create_dir_all(&d).map_err(io(format!("create {}", d.display())))?;
            if let Err(e) = super::pasta::start_shared(store, KEY, &d) {
                // Offline (no routable interface): the stack still works within itself.
                eprintln!(
                    "boxr: warning: the rootless network namespace has no egress ({e}); its \
                     containers reach each other only, until the last of them is removed"
                );
                super::pasta::start_offline(store, KEY, &d)?;
            }
            Some(File::open(path(store)).map_err(io("open the rootless network namespace"))?)
        }
        (None, Need::Existing) => None,
    };
    // On a thread in it already (an operation within another).
    if let Some(ns) = &ns
        && ns.metadata().is_ok_and(|m| m.ino() == super::own_netns())
    {
        return f();
    }
    std::thread::scope(|s| {
        let thread = s.spawn(move || {
            match &ns {
                Some(ns) => nix::sched::setns(ns, CloneFlags::CLONE_NEWNET),
                None => nix::sched::unshare(CloneFlags::CLONE_NEWNET),
            }
            .map_err(|e| io("join the rootless network namespace")(e.into()))?;
            f()
        });
        thread
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Ends the rootless namespace and its pasta when no container uses it any more (after an
/// endpoint was released). Takes the networks lock: an attach meanwhile either sees it still
/// here, or makes it again.
pub(super) fn release_if_unused(store: &Store) {
    if !crate::rootless::active() || !store.journal_entry("pasta", KEY).exists() {
        return;
    }
    let Ok(_l) = lock(store) else {
        return;
    };
    if !super::endpoints_in_use(store) {
        super::pasta::release(store, KEY, false);
    }
}
