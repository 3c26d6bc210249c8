//! The system calls of the rootfs setup that change mounts, the root or the hostname, or make
//! device nodes, behind one trait: the kernel's ([`Linux`]), or in the unit tests a recorder
//! that checks their order without root.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::{Mode, SFlag};

use super::{Result, attach_shm_of};

/// A device node to make: its type, mode, numbers and owner.
pub(in crate::sandbox) struct Node {
    pub kind: SFlag,
    pub mode: Mode,
    pub dev: u64,
    /// `None`: the caller's.
    pub owner: Option<(u32, u32)>,
}

/// The system calls of the setup that change mounts, the root or the hostname, or make device
/// nodes. Paths to mount on are `/proc/self/fd/N` of a descriptor resolved inside the rootfs.
pub(in crate::sandbox) trait Kernel {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// The overlay through the new mount API, each layer on its own (see `sys`).
    fn mount_overlay(
        &self,
        lowers: &[&Path],
        options: &[(&str, &str)],
        target: &Path,
    ) -> std::io::Result<()>;
    /// Makes the mount at `mount` and every mount below it read-only (`mount_setattr`).
    fn read_only_recursive(&self, mount: &OwnedFd) -> std::io::Result<()>;
    /// Shows at `target` the /dev/shm of the sandbox whose init is `pid`.
    fn attach_shm_of(&self, pid: i32, target: &OwnedFd) -> Result<()>;
    fn chdir(&self, dir: &Path) -> nix::Result<()>;
    /// `pivot_root(".", ".")`, then the old root (now on top) detached.
    fn pivot_root_here(&self) -> nix::Result<()>;
    fn sethostname(&self, name: &str) -> nix::Result<()>;
    /// mknod at `dir/name`, then its exact mode (mknod is subject to the umask) and owner.
    fn make_node(&self, dir: &OwnedFd, name: &str, node: &Node) -> nix::Result<()>;
}

/// The kernel's calls.
pub(in crate::sandbox) struct Linux;

impl Kernel for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn mount_overlay(
        &self,
        lowers: &[&Path],
        options: &[(&str, &str)],
        target: &Path,
    ) -> std::io::Result<()> {
        crate::sandbox::sys::mount_overlay_fsconfig(lowers, options, target)
    }

    fn read_only_recursive(&self, mount: &OwnedFd) -> std::io::Result<()> {
        crate::sandbox::sys::set_read_only_recursive(mount)
    }

    fn attach_shm_of(&self, pid: i32, target: &OwnedFd) -> Result<()> {
        attach_shm_of(pid, target)
    }

    fn chdir(&self, dir: &Path) -> nix::Result<()> {
        nix::unistd::chdir(dir)
    }

    fn pivot_root_here(&self) -> nix::Result<()> {
        nix::unistd::pivot_root(".", ".")?;
        nix::mount::umount2(".", MntFlags::MNT_DETACH)
    }

    fn sethostname(&self, name: &str) -> nix::Result<()> {
        nix::unistd::sethostname(name)
    }

    fn make_node(&self, dir: &OwnedFd, name: &str, node: &Node) -> nix::Result<()> {
        nix::sys::stat::mknodat(dir, name, node.kind, node.mode, node.dev)?;
        nix::sys::stat::fchmodat(
            dir,
            name,
            node.mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )?;
        let (uid, gid) = match node.owner {
            Some((u, g)) => (
                Some(nix::unistd::Uid::from_raw(u)),
                Some(nix::unistd::Gid::from_raw(g)),
            ),
            None => (None, None),
        };
        nix::unistd::fchownat(
            dir,
            name,
            uid,
            gid,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
    }
}
