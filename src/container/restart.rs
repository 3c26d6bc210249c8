//! When a detached container starts again after it ends: its restart policy, and Docker's
//! backoff (100 ms, doubling to a minute; back to 100 ms once a run lasted 10 s). Kept apart
//! from the monitor's event loop so the rules are unit-tested.

use std::time::Duration;

use crate::values::RestartPolicy;

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the backoff.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// A container's restarts so far, under its policy.
#[derive(Debug)]
pub(super) struct Restarts {
    pub policy: RestartPolicy,
    /// Restarts done (what `inspect` shows as RestartCount).
    pub count: u32,
    delay: Duration,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Restarts {
        Restarts {
            policy,
            count: 0,
            delay: FIRST_DELAY,
        }
    }

    /// The container ended with `code` after running for `up`, not stopped by a user: how long
    /// to wait before it starts again, or `None` when the policy says it stays ended.
    pub fn after_exit(&mut self, code: i32, up: Duration) -> Option<Duration> {
        let again = match self.policy {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max_retries } => {
                code != 0 && max_retries.is_none_or(|m| self.count < m)
            }
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        };
        if !again {
            return None;
        }
        if up > RESET_AFTER {
            self.delay = FIRST_DELAY;
        }
        Some(self.delay)
    }

    /// The wait is over and the container starts again: one more restart, and the next wait
    /// twice as long.
    pub fn restarting(&mut self) {
        self.delay = (self.delay * 2).min(MAX_DELAY);
        self.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Duration = Duration::from_millis(50);

    #[test]
    fn no_never_restarts() {
        let mut r = Restarts::new(RestartPolicy::No);
        assert_eq!(r.after_exit(1, QUICK), None);
        assert_eq!(r.after_exit(0, QUICK), None);
    }

    #[test]
    fn on_failure_restarts_failures_up_to_its_limit() {
        let mut r = Restarts::new(RestartPolicy::OnFailure {
            max_retries: Some(2),
        });
        assert_eq!(r.after_exit(0, QUICK), None, "a success is not restarted");
        for _ in 0..2 {
            assert!(r.after_exit(3, QUICK).is_some());
            r.restarting();
        }
        assert_eq!(r.after_exit(3, QUICK), None, "two retries, then no more");
        assert_eq!(r.count, 2);
        let mut r = Restarts::new(RestartPolicy::OnFailure { max_retries: None });
        for _ in 0..100 {
            assert!(r.after_exit(1, QUICK).is_some());
            r.restarting();
        }
    }

    #[test]
    fn always_and_unless_stopped_restart_any_end() {
        for p in [RestartPolicy::Always, RestartPolicy::UnlessStopped] {
            let mut r = Restarts::new(p);
            assert!(r.after_exit(0, QUICK).is_some());
            assert!(r.after_exit(137, QUICK).is_some());
        }
    }

    #[test]
    fn the_backoff_doubles_to_a_minute_and_resets_after_a_long_run() {
        let mut r = Restarts::new(RestartPolicy::Always);
        let mut waits = Vec::new();
        for _ in 0..12 {
            waits.push(r.after_exit(1, QUICK).unwrap().as_millis());
            r.restarting();
        }
        assert_eq!(
            waits,
            [
                100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 51200, 60000, 60000
            ]
        );
        assert_eq!(
            r.after_exit(1, Duration::from_secs(11)),
            Some(FIRST_DELAY),
            "a run of more than 10 s starts the backoff over"
        );
    }
}
