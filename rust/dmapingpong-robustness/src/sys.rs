//! Raw system calls the library deliberately does not offer: ioctls with any
//! opcode and argument, mappings with any flags, offsets and protections,
//! `DMA_BUF_SET_NAME`, other dma-buf exporters, fd flags and fdinfo.
//!
//! Every `unsafe` block of the crate is here, each for a call rustix marks
//! unsafe (ioctl, mmap family) or for taking ownership of an fd the kernel
//! returned.

use std::ffi::{CStr, c_void};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU64};

use dmapingpong::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode, ioctl};
use rustix::mm::{MapFlags, MprotectFlags, MremapFlags, ProtFlags};

/// `_IOC()` of `include/uapi/asm-generic/ioctl.h`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: u32) -> u32 {
    (dir << 30) | ((size & 0x3fff) << 16) | ((ty as u32) << 8) | nr as u32
}
/// `_IOC_NONE`.
pub const IOC_NONE: u32 = 0;
/// `_IOC_WRITE`.
pub const IOC_WRITE: u32 = 1;
/// `_IOC_READ`.
pub const IOC_READ: u32 = 2;

/// `DMA_BUF_IOCTL_SYNC`: `_IOW('b', 0, struct dma_buf_sync)`.
pub const DMA_BUF_IOCTL_SYNC: u32 = ioc(IOC_WRITE, b'b', 0, 8);
/// `DMA_BUF_SET_NAME` (= `DMA_BUF_SET_NAME_B` on 64-bit): `_IOW('b', 1, const char *)`.
pub const DMA_BUF_SET_NAME: u32 = ioc(IOC_WRITE, b'b', 1, 8);
/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: `_IOWR('b', 2, struct dma_buf_export_sync_file)`.
pub const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: u32 = ioc(IOC_READ | IOC_WRITE, b'b', 2, 8);
/// `SYNC_IOC_FILE_INFO`: `_IOWR('>', 4, struct sync_file_info)`.
pub const SYNC_IOC_FILE_INFO: u32 = ioc(IOC_READ | IOC_WRITE, b'>', 4, 56);
/// `DMA_BUF_NAME_LEN`: longest dma-buf name including the NUL.
pub const DMA_BUF_NAME_LEN: usize = 32;

/// `DMA_BUF_SYNC_READ`.
pub const SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub const SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_END`.
pub const SYNC_END: u64 = 4;

/// An ioctl with a runtime opcode and a raw argument address.
struct Raw {
    opcode: u32,
    arg: *mut c_void,
}

// SAFETY: the argument is passed through as given; callers of `raw_ioctl`
// guarantee that it is valid for whatever the opcode may read or write.
unsafe impl Ioctl for Raw {
    type Output = i32;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode as Opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(out: IoctlOutput, _: *mut c_void) -> rustix::io::Result<i32> {
        Ok(out)
    }
}

/// `ioctl(fd, opcode, buf)` with a byte buffer as the argument; returns the
/// ioctl's return value. The buffer must be at least as large as the size
/// encoded in `opcode` (checked), so that whatever the kernel copies stays in
/// it.
pub fn ioctl_bytes(fd: BorrowedFd<'_>, opcode: u32, buf: &mut [u8]) -> Result<i32, Errno> {
    let size = ((opcode >> 16) & 0x3fff) as usize;
    assert!(buf.len() >= size, "ioctl buffer of {} < {size}", buf.len());
    // SAFETY: `buf` is valid for reads and writes of at least the size the
    // opcode encodes, which bounds what the kernel copies for any ioctl
    // implementation that honours its own encoding; it is exclusively
    // borrowed for the call.
    unsafe {
        ioctl(
            fd,
            Raw {
                opcode,
                arg: buf.as_mut_ptr().cast(),
            },
        )
    }
}

/// `ioctl(fd, opcode, addr)` with an address that is not ours to access
/// (NULL, kernel addresses): the kernel must refuse it with `EFAULT`.
pub fn ioctl_addr(fd: BorrowedFd<'_>, opcode: u32, addr: usize) -> Result<i32, Errno> {
    assert!(
        addr == 0 || addr >= 0xffff_0000_0000_0000,
        "address {addr:#x}"
    );
    // SAFETY: the address is either NULL or outside user space, so no
    // memory of this process can be changed through it.
    unsafe {
        ioctl(
            fd,
            Raw {
                opcode,
                arg: addr as *mut c_void,
            },
        )
    }
}

/// `ioctl(fd, opcode, arg)` with the argument bytes in a read-only page of
/// their own: the kernel can read them, but writing a result back must fail
/// with `EFAULT`.
pub fn ioctl_readonly_arg(fd: BorrowedFd<'_>, opcode: u32, arg: &[u8]) -> Result<i32, Errno> {
    let size = ((opcode >> 16) & 0x3fff) as usize;
    assert!(
        arg.len() >= size,
        "ioctl argument of {} < {size}",
        arg.len()
    );
    let page = rustix::param::page_size();
    let memfd = rustix::fs::memfd_create("ioctl-arg", rustix::fs::MemfdFlags::CLOEXEC)?;
    rustix::fs::ftruncate(&memfd, page as u64)?;
    let mut map = RawMap::shared(memfd.as_fd(), page, 0)?;
    for (dst, &b) in map.bytes().iter().zip(arg) {
        dst.store(b, std::sync::atomic::Ordering::Relaxed);
    }
    map.protect(MprotectFlags::READ)?;
    // SAFETY: the address is a read-only mapping of our own, alive for the
    // call: the kernel can only read it (a write faults and returns EFAULT).
    unsafe {
        ioctl(
            fd,
            Raw {
                opcode,
                arg: map.addr() as *mut c_void,
            },
        )
    }
}

/// `DMA_BUF_SET_NAME` with `name`.
pub fn dma_buf_set_name(fd: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    // SAFETY: the kernel reads at most DMA_BUF_NAME_LEN + 1 bytes of the
    // NUL-terminated string, which stays borrowed for the call.
    unsafe {
        ioctl(
            fd,
            Raw {
                opcode: DMA_BUF_SET_NAME,
                arg: name.as_ptr().cast_mut().cast(),
            },
        )
    }
    .map(drop)
}

/// `DMA_BUF_IOCTL_SYNC` with any flags.
pub fn dma_buf_sync(fd: BorrowedFd<'_>, flags: u64) -> Result<(), Errno> {
    let mut buf = flags.to_ne_bytes();
    ioctl_bytes(fd, DMA_BUF_IOCTL_SYNC, &mut buf).map(drop)
}

/// Takes ownership of an fd that a successful ioctl installed.
///
/// Only for fds the kernel just created for this call, which nothing else
/// owns yet.
pub fn adopt_fd(raw: i32) -> OwnedFd {
    assert!(raw >= 0, "adopting fd {raw}");
    // SAFETY: per the contract above the fd is open and owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

/// A dma-buf of another exporter: a dma-heap (`/dev/dma_heap/system`) or
/// udmabuf (`/dev/udmabuf`) buffer of `size` bytes, or why there is none.
pub fn foreign_dma_buf(size: u64) -> Result<(OwnedFd, &'static str), String> {
    let heap = dmapingpong::DmaHeap::open("system").and_then(|heap| heap.alloc(size));
    let heap_error = match heap {
        Ok(buf) => return Ok((buf.into(), "dma-heap system")),
        Err(e) => e,
    };
    match dmapingpong::baseline::udmabuf(size) {
        Ok(buf) => Ok((buf.into(), "udmabuf")),
        Err(e) => Err(format!("{heap_error}; {e}")),
    }
}

/// Whether `fd` has `FD_CLOEXEC`.
pub fn cloexec(fd: impl AsFd) -> Result<bool, Errno> {
    Ok(rustix::io::fcntl_getfd(fd)?.contains(rustix::io::FdFlags::CLOEXEC))
}

/// `/proc/self/fdinfo/N` of `fd`.
pub fn fdinfo(fd: impl AsFd) -> std::io::Result<String> {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))
}

/// A mapping made with arbitrary arguments, unmapped on drop. Its memory is
/// shared with other processes and the device, so it is only seen as atomics
/// (as `dmapingpong::Mapping` sees it).
#[derive(Debug)]
pub struct RawMap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: plain shared memory owned by this value.
unsafe impl Send for RawMap {}

impl RawMap {
    /// `mmap(NULL, len, prot, flags, fd, offset)`.
    pub fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
        offset: u64,
    ) -> Result<RawMap, Errno> {
        // SAFETY: no hint and no MAP_FIXED: the kernel picks free address
        // space, so no existing memory is replaced.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) }?;
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(Errno::FAULT)?;
        Ok(RawMap { ptr, len })
    }

    /// A shared read-write mapping.
    pub fn shared(fd: BorrowedFd<'_>, len: usize, offset: u64) -> Result<RawMap, Errno> {
        RawMap::new(
            fd,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
            offset,
        )
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The address (for diagnostics and for the deliberate use after unmap).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[AtomicU8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes that stays mapped
        // while `self` is borrowed (`protect`/`remap` take `&mut self`).
        // `AtomicU8` has the size, alignment and bit validity of `u8`;
        // other processes may write the memory, but every access through
        // the slice is atomic.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len) }
    }

    /// The mapped memory as native-endian `u64` words (`len / 8` of them).
    pub fn words(&self) -> &[AtomicU64] {
        // SAFETY: as in `bytes`; mappings are page-aligned, so aligned for
        // `AtomicU64`, which has the size and bit validity of `u64`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast(), self.len / 8) }
    }

    /// `mprotect()` of the whole mapping.
    pub fn protect(&mut self, flags: MprotectFlags) -> Result<(), Errno> {
        // SAFETY: only changes the protection of our own mapping; no Rust
        // reference into it is alive (`self` is exclusively borrowed).
        unsafe { rustix::mm::mprotect(self.ptr.as_ptr().cast(), self.len, flags) }
    }

    /// `mprotect()` of `len` bytes at `offset` (page-aligned), which splits the mapping into
    /// separate VMAs.
    pub fn protect_range(
        &mut self,
        offset: usize,
        len: usize,
        flags: MprotectFlags,
    ) -> Result<(), Errno> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(Errno::INVAL);
        }
        // SAFETY: a range of our own mapping (checked above); no Rust reference into it is alive
        // (`self` is exclusively borrowed).
        unsafe { rustix::mm::mprotect(self.ptr.as_ptr().add(offset).cast(), len, flags) }
    }

    /// `mremap()` to `new_len`; on success the mapping is moved or resized.
    pub fn remap(&mut self, new_len: usize, flags: MremapFlags) -> Result<(), Errno> {
        // SAFETY: our own mapping, no reference into it alive; on success we
        // take over the new address and length.
        let p = unsafe { rustix::mm::mremap(self.ptr.as_ptr().cast(), self.len, new_len, flags) }?;
        self.ptr = NonNull::new(p.cast()).ok_or(Errno::FAULT)?;
        self.len = new_len;
        Ok(())
    }
}

impl Drop for RawMap {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe our mapping; no borrow outlives `self`.
        if let Err(e) = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) } {
            log::warn!("munmap: {e}");
        }
    }
}

/// Reads one byte at `addr` after its mapping was removed, which must kill
/// the process with `SIGSEGV`. Used only by a child process whose sole
/// purpose is to die that way; returns the byte if the access unexpectedly
/// succeeds.
pub fn touch_unmapped(addr: usize) -> u8 {
    // SAFETY: not sound by design — the address is unmapped, the access
    // faults and the kernel kills this (child) process with SIGSEGV before
    // any value is produced; the parent checks exactly that.
    unsafe { std::ptr::read_volatile(addr as *const u8) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    #[test]
    fn opcodes_match_the_kernel_headers() {
        assert_eq!(DMA_BUF_IOCTL_SYNC, 0x4008_6200);
        assert_eq!(DMA_BUF_SET_NAME, 0x4008_6201);
        assert_eq!(DMA_BUF_IOCTL_EXPORT_SYNC_FILE, 0xc008_6202);
        assert_eq!(SYNC_IOC_FILE_INFO, 0xc038_3e04);
        use dmapingpong::uapi as u;
        assert_eq!(
            ioc(IOC_READ, u::DPP_IOC_MAGIC, 0, u::DppInfo::SIZE as u32),
            u::DPP_IOCTL_GET_INFO
        );
        assert_eq!(
            ioc(
                IOC_READ | IOC_WRITE,
                u::DPP_IOC_MAGIC,
                1,
                u::DppAlloc::SIZE as u32
            ),
            u::DPP_IOCTL_ALLOC
        );
    }

    #[test]
    fn mappings_of_a_memfd() {
        let fd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&fd, 8192).unwrap();
        let m = RawMap::shared(fd.as_fd(), 4096, 4096).unwrap();
        m.bytes()[0].store(7, Ordering::Relaxed);
        let whole = RawMap::shared(fd.as_fd(), 8192, 0).unwrap();
        assert_eq!(whole.bytes()[4096].load(Ordering::Relaxed), 7);
        assert_eq!(
            whole.words()[512].load(Ordering::Relaxed).to_ne_bytes()[0],
            7
        );
        assert!(cloexec(&fd).unwrap());
        assert!(fdinfo(&fd).unwrap().contains("flags:"));
        // Unknown ioctls on a memfd.
        let mut b = [0u8; 8];
        assert_eq!(
            ioctl_bytes(fd.as_fd(), DMA_BUF_IOCTL_SYNC, &mut b),
            Err(Errno::NOTTY)
        );
    }
}
