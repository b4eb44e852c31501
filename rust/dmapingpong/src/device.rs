//! [`Device`]: an open file of `/dev/dmapingpong`.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Getter, Updater, ioctl};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::fence::{Fence, FenceStatus, SyncFile};
use crate::sys;
use crate::{DmaBuf, uapi};

/// How a fence is added to a dma-buf's reservation by
/// [`Device::create_fence`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A write fence ([`uapi::DPP_USAGE_WRITE`]): `poll(POLLIN)` on the
    /// dma-buf waits for it.
    Write,
    /// A read fence ([`uapi::DPP_USAGE_READ`]): only `poll(POLLOUT)` waits.
    Read,
}

impl Usage {
    fn raw(self) -> u32 {
        match self {
            Usage::Write => uapi::DPP_USAGE_WRITE,
            Usage::Read => uapi::DPP_USAGE_READ,
        }
    }
}

/// An open file of the dmapingpong device: one fence context (timeline).
///
/// Closing it (dropping the value, or the process exiting) signals every
/// fence it left pending with `ECANCELED`. Buffers allocated through it stay
/// valid as long as their fds or mappings live.
/// The operation of a device job ([`Device::submit_job`]).
#[derive(Clone, Copy, Debug)]
pub enum JobOp<'a> {
    /// Fill with copies of an 8-byte pattern (native byte order).
    Fill {
        /// The pattern.
        pattern: u64,
    },
    /// Copy from a dma-buf (of this device, or of another exporter, which
    /// the job imports).
    Copy {
        /// The source dma-buf.
        src: BorrowedFd<'a>,
        /// Offset into the source, in bytes (a multiple of 8).
        src_offset: u64,
    },
}

/// A device job: an operation on a destination dma-buf that the device's
/// engine runs once its in-fences (and, with `implicit_sync`, the buffers'
/// reservation fences) have signalled. See `DppJob` in the uAPI.
#[derive(Clone, Copy, Debug)]
pub struct Job<'a> {
    /// What to do.
    pub op: JobOp<'a>,
    /// The destination dma-buf (of this device, or of another exporter,
    /// which the job imports).
    pub dst: BorrowedFd<'a>,
    /// Offset into the destination, in bytes (a multiple of 8).
    pub dst_offset: u64,
    /// Bytes to fill or copy (a non-zero multiple of 8).
    pub size: u64,
    /// Sync_files to wait for (at most `DPP_JOB_MAX_IN_FENCES`).
    pub in_fences: &'a [BorrowedFd<'a>],
    /// Also wait for the fences in the buffers' reservations.
    pub implicit_sync: bool,
}

impl<'a> Job<'a> {
    /// A fill of the first `size` bytes of `dst` with `pattern`, with implicit sync and no
    /// in-fences (set the fields to change that).
    pub fn fill(dst: BorrowedFd<'a>, pattern: u64, size: u64) -> Job<'a> {
        Job {
            op: JobOp::Fill { pattern },
            dst,
            dst_offset: 0,
            size,
            in_fences: &[],
            implicit_sync: true,
        }
    }

    /// A copy of the first `size` bytes of `src` to the start of `dst`, with implicit sync and
    /// no in-fences (set the fields to change that).
    pub fn copy(dst: BorrowedFd<'a>, src: BorrowedFd<'a>, size: u64) -> Job<'a> {
        Job {
            op: JobOp::Copy { src, src_offset: 0 },
            dst,
            dst_offset: 0,
            size,
            in_fences: &[],
            implicit_sync: true,
        }
    }
}

/// The engine that runs a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// A channel of the SoC's DMA controller.
    Dma,
    /// The driver's CPU worker (no usable DMA channel).
    Cpu,
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Dma => "dma",
            Engine::Cpu => "cpu",
        })
    }
}

/// A submitted job: its out-fence and its engine.
#[derive(Debug)]
pub struct SubmittedJob {
    /// Signals when the job has run; carries its error if it failed.
    pub fence: Fence,
    /// The engine that runs it.
    pub engine: Engine,
}

#[derive(Debug)]
pub struct Device {
    fd: OwnedFd,
    path: PathBuf,
}

impl Device {
    /// The device node created by the driver.
    pub const DEFAULT_PATH: &'static str = "/dev/dmapingpong";

    /// Opens the device node at `path` (read-write, close-on-exec).
    pub fn open(path: impl AsRef<Path>) -> Result<Device> {
        let path = path.as_ref().to_path_buf();
        let fd = rustix::fs::open(&path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::os("open", path.display().to_string(), e))?;
        log::debug!("opened {}", path.display());
        Ok(Device { fd, path })
    }

    /// The path the device was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, op: &'static str, errno: Errno) -> Error {
        Error::os(op, self.path.display().to_string(), errno)
    }

    /// `DPP_IOCTL_GET_INFO`: version, page and pool sizes, usage counters.
    pub fn info(&self) -> Result<uapi::DppInfo> {
        // SAFETY: DPP_GET_INFO is `_IOR(DPP_IOC_MAGIC, 0, struct dpp_info)`
        // and `DppInfo` is that structure (`#[repr(C)]`, checked against the
        // C header); the kernel only writes `size_of::<DppInfo>()` bytes.
        unsafe {
            ioctl(
                &self.fd,
                Getter::<{ sys::DPP_GET_INFO }, uapi::DppInfo>::new(),
            )
        }
        .map_err(|e| self.err("GET_INFO", e))
    }

    /// Allocates a zero-filled buffer of at least `size` bytes (rounded up
    /// to whole pages) with a close-on-exec fd.
    ///
    /// Errors: `EINVAL` if `size` is 0 or larger than the pool, `ENOMEM` if
    /// the pool has no room.
    pub fn alloc(&self, size: u64) -> Result<DmaBuf> {
        self.alloc_raw(uapi::DppAlloc {
            size,
            ..Default::default()
        })
    }

    /// `DPP_IOCTL_ALLOC` with the argument as given (`flags`, `reserved`
    /// included, so that the driver's argument checks can be exercised).
    pub fn alloc_raw(&self, mut arg: uapi::DppAlloc) -> Result<DmaBuf> {
        // SAFETY: DPP_ALLOC is `_IOWR(DPP_IOC_MAGIC, 1, struct dpp_alloc)` and
        // `arg` is a valid, exclusively borrowed `DppAlloc` for the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::DPP_ALLOC }, uapi::DppAlloc>::new(&mut arg),
            )
        }
        .map_err(|e| self.err("ALLOC", e))?;
        // SAFETY: on success the kernel installed a new fd that nothing else
        // owns; we take ownership of it exactly once.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(arg.fd) };
        log::debug!("allocated {} bytes as fd {}", arg.size, arg.fd);
        Ok(DmaBuf::from_parts(fd, arg.size))
    }

    /// Creates a new unsignalled fence on this file's context, optionally
    /// adding it to the reservation of a dma-buf (of any exporter) with the
    /// given usage. The fence must later be [`signal`](Self::signal)led by
    /// this device file, in creation order.
    pub fn create_fence(&self, target: Option<(BorrowedFd<'_>, Usage)>) -> Result<Fence> {
        let mut arg = uapi::DppFenceCreate {
            dmabuf_fd: -1,
            ..Default::default()
        };
        if let Some((fd, usage)) = target {
            arg.dmabuf_fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
            arg.usage = usage.raw();
        }
        self.create_fence_raw(arg)
    }

    /// `DPP_IOCTL_CREATE_FENCE` with the argument as given (`usage`, `flags`
    /// and `reserved` included, so that the driver's argument checks can be
    /// exercised).
    pub fn create_fence_raw(&self, mut arg: uapi::DppFenceCreate) -> Result<Fence> {
        // SAFETY: DPP_CREATE_FENCE is `_IOWR(DPP_IOC_MAGIC, 2, struct
        // dpp_fence_create)` and `arg` is a valid, exclusively borrowed
        // `DppFenceCreate` for the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::DPP_CREATE_FENCE }, uapi::DppFenceCreate>::new(&mut arg),
            )
        }
        .map_err(|e| self.err("CREATE_FENCE", e))?;
        // SAFETY: on success the kernel installed a new sync_file fd that
        // nothing else owns; we take ownership of it exactly once.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(arg.fence_fd) };
        log::debug!(
            "created fence {}:{} as fd {}",
            arg.context,
            arg.seqno,
            arg.fence_fd
        );
        Ok(Fence::new(SyncFile::from_fd(fd), arg.context, arg.seqno))
    }

    /// Signals `fence`, without error (`None`) or with `Some(errno)`, which
    /// its waiters then see as the fence status.
    ///
    /// Errors: `EINVAL` if the fence was not created by this file, is already
    /// signalled, or an older fence of this file is still pending.
    pub fn signal(&self, fence: &Fence, error: Option<Errno>) -> Result<()> {
        self.signal_raw(uapi::DppFenceSignal {
            fence_fd: std::os::fd::AsRawFd::as_raw_fd(&fence.as_fd()),
            error: error.map_or(0, |e| -e.raw_os_error()),
            ..Default::default()
        })?;
        log::debug!(
            "signalled fence {}:{} ({:?})",
            fence.context(),
            fence.seqno(),
            error
        );
        Ok(())
    }

    /// `DPP_IOCTL_SIGNAL_FENCE` with the argument as given (any fd, any
    /// `error`, `reserved` included).
    pub fn signal_raw(&self, mut arg: uapi::DppFenceSignal) -> Result<()> {
        // SAFETY: DPP_SIGNAL_FENCE is `_IOW(DPP_IOC_MAGIC, 3, struct
        // dpp_fence_signal)`; the kernel only reads the borrowed `arg`.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::DPP_SIGNAL_FENCE }, uapi::DppFenceSignal>::new(&mut arg),
            )
        }
        .map_err(|e| self.err("SIGNAL_FENCE", e))
    }

    /// `DPP_IOCTL_WAIT_FENCE`: waits up to `timeout` (nanosecond
    /// resolution, `ZERO` samples) for any sync_file's fence.
    ///
    /// Returns [`FenceStatus::Pending`] if the timeout expired (`ETIME`).
    /// After a signal (`EINTR`) the wait goes on for what is left of
    /// `timeout`, not for all of it again.
    pub fn wait_fence(&self, fence: impl AsFd, timeout: Duration) -> Result<FenceStatus> {
        self.wait_fence_until(fence.as_fd(), &Deadline::after(timeout))
    }

    /// [`wait_fence`](Self::wait_fence) with an absolute deadline.
    pub(crate) fn wait_fence_until(
        &self,
        fence: BorrowedFd<'_>,
        deadline: &Deadline,
    ) -> Result<FenceStatus> {
        loop {
            let arg = uapi::DppFenceWait {
                fence_fd: std::os::fd::AsRawFd::as_raw_fd(&fence),
                timeout_ns: deadline.remaining_ns(),
                ..Default::default()
            };
            return match self.wait_fence_raw(arg) {
                Ok(out) if out.status == 0 => Ok(FenceStatus::Signalled),
                Ok(out) => Ok(FenceStatus::Error(Errno::from_raw_os_error(-out.status))),
                Err(e) if e.errno() == Some(Errno::TIME) => Ok(FenceStatus::Pending),
                // A signal interrupted the wait: wait again for the time left
                // (zero once the deadline passed, which samples the fence).
                Err(e) if e.errno() == Some(Errno::INTR) => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// One `DPP_IOCTL_WAIT_FENCE` with the argument as given (`flags`,
    /// `pad` and `reserved` included); returns the argument as the kernel
    /// wrote it back. `ETIME` (timeout) and `EINTR` are errors here.
    pub fn wait_fence_raw(&self, mut arg: uapi::DppFenceWait) -> Result<uapi::DppFenceWait> {
        // SAFETY: DPP_WAIT_FENCE is `_IOWR(DPP_IOC_MAGIC, 4, struct
        // dpp_fence_wait)` and `arg` is a valid, exclusively borrowed
        // `DppFenceWait` for the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::DPP_WAIT_FENCE }, uapi::DppFenceWait>::new(&mut arg),
            )
        }
        .map_err(|e| self.err("WAIT_FENCE", e))?;
        Ok(arg)
    }
}

impl Device {
    /// `DPP_IOCTL_SUBMIT_JOB`: submits `job` and returns its out-fence.
    ///
    /// Errors: `EINVAL` (bad op, ranges, an fd that is not a dma-buf, an
    /// in-fence that is not a sync_file, more than `DPP_JOB_MAX_IN_FENCES`
    /// in-fences; another exporter's buffer that the engine cannot reach:
    /// no kernel mapping, DMA segments not aligned), `EOPNOTSUPP` (another
    /// exporter's buffer in I/O memory), `EBADF`, `ENOMEM`, `EMFILE`; see
    /// `DPP_IOCTL_SUBMIT_JOB`.
    pub fn submit_job(&self, job: &Job<'_>) -> Result<SubmittedJob> {
        use std::os::fd::AsRawFd;
        let mut arg = uapi::DppJob {
            dst_fd: job.dst.as_raw_fd(),
            dst_offset: job.dst_offset,
            size: job.size,
            in_fence_fds: [-1; uapi::DPP_JOB_MAX_IN_FENCES],
            ..Default::default()
        };
        match job.op {
            JobOp::Fill { pattern } => {
                arg.op = uapi::DPP_JOB_FILL;
                arg.src_fd = -1;
                arg.pattern = pattern;
            }
            JobOp::Copy { src, src_offset } => {
                arg.op = uapi::DPP_JOB_COPY;
                arg.src_fd = src.as_raw_fd();
                arg.src_offset = src_offset;
            }
        }
        if !job.implicit_sync {
            arg.flags |= uapi::DPP_JOB_NO_IMPLICIT_SYNC;
        }
        if job.in_fences.len() > uapi::DPP_JOB_MAX_IN_FENCES {
            return Err(Error::InvalidArgument(format!(
                "{} in-fences, at most {}",
                job.in_fences.len(),
                uapi::DPP_JOB_MAX_IN_FENCES
            )));
        }
        for (slot, fence) in arg.in_fence_fds.iter_mut().zip(job.in_fences) {
            *slot = fence.as_raw_fd();
        }
        let (out, fence) = self.submit_job_raw(arg)?;
        let engine = if out.engine == uapi::DPP_ENGINE_DMA {
            Engine::Dma
        } else {
            Engine::Cpu
        };
        Ok(SubmittedJob { fence, engine })
    }

    /// `DPP_IOCTL_SUBMIT_JOB` with the argument as given; returns the
    /// argument as the kernel wrote it back and the out-fence.
    pub fn submit_job_raw(&self, mut arg: uapi::DppJob) -> Result<(uapi::DppJob, Fence)> {
        // SAFETY: DPP_SUBMIT_JOB is `_IOWR(DPP_IOC_MAGIC, 5, struct dpp_job)`
        // and `arg` is a valid, exclusively borrowed `DppJob` for the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::DPP_SUBMIT_JOB }, uapi::DppJob>::new(&mut arg),
            )
        }
        .map_err(|e| self.err("SUBMIT_JOB", e))?;
        // SAFETY: on success the kernel installed a new sync_file fd that
        // nothing else owns.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(arg.out_fence_fd) };
        log::debug!(
            "submitted job (op {}) as fence {}:{} fd {}",
            arg.op,
            arg.context,
            arg.seqno,
            arg.out_fence_fd
        );
        let fence = Fence::new(SyncFile::from_fd(fd), arg.context, arg.seqno);
        Ok((arg, fence))
    }
}

impl AsFd for Device {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
