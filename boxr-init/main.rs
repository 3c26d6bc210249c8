//! boxr-init: the last program of boxr's own that runs in a container. A program of its own,
//! with no standard library and no libc, built by `build.rs` into a static executable of a few
//! kilobytes that the sandbox runtime embeds and copies, per container, into a sealed memfd.
//!
//! Why it exists (CVE-2019-5736): a process that runs in a container's PID namespace must never
//! run from a file of the host's, or a container process could reach that file through
//! `/proc/PID/exe` (or have the host's binary exec'd as its own through `#!/proc/self/exe`) and
//! write it. The sandbox runtime (a megabyte) sets the container up, non-dumpable, before any
//! container process exists; it then execs this program, which is what stays: PID 1 of the
//! container, and the process that execs every command. Copying it costs microseconds where
//! copying the runtime cost half a millisecond per start and a megabyte per running container.
//!
//! Input: `boxr-init FD`, FD a descriptor holding the plan (see `Plan`), written by the runtime
//! (`sandbox::stub`, in the crate). Two modes:
//! - exec: exec the command in place (`--init=false`, and the last step of `boxr exec`);
//! - supervise: PID 1. Fork the command, reap every orphan, forward every signal to the command
//!   (ignoring the terminal stop signals), and exit with its status (128 + signal when it was
//!   killed), written to the exit descriptor first.
//!
//! A failure to start the command is reported as the runtime reports it: `CODE\nMESSAGE` on the
//! report descriptor when there is one, else `boxr: MESSAGE` on stderr.

#![no_std]
#![no_main]
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod sys;

/// The plan's header: magic, flags, report fd, exit fd, terminal fd, argc, envc (each 4
/// bytes, native order), then NUL-terminated strings: the command's path, its arguments, its
/// environment.
const MAGIC: &[u8; 4] = b"BXI1";
const HEADER: usize = 28;
/// Fork the command and supervise it (else exec it in place).
const SUPERVISE: u32 = 1;
/// A detached sandbox: once the command runs, stop dying with the runtime and close the report
/// descriptor (its end tells the runtime the command started).
const DETACHED: u32 = 2;

const SIGKILL: i32 = 9;
const SIGSTOP: i32 = 19;
const SIGCHLD: i32 = 17;
const SIGTSTP: i32 = 20;
const SIGTTIN: i32 = 21;
const SIGTTOU: i32 = 22;

struct Plan<'a> {
    flags: u32,
    report: i32,
    exit: i32,
    tty: i32,
    path: &'a [u8],
    /// NUL-terminated pointers, ready for execve.
    argv: &'a [*const u8],
    envp: &'a [*const u8],
    /// The command as the user gave it (the first argument), for messages.
    command: &'a [u8],
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    sys::exit(125)
}

/// Called by `sys::_start` with the arguments.
fn main(args: &[&[u8]]) -> ! {
    let _ = sys::prctl(sys::PR_SET_DUMPABLE, 0);
    let _ = sys::prctl_name(b"memfd:boxr-init\0");
    // Every signal's default action: an exec keeps the signals its caller ignored (the Rust
    // runtime of boxr ignores SIGPIPE, `nohup boxr` SIGHUP), and the command must start as
    // under Docker, with none ignored. For PID 1 too: its children inherit its dispositions, and
    // blocked signals are queued for it whatever their action.
    for signo in 1..=64 {
        if signo != SIGKILL && signo != SIGSTOP {
            let _ = sys::default_action(signo);
        }
    }
    let Some(fd) = args.get(1).and_then(|a| parse_int(a)) else {
        say(-1, 125, &[b"boxr-init: no plan"]);
        sys::exit(125)
    };
    let Some(plan) = read_plan(fd) else {
        say(-1, 125, &[b"boxr-init: a bad plan"]);
        sys::exit(125)
    };
    let _ = sys::close(fd);
    if plan.flags & SUPERVISE == 0 {
        // The report and exit descriptors close as the command starts.
        for fd in [plan.report, plan.exit] {
            if fd >= 0 {
                let _ = sys::set_cloexec(fd);
            }
        }
        let errno = sys::execve(plan.path, plan.argv, plan.envp);
        let code = exec_code(errno);
        say(plan.report, code, &exec_message(plan.command, errno));
        sys::exit(code)
    }
    supervise(&plan)
}

/// PID 1: starts the command and stays until it ends.
fn supervise(plan: &Plan) -> ! {
    // Every signal blocked (the runtime blocked them all before the exec, which keeps the mask
    // and anything pending; again here for any other caller): they are taken with
    // rt_sigtimedwait, real-time ones included. (SIGCHLD has its default action, set above, so
    // the kernel does not reap the children itself.)
    let _ = sys::block_all();
    let Ok((err_r, err_w)) = sys::pipe_cloexec() else {
        say(plan.report, 125, &[b"init: pipe failed"]);
        sys::exit(125)
    };
    let child = match sys::fork() {
        Ok(0) => {
            let _ = sys::close(err_r);
            for fd in [plan.report, plan.exit] {
                if fd >= 0 {
                    let _ = sys::close(fd);
                }
            }
            let _ = sys::unblock_all();
            if plan.tty >= 0
                && let Err(errno) = take_terminal(plan.tty)
            {
                let _ = sys::write_all(err_w, &failure(125, errno));
                sys::exit(125)
            }
            let errno = sys::execve(plan.path, plan.argv, plan.envp);
            let code = exec_code(errno);
            let _ = sys::write_all(err_w, &failure(code, errno));
            sys::exit(code)
        }
        Ok(pid) => pid,
        Err(errno) => {
            say(plan.report, 125, &[b"init: fork: ", strerror(errno)]);
            sys::exit(125)
        }
    };
    let _ = sys::close(err_w);
    if plan.tty >= 0 {
        let _ = sys::close(plan.tty);
    }
    let mut buf = [0u8; 8];
    let mut failed = None;
    if let Ok(8) = sys::read_full(err_r, &mut buf) {
        let code = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if code == 125 {
            say(
                plan.report,
                code,
                &[b"cannot take the terminal: ", strerror(errno)],
            );
        } else {
            say(plan.report, code, &exec_message(plan.command, errno));
        }
        failed = Some(code);
    } else if plan.report >= 0 {
        if plan.flags & DETACHED != 0 {
            let _ = sys::prctl(sys::PR_SET_PDEATHSIG, 0);
        }
        // Only now: the runtime takes the end of this pipe for "started".
        let _ = sys::close(plan.report);
    }
    let _ = sys::close(err_r);
    let status = wait_for(child);
    let code = failed.unwrap_or(status);
    if plan.exit >= 0 {
        let mut text = [0u8; 12];
        let n = format_int(code, &mut text);
        text[n] = b'\n';
        let _ = sys::write_all(plan.exit, &text[..=n]);
    }
    sys::exit(code)
}

/// Reaps and forwards until `child` exits; returns its exit code.
fn wait_for(child: i32) -> i32 {
    loop {
        match sys::wait_signal() {
            Ok(SIGCHLD) => {
                // Everything that has exited: the command and any orphan.
                while let Some((pid, code)) = sys::reap_any() {
                    if pid == child {
                        return code;
                    }
                }
            }
            Ok(SIGTSTP | SIGTTIN | SIGTTOU) | Err(_) => {}
            Ok(signo) => {
                let _ = sys::kill(child, signo);
            }
        }
    }
}

/// The child: a session of its own, the terminal as its controlling one and as 0, 1 and 2.
fn take_terminal(tty: i32) -> Result<(), i32> {
    sys::setsid()?;
    sys::set_controlling_tty(tty)?;
    for fd in 0..3 {
        if fd != tty {
            sys::dup_to(tty, fd)?;
        }
    }
    if tty > 2 {
        let _ = sys::close(tty);
    }
    Ok(())
}

fn failure(code: i32, errno: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&code.to_ne_bytes());
    b[4..].copy_from_slice(&errno.to_ne_bytes());
    b
}

/// The exit code of a command that could not be exec'd: 127 when it does not exist, else 126
/// (as a shell says).
fn exec_code(errno: i32) -> i32 {
    if errno == 2 { 127 } else { 126 }
}

fn exec_message(command: &[u8], errno: i32) -> [&[u8]; 5] {
    [b"exec: \"", command, b"\": ", strerror(errno), b""]
}

/// Reports a failure: `CODE\nMESSAGE` on the report descriptor, else `boxr: MESSAGE` on stderr.
fn say(report: i32, code: i32, parts: &[&[u8]]) {
    let mut buf = [0u8; 4096];
    let mut n = 0;
    let mut put = |s: &[u8], n: &mut usize| {
        let take = s.len().min(buf.len() - *n);
        buf[*n..*n + take].copy_from_slice(&s[..take]);
        *n += take;
    };
    if report >= 0 {
        let mut text = [0u8; 12];
        let len = format_int(code, &mut text);
        put(&text[..len], &mut n);
        put(b"\n", &mut n);
    } else {
        put(b"boxr: ", &mut n);
    }
    for p in parts {
        put(p, &mut n);
    }
    if report < 0 {
        put(b"\n", &mut n);
    }
    let _ = sys::write_all(if report >= 0 { report } else { 2 }, &buf[..n]);
}

/// The text glibc gives for the errors execve, setsid and TIOCSCTTY return.
fn strerror(errno: i32) -> &'static [u8] {
    match errno {
        1 => b"Operation not permitted",
        2 => b"No such file or directory",
        5 => b"Input/output error",
        7 => b"Argument list too long",
        8 => b"Exec format error",
        9 => b"Bad file descriptor",
        11 => b"Resource temporarily unavailable",
        12 => b"Cannot allocate memory",
        13 => b"Permission denied",
        14 => b"Bad address",
        20 => b"Not a directory",
        21 => b"Is a directory",
        22 => b"Invalid argument",
        23 => b"Too many open files in system",
        24 => b"Too many open files",
        25 => b"Inappropriate ioctl for device",
        26 => b"Text file busy",
        36 => b"File name too long",
        40 => b"Too many levels of symbolic links",
        80 => b"Accessing a corrupted shared library",
        _ => b"Unknown error",
    }
}

fn parse_int(s: &[u8]) -> Option<i32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut v = 0i32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i32;
    }
    Some(v)
}

/// Writes `v` in decimal into `out`; returns the length.
fn format_int(v: i32, out: &mut [u8; 12]) -> usize {
    let mut digits = [0u8; 11];
    let mut n = 0;
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        digits[n] = b'0' + (u % 10) as u8;
        n += 1;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    let mut len = 0;
    if neg {
        out[0] = b'-';
        len = 1;
    }
    for i in (0..n).rev() {
        out[len] = digits[i];
        len += 1;
    }
    len
}

fn read_plan(fd: i32) -> Option<Plan<'static>> {
    let data = sys::read_whole(fd)?;
    if data.len() < HEADER || &data[..4] != MAGIC {
        return None;
    }
    let word = |i: usize| {
        let b = &data[4 + 4 * i..8 + 4 * i];
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    };
    let (flags, report, exit, tty) = (word(0), word(1) as i32, word(2) as i32, word(3) as i32);
    let (argc, envc) = (word(4) as usize, word(5) as usize);
    if argc == 0 || argc > 1 << 20 || envc > 1 << 20 {
        return None;
    }
    // The strings, each checked to end with a NUL within the plan.
    let pointers = sys::alloc_pointers(argc + 1 + envc + 1)?;
    let mut rest = &data[HEADER..];
    let mut next = || {
        let end = rest.iter().position(|&c| c == 0)?;
        let (s, tail) = rest.split_at(end + 1);
        rest = tail;
        Some(s)
    };
    let path = next()?;
    // Each list ends with a null pointer: alloc_pointers zeroed them all.
    let (argv, envp) = pointers.split_at_mut(argc + 1);
    let mut command: &[u8] = b"";
    for (i, slot) in argv.iter_mut().take(argc).enumerate() {
        let s = next()?;
        if i == 0 {
            command = &s[..s.len() - 1];
        }
        *slot = s.as_ptr();
    }
    for slot in envp.iter_mut().take(envc) {
        *slot = next()?.as_ptr();
    }
    let (argv, envp): (&[*const u8], &[*const u8]) = (argv, envp);
    Some(Plan {
        flags,
        report,
        exit,
        tty,
        path,
        argv,
        envp,
        command,
    })
}
