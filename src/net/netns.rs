//! A network namespace of its own for a container, kept by a bind mount on a file in the
//! container's directory (which the sandbox then joins): made for a bridge endpoint and for a
//! rootless container's pasta alike. And where the rootless network namespace (see
//! `net::rootless`) is kept.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{NetError, io};
use crate::store::Store;

/// The directory of the rootless network namespace (its mount, its pasta's files).
pub(super) fn rootless_dir(store: &Store) -> PathBuf {
    store.networks_dir().join("rootless")
}

/// The bind mount that keeps the rootless network namespace.
pub(super) fn rootless_path(store: &Store) -> PathBuf {
    rootless_dir(store).join("netns")
}

/// The rootless network namespace, if it is there (a bind mount: another device than its
/// directory's).
pub(super) fn open_rootless(store: &Store) -> Option<File> {
    let p = rootless_path(store);
    let here = fs::metadata(&p).ok()?;
    let parent = fs::metadata(rootless_dir(store)).ok()?;
    (here.dev() != parent.dev())
        .then(|| File::open(&p).ok())
        .flatten()
}

/// The rootless network namespace, for a published port's proxy to connect into (none for
/// root, or when it is not there).
pub fn rootless_namespace(store: &Store) -> Option<File> {
    crate::rootless::active()
        .then(|| open_rootless(store))
        .flatten()
}

/// A new network namespace kept by a bind mount at `path`.
pub(super) fn make_netns(path: &Path) -> Result<(), NetError> {
    File::create(path).map_err(io(format!("create {}", path.display())))?;
    let target = path.to_owned();
    std::thread::spawn(move || -> std::io::Result<()> {
        // Only this thread moves into the new namespace; it ends here.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the namespace thread panicked")))
    .map_err(io(format!(
        "make a network namespace at {}",
        path.display()
    )))
}
