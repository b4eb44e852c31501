//! Class 6, `fault_injection`: allocation failures injected into the
//! driver's calls, for this thread only
//! (`Documentation/fault-injection/fault-injection.rst`).
//!
//! Phase 1, systematic: for each call (open, GET_INFO, ALLOC, CREATE_FENCE
//! without and with a buffer, SIGNAL_FENCE, WAIT_FENCE, EXPORT_SYNC_FILE,
//! mmap, DMA_BUF_SET_NAME, SUBMIT_JOB) and each n = 1, 2, ..., `/proc/thread-self/fail-nth`
//! fails the n-th allocation (slab or page) of the call, until n exceeds the
//! call's allocations (a job that was submitted, with a signalled in-fence,
//! must then signal its out-fence without error: nothing it allocates comes
//! after its publication). Phase 2: failslab and fail_page_alloc with
//! `task-filter` (`/proc/thread-self/make-it-fail`), probability 100 and
//! varying `interval`, `times` 1, over sequences of calls. Every call must
//! succeed or fail with `ENOMEM`, the driver's counters must return to the
//! baseline, and everything must work after the knobs are reset.
//!
//! Between arming and disarming, the thread makes no system call but the one
//! under test and allocates no memory, so that the failure lands in the
//! driver's call.

use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use dmapingpong::Errno;
use dmapingpong::uapi::{
    self as u, DppAlloc, DppFenceCreate, DppFenceSignal, DppFenceWait, DppJob,
};
use dmapingpong::{FenceStatus, SyncFile};
use rustix::fs::{Mode, OFlags};

use super::Diags;
use crate::ctx::{Ctx, Figures};
use crate::error::{Failure, Result};
use crate::ktap::Outcome;
use crate::sys::{self, RawMap, ioctl_bytes};

const DEBUGFS: &str = "/sys/kernel/debug";
/// The fault types used.
const TYPES: [&str; 2] = ["failslab", "fail_page_alloc"];
/// Outcomes an injected allocation failure may cause.
const CLEAN: [Errno; 1] = [Errno::NOMEM];

/// The debugfs knobs, restored to their previous values on drop.
struct Knobs {
    saved: Vec<(PathBuf, String)>,
}

impl Knobs {
    fn new() -> Knobs {
        Knobs { saved: Vec::new() }
    }

    /// Writes `value` to `<type>/<name>` of every fault type that has it.
    fn set(&mut self, name: &str, value: &str) -> Result<()> {
        for ty in TYPES {
            let path = Path::new(DEBUGFS).join(ty).join(name);
            if !path.exists() {
                continue;
            }
            if !self.saved.iter().any(|(p, _)| *p == path) {
                let old = std::fs::read_to_string(&path)
                    .map_err(|e| Failure::io(format!("read {}", path.display()), e))?;
                self.saved.push((path.clone(), old.trim().to_string()));
            }
            std::fs::write(&path, value)
                .map_err(|e| Failure::io(format!("write {value} to {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The sum of `<type>/times` over the fault types.
    fn times(&self) -> Result<i64> {
        let mut sum = 0;
        for ty in TYPES {
            let path = Path::new(DEBUGFS).join(ty).join("times");
            let s = std::fs::read_to_string(&path)
                .map_err(|e| Failure::io(format!("read {}", path.display()), e))?;
            sum += s
                .trim()
                .parse::<i64>()
                .map_err(|e| Failure::Check(format!("{}: {e}", path.display())))?;
        }
        Ok(sum)
    }
}

impl Drop for Knobs {
    fn drop(&mut self) {
        for (path, old) in self.saved.iter().rev() {
            if let Err(e) = std::fs::write(path, old) {
                log::warn!("cannot restore {}: {e}", path.display());
            }
        }
    }
}

/// A per-thread proc file written and read without allocating.
struct ProcKnob {
    fd: OwnedFd,
}

impl ProcKnob {
    fn open(name: &str) -> Result<ProcKnob> {
        let path = format!("/proc/thread-self/{name}");
        let fd = rustix::fs::open(path.as_str(), OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| Failure::os(format!("open {path}"), e))?;
        Ok(ProcKnob { fd })
    }

    /// Writes the decimal `n` (no allocation).
    fn write(&self, n: u32) -> std::result::Result<(), Errno> {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        let mut v = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        rustix::io::pwrite(&self.fd, &digits[i..], 0).map(drop)
    }

    /// Reads the decimal value (no allocation).
    fn read(&self) -> std::result::Result<u32, Errno> {
        let mut buf = [0u8; 16];
        let n = rustix::io::pread(&self.fd, &mut buf, 0)?;
        Ok(buf[..n]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0')))
    }
}

/// What a call under test produced; dropped only after disarming.
enum Made {
    Nothing,
    Fd(#[allow(dead_code)] OwnedFd),
    Map(#[allow(dead_code)] RawMap),
}

/// Objects a call needs, made before arming.
struct Setup {
    dev: OwnedFd,
    buf: OwnedFd,
    fence: OwnedFd,
    /// A signalled fence, the job's in-fence: adding its callback allocates.
    signalled: OwnedFd,
}

/// The calls under test.
#[derive(Clone, Copy, Debug)]
enum Call {
    Open,
    GetInfo,
    AllocPage,
    Alloc64k,
    FenceNoBuffer,
    FenceWithBuffer,
    Signal,
    Wait,
    ExportSyncFile,
    Mmap,
    SetName,
    Job,
}

const CALLS: [Call; 12] = [
    Call::Open,
    Call::GetInfo,
    Call::AllocPage,
    Call::Alloc64k,
    Call::FenceNoBuffer,
    Call::FenceWithBuffer,
    Call::Signal,
    Call::Wait,
    Call::ExportSyncFile,
    Call::Mmap,
    Call::SetName,
    Call::Job,
];

fn fd_at(bytes: &[u8], off: usize) -> i32 {
    i32::from_ne_bytes(bytes[off..off + 4].try_into().expect("4 bytes"))
}

impl Call {
    /// Makes what the call needs (not under injection).
    fn setup(ctx: &Ctx) -> Result<Setup> {
        let dev = ctx.open()?;
        let buf = dev.alloc(1)?;
        // In this order: fences of a file signal in seqno order.
        let signalled = dev.create_fence(None)?;
        dev.signal(&signalled, None)?;
        let fence = dev.create_fence(None)?;
        Ok(Setup {
            dev: dev_fd(dev)?,
            buf: buf.into(),
            fence: fence.into_sync_file().into(),
            signalled: signalled.into_sync_file().into(),
        })
    }

    /// Performs the call; no allocation, one system call.
    fn perform(self, s: &Setup, path: &CStr) -> std::result::Result<Made, Errno> {
        let dev = s.dev.as_fd();
        match self {
            Call::Open => {
                rustix::fs::open(path, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map(Made::Fd)
            }
            Call::GetInfo => {
                let mut b = [0u8; u::DppInfo::SIZE];
                ioctl_bytes(dev, u::DPP_IOCTL_GET_INFO, &mut b).map(|_| Made::Nothing)
            }
            Call::AllocPage | Call::Alloc64k => {
                let size = if matches!(self, Call::AllocPage) {
                    1
                } else {
                    1 << 16
                };
                let mut b = DppAlloc {
                    size,
                    ..Default::default()
                }
                .to_ne_bytes();
                ioctl_bytes(dev, u::DPP_IOCTL_ALLOC, &mut b)
                    .map(|_| Made::Fd(sys::adopt_fd(fd_at(&b, 12))))
            }
            Call::FenceNoBuffer | Call::FenceWithBuffer => {
                let (dmabuf_fd, usage) = if matches!(self, Call::FenceNoBuffer) {
                    (-1, u::DPP_USAGE_NONE)
                } else {
                    (s.buf.as_raw_fd(), u::DPP_USAGE_WRITE)
                };
                let mut b = DppFenceCreate {
                    dmabuf_fd,
                    usage,
                    ..Default::default()
                }
                .to_ne_bytes();
                ioctl_bytes(dev, u::DPP_IOCTL_CREATE_FENCE, &mut b)
                    .map(|_| Made::Fd(sys::adopt_fd(fd_at(&b, 12))))
            }
            Call::Signal => {
                let mut b = DppFenceSignal {
                    fence_fd: s.fence.as_raw_fd(),
                    ..Default::default()
                }
                .to_ne_bytes();
                ioctl_bytes(dev, u::DPP_IOCTL_SIGNAL_FENCE, &mut b).map(|_| Made::Nothing)
            }
            Call::Wait => {
                let mut b = DppFenceWait {
                    fence_fd: s.fence.as_raw_fd(),
                    ..Default::default()
                }
                .to_ne_bytes();
                match ioctl_bytes(dev, u::DPP_IOCTL_WAIT_FENCE, &mut b) {
                    Err(Errno::TIME) | Ok(_) => Ok(Made::Nothing),
                    Err(e) => Err(e),
                }
            }
            Call::ExportSyncFile => {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&(sys::SYNC_READ as u32).to_ne_bytes());
                ioctl_bytes(s.buf.as_fd(), sys::DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &mut b)
                    .map(|_| Made::Fd(sys::adopt_fd(fd_at(&b, 4))))
            }
            Call::Mmap => RawMap::shared(s.buf.as_fd(), 4096, 0).map(Made::Map),
            Call::SetName => sys::dma_buf_set_name(s.buf.as_fd(), c"fault").map(|()| Made::Nothing),
            Call::Job => {
                let mut b = DppJob {
                    op: u::DPP_JOB_FILL,
                    dst_fd: s.buf.as_raw_fd(),
                    src_fd: -1,
                    size: 4096,
                    pattern: 0x0f0f,
                    in_fence_fds: {
                        let mut fds = [-1; u::DPP_JOB_MAX_IN_FENCES];
                        fds[0] = s.signalled.as_raw_fd();
                        fds
                    },
                    ..Default::default()
                }
                .to_ne_bytes();
                ioctl_bytes(dev, u::DPP_IOCTL_SUBMIT_JOB, &mut b).map(|_| {
                    Made::Fd(sys::adopt_fd(fd_at(
                        &b,
                        core::mem::offset_of!(DppJob, out_fence_fd),
                    )))
                })
            }
        }
    }
}

fn dev_fd(dev: dmapingpong::Device) -> Result<OwnedFd> {
    dev.as_fd()
        .try_clone_to_owned()
        .map_err(|e| Failure::io("dup the device", e))
}

fn path_cstr(ctx: &Ctx) -> Result<std::ffi::CString> {
    std::ffi::CString::new(ctx.device.as_os_str().as_encoded_bytes())
        .map_err(|e| Failure::Check(format!("device path: {e}")))
}

/// A CREATE_FENCE that failed must not leave its fence pending in the
/// buffer's reservation (where nobody could signal it until the file is
/// closed): the buffer's write fences are all signalled, `poll(POLLIN)` is
/// ready at once.
fn expect_no_pending_write_fence(buf: &OwnedFd, n: impl std::fmt::Display) -> Result<()> {
    let mut fds = [rustix::event::PollFd::new(
        buf,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let ready = rustix::event::poll(&mut fds, Some(&zero))
        .map_err(|e| Failure::os("poll the dma-buf", e))?;
    if ready == 0 {
        return Err(Failure::Check(format!(
            "CREATE_FENCE failed with allocation {n} failing, but left a pending write fence \
             in the buffer's reservation"
        )));
    }
    Ok(())
}

/// A job submitted while an allocation failed must still signal its
/// out-fence, without error.
fn expect_job_done(fence: &OwnedFd, ctx: &Ctx, n: u32) -> Result<()> {
    let fence = fence
        .try_clone()
        .map_err(|e| Failure::io("dup the job's fence", e))?;
    // Everything that allocates (the dependencies' callbacks included) comes before the job is
    // published: a job that was submitted runs.
    match SyncFile::from_fd(fence).wait(ctx.timeout)? {
        FenceStatus::Signalled => Ok(()),
        other => Err(Failure::Check(format!(
            "SUBMIT_JOB succeeded with allocation {n} failing, but its fence is {other:?}, \
             expected signalled"
        ))),
    }
}

/// Phase 1: `fail-nth` over every allocation of every call.
fn systematic(ctx: &Ctx, diags: &mut Diags) -> Result<u64> {
    let nth = ProcKnob::open("fail-nth")?;
    let path = path_cstr(ctx)?;
    let mut injected_total = 0;
    let mut summary = Vec::new();
    for call in CALLS {
        let baseline = ctx.usage()?;
        let mut injected = 0;
        let mut failed = 0;
        let mut n = 1;
        loop {
            if n > ctx.plan.fail_nth_max {
                summary.push(format!("{call:?}: >{} allocations (stopped)", n - 1));
                break;
            }
            let setup = Call::setup(ctx)?;
            nth.write(n).map_err(|e| Failure::os("write fail-nth", e))?;
            let r = call.perform(&setup, &path);
            let left = nth.read();
            let disarm = nth.write(0);
            let left = left.map_err(|e| Failure::os("read fail-nth", e))?;
            disarm.map_err(|e| Failure::os("reset fail-nth", e))?;
            let was_injected = left == 0;
            match (&r, was_injected) {
                (Ok(_), _) => {}
                (Err(e), true) if CLEAN.contains(e) => {
                    failed += 1;
                    if matches!(call, Call::FenceWithBuffer) {
                        expect_no_pending_write_fence(&setup.buf, n)?;
                    }
                }
                (Err(e), _) => {
                    return Err(Failure::Unexpected {
                        op: format!(
                            "{call:?} with allocation {n} failing (injected: {was_injected})"
                        ),
                        got: crate::error::outcome(Some(*e)),
                        expected: "ok or ENOMEM".into(),
                    });
                }
            }
            if let (Call::Job, Ok(Made::Fd(fence))) = (call, &r) {
                expect_job_done(fence, ctx, n)?;
            }
            drop(r);
            drop(setup);
            if !was_injected {
                summary.push(format!(
                    "{call:?}: {} allocation(s), {failed} failed cleanly",
                    n - 1
                ));
                break;
            }
            injected += 1;
            n += 1;
        }
        injected_total += injected;
        ctx.expect_baseline(baseline, &format!("after injecting into {call:?}"))?;
    }
    diags.push(format!("fail-nth: {}", summary.join(", ")));
    Ok(injected_total)
}

/// Phase 2: task-filter, probability 100, interval k, times 1.
fn task_filter(ctx: &Ctx, knobs: &mut Knobs, diags: &mut Diags) -> Result<u64> {
    let make_it_fail = ProcKnob::open("make-it-fail")?;
    let path = path_cstr(ctx)?;
    let baseline = ctx.usage()?;
    let mut injected = 0;
    let mut failed = 0;
    let mut calls = 0;
    for interval in [1u64, 2, 3, 5, 8, 13, 21] {
        for round in 0..ctx.plan.filter_ops.div_ceil(CALLS.len() as u64) {
            knobs.set("interval", &interval.to_string())?;
            knobs.set("times", "1")?;
            knobs.set("probability", "100")?;
            let before = knobs.times()?;
            for call in CALLS {
                let setup = Call::setup(ctx)?;
                make_it_fail
                    .write(1)
                    .map_err(|e| Failure::os("write make-it-fail", e))?;
                let r = call.perform(&setup, &path);
                let off = make_it_fail.write(0);
                off.map_err(|e| Failure::os("reset make-it-fail", e))?;
                calls += 1;
                match &r {
                    Ok(_) => {}
                    Err(e) if CLEAN.contains(e) => failed += 1,
                    Err(e) => {
                        return Err(Failure::Unexpected {
                            op: format!(
                                "{call:?} with task-filter interval {interval} round {round}"
                            ),
                            got: crate::error::outcome(Some(*e)),
                            expected: "ok or ENOMEM".into(),
                        });
                    }
                }
            }
            let after = knobs.times()?;
            injected += (before - after).max(0) as u64;
            knobs.set("probability", "0")?;
        }
    }
    ctx.expect_baseline(baseline, "after the task-filter phase")?;
    diags.push(format!(
        "task-filter: {calls} calls, {injected} failures injected, {failed} calls failed cleanly"
    ));
    Ok(injected)
}

/// The platform driver's directory in sysfs.
const DRIVER_DIR: &str = "/sys/bus/platform/drivers/dmapingpong";
/// Most allocations of one bind tried (a probe makes a few hundred).
const PROBE_NTH_MAX: u32 = 3000;

/// The name of the device bound to the driver (its sysfs link in the driver's directory).
fn bound_device() -> Result<Option<String>> {
    let entries =
        std::fs::read_dir(DRIVER_DIR).map_err(|e| Failure::io(format!("read {DRIVER_DIR}"), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Failure::io(format!("read {DRIVER_DIR}"), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if link && name != "module" {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

/// Pages of the pool's CMA area in use; fails without `CONFIG_CMA_DEBUGFS`.
fn cma_used() -> Result<u64> {
    match super::cma_used()? {
        Some(used) => Ok(used),
        None => fail!("no CMA area of the pool in /sys/kernel/debug/cma (CONFIG_CMA_DEBUGFS)"),
    }
}

/// Writes the device's name to the driver's `bind` or `unbind` file.
fn bind_file(file: &OwnedFd, dev: &str) -> std::result::Result<(), Errno> {
    rustix::io::write(file, dev.as_bytes()).map(drop)
}

/// Phase 3: the probe path. The device is unbound from the driver and bound again with
/// `fail-nth` failing the n-th allocation of the bind, n = 1, 2, ..., until a bind does not
/// reach its n-th allocation. A probe that fails must undo all it did, in an order that frees
/// every page to where it came from: after it the pool's CMA area holds no page (a pattern
/// buffer freed after the area was detached from the device goes to the page allocator and
/// stays counted in the area), and the device binds again.
fn probe(ctx: &Ctx, diags: &mut Diags) -> Result<u64> {
    let usage = ctx.usage()?;
    if usage.buffers != 0 || usage.fences_pending != 0 {
        diags.push(format!(
            "probe: skipped, the driver is in use ({usage}) and unbinding would cancel it"
        ));
        return Ok(0);
    }
    let Some(dev) = bound_device()? else {
        fail!("no device bound to {DRIVER_DIR}");
    };
    let open = |name: &str| {
        let path = format!("{DRIVER_DIR}/{name}");
        rustix::fs::open(
            path.as_str(),
            OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Failure::os(format!("open {path}"), e))
    };
    let (bind, unbind) = (open("bind")?, open("unbind")?);
    let unbound = |what: &str| -> Result<()> {
        if bound_device()?.is_some() {
            bind_file(&unbind, &dev).map_err(|e| Failure::os(format!("unbind {dev}"), e))?;
        }
        let used = cma_used()?;
        if used != 0 {
            fail!("{what}: {used} page(s) of the pool's CMA area still in use with {dev} unbound");
        }
        Ok(())
    };
    unbound("unbind")?;
    // The kernel log tells the failures that reached the probe (`really_probe()`: "probe with
    // driver ... failed") from those of the sysfs write before it.
    let mut kmsg = crate::kmsg::Kmsg::open().map_err(|e| Failure::os("open /dev/kmsg", e))?;
    let nth = ProcKnob::open("fail-nth")?;
    let (mut injected, mut failed, mut reached, mut n) = (0, 0, 0, 1);
    loop {
        if n > PROBE_NTH_MAX {
            fail!("bind of {dev} still reaches allocation {PROBE_NTH_MAX}");
        }
        nth.write(n).map_err(|e| Failure::os("write fail-nth", e))?;
        let r = bind_file(&bind, &dev);
        let left = nth.read();
        let disarm = nth.write(0);
        let left = left.map_err(|e| Failure::os("read fail-nth", e))?;
        disarm.map_err(|e| Failure::os("reset fail-nth", e))?;
        let bound = bound_device()?.is_some();
        match r {
            Ok(()) if !bound => fail!("bind of {dev} succeeded but it is not bound"),
            Ok(()) if left != 0 => break,
            Ok(()) => {}
            // A probe that defers is -EAGAIN from a sysfs bind (`device_driver_attach()`).
            Err(e) if !bound && (e == Errno::NOMEM || e == Errno::AGAIN) => {
                failed += 1;
                let from = kmsg.poll();
                reached += usize::from(
                    kmsg.lines()[from..]
                        .iter()
                        .any(|l| l.contains("probe with driver dmapingpong failed")),
                );
            }
            Err(e) => fail!("bind of {dev} with allocation {n} failing: {e}, bound: {bound}"),
        }
        injected += u64::from(left == 0);
        unbound(&format!("bind with allocation {n} failing ({r:?})"))?;
        n += 1;
    }
    if reached == 0 {
        fail!(
            "no failure of the {failed} failed binds of {dev} reached the probe ({} tries)",
            n - 1
        );
    }
    // Bound without a failure: usable again.
    let deadline = std::time::Instant::now() + ctx.timeout;
    while ctx.usage().is_err() {
        if std::time::Instant::now() > deadline {
            fail!(
                "{} did not come back after binding {dev}",
                ctx.device.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // What a probe allocates from the pool's CMA area (the DMA pattern buffer, with a channel):
    // without anything, the check above shows only that failed probes leave the pool empty.
    let used = cma_used()?;
    diags.push(format!(
        "probe: a bind of {dev} makes {} allocations; {failed} bind(s) failed, {reached} in the probe; none left a page of the pool's CMA area allocated (a bound {dev} uses {used})",
        n - 1
    ));
    Ok(injected)
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let present = TYPES
        .iter()
        .all(|t| Path::new(DEBUGFS).join(t).join("probability").exists())
        && Path::new("/proc/thread-self/fail-nth").exists();
    if !present {
        return Ok(Outcome::Skip("no fault injection in this kernel".into()));
    }
    let baseline = ctx.usage()?;
    let mut knobs = Knobs::new();
    knobs.set("probability", "0")?;
    knobs.set("verbose", "0")?;
    knobs.set("task-filter", "Y")?;
    knobs.set("space", "0")?;
    knobs.set("ignore-gfp-wait", "N")?;
    knobs.set("ignore-gfp-highmem", "N")?;
    knobs.set("min-order", "0")?;
    knobs.set("cache-filter", "N")?;
    let systematic = systematic(ctx, diags)?;
    let filtered = task_filter(ctx, &mut knobs, diags)?;
    let probe = probe(ctx, diags)?;
    drop(knobs);
    Figures::add(&ctx.figures.fault_injections, systematic + filtered + probe);
    diags.push(format!(
        "{} allocation failures injected ({systematic} fail-nth, {filtered} task-filter, {probe} probe)",
        systematic + filtered + probe
    ));
    // Everything works again.
    super::sanity_cycle(ctx)?;
    ctx.expect_baseline(baseline, "after fault injection")?;
    Ok(Outcome::Pass)
}
