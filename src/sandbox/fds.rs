//! Descriptors of the hidden modes: what a freshly exec'd helper inherits (its spec in a
//! memfd, stdin), closing what it must not pass on, and the sealing of the memfd that boxr-init
//! runs from (so a container can never write to the binary that runs it).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};

use super::SetupError;
use super::sys;

/// Marks every descriptor from 3 up close-on-exec, so nothing of the host leaks into the
/// container (CVE-2024-21626 came from a leaked directory descriptor).
pub(super) fn cloexec_all_fds() {
    for fd in fds_from_3() {
        // The listing's own descriptor is closed by now: EBADF for it is expected.
        let _ = sys::set_cloexec(fd);
    }
}

/// Runs `f` (which starts a program) with every descriptor from 3 up close-on-exec, then puts
/// back the ones that were not: the program inherits nothing of this process's (a pipe it held
/// open would keep a reader waiting for its end), and this process keeps what it passes on
/// later. Only for a process that starts nothing else meanwhile (one thread does).
pub fn spawn_without_inherited<T>(f: impl FnOnce() -> T) -> T {
    let open: Vec<i32> = fds_from_3()
        .into_iter()
        .filter(|fd| sys::is_cloexec(*fd) == Some(false))
        .collect();
    for fd in &open {
        let _ = sys::set_cloexec(*fd);
    }
    let r = f();
    for fd in &open {
        let _ = sys::clear_cloexec(*fd);
    }
    r
}

/// Closes every descriptor from 3 up except `keep` (see `sandbox::close_inherited_fds`).
pub(super) fn close_fds_except(keep: &[i32]) {
    for fd in fds_from_3().into_iter().filter(|fd| !keep.contains(fd)) {
        // The listing's own descriptor is closed by now: its EBADF is expected.
        drop(sys::own_fd(fd));
    }
}

/// This process's open descriptors from 3 up.
fn fds_from_3() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2)
        .collect()
}

/// Reads a JSON value from an inherited memfd and closes it.
pub(super) fn read_spec_fd<T: serde::de::DeserializeOwned>(fd: i32) -> Result<T, SetupError> {
    let owned = if fd == 0 {
        // A spec on stdin ([`super::spawn`]): a duplicate is ours to read; the caller then
        // points descriptor 0 at /dev/null.
        use std::os::fd::AsFd;
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(SetupError::io("cannot read the spec from stdin"))?
    } else {
        super::sys::own_fd(fd).ok_or(SetupError::NotOpen(fd))?
    };
    let mut f = File::from(owned);
    let mut buf = Vec::new();
    f.rewind()
        .and_then(|()| f.read_to_end(&mut buf))
        .map_err(SetupError::io("cannot read the spec"))?;
    serde_json::from_slice(&buf).map_err(SetupError::Spec)
}

/// Writes a JSON value into a new memfd that survives exec (for the next process to read).
/// `cloexec`: for a child started with the descriptor as its stdin (dup2 clears the flag).
pub(super) fn spec_memfd<T: serde::Serialize>(
    value: &T,
    cloexec: bool,
) -> Result<OwnedFd, SetupError> {
    let flags = if cloexec {
        MFdFlags::MFD_CLOEXEC
    } else {
        MFdFlags::empty()
    };
    let fd = memfd_create("boxr-spec", flags).map_err(SetupError::at("memfd_create"))?;
    let mut f = File::from(fd);
    f.write_all(&serde_json::to_vec(value).expect("serializes"))
        .map_err(SetupError::io("cannot write the spec"))?;
    Ok(f.into())
}

/// The seals of a sealed copy: it can no longer be written, grown or shrunk, nor unsealed.
fn seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Replaces this process with the program `copy` (a sealed copy) run with `args` (`argv[0]`
/// first) and an empty environment. Returns only on failure, with its error.
///
/// Through `execve` of the copy's `/proc/self/fd/N` (the kernel opens the program before it
/// closes the close-on-exec descriptors): this runs under the container's seccomp filter, and a
/// profile that lets the command be exec'd allows `execve`, not always `execveat`, which is the
/// way without a /proc.
pub(super) fn exec_copy(copy: &OwnedFd, args: &[std::ffi::CString]) -> nix::errno::Errno {
    let env: [std::ffi::CString; 0] = [];
    let path = std::ffi::CString::new(format!("/proc/self/fd/{}", copy.as_raw_fd()))
        .expect("no NUL in a number");
    match nix::unistd::execve(&path, args, &env) {
        Err(nix::errno::Errno::ENOENT) => {
            nix::unistd::execveat(copy, c"", args, &env, nix::fcntl::AtFlags::AT_EMPTY_PATH)
                .expect_err("execveat returns only on failure")
        }
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// Seals the memfd `fd` (made with `MFD_ALLOW_SEALING`): from now on nobody can write, grow,
/// shrink or unseal it, so a program run from it cannot be changed through `/proc/PID/exe`.
pub(super) fn seal(fd: OwnedFd) -> Result<OwnedFd, SetupError> {
    let mut tries = 0;
    loop {
        match fcntl(&fd, FcntlArg::F_ADD_SEALS(seals())) {
            Ok(_) => return Ok(fd),
            // Pages still referenced by I/O in flight: brief, so wait and try again.
            Err(nix::errno::Errno::EBUSY) if tries < 50 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(e) => return Err(SetupError::at("cannot seal boxr-init's copy")(e)),
        }
    }
}

/// A spec passed on stdin ([`super::spawn`]) is not the command's input: /dev/null takes its
/// place once it is read.
pub(super) fn stdin_from_dev_null() -> Result<(), SetupError> {
    let null = File::open("/dev/null").map_err(SetupError::io("cannot open /dev/null"))?;
    nix::unistd::dup2_stdin(&null).map_err(SetupError::at("dup2 /dev/null to stdin"))
}
