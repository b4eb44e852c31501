// SPDX-License-Identifier: GPL-2.0

//! The DMA engine: a channel of the SoC's DMA controller and its pattern buffer.

use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    c_str,
    device::{
        self,
        Core, //
    },
    dma::{
        attrs::DMA_ATTR_NO_WARN,
        CoherentAllocation,
        DataDirection,
        SharedCoherentAllocation, //
    },
    dma_fence::SignallingSection,
    dmaengine::{
        Capability,
        Channel,
        ChannelMapping, //
    },
    prelude::*,
    sync::Arc, //
};

/// Size of the buffer that DMA fills copy their pattern from (the controllers we drive cannot
/// fill a 64-bit pattern themselves). Reserved from the pool when a DMA channel is used.
pub(crate) const PATTERN_SIZE: usize = 64 * 1024;

/// Numbers the DMA engines of the driver, so that a job prepared for one engine never runs on
/// another (its buffers are mapped for the first one's controller).
pub(crate) static ENGINE_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The DMA engine of a device: a channel of the SoC's DMA controller and the buffer that fills
/// copy their pattern from, mapped for the controller (the mapping holds the channel).
pub(crate) struct DmaEngine {
    pub(crate) pattern_map: Arc<ChannelMapping>,
    pub(crate) pattern: Arc<SharedCoherentAllocation>,
    /// Also held by the mappings made for its DMA device (the pattern's, the buffers' through
    /// `SharedMap`, and those a transfer holds until dmaengine's work item drops them), which
    /// may outlive the engine: the channel is released with the last of them.
    pub(crate) chan: Arc<Channel>,
    pub(crate) generation: u64,
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
    pub(crate) fn request(dev: &device::Device<Core>) -> Result<Option<Self>> {
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
        // Shared from the start: the mappings for its DMA device hold it.
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
pub(crate) struct DmaTarget {
    /// The engine's channel, whose DMA device (`Channel::device`) jobs attach their buffers to.
    pub(crate) chan: Arc<Channel>,
    pub(crate) align: usize,
    pub(crate) memset: bool,
    pub(crate) generation: u64,
}

impl DmaTarget {
    pub(crate) fn new(engine: &DmaEngine) -> Result<Arc<Self>> {
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
