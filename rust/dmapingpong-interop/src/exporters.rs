//! Dma-bufs of other exporters, for jobs of ours that import them: the
//! dma-buf heaps (`/dev/dma_heap/system`, page allocator; the CMA heap, one
//! contiguous range), udmabuf (memfd pages, `include/uapi/linux/udmabuf.h`),
//! a vgem dumb buffer exported with PRIME (shmem pages) and a V4L2 buffer
//! exported with `VIDIOC_EXPBUF` (vivid's, vmalloc or dma-contig).

use dmapingpong::{DmaBuf, DmaHeap};

use crate::error::{Failure, Result};

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

/// A udmabuf of `size` bytes (`dmapingpong::baseline::udmabuf`).
pub fn udmabuf(size: u64) -> Result<DmaBuf> {
    dmapingpong::baseline::udmabuf(size).map_err(|e| match e.errno() {
        Some(dmapingpong::Errno::NOENT) => Failure::Missing(format!("{e} (CONFIG_UDMABUF)")),
        _ => e.into(),
    })
}
