//! dma-bufs, their mappings and CPU access.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::event::PollFlags;
use rustix::fs::SeekFrom;
use rustix::io::Errno;
use rustix::ioctl::{Setter, Updater, ioctl};
use rustix::mm::{MapFlags, ProtFlags};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::fence::{SyncFile, poll_fd, poll_until};
use crate::sys;

/// `DMA_BUF_MAGIC` (`include/uapi/linux/magic.h`): the `f_type` that
/// `fstatfs()` reports for a dma-buf fd (the kernel's `dmabuf` pseudo file
/// system, `drivers/dma-buf/dma-buf.c`).
pub const DMA_BUF_MAGIC: u64 = 0x444d_4142;

/// Direction of CPU access, or which fences to export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// `DMA_BUF_SYNC_READ`.
    Read,
    /// `DMA_BUF_SYNC_WRITE`.
    Write,
    /// `DMA_BUF_SYNC_RW`.
    ReadWrite,
}

impl Access {
    fn flags(self) -> u64 {
        match self {
            Access::Read => sys::DMA_BUF_SYNC_READ,
            Access::Write => sys::DMA_BUF_SYNC_WRITE,
            Access::ReadWrite => sys::DMA_BUF_SYNC_READ | sys::DMA_BUF_SYNC_WRITE,
        }
    }

    /// The `poll()` event that is ready once `DMA_BUF_SYNC_START` of this
    /// access no longer waits: a read waits for the write fences
    /// (`POLLIN`), a write for all fences (`POLLOUT`), as `dma_buf_poll()`
    /// and `__dma_buf_begin_cpu_access()` (`dma_resv_usage_rw()`) in
    /// `drivers/dma-buf/dma-buf.c` define them.
    fn poll_event(self) -> PollFlags {
        match self {
            Access::Read => PollFlags::IN,
            Access::Write | Access::ReadWrite => PollFlags::OUT,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read-write",
        }
    }
}

/// An owned dma-buf fd and its size in bytes (a whole number of pages).
#[derive(Debug)]
pub struct DmaBuf {
    fd: OwnedFd,
    size: u64,
}

impl DmaBuf {
    pub(crate) fn from_parts(fd: OwnedFd, size: u64) -> DmaBuf {
        DmaBuf { fd, size }
    }

    /// Wraps a dma-buf fd (e.g. received from a peer), taking its size from
    /// `lseek(fd, 0, SEEK_END)`, which dma-bufs support.
    ///
    /// Errors: [`Error::NotADmaBuf`] if `fstatfs()` does not report
    /// [`DMA_BUF_MAGIC`]: any other file (a memfd, a tmpfs or regular file,
    /// a pipe) is refused, since a peer could truncate it under our mapping
    /// and kill us with `SIGBUS` on the next access. The fd is closed.
    pub fn from_fd(fd: OwnedFd) -> Result<DmaBuf> {
        let what = format!("fd {}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        DmaBuf::from_fd_named(fd, &what)
    }

    /// [`from_fd`](Self::from_fd), naming the fd `what` in
    /// [`Error::NotADmaBuf`].
    pub(crate) fn from_fd_named(fd: OwnedFd, what: &str) -> Result<DmaBuf> {
        let fs_magic = fs_magic(fd.as_fd())?;
        if fs_magic != DMA_BUF_MAGIC {
            return Err(Error::NotADmaBuf {
                what: what.into(),
                fs_magic,
            });
        }
        let size = rustix::fs::seek(&fd, SeekFrom::End(0))
            .map_err(|e| Error::os("lseek", "dma-buf", e))?;
        Ok(DmaBuf { fd, size })
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Maps the whole buffer shared, readable and writable. The mapping
    /// keeps its own duplicate of the fd for `DMA_BUF_IOCTL_SYNC`, so it
    /// outlives this `DmaBuf`.
    pub fn mmap(&self) -> Result<Mapping> {
        let len = usize::try_from(self.size).map_err(|_| {
            Error::InvalidArgument(format!(
                "buffer size {} exceeds the address space",
                self.size
            ))
        })?;
        if len == 0 || len % 8 != 0 {
            return Err(Error::InvalidArgument(format!(
                "cannot map a buffer of {len} bytes"
            )));
        }
        let fd = rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
            .map_err(|e| Error::os("dup", "dma-buf", e))?;
        // SAFETY: a fresh mapping (null hint, no MAP_FIXED) replaces no
        // existing memory; `len` is the dma-buf's size.
        let ptr = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &self.fd,
                0,
            )
        }
        .map_err(|e| Error::os("mmap", "dma-buf", e))?;
        let ptr = NonNull::new(ptr.cast::<AtomicU64>())
            .ok_or_else(|| Error::os("mmap", "dma-buf", Errno::FAULT))?;
        Ok(Mapping {
            ptr,
            len,
            fd: Some(fd),
        })
    }

    /// `poll()`s the dma-buf for up to `timeout`: [`PollFlags::IN`] waits
    /// for its write fences, [`PollFlags::OUT`] for all its fences. Returns
    /// whether it became ready (`false`: timed out).
    pub fn poll(&self, events: PollFlags, timeout: Duration) -> Result<bool> {
        poll_fd(self.fd.as_fd(), events, timeout, "dma-buf")
    }

    /// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: the fences a CPU access of the given
    /// kind would wait for, as one sync_file ([`Access::Read`]: the write
    /// fences; [`Access::Write`]/[`Access::ReadWrite`]: all fences).
    pub fn export_sync_file(&self, access: Access) -> Result<SyncFile> {
        let mut arg = sys::DmaBufExportSyncFile {
            flags: access.flags() as u32,
            fd: -1,
        };
        // SAFETY: DMA_BUF_IOCTL_EXPORT_SYNC_FILE is `_IOWR('b', 2, struct
        // dma_buf_export_sync_file)` and `arg` mirrors that structure.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ sys::DMA_BUF_IOCTL_EXPORT_SYNC_FILE }, sys::DmaBufExportSyncFile>::new(
                    &mut arg,
                ),
            )
        }
        .map_err(|e| Error::os("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", "dma-buf", e))?;
        // SAFETY: on success the kernel installed a new fd that nothing else
        // owns; we take ownership of it exactly once.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(arg.fd) };
        Ok(SyncFile::from_fd(fd))
    }

    /// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: adds the fences of `fence` to the
    /// buffer's reservation, as write fences ([`Access::Write`] or
    /// [`Access::ReadWrite`]: every later access waits for them) or read
    /// fences ([`Access::Read`]: later writes wait for them). Implicitly
    /// synchronized importers (DRM drivers, this driver's jobs) then wait
    /// for them too.
    ///
    /// Errors: `EINVAL` (`fence` is not a sync_file), `ENOMEM`.
    pub fn import_sync_file(&self, access: Access, fence: impl AsFd) -> Result<()> {
        use std::os::fd::AsRawFd;
        let arg = sys::DmaBufImportSyncFile {
            flags: access.flags() as u32,
            fd: fence.as_fd().as_raw_fd(),
        };
        // SAFETY: DMA_BUF_IOCTL_IMPORT_SYNC_FILE is `_IOW('b', 3, struct
        // dma_buf_import_sync_file)` and `arg` mirrors that structure.
        unsafe {
            ioctl(
                &self.fd,
                Setter::<{ sys::DMA_BUF_IOCTL_IMPORT_SYNC_FILE }, sys::DmaBufImportSyncFile>::new(
                    arg,
                ),
            )
        }
        .map_err(|e| Error::os("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", "dma-buf", e))
    }
}

impl AsFd for DmaBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<DmaBuf> for OwnedFd {
    fn from(buf: DmaBuf) -> OwnedFd {
        buf.fd
    }
}

/// The file system magic of `fd` (`fstatfs()`'s `f_type`).
fn fs_magic(fd: BorrowedFd<'_>) -> Result<u64> {
    let st = rustix::fs::fstatfs(fd).map_err(|e| Error::os("fstatfs", "dma-buf", e))?;
    // `f_type` is a `__kernel_long_t` (or `__u32`); magics are positive.
    Ok(st.f_type as u64)
}

fn dma_buf_sync(fd: BorrowedFd<'_>, flags: u64) -> rustix::io::Result<()> {
    // SAFETY: DMA_BUF_IOCTL_SYNC is `_IOW('b', 0, struct dma_buf_sync)` and
    // `DmaBufSync` mirrors that structure; the kernel only reads it.
    unsafe {
        ioctl(
            fd,
            Setter::<{ sys::DMA_BUF_IOCTL_SYNC }, sys::DmaBufSync>::new(sys::DmaBufSync { flags }),
        )
    }
}

/// `DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START`, bounded by `deadline`.
///
/// The ioctl waits, without a timeout, for the fences in the reservation
/// that `access` conflicts with (`__dma_buf_begin_cpu_access()`:
/// `dma_resv_wait_timeout(..., MAX_SCHEDULE_TIMEOUT)`), so `poll()` waits
/// for the same fences first, for what is left of `deadline`. After `EINTR`
/// both are issued again with the time left, never the full timeout.
///
/// A fence added between the `poll()` and the ioctl is still waited for
/// without a bound by the kernel; every fence of this driver has one (job
/// timeouts, user-fence deadlines).
fn sync_start(fd: BorrowedFd<'_>, access: Access, deadline: &Deadline) -> Result<()> {
    loop {
        if !poll_until(fd, access.poll_event(), deadline, "dma-buf")? {
            return Err(deadline.expired(format!(
                "the fences of a dma-buf before CPU {} access",
                access.name()
            )));
        }
        match dma_buf_sync(fd, sys::DMA_BUF_SYNC_START | access.flags()) {
            Ok(()) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::os("DMA_BUF_IOCTL_SYNC", "dma-buf", e)),
        }
    }
}

/// A shared mapping of a whole dma-buf, unmapped on drop. The memory stays
/// valid (the mapping holds a reference to the dma-buf) even after every fd
/// of the buffer is closed.
///
/// The memory is shared with other processes and devices, which may write it
/// at any time, so it is only ever seen as [`AtomicU64`]s: every access is an
/// atomic load or store (`Ordering::Relaxed` suffices; on aarch64 and x86-64
/// these are plain 64-bit loads and stores). Only loads and stores are meant
/// for it: read-modify-write atomics (`fetch_add`, `compare_exchange`) need
/// cacheable memory and may fault on a write-combined mapping.
#[derive(Debug)]
pub struct Mapping {
    /// Start of the mapping: page-aligned, so aligned for `AtomicU64`.
    ptr: NonNull<AtomicU64>,
    /// Length in bytes, a non-zero multiple of 8.
    len: usize,
    /// Duplicate of the dma-buf fd for `DMA_BUF_IOCTL_SYNC`; `None` after
    /// [`Mapping::close_fd`].
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping is shared memory owned by this value, not tied to a
// thread; it is unmapped once, by the owner's `Drop`.
unsafe impl Send for Mapping {}
// SAFETY: `&Mapping` only gives out `&[AtomicU64]`: concurrent accesses from
// several threads are atomic, as they are with other processes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always `false`: dma-bufs are at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Starts CPU access (`DMA_BUF_IOCTL_SYNC` with `DMA_BUF_SYNC_START`,
    /// which waits for the fences in the buffer's reservation that the
    /// access conflicts with: a read for the write fences, a write for all).
    /// The access ends when the guard is dropped or [`CpuAccess::end`]ed.
    ///
    /// Waits at most `timeout` in all: `poll()` on the dma-buf waits for
    /// those fences first (see `Documentation/driver-api/dma-buf.rst`,
    /// "Implicit Fence Poll Support"), since the ioctl itself has no timeout.
    ///
    /// Errors: [`Error::Timeout`] if the fences are still pending after
    /// `timeout`; [`Error::InvalidArgument`] after
    /// [`close_fd`](Self::close_fd).
    pub fn begin(&mut self, access: Access, timeout: Duration) -> Result<CpuAccess<'_>> {
        self.begin_until(access, &Deadline::after(timeout))
    }

    /// [`begin`](Self::begin) with an absolute deadline.
    pub(crate) fn begin_until(
        &mut self,
        access: Access,
        deadline: &Deadline,
    ) -> Result<CpuAccess<'_>> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("the mapping's fd was closed".into()))?;
        sync_start(fd.as_fd(), access, deadline)?;
        Ok(CpuAccess {
            map: self,
            flags: access.flags(),
            ended: false,
        })
    }

    /// Closes the mapping's own fd, so that only the mapping itself keeps the
    /// buffer alive. [`begin`](Self::begin) fails afterwards; use
    /// [`unsynced`](Self::unsynced).
    pub fn close_fd(&mut self) {
        self.fd = None;
    }

    /// The whole mapping as native-endian `u64` words, without
    /// `DMA_BUF_IOCTL_SYNC` bracketing: only correct on cache-coherent
    /// buffers or when no device accesses them.
    pub fn unsynced(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is a live mapping of `len` bytes (a multiple of 8),
        // page-aligned and readable and writable, that stays mapped while
        // `self` is borrowed. `AtomicU64` has the size and bit validity of
        // `u64` (every bit pattern is valid) and an alignment of 8, which the
        // page alignment satisfies. Other processes and devices may write the
        // memory concurrently: every access through the slice is atomic, so
        // none of them is a data race for this process.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len / 8) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe the mapping created in `mmap`; no
        // borrow of it outlives `self`.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            log::warn!("munmap of a dma-buf failed: {e}");
        }
    }
}

/// CPU access to a [`Mapping`] between `DMA_BUF_SYNC_START` and
/// `DMA_BUF_SYNC_END` (issued on drop, or by [`end`](Self::end) to see its
/// error).
///
/// The buffer is seen as [`AtomicU64`]s ([`words`](Self::words)), or copied
/// in and out ([`read_into`](Self::read_into),
/// [`write_from`](Self::write_from)): a peer that ignores the protocol, or a
/// device job, may still write it during the access, which makes its data
/// wrong but is no undefined behaviour.
#[derive(Debug)]
pub struct CpuAccess<'a> {
    map: &'a mut Mapping,
    flags: u64,
    ended: bool,
}

impl CpuAccess<'_> {
    /// The buffer as native-endian `u64` words; access them with
    /// `load`/`store` and [`Ordering::Relaxed`] (the `DMA_BUF_IOCTL_SYNC`
    /// bracket orders them against the device and the peer).
    pub fn words(&self) -> &[AtomicU64] {
        self.map.unsynced()
    }

    /// Copies the first `dst.len()` words (at most the whole buffer) into
    /// `dst`; returns how many words were copied.
    pub fn read_into(&self, dst: &mut [u64]) -> usize {
        let words = self.words();
        for (d, w) in dst.iter_mut().zip(words) {
            *d = w.load(Ordering::Relaxed);
        }
        dst.len().min(words.len())
    }

    /// Copies `src` into the first `src.len()` words (at most the whole
    /// buffer); returns how many words were copied.
    pub fn write_from(&self, src: &[u64]) -> usize {
        let words = self.words();
        for (w, &s) in words.iter().zip(src) {
            w.store(s, Ordering::Relaxed);
        }
        src.len().min(words.len())
    }

    /// Ends the access (`DMA_BUF_SYNC_END`) and reports its error.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.sync_end()
    }

    fn sync_end(&self) -> Result<()> {
        match &self.map.fd {
            // DMA_BUF_SYNC_END waits for no fence (dma_buf_end_cpu_access()).
            Some(fd) => dma_buf_sync(fd.as_fd(), sys::DMA_BUF_SYNC_END | self.flags)
                .map_err(|e| Error::os("DMA_BUF_IOCTL_SYNC", "dma-buf", e)),
            None => Ok(()),
        }
    }
}

impl Drop for CpuAccess<'_> {
    fn drop(&mut self) {
        if !self.ended {
            if let Err(e) = self.sync_end() {
                log::warn!("{e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use rustix::fs::MemfdFlags;

    fn memfd(size: u64) -> OwnedFd {
        let fd = rustix::fs::memfd_create("dmapingpong-test", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, size).unwrap();
        fd
    }

    /// A memfd (what a hostile peer sends instead of a dma-buf) is refused
    /// before anything maps it, with the fd's file system named.
    #[test]
    fn from_fd_refuses_a_memfd() {
        let fd = memfd(1 << 16);
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        let tmpfs_magic = fs_magic(fd.as_fd()).unwrap();
        assert_ne!(tmpfs_magic, DMA_BUF_MAGIC);
        match DmaBuf::from_fd(fd) {
            Err(Error::NotADmaBuf { what, fs_magic }) => {
                assert_eq!(what, format!("fd {raw}"));
                assert_eq!(fs_magic, tmpfs_magic);
            }
            other => panic!("a memfd was taken for a dma-buf: {other:?}"),
        }
        let e = DmaBuf::from_fd(memfd(4096)).unwrap_err();
        assert!(
            e.to_string()
                .contains("is not a dma-buf (file system magic 0x")
                && e.to_string().ends_with("a dma-buf has 0x444d4142)"),
            "{e}"
        );
    }

    /// Other kinds of files are refused too: a device node, a socket.
    #[test]
    fn from_fd_refuses_device_nodes_and_sockets() {
        let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let (a, _b) = crate::Channel::pair().unwrap();
        for fd in [null, a.into()] {
            assert!(matches!(DmaBuf::from_fd(fd), Err(Error::NotADmaBuf { .. })));
        }
    }

    /// The atomic view and the copies in and out, on a shared memfd mapping
    /// (no dma-buf on the host; the guard is built without the ioctl).
    #[test]
    fn copy_in_and_out_of_the_atomic_view() {
        let buf = DmaBuf::from_parts(memfd(4096), 4096);
        let mut map = buf.mmap().unwrap();
        let other = buf.mmap().unwrap();
        let cpu = CpuAccess {
            map: &mut map,
            flags: 0,
            ended: true,
        };
        assert_eq!(cpu.words().len(), 512);
        assert_eq!(cpu.write_from(&[1, 2, 3]), 3);
        // Another mapping of the same pages sees the stores.
        assert_eq!(other.unsynced()[2].load(Ordering::Relaxed), 3);
        other.unsynced()[3].store(4, Ordering::Relaxed);
        let mut out = [0u64; 5];
        assert_eq!(cpu.read_into(&mut out), 5);
        assert_eq!(out, [1, 2, 3, 4, 0]);
        let mut all = vec![7u64; 600];
        assert_eq!(cpu.read_into(&mut all), 512);
        assert_eq!((all[3], all[511], all[512]), (4, 0, 7));
        assert_eq!(cpu.write_from(&vec![9; 600]), 512);
        assert_eq!(other.unsynced()[511].load(Ordering::Relaxed), 9);
    }

    #[test]
    fn access_poll_events_follow_dma_buf_poll() {
        assert_eq!(Access::Read.poll_event(), PollFlags::IN);
        assert_eq!(Access::Write.poll_event(), PollFlags::OUT);
        assert_eq!(Access::ReadWrite.poll_event(), PollFlags::OUT);
    }
}
