//! What a user would pick instead of this driver, for comparisons
//! (`dmapingpong bench`): dma-buf heaps and `sw_sync` timelines.
//!
//! * [`DmaHeap`]: a heap of `/dev/dma_heap/` (`include/uapi/linux/dma-heap.h`,
//!   `Documentation/userspace-api/dma-buf-heaps.rst`): `system` (page
//!   allocator, `CONFIG_DMABUF_HEAPS_SYSTEM`) or the default CMA area
//!   (`CONFIG_DMABUF_HEAPS_CMA`). Its buffers are [`DmaBuf`]s like ours.
//! * [`udmabuf`]: a dma-buf over the pages of a sealed memfd
//!   (`include/uapi/linux/udmabuf.h`, `CONFIG_UDMABUF`).
//! * [`SwSyncTimeline`]: a software timeline of `sw_sync`
//!   (`drivers/dma-buf/sw_sync.c`, `CONFIG_SW_SYNC`, a debugfs test
//!   interface): fences at points of the timeline as [`SyncFile`]s, signalled
//!   by advancing it.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use std::ffi::c_void;
use std::os::fd::AsRawFd;

use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, Setter, Updater, ioctl, opcode};

use crate::error::{Error, Result};
use crate::{DmaBuf, SyncFile};

/// `struct dma_heap_allocation_data` (`include/uapi/linux/dma-heap.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct DmaHeapAllocationData {
    len: u64,
    fd: u32,
    fd_flags: u32,
    heap_flags: u64,
}

/// `DMA_HEAP_IOCTL_ALLOC`: `_IOWR('H', 0x0, struct dma_heap_allocation_data)`.
const DMA_HEAP_IOCTL_ALLOC: rustix::ioctl::Opcode =
    opcode::read_write::<DmaHeapAllocationData>(b'H', 0);

/// `struct sw_sync_create_fence_data` (`drivers/dma-buf/sw_sync.c`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct SwSyncCreateFenceData {
    value: u32,
    name: [u8; 32],
    fence: i32,
}

/// `SW_SYNC_IOC_CREATE_FENCE`: `_IOWR('W', 0, struct sw_sync_create_fence_data)`.
const SW_SYNC_IOC_CREATE_FENCE: rustix::ioctl::Opcode =
    opcode::read_write::<SwSyncCreateFenceData>(b'W', 0);
/// `SW_SYNC_IOC_INC`: `_IOW('W', 1, __u32)`.
const SW_SYNC_IOC_INC: rustix::ioctl::Opcode = opcode::write::<u32>(b'W', 1);

/// A dma-buf heap (`/dev/dma_heap/<name>`).
#[derive(Debug)]
pub struct DmaHeap {
    fd: OwnedFd,
    path: PathBuf,
}

impl DmaHeap {
    /// The directory of the heaps' character devices.
    pub const DIR: &'static str = "/dev/dma_heap";

    /// The heaps present, by name (`system`, the CMA area's name, ...),
    /// sorted; empty without `CONFIG_DMABUF_HEAPS`.
    pub fn names() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(Self::DIR)
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Opens the heap `name` of [`DIR`](Self::DIR).
    pub fn open(name: &str) -> Result<DmaHeap> {
        let path = Path::new(Self::DIR).join(name);
        let fd = rustix::fs::open(&path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::os("open", path.display().to_string(), e))?;
        Ok(DmaHeap { fd, path })
    }

    /// Allocates a buffer of `len` bytes (`DMA_HEAP_IOCTL_ALLOC`, fd
    /// `O_RDWR | O_CLOEXEC`).
    ///
    /// Errors: `EINVAL` (`len` 0), `ENOMEM`.
    pub fn alloc(&self, len: u64) -> Result<DmaBuf> {
        let mut arg = DmaHeapAllocationData {
            len,
            fd_flags: (OFlags::RDWR | OFlags::CLOEXEC).bits(),
            ..Default::default()
        };
        // SAFETY: DMA_HEAP_IOCTL_ALLOC is `_IOWR('H', 0, struct
        // dma_heap_allocation_data)` and `arg` is a valid, exclusively
        // borrowed `DmaHeapAllocationData` for the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ DMA_HEAP_IOCTL_ALLOC }, DmaHeapAllocationData>::new(&mut arg),
            )
        }
        .map_err(|e| Error::os("DMA_HEAP_IOCTL_ALLOC", self.path.display().to_string(), e))?;
        // SAFETY: on success the kernel installed a new fd that nothing else
        // owns; we take ownership of it exactly once.
        let fd = unsafe { OwnedFd::from_raw_fd(arg.fd as i32) };
        DmaBuf::from_fd(fd)
    }
}

/// `struct udmabuf_create` (`include/uapi/linux/udmabuf.h`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct UdmabufCreate {
    memfd: u32,
    flags: u32,
    offset: u64,
    size: u64,
}

/// `UDMABUF_FLAGS_CLOEXEC`.
const UDMABUF_FLAGS_CLOEXEC: u32 = 1;
/// `UDMABUF_CREATE`: `_IOW('u', 0x42, struct udmabuf_create)`.
const UDMABUF_CREATE: Opcode = opcode::write::<UdmabufCreate>(b'u', 0x42);

/// `UDMABUF_CREATE`, whose result is the new dma-buf's fd (the ioctl's
/// return value).
struct UdmabufCreateIoctl(UdmabufCreate);

// SAFETY: `UDMABUF_CREATE` is `_IOW('u', 0x42, struct udmabuf_create)`:
// the kernel reads the structure `as_ptr` points to and returns the new fd.
unsafe impl Ioctl for UdmabufCreateIoctl {
    type Output = i32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        UDMABUF_CREATE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        (&raw mut self.0).cast()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

/// The device node of udmabuf.
pub const UDMABUF_PATH: &str = "/dev/udmabuf";

/// A udmabuf of `size` bytes (a multiple of the page size) over a new memfd
/// sealed against shrinking, as udmabuf requires.
///
/// Errors: `ENOENT` (no [`UDMABUF_PATH`]: `CONFIG_UDMABUF`), `EINVAL`
/// (`size` not page-aligned), `ENOMEM`.
pub fn udmabuf(size: u64) -> Result<DmaBuf> {
    let dev = rustix::fs::open(UDMABUF_PATH, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::os("open", UDMABUF_PATH, e))?;
    let memfd = rustix::fs::memfd_create(
        "dmapingpong-udmabuf",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| Error::os("memfd_create", "memfd", e))?;
    rustix::fs::ftruncate(&memfd, size).map_err(|e| Error::os("ftruncate", "memfd", e))?;
    rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK)
        .map_err(|e| Error::os("F_ADD_SEALS", "memfd", e))?;
    let arg = UdmabufCreateIoctl(UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags: UDMABUF_FLAGS_CLOEXEC,
        offset: 0,
        size,
    });
    // SAFETY: see the `Ioctl` implementation.
    let fd =
        unsafe { ioctl(&dev, arg) }.map_err(|e| Error::os("UDMABUF_CREATE", UDMABUF_PATH, e))?;
    // SAFETY: on success the kernel installed a new fd that nothing else
    // owns; we take ownership of it exactly once.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    DmaBuf::from_fd(fd)
}

/// A `sw_sync` timeline: each open of `/sys/kernel/debug/sync/sw_sync` is a
/// new one, at point 0. Closing it signals its pending fences with an error.
#[derive(Debug)]
pub struct SwSyncTimeline {
    fd: OwnedFd,
}

impl SwSyncTimeline {
    /// The debugfs file (`CONFIG_SW_SYNC`, debugfs mounted).
    pub const PATH: &'static str = "/sys/kernel/debug/sync/sw_sync";

    /// Creates a timeline.
    pub fn open() -> Result<SwSyncTimeline> {
        let fd = rustix::fs::open(Self::PATH, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Error::os("open", Self::PATH, e))?;
        Ok(SwSyncTimeline { fd })
    }

    /// A fence that signals when the timeline reaches `point`
    /// (`SW_SYNC_IOC_CREATE_FENCE`), as a sync_file (`O_CLOEXEC`).
    pub fn create_fence(&self, point: u32) -> Result<SyncFile> {
        let mut arg = SwSyncCreateFenceData {
            value: point,
            name: *b"dmapingpong-bench\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
            fence: -1,
        };
        // SAFETY: SW_SYNC_IOC_CREATE_FENCE is `_IOWR('W', 0, struct
        // sw_sync_create_fence_data)` and `arg` is a valid, exclusively
        // borrowed `SwSyncCreateFenceData` for the call.
        unsafe {
            ioctl(
                &self.fd,
                Updater::<{ SW_SYNC_IOC_CREATE_FENCE }, SwSyncCreateFenceData>::new(&mut arg),
            )
        }
        .map_err(|e| Error::os("SW_SYNC_IOC_CREATE_FENCE", Self::PATH, e))?;
        // SAFETY: on success the kernel installed a new fd that nothing else
        // owns; we take ownership of it exactly once.
        let fd = unsafe { OwnedFd::from_raw_fd(arg.fence) };
        Ok(SyncFile::from_fd(fd))
    }

    /// Advances the timeline by `steps` points (`SW_SYNC_IOC_INC`),
    /// signalling the fences it passes.
    pub fn inc(&self, steps: u32) -> Result<()> {
        // SAFETY: SW_SYNC_IOC_INC is `_IOW('W', 1, __u32)` and the setter
        // passes a pointer to a valid `u32` for the call.
        unsafe { ioctl(&self.fd, Setter::<{ SW_SYNC_IOC_INC }, u32>::new(steps)) }
            .map_err(|e| Error::os("SW_SYNC_IOC_INC", Self::PATH, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The opcodes as the kernel headers encode them.
    #[test]
    fn opcodes() {
        assert_eq!(size_of::<DmaHeapAllocationData>(), 24);
        assert_eq!(size_of::<SwSyncCreateFenceData>(), 40);
        assert_eq!(size_of::<UdmabufCreate>(), 24);
        assert_eq!(u64::from(UDMABUF_CREATE), 0x4018_7542);
        assert_eq!(u64::from(DMA_HEAP_IOCTL_ALLOC), 0xc018_4800);
        assert_eq!(u64::from(SW_SYNC_IOC_CREATE_FENCE), 0xc028_5700);
        assert_eq!(u64::from(SW_SYNC_IOC_INC), 0x4004_5701);
    }
}
