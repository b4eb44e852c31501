//! Fences as sync_file fds.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::io::Errno;
use rustix::ioctl::{Updater, ioctl};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::sys;

/// State of a fence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceStatus {
    /// Not signalled yet (or a wait timed out).
    Pending,
    /// Signalled without error.
    Signalled,
    /// Signalled with this error (e.g. `ECANCELED`: its creator went away).
    Error(Errno),
}

/// `poll()`s one fd for `events` for up to `timeout`, restarting after
/// signals with the remaining time. Returns whether any requested event (or
/// an error condition) was reported.
pub(crate) fn poll_fd(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    timeout: Duration,
    what: &str,
) -> Result<bool> {
    poll_until(fd, events, &Deadline::after(timeout), what)
}

/// `poll()`s one fd for `events` until `deadline`, restarting after signals
/// (`EINTR`) with the time left. Returns whether any requested event (or an
/// error condition) was reported; `false`: the deadline passed.
pub(crate) fn poll_until(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    deadline: &Deadline,
    what: &str,
) -> Result<bool> {
    loop {
        let ts = deadline.poll_timeout();
        let mut fds = [PollFd::from_borrowed_fd(fd, events)];
        match rustix::event::poll(&mut fds, ts.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(!fds[0].revents().is_empty()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::os("poll", what, e)),
        }
    }
}

/// One fence of a sync_file, as `SYNC_IOC_FILE_INFO` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceInfo {
    /// The name of the fence's timeline (`dma_fence_ops.get_timeline_name`).
    pub timeline: String,
    /// The name of the driver that created it (`dma_fence_ops.get_driver_name`,
    /// e.g. `vgem`, `dmapingpong`).
    pub driver: String,
    /// Its state.
    pub status: FenceStatus,
}

/// The text of a NUL-padded name field.
fn c_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

fn fence_status(status: i32) -> FenceStatus {
    match status {
        0 => FenceStatus::Pending,
        s if s > 0 => FenceStatus::Signalled,
        s => FenceStatus::Error(Errno::from_raw_os_error(-s)),
    }
}

/// An owned sync_file fd (`include/uapi/linux/sync_file.h`): a handle to
/// one or more DMA fences that can be polled and passed between processes.
#[derive(Debug)]
pub struct SyncFile {
    fd: OwnedFd,
}

impl SyncFile {
    /// Wraps an fd that must be a sync_file (e.g. received from a peer);
    /// the kernel rejects other fds in [`status`](Self::status).
    pub fn from_fd(fd: OwnedFd) -> SyncFile {
        SyncFile { fd }
    }

    /// Waits with `poll(POLLIN)` up to `timeout` for the fence to signal,
    /// then returns its [`status`](Self::status) ([`FenceStatus::Pending`]
    /// on timeout).
    pub fn wait(&self, timeout: Duration) -> Result<FenceStatus> {
        if poll_fd(self.fd.as_fd(), PollFlags::IN, timeout, "sync_file")? {
            self.status()
        } else {
            Ok(FenceStatus::Pending)
        }
    }

    /// `poll(POLLIN)`s the sync_file for up to `timeout` without reading
    /// the fence's status: whether it signalled (with or without error);
    /// `false`: timed out.
    pub fn poll(&self, timeout: Duration) -> Result<bool> {
        poll_fd(self.fd.as_fd(), PollFlags::IN, timeout, "sync_file")
    }

    /// `SYNC_IOC_FILE_INFO` into `info`.
    ///
    /// # Safety
    ///
    /// `info.sync_fence_info` is 0 with `info.num_fences` 0 (the kernel
    /// then only reports the number of fences), or points to
    /// `info.num_fences` writable `struct sync_fence_info`s.
    unsafe fn file_info(&self, info: &mut sys::SyncFileInfo) -> Result<()> {
        // SAFETY: SYNC_IOC_FILE_INFO is `_IOWR('>', 4, struct
        // sync_file_info)`, `SyncFileInfo` mirrors that structure, and the
        // array it points to is the caller's guarantee.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::SYNC_IOC_FILE_INFO }, sys::SyncFileInfo>::new(info),
            )
        }
        .map_err(|e| Error::os("SYNC_IOC_FILE_INFO", "sync_file", e))
    }

    /// The fence's state from `SYNC_IOC_FILE_INFO` (status 1: signalled,
    /// 0: active, negative: error).
    pub fn status(&self) -> Result<FenceStatus> {
        let mut info = sys::SyncFileInfo::default();
        // SAFETY: `num_fences` is 0.
        unsafe { self.file_info(&mut info) }?;
        Ok(fence_status(info.status))
    }

    /// The fences the sync_file holds (one, or those of a merged sync_file
    /// or of `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`), from `SYNC_IOC_FILE_INFO`.
    pub fn fences(&self) -> Result<Vec<FenceInfo>> {
        let mut info = sys::SyncFileInfo::default();
        // SAFETY: `num_fences` is 0: the kernel reports the number.
        unsafe { self.file_info(&mut info) }?;
        let empty = sys::SyncFenceInfo {
            obj_name: [0; 32],
            driver_name: [0; 32],
            status: 0,
            flags: 0,
            timestamp_ns: 0,
        };
        let mut fences = vec![empty; info.num_fences as usize];
        info.sync_fence_info = fences.as_mut_ptr() as u64;
        // SAFETY: `sync_fence_info` points to `num_fences` writable entries
        // (the kernel fails with `EINVAL` if the sync_file holds more fences
        // than that by now).
        unsafe { self.file_info(&mut info) }?;
        Ok(fences
            .iter()
            .take(info.num_fences as usize)
            .map(|f| FenceInfo {
                timeline: c_name(&f.obj_name),
                driver: c_name(&f.driver_name),
                status: fence_status(f.status),
            })
            .collect())
    }
}

impl AsFd for SyncFile {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<SyncFile> for OwnedFd {
    fn from(file: SyncFile) -> OwnedFd {
        file.fd
    }
}

/// A fence created by [`Device::create_fence`](crate::Device::create_fence):
/// its sync_file plus its context and seqno.
#[derive(Debug)]
pub struct Fence {
    file: SyncFile,
    context: u64,
    seqno: u64,
}

impl Fence {
    pub(crate) fn new(file: SyncFile, context: u64, seqno: u64) -> Fence {
        Fence {
            file,
            context,
            seqno,
        }
    }

    /// The fence context: one per open file of the device.
    pub fn context(&self) -> u64 {
        self.context
    }

    /// The seqno on the context: 1 for the first fence, then +1 each.
    pub fn seqno(&self) -> u64 {
        self.seqno
    }

    /// The fence's sync_file.
    pub fn sync_file(&self) -> &SyncFile {
        &self.file
    }

    /// Gives up the context/seqno and keeps the sync_file.
    pub fn into_sync_file(self) -> SyncFile {
        self.file
    }
}

impl AsFd for Fence {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
