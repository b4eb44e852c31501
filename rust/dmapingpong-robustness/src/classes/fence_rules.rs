//! The DMA fence rules of the uapi (Documentation/driver-api/dma-buf.rst,
//! "Indefinite DMA Fences"; `rust/uapi/include/dmapingpong.h`), one KTAP test
//! point each:
//!
//! - `user_fence_deadline`: a user fence nobody signals signals with
//!   `-ETIMEDOUT` after its deadline, and its waiter wakes with that error; a
//!   file with `DPP_FENCE_MAX_PENDING` fences pending gets `EBUSY`;
//! - `user_fence_foreign_refused`: `CREATE_FENCE` on another exporter's
//!   dma-buf (`/dev/dma_heap/system`, udmabuf) fails with `EINVAL`;
//! - `fd_result_efault`: `ALLOC`, `CREATE_FENCE` and `SUBMIT_JOB` whose result
//!   cannot be written back (`EFAULT`) leave no fd and publish no fence;
//! - `create_fence_emfile`: `CREATE_FENCE` with `RLIMIT_NOFILE` exhausted fails
//!   with `EMFILE`, leaves no fence in the reservation, and later fences still
//!   signal in order.

use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use dmapingpong::uapi::{self as u, DppAlloc, DppFenceCreate, DppJob};
use dmapingpong::{Device, DmaBuf, Errno, FenceStatus, PollFlags, Usage};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use super::{Diags, SHORT};
use crate::ctx::Ctx;
use crate::error::{Context, Failure, Result, expect_errno, expect_raw};
use crate::ktap::Outcome;
use crate::sys;

/// The deadline given to the fences of `user_fence_deadline`, in ms.
const DEADLINE_MS: u32 = 300;

/// `user_fence_deadline`.
pub fn deadline(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    let dev = ctx.open()?;
    let buf = dev.alloc(1)?;
    let start = Instant::now();
    let fence = dev.create_fence_raw(DppFenceCreate {
        dmabuf_fd: buf.as_fd().as_raw_fd(),
        usage: u::DPP_USAGE_WRITE,
        deadline_ms: DEADLINE_MS,
        ..Default::default()
    })?;
    // A second fence with a shorter deadline: it must not time out before
    // the older one (fences of a context signal in order).
    let younger = dev.create_fence_raw(DppFenceCreate {
        dmabuf_fd: -1,
        deadline_ms: 1,
        ..Default::default()
    })?;
    check!(
        !buf.poll(PollFlags::IN, SHORT)?,
        "the dma-buf is ready with a pending user write fence"
    );
    check!(
        dev.wait_fence(&younger, SHORT)? == FenceStatus::Pending,
        "a fence with a 1 ms deadline timed out before the older fence of its file"
    );
    let bound = Duration::from_millis(u64::from(DEADLINE_MS)) + ctx.timeout;
    let status = dev.wait_fence(&fence, bound)?;
    let waited = start.elapsed();
    check!(
        status == FenceStatus::Error(Errno::TIMEDOUT),
        "unsignalled user fence after {} ms: {status:?}, expected ETIMEDOUT",
        waited.as_millis()
    );
    check!(
        waited >= Duration::from_millis(u64::from(DEADLINE_MS)),
        "the fence timed out after {} ms, before its deadline of {DEADLINE_MS} ms",
        waited.as_millis()
    );
    check!(
        dev.wait_fence(&younger, ctx.timeout)? == FenceStatus::Error(Errno::TIMEDOUT),
        "the younger fence did not time out with the older one"
    );
    check!(
        buf.poll(PollFlags::IN, ctx.timeout)?,
        "the dma-buf is not ready after its write fence timed out"
    );
    // The file still works: a fence signalled in time is not touched.
    let ok = dev.create_fence(None)?;
    dev.signal(&ok, None)?;
    check!(
        dev.wait_fence(&ok, ctx.timeout)? == FenceStatus::Signalled,
        "a fence signalled after the timeouts is not signalled"
    );
    check!(
        dev.info()?.fences_pending == 0,
        "fences still pending after the deadline"
    );
    diags.push(format!(
        "a user fence with a {DEADLINE_MS} ms deadline signalled -ETIMEDOUT after {} ms",
        waited.as_millis()
    ));
    // A file has at most DPP_FENCE_MAX_PENDING fences pending (their sync_files closed, they
    // stay pending): one more is EBUSY, and closing the file cancels them all.
    let max = u::DPP_FENCE_MAX_PENDING;
    let many = ctx.open()?;
    for i in 0..max {
        // The longest deadline: none may time out before the check, however slow the machine.
        let fence = many.create_fence_raw(DppFenceCreate {
            dmabuf_fd: -1,
            deadline_ms: 60_000,
            ..Default::default()
        });
        drop(fence.ctx(format!("pending user fence {}", i + 1))?);
    }
    expect_errno(
        many.create_fence(None),
        Errno::BUSY,
        &format!("CREATE_FENCE with {max} fences of the file pending"),
    )?;
    check!(
        dev.info()?.fences_pending == u64::from(max),
        "not {max} fences pending"
    );
    // The cap is per file: another file still creates fences.
    let other = ctx.open()?;
    let fence = other.create_fence(None).ctx("a fence of another file")?;
    other.signal(&fence, None)?;
    drop((fence, other));
    drop((many, buf, dev));
    ctx.expect_baseline(
        baseline,
        "after closing a file with the most pending fences",
    )?;
    diags.push(format!(
        "fence {} of a file with {max} pending: EBUSY",
        max + 1
    ));
    Ok(Outcome::Pass)
}

/// `user_fence_foreign_refused`.
pub fn foreign_refused(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let dev = ctx.open()?;
    let (foreign, what) = match sys::foreign_dma_buf(1 << 16) {
        Ok(f) => f,
        Err(why) => fail!("no dma-buf of another exporter to test with: {why}"),
    };
    for usage in [u::DPP_USAGE_WRITE, u::DPP_USAGE_READ] {
        let r = dev.create_fence_raw(DppFenceCreate {
            dmabuf_fd: foreign.as_raw_fd(),
            usage,
            ..Default::default()
        });
        expect_errno(
            r,
            Errno::INVAL,
            &format!("CREATE_FENCE on a {what} buffer (usage {usage})"),
        )?;
    }
    // Nothing entered its reservation.
    let foreign_buf = DmaBuf::from_fd(foreign)?;
    check!(
        foreign_buf.poll(PollFlags::OUT, SHORT)?,
        "the {what} buffer is busy after the refused CREATE_FENCE"
    );
    check!(
        dev.info()?.fences_pending == 0,
        "a refused CREATE_FENCE left a pending fence"
    );
    diags.push(format!("CREATE_FENCE on a {what} buffer: EINVAL"));
    Ok(Outcome::Pass)
}

/// The fds open in this process.
fn open_fds() -> Result<usize> {
    std::fs::read_dir("/proc/self/fd")
        .map(Iterator::count)
        .map_err(|source| Failure::Io {
            what: "reading /proc/self/fd".into(),
            source,
        })
}

/// Runs `ioctl(dev, opcode, arg)` with `arg` in a read-only page, so that the
/// driver can read it and fails to write the result; expects `EFAULT`, the
/// same fds open and no new pending fence afterwards.
fn efault_case(dev: &Device, buf: &DmaBuf, opcode: u32, arg: &[u8], what: &str) -> Result<()> {
    let fds = open_fds()?;
    let pending = dev.info()?.fences_pending;
    expect_raw(
        sys::ioctl_readonly_arg(dev.as_fd(), opcode, arg),
        Errno::FAULT,
        &format!("{what} with a read-only argument"),
    )?;
    let now = open_fds()?;
    check!(
        now == fds,
        "{what} failed with EFAULT but the process has {now} fds instead of {fds}"
    );
    check!(
        dev.info()?.fences_pending == pending,
        "{what} failed with EFAULT but left a pending fence"
    );
    check!(
        buf.poll(PollFlags::OUT, SHORT)?,
        "{what} failed with EFAULT but the buffer has an unsignalled fence"
    );
    Ok(())
}

/// `fd_result_efault`.
pub fn fd_result_efault(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let dev = ctx.open()?;
    let buf = dev.alloc(1 << 16)?;
    let before = dev.info()?;
    let alloc = DppAlloc {
        size: 4096,
        ..Default::default()
    };
    efault_case(
        &dev,
        &buf,
        u::DPP_IOCTL_ALLOC,
        &alloc.to_ne_bytes(),
        "ALLOC",
    )?;
    check!(
        dev.info()?.buffers == before.buffers,
        "ALLOC failed with EFAULT but left a buffer"
    );
    let fence = DppFenceCreate {
        dmabuf_fd: buf.as_fd().as_raw_fd(),
        usage: u::DPP_USAGE_WRITE,
        ..Default::default()
    };
    efault_case(
        &dev,
        &buf,
        u::DPP_IOCTL_CREATE_FENCE,
        &fence.to_ne_bytes(),
        "CREATE_FENCE",
    )?;
    let job = DppJob {
        op: u::DPP_JOB_FILL,
        dst_fd: buf.as_fd().as_raw_fd(),
        src_fd: -1,
        size: 4096,
        pattern: 0x5a5a_5a5a_5a5a_5a5a,
        in_fence_fds: [-1; u::DPP_JOB_MAX_IN_FENCES],
        ..Default::default()
    };
    efault_case(
        &dev,
        &buf,
        u::DPP_IOCTL_SUBMIT_JOB,
        &job.to_ne_bytes(),
        "SUBMIT_JOB",
    )?;
    // And the fence context goes on: a new fence signals normally.
    let f = dev.create_fence(Some((buf.as_fd(), Usage::Write)))?;
    dev.signal(&f, None)?;
    check!(
        dev.wait_fence(&f, ctx.timeout)? == FenceStatus::Signalled,
        "a fence after the EFAULT cases did not signal"
    );
    diags.push(
        "ALLOC, CREATE_FENCE, SUBMIT_JOB with an unwritable result: EFAULT, no fd, no fence".into(),
    );
    Ok(Outcome::Pass)
}

/// Sets the soft `RLIMIT_NOFILE`, returning the old limit.
fn set_nofile(soft: u64) -> Result<Rlimit> {
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: old.maximum,
        },
    )
    .map_err(|e| Failure::os("setrlimit(RLIMIT_NOFILE)", e))?;
    Ok(old)
}

/// `create_fence_emfile`.
pub fn create_fence_emfile(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let dev = ctx.open()?;
    let buf = dev.alloc(1)?;
    let first = dev.create_fence(Some((buf.as_fd(), Usage::Write)))?;
    // No free fd: the limit is the lowest free fd number, the one the next
    // fd would get (every lower one is open).
    let probe = rustix::io::dup(&buf).map_err(|e| Failure::os("dup", e))?;
    let lowest_free = probe.as_raw_fd() as u64;
    drop(probe);
    let old = set_nofile(lowest_free)?;
    let refused = dev.create_fence(Some((buf.as_fd(), Usage::Write)));
    setrlimit(Resource::Nofile, old).map_err(|e| Failure::os("setrlimit(RLIMIT_NOFILE)", e))?;
    expect_errno(
        refused,
        Errno::MFILE,
        "CREATE_FENCE with RLIMIT_NOFILE exhausted",
    )?;
    check!(
        dev.info()?.fences_pending == 1,
        "after EMFILE: {} fences pending, expected the first one only",
        dev.info()?.fences_pending
    );
    // The reservation holds the first fence only: signalling it frees the
    // buffer (a fence left by the failed call would keep it busy).
    check!(
        !buf.poll(PollFlags::OUT, SHORT)?,
        "the buffer is idle with the first write fence pending"
    );
    check!(
        dev.wait_fence(&first, SHORT)? == FenceStatus::Pending,
        "the first fence signalled when CREATE_FENCE failed"
    );
    dev.signal(&first, None)?;
    check!(
        buf.poll(PollFlags::OUT, ctx.timeout)?,
        "the buffer is busy after its only fence signalled: the failed CREATE_FENCE left one"
    );
    // Later fences signal in order, without error.
    let later: Vec<_> = (0..3)
        .map(|_| dev.create_fence(Some((buf.as_fd(), Usage::Write))))
        .collect::<dmapingpong::Result<_>>()?;
    check!(
        later.windows(2).all(|w| w[0].seqno() < w[1].seqno()),
        "later fences do not have increasing seqnos"
    );
    for f in &later {
        dev.signal(f, None)?;
        check!(
            dev.wait_fence(f, ctx.timeout)? == FenceStatus::Signalled,
            "fence {} after the EMFILE did not signal without error",
            f.seqno()
        );
    }
    check!(
        dev.info()?.fences_pending == 0,
        "fences pending after all were signalled"
    );
    diags.push(format!(
        "CREATE_FENCE with RLIMIT_NOFILE {lowest_free}: EMFILE, no fence left; seqnos {}..={} signalled in order",
        later[0].seqno(),
        later[2].seqno()
    ));
    Ok(Outcome::Pass)
}
