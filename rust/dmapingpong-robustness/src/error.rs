//! Why a test class failed.

use std::time::Duration;

use dmapingpong::{Errno, ErrnoName};

/// Result of the suite's checks.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// A test failure, naming what was checked and what happened.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A library call failed where it had to succeed.
    #[error(transparent)]
    Dpp(#[from] dmapingpong::Error),
    /// Buffer contents differ from the expected pattern.
    #[error(transparent)]
    Mismatch(#[from] dmapingpong::pattern::Mismatch),
    /// A system call outside the library failed where it had to succeed.
    #[error("{op} failed: {}", ErrnoName(*errno))]
    Os {
        /// The operation.
        op: String,
        /// Its error.
        errno: Errno,
    },
    /// A file or process operation of the standard library failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation.
        what: String,
        /// Its error.
        source: std::io::Error,
    },
    /// An operation had an outcome outside the documented ones.
    #[error("{op}: got {got}, expected {expected}")]
    Unexpected {
        /// The operation, with its arguments.
        op: String,
        /// What happened (`ok`, an errno name, a status).
        got: String,
        /// What the ABI documents.
        expected: String,
    },
    /// A property of the driver's state or of data did not hold.
    #[error("{0}")]
    Check(String),
    /// Something did not happen within its time bound.
    #[error("{what} did not happen within {} ms", timeout.as_millis())]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        timeout: Duration,
    },
    /// A failure with the context it happened in.
    #[error("{context}: {source}")]
    Context {
        /// Where.
        context: String,
        /// What.
        source: Box<Failure>,
    },
}

impl Failure {
    /// A failed system call.
    pub fn os(op: impl Into<String>, errno: Errno) -> Failure {
        Failure::Os {
            op: op.into(),
            errno,
        }
    }

    /// A failed `std::io` operation.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Failure {
        Failure::Io {
            what: what.into(),
            source,
        }
    }
}

/// Adds context to errors.
pub trait Context<T> {
    /// Wraps the error with `context`.
    fn ctx(self, context: impl Into<String>) -> Result<T>;
}

impl<T, E: Into<Failure>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, context: impl Into<String>) -> Result<T> {
        self.map_err(|e| Failure::Context {
            context: context.into(),
            source: Box::new(e.into()),
        })
    }
}

/// Fails with [`Failure::Check`] unless the condition holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return Err($crate::error::Failure::Check(format!($($fmt)*)));
        }
    };
}

/// Fails with [`Failure::Check`].
#[macro_export]
macro_rules! fail {
    ($($fmt:tt)*) => {
        return Err($crate::error::Failure::Check(format!($($fmt)*)))
    };
}

/// The errno of a library result, `None` on success.
pub fn errno_of<T>(r: &dmapingpong::Result<T>) -> Option<Errno> {
    match r {
        Ok(_) => None,
        Err(e) => Some(e.errno().unwrap_or(Errno::IO)),
    }
}

/// A printable outcome: `ok` or the errno name.
pub fn outcome(errno: Option<Errno>) -> String {
    errno.map_or_else(|| "ok".to_string(), |e| ErrnoName(e).to_string())
}

/// Expects `r` to fail with exactly `want`.
pub fn expect_errno<T>(r: dmapingpong::Result<T>, want: Errno, op: &str) -> Result<()> {
    match r {
        Err(e) if e.errno() == Some(want) => Ok(()),
        Err(e) => Err(Failure::Unexpected {
            op: op.into(),
            got: e.to_string(),
            expected: ErrnoName(want).to_string(),
        }),
        Ok(_) => Err(Failure::Unexpected {
            op: op.into(),
            got: "ok".into(),
            expected: ErrnoName(want).to_string(),
        }),
    }
}

/// Expects a raw result to fail with exactly `want`.
pub fn expect_raw<T>(r: std::result::Result<T, Errno>, want: Errno, op: &str) -> Result<()> {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(Failure::Unexpected {
            op: op.into(),
            got: outcome(other.err()),
            expected: ErrnoName(want).to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let e: Result<()> = Err(Failure::os("mmap", Errno::INVAL));
        assert_eq!(
            e.ctx("MAP_PRIVATE").unwrap_err().to_string(),
            "MAP_PRIVATE: mmap failed: EINVAL"
        );
        assert!(expect_raw::<()>(Err(Errno::NOTTY), Errno::NOTTY, "x").is_ok());
        assert_eq!(
            expect_raw::<()>(Ok(()), Errno::NOTTY, "ioctl 0xd705")
                .unwrap_err()
                .to_string(),
            "ioctl 0xd705: got ok, expected ENOTTY"
        );
        assert_eq!(outcome(Some(Errno::NOMEM)), "ENOMEM");
    }
}
