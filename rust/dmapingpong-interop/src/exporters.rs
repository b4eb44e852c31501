//! Dma-bufs of other exporters, for jobs of ours that import them: the
//! dma-buf heaps (`/dev/dma_heap/system`, page allocator; the CMA heap, one
//! contiguous range), udmabuf (memfd pages, `include/uapi/linux/udmabuf.h`),
//! a vgem dumb buffer exported with PRIME (shmem pages) and a V4L2 buffer
//! exported with `VIDIOC_EXPBUF` (vivid's, vmalloc or dma-contig).

use std::ffi::c_void;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use dmapingpong::{DmaBuf, DmaHeap};
use rustix::fs::{MemfdFlags, Mode, OFlags, SealFlags};
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, ioctl};

use crate::error::{Failure, Result};
use crate::sys;

/// The heap of the default CMA area: the one heap of `/dev/dma_heap` that is
/// not `system` (the CMA heap is named after its area).
pub fn cma_heap() -> Result<DmaHeap> {
    let names = DmaHeap::names();
    let name = names.iter().find(|n| n.as_str() != "system").ok_or_else(|| {
        Failure::Missing(format!(
            "no CMA heap in {} (heaps: {names:?}; CONFIG_DMABUF_HEAPS_CMA and a default CMA area)",
            DmaHeap::DIR
        ))
    })?;
    Ok(DmaHeap::open(name)?)
}

/// `UDMABUF_CREATE`, whose result is the new dma-buf's fd (the ioctl's
/// return value).
struct UdmabufCreate(sys::UdmabufCreate);

// SAFETY: `UDMABUF_CREATE` is `_IOW('u', 0x42, struct udmabuf_create)`:
// the kernel reads the structure `as_ptr` points to and returns the new fd.
unsafe impl Ioctl for UdmabufCreate {
    type Output = i32;
    const IS_MUTATING: bool = false;

    fn opcode(&self) -> Opcode {
        sys::UDMABUF_CREATE
    }

    fn as_ptr(&mut self) -> *mut c_void {
        (&raw mut self.0).cast()
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

/// A udmabuf of `size` bytes (a multiple of the page size) over a sealed
/// memfd.
pub fn udmabuf(size: u64) -> Result<DmaBuf> {
    let os = |op: &'static str, target: &str| {
        let target = target.to_string();
        move |errno| Failure::Os { op, target, errno }
    };
    let dev = rustix::fs::open(
        "/dev/udmabuf",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Failure::Missing(format!("/dev/udmabuf: {e} (CONFIG_UDMABUF)")))?;
    let memfd = rustix::fs::memfd_create(
        "dmapingpong-interop",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(os("memfd_create", "memfd"))?;
    rustix::fs::ftruncate(&memfd, size).map_err(os("ftruncate", "memfd"))?;
    // udmabuf needs the memfd sealed against shrinking.
    rustix::fs::fcntl_add_seals(&memfd, SealFlags::SHRINK).map_err(os("F_ADD_SEALS", "memfd"))?;
    let arg = UdmabufCreate(sys::UdmabufCreate {
        memfd: memfd.as_raw_fd() as u32,
        flags: sys::UDMABUF_FLAGS_CLOEXEC,
        offset: 0,
        size,
    });
    // SAFETY: see the `Ioctl` implementation.
    let fd = unsafe { ioctl(dev.as_fd(), arg) }.map_err(os("UDMABUF_CREATE", "/dev/udmabuf"))?;
    // SAFETY: on success the kernel installed a new fd that nothing else
    // owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(DmaBuf::from_fd(fd)?)
}
