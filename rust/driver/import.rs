// SPDX-License-Identifier: GPL-2.0

//! The buffers of jobs: this device's own, or dma-bufs of other exporters that the jobs import
//! (a dma-buf heap's, udmabuf's, a DRM or V4L2 driver's), as any importer does
//! (Documentation/driver-api/dma-buf.rst): attached to the DMA controller's device and mapped
//! for it, or mapped into the kernel for the CPU worker, before the job is published.

use crate::{
    buffer::{
        Buffer,
        MapUse, //
    },
    engine::DmaTarget,
    pool::Pool, //
};
use kernel::{
    dma::{
        CpuMemory,
        DataDirection, //
    },
    dma_buf::{
        DmaBuf,
        DmaBufMapping,
        DmaBufVmap, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        Arc, //
    }, //
};

/// A buffer of a job, held until the job's cleanup.
pub(crate) struct JobBuffer {
    pub(crate) dmabuf: ARef<DmaBuf>,
    pub(crate) kind: Kind,
}

/// Whose buffer it is.
pub(crate) enum Kind {
    /// One of this device's buffers.
    Own(Arc<Buffer>),
    /// Another exporter's, with its kernel mapping for the CPU worker once
    /// [`JobBuffer::prepare_cpu`] made it.
    Foreign(Option<DmaBufVmap>),
}

impl JobBuffer {
    /// The buffer behind `dmabuf` for the jobs of `pool`: its own buffers are used directly,
    /// every other dma-buf (another exporter's, or another dmapingpong device's) is imported.
    pub(crate) fn new(pool: &Arc<Pool>, dmabuf: ARef<DmaBuf>) -> Self {
        let kind = match dmabuf.exporter_data::<Buffer>() {
            Some(buffer) if Arc::ptr_eq(&buffer.pool, pool) => Kind::Own(buffer.into()),
            _ => Kind::Foreign(None),
        };
        Self { dmabuf, kind }
    }

    /// The size of the buffer in bytes.
    pub(crate) fn size(&self) -> usize {
        match &self.kind {
            Kind::Own(buffer) => buffer.mem.size(),
            Kind::Foreign(_) => self.dmabuf.size(),
        }
    }

    /// Whether both are the same dma-buf.
    pub(crate) fn same(&self, other: &JobBuffer) -> bool {
        core::ptr::eq(self.dmabuf.as_raw(), other.dmabuf.as_raw())
    }

    /// Maps another exporter's buffer into the kernel for the CPU worker (the reservation lock
    /// is taken: at submission, never in the job's signalling path).
    ///
    /// The CPU worker accesses it without `dma_buf_begin_cpu_access()` and
    /// `dma_buf_end_cpu_access()`: `begin` waits for the reservation's fences, the job's own
    /// among them, and neither may run in a fence signalling path. As vb2's vmalloc importer
    /// does, it relies on the exporter's kernel mapping being coherent with the buffer's other
    /// users (true of cached memory on DMA-coherent machines, of uncached mappings everywhere).
    /// Fails with the exporter's error: `EINVAL` if it has no `vmap`, `EOPNOTSUPP` for I/O
    /// memory.
    pub(crate) fn prepare_cpu(&mut self, pool: &Pool, what: &str) -> Result {
        if let Kind::Foreign(vmap @ None) = &mut self.kind {
            let map = self.dmabuf.vmap().map_err(|err| {
                pool.refused(
                    err,
                    fmt!("SUBMIT_JOB: the {what}, another exporter's dma-buf, cannot be mapped into the kernel for the CPU worker"),
                )
            })?;
            *vmap = Some(map);
        }
        Ok(())
    }

    /// The memory the CPU worker fills and copies.
    pub(crate) fn cpu(&self) -> Result<&dyn CpuMemory> {
        match &self.kind {
            Kind::Own(buffer) => Ok(&*buffer.mem),
            Kind::Foreign(Some(vmap)) => Ok(vmap),
            Kind::Foreign(None) => Err(EINVAL),
        }
    }

    /// The buffer mapped for the DMA controller of `target`, for device accesses in `dir`: a use
    /// of the shared mapping of our own buffers, or a mapping of this job's for other exporters'.
    ///
    /// Another exporter's buffer is refused with `ERANGE` if the controller cannot address all
    /// of memory (the BCM2835's lowest GiB): the DMA API could bounce the mapping through
    /// swiotlb, whose copies are only made at unmap, after the job's fence has signalled. The
    /// exporter's error (with a reason in the log) if it cannot map it for the controller.
    pub(crate) fn engine_map(
        &self,
        pool: &Pool,
        target: &DmaTarget,
        dir: DataDirection,
        what: &str,
    ) -> Result<JobMap> {
        match &self.kind {
            Kind::Own(buffer) => Ok(JobMap::Own(buffer.use_engine_map(&self.dmabuf, target)?)),
            Kind::Foreign(_) => {
                if target.chan.addressing_limited() {
                    return Err(pool.refused(
                        ERANGE,
                        fmt!(
                            "SUBMIT_JOB: the {what} is another exporter's dma-buf and {} cannot address all memory (a bounced mapping would only be synced after the job): use a buffer of this device",
                            target.chan.name()
                        ),
                    ));
                }
                let map = target
                    .chan
                    .attach(&self.dmabuf)
                    .and_then(|attachment| attachment.map(dir))
                    .map_err(|err| {
                        pool.refused(
                            err,
                            fmt!(
                                "SUBMIT_JOB: the {what}, another exporter's dma-buf, cannot be mapped for {}",
                                target.chan.name()
                            ),
                        )
                    })?;
                Ok(JobMap::Foreign(Arc::new(map, GFP_KERNEL)?))
            }
        }
    }
}

/// A job's buffer mapped for the DMA controller.
pub(crate) enum JobMap {
    /// A use of one of our buffers' shared mapping.
    Own(MapUse),
    /// The job's own mapping of another exporter's buffer.
    Foreign(Arc<DmaBufMapping>),
}

impl JobMap {
    pub(crate) fn mapping(&self) -> &Arc<DmaBufMapping> {
        match self {
            JobMap::Own(map) => map.mapping(),
            JobMap::Foreign(map) => map,
        }
    }

    /// The shortest DMA segment of the mapping that `[offset, offset + len)` touches, after
    /// checking that the range enters every such segment at an address that is a multiple of
    /// `align` and, unless it ends in the segment, leaves it at an offset that is one: the
    /// pieces of a transfer then are aligned, and a transfer of `n` times that length crosses
    /// at most `n` segment boundaries (see `DMA_CHUNK_SEGMENTS`). Fails with `EINVAL` and a
    /// reason otherwise, at submission.
    pub(crate) fn segments(
        &self,
        pool: &Pool,
        offset: usize,
        len: usize,
        align: usize,
        what: &str,
    ) -> Result<usize> {
        let end = offset.checked_add(len).ok_or(EINVAL)?;
        let mut start = 0usize;
        let mut shortest = usize::MAX;
        for entry in self.mapping().sg_table().iter() {
            if start >= end {
                break;
            }
            let seg = entry.dma_len() as usize;
            let seg_end = start.saturating_add(seg);
            if seg_end > offset {
                // Where the job's range enters the segment.
                let addr = entry.dma_address() + offset.saturating_sub(start) as u64;
                if addr % align as u64 != 0 || (seg_end % align != 0 && seg_end < end) {
                    return Err(pool.invalid(fmt!(
                        "SUBMIT_JOB: the {what}'s DMA segment of {seg} bytes at offset {start} \
                         is not aligned to the DMA engine's {align} bytes"
                    )));
                }
                shortest = shortest.min(seg);
            }
            start = seg_end;
        }
        if start < end {
            return Err(pool.invalid(fmt!(
                "SUBMIT_JOB: the {what}'s mapping covers {start} bytes, the job needs {end}"
            )));
        }
        Ok(shortest)
    }
}
