//! Scenarios with the device in the loop: jobs that the exporter's engine
//! (the SoC's DMA controller, or the driver's CPU worker) runs on buffers,
//! synchronized with user space by fences.

use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use dmapingpong::uapi::{self, DppJob};
use dmapingpong::{
    Access, Device, DmaBuf, Engine, EngineStats, Errno, Fence, FenceStatus, Job, JobOp,
    SubmittedJob,
};

use crate::config::Config;
use crate::scenarios::{Diags, expect_errno};

fn timeout(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.timeout_ms)
}

/// A short wait that must expire on a pending fence.
const SHORT: Duration = Duration::from_millis(20);

/// The driver's directory on the platform bus: its devices, `bind`, `unbind`.
const DRIVER_SYSFS: &str = "/sys/bus/platform/drivers/dmapingpong";

/// The engine the device tree asks for: DMA if the exporter's node has a
/// `dmas` property (the driver then never falls back to the CPU), else
/// whatever the driver found.
fn expected_engine() -> Option<Engine> {
    let has_dmas = bound_devices().ok()?.iter().any(|name| {
        std::path::Path::new(DRIVER_SYSFS)
            .join(name)
            .join("of_node/dmas")
            .exists()
    });
    has_dmas.then_some(Engine::Dma)
}

/// The names of the devices bound to the driver.
fn bound_devices() -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(DRIVER_SYSFS).context(DRIVER_SYSFS)? {
        let entry = entry?;
        if entry.path().join("of_node").exists() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    Ok(names)
}

/// A job on the whole of `dst`, waiting for `in_fences`, or for the buffers'
/// reservations without them.
fn whole<'a>(job: Job<'a>, in_fences: &'a [std::os::fd::BorrowedFd<'a>]) -> Job<'a> {
    Job {
        in_fences,
        implicit_sync: in_fences.is_empty(),
        ..job
    }
}

fn fill<'a>(
    dst: &'a DmaBuf,
    pattern: u64,
    in_fences: &'a [std::os::fd::BorrowedFd<'a>],
) -> Job<'a> {
    whole(Job::fill(dst.as_fd(), pattern, dst.size()), in_fences)
}

fn copy<'a>(
    dst: &'a DmaBuf,
    src: &'a DmaBuf,
    in_fences: &'a [std::os::fd::BorrowedFd<'a>],
) -> Job<'a> {
    whole(Job::copy(dst.as_fd(), src.as_fd(), dst.size()), in_fences)
}

/// Waits for a job's fence and requires success.
fn wait_ok(cfg: &Config, job: &SubmittedJob, what: &str) -> anyhow::Result<()> {
    match job.fence.sync_file().wait(timeout(cfg))? {
        FenceStatus::Signalled => Ok(()),
        FenceStatus::Pending => bail!("{what}: not done after {} ms", cfg.timeout_ms),
        FenceStatus::Error(e) => bail!("{what}: failed with {}", dmapingpong::ErrnoName(e)),
    }
}

/// Checks that every word of `buf` is `f(index)`.
fn verify(cfg: &Config, buf: &DmaBuf, what: &str, f: impl Fn(usize) -> u64) -> anyhow::Result<()> {
    let mut map = buf.mmap()?;
    let cpu = map.begin(Access::Read, timeout(cfg))?;
    let words = cpu.words().iter().map(|w| w.load(Ordering::Relaxed));
    if let Some((i, got)) = words.enumerate().find(|&(i, v)| v != f(i)) {
        bail!(
            "{what}: word {i} (byte {}) is {got:#x}, expected {:#x}",
            i * 8,
            f(i)
        );
    }
    cpu.end()?;
    Ok(())
}

fn stats(cfg: &Config) -> anyhow::Result<EngineStats> {
    EngineStats::read(&cfg.jobs.debugfs).context("engine counters (is debugfs mounted?)")
}

/// The device fills a buffer with even values, user space checks them and
/// writes odd ones, the device copies the buffer to a second one, user space
/// checks the copy; `jobs.rounds` times. The engine counters must account
/// for every job and byte.
pub fn device_fill_copy(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let a = dev.alloc(cfg.buffer_size)?;
    let b = dev.alloc(cfg.buffer_size)?;
    let before = stats(cfg)?;
    let engine = before.kind();
    if let Some(expected) = expected_engine() {
        ensure!(
            engine == expected,
            "the device tree gives the exporter a DMA channel, but jobs run on {}",
            before.engine
        );
    }
    let mut copy_time = Duration::ZERO;
    for round in 0..cfg.jobs.rounds {
        let even = (round + 1) * 2;
        let job = dev.submit_job(&fill(&a, even, &[]))?;
        ensure!(
            job.engine == engine,
            "round {round}: job ran on {}, counters say {}",
            job.engine,
            before.engine
        );
        wait_ok(cfg, &job, &format!("round {round}: fill"))?;
        verify(cfg, &a, &format!("round {round}: filled buffer"), |_| even)?;
        let odd = |i: usize| (round << 32) | (2 * i as u64 + 1);
        let mut map = a.mmap()?;
        let cpu = map.begin(Access::Write, timeout(cfg))?;
        for (i, w) in cpu.words().iter().enumerate() {
            w.store(odd(i), Ordering::Relaxed);
        }
        cpu.end()?;
        drop(map);
        let start = Instant::now();
        let job = dev.submit_job(&copy(&b, &a, &[]))?;
        wait_ok(cfg, &job, &format!("round {round}: copy"))?;
        copy_time += start.elapsed();
        verify(cfg, &b, &format!("round {round}: copied buffer"), odd)?;
    }
    // Figures, not checks: the engine's copies against a CPU copy of the
    // same buffers by this process in the same run (through both mappings).
    let mut cpu_time = Duration::ZERO;
    let (mut map_a, mut map_b) = (a.mmap()?, b.mmap()?);
    for _ in 0..cfg.jobs.rounds {
        let start = Instant::now();
        let src = map_a.begin(Access::Read, timeout(cfg))?;
        let dst = map_b.begin(Access::Write, timeout(cfg))?;
        for (d, s) in dst.words().iter().zip(src.words()) {
            d.store(s.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        dst.end()?;
        src.end()?;
        cpu_time += start.elapsed();
    }
    let mb = (cfg.jobs.rounds * a.size()) as f64 / 1e6;
    diags.push(format!(
        "figures: {} copy jobs of {} bytes on {engine}: {:.1} MB/s (submit to signal); \
         user-space copy: {:.1} MB/s; ratio {:.2}",
        cfg.jobs.rounds,
        a.size(),
        mb / copy_time.as_secs_f64(),
        mb / cpu_time.as_secs_f64(),
        cpu_time.as_secs_f64() / copy_time.as_secs_f64()
    ));
    let after = stats(cfg)?;
    let jobs = 2 * cfg.jobs.rounds;
    let bytes = jobs * a.size();
    let (j0, b0) = before.of(engine);
    let (j1, b1) = after.of(engine);
    diags.push(after.to_string());
    ensure!(
        j1 - j0 == jobs && b1 - b0 == bytes,
        "{engine} counters grew by {} jobs and {} bytes, expected {jobs} and {bytes}",
        j1 - j0,
        b1 - b0
    );
    Ok(())
}

/// Size of the buffers of `large_jobs`: larger than one transfer of a DMA
/// job (8 segments of the controller, or of the 64 KiB pattern buffer for
/// fills: 512 KiB), at most a quarter of the pool.
const LARGE_JOB: u64 = 8 << 20;

/// Jobs that take several DMA transfers (the driver splits them: a
/// controller has a bounded pool of descriptors): a fill with a pattern of 8
/// different bytes, and a copy between unaligned offsets whose ranges cross
/// the transfers' boundaries, each checked word by word.
pub fn large_jobs(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let size = LARGE_JOB.min(dev.info()?.pool_size / 4);
    let a = dev.alloc(size)?;
    let b = dev.alloc(size)?;
    const PATTERN: u64 = 0x0123_4567_89ab_cdef;
    let job = dev.submit_job(&fill(&a, PATTERN, &[]))?;
    wait_ok(cfg, &job, "fill")?;
    verify(cfg, &a, "filled buffer", |_| PATTERN)?;
    let value = |i: usize| 0xdead_0000_0000_0000 | i as u64;
    let mut map = a.mmap()?;
    let cpu = map.begin(Access::Write, timeout(cfg))?;
    for (i, w) in cpu.words().iter().enumerate() {
        w.store(value(i), Ordering::Relaxed);
    }
    cpu.end()?;
    drop(map);
    // Destination bytes 16.. from source bytes 8..: word i from word i - 1.
    let job = dev.submit_job(&Job {
        op: JobOp::Copy {
            src: a.as_fd(),
            src_offset: 8,
        },
        dst_offset: 16,
        ..Job::copy(b.as_fd(), a.as_fd(), size - 16)
    })?;
    wait_ok(cfg, &job, "copy")?;
    verify(cfg, &b, "copied buffer", |i| {
        if i < 2 { 0 } else { value(i - 1) }
    })?;
    diags.push(format!(
        "a fill of {size} bytes and a copy of {} bytes at offsets 8 -> 16 on {}",
        size - 16,
        job.engine
    ));
    Ok(())
}

/// A chain of jobs linked only by in-fences, headed by a user fence, and a
/// job without dependencies submitted after them: nothing runs before the
/// head signals (the last job because the jobs of a file run in order), then
/// all run without any CPU wait between them, in order, on one fence context.
pub fn job_chain(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let size = cfg.buffer_size;
    let (a, b, c) = (dev.alloc(size)?, dev.alloc(size)?, dev.alloc(size)?);
    let head = dev.create_fence(None)?;
    let pattern = 0x5eed_0000_0000_0002;
    let j1 = dev.submit_job(&fill(&a, pattern, &[head.as_fd()]))?;
    let j2 = dev.submit_job(&copy(&b, &a, &[j1.fence.as_fd()]))?;
    let j3 = dev.submit_job(&copy(&c, &b, &[j2.fence.as_fd()]))?;
    // No dependency of its own, but the jobs of a file run in order.
    let d = dev.alloc(size)?;
    let j4 = Job {
        implicit_sync: false,
        ..fill(&d, pattern, &[])
    };
    let j4 = dev.submit_job(&j4)?;
    let fences = [&j1.fence, &j2.fence, &j3.fence, &j4.fence];
    for (i, f) in fences.iter().enumerate() {
        ensure!(
            f.sync_file().wait(SHORT)? == FenceStatus::Pending,
            "job {} ran before the head fence signalled",
            i + 1
        );
    }
    ensure!(
        fences
            .windows(2)
            .all(|w| w[0].context() == w[1].context() && w[1].seqno() == w[0].seqno() + 1),
        "job fences {:?} are not consecutive on one context",
        fences.map(|f| (f.context(), f.seqno()))
    );
    ensure!(
        j1.fence.context() != head.context(),
        "jobs share the fence context of CREATE_FENCE"
    );
    // CPU access waits for the chain's pending write fence in the buffer's
    // reservation, within its timeout; the unsynchronised view shows that
    // nothing was written yet.
    let mut map = c.mmap()?;
    match map.begin(Access::Read, SHORT) {
        Err(dmapingpong::Error::Timeout { .. }) => {}
        Err(e) => bail!("CPU read access to a buffer with a pending job: {e}"),
        Ok(_) => bail!("CPU read access started while a job writing the buffer was pending"),
    }
    let mut words = map.unsynced().iter().map(|w| w.load(Ordering::Relaxed));
    if let Some(i) = words.position(|w| w != 0) {
        bail!("last buffer written (word {i}) before the chain ran");
    }
    drop(map);
    dev.signal(&head, None)?;
    wait_ok(cfg, &j4, "job after the chain")?;
    for (i, f) in fences.iter().enumerate() {
        ensure!(
            f.sync_file().status()? == FenceStatus::Signalled,
            "job {} not signalled without error when the last one was",
            i + 1
        );
    }
    verify(cfg, &c, "last buffer of the chain", |_| pattern)?;
    verify(cfg, &d, "buffer of the job after the chain", |_| pattern)?;
    diags.push(format!(
        "4 jobs on context {} seqnos {}..={}",
        j1.fence.context(),
        j1.fence.seqno(),
        j4.fence.seqno()
    ));
    Ok(())
}

fn expect_status(f: &Fence, cfg: &Config, errno: Errno, what: &str) -> anyhow::Result<()> {
    match f.sync_file().wait(timeout(cfg))? {
        FenceStatus::Error(e) if e == errno => Ok(()),
        other => bail!(
            "{what}: fence {other:?}, expected error {}",
            dmapingpong::ErrnoName(errno)
        ),
    }
}

/// Errors reach user space through the out-fences and nothing hangs: an
/// in-fence signalled with an error fails its job and the jobs chained to
/// it, without touching their buffers; a failed transfer (injected) fails
/// its job with EIO; an in-fence of a file that is closed fails with
/// ECANCELED; bad arguments are refused with EINVAL.
pub fn job_errors(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let size = cfg.buffer_size;
    let (a, b) = (dev.alloc(size)?, dev.alloc(size)?);
    let before = stats(cfg)?;

    // An in-fence with an error: the job and the one chained to it fail.
    let head = dev.create_fence(None)?;
    let j1 = dev.submit_job(&fill(&a, 2, &[head.as_fd()]))?;
    let j2 = dev.submit_job(&copy(&b, &a, &[j1.fence.as_fd()]))?;
    dev.signal(&head, Some(Errno::IO))?;
    expect_status(&j2.fence, cfg, Errno::IO, "copy after a failed fill")?;
    expect_status(&j1.fence, cfg, Errno::IO, "fill with a failed in-fence")?;
    verify(cfg, &a, "destination of the failed fill", |_| 0)?;
    verify(cfg, &b, "destination of the failed copy", |_| 0)?;

    // A failed transfer: the job fails with EIO, the next one works.
    EngineStats::inject_transfer_failures(&cfg.jobs.debugfs, 1)?;
    let j3 = dev.submit_job(&fill(&a, 4, &[]))?;
    expect_status(&j3.fence, cfg, Errno::IO, "fill with a failed transfer")?;
    verify(cfg, &a, "destination of the failed transfer", |_| 0)?;
    let j4 = dev.submit_job(&fill(&a, 6, &[]))?;
    wait_ok(cfg, &j4, "fill after the failed transfer")?;
    verify(cfg, &a, "fill after the failed transfer", |_| 6)?;

    // A dead producer: its pending fence is cancelled, the job fails.
    let other = Device::open(&cfg.device)?;
    let orphan = other.create_fence(None)?;
    let j5 = dev.submit_job(&fill(&b, 8, &[orphan.as_fd()]))?;
    ensure!(
        j5.fence.sync_file().wait(SHORT)? == FenceStatus::Pending,
        "job ran before its in-fence signalled"
    );
    drop(other);
    expect_status(
        &j5.fence,
        cfg,
        Errno::CANCELED,
        "job waiting for a closed file",
    )?;

    let after = stats(cfg)?;
    ensure!(
        after.jobs_failed - before.jobs_failed == 4,
        "jobs_failed grew by {}, expected 4",
        after.jobs_failed - before.jobs_failed
    );
    diags.push(after.to_string());

    // Bad arguments.
    let valid = DppJob {
        op: uapi::DPP_JOB_FILL,
        dst_fd: std::os::fd::AsRawFd::as_raw_fd(&a.as_fd()),
        src_fd: -1,
        size: a.size(),
        in_fence_fds: [-1; uapi::DPP_JOB_MAX_IN_FENCES],
        ..Default::default()
    };
    let raw = |arg: DppJob| dev.submit_job_raw(arg).map(|_| ());
    raw(valid).context("the valid job of the bad-argument checks")?;
    let cases: [(&str, DppJob); 8] = [
        ("unknown op", DppJob { op: 7, ..valid }),
        (
            "unknown flag",
            DppJob {
                flags: 1 << 5,
                ..valid
            },
        ),
        (
            "reserved set",
            DppJob {
                reserved: [0, 1],
                ..valid
            },
        ),
        ("size 0", DppJob { size: 0, ..valid }),
        ("unaligned size", DppJob { size: 12, ..valid }),
        (
            "range past the end",
            DppJob {
                dst_offset: 8,
                ..valid
            },
        ),
        (
            "overlapping copy",
            DppJob {
                op: uapi::DPP_JOB_COPY,
                src_fd: valid.dst_fd,
                size: 16,
                dst_offset: 8,
                ..valid
            },
        ),
        (
            "in-fence that is a dma-buf",
            DppJob {
                in_fence_fds: [valid.dst_fd, -1, -1, -1],
                ..valid
            },
        ),
    ];
    for (what, arg) in cases {
        expect_errno(raw(arg), Errno::INVAL, &format!("SUBMIT_JOB with {what}"))?;
    }
    Ok(())
}

/// The exporter unbound through sysfs while a file is open and a job waits
/// for its in-fence: unbinding does not wait for that job; the job still
/// signals when its in-fence does, with ECANCELED if it was a DMA job (the
/// channel was released at unbind) and done if the CPU worker had it; ALLOC
/// on the open file fails with ENODEV, jobs submitted on it afterwards run on
/// the CPU worker; binding again fails with EBUSY while a buffer of the old
/// binding is open, and works once it is closed, with the engine the device
/// had (the device is bound again also when a check failed, so that the tests
/// after this one have their device).
pub fn engine_unbind(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let names = bound_devices()?;
    let [name] = names.as_slice() else {
        bail!("expected one device bound to the driver, found {names:?}");
    };
    let before = stats(cfg)?;
    let dev = Device::open(&cfg.device)?;
    let a = dev.alloc(cfg.buffer_size)?;
    let head = dev.create_fence(None)?;
    let waiting = dev.submit_job(&fill(&a, 2, &[head.as_fd()]))?;

    let start = Instant::now();
    std::fs::write(format!("{DRIVER_SYSFS}/unbind"), name)
        .with_context(|| format!("unbind {name}"))?;
    let unbind_ms = start.elapsed().as_millis();
    // The old binding's objects are dropped at the end of the checks but the
    // buffer, which they return.
    let unbound = move || -> anyhow::Result<DmaBuf> {
        ensure!(
            waiting.fence.sync_file().wait(SHORT)? == FenceStatus::Pending,
            "the job waiting for its in-fence signalled at unbind"
        );
        dev.signal(&head, None)?;
        let status = waiting.fence.sync_file().wait(timeout(cfg))?;
        match (waiting.engine, status) {
            (Engine::Dma, FenceStatus::Error(e)) if e == Errno::CANCELED => {
                verify(cfg, &a, "destination of the cancelled DMA job", |_| 0)?
            }
            (Engine::Cpu, FenceStatus::Signalled) => {
                verify(cfg, &a, "destination of the CPU job after unbind", |_| 2)?
            }
            (engine, status) => bail!(
                "a {engine} job waiting at unbind ended {status:?}, expected {}",
                if engine == Engine::Dma {
                    "ECANCELED"
                } else {
                    "done"
                }
            ),
        }
        expect_errno(
            dev.alloc(cfg.buffer_size).map(|_| ()),
            Errno::NODEV,
            "ALLOC on a file opened before unbind",
        )?;
        let later = dev.submit_job(&fill(&a, 4, &[]))?;
        ensure!(
            later.engine == Engine::Cpu,
            "a job submitted after unbind runs on {}",
            later.engine
        );
        wait_ok(cfg, &later, "fill submitted after unbind")?;
        verify(cfg, &a, "fill submitted after unbind", |_| 4)?;
        Ok(a)
    };
    let early_bind = match unbound() {
        Ok(a) => {
            let refused = std::fs::write(format!("{DRIVER_SYSFS}/bind"), name);
            drop(a);
            refused
        }
        Err(e) => {
            bind(cfg, name)?;
            return Err(e);
        }
    };
    let rebound = match early_bind {
        Err(e) if e.raw_os_error() == Some(Errno::BUSY.raw_os_error()) => bind(cfg, name)?,
        Err(e) => {
            bind(cfg, name)?;
            bail!("bind with a buffer of the old binding open: {e}, expected EBUSY");
        }
        Ok(()) => bail!("bind succeeded while a buffer of the old binding was open"),
    };
    ensure!(
        rebound.kind() == before.kind(),
        "bound again with engine {}, had {}",
        rebound.engine,
        before.engine
    );
    let dev = Device::open(&cfg.device)?;
    let b = dev.alloc(cfg.buffer_size)?;
    let job = dev.submit_job(&fill(&b, 6, &[]))?;
    ensure!(
        job.engine == before.kind(),
        "a job after bind runs on {}, expected {}",
        job.engine,
        before.kind()
    );
    wait_ok(cfg, &job, "fill after bind")?;
    verify(cfg, &b, "fill after bind", |_| 6)?;
    diags.push(format!(
        "unbind with a {} job waiting: {unbind_ms} ms; bound again: {}",
        before.kind(),
        rebound.engine
    ));
    Ok(())
}

/// Binds the device `name` to the driver, retrying while the driver refuses
/// with EBUSY (objects of the old binding are still being released: a job's
/// work may drop its buffers just after its fence signalled), and waits for
/// its device node and engine counters; returns the counters.
fn bind(cfg: &Config, name: &str) -> anyhow::Result<EngineStats> {
    let start = Instant::now();
    loop {
        match std::fs::write(format!("{DRIVER_SYSFS}/bind"), name) {
            Ok(()) => break,
            Err(e)
                if e.raw_os_error() == Some(Errno::BUSY.raw_os_error())
                    && start.elapsed() < timeout(cfg) =>
            {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e).with_context(|| format!("bind {name}")),
        }
    }
    loop {
        if let Ok(stats) = EngineStats::read(&cfg.jobs.debugfs) {
            if cfg.device.exists() {
                return Ok(stats);
            }
        }
        ensure!(
            start.elapsed() < timeout(cfg),
            "{} not back within {} ms of bind",
            cfg.device.display(),
            cfg.timeout_ms
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
