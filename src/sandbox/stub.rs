//! boxr-init, the program that stays in a container (see `boxr-init/main.rs` and `build.rs`),
//! and how the runtime hands it the command.
//!
//! A process in a container's PID namespace must never run from a file of the host's
//! (CVE-2019-5736): a container process could reach the file through `/proc/PID/exe`, or have
//! it exec'd as its own through a `#!/proc/self/exe` script, and write it. The runtime sets the
//! container up as a non-dumpable process before any container process exists, and then execs
//! boxr-init from a sealed memfd: PID 1 (which forks and execs the command) or, with
//! `--init=false` and for `boxr exec`, the exec of the command itself. Its copy is a few
//! kilobytes, where a sealed copy of the whole runtime was a megabyte per start.

use std::ffi::CString;
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::memfd::{MFdFlags, memfd_create};

use super::SetupError;
use super::fds::{exec_copy, seal};
use super::process::{Prepared, StartError, start_err};
use super::sys;

/// The program, built by `build.rs`.
static PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/boxr-init"));

/// Its plan's header (see `boxr-init/main.rs`).
const MAGIC: &[u8; 4] = b"BXI1";
const SUPERVISE: u32 = 1;
const DETACHED: u32 = 2;

/// The program's sealed copy and a file for its plan, made before the confinement (a seccomp
/// profile may refuse `memfd_create`).
pub(super) struct Stub {
    program: OwnedFd,
    plan: File,
}

/// How boxr-init runs the command.
#[derive(Default)]
pub(super) struct How {
    /// PID 1: fork the command and supervise it (else exec it in place).
    pub supervise: bool,
    /// Where a failure to start is reported (`CODE\nMESSAGE`; else stderr). A supervising init
    /// of a detached sandbox closes it once the command runs, and stops dying with its parent.
    pub report: Option<RawFd>,
    /// Where a supervising init writes the command's exit code before it exits.
    pub exit: Option<RawFd>,
    /// The terminal the command takes as its controlling one (and as 0, 1, 2).
    pub tty: Option<RawFd>,
}

impl Stub {
    pub(super) fn new() -> Result<Stub, SetupError> {
        let fd = memfd_create(
            "boxr-init",
            MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
        )
        .map_err(SetupError::at("memfd_create"))?;
        let mut program = File::from(fd);
        program
            .write_all(PROGRAM)
            .map_err(SetupError::io("cannot write boxr-init"))?;
        let program = seal(program.into())?;
        // Not close-on-exec: boxr-init reads it, then closes it.
        let plan = memfd_create("boxr-init-plan", MFdFlags::empty())
            .map_err(SetupError::at("memfd_create"))?;
        Ok(Stub {
            program,
            plan: plan.into(),
        })
    }

    /// Replaces this process with boxr-init, which runs `cmd` as `how` says. Returns only on
    /// failure.
    pub(super) fn exec(mut self, how: &How, cmd: &Prepared) -> StartError {
        let plan = plan(how, cmd);
        if let Err(e) = self.plan.write_all(&plan).and_then(|()| self.plan.rewind()) {
            return start_err(125, format!("cannot write boxr-init's plan: {e}"));
        }
        // What boxr-init holds on to is passed through the exec.
        for fd in [how.report, how.exit, how.tty].into_iter().flatten() {
            if let Err(e) = sys::clear_cloexec(fd) {
                return start_err(125, format!("cannot pass descriptor {fd}: {e}"));
            }
        }
        let args = [
            CString::from(c"boxr-init"),
            CString::new(self.plan.as_raw_fd().to_string()).expect("digits"),
        ];
        let e = exec_copy(&self.program, &args);
        start_err(125, format!("cannot run boxr-init: {}", e.desc()))
    }
}

fn plan(how: &How, cmd: &Prepared) -> Vec<u8> {
    let flags = if how.supervise { SUPERVISE } else { 0 }
        | if how.supervise && how.report.is_some() {
            DETACHED
        } else {
            0
        };
    let mut out = MAGIC.to_vec();
    for word in [
        flags,
        how.report.unwrap_or(-1) as u32,
        how.exit.unwrap_or(-1) as u32,
        how.tty.unwrap_or(-1) as u32,
        cmd.args.len() as u32,
        cmd.env.len() as u32,
    ] {
        out.extend_from_slice(&word.to_ne_bytes());
    }
    for s in std::iter::once(&cmd.path).chain(&cmd.args).chain(&cmd.env) {
        out.extend_from_slice(s.as_bytes_with_nul());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_small_and_static() {
        assert_eq!(&PROGRAM[..4], b"\x7fELF");
        assert!(PROGRAM.len() < 64 * 1024, "{} bytes", PROGRAM.len());
        // No interpreter: nothing but the kernel loads it.
        assert!(
            !PROGRAM.windows(8).any(|w| w == b"ld-linux"),
            "boxr-init names a dynamic loader"
        );
    }

    #[test]
    fn a_plan_lays_out_the_command_after_its_header() {
        let cmd = Prepared {
            command: "sh".into(),
            path: c"/bin/sh".into(),
            args: vec![c"sh".into(), c"-c".into()],
            env: vec![c"A=1".into()],
        };
        let how = How {
            supervise: true,
            report: Some(7),
            ..How::default()
        };
        let p = plan(&how, &cmd);
        assert_eq!(&p[..4], b"BXI1");
        let word = |i: usize| i32::from_ne_bytes(p[4 + 4 * i..8 + 4 * i].try_into().unwrap());
        assert_eq!(
            [word(0), word(1), word(2), word(3), word(4), word(5)],
            [3, 7, -1, -1, 2, 1]
        );
        assert_eq!(&p[28..], b"/bin/sh\0sh\0-c\0A=1\0");
    }
}
