// SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT

//! User-space API of the dmapingpong exporter, version 2 (version 1 plus
//! [`DPP_IOCTL_SUBMIT_JOB`]).
//!
//! This file is the single definition of the ABI. The kernel driver includes it
//! (`rust/driver/dmapingpong.rs`), the user-space crate `dmapingpong-uapi`
//! re-exports it, and `include/dmapingpong.h` is the C header for C users,
//! checked against this file by the crate's tests.
//!
//! All ioctls are issued on an open file of `/dev/dmapingpong` (mode 0660).
//! Every argument structure has a fixed size (a multiple of 8 bytes, no
//! implicit padding), carries no kernel pointers, and ends in `reserved`
//! fields that must be zero on input (`-EINVAL` otherwise); `flags` fields
//! reject unknown bits with `-EINVAL`. The reason of every `-EINVAL` is logged
//! by the driver (rate-limited). The ioctl numbers encode the structure size,
//! so a structure that grows gets a new number.
//!
//! Fences follow `Documentation/driver-api/dma-buf.rst`: each open file of the
//! device is one fence context (timeline) whose seqnos increase by one per
//! fence. Fences are handed to user space as sync_file fds
//! (`include/uapi/linux/sync_file.h`), which support `poll()` and
//! `SYNC_IOC_FILE_INFO`. A fence must be signalled by the file that created it,
//! in seqno order; when that file is released, every fence it left pending is
//! signalled with `-ECANCELED`, so that waiters wake with an error.
//!
//! Buffers are dma-bufs (`include/uapi/linux/dma-buf.h`): `mmap()` of the fd
//! maps the buffer, `DMA_BUF_IOCTL_SYNC` brackets CPU access, `poll()` waits
//! for the fences in the buffer's reservation (`POLLIN`: write fences,
//! `POLLOUT`: all fences) and `DMA_BUF_IOCTL_EXPORT_SYNC_FILE` /
//! `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` move fences in and out of it.

/// Version of this ABI, reported by [`DPP_IOCTL_GET_INFO`].
pub const DPP_UAPI_VERSION: u32 = 3;

/// ioctl type ("magic") of the device.
pub const DPP_IOC_MAGIC: u8 = 0xD7;

/// Flag: return the fd without `O_CLOEXEC` (the default is `O_CLOEXEC`).
pub const DPP_FD_NO_CLOEXEC: u32 = 1 << 0;

/// Fence usage: no buffer, the fence is only returned as a sync_file.
pub const DPP_USAGE_NONE: u32 = 0;
/// Fence usage: a write fence (`DMA_RESV_USAGE_WRITE`) of the buffer.
pub const DPP_USAGE_WRITE: u32 = 1;
/// Fence usage: a read fence (`DMA_RESV_USAGE_READ`) of the buffer.
pub const DPP_USAGE_READ: u32 = 2;

/// Largest errno a fence may be signalled with (`MAX_ERRNO`).
pub const DPP_MAX_ERRNO: i32 = 4095;

/// Deadline of a user fence created with `deadline_ms == 0`, in milliseconds
/// (that of vgem's fences).
pub const DPP_FENCE_DEFAULT_DEADLINE_MS: u32 = 10_000;

/// The most user fences a file may have pending: `CREATE_FENCE` fails with
/// `-EBUSY` beyond (their sync_files may be closed, they stay pending).
pub const DPP_FENCE_MAX_PENDING: u32 = 1024;

/// Job operation: fill `size` bytes of the destination with copies of the 8-byte
/// `pattern` (native byte order).
pub const DPP_JOB_FILL: u32 = 1;
/// Job operation: copy `size` bytes from the source to the destination.
pub const DPP_JOB_COPY: u32 = 2;

/// Job flag: do not wait for the fences already in the buffers' reservations
/// (implicit synchronization); the job waits only for its in-fences.
pub const DPP_JOB_NO_IMPLICIT_SYNC: u32 = 1 << 0;

/// Number of in-fence slots of [`DppJob`].
pub const DPP_JOB_MAX_IN_FENCES: usize = 4;

/// Engine of a job: a channel of the SoC's DMA controller (device tree
/// `dmas`/`dma-names = "memcpy"` of the exporter node, or any memcpy-capable
/// channel).
pub const DPP_ENGINE_DMA: u32 = 1;
/// Engine of a job: a CPU worker of the driver (no usable DMA channel).
pub const DPP_ENGINE_CPU: u32 = 2;

/// Output of [`DPP_IOCTL_GET_INFO`]. All sizes are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DppInfo {
    /// [`DPP_UAPI_VERSION`] of the driver.
    pub version: u32,
    /// CPU page size; buffer sizes are rounded up to it.
    pub page_size: u32,
    /// Size of the device's reserved-memory pool; no buffer is larger.
    pub pool_size: u64,
    /// Bytes of the pool held by live buffers of this device.
    pub pool_used: u64,
    /// Live buffers (dma-bufs) of this device.
    pub buffers: u64,
    /// Fences of this device created and not yet signalled.
    pub fences_pending: u64,
    /// Zero.
    pub reserved: [u64; 3],
}

/// Argument of [`DPP_IOCTL_ALLOC`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DppAlloc {
    /// In: requested size in bytes, `1..=pool_size`. Out: the size rounded
    /// up to whole pages.
    pub size: u64,
    /// In: `0` or [`DPP_FD_NO_CLOEXEC`].
    pub flags: u32,
    /// Out: the dma-buf fd (`O_RDWR`). The buffer is zero-filled.
    pub fd: i32,
    /// In: zero.
    pub reserved: [u64; 2],
}

/// Argument of [`DPP_IOCTL_CREATE_FENCE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DppFenceCreate {
    /// In: a dma-buf fd of a buffer of this device (`EINVAL` for any other
    /// dma-buf) to whose reservation the new fence is added with `usage`, or
    /// `-1` for none.
    pub dmabuf_fd: i32,
    /// In: [`DPP_USAGE_WRITE`] or [`DPP_USAGE_READ`] with a dma-buf,
    /// [`DPP_USAGE_NONE`] with `dmabuf_fd == -1`.
    pub usage: u32,
    /// In: 0 or [`DPP_FD_NO_CLOEXEC`].
    pub flags: u32,
    /// Out: a sync_file fd of the new, unsignalled fence.
    pub fence_fd: i32,
    /// Out: the fence context (one per open file of the device).
    pub context: u64,
    /// Out: the fence's seqno on that context (1, 2, ...).
    pub seqno: u64,
    /// In: milliseconds after which the fence, if not signalled, signals with
    /// `-ETIMEDOUT` (or later: never before an older fence of the same file);
    /// 0 for [`DPP_FENCE_DEFAULT_DEADLINE_MS`]; at most the driver's maximum
    /// (60 000), else `EINVAL`.
    pub deadline_ms: u32,
    /// In: zero.
    pub pad: u32,
    /// In: zero.
    pub reserved: [u64; 1],
}

/// Argument of [`DPP_IOCTL_SIGNAL_FENCE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DppFenceSignal {
    /// In: a sync_file fd of a fence created on this open file, which must be
    /// the oldest of its pending fences.
    pub fence_fd: i32,
    /// In: `0`, or a negative errno (`-DPP_MAX_ERRNO..=-1`) that the fence
    /// carries to its waiters.
    pub error: i32,
    /// In: zero.
    pub reserved: [u64; 2],
}

/// Argument of [`DPP_IOCTL_WAIT_FENCE`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DppFenceWait {
    /// In: a sync_file fd (of any fence).
    pub fence_fd: i32,
    /// In: zero.
    pub flags: u32,
    /// In: how long to wait, in nanoseconds; `0` only samples the state.
    pub timeout_ns: u64,
    /// Out: `0` if the fence signalled without error, else its negative errno.
    pub status: i32,
    /// In: zero.
    pub pad: u32,
    /// In: zero.
    pub reserved: [u64; 2],
}

/// Argument of [`DPP_IOCTL_SUBMIT_JOB`]. Sizes and offsets are in bytes.
///
/// A job is an operation that the device (its DMA engine, or its CPU worker)
/// runs on dma-bufs, asynchronously: buffers of this device, or of any other
/// exporter (a dma-buf heap, udmabuf, a DRM or V4L2 driver), which the job
/// imports as any importer does: attached to the DMA controller's device and
/// mapped for it, or mapped into the kernel (`dma_buf_vmap()`) for the CPU
/// worker, at submission. It waits for its in-fences and, unless
/// [`DPP_JOB_NO_IMPLICIT_SYNC`], for the fences in the reservations of its
/// buffers (all of them for the destination, the write fences for the
/// source); then it runs, and its out-fence signals. The out-fence is added
/// to the destination's reservation as a write fence and to the source's as
/// a read fence. The jobs of one open file run and signal in submission
/// order, on one fence context per open file (another one than
/// [`DPP_IOCTL_CREATE_FENCE`]'s).
///
/// The out-fence signals with an error, and the job does not touch the
/// destination, if an in-fence or reservation fence signalled with an error
/// (that error) or the job could not be queued; it signals with `-EIO` if the
/// transfer failed, `-ETIMEDOUT` if it did not complete in time (5 s + 0.2 s
/// per MiB + 20 ms per transfer), `-ECANCELED` if the DMA channel was released (unbind,
/// shutdown) while the job ran or before it could start.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DppJob {
    /// In: [`DPP_JOB_FILL`] or [`DPP_JOB_COPY`].
    pub op: u32,
    /// In: `0` or [`DPP_JOB_NO_IMPLICIT_SYNC`].
    pub flags: u32,
    /// In: the destination, a dma-buf fd (of this device or another
    /// exporter).
    pub dst_fd: i32,
    /// In: the source (copy), a dma-buf fd (of this device or another
    /// exporter; may be `dst_fd` if the ranges do not overlap); `-1` for a
    /// fill.
    pub src_fd: i32,
    /// In: offset into the destination, a multiple of 8.
    pub dst_offset: u64,
    /// In: offset into the source (copy), a multiple of 8; `0` for a fill.
    pub src_offset: u64,
    /// In: bytes to fill or copy, a non-zero multiple of 8 within the buffers.
    /// With [`DPP_ENGINE_DMA`], offsets and size must also be multiples of the
    /// controller's copy alignment and, if it can fill, fill alignment (1 byte
    /// on ZynqMP and BCM2835 DMA, which copy only).
    pub size: u64,
    /// In: the fill pattern; `0` for a copy.
    pub pattern: u64,
    /// In: sync_file fds the job waits for; `-1` for an unused slot.
    pub in_fence_fds: [i32; DPP_JOB_MAX_IN_FENCES],
    /// Out: a sync_file fd (`O_CLOEXEC`) of the job's out-fence.
    pub out_fence_fd: i32,
    /// Out: [`DPP_ENGINE_DMA`] or [`DPP_ENGINE_CPU`], the engine that runs the job.
    pub engine: u32,
    /// Out: the fence context of the out-fence (one per open file, for jobs).
    pub context: u64,
    /// Out: the out-fence's seqno on that context (1, 2, ...).
    pub seqno: u64,
    /// In: zero.
    pub reserved: [u64; 2],
}

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC()` of `include/uapi/asm-generic/ioctl.h` (arm64, x86, riscv).
const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    assert!(size < (1 << IOC_SIZEBITS));
    (dir << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((DPP_IOC_MAGIC as u32) << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
}

/// Reads [`DppInfo`]. Errors: none besides `-EFAULT`.
pub const DPP_IOCTL_GET_INFO: u32 = ioc(IOC_READ, 0x00, core::mem::size_of::<DppInfo>());

/// Allocates a zero-filled buffer from the pool and returns it as a dma-buf.
///
/// Errors: `-EINVAL` (size 0 or larger than the pool, unknown flags, non-zero
/// reserved), `-ENOMEM` (the pool has no room), `-EMFILE` (no free fd), `-EOPNOTSUPP` (the
/// device translates DMA addresses: `dma-ranges`, an IOMMU).
pub const DPP_IOCTL_ALLOC: u32 = ioc(IOC_READ | IOC_WRITE, 0x01, core::mem::size_of::<DppAlloc>());

/// Creates a fence on this file's context, optionally adds it to a dma-buf's
/// reservation, and returns it as a sync_file.
///
/// Errors: `-EINVAL` (bad usage, non-zero flags/reserved, `dmabuf_fd` not a dma-buf),
/// `-EBADF` (`dmabuf_fd` not open), `-EBUSY` ([`DPP_FENCE_MAX_PENDING`] fences of this file pending), `-ENOMEM`,
/// `-EMFILE`, `-EINTR`.
pub const DPP_IOCTL_CREATE_FENCE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x02,
    core::mem::size_of::<DppFenceCreate>(),
);

/// Signals a fence created on this file, optionally with an error.
///
/// Errors: `-EINVAL` (not a sync_file of this file's context, already
/// signalled, an older fence of the context still pending, error out of
/// range, non-zero reserved).
pub const DPP_IOCTL_SIGNAL_FENCE: u32 =
    ioc(IOC_WRITE, 0x03, core::mem::size_of::<DppFenceSignal>());

/// Waits for a sync_file's fence with a timeout and returns its status.
///
/// Errors: `-EINVAL` (not a sync_file, non-zero flags/reserved), `-ETIME`
/// (the timeout expired first), `-EINTR`/`-ERESTARTSYS` (a signal arrived).
pub const DPP_IOCTL_WAIT_FENCE: u32 = ioc(
    IOC_READ | IOC_WRITE,
    0x04,
    core::mem::size_of::<DppFenceWait>(),
);

/// Submits a job (see [`DppJob`]) and returns its out-fence.
///
/// Errors: `-EINVAL` (unknown op or flags, non-zero reserved, a buffer fd
/// that is not a dma-buf, a range out of bounds, unaligned or overlapping, a
/// fd in `in_fence_fds` that is not a sync_file or `-1`; another exporter's
/// buffer that has no kernel mapping for the CPU worker, or whose DMA
/// segments are not aligned for the DMA engine), `-EOPNOTSUPP` (another
/// exporter's buffer in I/O memory, for the CPU worker), `-ERANGE` (another
/// exporter's buffer, and a DMA controller that cannot address all of memory:
/// its mapping could be bounced), the exporter's error if it cannot map its
/// buffer for the DMA controller, `-EBADF` (a buffer fd not open), `-ENOMEM`,
/// `-EMFILE`, `-EINTR`. The CPU worker accesses another exporter's buffer
/// through its kernel mapping without `dma_buf_begin/end_cpu_access()`, which
/// may not run in a fence signalling path: the exporter's mapping must be
/// coherent with the buffer's other users.
pub const DPP_IOCTL_SUBMIT_JOB: u32 =
    ioc(IOC_READ | IOC_WRITE, 0x05, core::mem::size_of::<DppJob>());

/// A field of an ABI structure, copied in native byte order.
///
/// The driver copies the argument structures from and to user space as bytes, with
/// `from_ne_bytes`/`to_ne_bytes` of each structure; user space passes the structures themselves.
pub trait AbiField: Sized {
    /// Reads the field from the start of `bytes`.
    fn read(bytes: &[u8]) -> Self;
    /// Writes the field to the start of `bytes`.
    fn write(&self, bytes: &mut [u8]);
}

macro_rules! abi_field_int {
    ($($t:ty),*) => {$(
        impl AbiField for $t {
            fn read(bytes: &[u8]) -> Self {
                let mut raw = [0u8; core::mem::size_of::<$t>()];
                raw.copy_from_slice(&bytes[..core::mem::size_of::<$t>()]);
                <$t>::from_ne_bytes(raw)
            }
            fn write(&self, bytes: &mut [u8]) {
                bytes[..core::mem::size_of::<$t>()].copy_from_slice(&self.to_ne_bytes());
            }
        }
    )*};
}
abi_field_int!(u32, i32, u64);

macro_rules! abi_field_array {
    ($($t:ty),*) => {$(
        impl<const N: usize> AbiField for [$t; N] {
            fn read(bytes: &[u8]) -> Self {
                let mut out = [0; N];
                for (i, v) in out.iter_mut().enumerate() {
                    *v = <$t>::read(&bytes[i * core::mem::size_of::<$t>()..]);
                }
                out
            }
            fn write(&self, bytes: &mut [u8]) {
                for (i, v) in self.iter().enumerate() {
                    v.write(&mut bytes[i * core::mem::size_of::<$t>()..]);
                }
            }
        }
    )*};
}
abi_field_array!(i32, u64);

macro_rules! abi_struct_bytes {
    ($($t:ident { $($f:ident),* $(,)? })*) => {$(
        impl $t {
            /// Size of the structure in bytes (the size encoded in its ioctl number).
            pub const SIZE: usize = core::mem::size_of::<$t>();

            /// Decodes the structure from its native-byte-order representation.
            pub fn from_ne_bytes(bytes: &[u8; Self::SIZE]) -> Self {
                $t {
                    $($f: AbiField::read(&bytes[core::mem::offset_of!($t, $f)..]),)*
                }
            }

            /// Encodes the structure in its native-byte-order representation (padding-free).
            pub fn to_ne_bytes(self) -> [u8; Self::SIZE] {
                let mut bytes = [0u8; Self::SIZE];
                $(self.$f.write(&mut bytes[core::mem::offset_of!($t, $f)..]);)*
                bytes
            }
        }
    )*};
}

abi_struct_bytes! {
    DppInfo { version, page_size, pool_size, pool_used, buffers, fences_pending, reserved }
    DppAlloc { size, flags, fd, reserved }
    DppFenceCreate { dmabuf_fd, usage, flags, fence_fd, context, seqno, deadline_ms, pad, reserved }
    DppFenceSignal { fence_fd, error, reserved }
    DppFenceWait { fence_fd, flags, timeout_ns, status, pad, reserved }
    DppJob {
        op, flags, dst_fd, src_fd, dst_offset, src_offset, size, pattern, in_fence_fds,
        out_fence_fd, engine, context, seqno, reserved,
    }
}
