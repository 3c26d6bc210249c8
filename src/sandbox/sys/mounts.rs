//! The new mount API (fsopen, fsconfig, fsmount, open_tree, move_mount, mount_setattr), which
//! nix does not wrap: the overlay of a container's rootfs and the detached and idmapped copies
//! of mounts its rootfs is made of. Part of `sys`, the one module of boxr with `unsafe` code.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// The new mount API (Linux 5.2; overlay's `lowerdir+` since 6.8). nix has no wrappers.
const FSOPEN_CLOEXEC: nix::libc::c_uint = 1;
const FSCONFIG_SET_FLAG: nix::libc::c_uint = 0;
const FSCONFIG_SET_STRING: nix::libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: nix::libc::c_uint = 6;
const FSMOUNT_CLOEXEC: nix::libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: nix::libc::c_uint = 4;

fn check_fd(r: nix::libc::c_long) -> io::Result<OwnedFd> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a non-negative return of fsopen/fsmount is a new descriptor that only we own.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Mounts an overlay at `target` with the new mount API: each lower layer is passed on its own
/// (`lowerdir+`), so the number of layers is not limited by one page of mount data. `options`
/// are further `key=value` settings (upperdir, workdir, redirect_dir, ...); an empty value
/// makes a flag (`volatile`).
pub fn mount_overlay_fsconfig(
    lowers: &[&std::path::Path],
    options: &[(&str, &str)],
    target: &std::path::Path,
) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let cstr = |b: &[u8]| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    // SAFETY: fsopen reads the NUL-terminated name we pass; it returns a new descriptor or -1.
    let fs = check_fd(unsafe {
        nix::libc::syscall(nix::libc::SYS_fsopen, c"overlay".as_ptr(), FSOPEN_CLOEXEC)
    })?;
    // An empty value sets a flag option (`volatile`).
    let set = |key: &CString, value: &CString| -> io::Result<()> {
        let (cmd, value_ptr) = if value.is_empty() {
            (FSCONFIG_SET_FLAG, std::ptr::null())
        } else {
            (FSCONFIG_SET_STRING, value.as_ptr())
        };
        // SAFETY: fsconfig reads the NUL-terminated key and value (or no value for a flag);
        // both outlive the call.
        let r = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_fsconfig,
                fs.as_raw_fd(),
                cmd,
                key.as_ptr(),
                value_ptr,
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    let lowerdir = cstr(b"lowerdir+")?;
    for l in lowers {
        set(&lowerdir, &cstr(l.as_os_str().as_bytes())?)?;
    }
    for (k, v) in options {
        set(&cstr(k.as_bytes())?, &cstr(v.as_bytes())?)?;
    }
    // SAFETY: FSCONFIG_CMD_CREATE takes no pointers (both are null).
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<u8>(),
            std::ptr::null::<u8>(),
            0,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fsmount takes the context descriptor and flags; it returns a new descriptor.
    let mnt = check_fd(unsafe {
        nix::libc::syscall(nix::libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, 0)
    })?;
    let target = cstr(target.as_os_str().as_bytes())?;
    // SAFETY: move_mount reads the two NUL-terminated paths, which outlive the call.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

const OPEN_TREE_CLONE: nix::libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: nix::libc::c_uint = nix::libc::O_CLOEXEC as nix::libc::c_uint;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// A detached copy of the mount at `path` in this mount namespace (open_tree with
/// OPEN_TREE_CLONE): it can be attached elsewhere, in another namespace, with [`attach_mount`].
pub fn clone_mount(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_tree reads the NUL-terminated path; it returns a new descriptor or -1.
    check_fd(unsafe {
        nix::libc::syscall(
            nix::libc::SYS_open_tree,
            nix::libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    })
}

/// Attaches the detached mount `tree` (from [`clone_mount`]) on the directory `target` (a
/// descriptor, O_PATH will do) with move_mount.
pub fn attach_mount(tree: &OwnedFd, target: &OwnedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: nix::libc::c_uint = 0x0000_0004;
    const MOVE_MOUNT_T_EMPTY_PATH: nix::libc::c_uint = 0x0000_0040;
    // SAFETY: move_mount reads the two empty NUL-terminated paths; both descriptors are open.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A detached copy of the mount at `path` (open_tree with OPEN_TREE_CLONE), shown through the
/// id mapping of user namespace `userns` (an idmapped mount, Linux 5.12): a file owned by id
/// N on disk is seen as owned by the host id that N maps to.
pub fn idmapped_clone(path: &std::path::Path, userns: &OwnedFd) -> io::Result<OwnedFd> {
    let tree = clone_mount(path)?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (a live, initialized struct of the size we pass) and
    // the empty NUL-terminated path; the descriptors it names are open.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Makes the mount at `mount` (an O_PATH descriptor of its root) and every mount below it
/// read-only (mount_setattr with AT_RECURSIVE, Linux 5.12).
pub fn set_read_only_recursive(mount: &OwnedFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (a live, initialized struct of the size we pass) and
    // the empty NUL-terminated path; `mount` is an open descriptor.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            mount.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH | nix::libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
