// SPDX-License-Identifier: GPL-2.0

//! The reserved-memory pool of a bound device, and its accounting.

use crate::{
    debugfs::Stats,
    engine::{
        DmaEngine,
        DmaTarget, //
    }, //
};
use core::{
    fmt,
    sync::atomic::{
        AtomicBool,
        AtomicU32,
        AtomicU64,
        Ordering, //
    }, //
};
use kernel::{
    devres::BoundDevice,
    dma_fence::Fence,
    of,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    }, //
};

/// Counts one more event that user space causes on `counter` and returns its number (from 1)
/// if it is to be logged: the first 10, then every 1000th, so that user space cannot flood the
/// log.
pub(crate) fn log_ratelimited(counter: &AtomicU32) -> Option<u32> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    (n < 10 || n % 1000 == 0).then_some(n + 1)
}

/// Whether a [`Pool`] exists. A pool lives until its last buffer, file and job are gone, which
/// may be long after its device was unbound; the reserved-memory region stays assigned to the
/// device until then. Binding the device again meanwhile would assign the region a second time,
/// and releasing the old pool's assignment (`of_reserved_mem_device_release()` releases every
/// assignment of the device) would take the CMA area away from the new binding. So probe refuses
/// with `EBUSY` while the old pool exists. One flag suffices: there is one exporter per system
/// (the misc device and the debugfs directory have fixed names).
pub(crate) static POOL_EXISTS: AtomicBool = AtomicBool::new(false);

/// The claim on [`POOL_EXISTS`] of one pool, or of a probe that has not made its pool yet.
pub(crate) struct PoolClaim;

impl PoolClaim {
    pub(crate) fn new() -> Option<Self> {
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
pub(crate) struct Pool {
    pub(crate) lease: Arc<BoundDevice>,
    /// The DMA engine, until the device is unbound or shut down; `None` for the CPU worker.
    /// Taken by a DMA job to start its transfer, and by its timeout. Before `region`: a probe
    /// that fails after taking the channel frees the pattern buffer while the region (the
    /// device's CMA area) is still assigned.
    #[pin]
    pub(crate) engine: Mutex<Option<DmaEngine>>,
    /// What submissions need of the DMA engine, behind a lock of its own that is never held
    /// long, so that submitting does not wait for the job that runs. Cleared before `engine`.
    #[pin]
    pub(crate) dma_target: Mutex<Option<Arc<DmaTarget>>>,
    /// The out-fence of the last DMA job submitted, until it signals: the next one runs after
    /// it.
    #[pin]
    pub(crate) last_dma: Mutex<Option<ARef<Fence>>>,
    pub(crate) region: of::ReservedMemory,
    /// Bytes of the region that buffers may use (the region less the DMA pattern buffer).
    pub(crate) capacity: u64,
    #[pin]
    pub(crate) used: Mutex<u64>,
    pub(crate) buffers: AtomicU64,
    pub(crate) fences_pending: AtomicU64,
    pub(crate) rejected: AtomicU32,
    /// User fences signalled at their deadline, for the rate limit of their log lines.
    pub(crate) deadline_logs: AtomicU32,
    pub(crate) stats: Arc<Stats>,
    /// Last: released after the region and the engine.
    pub(crate) _claim: PoolClaim,
}

impl Pool {
    /// Reserves `size` bytes of the pool, or fails with `ENOMEM`.
    pub(crate) fn reserve(&self, size: u64) -> Result {
        let mut used = self.used.lock();
        if self.capacity - *used < size {
            return Err(ENOMEM);
        }
        *used += size;
        Ok(())
    }

    pub(crate) fn unreserve(&self, size: u64) {
        *self.used.lock() -= size;
    }

    /// Logs why a request was rejected (rate-limited per device, see [`log_ratelimited`]) and
    /// returns `EINVAL`.
    pub(crate) fn invalid(&self, args: fmt::Arguments<'_>) -> Error {
        if let Some(n) = log_ratelimited(&self.rejected) {
            dev_info!(
                self.lease.device(),
                "rejected request ({} so far): {}\n",
                n,
                args
            );
        }
        EINVAL
    }

    /// Logs why a request failed with `err` (another error than `EINVAL`, rate-limited as
    /// [`Pool::invalid`]; not if a signal interrupted it) and returns `err`.
    pub(crate) fn refused(&self, err: Error, args: fmt::Arguments<'_>) -> Error {
        // Interrupted by a signal: nothing was wrong with the request.
        if err == ERESTARTSYS || err == EINTR {
            return err;
        }
        if let Some(n) = log_ratelimited(&self.rejected) {
            dev_info!(
                self.lease.device(),
                "rejected request ({} so far): {}: {:?}\n",
                n,
                args,
                err
            );
        }
        err
    }
}
