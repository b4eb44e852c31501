// SPDX-License-Identifier: GPL-2.0

//! What the engines of a device did, in debugfs (`/sys/kernel/debug/dmapingpong/`).

use core::{
    fmt,
    sync::atomic::{
        AtomicU32,
        AtomicU64,
        Ordering, //
    }, //
};
use kernel::{
    prelude::*,
    str::CString,
    sync::Arc,
    uaccess::UserSliceReader, //
};

/// What the engines of a device did, shown in debugfs (`/sys/kernel/debug/dmapingpong/stats`).
pub(crate) struct Stats {
    /// `dma <channel>` or `cpu`.
    pub(crate) engine: CString,
    pub(crate) dma_jobs: AtomicU64,
    pub(crate) dma_bytes: AtomicU64,
    pub(crate) cpu_jobs: AtomicU64,
    pub(crate) cpu_bytes: AtomicU64,
    pub(crate) jobs_failed: AtomicU64,
    pub(crate) jobs_pending: AtomicU64,
    /// Fault injection (debugfs `fail_transfers`): so many next transfers fail with `-EIO`
    /// without touching memory, whichever engine runs them.
    pub(crate) fail_transfers: AtomicU32,
}

impl Stats {
    pub(crate) fn show(this: &Arc<Stats>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let load = |v: &AtomicU64| v.load(Ordering::Relaxed);
        writeln!(f, "engine: {}", &*this.engine)?;
        writeln!(f, "dma_jobs: {}", load(&this.dma_jobs))?;
        writeln!(f, "dma_bytes: {}", load(&this.dma_bytes))?;
        writeln!(f, "cpu_jobs: {}", load(&this.cpu_jobs))?;
        writeln!(f, "cpu_bytes: {}", load(&this.cpu_bytes))?;
        writeln!(f, "jobs_failed: {}", load(&this.jobs_failed))?;
        writeln!(f, "jobs_pending: {}", load(&this.jobs_pending))
    }

    pub(crate) fn show_fail_transfers(
        this: &Arc<Stats>,
        f: &mut fmt::Formatter<'_>,
    ) -> fmt::Result {
        writeln!(f, "{}", this.fail_transfers.load(Ordering::Relaxed))
    }

    pub(crate) fn store_fail_transfers(this: &Arc<Stats>, reader: &mut UserSliceReader) -> Result {
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
    pub(crate) fn take_injected_failure(&self) -> bool {
        self.fail_transfers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}
