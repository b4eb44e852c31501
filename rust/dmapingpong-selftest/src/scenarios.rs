//! The self-test scenarios, one KTAP test point each.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use dmapingpong::pingpong::{self, Mode, Params};
use dmapingpong::uapi::{DPP_FD_NO_CLOEXEC, DPP_UAPI_VERSION, DppAlloc};
use dmapingpong::{
    Access, Channel, Device, DmaBuf, Errno, FenceStatus, Message, PollFlags, Usage, pattern,
};
use rustix::io::FdFlags;

use crate::child::{self, Role};
use crate::config::Config;

/// Diagnostic lines of a test, printed before its result.
pub type Diags = Vec<String>;

/// A test body: fails with the reason, may add diagnostics.
pub type TestFn = dyn Fn(&Config, &mut Diags) -> anyhow::Result<()>;

/// A named test.
pub struct Test {
    /// KTAP test name.
    pub name: String,
    /// The test body.
    pub run: Box<TestFn>,
}

/// Returned (through `anyhow`) by a test that cannot run here: reported as
/// `# SKIP` with the reason.
#[derive(Debug)]
pub struct Skip(pub String);

impl std::fmt::Display for Skip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Skip {}

fn test(name: &str, run: impl Fn(&Config, &mut Diags) -> anyhow::Result<()> + 'static) -> Test {
    Test {
        name: name.into(),
        run: Box::new(run),
    }
}

/// The tests `cfg` asks for, in order; `driver_present` first,
/// `module_pinned` last.
pub fn plan(cfg: &Config) -> Vec<Test> {
    let mut tests = vec![
        test("driver_present", driver_present),
        test("alloc_mmap_zeroed", alloc_mmap_zeroed),
    ];
    for &mode in &cfg.modes {
        tests.push(test(&format!("pingpong_{mode}"), move |cfg, diags| {
            pingpong_mode(cfg, diags, mode)
        }));
    }
    tests.push(test("device_fill_copy", crate::jobs::device_fill_copy));
    tests.push(test("large_jobs", crate::jobs::large_jobs));
    tests.push(test("job_chain", crate::jobs::job_chain));
    tests.push(test("job_errors", crate::jobs::job_errors));
    if cfg.jobs.unbind_check {
        tests.push(test("engine_unbind", crate::jobs::engine_unbind));
    }
    tests.push(test("capture_copy", capture_copy));
    tests.push(test("fence_semantics", fence_semantics));
    tests.push(test("lifetimes_close_order", lifetimes_close_order));
    tests.push(test("peer_exits_unsignalled", peer_exits_unsignalled));
    tests.push(test("peer_sends_memfd", peer_sends_memfd));
    if cfg.module.unload_check {
        tests.push(test("module_pinned", module_pinned));
    }
    tests
}

fn timeout(cfg: &Config) -> Duration {
    Duration::from_millis(cfg.timeout_ms)
}

/// A short wait that must expire on a pending fence.
const SHORT: Duration = Duration::from_millis(20);

/// Expects `r` to fail with `errno`.
pub fn expect_errno<T>(r: dmapingpong::Result<T>, errno: Errno, what: &str) -> anyhow::Result<()> {
    match r {
        Ok(_) => bail!(
            "{what}: succeeded, expected {}",
            dmapingpong::ErrnoName(errno)
        ),
        Err(e) if e.errno() == Some(errno) => Ok(()),
        Err(e) => bail!("{what}: {e}, expected {}", dmapingpong::ErrnoName(errno)),
    }
}

fn driver_present(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(&cfg.device).with_context(|| format!("stat {}", cfg.device.display()))?;
    ensure!(
        meta.file_type().is_char_device(),
        "{} is not a character device",
        cfg.device.display()
    );
    let mode = meta.permissions().mode() & 0o7777;
    ensure!(
        mode == 0o660,
        "{} has mode {mode:04o}, expected 0660",
        cfg.device.display()
    );
    let info = Device::open(&cfg.device)?.info()?;
    diags.push(format!(
        "version {} page_size {} pool_size {} pool_used {} buffers {}",
        info.version, info.page_size, info.pool_size, info.pool_used, info.buffers
    ));
    ensure!(
        info.version == DPP_UAPI_VERSION,
        "version {}, expected {DPP_UAPI_VERSION}",
        info.version
    );
    ensure!(
        info.pool_size > 0 && info.page_size > 0,
        "pool_size {} page_size {}",
        info.pool_size,
        info.page_size
    );
    Ok(())
}

fn cloexec(buf: &DmaBuf) -> anyhow::Result<bool> {
    Ok(rustix::io::fcntl_getfd(buf)
        .context("F_GETFD")?
        .contains(FdFlags::CLOEXEC))
}

fn alloc_mmap_zeroed(cfg: &Config, _: &mut Diags) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let info = dev.info()?;
    let page = u64::from(info.page_size);
    let want = cfg.buffer_size + 1;
    let buf = dev.alloc(want)?;
    ensure!(
        buf.size() == want.div_ceil(page) * page,
        "asked {want} bytes, got {} (page {page})",
        buf.size()
    );
    let mut map = buf.mmap()?;
    let cpu = map.begin(Access::Read, timeout(cfg))?;
    let mut words = cpu.words().iter().map(|w| w.load(Ordering::Relaxed));
    if let Some(i) = words.position(|x| x != 0) {
        bail!("new buffer not zeroed at byte offset {}", i * 8);
    }
    cpu.end()?;
    let cpu = map.begin(Access::Write, timeout(cfg))?;
    pattern::fill(cpu.words(), 0xAB, 0);
    cpu.end()?;
    let cpu = map.begin(Access::Read, timeout(cfg))?;
    pattern::verify(cpu.words(), 0xAB, 0)?;
    cpu.end()?;
    ensure!(cloexec(&buf)?, "dma-buf fd without FD_CLOEXEC");
    let no_cloexec = dev.alloc_raw(DppAlloc {
        size: page,
        flags: DPP_FD_NO_CLOEXEC,
        ..Default::default()
    })?;
    ensure!(
        !cloexec(&no_cloexec)?,
        "DPP_FD_NO_CLOEXEC fd has FD_CLOEXEC"
    );
    expect_errno(dev.alloc(0), Errno::INVAL, "ALLOC of 0 bytes")?;
    expect_errno(
        dev.alloc(info.pool_size + 1),
        Errno::INVAL,
        "ALLOC larger than the pool",
    )?;
    expect_errno(
        dev.alloc_raw(DppAlloc {
            size: page,
            reserved: [0, 1],
            ..Default::default()
        }),
        Errno::INVAL,
        "ALLOC with reserved set",
    )?;
    expect_errno(
        dev.alloc_raw(DppAlloc {
            size: page,
            flags: 1 << 1,
            ..Default::default()
        }),
        Errno::INVAL,
        "ALLOC with flag 1 << 1",
    )?;
    Ok(())
}

/// Starts this executable as a child in `role`; returns it and our end of
/// its socket (with the scenario timeout).
fn spawn(cfg: &Config, role: Role) -> anyhow::Result<(Child, Channel)> {
    let (ours, theirs) = Channel::pair()?;
    let exe = std::env::current_exe().context("current_exe")?;
    // The Command (holding the child's socket end) is dropped right after
    // spawning, so that the child's exit shows as end of stream.
    let child = Command::new(exe)
        .arg("child")
        .arg(
            role.to_possible_value()
                .context("role without a name")?
                .get_name(),
        )
        .arg("--device")
        .arg(&cfg.device)
        .arg("--timeout-ms")
        .arg(cfg.timeout_ms.to_string())
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .spawn()
        .context("spawn child")?;
    ours.set_timeout(timeout(cfg))?;
    Ok((child, ours))
}

/// Waits up to `timeout` for `child` to exit (killing it after that).
fn reap(mut child: Child, role: Role, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().context("wait for child")? {
            return child::check_exit(status, role);
        }
        if Instant::now() > deadline {
            child.kill().context("kill child")?;
            child.wait().context("wait for child")?;
            bail!(
                "child {role:?} did not exit within {} ms",
                timeout.as_millis()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pingpong_mode(cfg: &Config, diags: &mut Diags, mode: Mode) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let params = Params {
        mode,
        buffers: cfg.buffers,
        size: cfg.buffer_size,
        rounds: cfg.rounds,
        timeout: timeout(cfg),
    };
    let (child, chan) = spawn(cfg, Role::Pong)?;
    let result = pingpong::ping(&dev, &chan, &params);
    drop(chan);
    let reaped = reap(child, Role::Pong, timeout(cfg));
    let stats = result?;
    reaped?;
    diags.push(format!(
        "{mode}: {} buffers of {} bytes: {stats}",
        cfg.buffers, cfg.buffer_size
    ));
    Ok(())
}

/// Expects `r` to fail with [`dmapingpong::Error::Timeout`].
fn expect_timeout<T>(r: dmapingpong::Result<T>, what: &str) -> anyhow::Result<()> {
    match r {
        Err(dmapingpong::Error::Timeout { .. }) => Ok(()),
        Err(e) => bail!("{what}: {e}, expected a timeout"),
        Ok(_) => bail!("{what}: did not wait"),
    }
}

fn expect_status(got: FenceStatus, want: FenceStatus, what: &str) -> anyhow::Result<()> {
    ensure!(got == want, "{what}: status {got:?}, expected {want:?}");
    Ok(())
}

fn fence_semantics(cfg: &Config, _: &mut Diags) -> anyhow::Result<()> {
    let dev = Device::open(&cfg.device)?;
    let pending_before = dev.info()?.fences_pending;
    // Seqnos count up by one on one context.
    let fences = (0..3)
        .map(|_| dev.create_fence(None))
        .collect::<Result<Vec<_>, _>>()?;
    for w in fences.windows(2) {
        ensure!(
            w[1].context() == w[0].context(),
            "contexts {} and {} differ",
            w[0].context(),
            w[1].context()
        );
        ensure!(
            w[1].seqno() == w[0].seqno() + 1,
            "seqno {} after {}",
            w[1].seqno(),
            w[0].seqno()
        );
    }
    ensure!(
        dev.info()?.fences_pending == pending_before + 3,
        "fences_pending did not count the new fences"
    );
    for f in &fences {
        dev.signal(f, None)?;
    }
    // An error travels to the waiters.
    let f = dev.create_fence(None)?;
    dev.signal(&f, Some(Errno::IO))?;
    expect_status(
        dev.wait_fence(&f, Duration::ZERO)?,
        FenceStatus::Error(Errno::IO),
        "WAIT_FENCE after signal(-EIO)",
    )?;
    expect_status(
        f.sync_file().status()?,
        FenceStatus::Error(Errno::IO),
        "SYNC_IOC_FILE_INFO after signal(-EIO)",
    )?;
    expect_errno(dev.signal(&f, None), Errno::INVAL, "signalling twice")?;
    // Out of order.
    let (a, b) = (dev.create_fence(None)?, dev.create_fence(None)?);
    expect_errno(
        dev.signal(&b, None),
        Errno::INVAL,
        "signalling a newer fence first",
    )?;
    dev.signal(&a, None)?;
    dev.signal(&b, None)?;
    // Another file's fence.
    let other = Device::open(&cfg.device)?;
    let c = dev.create_fence(None)?;
    expect_errno(
        other.signal(&c, None),
        Errno::INVAL,
        "signalling another file's fence",
    )?;
    // Timeouts while pending, readiness after signalling.
    expect_status(
        dev.wait_fence(&c, SHORT)?,
        FenceStatus::Pending,
        "WAIT_FENCE on a pending fence (ETIME)",
    )?;
    expect_status(
        c.sync_file().wait(SHORT)?,
        FenceStatus::Pending,
        "poll() on a pending sync_file",
    )?;
    expect_status(
        c.sync_file().status()?,
        FenceStatus::Pending,
        "SYNC_IOC_FILE_INFO on a pending fence",
    )?;
    dev.signal(&c, None)?;
    expect_status(
        c.sync_file().wait(timeout(cfg))?,
        FenceStatus::Signalled,
        "poll() after signal",
    )?;
    expect_status(
        dev.wait_fence(&c, timeout(cfg))?,
        FenceStatus::Signalled,
        "WAIT_FENCE after signal",
    )?;
    // Implicit: a write fence blocks POLLIN on the dma-buf until signalled.
    let buf = dev.alloc(1)?;
    let w = dev.create_fence(Some((buf.as_fd(), Usage::Write)))?;
    ensure!(
        !buf.poll(PollFlags::IN, SHORT)?,
        "poll(POLLIN) on the dma-buf ready with a pending write fence"
    );
    expect_status(
        buf.export_sync_file(Access::Read)?.status()?,
        FenceStatus::Pending,
        "exported write fence",
    )?;
    // CPU access waits for the fences it conflicts with, within its timeout.
    let mut map = buf.mmap()?;
    expect_timeout(
        map.begin(Access::Read, SHORT),
        "CPU read access with a pending write fence",
    )?;
    dev.signal(&w, None)?;
    ensure!(
        buf.poll(PollFlags::IN, timeout(cfg))?,
        "poll(POLLIN) on the dma-buf not ready after signal"
    );
    expect_status(
        buf.export_sync_file(Access::Read)?.status()?,
        FenceStatus::Signalled,
        "exported write fence",
    )?;
    map.begin(Access::Read, timeout(cfg))?.end()?;
    // A read fence holds up writers only.
    let r = dev.create_fence(Some((buf.as_fd(), Usage::Read)))?;
    map.begin(Access::Read, SHORT)
        .context("CPU read access with a pending read fence")?
        .end()?;
    expect_timeout(
        map.begin(Access::Write, SHORT),
        "CPU write access with a pending read fence",
    )?;
    dev.signal(&r, None)?;
    map.begin(Access::Write, timeout(cfg))?.end()?;
    ensure!(
        dev.info()?.fences_pending == pending_before,
        "fences_pending not back to {pending_before}"
    );
    Ok(())
}

fn usage(dev_path: &std::path::Path) -> anyhow::Result<(u64, u64)> {
    let info = Device::open(dev_path)?.info()?;
    Ok((info.pool_used, info.buffers))
}

fn lifetimes_close_order(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let baseline = usage(&cfg.device)?;
    diags.push(format!(
        "baseline pool_used {} buffers {}",
        baseline.0, baseline.1
    ));
    // 1. In one process: the mapping alone keeps the buffer.
    {
        let dev = Device::open(&cfg.device)?;
        let buf = dev.alloc(cfg.buffer_size)?;
        let mut map = buf.mmap()?;
        let cpu = map.begin(Access::Write, timeout(cfg))?;
        pattern::fill(cpu.words(), 5, 0);
        cpu.end()?;
        drop(buf);
        drop(dev);
        map.close_fd();
        ensure!(
            usage(&cfg.device)?.1 == baseline.1 + 1,
            "buffer freed while still mapped"
        );
        let data = map.unsynced();
        pattern::verify(data, 5, 0).context("data after closing every fd")?;
        pattern::fill(data, 6, 0);
        pattern::verify(data, 6, 0).context("writing after closing every fd")?;
    }
    ensure!(
        usage(&cfg.device)? == baseline,
        "not back to the baseline after unmapping"
    );
    // 2. Exporter closes first: the child uses the buffer after we closed
    //    every fd and mapping. 3. Importer closes first: we check the
    //    child's data after it closed everything and exited.
    for exporter_first in [true, false] {
        let order = if exporter_first {
            "exporter closes first"
        } else {
            "importer closes first"
        };
        let dev = Device::open(&cfg.device)?;
        let buf = dev.alloc(cfg.buffer_size)?;
        let mut map = buf.mmap()?;
        let cpu = map.begin(Access::Write, timeout(cfg))?;
        pattern::fill(cpu.words(), 0, 0);
        cpu.end()?;
        let (child, chan) = spawn(cfg, Role::Lifetimes)?;
        chan.send_buffer(&buf, Mode::Explicit)?;
        drop((buf, dev));
        let kept = if exporter_first {
            drop(map);
            None
        } else {
            Some(map)
        };
        chan.send(&Message::Round { round: 0, seq: 0 }, &[])?;
        let answer = chan.recv("the child's answer").context(order);
        reap(child, Role::Lifetimes, timeout(cfg)).context(order)?;
        ensure!(
            answer?.0 == Message::Round { round: 0, seq: 1 },
            "{order}: unexpected answer"
        );
        if let Some(map) = kept {
            pattern::verify(map.unsynced(), 1, 0).context("the child's data after it exited")?;
        }
        ensure!(
            usage(&cfg.device)? == baseline,
            "{order}: not back to the baseline"
        );
    }
    Ok(())
}

fn peer_exits_unsignalled(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let timeout = timeout(cfg);
    // Explicit: the child's sync_file.
    let (child, chan) = spawn(cfg, Role::ExitExplicit)?;
    let (msg, mut fds) = chan.recv("the child's fence")?;
    ensure!(
        msg == Message::Round { round: 0, seq: 0 } && fds.len() == 1,
        "unexpected {msg:?} with {} fds",
        fds.len()
    );
    let fence = dmapingpong::SyncFile::from_fd(fds.remove(0));
    expect_status(
        fence.wait(SHORT)?,
        FenceStatus::Pending,
        "the child's fence while it lives",
    )?;
    chan.send(&Message::Round { round: 0, seq: 1 }, &[])?;
    let start = Instant::now();
    let dev = Device::open(&cfg.device)?;
    expect_status(
        dev.wait_fence(&fence, timeout)?,
        FenceStatus::Error(Errno::CANCELED),
        "WAIT_FENCE after the child exited",
    )?;
    diags.push(format!(
        "explicit: ECANCELED after {} ms",
        start.elapsed().as_millis()
    ));
    reap(child, Role::ExitExplicit, timeout)?;
    // Implicit: the child's write fence in our buffer.
    let buf = dev.alloc(1)?;
    let (child, chan) = spawn(cfg, Role::ExitImplicit)?;
    chan.send_buffer(&buf, Mode::Implicit)?;
    let (msg, fds) = chan.recv("the child's fence")?;
    ensure!(
        msg == Message::Round { round: 0, seq: 0 } && fds.is_empty(),
        "unexpected {msg:?}"
    );
    ensure!(
        !buf.poll(PollFlags::IN, SHORT)?,
        "dma-buf ready while the child's write fence is pending"
    );
    // Exported while pending: a signalled fence leaves the reservation's view
    // (EXPORT_SYNC_FILE skips it), so its error is only seen through an earlier export.
    let exported = buf.export_sync_file(Access::Read)?;
    expect_status(
        exported.status()?,
        FenceStatus::Pending,
        "exported write fence while the child lives",
    )?;
    chan.send(&Message::Round { round: 0, seq: 1 }, &[])?;
    let start = Instant::now();
    ensure!(
        buf.poll(PollFlags::IN, timeout)?,
        "poll(POLLIN) on the dma-buf timed out after the child exited"
    );
    expect_status(
        exported.status()?,
        FenceStatus::Error(Errno::CANCELED),
        "exported write fence after the child exited",
    )?;
    diags.push(format!(
        "implicit: ECANCELED after {} ms",
        start.elapsed().as_millis()
    ));
    reap(child, Role::ExitImplicit, timeout)
}

/// `TMPFS_MAGIC` (`include/uapi/linux/magic.h`): the file system of a
/// memfd (shmem).
const TMPFS_MAGIC: u64 = 0x0102_1994;

/// The number of open fds of this process.
fn open_fds() -> anyhow::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/fd")
        .context("read /proc/self/fd")?
        .count())
}

/// A hostile peer sends a memfd instead of a dma-buf and truncates it (a
/// mapping of it would fault with SIGBUS): pong refuses it before mapping
/// anything, with [`dmapingpong::Error::NotADmaBuf`] naming the buffer and
/// its file system, tells the peer why, closes the fd and lives on.
fn peer_sends_memfd(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let fds_before = open_fds()?;
    let dev = Device::open(&cfg.device)?;
    let (child, chan) = spawn(cfg, Role::SendMemfd)?;
    let result = pingpong::pong(&dev, &chan, timeout(cfg));
    drop(chan);
    let reaped = reap(child, Role::SendMemfd, timeout(cfg));
    match &result {
        Err(e @ dmapingpong::Error::NotADmaBuf { what, fs_magic }) => {
            ensure!(
                what == "buffer 0 of the ping side" && *fs_magic == TMPFS_MAGIC,
                "refused {what} with file system magic {fs_magic:#x}, expected buffer 0 \
                 with TMPFS_MAGIC {TMPFS_MAGIC:#x}"
            );
            let text = e.to_string();
            ensure!(
                text == "buffer 0 of the ping side is not a dma-buf \
                         (file system magic 0x1021994, a dma-buf has 0x444d4142)",
                "unclear error: {text}"
            );
            diags.push(format!("pong: {text}"));
        }
        Err(e) => {
            bail!("pong failed with \"{e}\", expected it to refuse the memfd as not a dma-buf")
        }
        Ok(stats) => bail!("pong took a memfd for a dma-buf and ran a session: {stats}"),
    }
    // The child exits successfully only if it heard why.
    reaped.context("the peer did not get the refusal")?;
    // Still alive, and the device still works for us.
    dev.info().context("GET_INFO after the refusal")?;
    drop(dev);
    let fds_after = open_fds()?;
    ensure!(
        fds_after == fds_before,
        "{fds_before} fds open before, {fds_after} after: the memfd was not closed"
    );
    Ok(())
}

fn modtool(tool: &str, name: &str) -> anyhow::Result<Result<(), String>> {
    dmapingpong::module::run_tool(tool, name).with_context(|| format!("run {tool}"))
}

/// The README's use case, capture -> DMA copy -> verify: vivid captures, a
/// device job copies each frame into one of our buffers as soon as it is
/// dequeued, the CPU verifies the colour bars, with fences end to end. It is
/// `dmapingpong-interop`'s test point `capture_copy_verify` (which loads
/// vgem and vivid and unloads them), run here. Skipped where the kernel has
/// no vivid (module or built in) or the image no `dmapingpong-interop`.
fn capture_copy(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let has_vivid = |file: &str| {
        std::fs::read_to_string(format!("/lib/modules/{}/{file}", release.trim()))
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(':').next().is_some_and(|m| m.contains("/vivid.ko")))
    };
    if !has_vivid("modules.dep") && !has_vivid("modules.builtin") {
        return Err(Skip("the kernel has no vivid module (CONFIG_VIDEO_VIVID)".into()).into());
    }
    let out = match Command::new("dmapingpong-interop")
        .arg("--device")
        .arg(&cfg.device)
        .args(["--only", "capture_copy_verify", "--timeout-ms"])
        .arg(cfg.timeout_ms.to_string())
        .env("RUST_LOG_STYLE", "never")
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Skip("dmapingpong-interop is not installed".into()).into());
        }
        other => other.context("run dmapingpong-interop")?,
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if let Some(line) = stderr
        .lines()
        .rev()
        .find(|l| l.contains("capture -> copy -> verify"))
    {
        diags.push(line.rsplit("] ").next().unwrap_or(line).trim().to_string());
    }
    let passed = |name: &str| {
        stdout
            .lines()
            .any(|l| l.starts_with("ok ") && l.split_whitespace().nth(2) == Some(name))
    };
    ensure!(
        out.status.success() && passed("capture_copy_verify") && passed("nothing_left"),
        "dmapingpong-interop --only capture_copy_verify: {}: {}",
        out.status,
        stdout
            .lines()
            .filter(|l| l.starts_with("not ok"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Ok(())
}

fn module_pinned(cfg: &Config, diags: &mut Diags) -> anyhow::Result<()> {
    let name = &cfg.module.name;
    let timeout = timeout(cfg);
    let fence = {
        let dev = Device::open(&cfg.device)?;
        dev.create_fence(None)?.into_sync_file()
    };
    if modtool("rmmod", name)?.is_ok() {
        bail!("rmmod {name} succeeded while a sync_file of its fence was open");
    }
    drop(fence);
    // Freeing the last fence may be deferred (RCU): retry until the timeout.
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match modtool("rmmod", name)? {
            Ok(()) => break,
            Err(e) if start.elapsed() > timeout => {
                bail!("rmmod {name} after closing the sync_file: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    diags.push(format!(
        "rmmod succeeded after {attempts} attempts, {} ms",
        start.elapsed().as_millis()
    ));
    if let Err(e) = modtool("modprobe", name)? {
        bail!("modprobe {name}: {e}");
    }
    let start = Instant::now();
    while !cfg.device.exists() {
        ensure!(
            start.elapsed() < timeout,
            "{} did not reappear within {} ms",
            cfg.device.display(),
            timeout.as_millis()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}
