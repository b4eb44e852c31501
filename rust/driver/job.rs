// SPDX-License-Identifier: GPL-2.0

//! Device jobs: fills and copies on buffers that run when their fences have signalled, on the
//! DMA engine or on the CPU worker.

use crate::{
    abi,
    engine::{
        DmaTarget,
        PATTERN_SIZE, //
    },
    import::{
        JobBuffer,
        JobMap,
        Kind, //
    },
    pool::Pool, //
};
use core::sync::atomic::{
    AtomicBool,
    AtomicI32,
    AtomicUsize,
    Ordering, //
};
use kernel::{
    dma::DataDirection,
    dma_fence::{
        CallbackRegistration,
        Fence,
        PreparedCallback,
        SignallingSection,
        Timeline, //
    },
    dmaengine::Completion,
    impl_has_delayed_work,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    time::msecs_to_jiffies,
    workqueue::{
        self,
        impl_has_work,
        DelayedWork,
        Work,
        WorkItem, //
    }, //
};

/// How long a job's transfers may take before they are aborted with `-ETIMEDOUT`: a base, plus a
/// time per MiB and per transfer (a scattered buffer of another exporter takes many).
pub(crate) const JOB_TIMEOUT_BASE_MS: i64 = 5000;
pub(crate) const JOB_TIMEOUT_PER_MIB_MS: i64 = 200;
pub(crate) const JOB_TIMEOUT_PER_TRANSFER_MS: i64 = 20;

/// CPU jobs fill and copy in pieces of this many bytes (a multiple of 8), with a scheduling point
/// between them.
pub(crate) const CPU_CHUNK: usize = 1 << 20;

/// DMA jobs run as transfers of at most this many units, one after the other: a controller has
/// a bounded pool of descriptors (32 on ZynqMP DMA), and a transfer that needs more fails at run
/// time. A transfer takes one descriptor per contiguous piece of at most the channel's maximum
/// segment size. The unit is that size rounded down to whole pages (the segments of the mappings
/// of our buffers, which are physically contiguous), or the 64 KiB pattern buffer for fills
/// copied from it, if smaller: a copy of `n` units crosses at most `n` segment boundaries of each
/// mapping and takes at most `2 * n + 1` descriptors (17), a fill at most `2 * n` (16). One more
/// may still be held by the previous transfer (ZynqMP DMA frees it after its callback). The
/// mappings of other exporters' buffers may be scattered: for them the unit is at most their
/// shortest segment in the job's range, so the bound holds for them too.
pub(crate) const DMA_CHUNK_SEGMENTS: usize = 8;

/// A job's operation.
#[derive(Clone, Copy)]
pub(crate) enum Op {
    Fill(u64),
    Copy,
}

/// The buffers of a job mapped for the DMA controller, as an importer maps them.
pub(crate) struct DmaMaps {
    pub(crate) dst: JobMap,
    pub(crate) src: Option<JobMap>,
}

/// Everything a DMA job needs to run, prepared at submission, before its out-fence is
/// published: running it then neither allocates, maps nor takes a reservation lock (the rules
/// of a DMA fence signalling path).
pub(crate) struct DmaJob {
    /// Dropped by the job's cleanup work, after the transfer (which holds the mappings too, until
    /// dmaengine drops them after the completion).
    pub(crate) maps: DmaMaps,
    /// The byte a fill sets with the controller's memset, if it can fill and the pattern is one
    /// byte repeated; other fills copy from the pattern buffer.
    pub(crate) memset: Option<u8>,
    pub(crate) generation: u64,
    /// Bytes per transfer (see [`DMA_CHUNK_SEGMENTS`]), a multiple of the channel's alignment.
    pub(crate) chunk: usize,
    /// The completions of the transfers not started yet, the last one first (prepared at
    /// submission, [`DmaJob::chunks`] of them).
    pub(crate) completions: KVec<Completion>,
}

impl DmaJob {
    /// Maps the job's buffers for the DMA controller of `target` (one mapping for both if they
    /// are the same buffer of another exporter), checks the segments of other exporters'
    /// mappings and chooses how a fill runs.
    ///
    /// Buffers are mapped bidirectionally, ours and other exporters' alike: exporters such as
    /// the dma-buf heaps sync every attachment's table with the direction of each CPU access
    /// (`DMA_BUF_IOCTL_SYNC`), which the DMA API's checks report against a one-way mapping.
    pub(crate) fn prepare(
        pool: &Pool,
        target: &DmaTarget,
        spec: &JobSpec,
        dst: &JobBuffer,
        src: Option<&JobBuffer>,
    ) -> Result<Self> {
        let within = src.is_some_and(|src| src.same(dst));
        let dir = DataDirection::Bidirectional;
        let dst_map = dst.engine_map(pool, target, dir, "destination")?;
        let src_map = match (src, &dst_map) {
            (Some(_), JobMap::Foreign(map)) if within => Some(JobMap::Foreign(map.clone())),
            (Some(src), _) => Some(src.engine_map(pool, target, dir, "source")?),
            (None, _) => None,
        };
        // The shortest segment of the other exporters' mappings in the job's ranges.
        let mut shortest = usize::MAX;
        if let Kind::Foreign(_) = dst.kind {
            let seg = dst_map.segments(
                pool,
                spec.dst_offset,
                spec.size,
                target.align,
                "destination",
            )?;
            shortest = shortest.min(seg);
        }
        if let (Some(src), Some(map)) = (src, &src_map) {
            if let Kind::Foreign(_) = src.kind {
                let seg = map.segments(pool, spec.src_offset, spec.size, target.align, "source")?;
                shortest = shortest.min(seg);
            }
        }
        let memset = match spec.op {
            Op::Fill(pattern) => {
                let value = pattern.to_ne_bytes()[0];
                (target.memset && pattern == u64::from_ne_bytes([value; 8])).then_some(value)
            }
            Op::Copy => None,
        };
        // The unit of `DMA_CHUNK_SEGMENTS`; the chunk is a multiple of the alignment, at least
        // one alignment (which is at least 1).
        let max = target.chan.max_segment_size();
        let mut unit = if max >= PAGE_SIZE {
            max - max % PAGE_SIZE
        } else {
            max
        };
        if matches!(spec.op, Op::Fill(_)) && memset.is_none() {
            unit = unit.min(PATTERN_SIZE);
        }
        // At least the alignment: `segments` checked that segments are multiples of it.
        unit = unit.min(shortest.max(target.align));
        let chunk = DMA_CHUNK_SEGMENTS.saturating_mul(unit);
        let chunk = (chunk - chunk % target.align).max(target.align);
        Ok(Self {
            maps: DmaMaps {
                dst: dst_map,
                src: src_map,
            },
            memset,
            generation: target.generation,
            chunk,
            completions: KVec::new(),
        })
    }

    /// The number of transfers of a job of `size` bytes.
    pub(crate) fn chunks(&self, size: usize) -> usize {
        size.div_ceil(self.chunk)
    }
}

/// What a job holds until it has run; dropped by the job's cleanup work, in process context
/// (unmapping takes the reservation lock), after its out-fence has signalled.
pub(crate) struct JobData {
    pub(crate) dst: JobBuffer,
    pub(crate) src: Option<JobBuffer>,
    pub(crate) dma: Option<DmaJob>,
    /// The callbacks on the job's dependencies (capacity reserved at submission).
    pub(crate) deps: KVec<CallbackRegistration>,
}

/// The next job of the same file, released when this one has signalled.
pub(crate) struct Link {
    pub(crate) done: bool,
    pub(crate) next: Option<Arc<Job>>,
}

/// What a job does (offsets and size in bytes), and on which engine.
#[derive(Clone, Copy)]
pub(crate) struct JobSpec {
    pub(crate) op: Op,
    pub(crate) dst_offset: usize,
    pub(crate) src_offset: usize,
    pub(crate) size: usize,
    /// `DPP_ENGINE_DMA` or `DPP_ENGINE_CPU`.
    pub(crate) engine: u32,
}

/// A device job: an operation on buffers that runs when its dependencies have signalled.
///
/// Every job runs its work function once when `deps` drops to zero (a DMA job again for each
/// further transfer, from the previous one's completion) and signals its out-fence exactly once
/// (`completed`); the jobs of a file run in order (`next`), so their
/// fences signal in seqno order. Everything from the run to the signal (the work function, the
/// DMA completion, the timeout) is a DMA fence signalling path: it runs in a
/// [`SignallingSection`] and neither allocates, maps, nor takes a reservation lock.
#[pin_data]
pub(crate) struct Job {
    pub(crate) spec: JobSpec,
    pub(crate) pool: Arc<Pool>,
    pub(crate) timeline: Arc<Timeline>,
    #[pin]
    pub(crate) data: Mutex<Option<JobData>>,
    /// Unsignalled dependencies, plus one while the job is being submitted.
    pub(crate) deps: AtomicUsize,
    /// The first error of a dependency or of the submission (a negative errno), or 0.
    pub(crate) dep_error: AtomicI32,
    pub(crate) timed_out: AtomicBool,
    /// Set by the first run of the work function.
    pub(crate) started: AtomicBool,
    pub(crate) completed: AtomicBool,
    #[pin]
    pub(crate) next: Mutex<Link>,
    /// Runs the job.
    #[pin]
    pub(crate) work: Work<Job, 0>,
    /// Drops the job's data once it has signalled.
    #[pin]
    pub(crate) cleanup: Work<Job, 1>,
    /// Aborts a DMA transfer that takes too long.
    #[pin]
    pub(crate) timeout: DelayedWork<Job, 2>,
    /// Last (fields drop in order): the fence holds a reference to this module (the owner of
    /// its timeline), whose code the other fields' drops run. (The work function that drops the
    /// last reference to a job still returns through this module's code afterwards.)
    pub(crate) out: ARef<Fence>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Job { self.work }
    impl HasWork<Self, 1> for Job { self.cleanup }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Job { self.timeout }
}

impl Job {
    pub(crate) fn record_error(&self, err: Error) {
        let _ =
            self.dep_error
                .compare_exchange(0, err.to_errno(), Ordering::AcqRel, Ordering::Acquire);
    }

    /// A dependency has signalled: queues the job after the last one.
    ///
    /// May run in any context (fence callbacks run with interrupts disabled). The `Arc` dropped
    /// here is never the last reference while the job has not run (the work queue holds one).
    pub(crate) fn dep_done(self: Arc<Self>, result: Result) {
        if let Err(err) = result {
            self.record_error(err);
        }
        if self.deps.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _ = workqueue::system_unbound().enqueue::<Arc<Job>, 0>(self);
        }
    }

    /// The callback of a dependency of the job (passing its error on unless `ordering_only`),
    /// allocated before the job is published so that adding it cannot fail.
    pub(crate) fn dep_callback(self: &Arc<Self>, ordering_only: bool) -> Result<PreparedCallback> {
        let job = self.clone();
        PreparedCallback::new(&crate::THIS_MODULE, move |result| {
            job.dep_done(if ordering_only { Ok(()) } else { result })
        })
    }

    /// Makes the job wait for `fence` with the callback `cb` of [`Job::dep_callback`]. The
    /// registration goes into `regs`, whose capacity was reserved.
    pub(crate) fn add_dep(
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
    pub(crate) fn complete(self: &Arc<Self>, result: Result) {
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

    pub(crate) fn run_cpu(&self) -> Result {
        let data = self.data.lock();
        let data = data.as_ref().ok_or(EINVAL)?;
        let dst = data.dst.cpu()?;
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
                    src.cpu()?,
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

    /// Starts the job's next transfer on the DMA channel; the last one's completion signals the
    /// out-fence. Returns an error if it could not start (the job is then completed with it).
    pub(crate) fn run_dma(self: &Arc<Self>) -> Result {
        // The engine before the job's data, in the order of the timeout.
        let engine = self.pool.engine.lock();
        // Timed out between two transfers (the timeout sets this under the engine lock, and
        // found nothing to terminate): no further transfer.
        if self.timed_out.load(Ordering::Acquire) {
            return Err(ETIMEDOUT);
        }
        let mut data = self.data.lock();
        let dma = data
            .as_mut()
            .and_then(|data| data.dma.as_mut())
            .ok_or(EINVAL)?;
        // The engine the job was prepared for, not one bound since.
        let engine = engine
            .as_ref()
            .filter(|engine| engine.generation == dma.generation)
            .ok_or(ECANCELED)?;
        let spec = &self.spec;
        // This transfer's part of the job: the chunk after those that ran.
        let index = dma.chunks(spec.size) - dma.completions.len();
        let completion = dma.completions.pop().ok_or(EINVAL)?;
        let start = index * dma.chunk;
        let size = (spec.size - start).min(dma.chunk);
        if let (Op::Fill(pattern), None, 0) = (spec.op, dma.memset, index) {
            // DMA jobs of a device run one at a time (each depends on the previous one's fence),
            // so the pattern buffer is free.
            let len = spec.size.min(PATTERN_SIZE);
            engine.pattern.fill_u64(0, len, pattern)?;
            engine.pattern_map.sync_for_device();
        }
        let mut transfer = engine.chan.transfer(completion)?;
        let mib = (self.spec.size >> 20) as i64;
        let transfers = dma.chunks(spec.size) as i64;
        let timeout = JOB_TIMEOUT_BASE_MS
            + mib * JOB_TIMEOUT_PER_MIB_MS
            + transfers * JOB_TIMEOUT_PER_TRANSFER_MS;
        // Once, for the whole job: pending already when a later transfer starts.
        let _ = workqueue::system_unbound()
            .enqueue_delayed::<Arc<Job>, 2>(self.clone(), msecs_to_jiffies(timeout as u32));
        // The buffers' reservations keep other jobs and implicitly synced CPU access off the
        // ranges. A failure is the transfer's result; the operations added before it still run.
        let dst = dma.maps.dst.mapping();
        let dst_offset = spec.dst_offset + start;
        let _ = match (spec.op, dma.memset, &dma.maps.src) {
            (Op::Fill(_), Some(value), _) => transfer.fill(dst, dst_offset, value, size),
            (Op::Fill(_), None, _) => {
                // The pattern buffer, as many times as the fill needs.
                let mut done = 0;
                let mut added = Ok(());
                while done < size && added.is_ok() {
                    let len = (size - done).min(PATTERN_SIZE);
                    added = transfer.copy(dst, dst_offset + done, &engine.pattern_map, 0, len);
                    done += len;
                }
                added
            }
            (Op::Copy, _, Some(src)) => transfer.copy(
                dst,
                dst_offset,
                src.mapping(),
                spec.src_offset + start,
                size,
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
        // A DMA job runs once per transfer (see `DmaJob::chunks`); the first run decides.
        let first = !job.started.swap(true, Ordering::AcqRel);
        match job.dep_error.load(Ordering::Acquire) {
            0 if first && job.pool.stats.take_injected_failure() => job.complete(Err(EIO)),
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
                // data is leaked), but its fence signals now: it must not wait indefinitely. The
                // completions of the transfers that will not run are dropped, not leaked: each
                // holds the job and references to the module.
                let mut data = job.data.lock().take();
                let unused = data
                    .as_mut()
                    .and_then(|data| data.dma.as_mut())
                    .map(|dma| core::mem::replace(&mut dma.completions, KVec::new()));
                drop(unused);
                core::mem::forget(data);
                job.complete(Err(ETIMEDOUT));
            }
        }
    }
}
