//! Relaying the signals a user sends to `boxr run` (or `exec`) to the process it waits for, and
//! waiting for that process: shared by the helper, the exec helper and the terminal proxy.

use nix::sys::signal::{SigSet, Signal, kill};
use nix::unistd::Pid;

use super::sys;

/// Signals a user sends to `boxr run` that must reach the container.
pub(super) fn relayed() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGCHLD,
    ] {
        s.add(sig);
    }
    s
}

/// Waits for the sandbox's first process, relaying signals to it; returns its exit code
/// (128 + signal when killed).
pub(super) fn wait_relaying(child: Pid, relayed: &SigSet) -> i32 {
    loop {
        let sig = match relayed.wait() {
            Ok(s) => s,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        if let Some((_, code)) = sys::reap(Some(child.as_raw())) {
            return code;
        }
    }
}
