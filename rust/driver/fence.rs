// SPDX-License-Identifier: GPL-2.0

//! User fences: DMA fences whose signalling user space controls, with deadlines.

use crate::{
    abi,
    pool::{
        log_ratelimited,
        Pool, //
    }, //
};
use core::sync::atomic::Ordering;
use kernel::{
    dma_fence::{
        Fence,
        SignallingSection,
        Timeline, //
    },
    impl_has_delayed_work,
    prelude::*,
    sync::{
        aref::ARef,
        Arc,
        Mutex, //
    },
    time::{
        msecs_to_jiffies,
        Delta,
        Instant,
        Jiffies,
        Monotonic, //
    },
    workqueue::{
        self,
        DelayedWork,
        WorkItem, //
    }, //
};

/// The longest deadline user space may give a user fence (`dpp_fence_create.deadline_ms`), in
/// milliseconds. (A module parameter once the Rust module-parameter support is in the kernel
/// this driver builds against.)
pub(crate) const USER_FENCE_MAX_DEADLINE_MS: u32 = 60_000;

/// The most user fences a file may have pending (`CREATE_FENCE` fails with `EBUSY` beyond): the
/// signalling paths walk the pending list, and a file must not make the kernel hold memory
/// without bound.
pub(crate) const USER_FENCES_MAX_PENDING: usize = abi::DPP_FENCE_MAX_PENDING as usize;

/// A user fence that has not signalled, and when it times out.
pub(crate) struct PendingFence {
    pub(crate) fence: ARef<Fence>,
    pub(crate) deadline: Instant<Monotonic>,
}

/// The user fences of a file (`CREATE_FENCE`/`SIGNAL_FENCE`): fences whose signalling user space
/// controls, like sw_sync's. So that none becomes an indefinite fence (dma-buf.rst, "Indefinite
/// DMA Fences"), each has a deadline: unsignalled after it, it signals with `-ETIMEDOUT`. Fences
/// signal in seqno order, so a fence never times out before the older ones of its file: its
/// deadline is at least theirs.
#[pin_data]
pub(crate) struct UserFences {
    pub(crate) pool: Arc<Pool>,
    pub(crate) timeline: Arc<Timeline>,
    /// Serializes `CREATE_FENCE` on the file, so that fences enter `pending` in seqno order and
    /// its capacity is grown outside the lock.
    #[pin]
    pub(crate) create_lock: Mutex<()>,
    /// Taken on the signalling paths: never held across an allocation or a reservation lock.
    #[pin]
    pub(crate) pending: Mutex<Pending>,
    #[pin]
    pub(crate) deadline_work: DelayedWork<UserFences>,
}

/// The unsignalled fences of a file's timeline, in seqno order (so in deadline order).
pub(crate) struct Pending {
    pub(crate) fences: KVec<PendingFence>,
    /// Whether `deadline_work` is queued.
    pub(crate) armed: bool,
    /// Set when the file is released: the deadline work is not queued any more.
    pub(crate) closed: bool,
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self> for UserFences { self.deadline_work }
}

/// Converts a positive time span to jiffies, rounded up, for a delayed work.
pub(crate) fn delay_jiffies(delta: Delta) -> Jiffies {
    let ms = (delta.as_micros_ceil().saturating_add(999) / 1000).clamp(1, i64::from(u32::MAX));
    msecs_to_jiffies(ms as u32)
}

impl UserFences {
    /// Queues the deadline work for the oldest pending fence, if it is not queued.
    pub(crate) fn arm(self: &Arc<Self>, pending: &mut Pending) {
        if pending.armed || pending.closed {
            return;
        }
        if let Some(first) = pending.fences.first() {
            let delay = delay_jiffies(first.deadline - Instant::now());
            if workqueue::system_unbound()
                .enqueue_delayed::<Arc<UserFences>, 0>(self.clone(), delay)
                .is_ok()
            {
                pending.armed = true;
            }
        }
    }

    /// Signals the pending fences up to the `n`-th with `result`, oldest first.
    pub(crate) fn signal_oldest(&self, pending: &mut Pending, n: usize, result: Result) {
        for _ in 0..n {
            if pending.fences.is_empty() {
                break;
            }
            // Cannot fail: index 0 of a non-empty vector.
            if let Ok(old) = pending.fences.remove(0) {
                if self.timeline.signal(&old.fence, result).is_ok() {
                    self.pool.fences_pending.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Makes room for one more pending fence, allocating outside the `pending` lock. Called with
    /// `create_lock` held, so that nobody else adds fences meanwhile.
    pub(crate) fn grow(&self) -> Result {
        let (len, capacity) = {
            let pending = self.pending.lock();
            (pending.fences.len(), pending.fences.capacity())
        };
        if len >= USER_FENCES_MAX_PENDING {
            if let Some(n) = log_ratelimited(&self.pool.rejected) {
                dev_info!(
                    self.pool.lease.device(),
                    "rejected request ({n} so far): CREATE_FENCE: {len} user fences of {} are pending, the most a file may have\n",
                    self.timeline.name()
                );
            }
            return Err(EBUSY);
        }
        if len < capacity {
            return Ok(());
        }
        let capacity = (capacity * 2).clamp(8, USER_FENCES_MAX_PENDING);
        let mut bigger = KVec::with_capacity(capacity, GFP_KERNEL)?;
        let old = {
            let mut pending = self.pending.lock();
            // As many as before or fewer (only this file's `create_lock` holder adds fences).
            if pending.fences.len() > bigger.capacity() {
                return Err(ENOMEM);
            }
            for fence in pending.fences.drain_all() {
                if let Err(err) = bigger.push_within_capacity(fence) {
                    // Cannot happen (checked above); a pending fence must not be dropped.
                    core::mem::forget(err);
                }
            }
            core::mem::replace(&mut pending.fences, bigger)
        };
        // Freed outside the lock.
        drop(old);
        Ok(())
    }
}

impl WorkItem for UserFences {
    type Pointer = Arc<UserFences>;

    fn run(this: Arc<UserFences>) {
        let _section = SignallingSection::begin();
        let mut pending = this.pending.lock();
        pending.armed = false;
        let now = Instant::now();
        let expired = pending
            .fences
            .iter()
            .take_while(|fence| {
                let left = fence.deadline - now;
                left.is_negative() || left.is_zero()
            })
            .count();
        if expired > 0 && log_ratelimited(&this.pool.deadline_logs).is_some() {
            dev_info!(
                this.pool.lease.device(),
                "{}: {expired} user fence(s) not signalled by their deadline: signalled with -ETIMEDOUT\n",
                this.timeline.name()
            );
        }
        this.signal_oldest(&mut pending, expired, Err(ETIMEDOUT));
        this.arm(&mut pending);
    }
}
