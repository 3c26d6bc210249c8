//! The only place in boxr with `unsafe` code: operations that nix exposes only as unsafe (the
//! new mount API in `mounts`).
#![allow(unsafe_code)]

mod mounts;

pub use mounts::*;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
use nix::unistd::ForkResult;

/// The number of threads of this process, from /proc/self/status.
pub fn thread_count() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `fork()`, for the sandbox helper and init only.
///
/// # Panics
/// If the process has more than one thread: forking a multi-threaded process can leave locks
/// (the allocator's, stdio's) held forever in the child.
pub fn fork() -> nix::Result<ForkResult> {
    assert_eq!(thread_count(), 1, "fork() from a multi-threaded process");
    // SAFETY: the process is single-threaded (asserted above): it is the sandbox helper (the
    // runtime, or a single-threaded `boxr run` or `boxr exec`) or the container's first
    // process, which start no threads from here on. So no other thread can hold a lock that the
    // child would inherit locked, and the child may allocate and use std freely.
    unsafe { nix::unistd::fork() }
}

/// `struct clone_args` of clone3(2) (the fields up to `cgroup`, Linux 5.7).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `fork()` (clone3) whose child is born in a new PID namespace (`new_pid`: it is PID 1 there,
/// while this process stays where it is, free to fork later) and in the cgroup2 directory
/// `cgroup` (CLONE_INTO_CGROUP: no migration afterwards, so no wait for the kernel's
/// threadgroup lock). ENOSYS or E2BIG on a kernel without clone3 (5.3) or its cgroup field
/// (5.7). Same contract as [`fork`]: the process must be single-threaded.
pub fn fork_into(new_pid: bool, cgroup: Option<&OwnedFd>) -> nix::Result<ForkResult> {
    assert_eq!(thread_count(), 1, "fork() from a multi-threaded process");
    let mut flags = 0;
    if new_pid {
        flags |= nix::libc::CLONE_NEWPID as u64;
    }
    if cgroup.is_some() {
        flags |= CLONE_INTO_CGROUP;
    }
    let args = CloneArgs {
        flags,
        exit_signal: nix::libc::SIGCHLD as u64,
        cgroup: cgroup.map_or(0, |c| c.as_raw_fd() as u64),
        ..Default::default()
    };
    // SAFETY: without CLONE_VM (and with no stack given) clone3 is a fork: the child gets a
    // copy of the address space and returns here with 0. The process is single-threaded
    // (asserted above), so, as for `fork`, no lock can be held by another thread in the child.
    // `args` is a live, initialized struct of the size passed. Unlike glibc's fork, the raw
    // call leaves the child's cached thread id the parent's, which only `raise`/`abort` read:
    // the child (the sandbox's first process) makes namespaces and execs, as crun's does.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match r {
        r if r < 0 => Err(nix::errno::Errno::last()),
        0 => Ok(ForkResult::Child),
        pid => Ok(ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(pid as i32),
        }),
    }
}

/// Proof that this process was single-threaded when it was made (see [`single_threaded`]).
pub struct SingleThreaded(());

/// A [`SingleThreaded`] token, if the process has one thread now. For a process that is about
/// to enter another mount namespace, where /proc no longer shows it: it checks first and forks
/// later with [`fork_checked`], starting no thread in between.
pub fn single_threaded() -> Option<SingleThreaded> {
    (thread_count() == 1).then_some(SingleThreaded(()))
}

/// `fork()` for a process that proved it was single-threaded (and starts no threads).
pub fn fork_checked(_proof: SingleThreaded) -> nix::Result<ForkResult> {
    // SAFETY: the token was made when the process had one thread (`single_threaded`), and the
    // exec helper that holds it starts none: no other thread can hold a lock the child would
    // inherit locked.
    unsafe { nix::unistd::fork() }
}

/// Brings the loopback interface of the current network namespace up (a new network namespace
/// starts with `lo` down).
pub fn loopback_up() -> io::Result<()> {
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut ifr: nix::libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as nix::libc::c_char;
    }
    // SAFETY: a valid socket descriptor and a pointer to a live, initialized ifreq that the
    // kernel fills in (SIOCGIFFLAGS) or reads (SIOCSIFFLAGS); both outlive the calls.
    unsafe {
        if nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |=
            (nix::libc::IFF_UP | nix::libc::IFF_RUNNING) as nix::libc::c_short;
        if nix::libc::ioctl(sock.as_raw_fd(), nix::libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets FD_CLOEXEC on a descriptor number (EBADF if it is not open).
pub fn set_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) on any integer is memory-safe: it touches no memory of ours and
    // fails with EBADF when the number is not an open descriptor.
    let r = unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a descriptor our parent handed down by number (`--spec-fd N`).
pub fn own_fd(fd: i32) -> Option<OwnedFd> {
    if fd < 3 {
        return None;
    }
    // SAFETY: F_GETFD on any integer is memory-safe.
    if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open (checked above) and was created by the process that
    // exec'd us for us alone; nothing else in this freshly started process refers to it, so
    // this is its only owner and it is closed exactly once, when the OwnedFd drops.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Clears FD_CLOEXEC, so the descriptor survives the next exec.
/// Whether descriptor `fd` is close-on-exec (`None`: not open).
pub fn is_cloexec(fd: i32) -> Option<bool> {
    // SAFETY: fcntl(F_GETFD) on any integer is memory-safe (EBADF when it is not open).
    let r = unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) };
    (r >= 0).then_some(r & nix::libc::FD_CLOEXEC != 0)
}

pub fn clear_cloexec(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl(F_SETFD) on any integer is memory-safe (EBADF when it is not open).
    let r = unsafe { nix::libc::fcntl(fd, nix::libc::F_SETFD, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of a descriptor that recvmsg (SCM_RIGHTS) just created in this process.
pub fn own_received_fd(fd: i32) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel installed this descriptor in our table for this recvmsg call; nothing
    // else in the process knows its number, so this is its only owner.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `fd` (a terminal) the controlling terminal of the calling session leader.
pub fn set_controlling_tty(fd: i32) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal) and reads no memory of ours.
    let r = unsafe { nix::libc::ioctl(fd, nix::libc::TIOCSCTTY, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Copies the window size of terminal `from` to terminal `to` (a no-op when `from` is not a
/// terminal).
pub fn copy_winsize(from: i32, to: i32) -> io::Result<()> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `winsize` into the live, initialized struct we pass, and
    // TIOCSWINSZ reads one from it; both calls return before `ws` goes out of scope.
    unsafe {
        if nix::libc::ioctl(from, nix::libc::TIOCGWINSZ, &mut ws) < 0 {
            return Err(io::Error::last_os_error());
        }
        if nix::libc::ioctl(to, nix::libc::TIOCSWINSZ, &ws) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// For a long-lived, mostly idle process: its code is mapped page by page as it runs, not in
/// the kernel's read-around windows (`MADV_RANDOM` on every file mapping), and the code pages
/// mapped so far are unmapped (`MADV_DONTNEED` on the executable mappings only: their pages are
/// never modified, and come back from the page cache when next run).
pub fn map_code_on_demand() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        // A path (a file mapping), not an anonymous or [special] one.
        if !f.nth(3).is_some_and(|p| p.starts_with('/')) {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        else {
            continue;
        };
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        let len = end - start;
        // SAFETY: the range is one whole mapping of this process (from /proc/self/maps);
        // MADV_RANDOM only changes how it is faulted in, and MADV_DONTNEED is applied only to
        // private executable file mappings, whose pages are never written: dropping them loses
        // nothing, they are read again from the file when used.
        unsafe {
            let _ = nix::sys::mman::madvise(addr, len, nix::sys::mman::MmapAdvise::MADV_RANDOM);
            if perms == "r-xp" {
                let _ =
                    nix::sys::mman::madvise(addr, len, nix::sys::mman::MmapAdvise::MADV_DONTNEED);
            }
        }
    }
}

/// `malloc_trim(0)`: returns free heap pages to the kernel.
pub fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its lock.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

/// The window size (rows, columns) of terminal `fd`.
pub fn get_winsize(fd: i32) -> io::Result<(u16, u16)> {
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a `winsize` into the live, initialized struct we pass.
    if unsafe { nix::libc::ioctl(fd, nix::libc::TIOCGWINSZ, &mut ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((ws.ws_row, ws.ws_col))
}

/// Sets the window size of terminal `fd` (the kernel then signals its foreground group).
pub fn set_winsize(fd: i32, rows: u16, cols: u16) -> io::Result<()> {
    let ws = nix::libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ only reads the live, initialized struct we pass.
    if unsafe { nix::libc::ioctl(fd, nix::libc::TIOCSWINSZ, &ws) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Loads a seccomp filter (raw `struct sock_filter`s) for the calling thread, which is the only
/// one (boxr's init). Needs no_new_privs or CAP_SYS_ADMIN.
pub fn load_seccomp(program: &[u8]) -> io::Result<()> {
    if program.is_empty()
        || !program.len().is_multiple_of(8)
        || program.len() / 8 > u16::MAX as usize
    {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // Decoded field by field: the byte buffer has no alignment guarantee.
    let filters: Vec<nix::libc::sock_filter> = program
        .chunks_exact(8)
        .map(|c| nix::libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = nix::libc::sock_fprog {
        len: filters.len() as u16,
        filter: filters.as_ptr() as *mut nix::libc::sock_filter,
    };
    // SAFETY: `prog` points at `filters`, which outlives the call; the kernel copies the
    // program and keeps no pointer to it.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_seccomp,
            1 as nix::libc::c_ulong, // SECCOMP_SET_MODE_FILTER
            0 as nix::libc::c_ulong,
            &prog as *const nix::libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `bpf(2)` attribute layouts (the prefixes boxr uses; the kernel zero-extends).
#[repr(C)]
#[derive(Default)]
struct BpfProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct BpfProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Sends signal number `signo` to `pid`: any signal, the real-time ones included (which nix's
/// `Signal` does not name).
pub fn send_signal(pid: i32, signo: i32) -> io::Result<()> {
    // SAFETY: kill takes two integers and touches no memory of ours.
    if unsafe { nix::libc::kill(pid, signo) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reaps one child that has ended (`pid`, or any with `None`) without blocking: its pid and
/// exit code, 128 + N when signal N killed it (a real-time one too, which nix's `WaitStatus`
/// cannot name: through nix such a child would be reaped and its status lost). `None` when no
/// child has ended.
pub fn reap(pid: Option<i32>) -> Option<(i32, i32)> {
    let mut status: nix::libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes the child's status into `status`, a live int of ours.
        let r = unsafe { nix::libc::waitpid(pid.unwrap_or(-1), &mut status, nix::libc::WNOHANG) };
        if r <= 0 {
            return None;
        }
        if nix::libc::WIFEXITED(status) {
            return Some((r, nix::libc::WEXITSTATUS(status)));
        }
        if nix::libc::WIFSIGNALED(status) {
            return Some((r, 128 + nix::libc::WTERMSIG(status)));
        }
    }
}

const BPF_PROG_LOAD: nix::libc::c_long = 5;
const BPF_PROG_ATTACH: nix::libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// Loads a cgroup device program (eBPF instructions, 8 bytes each) and attaches it to the
/// cgroup v2 directory `cgroup`: the kernel then asks it about every device access of the
/// cgroup's processes. The cgroup keeps the program; no descriptor stays open.
pub fn attach_device_program(cgroup: &std::path::Path, program: &[[u8; 8]]) -> io::Result<()> {
    let insns: Vec<u64> = program.iter().map(|i| u64::from_ne_bytes(*i)).collect();
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 1 << 16];
    let load = BpfProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: `load` points at `insns`, `license` and `log`, which outlive the call; the
    // kernel reads the first two and writes at most `log_size` bytes into the third.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_PROG_LOAD,
            &load as *const BpfProgLoad,
            std::mem::size_of::<BpfProgLoad>(),
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let text = String::from_utf8_lossy(&log);
        let text = text.trim_end_matches('\0').trim();
        return Err(io::Error::new(e.kind(), format!("{e}: {text}")));
    }
    // SAFETY: a non-negative return of BPF_PROG_LOAD is a new descriptor only we own.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let dir = std::fs::File::open(cgroup)?;
    let attach = BpfProgAttach {
        target_fd: dir.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    // SAFETY: `attach` is a plain struct read by the kernel during the call.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attach as *const BpfProgAttach,
            std::mem::size_of::<BpfProgAttach>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
