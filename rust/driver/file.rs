// SPDX-License-Identifier: GPL-2.0

//! The misc device `/dev/dmapingpong`: one fence context per open file, and the ioctls
//! (`rust/uapi/src/abi.rs`) that allocate buffers, create and signal user fences and submit jobs.

use crate::{
    abi,
    abi::{
        DppAlloc,
        DppFenceCreate,
        DppFenceSignal,
        DppFenceWait,
        DppInfo,
        DppJob, //
    },
    buffer::Buffer,
    driver::DRIVER_NAME,
    fence::{
        Pending,
        PendingFence,
        UserFences, //
        USER_FENCE_MAX_DEADLINE_MS,
    },
    import::JobBuffer,
    job::{
        DmaJob,
        Job,
        JobData,
        JobSpec,
        Link,
        Op, //
    },
    pool::Pool, //
};
use core::{
    fmt,
    sync::atomic::{
        AtomicBool,
        AtomicI32,
        AtomicUsize,
        Ordering, //
    }, //
};
use kernel::{
    dma_buf::DmaBuf,
    dma_fence::{
        Fence,
        SignallingSection,
        Timeline, //
    },
    dma_resv::{
        ResvGuard,
        Usage, //
    },
    dmaengine::Completion,
    fs::{
        file::FileDescriptorReservation,
        File, //
    },
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    new_delayed_work,
    new_mutex,
    new_work,
    page::PAGE_SIZE,
    prelude::*,
    str::CString,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    sync_file,
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    workqueue, //
};

/// The ioctl numbers, encoded with the kernel's `_IO*()` helpers (`include/uapi/asm-generic/
/// ioctl.h`); checked at build time against those of the uapi crate, which user space uses.
mod ioctl {
    use super::abi::{
        self,
        DppAlloc,
        DppFenceCreate,
        DppFenceSignal,
        DppFenceWait,
        DppInfo,
        DppJob, //
    };
    use kernel::ioctl::{
        _IOR,
        _IOW,
        _IOWR, //
    };

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

/// An open file of `/dev/dmapingpong`: the fence context of its user fences, and the fence
/// context of its jobs.
#[pin_data(PinnedDrop)]
pub(crate) struct DmaPingPongFile {
    pub(crate) pool: Arc<Pool>,
    pub(crate) user: Arc<UserFences>,
    /// The out-fences of this file's jobs.
    pub(crate) jobs: Arc<Timeline>,
    /// The last job submitted on this file, which the next one runs after.
    #[pin]
    pub(crate) last_job: Mutex<Option<Arc<Job>>>,
    /// Serializes `SUBMIT_JOB` on the file from the out-fence's creation to its linking after
    /// the file's last job and the device's last DMA job, so that jobs are linked in seqno order
    /// (never taken on a signalling path).
    #[pin]
    pub(crate) submit_lock: Mutex<()>,
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

/// Reads an ioctl argument structure of `N` bytes from user space and decodes it with `decode`,
/// the uapi structure's `from_ne_bytes` (6.18 cannot derive `FromBytes` for
/// `UserSliceReader::read`).
fn read_arg<T, const N: usize>(arg: usize, decode: fn(&[u8; N]) -> T) -> Result<T> {
    let mut raw = [0u8; N];
    UserSlice::new(UserPtr::from_addr(arg), N)
        .reader()
        .read_slice(&mut raw)?;
    Ok(decode(&raw))
}

/// Writes an ioctl argument structure back to user space.
pub(crate) fn write_arg(arg: usize, bytes: &[u8]) -> Result {
    UserSlice::new(UserPtr::from_addr(arg), bytes.len())
        .writer()
        .write_slice(bytes)
}

/// The fd flags of `flags` (`DPP_FD_NO_CLOEXEC`, else `O_CLOEXEC`).
pub(crate) fn fd_flags(flags: u32) -> u32 {
    if flags & abi::DPP_FD_NO_CLOEXEC != 0 {
        0
    } else {
        kernel::bindings::O_CLOEXEC
    }
}

impl DmaPingPongFile {
    pub(crate) fn get_info(&self, arg: usize) -> Result<isize> {
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

    pub(crate) fn alloc(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let mut req = read_arg(arg, DppAlloc::from_ne_bytes)?;
        if req.reserved != [0; 2] {
            return Err(pool.invalid(fmt!("ALLOC: reserved fields must be zero")));
        }
        if req.flags & !abi::DPP_FD_NO_CLOEXEC != 0 {
            return Err(pool.invalid(fmt!("ALLOC: unknown flags {:#x}", req.flags)));
        }
        if req.size == 0 || req.size > pool.capacity {
            return Err(pool.invalid(fmt!(
                "ALLOC: size {} not in 1..={} (the pool)",
                req.size,
                pool.capacity
            )));
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
    pub(crate) fn own_buffer(
        &self,
        dmabuf: &DmaBuf,
        what: fmt::Arguments<'_>,
    ) -> Result<Arc<Buffer>> {
        let pool = &self.pool;
        let buffer: Arc<Buffer> = dmabuf
            .exporter_data::<Buffer>()
            .ok_or_else(|| pool.invalid(fmt!("{what} is not a dmapingpong buffer")))?
            .into();
        if !Arc::ptr_eq(&buffer.pool, pool) {
            return Err(pool.invalid(fmt!("{what} is a buffer of another device")));
        }
        Ok(buffer)
    }

    pub(crate) fn create_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let user = &self.user;
        let mut req = read_arg(arg, DppFenceCreate::from_ne_bytes)?;
        if req.reserved != [0; 1] || req.pad != 0 {
            return Err(pool.invalid(fmt!("CREATE_FENCE: reserved fields must be zero")));
        }
        if req.flags & !abi::DPP_FD_NO_CLOEXEC != 0 {
            return Err(pool.invalid(fmt!("CREATE_FENCE: unknown flags {:#x}", req.flags)));
        }
        let deadline_ms = match req.deadline_ms {
            0 => abi::DPP_FENCE_DEFAULT_DEADLINE_MS,
            ms if ms <= USER_FENCE_MAX_DEADLINE_MS => ms,
            ms => {
                return Err(pool.invalid(fmt!(
                "CREATE_FENCE: deadline {ms} ms above the maximum {USER_FENCE_MAX_DEADLINE_MS} ms"
            )))
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
                return Err(pool.invalid(fmt!("CREATE_FENCE: usage {usage} with dmabuf_fd {fd}")))
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

    pub(crate) fn signal_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let user = &self.user;
        let req = read_arg(arg, DppFenceSignal::from_ne_bytes)?;
        if req.reserved != [0; 2] {
            return Err(pool.invalid(fmt!("SIGNAL_FENCE: reserved fields must be zero")));
        }
        let result = match req.error {
            0 => Ok(()),
            e if (-abi::DPP_MAX_ERRNO..0).contains(&e) => Err(Error::from_errno(e)),
            e => return Err(pool.invalid(fmt!("SIGNAL_FENCE: error {e} is not a negative errno"))),
        };
        let fence = sync_file::get_fence(req.fence_fd).map_err(|_| {
            pool.invalid(fmt!("SIGNAL_FENCE: fd {} is not a sync_file", req.fence_fd))
        })?;
        if !user.timeline.owns(&fence) {
            return Err(pool.invalid(fmt!("SIGNAL_FENCE: the fence belongs to another context")));
        }
        let _section = SignallingSection::begin();
        let mut pending = user.pending.lock();
        match pending.fences.first() {
            Some(oldest) if oldest.fence.seqno() == fence.seqno() => (),
            Some(oldest) if oldest.fence.seqno() < fence.seqno() => {
                return Err(pool.invalid(fmt!(
                    "SIGNAL_FENCE: seqno {} before the older pending seqno {}",
                    fence.seqno(),
                    oldest.fence.seqno()
                )))
            }
            _ => {
                return Err(pool.invalid(fmt!(
                    "SIGNAL_FENCE: seqno {} was already signalled",
                    fence.seqno()
                )))
            }
        }
        user.signal_oldest(&mut pending, 1, result);
        Ok(0)
    }

    /// Returns the buffer behind the dma-buf `fd`: one of this device's, or another exporter's
    /// that the job imports.
    pub(crate) fn job_buffer(&self, fd: i32, what: &str) -> Result<JobBuffer> {
        let pool = &self.pool;
        let dmabuf = DmaBuf::get(fd).map_err(|err| {
            if err == EBADF {
                err
            } else {
                pool.invalid(fmt!("SUBMIT_JOB: {what} fd {fd} is not a dma-buf"))
            }
        })?;
        Ok(JobBuffer::new(pool, dmabuf))
    }

    pub(crate) fn submit_job(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let req = read_arg(arg, DppJob::from_ne_bytes)?;
        if req.reserved != [0; 2] {
            return Err(pool.invalid(fmt!("SUBMIT_JOB: reserved fields must be zero")));
        }
        if req.flags & !abi::DPP_JOB_NO_IMPLICIT_SYNC != 0 {
            return Err(pool.invalid(fmt!("SUBMIT_JOB: unknown flags {:#x}", req.flags)));
        }
        let op = match (req.op, req.src_fd, req.src_offset, req.pattern) {
            (abi::DPP_JOB_FILL, -1, 0, pattern) => Op::Fill(pattern),
            (abi::DPP_JOB_COPY, _, _, 0) => Op::Copy,
            (abi::DPP_JOB_FILL | abi::DPP_JOB_COPY, ..) => {
                return Err(pool.invalid(fmt!(
                    "SUBMIT_JOB: a fill takes src_fd -1 and src_offset 0, a copy pattern 0"
                )))
            }
            (op, ..) => return Err(pool.invalid(fmt!("SUBMIT_JOB: unknown op {op}"))),
        };
        if req.size == 0 || (req.size | req.dst_offset | req.src_offset) % 8 != 0 {
            return Err(pool.invalid(fmt!(
                "SUBMIT_JOB: size {} and offsets {}, {} must be multiples of 8, size non-zero",
                req.size,
                req.dst_offset,
                req.src_offset
            )));
        }
        // `req.size` bytes at `offset` lie in `buffer` (the job's `what`).
        let check_range = |offset: u64, buffer: &JobBuffer, what: &str| {
            let fits = offset
                .checked_add(req.size)
                .is_some_and(|end| end <= buffer.size() as u64);
            if fits {
                return Ok(());
            }
            Err(pool.invalid(fmt!(
                "SUBMIT_JOB: {} bytes at {} do not fit the {} ({} bytes)",
                req.size,
                offset,
                what,
                buffer.size()
            )))
        };
        let mut dst = self.job_buffer(req.dst_fd, "destination")?;
        check_range(req.dst_offset, &dst, "destination")?;
        let mut src = match op {
            Op::Fill(_) => None,
            Op::Copy => {
                let src = self.job_buffer(req.src_fd, "source")?;
                check_range(req.src_offset, &src, "source")?;
                let overlap = req.src_offset < req.dst_offset + req.size
                    && req.dst_offset < req.src_offset + req.size;
                if src.same(&dst) && overlap {
                    return Err(pool.invalid(fmt!("SUBMIT_JOB: source and destination overlap")));
                }
                Some(src)
            }
        };
        let mut in_fences = KVec::new();
        for fd in req.in_fence_fds {
            if fd == -1 {
                continue;
            }
            let fence = sync_file::get_fence(fd).map_err(|_| {
                pool.invalid(fmt!("SUBMIT_JOB: in-fence fd {fd} is not a sync_file"))
            })?;
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
            None => {
                // The CPU worker: other exporters' buffers mapped into the kernel now.
                dst.prepare_cpu(pool, "destination")?;
                if let Some(src) = src.as_mut() {
                    src.prepare_cpu(pool, "source")?;
                }
                None
            }
            Some(target)
                if (req.size | req.dst_offset | req.src_offset) % target.align as u64 != 0 =>
            {
                return Err(pool.invalid(fmt!(
                    "SUBMIT_JOB: size and offsets must be multiples of {} (DMA engine)",
                    target.align
                )))
            }
            Some(target) => {
                spec.engine = abi::DPP_ENGINE_DMA;
                Some(DmaJob::prepare(pool, &target, &spec, &dst, src.as_ref())?)
            }
        };
        // The callbacks: the in-fences, the two implicit dependencies, the previous DMA job.
        let deps = KVec::with_capacity(in_fences.len() + 3, GFP_KERNEL)?;
        let fd = FileDescriptorReservation::get_unused_fd_flags(kernel::bindings::O_CLOEXEC)?;
        let _submitting = self.submit_lock.lock();
        // The dma-bufs, for the reservations (the job's data holds them too).
        let dst_buf = dst.dmabuf.clone();
        let src_buf = src.as_ref().map(|src| src.dmabuf.clone());
        let data = JobData {
            dst,
            src,
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
                deps: AtomicUsize::new(1),
                dep_error: AtomicI32::new(0),
                timed_out: AtomicBool::new(false),
                started: AtomicBool::new(false),
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
        // Until the job is published, a failure drops its data (and with it the completions,
        // which refer to the job).
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
            src_buf.as_deref(),
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
    pub(crate) fn publish_job(
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
        // The number of transfers of a DMA job, read under the job's data lock, which the
        // signalling path takes: nothing is allocated while it is held.
        let chunks = job
            .data
            .lock()
            .as_ref()
            .and_then(|data| data.dma.as_ref())
            .map(|dma| dma.chunks(job.spec.size));
        if let Some(chunks) = chunks {
            // One completion per transfer, the last one first; each but the last runs the job
            // again for the next transfer. A transfer holds the mappings of the destination, and
            // of the source or the pattern buffer.
            let mut completions = KVec::with_capacity(chunks, GFP_KERNEL)?;
            for index in (0..chunks).rev() {
                let done = job.clone();
                let last = index + 1 == chunks;
                let completion = Completion::new(&crate::THIS_MODULE, 2, move |result| {
                    let timed_out = done.timed_out.load(Ordering::Acquire);
                    match result {
                        Ok(()) if !last && !timed_out => {
                            let _ = workqueue::system_unbound().enqueue::<Arc<Job>, 0>(done);
                        }
                        _ => done.complete(if timed_out { Err(ETIMEDOUT) } else { result }),
                    }
                })?;
                completions.push(completion, GFP_KERNEL)?;
            }
            if let Some(dma) = job.data.lock().as_mut().and_then(|data| data.dma.as_mut()) {
                dma.completions = completions;
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

    pub(crate) fn wait_fence(&self, arg: usize) -> Result<isize> {
        let pool = &self.pool;
        let mut req = read_arg(arg, DppFenceWait::from_ne_bytes)?;
        if req.reserved != [0; 2] || req.flags != 0 || req.pad != 0 {
            return Err(pool.invalid(fmt!("WAIT_FENCE: flags and reserved fields must be zero")));
        }
        let fence = sync_file::get_fence(req.fence_fd).map_err(|_| {
            pool.invalid(fmt!("WAIT_FENCE: fd {} is not a sync_file", req.fence_fd))
        })?;
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
