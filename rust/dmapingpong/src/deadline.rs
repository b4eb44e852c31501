//! Absolute deadlines for blocking calls.
//!
//! A blocking call restarted after `EINTR`, or split into several system
//! calls (a `poll()` then an ioctl, the `recvmsg()`s of one message), must
//! not restart its relative timeout each time: it waits for what is left of
//! one [`Deadline`] fixed when the operation began.

use std::time::{Duration, Instant};

use rustix::event::Timespec;

use crate::error::Error;

/// The end of a wait: `timeout` after the operation began, or never.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline {
    /// `None`: no bound (no timeout, or one beyond `Instant`'s range).
    at: Option<Instant>,
    /// The relative timeout this deadline was made from, for errors.
    timeout: Duration,
}

impl Deadline {
    /// `timeout` from now.
    pub(crate) fn after(timeout: Duration) -> Deadline {
        Deadline {
            at: Instant::now().checked_add(timeout),
            timeout,
        }
    }

    /// `timeout` from now, or never for `None`.
    pub(crate) fn after_opt(timeout: Option<Duration>) -> Deadline {
        match timeout {
            Some(t) => Deadline::after(t),
            None => Deadline {
                at: None,
                timeout: Duration::MAX,
            },
        }
    }

    /// The time left (zero once passed); `None` without bound.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.at
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// The time left as a `poll()` timeout; `None` (wait without bound) if
    /// there is no bound or it does not fit a `timespec`.
    pub(crate) fn poll_timeout(&self) -> Option<Timespec> {
        self.remaining().and_then(|d| Timespec::try_from(d).ok())
    }

    /// The time left in nanoseconds (`DppFenceWait::timeout_ns`), saturating
    /// at `u64::MAX` (584 years) without bound.
    pub(crate) fn remaining_ns(&self) -> u64 {
        self.remaining().map_or(u64::MAX, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
        })
    }

    /// [`Error::Timeout`] for `what`, with this deadline's timeout.
    pub(crate) fn expired(&self, what: impl Into<String>) -> Error {
        Error::Timeout {
            what: what.into(),
            timeout: self.timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_counts_down_from_one_start() {
        let d = Deadline::after(Duration::from_millis(200));
        let first = d.remaining().unwrap();
        assert!(first <= Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(20));
        let later = d.remaining().unwrap();
        assert!(
            later <= first - Duration::from_millis(20),
            "{later:?} after {first:?}"
        );
        let past = Deadline::after(Duration::ZERO);
        assert_eq!(past.remaining(), Some(Duration::ZERO));
        assert_eq!(past.remaining_ns(), 0);
        assert_eq!(
            past.poll_timeout().map(|t| (t.tv_sec, t.tv_nsec)),
            Some((0, 0))
        );
    }

    #[test]
    fn unbounded_and_huge_timeouts_wait_without_bound() {
        for d in [Deadline::after_opt(None), Deadline::after(Duration::MAX)] {
            assert_eq!(d.remaining(), None);
            assert!(d.poll_timeout().is_none());
            assert_eq!(d.remaining_ns(), u64::MAX);
        }
        let e = Deadline::after(Duration::from_millis(7)).expired("x");
        assert_eq!(e.to_string(), "timed out after 7 ms waiting for x");
    }
}
