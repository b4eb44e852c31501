// SPDX-License-Identifier: GPL-2.0

//! dmapingpong: a dma-buf exporter with DMA fences.
//!
//! The driver binds to a device tree node with `compatible = "dmapingpong,exporter"` whose
//! `memory-region` is a reserved-memory pool (a `reusable` `shared-dma-pool`, i.e. a CMA area).
//! It registers `/dev/dmapingpong` (mode 0660), whose ioctls (`rust/uapi/src/abi.rs`) allocate
//! zero-filled buffers from the pool and export them as dma-bufs, and create and signal DMA
//! fences handed out as sync_files and optionally added to a buffer's reservation object.
//!
//! Lifetimes: a buffer lives until its last fd, mapping and attachment are gone; every buffer
//! and every fence holds a reference to this module, so it cannot be unloaded while one exists.
//! Each open file is a fence context; when it is released, the fences it left pending are
//! signalled with `-ECANCELED`, so that nobody waits for a dead producer.

use core::{
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicU64, Ordering},
};
use kernel::{
    c_str,
    device::{self, Core},
    devres::BoundDevice,
    dma::{attrs::DMA_ATTR_NO_WARN, CoherentAllocation, DataDirection, MappedSgTable},
    dma_buf::{self, Attachment, DmaBuf},
    dma_fence::{Fence, Timeline},
    dma_resv::Usage,
    fs::File,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::virt::{flags as vm_flags, VmaNew},
    new_mutex, of,
    page::PAGE_SIZE,
    platform,
    prelude::*,
    str::CString,
    sync::{aref::ARef, Arc, ArcBorrow, Mutex},
    sync_file,
    time::Delta,
    uaccess::{UserPtr, UserSlice},
};

#[path = "../uapi/src/abi.rs"]
pub mod abi;

use abi::{DppAlloc, DppFenceCreate, DppFenceSignal, DppFenceWait, DppInfo};

const DRIVER_NAME: &CStr = c_str!("dmapingpong");

/// Logs why a request was rejected and returns `EINVAL`.
///
/// Rate-limited per device: the first 10 rejections are logged, then every 1000th, so that
/// user space cannot flood the log.
macro_rules! invalid {
    ($pool:expr, $($arg:tt)*) => {{
        let n = $pool.rejected.fetch_add(1, Ordering::Relaxed);
        if n < 10 || n % 1000 == 0 {
            dev_info!($pool.lease.device(), "rejected request ({} so far): {}\n", n + 1,
                      format_args!($($arg)*));
        }
        EINVAL
    }};
}

/// The state of one bound device: its reserved-memory pool and accounting.
///
/// Shared by the driver instance, every open file and every buffer, so that it outlives all of
/// them; the pool is released when the last one is gone.
#[pin_data]
struct Pool {
    lease: Arc<BoundDevice>,
    region: of::ReservedMemory,
    #[pin]
    used: Mutex<u64>,
    buffers: AtomicU64,
    fences_pending: AtomicU64,
    rejected: AtomicU32,
}

impl Pool {
    /// Reserves `size` bytes of the pool, or fails with `ENOMEM`.
    fn reserve(&self, size: u64) -> Result {
        let mut used = self.used.lock();
        if self.region.size() - *used < size {
            return Err(ENOMEM);
        }
        *used += size;
        Ok(())
    }

    fn unreserve(&self, size: u64) {
        *self.used.lock() -= size;
    }
}

/// A buffer: coherent memory from the pool, exported as a dma-buf.
struct Buffer {
    mem: CoherentAllocation<u8>,
    pool: Arc<Pool>,
}

impl Buffer {
    /// Allocates `size` bytes (a multiple of the page size) from the pool.
    fn new(pool: &Arc<Pool>, size: usize) -> Result<Arc<Self>> {
        pool.reserve(size as u64)?;
        let mem = pool.lease.access(|dev| {
            CoherentAllocation::<u8>::alloc_attrs(dev, size, GFP_KERNEL, DMA_ATTR_NO_WARN)
        });
        let mem = match mem {
            Ok(Ok(mem)) => mem,
            Ok(Err(err)) | Err(err) => {
                pool.unreserve(size as u64);
                return Err(err);
            }
        };
        // The device's CMA area is the pool, but the DMA layer falls back to other memory when
        // it is exhausted: such a buffer would not be bounded by the pool.
        let base = pool.region.base();
        let start = mem.dma_handle();
        if start < base || start + size as u64 > base + pool.region.size() {
            drop(mem);
            pool.unreserve(size as u64);
            dev_info!(
                pool.lease.device(),
                "no room for {size} bytes in the pool\n"
            );
            return Err(ENOMEM);
        }
        // Coherent allocations are zeroed: no earlier owner's data leaks.
        pool.buffers.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(
            Self {
                mem,
                pool: pool.clone(),
            },
            GFP_KERNEL,
        )?)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.pool.buffers.fetch_sub(1, Ordering::Relaxed);
        self.pool.unreserve(self.mem.size() as u64);
    }
}

// The memory is a coherent allocation: CPU access needs no cache maintenance, so
// `begin_cpu_access`/`end_cpu_access` are not implemented (DMA_BUF_IOCTL_SYNC succeeds).
#[vtable]
impl dma_buf::Exporter for Buffer {
    fn map_dma_buf(
        this: ArcBorrow<'_, Self>,
        attachment: &Attachment,
        dir: DataDirection,
    ) -> Result<KBox<MappedSgTable>> {
        this.mem.map_sg_table(attachment.device(), dir)
    }

    fn mmap(this: ArcBorrow<'_, Self>, vma: &VmaNew) -> Result {
        // A private mapping would give the process a copy-on-write view of memory that devices
        // write behind its back.
        if vma.flags() & vm_flags::SHARED == 0 {
            return Err(invalid!(this.pool, "mmap: MAP_PRIVATE of a dma-buf"));
        }
        // Buffers hold data, never code: refuse PROT_EXEC now and mprotect() to it later.
        vma.try_clear_mayexec()
            .map_err(|_| invalid!(this.pool, "mmap: PROT_EXEC of a dma-buf"))?;
        this.mem.mmap(vma)
    }

    fn vmap(this: ArcBorrow<'_, Self>) -> Result<NonNull<u8>> {
        NonNull::new(this.mem.start_ptr().cast_mut()).ok_or(ENOMEM)
    }

    fn vunmap(_this: ArcBorrow<'_, Self>, _vaddr: NonNull<u8>) {
        // The kernel mapping of the allocation lives as long as the buffer.
    }
}

/// An open file of `/dev/dmapingpong`: a fence context and its pending fences.
#[pin_data(PinnedDrop)]
struct DmaPingPongFile {
    pool: Arc<Pool>,
    timeline: Arc<Timeline>,
    /// The fences of `timeline` not yet signalled, in seqno order.
    #[pin]
    pending: Mutex<KVec<ARef<Fence>>>,
}

#[pinned_drop]
impl PinnedDrop for DmaPingPongFile {
    fn drop(self: Pin<&mut Self>) {
        // Nobody can signal these fences any more: signal them with an error, so that their
        // waiters (other processes, dma-buf poll()) wake up instead of hanging.
        let pending = core::mem::take(&mut *self.pending.lock());
        for fence in pending.iter() {
            if self.timeline.signal(fence, Err(ECANCELED)).is_ok() {
                self.pool.fences_pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Reads an ioctl argument structure from user space.
macro_rules! read_arg {
    ($ty:ty, $arg:expr) => {{
        let mut raw = [0u8; <$ty>::SIZE];
        UserSlice::new(UserPtr::from_addr($arg), <$ty>::SIZE)
            .reader()
            .read_slice(&mut raw)?;
        <$ty>::from_ne_bytes(&raw)
    }};
}

/// Writes an ioctl argument structure back to user space.
fn write_arg(arg: usize, bytes: &[u8]) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), bytes.len())
        .writer()
        .write_slice(bytes)
}

impl DmaPingPongFile {
    fn get_info(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let info = DppInfo {
            version: abi::DPP_UAPI_VERSION,
            page_size: PAGE_SIZE as u32,
            pool_size: pool.region.size(),
            pool_used: *pool.used.lock(),
            buffers: pool.buffers.load(Ordering::Relaxed),
            fences_pending: pool.fences_pending.load(Ordering::Relaxed),
            reserved: [0; 3],
        };
        write_arg(arg, &info.to_ne_bytes())?;
        Ok(0)
    }

    fn alloc(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let mut req = read_arg!(DppAlloc, arg);
        if req.reserved != [0; 2] {
            return Err(invalid!(pool, "ALLOC: reserved fields must be zero"));
        }
        if req.flags & !abi::DPP_FD_NO_CLOEXEC != 0 {
            return Err(invalid!(pool, "ALLOC: unknown flags {:#x}", req.flags));
        }
        if req.size == 0 || req.size > pool.region.size() {
            return Err(invalid!(
                pool,
                "ALLOC: size {} not in 1..={} (the pool)",
                req.size,
                pool.region.size()
            ));
        }
        // Cannot overflow: the size is bounded by the pool, which is page-aligned.
        let size = req.size.next_multiple_of(PAGE_SIZE as u64);
        let buffer = Buffer::new(pool, size as usize)?;
        let dmabuf = DmaBuf::export(buffer, size as usize, DRIVER_NAME, &crate::THIS_MODULE)?;
        let fd_flags = if req.flags & abi::DPP_FD_NO_CLOEXEC != 0 {
            0
        } else {
            kernel::bindings::O_CLOEXEC
        };
        // The fd owns its own reference to the buffer; ours is dropped on return.
        req.fd = dmabuf.fd(fd_flags)? as i32;
        req.size = size;
        write_arg(arg, &req.to_ne_bytes())?;
        Ok(0)
    }

    fn create_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let mut req = read_arg!(DppFenceCreate, arg);
        if req.reserved != [0; 2] || req.flags != 0 {
            return Err(invalid!(
                pool,
                "CREATE_FENCE: flags and reserved fields must be zero"
            ));
        }
        let target = match (req.dmabuf_fd, req.usage) {
            (-1, abi::DPP_USAGE_NONE) => None,
            (fd, abi::DPP_USAGE_WRITE) if fd >= 0 => Some((DmaBuf::get(fd)?, Usage::Write)),
            (fd, abi::DPP_USAGE_READ) if fd >= 0 => Some((DmaBuf::get(fd)?, Usage::Read)),
            (fd, usage) => {
                return Err(invalid!(
                    pool,
                    "CREATE_FENCE: usage {usage} with dmabuf_fd {fd}"
                ))
            }
        };

        let fence = self.timeline.create_fence()?;
        let mut pending = self.pending.lock();
        pending.push(fence.clone(), GFP_KERNEL)?;
        pool.fences_pending.fetch_add(1, Ordering::Relaxed);
        let published = target
            .map_or(Ok(()), |(dmabuf, usage)| {
                dmabuf.resv().add_fence(&fence, usage)
            })
            .and_then(|()| sync_file::create_fd(&fence));
        match published {
            Ok(fd) => req.fence_fd = fd as i32,
            Err(err) => {
                // Nobody will signal it: cancel it (it may already be in the reservation).
                pending.pop();
                drop(pending);
                pool.fences_pending.fetch_sub(1, Ordering::Relaxed);
                let _ = self.timeline.signal(&fence, Err(ECANCELED));
                return Err(err);
            }
        }
        drop(pending);
        req.context = fence.context();
        req.seqno = fence.seqno();
        write_arg(arg, &req.to_ne_bytes())?;
        Ok(0)
    }

    fn signal_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let req = read_arg!(DppFenceSignal, arg);
        if req.reserved != [0; 2] {
            return Err(invalid!(pool, "SIGNAL_FENCE: reserved fields must be zero"));
        }
        let result = match req.error {
            0 => Ok(()),
            e if (-abi::DPP_MAX_ERRNO..0).contains(&e) => Err(Error::from_errno(e)),
            e => {
                return Err(invalid!(
                    pool,
                    "SIGNAL_FENCE: error {e} is not a negative errno"
                ))
            }
        };
        let fence = sync_file::get_fence(req.fence_fd)
            .map_err(|_| invalid!(pool, "SIGNAL_FENCE: fd {} is not a sync_file", req.fence_fd))?;
        if !self.timeline.owns(&fence) {
            return Err(invalid!(
                pool,
                "SIGNAL_FENCE: the fence belongs to another context"
            ));
        }
        let mut pending = self.pending.lock();
        match pending.first() {
            Some(oldest) if oldest.seqno() == fence.seqno() => (),
            Some(oldest) if oldest.seqno() < fence.seqno() => {
                return Err(invalid!(
                    pool,
                    "SIGNAL_FENCE: seqno {} before the older pending seqno {}",
                    fence.seqno(),
                    oldest.seqno()
                ))
            }
            _ => {
                return Err(invalid!(
                    pool,
                    "SIGNAL_FENCE: seqno {} was already signalled",
                    fence.seqno()
                ))
            }
        }
        self.timeline.signal(&fence, result)?;
        pending.remove(0)?;
        pool.fences_pending.fetch_sub(1, Ordering::Relaxed);
        Ok(0)
    }

    fn wait_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let mut req = read_arg!(DppFenceWait, arg);
        if req.reserved != [0; 2] || req.flags != 0 || req.pad != 0 {
            return Err(invalid!(
                pool,
                "WAIT_FENCE: flags and reserved fields must be zero"
            ));
        }
        let fence = sync_file::get_fence(req.fence_fd)
            .map_err(|_| invalid!(pool, "WAIT_FENCE: fd {} is not a sync_file", req.fence_fd))?;
        // Microseconds, rounded up, so that a short timeout is not a mere sample.
        let micros = i64::try_from(req.timeout_ns.div_ceil(1000)).unwrap_or(i64::MAX);
        fence.wait_timeout(true, Delta::from_micros(micros))?;
        req.status = match fence.status() {
            Some(Ok(())) => 0,
            Some(Err(err)) => err.to_errno(),
            None => return Err(ETIME),
        };
        write_arg(arg, &req.to_ne_bytes())?;
        Ok(0)
    }
}

#[vtable]
impl MiscDevice for DmaPingPongFile {
    type Ptr = Pin<KBox<Self>>;
    type RegistrationData = Arc<Pool>;
    const OWNER: Option<&'static ThisModule> = Some(&crate::THIS_MODULE);

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let pid = kernel::current!().pid();
        let name = CString::try_from_fmt(fmt!("dmapingpong-{pid}"))?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                pool: misc.data().clone(),
                timeline: Timeline::new(DRIVER_NAME, name, &crate::THIS_MODULE)?,
                pending <- new_mutex!(KVec::new()),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&Self>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            abi::DPP_IOCTL_GET_INFO => me.get_info(arg),
            abi::DPP_IOCTL_ALLOC => me.alloc(arg),
            abi::DPP_IOCTL_CREATE_FENCE => me.create_fence(arg),
            abi::DPP_IOCTL_SIGNAL_FENCE => me.signal_fence(arg),
            abi::DPP_IOCTL_WAIT_FENCE => me.wait_fence(arg),
            _ => Err(ENOTTY),
        }
    }
}

/// A bound exporter device.
#[pin_data]
struct DmaPingPongDriver {
    #[pin]
    misc: MiscDeviceRegistration<DmaPingPongFile>,
}

kernel::of_device_table!(
    OF_TABLE,
    MODULE_OF_TABLE,
    <DmaPingPongDriver as platform::Driver>::IdInfo,
    [(of::DeviceId::new(c_str!("dmapingpong,exporter")), ())]
);

impl platform::Driver for DmaPingPongDriver {
    type IdInfo = ();
    const OF_ID_TABLE: Option<of::IdTable<Self::IdInfo>> = Some(&OF_TABLE);

    fn probe(pdev: &platform::Device<Core>, _info: Option<&()>) -> Result<Pin<KBox<Self>>> {
        let dev: &device::Device<Core> = pdev.as_ref();
        let region = of::ReservedMemory::assign(dev).inspect_err(|err| {
            dev_err!(
                dev,
                "no usable memory-region (reserved-memory pool): {err:?}\n"
            )
        })?;
        let size = region.size();
        let pool = Arc::pin_init(
            try_pin_init!(Pool {
                lease: BoundDevice::new(dev)?,
                region,
                used <- new_mutex!(0),
                buffers: AtomicU64::new(0),
                fences_pending: AtomicU64::new(0),
                rejected: AtomicU32::new(0),
            }),
            GFP_KERNEL,
        )?;
        let this = KBox::try_pin_init(
            try_pin_init!(Self {
                misc <- MiscDeviceRegistration::register(
                    MiscDeviceOptions {
                        name: DRIVER_NAME,
                        mode: 0o660,
                    },
                    pool,
                ),
            }),
            GFP_KERNEL,
        )?;
        dev_info!(
            dev,
            "exporter ready: /dev/{DRIVER_NAME}, pool of {} KiB\n",
            size / 1024
        );
        Ok(this)
    }
}

kernel::module_platform_driver! {
    type: DmaPingPongDriver,
    name: "dmapingpong",
    authors: ["dmapingpong developers"],
    description: "dma-buf exporter with DMA fences over a reserved-memory pool",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}
