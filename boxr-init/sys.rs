//! boxr-init's system calls: the only `unsafe` of the program, every block with its reason.
//! Raw Linux system calls for x86_64 and aarch64 (the numbers differ; the calling convention
//! is the kernel's own), and the entry point.

use core::arch::{asm, naked_asm};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const LSEEK: usize = 8;
    pub const MMAP: usize = 9;
    pub const RT_SIGACTION: usize = 13;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const IOCTL: usize = 16;
    pub const PREAD64: usize = 17;
    pub const CLONE: usize = 56;
    pub const EXECVE: usize = 59;
    pub const EXIT_GROUP: usize = 231;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const FCNTL: usize = 72;
    pub const SETSID: usize = 112;
    pub const RT_SIGTIMEDWAIT: usize = 128;
    pub const PRCTL: usize = 157;
    pub const DUP3: usize = 292;
    pub const PIPE2: usize = 293;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const READ: usize = 63;
    pub const WRITE: usize = 64;
    pub const CLOSE: usize = 57;
    pub const LSEEK: usize = 62;
    pub const MMAP: usize = 222;
    pub const RT_SIGACTION: usize = 134;
    pub const RT_SIGPROCMASK: usize = 135;
    pub const IOCTL: usize = 29;
    pub const PREAD64: usize = 67;
    pub const CLONE: usize = 220;
    pub const EXECVE: usize = 221;
    pub const EXIT_GROUP: usize = 94;
    pub const WAIT4: usize = 260;
    pub const KILL: usize = 129;
    pub const FCNTL: usize = 25;
    pub const SETSID: usize = 157;
    pub const RT_SIGTIMEDWAIT: usize = 137;
    pub const PRCTL: usize = 167;
    pub const DUP3: usize = 24;
    pub const PIPE2: usize = 59;
}

pub const PR_SET_PDEATHSIG: usize = 1;
pub const PR_SET_DUMPABLE: usize = 4;
const PR_SET_NAME: usize = 15;
const O_CLOEXEC: usize = 0o2000000;
const F_SETFD: usize = 2;
const FD_CLOEXEC: usize = 1;
const SIG_SETMASK: usize = 2;
const TIOCSCTTY: usize = 0x540E;
const WNOHANG: usize = 1;
const SIGSET_SIZE: usize = 8;
const EINTR: i32 = 4;

/// A raw system call with up to six arguments; returns the kernel's result (negative: -errno).
#[cfg(target_arch = "x86_64")]
fn syscall(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the kernel's x86_64 convention (number in rax, arguments in rdi, rsi, rdx, r10,
    // r8, r9; rcx and r11 clobbered). Every caller passes arguments valid for its call:
    // pointers into memory it owns, of the length it says.
    unsafe {
        asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a[0], in("rsi") a[1],
             in("rdx") a[2], in("r10") a[3], in("r8") a[4], in("r9") a[5],
             lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret
}

#[cfg(target_arch = "aarch64")]
fn syscall(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the kernel's aarch64 convention (number in x8, arguments in x0..x5, result in
    // x0). Every caller passes arguments valid for its call.
    unsafe {
        asm!("svc 0", in("x8") n, inlateout("x0") a[0] as isize => ret, in("x1") a[1],
             in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5], options(nostack));
    }
    ret
}

fn check(r: isize) -> Result<usize, i32> {
    if r < 0 {
        Err(-r as i32)
    } else {
        Ok(r as usize)
    }
}

fn call(n: usize, a: [usize; 6]) -> Result<usize, i32> {
    loop {
        match check(syscall(n, a)) {
            Err(EINTR) => continue,
            r => return r,
        }
    }
}

/// The entry point: the kernel leaves argc, then the argument pointers, on the stack.
#[cfg(target_arch = "x86_64")]
#[unsafe(no_mangle)]
#[unsafe(naked)]
extern "C" fn _start() -> ! {
    naked_asm!("mov rdi, rsp", "and rsp, -16", "call {entry}", "ud2", entry = sym entry)
}

#[cfg(target_arch = "aarch64")]
#[unsafe(no_mangle)]
#[unsafe(naked)]
extern "C" fn _start() -> ! {
    naked_asm!("mov x0, sp", "bl {entry}", "brk #0", entry = sym entry)
}

extern "C" fn entry(stack: *const usize) -> ! {
    let mut args: [&[u8]; 4] = [b""; 4];
    // SAFETY: at entry the stack holds argc and then argc pointers to NUL-terminated strings
    // (the kernel's exec ABI); they live as long as the process. Only the first four are read.
    unsafe {
        let argc = *stack;
        for (i, slot) in args.iter_mut().enumerate().take(argc.min(4)) {
            let p = *stack.add(1 + i) as *const u8;
            let mut len = 0;
            while *p.add(len) != 0 {
                len += 1;
            }
            *slot = core::slice::from_raw_parts(p, len);
        }
        let argc = argc.min(4);
        super::main(&args[..argc])
    }
}

pub fn exit(code: i32) -> ! {
    loop {
        syscall(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
    }
}

pub fn close(fd: i32) -> Result<usize, i32> {
    check(syscall(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]))
}

pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        let n = call(
            nr::WRITE,
            [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
        )?;
        if n == 0 {
            return Err(5);
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Reads until `buf` is full or the end; returns how much was read.
pub fn read_full(fd: i32, buf: &mut [u8]) -> Result<usize, i32> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let n = call(
            nr::READ,
            [fd as usize, rest.as_mut_ptr() as usize, rest.len(), 0, 0, 0],
        )?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// Fresh zeroed memory that lives as long as the process.
fn alloc(len: usize) -> Option<&'static mut [u8]> {
    const PROT_READ_WRITE: usize = 3;
    const MAP_PRIVATE_ANONYMOUS: usize = 0x22;
    let len = len.max(1);
    let addr = check(syscall(
        nr::MMAP,
        [
            0,
            len,
            PROT_READ_WRITE,
            MAP_PRIVATE_ANONYMOUS,
            usize::MAX,
            0,
        ],
    ))
    .ok()?;
    // SAFETY: a new private anonymous mapping of `len` bytes, zeroed by the kernel, never
    // unmapped and referenced nowhere else.
    Some(unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) })
}

/// Room for `n` pointers that lives as long as the process.
pub fn alloc_pointers(n: usize) -> Option<&'static mut [*const u8]> {
    let bytes = alloc(n.checked_mul(core::mem::size_of::<usize>())?)?;
    // SAFETY: the mapping is page-aligned (so aligned for pointers), `n` pointers long, zeroed
    // (all null pointers) and owned by nobody else.
    Some(unsafe { core::slice::from_raw_parts_mut(bytes.as_mut_ptr() as *mut *const u8, n) })
}

/// The whole content of the file `fd` (from its start), in memory that lives as long as the
/// process.
pub fn read_whole(fd: i32) -> Option<&'static [u8]> {
    const SEEK_END: usize = 2;
    let len = call(nr::LSEEK, [fd as usize, 0, SEEK_END, 0, 0, 0]).ok()?;
    if len > 64 << 20 {
        return None;
    }
    let buf = alloc(len)?;
    let mut done = 0;
    while done < len {
        let rest = &mut buf[done..len];
        let n = call(
            nr::PREAD64,
            [
                fd as usize,
                rest.as_mut_ptr() as usize,
                rest.len(),
                done,
                0,
                0,
            ],
        )
        .ok()?;
        if n == 0 {
            return None;
        }
        done += n;
    }
    Some(&buf[..len])
}

pub fn prctl(option: usize, arg: usize) -> Result<usize, i32> {
    check(syscall(nr::PRCTL, [option, arg, 0, 0, 0, 0]))
}

/// Names this process (`name` ends with a NUL).
pub fn prctl_name(name: &[u8]) -> Result<usize, i32> {
    if name.last() != Some(&0) {
        return Err(22);
    }
    check(syscall(
        nr::PRCTL,
        [PR_SET_NAME, name.as_ptr() as usize, 0, 0, 0, 0],
    ))
}

pub fn set_cloexec(fd: i32) -> Result<usize, i32> {
    check(syscall(
        nr::FCNTL,
        [fd as usize, F_SETFD, FD_CLOEXEC, 0, 0, 0],
    ))
}

pub fn pipe_cloexec() -> Result<(i32, i32), i32> {
    let mut fds = [0i32; 2];
    check(syscall(
        nr::PIPE2,
        [fds.as_mut_ptr() as usize, O_CLOEXEC, 0, 0, 0, 0],
    ))?;
    Ok((fds[0], fds[1]))
}

/// fork(2): 0 in the child, the child's pid in the parent.
pub fn fork() -> Result<i32, i32> {
    const SIGCHLD: usize = 17;
    // clone(SIGCHLD) with no new stack: the child runs on a copy of this one, as after fork.
    check(syscall(nr::CLONE, [SIGCHLD, 0, 0, 0, 0, 0])).map(|pid| pid as i32)
}

/// Replaces the program; returns only on failure, with the errno.
pub fn execve(path: &[u8], argv: &[*const u8], envp: &[*const u8]) -> i32 {
    if path.last() != Some(&0) || argv.last() != Some(&core::ptr::null()) {
        return 22;
    }
    if envp.last() != Some(&core::ptr::null()) {
        return 22;
    }
    let r = syscall(
        nr::EXECVE,
        [
            path.as_ptr() as usize,
            argv.as_ptr() as usize,
            envp.as_ptr() as usize,
            0,
            0,
            0,
        ],
    );
    -r as i32
}

/// Restores the default action of signal `signo`.
pub fn default_action(signo: i32) -> Result<usize, i32> {
    // struct kernel_sigaction: handler (SIG_DFL = 0), flags, restorer, mask.
    let action = [0usize; 4];
    check(syscall(
        nr::RT_SIGACTION,
        [
            signo as usize,
            action.as_ptr() as usize,
            0,
            SIGSET_SIZE,
            0,
            0,
        ],
    ))
}

pub fn unblock_all() -> Result<usize, i32> {
    set_mask(0)
}

pub fn block_all() -> Result<usize, i32> {
    set_mask(u64::MAX)
}

fn set_mask(mask: u64) -> Result<usize, i32> {
    check(syscall(
        nr::RT_SIGPROCMASK,
        [
            SIG_SETMASK,
            &mask as *const u64 as usize,
            0,
            SIGSET_SIZE,
            0,
            0,
        ],
    ))
}

/// Waits for any (blocked) signal; returns its number.
pub fn wait_signal() -> Result<i32, i32> {
    let all = u64::MAX;
    check(syscall(
        nr::RT_SIGTIMEDWAIT,
        [&all as *const u64 as usize, 0, 0, SIGSET_SIZE, 0, 0],
    ))
    .map(|s| s as i32)
}

/// Reaps one exited child: its pid and exit code (128 + signal when killed); `None` when none
/// has exited.
pub fn reap_any() -> Option<(i32, i32)> {
    loop {
        let mut status = 0i32;
        let pid = call(
            nr::WAIT4,
            [
                usize::MAX,
                &mut status as *mut i32 as usize,
                WNOHANG,
                0,
                0,
                0,
            ],
        )
        .ok()?;
        if pid == 0 {
            return None;
        }
        let termsig = status & 0x7f;
        if termsig == 0 {
            return Some((pid as i32, (status >> 8) & 0xff));
        }
        if termsig != 0x7f {
            return Some((pid as i32, 128 + termsig));
        }
        // Stopped or continued: not an end.
    }
}

pub fn kill(pid: i32, signo: i32) -> Result<usize, i32> {
    check(syscall(
        nr::KILL,
        [pid as usize, signo as usize, 0, 0, 0, 0],
    ))
}

pub fn setsid() -> Result<(), i32> {
    check(syscall(nr::SETSID, [0; 6])).map(drop)
}

pub fn set_controlling_tty(fd: i32) -> Result<(), i32> {
    check(syscall(nr::IOCTL, [fd as usize, TIOCSCTTY, 0, 0, 0, 0])).map(drop)
}

/// dup2(from, to).
pub fn dup_to(from: i32, to: i32) -> Result<(), i32> {
    call(nr::DUP3, [from as usize, to as usize, 0, 0, 0, 0]).map(drop)
}

// What the compiler calls for copies, fills and comparisons, which libc would provide. Byte by
// byte through volatile accesses, so that the compiler cannot turn these loops back into calls
// to themselves; the program copies a few kilobytes at most.

/// # Safety
/// `dst` and `src` are valid for `n` bytes and do not overlap (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract (above).
    unsafe { memmove(dst, src, n) }
}

/// # Safety
/// `dst` and `src` are valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: both ranges are valid for `n` bytes (the caller's contract); copying backwards
    // when `dst` is after `src` reads every byte before it is overwritten.
    unsafe {
        if (dst as usize) <= (src as usize) {
            for i in 0..n {
                dst.add(i).write_volatile(src.add(i).read_volatile());
            }
        } else {
            for i in (0..n).rev() {
                dst.add(i).write_volatile(src.add(i).read_volatile());
            }
        }
    }
    dst
}

/// # Safety
/// `dst` is valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: `dst` is valid for `n` bytes (the caller's contract).
    unsafe {
        for i in 0..n {
            dst.add(i).write_volatile(c as u8);
        }
    }
    dst
}

/// # Safety
/// `a` and `b` are valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: both are valid for `n` bytes (the caller's contract).
    unsafe {
        for i in 0..n {
            let (x, y) = (a.add(i).read_volatile(), b.add(i).read_volatile());
            if x != y {
                return x as i32 - y as i32;
            }
        }
    }
    0
}

/// # Safety
/// `a` and `b` are valid for `n` bytes (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the caller's contract (above).
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// `s` points to a NUL-terminated string (the C contract).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut n = 0;
    // SAFETY: every byte up to the NUL is part of the string (the caller's contract).
    unsafe {
        while s.add(n).read_volatile() != 0 {
            n += 1;
        }
    }
    n
}

/// Named by the unwind tables of the precompiled `core` (built for unwinding); never called in
/// a program that aborts on panic.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
