// SPDX-License-Identifier: GPL-2.0

//! Buffers: coherent memory from the pool, exported as dma-bufs (the exporter).

use crate::{
    engine::DmaTarget,
    pool::Pool, //
};
use core::sync::atomic::Ordering;
use kernel::{
    device,
    dma::{
        attrs::DMA_ATTR_NO_WARN,
        CoherentAllocation,
        DataDirection,
        SharedCoherentAllocation, //
    },
    dma_buf::{
        self,
        Attachment,
        DmaBuf,
        DmaBufMapping, //
    },
    mm::virt::{
        flags as vm_flags,
        VmaNew, //
    },
    new_mutex,
    prelude::*,
    sync::{
        Arc,
        ArcBorrow,
        Mutex, //
    }, //
};

/// A buffer: coherent memory from the pool, exported as a dma-buf.
#[pin_data(PinnedDrop)]
pub(crate) struct Buffer {
    /// Shared with the tables mapped for importers and the user-space mappings, which the
    /// dma-buf core removes before the buffer's release: none outlives the buffer.
    pub(crate) mem: Arc<SharedCoherentAllocation>,
    pub(crate) pool: Arc<Pool>,
    /// The buffer mapped for the DMA controller while DMA jobs use it: mapped once, however
    /// many jobs wait for it (the DMA API allows few overlapping mappings of the same memory).
    /// (A transfer holds the mapping until dmaengine drops it after the completion, so a job
    /// submitted meanwhile may map the buffer again for that short while.)
    #[pin]
    pub(crate) engine_map: Mutex<EngineMap>,
}

/// The mapping of a buffer for the DMA controller, and how many jobs use it.
pub(crate) struct EngineMap {
    pub(crate) users: usize,
    pub(crate) map: Option<Arc<SharedMap>>,
}

/// A buffer attached to the DMA controller's device and mapped for it, as any importer does
/// (the attachment holds the engine's channel).
pub(crate) struct SharedMap {
    pub(crate) map: Arc<DmaBufMapping>,
    pub(crate) generation: u64,
}

impl Buffer {
    /// Allocates `size` bytes (a multiple of the page size) from the pool.
    pub(crate) fn new(pool: &Arc<Pool>, size: usize) -> Result<Arc<Self>> {
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
    pub(crate) fn alloc_in_pool(
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
    pub(crate) fn use_engine_map(
        self: &Arc<Self>,
        dmabuf: &DmaBuf,
        target: &DmaTarget,
    ) -> Result<MapUse> {
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

/// A job's use of a buffer's mapping for the DMA controller; the mapping goes with the last use
/// and the transfer that holds it. Dropped in process context (unmapping takes the reservation
/// lock), never in a signalling section.
pub(crate) struct MapUse {
    pub(crate) buffer: Arc<Buffer>,
    pub(crate) map: Arc<SharedMap>,
}

impl MapUse {
    pub(crate) fn mapping(&self) -> &Arc<DmaBufMapping> {
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
// for importers are synced for the CPU at the start of CPU access, after the buffer's fences
// have signalled, and for the devices at its end. The dma-buf abstraction does both (without a
// `begin_cpu_access` of the exporter, it waits for the fences itself); the DMA API does nothing
// for coherent devices.
#[vtable]
impl dma_buf::Exporter for Buffer {
    fn map_dma_buf(
        this: ArcBorrow<'_, Self>,
        _attachment: &Attachment,
        _dir: DataDirection,
    ) -> Result<Arc<SharedCoherentAllocation>> {
        Ok(this.mem.clone())
    }

    fn mmap(this: ArcBorrow<'_, Self>, vma: &VmaNew) -> Result {
        // A private mapping would give the process a copy-on-write view of memory that devices
        // write behind its back.
        if vma.flags() & vm_flags::SHARED == 0 {
            return Err(this.pool.invalid(fmt!("mmap: MAP_PRIVATE of a dma-buf")));
        }
        // Buffers hold data, never code: refuse PROT_EXEC now and mprotect() to it later.
        vma.try_clear_mayexec()
            .map_err(|_| this.pool.invalid(fmt!("mmap: PROT_EXEC of a dma-buf")))?;
        this.mem.mmap(vma)
    }

    fn vmap(this: ArcBorrow<'_, Self>) -> Result<Arc<SharedCoherentAllocation>> {
        Ok(this.mem.clone())
    }
}
