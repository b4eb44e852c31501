//! The error type of the crate.

use std::fmt;
use std::time::Duration;

use rustix::io::Errno;

use crate::pattern::Mismatch;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Displays an [`Errno`] by its symbolic name (`EINVAL`), falling back to
/// `errno N` for names this crate does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrnoName(pub Errno);

impl fmt::Display for ErrnoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: &[(Errno, &str)] = &[
            (Errno::PERM, "EPERM"),
            (Errno::NOENT, "ENOENT"),
            (Errno::INTR, "EINTR"),
            (Errno::IO, "EIO"),
            (Errno::NXIO, "ENXIO"),
            (Errno::BADF, "EBADF"),
            (Errno::AGAIN, "EAGAIN"),
            (Errno::NOMEM, "ENOMEM"),
            (Errno::ACCESS, "EACCES"),
            (Errno::FAULT, "EFAULT"),
            (Errno::BUSY, "EBUSY"),
            (Errno::EXIST, "EEXIST"),
            (Errno::NODEV, "ENODEV"),
            (Errno::INVAL, "EINVAL"),
            (Errno::MFILE, "EMFILE"),
            (Errno::NOTTY, "ENOTTY"),
            (Errno::NOSPC, "ENOSPC"),
            (Errno::PIPE, "EPIPE"),
            (Errno::NOSYS, "ENOSYS"),
            (Errno::TIME, "ETIME"),
            (Errno::CONNRESET, "ECONNRESET"),
            (Errno::CONNREFUSED, "ECONNREFUSED"),
            (Errno::CANCELED, "ECANCELED"),
        ];
        match NAMES.iter().find(|(e, _)| *e == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "errno {}", self.0.raw_os_error()),
        }
    }
}

/// Errors of this crate. Each names the failed operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or ioctl on a named file failed, e.g.
    /// `CREATE_FENCE on /dev/dmapingpong failed: EINVAL`.
    #[error("{op} on {target} failed: {}", ErrnoName(*errno))]
    Os {
        /// The operation (ioctl or system call name).
        op: &'static str,
        /// What it was issued on (a device path, "dma-buf", "sync_file", "socket").
        target: String,
        /// The error number.
        errno: Errno,
    },
    /// A wait expired before the awaited event.
    #[error("timed out after {} ms waiting for {what}", timeout.as_millis())]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A fence signalled with an error (e.g. `ECANCELED`: its creator died).
    #[error("{what} signalled with error {}", ErrnoName(*errno))]
    FenceError {
        /// Which fence.
        what: String,
        /// The fence's error.
        errno: Errno,
    },
    /// The peer closed the connection.
    #[error("peer closed the connection ({context})")]
    PeerClosed {
        /// What was being received.
        context: String,
    },
    /// The peer reported an error and aborted.
    #[error("peer aborted: {0}")]
    PeerAborted(String),
    /// A malformed or unexpected message.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Buffer contents differ from the expected pattern.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// An argument outside its documented range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An fd taken for a dma-buf (e.g. received from a peer) is another kind
    /// of file: its file system (`fstatfs()`'s `f_type`) is not the dma-buf
    /// one, `DMA_BUF_MAGIC` (`include/uapi/linux/magic.h`). Mapping such a
    /// file could fault: a peer can truncate a memfd under the mapping
    /// (`SIGBUS`).
    #[error(
        "{what} is not a dma-buf (file system magic {fs_magic:#x}, a dma-buf has {:#x})",
        crate::buffer::DMA_BUF_MAGIC
    )]
    NotADmaBuf {
        /// Which fd (e.g. "buffer 0 from the peer").
        what: String,
        /// The file system magic the fd has instead.
        fs_magic: u64,
    },
    /// A [`Channel`](crate::Channel) lost the message boundaries in one
    /// direction (a timeout, a malformed header or lost fds in the middle of
    /// a message): no further message can be exchanged in that direction.
    #[error("channel out of sync, unusable: {reason}")]
    ChannelBroken {
        /// What broke it.
        reason: String,
    },
}

impl Error {
    pub(crate) fn os(op: &'static str, target: impl Into<String>, errno: Errno) -> Self {
        Error::Os {
            op,
            target: target.into(),
            errno,
        }
    }

    /// The errno of an [`Error::Os`] or [`Error::FenceError`], if any.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Os { errno, .. } | Error::FenceError { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_and_errno() {
        let e = Error::os("CREATE_FENCE", "/dev/dmapingpong", Errno::INVAL);
        assert_eq!(
            e.to_string(),
            "CREATE_FENCE on /dev/dmapingpong failed: EINVAL"
        );
        assert_eq!(e.errno(), Some(Errno::INVAL));
        assert_eq!(ErrnoName(Errno::CANCELED).to_string(), "ECANCELED");
        assert_eq!(
            ErrnoName(Errno::from_raw_os_error(4000)).to_string(),
            "errno 4000"
        );
    }
}
