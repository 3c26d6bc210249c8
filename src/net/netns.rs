//! A network namespace of its own for a container, kept by a bind mount on a file in the
//! container's directory (which the sandbox then joins): made for a bridge endpoint and for a
//! rootless container's pasta alike.

use std::fs::File;
use std::path::Path;

use super::{NetError, io};

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
