//! Why a test failed.

use dmapingpong::{Errno, ErrnoName};

/// Result of the suite's checks.
pub type Result<T, E = Failure> = std::result::Result<T, E>;

/// A test failure, naming what was checked and what happened.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A library call failed where it had to succeed.
    #[error(transparent)]
    Dpp(#[from] dmapingpong::Error),
    /// An ioctl or system call on another driver's file failed where it had
    /// to succeed.
    #[error("{op} on {target} failed: {}", ErrnoName(*errno))]
    Os {
        /// The operation.
        op: &'static str,
        /// The file (`/dev/dri/card0`, `/dev/video0`, ...).
        target: String,
        /// Its error.
        errno: Errno,
    },
    /// A driver the suite needs is missing (module or device node).
    #[error("{0}")]
    Missing(String),
    /// A property of the drivers' behaviour or of the data did not hold.
    #[error("{0}")]
    Check(String),
}

/// Fails with [`Failure::Check`] unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::error::Failure::Check(format!($($fmt)+)));
        }
    };
}
