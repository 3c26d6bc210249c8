//! `-t`: a pseudo-terminal for the container.
//!
//! The pty is allocated inside the container's own devpts instance (so `tty` there prints
//! `/dev/pts/0`, a path that exists in the container), by the init after pivot_root. The init
//! sends the master to the helper over a socketpair (SCM_RIGHTS, like runc's console socket) and
//! gives the slave to the command as its controlling terminal and stdio. The helper puts the
//! user's terminal in raw mode (so Ctrl-C travels as a byte and the container's line discipline
//! turns it into SIGINT for the container's foreground process) and copies bytes both ways,
//! passing the window size on at start and on every SIGWINCH.

use std::fs::File;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
use nix::sys::termios::{self, SetArg, Termios};
use nix::unistd::Pid;

use super::SetupError;
use super::sys;

/// In the init, after pivot_root: opens a pty in the container's devpts, sends the master to
/// the helper, and returns the slave.
pub fn open_in_container(console: RawFd) -> Result<OwnedFd, SetupError> {
    let (master, slave) = open_pair()?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console,
        &[IoSlice::new(b"m")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(SetupError::at("cannot pass the terminal to boxr"))?;
    Ok(slave)
}

/// A new pty in the devpts of this process's root (the container's, once inside it): its
/// master and slave.
pub fn open_pair() -> Result<(OwnedFd, OwnedFd), SetupError> {
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(SetupError::at("cannot open /dev/ptmx"))?;
    grantpt(&master).map_err(SetupError::at("grantpt"))?;
    unlockpt(&master).map_err(SetupError::at("unlockpt"))?;
    let name = ptsname_r(&master).map_err(SetupError::at("ptsname"))?;
    let slave: OwnedFd = File::options()
        .read(true)
        .write(true)
        .custom_flags_noctty()
        .open(&name)
        .map_err(SetupError::io(format!("cannot open {name}")))?
        .into();
    let master = OwnedFd::from(master);
    Ok((master, slave))
}

trait NoCtty {
    fn custom_flags_noctty(&mut self) -> &mut Self;
}

impl NoCtty for std::fs::OpenOptions {
    fn custom_flags_noctty(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(OFlag::O_NOCTTY.bits())
    }
}

/// In the command's process: a new session with the slave as controlling terminal and stdio.
pub fn become_controlled(slave: &OwnedFd) -> Result<(), SetupError> {
    nix::unistd::setsid().map_err(SetupError::at("setsid"))?;
    sys::set_controlling_tty(slave.as_raw_fd())
        .map_err(SetupError::io("cannot take the terminal"))?;
    nix::unistd::dup2_stdin(slave).map_err(SetupError::at("dup2 the terminal to stdin"))?;
    nix::unistd::dup2_stdout(slave).map_err(SetupError::at("dup2 the terminal to stdout"))?;
    nix::unistd::dup2_stderr(slave).map_err(SetupError::at("dup2 the terminal to stderr"))?;
    Ok(())
}

/// In the helper: receives the pty master from the init (None if the init exited first).
pub fn receive_master(console: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        console.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            return sys::own_received_fd(fd);
        }
    }
    None
}

/// The user's terminal in raw mode until dropped.
pub struct RawMode {
    saved: Option<Termios>,
}

impl RawMode {
    pub fn enter() -> RawMode {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            let mut raw = t.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        }
        RawMode { saved }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

/// In the helper: relays between the user's terminal and the container's pty until PID 1
/// exits; returns its exit code. `relayed` is blocked already.
pub fn proxy(master: OwnedFd, child: Pid, relayed: &SigSet, stdin_open: bool) -> i32 {
    let _raw = RawMode::enter();
    let _ = sys::copy_winsize(io::stdin().as_raw_fd(), master.as_raw_fd());
    let sigfd = match SignalFd::with_flags(relayed, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(s) => s,
        Err(_) => return super::relay::wait_relaying(child, relayed),
    };
    let mut master_file = File::from(master);
    let mut stdin_open = stdin_open;
    let mut buf = vec![0u8; 32 * 1024];
    let mut status: Option<i32> = None;
    loop {
        let stdin = io::stdin();
        let mut fds = vec![
            PollFd::new(master_file.as_fd(), PollFlags::POLLIN),
            PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
        ];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        // Once PID 1 is gone, drain what the pty still holds, then stop.
        let timeout = if status.is_some() {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => break,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
        let master_ready = fds[0].revents().unwrap_or(PollFlags::empty());
        let sig_ready = fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        let stdin_ready = fds
            .get(2)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        drop(fds);
        if master_ready.intersects(PollFlags::POLLIN) {
            match master_file.read(&mut buf) {
                Ok(0) | Err(_) => {
                    if status.is_some() {
                        break;
                    }
                }
                Ok(n) => {
                    let mut out = io::stdout();
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        } else if master_ready.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)
            && status.is_some()
        {
            break;
        }
        if stdin_ready.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = master_file.write_all(&buf[..n]);
                }
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    // A real-time signal: passed on all the same.
                    let _ = sys::send_signal(child.as_raw(), info.ssi_signo as i32);
                    continue;
                };
                match sig {
                    Signal::SIGCHLD => {
                        if let Some((_, code)) = sys::reap(Some(child.as_raw())) {
                            status = Some(code);
                        }
                    }
                    // The kernel signals the container's foreground group itself when the
                    // pty's size changes.
                    Signal::SIGWINCH => {
                        let _ = sys::copy_winsize(io::stdin().as_raw_fd(), master_file.as_raw_fd());
                    }
                    other => {
                        let _ = kill(child, other);
                    }
                }
            }
        }
    }
    match status {
        Some(code) => code,
        None => super::relay::wait_relaying(child, relayed),
    }
}
