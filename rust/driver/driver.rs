// SPDX-License-Identifier: GPL-2.0

//! The platform driver: probe, unbind and shutdown of the exporter device.

use crate::{
    debugfs::Stats,
    engine::{
        DmaEngine,
        DmaTarget,
        PATTERN_SIZE, //
    },
    file::DmaPingPongFile,
    pool::{
        Pool,
        PoolClaim, //
    }, //
};
use core::sync::atomic::{
    AtomicU32,
    AtomicU64, //
};
use kernel::{
    c_str,
    debugfs,
    device::{
        self,
        Core, //
    },
    devres::BoundDevice,
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    new_mutex,
    of,
    platform,
    prelude::*,
    str::CString,
    sync::Arc, //
};

pub(crate) const DRIVER_NAME: &CStr = c_str!("dmapingpong");

#[pin_data]
pub(crate) struct DmaPingPongDriver {
    pub(crate) pool: Arc<Pool>,
    #[pin]
    pub(crate) misc: MiscDeviceRegistration<DmaPingPongFile>,
    #[pin]
    pub(crate) stats_file: debugfs::File<Arc<Stats>>,
    #[pin]
    pub(crate) fail_transfers_file: debugfs::File<Arc<Stats>>,
    pub(crate) _debugfs: debugfs::Dir,
}

impl DmaPingPongDriver {
    /// Stops the DMA engine: terminates its transfers (their jobs fail with `-ECANCELED`) and
    /// releases the channel, before the DMA controller goes away. Jobs submitted from now on run
    /// on the CPU worker; those submitted for the DMA engine that had not started fail with
    /// `-ECANCELED` too.
    pub(crate) fn release_engine(&self, dev: &device::Device<Core>) {
        drop(self.pool.dma_target.lock().take());
        // Waits for a job that is starting its transfer; released outside the lock.
        let engine = self.pool.engine.lock().take();
        if engine.is_some() {
            drop(engine);
            // The channel itself goes with the last mapping for its DMA device (`SharedMap`, or
            // one that a finished transfer held until dmaengine's work item dropped it).
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
