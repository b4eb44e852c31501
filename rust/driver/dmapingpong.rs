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
//! signalled with `-ECANCELED`, so that nobody waits for a dead producer. Unbinding removes the
//! device node and releases the DMA channel; the files, buffers and jobs still open keep the pool,
//! and until they are gone the device cannot be bound again (`-EBUSY`).
//!
//! Device jobs (`DPP_IOCTL_SUBMIT_JOB`): fills and copies on buffers, run by a channel of the
//! SoC's DMA controller when the node names one in `dmas`/`dma-names = "memcpy"` (or any
//! memcpy-capable channel exists), else by a CPU worker with the same semantics. A job waits for
//! its in-fences and the buffers' reservation fences through fence callbacks (the caller never
//! blocks), runs from a workqueue, and signals its out-fence from the DMA completion. The DMA
//! controller reaches the buffers through dma-buf attachments of its device, mapped like any
//! importer's at submission (one mapping per buffer, shared by the jobs that use it), so that
//! nothing from a job's run to its fence's signal allocates, maps or takes a reservation lock
//! (Documentation/driver-api/dma-buf.rst, "DMA Fence Signalling Annotations"). What each engine
//! did is in `/sys/kernel/debug/dmapingpong/stats`.

use core::{
    fmt,
    ptr::NonNull,
    sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};
use kernel::{
    c_str, debugfs,
    device::{self, Core},
    devres::BoundDevice,
    dma::{attrs::DMA_ATTR_NO_WARN, CoherentAllocation, DataDirection, SharedCoherentAllocation},
    dma_buf::{self, Attachment, DmaBuf, MappedAttachment},
    dma_fence::{CallbackRegistration, Fence, PreparedCallback, SignallingSection, Timeline},
    dma_resv::{ResvGuard, Usage},
    dmaengine::{Capability, Channel, ChannelMapping, Completion, Held},
    fs::{file::FileDescriptorReservation, File},
    impl_has_delayed_work,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    mm::virt::{flags as vm_flags, VmaNew},
    new_delayed_work, new_mutex, new_spinlock, new_work, of,
    page::PAGE_SIZE,
    platform,
    prelude::*,
    str::CString,
    sync::{aref::ARef, Arc, ArcBorrow, Mutex, SpinLock},
    sync_file,
    time::{msecs_to_jiffies, Delta, Instant, Jiffies, Monotonic},
    uaccess::{UserPtr, UserSlice, UserSliceReader},
    workqueue::{self, impl_has_work, DelayedWork, Work, WorkItem},
};

#[path = "../uapi/src/abi.rs"]
pub mod abi;

use abi::{DppAlloc, DppFenceCreate, DppFenceSignal, DppFenceWait, DppInfo, DppJob};

/// The ioctl numbers, encoded with the kernel's `_IO*()` helpers (`include/uapi/asm-generic/
/// ioctl.h`); checked at build time against those of the uapi crate, which user space uses.
mod ioctl {
    use super::abi::{
        self, DppAlloc, DppFenceCreate, DppFenceSignal, DppFenceWait, DppInfo, DppJob,
    };
    use kernel::ioctl::{_IOR, _IOW, _IOWR};

    const MAGIC: u32 = abi::DPP_IOC_MAGIC as u32;
    pub(crate) const GET_INFO: u32 = _IOR::<DppInfo>(MAGIC, 0x00);
    pub(crate) const ALLOC: u32 = _IOWR::<DppAlloc>(MAGIC, 0x01);
    pub(crate) const CREATE_FENCE: u32 = _IOWR::<DppFenceCreate>(MAGIC, 0x02);
    pub(crate) const SIGNAL_FENCE: u32 = _IOW::<DppFenceSignal>(MAGIC, 0x03);
    pub(crate) const WAIT_FENCE: u32 = _IOWR::<DppFenceWait>(MAGIC, 0x04);
    pub(crate) const SUBMIT_JOB: u32 = _IOWR::<DppJob>(MAGIC, 0x05);

    kernel::static_assert!(GET_INFO == abi::DPP_IOCTL_GET_INFO);
    kernel::static_assert!(ALLOC == abi::DPP_IOCTL_ALLOC);
    kernel::static_assert!(CREATE_FENCE == abi::DPP_IOCTL_CREATE_FENCE);
    kernel::static_assert!(SIGNAL_FENCE == abi::DPP_IOCTL_SIGNAL_FENCE);
    kernel::static_assert!(WAIT_FENCE == abi::DPP_IOCTL_WAIT_FENCE);
    kernel::static_assert!(SUBMIT_JOB == abi::DPP_IOCTL_SUBMIT_JOB);
}

const DRIVER_NAME: &CStr = c_str!("dmapingpong");

/// Size of the buffer that DMA fills copy their pattern from (the controllers we drive cannot
/// fill a 64-bit pattern themselves). Reserved from the pool when a DMA channel is used.
const PATTERN_SIZE: usize = 64 * 1024;

/// How long a job's transfer may take before it is aborted with `-ETIMEDOUT`: a base, plus a
/// time per MiB.
const JOB_TIMEOUT_BASE_MS: i64 = 5000;
const JOB_TIMEOUT_PER_MIB_MS: i64 = 200;

/// CPU jobs fill and copy in pieces of this many bytes (a multiple of 8), with a scheduling point
/// between them.
const CPU_CHUNK: usize = 1 << 20;

/// The longest deadline user space may give a user fence (`dpp_fence_create.deadline_ms`), in
/// milliseconds. (A module parameter once the Rust module-parameter support is in the kernel
/// this driver builds against.)
const USER_FENCE_MAX_DEADLINE_MS: u32 = 60_000;

/// The most user fences a file may have pending (`CREATE_FENCE` fails with `EBUSY` beyond): the
/// signalling paths walk the pending list, and a file must not make the kernel hold memory
/// without bound.
const USER_FENCES_MAX_PENDING: usize = abi::DPP_FENCE_MAX_PENDING as usize;

/// Counts one more event that user space causes on `counter` and returns its number (from 1)
/// if it is to be logged: the first 10, then every 1000th, so that user space cannot flood the
/// log.
fn log_ratelimited(counter: &AtomicU32) -> Option<u32> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (n < 10 || n % 1000 == 0).then_some(n + 1)
}

/// Logs why a request was rejected (rate-limited per device, see [`log_ratelimited`]) and
/// returns `EINVAL`.
macro_rules! invalid {
    ($pool:expr, $($arg:tt)*) => {{
        if let Some(n) = log_ratelimited(&$pool.rejected) {
            dev_info!($pool.lease.device(), "rejected request ({} so far): {}\n", n,
                      format_args!($($arg)*));
        }
        EINVAL
    }};
}

/// Whether a [`Pool`] exists. A pool lives until its last buffer, file and job are gone, which
/// may be long after its device was unbound; the reserved-memory region stays assigned to the
/// device until then. Binding the device again meanwhile would assign the region a second time,
/// and releasing the old pool's assignment (`of_reserved_mem_device_release()` releases every
/// assignment of the device) would take the CMA area away from the new binding. So probe refuses
/// with `EBUSY` while the old pool exists. One flag suffices: there is one exporter per system
/// (the misc device and the debugfs directory have fixed names).
static POOL_EXISTS: AtomicBool = AtomicBool::new(false);

/// The claim on [`POOL_EXISTS`] of one pool, or of a probe that has not made its pool yet.
struct PoolClaim;

impl PoolClaim {
    fn new() -> Option<Self> {
        (!POOL_EXISTS.swap(true, Ordering::AcqRel)).then_some(PoolClaim)
    }
}

impl Drop for PoolClaim {
    fn drop(&mut self) {
        POOL_EXISTS.store(false, Ordering::Release);
    }
}

/// The state of one bound device: its reserved-memory pool and accounting.
///
/// Shared by the driver instance, every open file, every buffer and every job that has not run,
/// so that it outlives all of them; the pool is released when the last one is gone.
#[pin_data]
struct Pool {
    lease: Arc<BoundDevice>,
    /// The DMA engine, until the device is unbound or shut down; `None` for the CPU worker.
    /// Taken by a DMA job to start its transfer, and by its timeout. Before `region`: a probe
    /// that fails after taking the channel frees the pattern buffer while the region (the
    /// device's CMA area) is still assigned.
    #[pin]
    engine: Mutex<Option<DmaEngine>>,
    /// What submissions need of the DMA engine, behind a lock of its own that is never held
    /// long, so that submitting does not wait for the job that runs. Cleared before `engine`.
    #[pin]
    dma_target: Mutex<Option<Arc<DmaTarget>>>,
    /// The out-fence of the last DMA job submitted, until it signals: the next one runs after
    /// it.
    #[pin]
    last_dma: Mutex<Option<ARef<Fence>>>,
    region: of::ReservedMemory,
    /// Bytes of the region that buffers may use (the region less the DMA pattern buffer).
    capacity: u64,
    #[pin]
    used: Mutex<u64>,
    buffers: AtomicU64,
    fences_pending: AtomicU64,
    rejected: AtomicU32,
    /// User fences signalled at their deadline, for the rate limit of their log lines.
    deadline_logs: AtomicU32,
    stats: Arc<Stats>,
    /// Last: released after the region and the engine.
    _claim: PoolClaim,
}

impl Pool {
    /// Reserves `size` bytes of the pool, or fails with `ENOMEM`.
    fn reserve(&self, size: u64) -> Result {
        let mut used = self.used.lock();
        if self.capacity - *used < size {
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
#[pin_data(PinnedDrop)]
struct Buffer {
    /// Shared with the tables mapped for importers and the user-space mappings, which the
    /// dma-buf core removes before the buffer's release: none outlives the buffer.
    mem: Arc<SharedCoherentAllocation>,
    pool: Arc<Pool>,
    /// The buffer mapped for the DMA controller while DMA jobs use it: mapped once, however
    /// many jobs wait for it (the DMA API allows few overlapping mappings of the same memory).
    #[pin]
    engine_map: Mutex<EngineMap>,
}

/// The mapping of a buffer for the DMA controller, and how many jobs use it.
struct EngineMap {
    users: usize,
    map: Option<Arc<SharedMap>>,
}

/// A buffer attached to the DMA controller's device and mapped for it, as any importer does
/// (the attachment holds the engine's channel).
struct SharedMap {
    map: Arc<MappedAttachment>,
    generation: u64,
}

impl Buffer {
    /// Allocates `size` bytes (a multiple of the page size) from the pool.
    fn new(pool: &Arc<Pool>, size: usize) -> Result<Arc<Self>> {
        pool.reserve(size as u64)?;
        // Allocated, checked and, if refused, freed while the device is bound: the DMA API uses
        // the device's address translation for all three, and unbinding frees it.
        let mem = pool
            .lease
            .access(|dev| Self::alloc_in_pool(pool, dev, size))
            .and_then(|mem| mem);
        let mem = match mem {
            Ok(mem) => mem,
            Err(err) => {
                pool.unreserve(size as u64);
                return Err(err);
            }
        };
        // Coherent allocations are zeroed: no earlier owner's data leaks.
        let buffer = Arc::pin_init(
            try_pin_init!(Self {
                mem,
                pool: pool.clone(),
                engine_map <- new_mutex!(EngineMap {
                    users: 0,
                    map: None,
                }),
            }),
            GFP_KERNEL,
        );
        match buffer {
            Ok(buffer) => {
                // Counted once the buffer exists: its drop uncounts it.
                pool.buffers.fetch_add(1, Ordering::Relaxed);
                Ok(buffer)
            }
            Err(err) => {
                // No buffer was made (the allocation was dropped with the initializer).
                pool.unreserve(size as u64);
                Err(err)
            }
        }
    }

    /// Allocates `size` bytes from the pool's region for the bound device `dev`.
    fn alloc_in_pool(
        pool: &Pool,
        dev: &device::Device<device::Bound>,
        size: usize,
    ) -> Result<Arc<SharedCoherentAllocation>> {
        let mem = CoherentAllocation::<u8>::alloc_attrs(dev, size, GFP_KERNEL, DMA_ATTR_NO_WARN)?;
        let mem = Arc::new(SharedCoherentAllocation::new(mem), GFP_KERNEL)?;
        let Some(start) = mem.phys_addr()? else {
            return Err(ENOMEM);
        };
        // Buffers outlive the binding (see "Unbind" in the README), and the driver core drops
        // the device's DMA address translation when it is unbound (`device_unbind_cleanup()`
        // frees `dma_range_map`): freeing or mapping a buffer after that is only right where DMA
        // addresses are physical addresses. Refused elsewhere rather than wrong.
        if start != mem.dma_handle() {
            dev_err!(
                dev,
                "DMA addresses of the pool are translated (dma-ranges or an IOMMU): not supported\n"
            );
            return Err(EOPNOTSUPP);
        }
        // The device's CMA area is the pool, but the DMA layer falls back to other memory when
        // it is exhausted: such a buffer would not be bounded by the pool. The region is a
        // physical range.
        let base = pool.region.base();
        if start < base || start + size as u64 > base + pool.region.size() {
            dev_info!(dev, "no room for {size} bytes in the pool\n");
            return Err(ENOMEM);
        }
        Ok(mem)
    }

    /// Returns the buffer's mapping for the DMA controller of `target`, mapping it if no job
    /// uses one; the job releases it with [`MapUse`]'s drop.
    fn use_engine_map(self: &Arc<Self>, dmabuf: &DmaBuf, target: &DmaTarget) -> Result<MapUse> {
        let mut engine_map = self.engine_map.lock();
        let map = match &engine_map.map {
            Some(map) if map.generation == target.generation => map.clone(),
            _ => {
                let map = target
                    .chan
                    .attach(dmabuf)?
                    .map(DataDirection::Bidirectional)?;
                let map = Arc::new(
                    SharedMap {
                        map: Arc::new(map, GFP_KERNEL)?,
                        generation: target.generation,
                    },
                    GFP_KERNEL,
                )?;
                // A mapping of an older engine goes when its last job does.
                let old = engine_map.map.replace(map.clone());
                drop(old);
                map
            }
        };
        engine_map.users += 1;
        Ok(MapUse {
            buffer: self.clone(),
            map,
        })
    }
}

/// A job's use of a buffer's mapping for the DMA controller; the last use unmaps it. Dropped in
/// process context (unmapping takes the reservation lock), never in a signalling section.
struct MapUse {
    buffer: Arc<Buffer>,
    map: Arc<SharedMap>,
}

impl MapUse {
    fn mapping(&self) -> &Arc<MappedAttachment> {
        &self.map.map
    }
}

impl Drop for MapUse {
    fn drop(&mut self) {
        let unused = {
            let mut engine_map = self.buffer.engine_map.lock();
            engine_map.users -= 1;
            if engine_map.users == 0 {
                engine_map.map.take()
            } else {
                None
            }
        };
        // Unmapped outside the lock.
        drop(unused);
    }
}

#[pinned_drop]
impl PinnedDrop for Buffer {
    fn drop(self: Pin<&mut Self>) {
        self.pool.buffers.fetch_sub(1, Ordering::Relaxed);
        self.pool.unreserve(self.mem.size() as u64);
    }
}

// The memory is a coherent allocation, so the exporter's own CPU accesses (kernel and user
// mappings) need no cache maintenance. An importer's device may not be DMA-coherent when the
// exporter's is (the CPU mappings are then cacheable): as the CMA heap does, the tables mapped
// for importers are synced for the CPU at the start of CPU access and for the devices at its end
// (by the dma-buf abstraction; the DMA API does nothing for coherent devices).
#[vtable]
impl dma_buf::Exporter for Buffer {
    fn map_dma_buf(
        this: ArcBorrow<'_, Self>,
        _attachment: &Attachment,
        _dir: DataDirection,
    ) -> Result<Arc<SharedCoherentAllocation>> {
        Ok(this.mem.clone())
    }

    fn begin_cpu_access(_this: ArcBorrow<'_, Self>, dmabuf: &DmaBuf, dir: DataDirection) -> Result {
        // The devices' writes are complete when the fences signal: wait for them before the
        // caches are invalidated (the dma-buf core waits only after this callback), with the
        // usage the core waits for: a CPU write waits for readers and writers.
        let usage = match dir {
            DataDirection::FromDevice => Usage::Write,
            _ => Usage::Read,
        };
        dmabuf
            .resv()
            .wait_timeout(usage, true, Delta::from_secs(i64::MAX))?;
        Ok(())
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

/// What the engines of a device did, shown in debugfs (`/sys/kernel/debug/dmapingpong/stats`).
struct Stats {
    /// `dma <channel>` or `cpu`.
    engine: CString,
    dma_jobs: AtomicU64,
    dma_bytes: AtomicU64,
    cpu_jobs: AtomicU64,
    cpu_bytes: AtomicU64,
    jobs_failed: AtomicU64,
    jobs_pending: AtomicU64,
    /// Fault injection (debugfs `fail_transfers`): so many next transfers fail with `-EIO`
    /// without touching memory, whichever engine runs them.
    fail_transfers: AtomicU32,
}

impl Stats {
    fn show(this: &Arc<Stats>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        writeln!(f, "engine: {}", &*this.engine)?;
        writeln!(f, "dma_jobs: {}", load(&this.dma_jobs))?;
        writeln!(f, "dma_bytes: {}", load(&this.dma_bytes))?;
        writeln!(f, "cpu_jobs: {}", load(&this.cpu_jobs))?;
        writeln!(f, "cpu_bytes: {}", load(&this.cpu_bytes))?;
        writeln!(f, "jobs_failed: {}", load(&this.jobs_failed))?;
        writeln!(f, "jobs_pending: {}", load(&this.jobs_pending))
    }

    fn show_fail_transfers(this: &Arc<Stats>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", this.fail_transfers.load(Ordering::Relaxed))
    }

    fn store_fail_transfers(this: &Arc<Stats>, reader: &mut UserSliceReader) -> Result {
        let mut buf = [0u8; 16];
        let len = reader.len();
        if len == 0 || len > buf.len() {
            return Err(EINVAL);
        }
        reader.read_slice(&mut buf[..len])?;
        let count = core::str::from_utf8(&buf[..len])
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
            .ok_or(EINVAL)?;
        this.fail_transfers.store(count, Ordering::Relaxed);
        Ok(())
    }

    /// Consumes one injected failure, if any.
    fn take_injected_failure(&self) -> bool {
        self.fail_transfers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Numbers the DMA engines of the driver, so that a job prepared for one engine never runs on
/// another (its buffers are mapped for the first one's controller).
static ENGINE_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The DMA engine of a device: a channel of the SoC's DMA controller and the buffer that fills
/// copy their pattern from, mapped for the controller. Fields drop in order: the pattern is
/// unmapped before the channel is released.
struct DmaEngine {
    pattern_map: Arc<ChannelMapping>,
    pattern: Arc<SharedCoherentAllocation>,
    /// Shared with the mappings made for its DMA device (`SharedMap`), which may outlive the
    /// engine by the cleanup of its last jobs: released with the last of them.
    chan: Arc<Channel>,
    generation: u64,
}

impl Drop for DmaEngine {
    fn drop(&mut self) {
        // Aborts the transfers in flight (their jobs' fences signal -ECANCELED) before the pattern
        // buffer they may read is unmapped and freed (the fields drop after this).
        let _section = SignallingSection::begin();
        self.chan.terminate();
        if self.chan.is_broken() {
            // Transfers may still read the pattern buffer: keep it mapped and allocated.
            core::mem::forget(self.pattern_map.clone());
            core::mem::forget(self.pattern.clone());
        }
    }
}

impl DmaEngine {
    /// Requests the channel named `memcpy` in the node's `dma-names`, else any memcpy channel.
    ///
    /// Returns `None` when there is none (the CPU worker runs the jobs); `EPROBE_DEFER` if the
    /// node names a channel whose controller is not probed yet.
    fn request(dev: &device::Device<Core>) -> Result<Option<Self>> {
        let chan = match Channel::request(dev, c_str!("memcpy")) {
            Ok(chan) => chan,
            Err(err) if err == EPROBE_DEFER => return Err(err),
            Err(named) => match Channel::request_by_capability(Capability::Memcpy) {
                Ok(chan) => {
                    dev_info!(
                        dev,
                        "no 'memcpy' in dma-names ({named:?}): using any memcpy channel\n"
                    );
                    chan
                }
                Err(err) => {
                    dev_info!(
                        dev,
                        "no DMA channel ({named:?}, by capability {err:?}): jobs run on the CPU\n"
                    );
                    return Ok(None);
                }
            },
        };
        // Shared from the start: the mappings for its DMA device, the pattern's first, must go
        // before it is released (field order, then `SharedMap`).
        let chan = Arc::new(chan, GFP_KERNEL)?;
        let pattern = Arc::new(
            SharedCoherentAllocation::new(CoherentAllocation::<u8>::alloc_attrs(
                dev,
                PATTERN_SIZE,
                GFP_KERNEL,
                DMA_ATTR_NO_WARN,
            )?),
            GFP_KERNEL,
        )?;
        let pattern_map = Arc::new(
            chan.map_coherent(&pattern, DataDirection::ToDevice)?,
            GFP_KERNEL,
        )?;
        dev_info!(
            chan.device(),
            "dmapingpong jobs run on {} (copy alignment {} bytes, segments up to {} bytes, {})\n",
            chan.name(),
            chan.copy_align(),
            chan.max_segment_size(),
            if chan.has_capability(Capability::Memset) {
                "fills of one byte value by memset"
            } else {
                "fills copied from a pattern"
            }
        );
        Ok(Some(Self {
            pattern_map,
            pattern,
            chan,
            generation: ENGINE_GENERATION.fetch_add(1, Ordering::Relaxed),
        }))
    }
}

/// What submissions need of the DMA engine: the channel, to whose DMA device jobs attach their
/// buffers, the alignment in bytes of their sizes and offsets (that of the controller's
/// copies, and of its fills if it can fill), and the engine's generation.
struct DmaTarget {
    /// The engine's channel, whose DMA device (`Channel::device`) jobs attach their buffers to.
    chan: Arc<Channel>,
    align: usize,
    memset: bool,
    generation: u64,
}

impl DmaTarget {
    fn new(engine: &DmaEngine) -> Result<Arc<Self>> {
        let chan = &engine.chan;
        let memset = chan.has_capability(Capability::Memset);
        let fill_align = if memset { chan.fill_align() } else { 1 };
        Ok(Arc::new(
            Self {
                chan: chan.clone(),
                align: chan.copy_align().max(fill_align),
                memset,
                generation: engine.generation,
            },
            GFP_KERNEL,
        )?)
    }
}

/// A job's operation.
#[derive(Clone, Copy)]
enum Op {
    Fill(u64),
    Copy,
}

/// The buffers of a job mapped for the DMA controller, as an importer maps them.
struct DmaMaps {
    dst: MapUse,
    src: Option<MapUse>,
}

/// Everything a DMA job needs to run, prepared at submission, before its out-fence is
/// published: running it then neither allocates, maps nor takes a reservation lock (the rules
/// of a DMA fence signalling path).
struct DmaJob {
    /// Unmapped by the job's cleanup work, after the transfer.
    maps: DmaMaps,
    /// The byte a fill sets with the controller's memset, if it can fill and the pattern is one
    /// byte repeated; other fills copy from the pattern buffer.
    memset: Option<u8>,
    generation: u64,
    completion: Option<Completion>,
}

impl DmaJob {
    /// Maps the job's buffers for the DMA controller of `target` (the destination for writes,
    /// the source for reads) and chooses how a fill runs.
    fn prepare(
        target: &DmaTarget,
        spec: &JobSpec,
        dst: (&DmaBuf, &Arc<Buffer>),
        src: Option<(&DmaBuf, &Arc<Buffer>)>,
    ) -> Result<Self> {
        let dst = dst.1.use_engine_map(dst.0, target)?;
        let src = match src {
            Some((dmabuf, buffer)) => Some(buffer.use_engine_map(dmabuf, target)?),
            None => None,
        };
        let memset = match spec.op {
            Op::Fill(pattern) => {
                let value = pattern.to_ne_bytes()[0];
                (target.memset && pattern == u64::from_ne_bytes([value; 8])).then_some(value)
            }
            Op::Copy => None,
        };
        Ok(Self {
            maps: DmaMaps { dst, src },
            memset,
            generation: target.generation,
            completion: None,
        })
    }
}

/// What a job holds until it has run; dropped by the job's cleanup work, in process context
/// (unmapping takes the reservation lock), after its out-fence has signalled.
struct JobData {
    dst: Arc<Buffer>,
    src: Option<Arc<Buffer>>,
    dma: Option<DmaJob>,
    /// The callbacks on the job's dependencies (capacity reserved at submission).
    deps: KVec<CallbackRegistration>,
}

/// The next job of the same file, released when this one has signalled.
struct Link {
    done: bool,
    next: Option<Arc<Job>>,
}

/// What a job does (offsets and size in bytes), and on which engine.
#[derive(Clone, Copy)]
struct JobSpec {
    op: Op,
    dst_offset: usize,
    src_offset: usize,
    size: usize,
    /// `DPP_ENGINE_DMA` or `DPP_ENGINE_CPU`.
    engine: u32,
}

/// A device job: an operation on buffers that runs when its dependencies have signalled.
///
/// Every job runs its work function exactly once (when `deps` drops to zero) and signals its
/// out-fence exactly once (`completed`); the jobs of a file run in order (`next`), so their
/// fences signal in seqno order. Everything from the run to the signal (the work function, the
/// DMA completion, the timeout) is a DMA fence signalling path: it runs in a
/// [`SignallingSection`] and neither allocates, maps, nor takes a reservation lock.
#[pin_data]
struct Job {
    spec: JobSpec,
    pool: Arc<Pool>,
    timeline: Arc<Timeline>,
    #[pin]
    data: Mutex<Option<JobData>>,
    /// The mappings a DMA transfer held, given back by its completion (which cannot sleep) for
    /// the cleanup work to drop.
    #[pin]
    held: SpinLock<Option<Held>>,
    /// Unsignalled dependencies, plus one while the job is being submitted.
    deps: AtomicUsize,
    /// The first error of a dependency or of the submission (a negative errno), or 0.
    dep_error: AtomicI32,
    timed_out: AtomicBool,
    completed: AtomicBool,
    #[pin]
    next: Mutex<Link>,
    /// Runs the job.
    #[pin]
    work: Work<Job, 0>,
    /// Drops the job's data once it has signalled.
    #[pin]
    cleanup: Work<Job, 1>,
    /// Aborts a DMA transfer that takes too long.
    #[pin]
    timeout: DelayedWork<Job, 2>,
    /// Last (fields drop in order): the fence holds a reference to this module (the owner of
    /// its timeline), whose code the other fields' drops run. (The work function that drops the
    /// last reference to a job still returns through this module's code afterwards.)
    out: ARef<Fence>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Job { self.work }
    impl HasWork<Self, 1> for Job { self.cleanup }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Job { self.timeout }
}

impl Job {
    fn record_error(&self, err: Error) {
        let _ =
            self.dep_error
                .compare_exchange(0, err.to_errno(), Ordering::AcqRel, Ordering::Acquire);
    }

    /// A dependency has signalled: queues the job after the last one.
    ///
    /// May run in any context (fence callbacks run with interrupts disabled). The `Arc` dropped
    /// here is never the last reference while the job has not run (the work queue holds one).
    fn dep_done(self: Arc<Self>, result: Result) {
        if let Err(err) = result {
            self.record_error(err);
        }
        if self.deps.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = workqueue::system_unbound().enqueue::<Arc<Job>, 0>(self);
        }
    }

    /// The callback of a dependency of the job (passing its error on unless `ordering_only`),
    /// allocated before the job is published so that adding it cannot fail.
    fn dep_callback(self: &Arc<Self>, ordering_only: bool) -> Result<PreparedCallback> {
        let job = self.clone();
        PreparedCallback::new(&crate::THIS_MODULE, move |result| {
            job.dep_done(if ordering_only { Ok(()) } else { result })
        })
    }

    /// Makes the job wait for `fence` with the callback `cb` of [`Job::dep_callback`]. The
    /// registration goes into `regs`, whose capacity was reserved.
    fn add_dep(
        self: &Arc<Self>,
        fence: &Fence,
        cb: PreparedCallback,
        regs: &mut KVec<CallbackRegistration>,
    ) {
        self.deps.fetch_add(1, Ordering::AcqRel);
        let reg = fence.add_prepared(cb);
        if let Err(reg) = regs.push_within_capacity(reg) {
            // Cannot happen (the capacity was reserved). Leaking the registration keeps the
            // callback (and pins the module) rather than losing the dependency.
            core::mem::forget(reg);
        }
    }

    /// Signals the out-fence with `result`, once, counts the job and queues the cleanup (which
    /// lets the next job of the file run). May run in any context, so takes no lock.
    fn complete(self: &Arc<Self>, result: Result) {
        if self.completed.swap(true, Ordering::AcqRel) {
            return;
        }
        let stats = &self.pool.stats;
        match result {
            Ok(()) if self.spec.engine == abi::DPP_ENGINE_DMA => {
                stats.dma_jobs.fetch_add(1, Ordering::Relaxed);
                stats
                    .dma_bytes
                    .fetch_add(self.spec.size as u64, Ordering::Relaxed);
            }
            Ok(()) => {
                stats.cpu_jobs.fetch_add(1, Ordering::Relaxed);
                stats
                    .cpu_bytes
                    .fetch_add(self.spec.size as u64, Ordering::Relaxed);
            }
            Err(_) => {
                stats.jobs_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.jobs_pending.fetch_sub(1, Ordering::Relaxed);
        workqueue::cancel_delayed::<Job, 2>(self);
        let _ = self.timeline.signal(&self.out, result);
        let _ = workqueue::system_unbound().enqueue::<Arc<Job>, 1>(self.clone());
    }

    fn run_cpu(&self) -> Result {
        let data = self.data.lock();
        let data = data.as_ref().ok_or(EINVAL)?;
        let dst = &data.dst.mem;
        let spec = &self.spec;
        // In pieces, with a scheduling point between them: a job may cover the whole pool. (The
        // ranges of a copy do not overlap, so the order of the pieces does not matter.)
        let mut done = 0;
        while done < spec.size {
            let len = (spec.size - done).min(CPU_CHUNK);
            match (spec.op, &data.src) {
                (Op::Fill(pattern), _) => dst.fill_u64(spec.dst_offset + done, len, pattern),
                (Op::Copy, Some(src)) => dst.copy_from(
                    spec.dst_offset + done,
                    &src.mem,
                    spec.src_offset + done,
                    len,
                ),
                (Op::Copy, None) => Err(EINVAL),
            }?;
            done += len;
            kernel::task::cond_resched();
        }
        Ok(())
    }

    /// Starts the job's transfer on the DMA channel; its completion signals the out-fence.
    /// Returns an error if it could not start (the job is then completed with it).
    fn run_dma(self: &Arc<Self>) -> Result {
        let mut data = self.data.lock();
        let dma = data
            .as_mut()
            .and_then(|data| data.dma.as_mut())
            .ok_or(EINVAL)?;
        let engine = self.pool.engine.lock();
        // The engine the job was prepared for, not one bound since.
        let engine = engine
            .as_ref()
            .filter(|engine| engine.generation == dma.generation)
            .ok_or(ECANCELED)?;
        let spec = &self.spec;
        if let (Op::Fill(pattern), None) = (spec.op, dma.memset) {
            // DMA jobs of a device run one at a time (each depends on the previous one's fence),
            // so the pattern buffer is free.
            let len = spec.size.min(PATTERN_SIZE);
            engine.pattern.fill_u64(0, len, pattern)?;
            engine.pattern_map.sync_for_device();
        }
        let completion = dma.completion.take().ok_or(EINVAL)?;
        let mut transfer = engine.chan.transfer(completion)?;
        let mib = (self.spec.size >> 20) as i64;
        let timeout = JOB_TIMEOUT_BASE_MS + mib * JOB_TIMEOUT_PER_MIB_MS;
        let _ = workqueue::system_unbound()
            .enqueue_delayed::<Arc<Job>, 2>(self.clone(), msecs_to_jiffies(timeout as u32));
        // The buffers' reservations keep other jobs and implicitly synced CPU access off the
        // ranges. A failure is the transfer's result; the operations added before it still run.
        let dst = dma.maps.dst.mapping();
        let _ = match (spec.op, dma.memset, &dma.maps.src) {
            (Op::Fill(_), Some(value), _) => transfer.fill(dst, spec.dst_offset, value, spec.size),
            (Op::Fill(_), None, _) => {
                // The pattern buffer, as many times as the fill needs.
                let mut done = 0;
                let mut added = Ok(());
                while done < spec.size && added.is_ok() {
                    let len = (spec.size - done).min(PATTERN_SIZE);
                    added = transfer.copy(dst, spec.dst_offset + done, &engine.pattern_map, 0, len);
                    done += len;
                }
                added
            }
            (Op::Copy, _, Some(src)) => transfer.copy(
                dst,
                spec.dst_offset,
                src.mapping(),
                spec.src_offset,
                spec.size,
            ),
            (Op::Copy, _, None) => Err(EINVAL),
        };
        transfer.submit();
        Ok(())
    }
}

impl WorkItem<0> for Job {
    type Pointer = Arc<Job>;

    fn run(job: Arc<Job>) {
        let _section = SignallingSection::begin();
        match job.dep_error.load(Ordering::Acquire) {
            0 if job.pool.stats.take_injected_failure() => job.complete(Err(EIO)),
            0 if job.spec.engine == abi::DPP_ENGINE_DMA => {
                if let Err(err) = job.run_dma() {
                    job.complete(Err(err));
                }
            }
            0 => {
                let result = job.run_cpu();
                job.complete(result);
            }
            err => job.complete(Err(Error::from_errno(err))),
        }
    }
}

impl WorkItem<1> for Job {
    type Pointer = Arc<Job>;

    fn run(job: Arc<Job>) {
        let section = SignallingSection::begin();
        // The next job of the file may run now: this one's fence has signalled.
        let next = {
            let mut link = job.next.lock();
            link.done = true;
            link.next.take()
        };
        if let Some(next) = next {
            next.dep_done(Ok(()));
        }
        // The next DMA job needs to wait no more: forget our fence, which pins the module.
        let last_dma = {
            let mut last = job.pool.last_dma.lock();
            match last.as_ref() {
                Some(fence) if fence.as_raw() == job.out.as_raw() => last.take(),
                _ => None,
            }
        };
        drop(section);
        drop(last_dma);
        // Unmaps and releases the buffers, outside the signalling section: unmapping takes the
        // reservation lock.
        let data = job.data.lock().take();
        drop(data);
        let held = job.held.lock().take();
        drop(held);
    }
}

impl WorkItem<2> for Job {
    type Pointer = Arc<Job>;

    fn run(job: Arc<Job>) {
        let _section = SignallingSection::begin();
        // The engine first: while it is held, no next DMA job can start a transfer that the
        // termination below would abort.
        let engine = job.pool.engine.lock();
        if job.completed.load(Ordering::Acquire) {
            return;
        }
        job.timed_out.store(true, Ordering::Release);
        if let Some(engine) = engine.as_ref() {
            dev_warn!(
                engine.chan.device(),
                "dmapingpong: job of {} bytes timed out on {}: terminating the channel\n",
                job.spec.size,
                engine.chan.name()
            );
            // Completes the transfer (with -ETIMEDOUT, see `submit_job`) and any other in flight.
            engine.chan.terminate();
            if engine.chan.is_broken() {
                // The transfer may still run, so its buffers stay mapped and allocated (the job's
                // data is leaked), but its fence signals now: it must not wait indefinitely.
                core::mem::forget(job.data.lock().take());
                job.complete(Err(ETIMEDOUT));
            }
        }
    }
}

/// A user fence that has not signalled, and when it times out.
struct PendingFence {
    fence: ARef<Fence>,
    deadline: Instant<Monotonic>,
}

/// The user fences of a file (`CREATE_FENCE`/`SIGNAL_FENCE`): fences whose signalling user space
/// controls, like sw_sync's. So that none becomes an indefinite fence (dma-buf.rst, "Indefinite
/// DMA Fences"), each has a deadline: unsignalled after it, it signals with `-ETIMEDOUT`. Fences
/// signal in seqno order, so a fence never times out before the older ones of its file: its
/// deadline is at least theirs.
#[pin_data]
struct UserFences {
    pool: Arc<Pool>,
    timeline: Arc<Timeline>,
    /// Serializes `CREATE_FENCE` on the file, so that fences enter `pending` in seqno order and
    /// its capacity is grown outside the lock.
    #[pin]
    create_lock: Mutex<()>,
    /// Taken on the signalling paths: never held across an allocation or a reservation lock.
    #[pin]
    pending: Mutex<Pending>,
    #[pin]
    deadline_work: DelayedWork<UserFences>,
}

/// The unsignalled fences of a file's timeline, in seqno order (so in deadline order).
struct Pending {
    fences: KVec<PendingFence>,
    /// Whether `deadline_work` is queued.
    armed: bool,
    /// Set when the file is released: the deadline work is not queued any more.
    closed: bool,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for UserFences { self.deadline_work }
}

/// Converts a positive time span to jiffies, rounded up, for a delayed work.
fn delay_jiffies(delta: Delta) -> Jiffies {
    let ms = (delta.as_micros_ceil().saturating_add(999) / 1000).clamp(1, i64::from(u32::MAX));
    msecs_to_jiffies(ms as u32)
}

impl UserFences {
    /// Queues the deadline work for the oldest pending fence, if it is not queued.
    fn arm(self: &Arc<Self>, pending: &mut Pending) {
        if pending.armed || pending.closed {
            return;
        }
        if let Some(first) = pending.fences.first() {
            let delay = delay_jiffies(first.deadline - Instant::now());
            if workqueue::system_unbound()
                .enqueue_delayed::<Arc<UserFences>, 0>(self.clone(), delay)
                .is_ok()
            {
                pending.armed = true;
            }
        }
    }

    /// Signals the pending fences up to the `n`-th with `result`, oldest first.
    fn signal_oldest(&self, pending: &mut Pending, n: usize, result: Result) {
        for _ in 0..n {
            if pending.fences.is_empty() {
                break;
            }
            // Cannot fail: index 0 of a non-empty vector.
            if let Ok(old) = pending.fences.remove(0) {
                if self.timeline.signal(&old.fence, result).is_ok() {
                    self.pool.fences_pending.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Makes room for one more pending fence, allocating outside the `pending` lock. Called with
    /// `create_lock` held, so that nobody else adds fences meanwhile.
    fn grow(&self) -> Result {
        let (len, capacity) = {
            let pending = self.pending.lock();
            (pending.fences.len(), pending.fences.capacity())
        };
        if len >= USER_FENCES_MAX_PENDING {
            if let Some(n) = log_ratelimited(&self.pool.rejected) {
                dev_info!(
                    self.pool.lease.device(),
                    "rejected request ({n} so far): CREATE_FENCE: {len} user fences of {} are pending, the most a file may have\n",
                    self.timeline.name()
                );
            }
            return Err(EBUSY);
        }
        if len < capacity {
            return Ok(());
        }
        let capacity = (capacity * 2).clamp(8, USER_FENCES_MAX_PENDING);
        let mut bigger = KVec::with_capacity(capacity, GFP_KERNEL)?;
        let old = {
            let mut pending = self.pending.lock();
            // As many as before or fewer (only this file's `create_lock` holder adds fences).
            if pending.fences.len() > bigger.capacity() {
                return Err(ENOMEM);
            }
            for fence in pending.fences.drain_all() {
                if let Err(err) = bigger.push_within_capacity(fence) {
                    // Cannot happen (checked above); a pending fence must not be dropped.
                    core::mem::forget(err);
                }
            }
            core::mem::replace(&mut pending.fences, bigger)
        };
        // Freed outside the lock.
        drop(old);
        Ok(())
    }
}

impl WorkItem for UserFences {
    type Pointer = Arc<UserFences>;

    fn run(this: Arc<UserFences>) {
        let _section = SignallingSection::begin();
        let mut pending = this.pending.lock();
        pending.armed = false;
        let now = Instant::now();
        let expired = pending
            .fences
            .iter()
            .take_while(|fence| {
                let left = fence.deadline - now;
                left.is_negative() || left.is_zero()
            })
            .count();
        if expired > 0 && log_ratelimited(&this.pool.deadline_logs).is_some() {
            dev_info!(
                this.pool.lease.device(),
                "{}: {expired} user fence(s) not signalled by their deadline: signalled with -ETIMEDOUT\n",
                this.timeline.name()
            );
        }
        this.signal_oldest(&mut pending, expired, Err(ETIMEDOUT));
        this.arm(&mut pending);
    }
}

/// An open file of `/dev/dmapingpong`: the fence context of its user fences, and the fence
/// context of its jobs.
#[pin_data(PinnedDrop)]
struct DmaPingPongFile {
    pool: Arc<Pool>,
    user: Arc<UserFences>,
    /// The out-fences of this file's jobs.
    jobs: Arc<Timeline>,
    /// The last job submitted on this file, which the next one runs after.
    #[pin]
    last_job: Mutex<Option<Arc<Job>>>,
    /// Serializes `SUBMIT_JOB` on the file from the out-fence's creation to its linking after
    /// the file's last job and the device's last DMA job, so that jobs are linked in seqno order
    /// (never taken on a signalling path).
    #[pin]
    submit_lock: Mutex<()>,
}

#[pinned_drop]
impl PinnedDrop for DmaPingPongFile {
    fn drop(self: Pin<&mut Self>) {
        let user = &self.user;
        // Nobody can signal these fences any more: signal them with an error, so that their
        // waiters (other processes, dma-buf poll()) wake up instead of hanging.
        let section = SignallingSection::begin();
        let mut pending = user.pending.lock();
        pending.closed = true;
        let n = pending.fences.len();
        user.signal_oldest(&mut pending, n, Err(ECANCELED));
        drop(pending);
        drop(section);
        // The deadline work is neither queued nor running after this (`closed` keeps it from
        // queueing itself again), so none runs after the module is unloaded.
        workqueue::cancel_delayed_sync::<UserFences, 0>(user);
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

/// The fd flags of `flags` (`DPP_FD_NO_CLOEXEC`, else `O_CLOEXEC`).
fn fd_flags(flags: u32) -> u32 {
    if flags & abi::DPP_FD_NO_CLOEXEC != 0 {
        0
    } else {
        kernel::bindings::O_CLOEXEC
    }
}

impl DmaPingPongFile {
    fn get_info(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let info = DppInfo {
            version: abi::DPP_UAPI_VERSION,
            page_size: PAGE_SIZE as u32,
            pool_size: pool.capacity,
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
        if req.size == 0 || req.size > pool.capacity {
            return Err(invalid!(
                pool,
                "ALLOC: size {} not in 1..={} (the pool)",
                req.size,
                pool.capacity
            ));
        }
        // Cannot overflow: the size is bounded by the pool, which is page-aligned.
        let size = req.size.next_multiple_of(PAGE_SIZE as u64);
        let fd = FileDescriptorReservation::get_unused_fd_flags(fd_flags(req.flags))?;
        let buffer = Buffer::new(pool, size as usize)?;
        let dmabuf = DmaBuf::export(buffer, size as usize, DRIVER_NAME, &crate::THIS_MODULE)?;
        req.fd = fd.reserved_fd() as i32;
        req.size = size;
        write_arg(arg, &req.to_ne_bytes())?;
        // Last: nothing can fail any more. The fd owns the export's reference to the buffer.
        fd.fd_install(DmaBuf::into_file(dmabuf));
        Ok(0)
    }

    /// Returns the buffer of this device behind the dma-buf `dmabuf`, or `EINVAL` with a reason.
    fn own_buffer(&self, dmabuf: &DmaBuf, what: fmt::Arguments<'_>) -> Result<Arc<Buffer>> {
        let pool = &self.pool;
        let buffer: Arc<Buffer> = dmabuf
            .exporter_data::<Buffer>()
            .ok_or_else(|| invalid!(pool, "{what} is not a dmapingpong buffer"))?
            .into();
        if !Arc::ptr_eq(&buffer.pool, pool) {
            return Err(invalid!(pool, "{what} is a buffer of another device"));
        }
        Ok(buffer)
    }

    fn create_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let user = &self.user;
        let mut req = read_arg!(DppFenceCreate, arg);
        if req.reserved != [0; 1] || req.pad != 0 {
            return Err(invalid!(pool, "CREATE_FENCE: reserved fields must be zero"));
        }
        if req.flags & !abi::DPP_FD_NO_CLOEXEC != 0 {
            return Err(invalid!(
                pool,
                "CREATE_FENCE: unknown flags {:#x}",
                req.flags
            ));
        }
        let deadline_ms = match req.deadline_ms {
            0 => abi::DPP_FENCE_DEFAULT_DEADLINE_MS,
            ms if ms <= USER_FENCE_MAX_DEADLINE_MS => ms,
            ms => {
                return Err(invalid!(
                pool,
                "CREATE_FENCE: deadline {ms} ms above the maximum {USER_FENCE_MAX_DEADLINE_MS} ms"
            ))
            }
        };
        let target = match (req.dmabuf_fd, req.usage) {
            (-1, abi::DPP_USAGE_NONE) => None,
            (fd, usage @ (abi::DPP_USAGE_WRITE | abi::DPP_USAGE_READ)) if fd >= 0 => {
                let dmabuf = DmaBuf::get(fd)?;
                // A fence that user space signals may only hold back users of our own buffers:
                // another exporter's importers (a display, a GPU) must not wait on it.
                self.own_buffer(&dmabuf, fmt!("CREATE_FENCE: dmabuf_fd {fd}"))?;
                let usage = if usage == abi::DPP_USAGE_WRITE {
                    Usage::Write
                } else {
                    Usage::Read
                };
                Some((dmabuf, usage))
            }
            (fd, usage) => {
                return Err(invalid!(
                    pool,
                    "CREATE_FENCE: usage {usage} with dmabuf_fd {fd}"
                ))
            }
        };

        // Every fallible step first, then publish (pending list, reservation, fd), in that order.
        let _creating = user.create_lock.lock();
        user.grow()?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(fd_flags(req.flags))?;
        let fence = user.timeline.create_fence()?;
        let file = sync_file::create(&fence)?;
        req.fence_fd = fd.reserved_fd() as i32;
        req.context = fence.context();
        req.seqno = fence.seqno();
        write_arg(arg, &req.to_ne_bytes())?;
        let mut resv = match &target {
            Some((dmabuf, _)) => {
                let mut guard = ResvGuard::lock([dmabuf.resv()])?;
                guard.reserve_fences(0, 1)?;
                Some(guard)
            }
            None => None,
        };

        // From here on nothing fails. Pending before the reservation: the fence may time out at
        // once, never unknown to the deadline work.
        let mut pending = user.pending.lock();
        let deadline = Instant::now() + Delta::from_millis(i64::from(deadline_ms));
        // Not before the older fences, which signal first.
        let deadline = pending.fences.last().map_or(deadline, |last| {
            if (deadline - last.deadline).is_negative() {
                last.deadline
            } else {
                deadline
            }
        });
        let entry = PendingFence {
            fence: fence.clone(),
            deadline,
        };
        if let Err(err) = pending.fences.push_within_capacity(entry) {
            // Cannot happen (`grow` made room, and only this holder of `create_lock` adds).
            core::mem::forget(err);
        }
        pool.fences_pending.fetch_add(1, Ordering::Relaxed);
        user.arm(&mut pending);
        drop(pending);
        if let (Some(guard), Some((_, usage))) = (resv.as_mut(), &target) {
            // Cannot fail: a slot is reserved and the fence is not a container.
            let _ = guard.add_fence(0, &fence, *usage);
        }
        drop(resv);
        fd.fd_install(file);
        Ok(0)
    }

    fn signal_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let user = &self.user;
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
        if !user.timeline.owns(&fence) {
            return Err(invalid!(
                pool,
                "SIGNAL_FENCE: the fence belongs to another context"
            ));
        }
        let _section = SignallingSection::begin();
        let mut pending = user.pending.lock();
        match pending.fences.first() {
            Some(oldest) if oldest.fence.seqno() == fence.seqno() => (),
            Some(oldest) if oldest.fence.seqno() < fence.seqno() => {
                return Err(invalid!(
                    pool,
                    "SIGNAL_FENCE: seqno {} before the older pending seqno {}",
                    fence.seqno(),
                    oldest.fence.seqno()
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
        user.signal_oldest(&mut pending, 1, result);
        Ok(0)
    }

    /// Returns the dma-buf behind `fd` and its buffer, which must belong to this device.
    fn job_buffer(&self, fd: i32, what: &str) -> Result<(ARef<DmaBuf>, Arc<Buffer>)> {
        let pool = &self.pool;
        let dmabuf = DmaBuf::get(fd).map_err(|err| {
            if err == EBADF {
                err
            } else {
                invalid!(pool, "SUBMIT_JOB: {what} fd {fd} is not a dma-buf")
            }
        })?;
        let buffer = self.own_buffer(&dmabuf, fmt!("SUBMIT_JOB: {what}"))?;
        Ok((dmabuf, buffer))
    }

    fn submit_job(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let req = read_arg!(DppJob, arg);
        if req.reserved != [0; 2] {
            return Err(invalid!(pool, "SUBMIT_JOB: reserved fields must be zero"));
        }
        if req.flags & !abi::DPP_JOB_NO_IMPLICIT_SYNC != 0 {
            return Err(invalid!(pool, "SUBMIT_JOB: unknown flags {:#x}", req.flags));
        }
        let op = match (req.op, req.src_fd, req.src_offset, req.pattern) {
            (abi::DPP_JOB_FILL, -1, 0, pattern) => Op::Fill(pattern),
            (abi::DPP_JOB_COPY, _, _, 0) => Op::Copy,
            (abi::DPP_JOB_FILL | abi::DPP_JOB_COPY, ..) => {
                return Err(invalid!(
                    pool,
                    "SUBMIT_JOB: a fill takes src_fd -1 and src_offset 0, a copy pattern 0"
                ))
            }
            (op, ..) => return Err(invalid!(pool, "SUBMIT_JOB: unknown op {op}")),
        };
        if req.size == 0 || (req.size | req.dst_offset | req.src_offset) % 8 != 0 {
            return Err(invalid!(
                pool,
                "SUBMIT_JOB: size {} and offsets {}, {} must be multiples of 8, size non-zero",
                req.size,
                req.dst_offset,
                req.src_offset
            ));
        }
        let in_range = |offset: u64, buffer: &Buffer| {
            offset
                .checked_add(req.size)
                .is_some_and(|end| end <= buffer.mem.size() as u64)
        };
        let (dst_buf, dst) = self.job_buffer(req.dst_fd, "destination")?;
        if !in_range(req.dst_offset, &dst) {
            return Err(invalid!(
                pool,
                "SUBMIT_JOB: {} bytes at {} do not fit the destination ({} bytes)",
                req.size,
                req.dst_offset,
                dst.mem.size()
            ));
        }
        let src = match op {
            Op::Fill(_) => None,
            Op::Copy => {
                let (src_buf, src) = self.job_buffer(req.src_fd, "source")?;
                if !in_range(req.src_offset, &src) {
                    return Err(invalid!(
                        pool,
                        "SUBMIT_JOB: {} bytes at {} do not fit the source ({} bytes)",
                        req.size,
                        req.src_offset,
                        src.mem.size()
                    ));
                }
                let overlap = req.src_offset < req.dst_offset + req.size
                    && req.dst_offset < req.src_offset + req.size;
                if Arc::ptr_eq(&src, &dst) && overlap {
                    return Err(invalid!(pool, "SUBMIT_JOB: source and destination overlap"));
                }
                Some((src_buf, src))
            }
        };
        let mut in_fences = KVec::new();
        for fd in req.in_fence_fds {
            if fd == -1 {
                continue;
            }
            let fence = sync_file::get_fence(fd)
                .map_err(|_| invalid!(pool, "SUBMIT_JOB: in-fence fd {fd} is not a sync_file"))?;
            in_fences.push(fence, GFP_KERNEL)?;
        }

        // The engine, and for the DMA engine the buffers mapped for its controller the way
        // every importer maps them, and the transfer's operations.
        let target = pool.dma_target.lock().clone();
        let mut spec = JobSpec {
            op,
            dst_offset: req.dst_offset as usize,
            src_offset: req.src_offset as usize,
            size: req.size as usize,
            engine: abi::DPP_ENGINE_CPU,
        };
        let dma = match target {
            None => None,
            Some(target)
                if (req.size | req.dst_offset | req.src_offset) % target.align as u64 != 0 =>
            {
                return Err(invalid!(
                    pool,
                    "SUBMIT_JOB: size and offsets must be multiples of {} (DMA engine)",
                    target.align
                ))
            }
            Some(target) => {
                spec.engine = abi::DPP_ENGINE_DMA;
                let src = src.as_ref().map(|(dmabuf, buffer)| (&**dmabuf, buffer));
                Some(DmaJob::prepare(&target, &spec, (&dst_buf, &dst), src)?)
            }
        };
        // The callbacks: the in-fences, the two implicit dependencies, the previous DMA job.
        let deps = KVec::with_capacity(in_fences.len() + 3, GFP_KERNEL)?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(kernel::bindings::O_CLOEXEC)?;
        let _submitting = self.submit_lock.lock();
        let data = JobData {
            dst,
            src: src.as_ref().map(|(_, buffer)| buffer.clone()),
            dma,
            deps,
        };
        let job = Arc::pin_init(
            try_pin_init!(Job {
                spec,
                pool: pool.clone(),
                timeline: self.jobs.clone(),
                out: self.jobs.create_fence()?,
                data <- new_mutex!(Some(data)),
                held <- new_spinlock!(None),
                deps: AtomicUsize::new(1),
                dep_error: AtomicI32::new(0),
                timed_out: AtomicBool::new(false),
                completed: AtomicBool::new(false),
                next <- new_mutex!(Link {
                    done: false,
                    next: None,
                }),
                work <- new_work!("dmapingpong::Job::work"),
                cleanup <- new_work!("dmapingpong::Job::cleanup"),
                timeout <- new_delayed_work!("dmapingpong::Job::timeout"),
            }),
            GFP_KERNEL,
        )?;
        // Until the job is published, a failure drops its data (and with it the completion,
        // which refers to the job).
        let abandon = |err: Error| {
            // Dropped outside the lock (unmapping takes other locks).
            let data = job.data.lock().take();
            drop(data);
            err
        };
        let published = self.publish_job(
            &job,
            &req,
            &dst_buf,
            src.as_ref().map(|(buf, _)| &**buf),
            &in_fences,
            fd,
            arg,
        );
        published.map_err(abandon)?;
        // The submission's own dependency: the job may run now.
        job.dep_done(Ok(()));
        Ok(0)
    }

    /// Publishes a new job: every fallible step first (the DMA completion, the sync_file, the
    /// result written to user space, the reservation locks and slots), then, in one reservation
    /// lock critical section, reads its implicit dependencies and adds its out-fence, and last
    /// installs the out-fence's fd.
    #[allow(clippy::too_many_arguments)]
    fn publish_job(
        &self,
        job: &Arc<Job>,
        req: &DppJob,
        dst: &DmaBuf,
        src: Option<&DmaBuf>,
        in_fences: &[ARef<Fence>],
        fd: FileDescriptorReservation,
        arg: usize,
    ) -> Result {
        let pool = &self.pool;
        if job.spec.engine == abi::DPP_ENGINE_DMA {
            let done = job.clone();
            // The transfer holds the mappings of the destination, the source or the pattern.
            let completion = Completion::new(2, move |result, held| {
                // Dropped by the cleanup work, queued by `complete`: unmapping may sleep.
                *done.held.lock() = Some(held);
                let timed_out = done.timed_out.load(Ordering::Acquire);
                done.complete(if timed_out { Err(ETIMEDOUT) } else { result });
            })?;
            if let Some(dma) = job.data.lock().as_mut().and_then(|data| data.dma.as_mut()) {
                dma.completion = Some(completion);
            }
        }
        let file = sync_file::create(&job.out)?;
        let mut out = *req;
        out.out_fence_fd = fd.reserved_fd() as i32;
        out.engine = job.spec.engine;
        out.context = job.out.context();
        out.seqno = job.out.seqno();
        write_arg(arg, &out.to_ne_bytes())?;

        // The destination is locked twice for a fill: `ResvGuard` locks it once.
        let mut resv = ResvGuard::lock([dst.resv(), src.unwrap_or(dst).resv()])?;
        let implicit = req.flags & abi::DPP_JOB_NO_IMPLICIT_SYNC == 0;
        // A writer waits for every reader and writer, a reader for the writers.
        let dst_deps = if implicit {
            resv.fences(0, Usage::Read)?
        } else {
            None
        };
        let src_deps = match (implicit, src) {
            (true, Some(_)) => resv.fences(1, Usage::Write)?,
            _ => None,
        };
        resv.reserve_fences(0, 1)?;
        if src.is_some() {
            resv.reserve_fences(1, 1)?;
        }
        // The dependencies' callbacks: the in-fences and the implicit ones, and the previous DMA
        // job, known only once published.
        let ndeps =
            in_fences.len() + usize::from(dst_deps.is_some()) + usize::from(src_deps.is_some());
        let mut callbacks = KVec::with_capacity(ndeps, GFP_KERNEL)?;
        for _ in 0..ndeps {
            callbacks.push(job.dep_callback(false)?, GFP_KERNEL)?;
        }
        let after_previous = match job.spec.engine {
            abi::DPP_ENGINE_DMA => Some(job.dep_callback(true)?),
            _ => None,
        };

        // From here on nothing fails: the job always runs and signals its fence, in order after
        // the last job of the file.
        pool.stats.jobs_pending.fetch_add(1, Ordering::Relaxed);
        {
            let mut data = job.data.lock();
            let mut regs = match data.as_mut() {
                Some(data) => core::mem::take(&mut data.deps),
                None => KVec::new(),
            };
            drop(data);
            let implicit_deps = Iterator::chain(dst_deps.iter(), src_deps.iter());
            let deps = Iterator::chain(in_fences.iter(), implicit_deps);
            for (fence, cb) in Iterator::zip(deps, callbacks.drain_all()) {
                job.add_dep(fence, cb, &mut regs);
            }
            if let Some(cb) = after_previous {
                // DMA jobs of a device run one at a time, whatever their files (they share the
                // pattern buffer): after the previous one, whatever its result.
                let previous = pool.last_dma.lock().replace(job.out.clone());
                if let Some(previous) = previous {
                    job.add_dep(&previous, cb, &mut regs);
                }
            }
            if let Some(data) = job.data.lock().as_mut() {
                data.deps = regs;
            }
        }
        {
            let mut last = self.last_job.lock();
            if let Some(prev) = last.as_ref() {
                let mut link = prev.next.lock();
                if !link.done {
                    job.deps.fetch_add(1, Ordering::AcqRel);
                    link.next = Some(job.clone());
                }
            }
            *last = Some(job.clone());
        }
        // Cannot fail: slots are reserved and the fence is not a container.
        let _ = resv.add_fence(0, &job.out, Usage::Write);
        if src.is_some_and(|src| !core::ptr::eq(src, dst)) {
            let _ = resv.add_fence(1, &job.out, Usage::Read);
        }
        drop(resv);
        fd.fd_install(file);
        Ok(())
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
        let start = Instant::<Monotonic>::now();
        if let Err(err) = fence.wait_timeout(true, Delta::from_micros(micros)) {
            if err == ERESTARTSYS {
                // The ioctl is restarted after the signal: with the time left, so that the
                // deadline stays where it was (`timeout_ns` is updated, as select() does).
                let spent = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                req.timeout_ns = req.timeout_ns.saturating_sub(spent);
                write_arg(arg, &req.to_ne_bytes())?;
            }
            return Err(err);
        }
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
        let jobs = CString::try_from_fmt(fmt!("dmapingpong-{pid}-jobs"))?;
        let pool = misc.data().clone();
        let user_pool = pool.clone();
        let user = Arc::pin_init(
            try_pin_init!(UserFences {
                pool: user_pool,
                timeline: Timeline::new(DRIVER_NAME, name, &crate::THIS_MODULE)?,
                create_lock <- new_mutex!(()),
                pending <- new_mutex!(Pending {
                    fences: KVec::new(),
                    armed: false,
                    closed: false,
                }),
                deadline_work <- new_delayed_work!("dmapingpong::UserFences::deadline_work"),
            }),
            GFP_KERNEL,
        )?;
        KBox::try_pin_init(
            try_pin_init!(Self {
                pool,
                user,
                jobs: Timeline::new(DRIVER_NAME, jobs, &crate::THIS_MODULE)?,
                last_job <- new_mutex!(None),
                submit_lock <- new_mutex!(()),
            }),
            GFP_KERNEL,
        )
    }

    fn ioctl(me: Pin<&Self>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            ioctl::GET_INFO => me.get_info(arg),
            ioctl::ALLOC => me.alloc(arg),
            ioctl::CREATE_FENCE => me.create_fence(arg),
            ioctl::SIGNAL_FENCE => me.signal_fence(arg),
            ioctl::WAIT_FENCE => me.wait_fence(arg),
            ioctl::SUBMIT_JOB => me.submit_job(arg),
            _ => Err(ENOTTY),
        }
    }
}

#[pin_data]
struct DmaPingPongDriver {
    pool: Arc<Pool>,
    #[pin]
    misc: MiscDeviceRegistration<DmaPingPongFile>,
    #[pin]
    stats_file: debugfs::File<Arc<Stats>>,
    #[pin]
    fail_transfers_file: debugfs::File<Arc<Stats>>,
    _debugfs: debugfs::Dir,
}

impl DmaPingPongDriver {
    /// Stops the DMA engine: terminates its transfers (their jobs fail with `-ECANCELED`) and
    /// releases the channel, before the DMA controller goes away. Jobs submitted from now on run
    /// on the CPU worker; those submitted for the DMA engine that had not started fail with
    /// `-ECANCELED` too.
    fn release_engine(&self, dev: &device::Device<Core>) {
        drop(self.pool.dma_target.lock().take());
        // Waits for a job that is starting its transfer; released outside the lock.
        let engine = self.pool.engine.lock().take();
        if engine.is_some() {
            drop(engine);
            // The channel itself goes with the last mapping for its DMA device (`SharedMap`).
            dev_info!(dev, "DMA engine released\n");
        }
    }
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
        let claim = PoolClaim::new().ok_or_else(|| {
            dev_err!(
                dev,
                "buffers, files or jobs of the previous binding still exist: bind again once they are closed\n"
            );
            EBUSY
        })?;
        let region = of::ReservedMemory::assign(dev).inspect_err(|err| {
            dev_err!(
                dev,
                "no usable memory-region (reserved-memory pool): {err:?}\n"
            )
        })?;
        let engine = DmaEngine::request(dev)?;
        let dma_target = engine.as_ref().map(DmaTarget::new).transpose()?;
        let (capacity, name) = match &engine {
            Some(engine) => (
                region.size().saturating_sub(PATTERN_SIZE as u64),
                CString::try_from_fmt(fmt!("dma {}", engine.chan.name()))?,
            ),
            None => (region.size(), CString::try_from_fmt(fmt!("cpu"))?),
        };
        let stats = Arc::new(
            Stats {
                engine: name,
                dma_jobs: AtomicU64::new(0),
                dma_bytes: AtomicU64::new(0),
                cpu_jobs: AtomicU64::new(0),
                cpu_bytes: AtomicU64::new(0),
                jobs_failed: AtomicU64::new(0),
                jobs_pending: AtomicU64::new(0),
                fail_transfers: AtomicU32::new(0),
            },
            GFP_KERNEL,
        )?;
        let pool_stats = stats.clone();
        let pool = Arc::pin_init(
            try_pin_init!(Pool {
                lease: BoundDevice::new(dev)?,
                engine <- new_mutex!(engine),
                dma_target <- new_mutex!(dma_target),
                last_dma <- new_mutex!(None),
                region,
                capacity,
                used <- new_mutex!(0),
                buffers: AtomicU64::new(0),
                fences_pending: AtomicU64::new(0),
                rejected: AtomicU32::new(0),
                deadline_logs: AtomicU32::new(0),
                stats: pool_stats,
                _claim: claim,
            }),
            GFP_KERNEL,
        )?;
        // One exporter per system: a second device's directory would collide and be skipped.
        let dir = debugfs::Dir::new(DRIVER_NAME);
        let this = KBox::try_pin_init(
            try_pin_init!(Self {
                misc <- MiscDeviceRegistration::register(
                    MiscDeviceOptions {
                        name: DRIVER_NAME,
                        mode: 0o660,
                    },
                    pool.clone(),
                ),
                stats_file <- dir.read_callback_file(c_str!("stats"), stats.clone(), &Stats::show),
                fail_transfers_file <- dir.read_write_callback_file(
                    c_str!("fail_transfers"),
                    stats,
                    &Stats::show_fail_transfers,
                    &Stats::store_fail_transfers,
                ),
                _debugfs: dir.clone(),
                // Last: the field names of the initializer shadow the local variables.
                pool,
            }),
            GFP_KERNEL,
        )?;
        dev_info!(
            dev,
            "exporter ready: /dev/{DRIVER_NAME}, pool of {} KiB\n",
            capacity / 1024
        );
        Ok(this)
    }

    fn unbind(pdev: &platform::Device<Core>, this: Pin<&Self>) {
        this.release_engine(pdev.as_ref());
    }

    fn shutdown(pdev: &platform::Device<Core>, this: Pin<&Self>) {
        this.release_engine(pdev.as_ref());
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
