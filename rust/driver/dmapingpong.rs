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

// `pin_init!` of `Job` (file.rs) expands deeper than the default limit.
#![recursion_limit = "256"]

#[path = "../uapi/src/abi.rs"]
pub mod abi;

mod buffer;
mod debugfs;
mod driver;
mod engine;
mod fence;
mod file;
mod import;
mod job;
mod pool;

kernel::module_platform_driver! {
    type: driver::DmaPingPongDriver,
    name: "dmapingpong",
    authors: ["dmapingpong developers"],
    description: "dma-buf exporter with DMA fences over a reserved-memory pool",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
}
