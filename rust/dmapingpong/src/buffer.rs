//! dma-bufs, their mappings and CPU access.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use rustix::event::PollFlags;
use rustix::fs::SeekFrom;
use rustix::ioctl::{Setter, Updater, ioctl};
use rustix::mm::{MapFlags, ProtFlags};

use crate::error::{Error, Result};
use crate::fence::{SyncFile, poll_fd};
use crate::sys;

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
    pub fn from_fd(fd: OwnedFd) -> Result<DmaBuf> {
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
        let ptr = NonNull::new(ptr.cast::<u64>())
            .ok_or_else(|| Error::os("mmap", "dma-buf", rustix::io::Errno::FAULT))?;
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

fn dma_buf_sync(fd: BorrowedFd<'_>, flags: u64) -> Result<()> {
    // SAFETY: DMA_BUF_IOCTL_SYNC is `_IOW('b', 0, struct dma_buf_sync)` and
    // `DmaBufSync` mirrors that structure; the kernel only reads it.
    unsafe {
        ioctl(
            fd,
            Setter::<{ sys::DMA_BUF_IOCTL_SYNC }, sys::DmaBufSync>::new(sys::DmaBufSync { flags }),
        )
    }
    .map_err(|e| Error::os("DMA_BUF_IOCTL_SYNC", "dma-buf", e))
}

/// A shared mapping of a whole dma-buf, unmapped on drop. The memory stays
/// valid (the mapping holds a reference to the dma-buf) even after every fd
/// of the buffer is closed.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u64>,
    /// Length in bytes, a non-zero multiple of 8.
    len: usize,
    /// Duplicate of the dma-buf fd for `DMA_BUF_IOCTL_SYNC`; `None` after
    /// [`Mapping::close_fd`].
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping is plain shared memory owned by this value; access goes
// through `&self`/`&mut self` borrows.
unsafe impl Send for Mapping {}

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
    /// access conflicts with). The access ends when the guard is dropped or
    /// [`CpuAccess::end`]ed.
    ///
    /// Errors: [`Error::InvalidArgument`] after [`close_fd`](Self::close_fd).
    pub fn begin(&mut self, access: Access) -> Result<CpuAccess<'_>> {
        let fd = self
            .fd
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("the mapping's fd was closed".into()))?;
        dma_buf_sync(fd.as_fd(), sys::DMA_BUF_SYNC_START | access.flags())?;
        Ok(CpuAccess {
            map: self,
            flags: access.flags(),
            ended: false,
        })
    }

    /// Closes the mapping's own fd, so that only the mapping itself keeps the
    /// buffer alive. [`begin`](Self::begin) fails afterwards; use
    /// [`unsynced_mut`](Self::unsynced_mut).
    pub fn close_fd(&mut self) {
        self.fd = None;
    }

    /// The whole mapping as `u64`s, without `DMA_BUF_IOCTL_SYNC` bracketing:
    /// only correct on cache-coherent buffers or when no device accesses them.
    pub fn unsynced_mut(&mut self) -> &mut [u64] {
        // SAFETY: `ptr` is a live, page-aligned mapping of `len` bytes
        // (a multiple of 8) owned by `self`, which is exclusively borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len / 8) }
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
#[derive(Debug)]
pub struct CpuAccess<'a> {
    map: &'a mut Mapping,
    flags: u64,
    ended: bool,
}

impl CpuAccess<'_> {
    /// The buffer as `u64`s (native endian).
    pub fn as_slice(&self) -> &[u64] {
        // SAFETY: the mapping is live for `'a` and exclusively borrowed by
        // this guard; `len / 8` u64s fit in it and it is page-aligned.
        unsafe { std::slice::from_raw_parts(self.map.ptr.as_ptr(), self.map.len / 8) }
    }

    /// The buffer as mutable `u64`s (native endian).
    pub fn as_mut_slice(&mut self) -> &mut [u64] {
        self.map.unsynced_mut()
    }

    /// Ends the access (`DMA_BUF_SYNC_END`) and reports its error.
    pub fn end(mut self) -> Result<()> {
        self.ended = true;
        self.sync_end()
    }

    fn sync_end(&self) -> Result<()> {
        match &self.map.fd {
            Some(fd) => dma_buf_sync(fd.as_fd(), sys::DMA_BUF_SYNC_END | self.flags),
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
