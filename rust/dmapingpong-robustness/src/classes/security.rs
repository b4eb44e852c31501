//! Class 8, `security`: close-on-exec fds, no stale data in reused pool
//! memory, no kernel addresses anywhere user space can read, access control
//! of the node, and the dma-buf name limit.

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use dmapingpong::uapi::{DPP_FD_NO_CLOEXEC, DppAlloc, DppFenceCreate, DppInfo};
use dmapingpong::{Access, Device, Errno, Usage, pattern};

use super::Diags;
use crate::child::{OPEN_OTHER_ERROR, OPEN_SUCCEEDED};
use crate::ctx::Ctx;
use crate::error::{Failure, Result, expect_raw};
use crate::kmsg::{Kmsg, has_kernel_address};
use crate::ktap::Outcome;
use crate::sys;

fn cloexec(fd: impl AsFd, what: &str) -> Result<bool> {
    sys::cloexec(fd).map_err(|e| Failure::os(format!("F_GETFD of {what}"), e))
}

fn fds_cloexec(dev: &Device, diags: &mut Diags) -> Result<()> {
    let buf = dev.alloc(1)?;
    check!(
        cloexec(&buf, "a dma-buf")?,
        "ALLOC returned a dma-buf without FD_CLOEXEC"
    );
    let open = dev.alloc_raw(DppAlloc {
        size: 1,
        flags: DPP_FD_NO_CLOEXEC,
        ..Default::default()
    })?;
    check!(
        !cloexec(&open, "a DPP_FD_NO_CLOEXEC dma-buf")?,
        "DPP_FD_NO_CLOEXEC dma-buf has FD_CLOEXEC"
    );
    for f in [
        dev.create_fence(None)?,
        dev.create_fence(Some((buf.as_fd(), Usage::Write)))?,
        dev.create_fence(Some((open.as_fd(), Usage::Read)))?,
    ] {
        check!(
            cloexec(&f, "a sync_file")?,
            "CREATE_FENCE returned a sync_file without FD_CLOEXEC"
        );
        let exported = buf.export_sync_file(Access::Write)?;
        check!(
            cloexec(&exported, "an exported sync_file")?,
            "EXPORT_SYNC_FILE returned an fd without FD_CLOEXEC"
        );
        dev.signal(&f, None)?;
    }
    diags.push("FD_CLOEXEC: dma-bufs (unless DPP_FD_NO_CLOEXEC) and sync_files: ok".into());
    Ok(())
}

/// Fills buffers, frees them and allocates again until the pool's memory
/// was certainly reused: every new buffer must be zero.
fn no_stale_data(ctx: &Ctx, dev: &Device, info: &DppInfo, diags: &mut Diags) -> Result<()> {
    let mut checked = 0u64;
    for round in 0..ctx.plan.reuse_rounds {
        // Sizes vary per round so that regions are reused at other offsets.
        let chunk = (info.pool_size / (2 + round % 7)).next_multiple_of(u64::from(info.page_size));
        let held = crate::ctx::fill_pool(dev, chunk, info.pool_size)?;
        check!(
            !held.is_empty(),
            "round {round}: no buffer of {chunk} bytes"
        );
        for (i, b) in held.iter().enumerate() {
            let mut map = b.mmap()?;
            let cpu = map.begin(Access::ReadWrite, ctx.timeout)?;
            let mut words = cpu.words().iter().map(|x| x.load(Ordering::Relaxed));
            if let Some(w) = words.position(|x| x != 0) {
                fail!(
                    "round {round}: a new buffer of {chunk} bytes holds a previous owner's data at byte {}",
                    w * 8
                );
            }
            checked += chunk;
            pattern::fill(cpu.words(), 0xDEAD_0000 + round, i as u32);
            cpu.end()?;
        }
        drop(held);
    }
    diags.push(format!(
        "{} rounds of filling the whole pool, freeing and reallocating: {checked} bytes checked zero",
        ctx.plan.reuse_rounds
    ));
    Ok(())
}

/// Reads every file under `dir` (not following symlinks below it), at most
/// `depth` levels; returns (path, content) of readable regular files.
fn read_tree(dir: &Path, depth: u32, skip: &[&str], out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if skip.contains(&name.as_str()) {
            continue;
        }
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() && depth > 0 {
            read_tree(&path, depth - 1, skip, out);
        } else if ft.is_file() {
            if let Ok(bytes) = std::fs::read(&path) {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1 << 16)]).into_owned();
                out.push((path, text));
            }
        }
    }
}

fn no_kernel_addresses(ctx: &Ctx, dev: &Device, kmsg: &mut Kmsg, diags: &mut Diags) -> Result<()> {
    // ioctl results.
    let info = dev.info()?;
    let buf = dev.alloc(1)?;
    let name = c"robustness";
    sys::dma_buf_set_name(buf.as_fd(), name).map_err(|e| Failure::os("DMA_BUF_SET_NAME", e))?;
    let fence = dev.create_fence_raw(DppFenceCreate {
        dmabuf_fd: std::os::fd::AsRawFd::as_raw_fd(&buf.as_fd()),
        usage: dmapingpong::uapi::DPP_USAGE_WRITE,
        ..Default::default()
    })?;
    let kernel = |v: u64| v >= 0xffff_0000_0000_0000;
    for (what, v) in [
        ("GET_INFO pool_size", info.pool_size),
        ("GET_INFO pool_used", info.pool_used),
        ("GET_INFO buffers", info.buffers),
        ("GET_INFO fences_pending", info.fences_pending),
        ("ALLOC size", buf.size()),
        ("CREATE_FENCE context", fence.context()),
        ("CREATE_FENCE seqno", fence.seqno()),
    ] {
        check!(!kernel(v), "{what} = {v:#x} looks like a kernel address");
    }
    // fdinfo of every kind of fd the driver hands out.
    let exported = buf.export_sync_file(Access::Read)?;
    let mut texts: Vec<(PathBuf, String)> = Vec::new();
    for (what, fd) in [
        ("device", dev.as_fd()),
        ("dma-buf", buf.as_fd()),
        ("sync_file", fence.as_fd()),
        ("exported sync_file", exported.as_fd()),
    ] {
        let t = sys::fdinfo(fd).map_err(|e| Failure::io(format!("fdinfo of the {what}"), e))?;
        texts.push((PathBuf::from(format!("fdinfo of the {what}")), t));
    }
    let dmabuf_info = &texts[1].1;
    check!(
        dmabuf_info.contains("exp_name:\tdmapingpong") && dmabuf_info.contains("name:\trobustness"),
        "dma-buf fdinfo lacks the exporter or the name set: {dmabuf_info:?}"
    );
    // sysfs and debugfs of the driver, while a buffer with a fence lives.
    let m = &ctx.module;
    let skip = [
        "sections",
        "notes",
        "uevent",
        "subsystem",
        "driver",
        "module",
        "firmware_node",
        "of_node",
        "power",
    ];
    for dir in [
        format!("/sys/class/misc/{m}/"),
        format!("/sys/module/{m}/"),
        format!("/sys/bus/platform/drivers/{m}/"),
        "/sys/kernel/debug/dma_buf/".to_string(),
        format!("/sys/kernel/debug/{m}/"),
    ] {
        read_tree(Path::new(&dir), 2, &skip, &mut texts);
    }
    // The platform device's directory, linked from the driver's.
    if let Ok(entries) = std::fs::read_dir(format!("/sys/bus/platform/drivers/{m}")) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_symlink())
                && e.file_name().to_string_lossy().contains('.')
            {
                let mut dev_dir = e.path();
                dev_dir.push("");
                read_tree(&dev_dir, 1, &skip, &mut texts);
            }
        }
    }
    let files = texts.len();
    for (path, text) in &texts {
        check!(
            !has_kernel_address(text),
            "{} shows a kernel address: {:?}",
            path.display(),
            text.lines().find(|l| has_kernel_address(l)).unwrap_or("")
        );
    }
    dev.signal(&fence, None)?;
    // Kernel log lines of the driver since the run started.
    kmsg.poll();
    let driver_lines: Vec<&String> = kmsg
        .lines()
        .iter()
        .filter(|l| l.contains(m.as_str()))
        .collect();
    for l in &driver_lines {
        check!(
            !has_kernel_address(l),
            "driver log line shows a kernel address: {l}"
        );
    }
    diags.push(format!(
        "no kernel address in 7 ioctl result fields, {files} fdinfo/sysfs/debugfs files, {} driver log lines{}",
        driver_lines.len(),
        if kmsg.available() { "" } else { " (kernel log not readable)" }
    ));
    Ok(())
}

fn access_control(ctx: &Ctx, diags: &mut Diags) -> Result<()> {
    let meta = std::fs::metadata(&ctx.device)
        .map_err(|e| Failure::io(format!("stat {}", ctx.device.display()), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    check!(
        mode == 0o660 && meta.uid() == 0 && meta.gid() == 0,
        "{} is {mode:04o} {}:{}, expected 0660 root:root",
        ctx.device.display(),
        meta.uid(),
        meta.gid()
    );
    if !rustix::process::geteuid().is_root() {
        diags.push("SKIP unprivileged open: the suite does not run as root".into());
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| Failure::io("current_exe", e))?;
    let mut kid = Command::new(exe)
        .args([
            "child",
            "open-device",
            "--seed",
            "0",
            "--timeout-ms",
            "1000",
            "--device",
        ])
        .arg(&ctx.device)
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .stdout(std::io::stderr())
        .spawn()
        .map_err(|e| Failure::io("spawn the unprivileged child", e))?;
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = kid.try_wait().map_err(|e| Failure::io("wait", e))? {
            break s;
        }
        if start.elapsed() > ctx.timeout {
            let _ = kid.kill();
            let _ = kid.wait();
            fail!("the unprivileged child did not exit");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    match status.code() {
        Some(0) => {}
        Some(OPEN_SUCCEEDED) => fail!("uid/gid 65534 opened {}", ctx.device.display()),
        Some(OPEN_OTHER_ERROR) => {
            fail!("uid/gid 65534: open failed with another errno than EACCES (see stderr)")
        }
        _ => fail!("the unprivileged child ended with {status}"),
    }
    diags.push(format!(
        "{} is 0660 root:root; uid/gid 65534 gets EACCES",
        ctx.device.display()
    ));
    Ok(())
}

fn set_name(dev: &Device) -> Result<()> {
    let buf = dev.alloc(1)?;
    // DMA_BUF_NAME_LEN includes the NUL: 31 characters fit, 32 do not.
    let long31 = c"0123456789012345678901234567890";
    assert_eq!(long31.to_bytes().len(), sys::DMA_BUF_NAME_LEN - 1);
    sys::dma_buf_set_name(buf.as_fd(), long31)
        .map_err(|e| Failure::os("DMA_BUF_SET_NAME of 31 bytes", e))?;
    for name in [
        c"01234567890123456789012345678901",
        c"0123456789012345678901234567890123456789012345678901234567890123456789",
    ] {
        expect_raw(
            sys::dma_buf_set_name(buf.as_fd(), name),
            Errno::INVAL,
            &format!("DMA_BUF_SET_NAME of {} bytes", name.to_bytes().len()),
        )?;
    }
    let info = sys::fdinfo(&buf).map_err(|e| Failure::io("fdinfo", e))?;
    check!(
        info.contains("name:\t0123456789012345678901234567890\n"),
        "the rejected names replaced the valid one: {info:?}"
    );
    sys::dma_buf_set_name(buf.as_fd(), c"short").map_err(|e| Failure::os("DMA_BUF_SET_NAME", e))?;
    let info = sys::fdinfo(&buf).map_err(|e| Failure::io("fdinfo", e))?;
    check!(
        info.contains("name:\tshort\n"),
        "name not shown in fdinfo: {info:?}"
    );
    Ok(())
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    // The driver's log lines since boot (as far as the ring buffer goes).
    let mut kmsg = Kmsg::open_from_boot().unwrap_or_else(|_| Kmsg::none());
    let dev = ctx.open()?;
    let info = dev.info()?;
    fds_cloexec(&dev, diags)?;
    no_stale_data(ctx, &dev, &info, diags)?;
    // Provoke a few driver log lines (rejections) to check.
    let _ = dev.alloc(0);
    let _ = dev.alloc(u64::MAX);
    no_kernel_addresses(ctx, &dev, &mut kmsg, diags)?;
    access_control(ctx, diags)?;
    set_name(&dev)?;
    drop(dev);
    ctx.expect_baseline(baseline, "after the security checks")?;
    Ok(Outcome::Pass)
}
