//! Class 3, `mmap_edges`: mappings of a dma-buf at and beyond its edges.

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::Ordering::Relaxed;

use dmapingpong::{Errno, Message, pattern};
use rustix::mm::{MapFlags, MprotectFlags, MremapFlags, ProtFlags};

use super::Diags;
use crate::child::TOUCH_SURVIVED;
use crate::ctx::Ctx;
use crate::error::{Context, Failure, Result, expect_raw};
use crate::ktap::Outcome;
use crate::sys::RawMap;

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    let cma_baseline = super::cma_used()?;
    let dev = ctx.open()?;
    let page = u64::from(dev.info()?.page_size);
    let pages = 4;
    let size = pages * page;
    let buf = dev.alloc(size)?;
    let fd = buf.as_fd();
    let len = size as usize;
    let p = page as usize;
    let rw = ProtFlags::READ | ProtFlags::WRITE;

    // Beyond the size: longer, or starting at/after the end, or straddling it.
    for (what, l, off) in [
        ("one page more than the buffer", len + p, 0),
        ("at the end of the buffer", p, size),
        ("far beyond the end", p, 1 << 40),
        ("straddling the end", 2 * p, size - page),
    ] {
        expect_raw(
            RawMap::shared(fd, l, off).map(drop),
            Errno::INVAL,
            &format!("mmap {what} (len {l} offset {off:#x})"),
        )?;
    }
    // Non-zero offsets within the buffer alias the right pages.
    let mut whole = RawMap::shared(fd, len, 0).map_err(|e| Failure::os("mmap", e))?;
    for k in 1..pages {
        let off = k * page;
        let part = RawMap::shared(fd, len - off as usize, off)
            .map_err(|e| Failure::os(format!("mmap at offset {off}"), e))?;
        part.bytes()[0].store(k as u8 + 1, Relaxed);
        let last = part.len() - 1;
        part.bytes()[last].store(0xEE, Relaxed);
        check!(
            whole.bytes()[off as usize].load(Relaxed) == k as u8 + 1
                && whole.bytes()[len - 1].load(Relaxed) == 0xEE,
            "a write at offset {off} through a mapping at that offset is not visible at {off}"
        );
    }
    // A mapping of one page in the middle.
    RawMap::shared(fd, p, page).map_err(|e| Failure::os("mmap of page 1 alone", e))?;
    // Private and executable mappings are refused.
    expect_raw(
        RawMap::new(fd, len, rw, MapFlags::PRIVATE, 0).map(drop),
        Errno::INVAL,
        "mmap MAP_PRIVATE",
    )?;
    expect_raw(
        RawMap::new(fd, len, ProtFlags::READ, MapFlags::PRIVATE, 0).map(drop),
        Errno::INVAL,
        "mmap MAP_PRIVATE read-only",
    )?;
    for prot in [
        ProtFlags::READ | ProtFlags::EXEC,
        rw | ProtFlags::EXEC,
        ProtFlags::EXEC,
    ] {
        expect_raw(
            RawMap::new(fd, len, prot, MapFlags::SHARED, 0).map(drop),
            Errno::INVAL,
            &format!("mmap with {prot:?}"),
        )?;
    }
    // ... and so is making a mapping executable later.
    for prot in [
        MprotectFlags::READ | MprotectFlags::EXEC,
        MprotectFlags::EXEC,
    ] {
        expect_raw(
            whole.protect(prot),
            Errno::ACCESS,
            &format!("mprotect({prot:?})"),
        )?;
    }
    whole
        .protect(MprotectFlags::READ)
        .map_err(|e| Failure::os("mprotect(PROT_READ)", e))?;
    whole
        .protect(MprotectFlags::READ | MprotectFlags::WRITE)
        .map_err(|e| Failure::os("mprotect(PROT_READ | PROT_WRITE)", e))?;
    // A read-only shared mapping works.
    RawMap::new(fd, len, ProtFlags::READ, MapFlags::SHARED, 0)
        .map_err(|e| Failure::os("mmap read-only", e))?;
    // mremap cannot grow it (VM_DONTEXPAND), in place or moving.
    for flags in [MremapFlags::empty(), MremapFlags::MAYMOVE] {
        expect_raw(
            whole.remap(2 * len, flags),
            Errno::FAULT,
            &format!("mremap growth with {flags:?}"),
        )?;
    }
    check!(
        whole.bytes()[p].load(Relaxed) == 2,
        "mapping changed after the failed mremap"
    );
    drop(whole);

    // Access after munmap kills the process with SIGSEGV.
    let (kid, chan) = ctx.spawn("touch-unmapped", &["--size".into(), size.to_string()])?;
    let ready = chan.recv("the child's unmap");
    let status = kid.wait(ctx.timeout)?;
    check!(
        matches!(ready, Ok((Message::Round { .. }, _))),
        "child did not get to its unmap: {ready:?} ({status})"
    );
    check!(
        status.signal() == Some(libc_sigsegv()),
        "access after munmap: child ended with {status}, expected SIGSEGV{}",
        if status.code() == Some(TOUCH_SURVIVED) {
            " (the access succeeded)"
        } else {
            ""
        }
    );
    diags.push(format!(
        "access after munmap: child killed by signal {:?}",
        status.signal()
    ));

    // A mapping outlives the fd and the device: data intact and writable. It is split in three
    // VMAs first (mprotect of page 1, then back: VMAs with a close operation are not merged
    // again), each holding its own reference to the memory, taken by vm_ops->open and dropped
    // by vm_ops->close (the debug kernel's KASAN and kmemleak see a wrong count).
    let mut keep = RawMap::shared(fd, len, 0).map_err(|e| Failure::os("mmap", e))?;
    for flags in [
        MprotectFlags::READ,
        MprotectFlags::READ | MprotectFlags::WRITE,
    ] {
        keep.protect_range(p, p, flags)
            .map_err(|e| Failure::os(format!("mprotect({flags:?}) of page 1"), e))?;
    }
    pattern::fill(keep.words(), 11, 0);
    drop(buf);
    drop(dev);
    check!(
        ctx.usage()?.buffers == baseline.buffers + 1,
        "buffer freed while a mapping remains"
    );
    pattern::verify(keep.words(), 11, 0).ctx("data after closing the fd and the device")?;
    pattern::fill(keep.words(), 12, 0);
    pattern::verify(keep.words(), 12, 0).ctx("writing after closing the fd and the device")?;
    drop(keep);
    ctx.expect_baseline(baseline, "after the last munmap")?;
    // Each VMA's reference to the memory went (vm_ops->close): its pages are back in the pool's
    // CMA area. (The VMAs' file keeps the buffer alive anyway; only this sees their count.)
    if let Some(before) = cma_baseline {
        let after = super::cma_used()?;
        check!(
            after == Some(before),
            "pool's CMA area: {after:?} pages used after the last munmap, {before} before"
        );
        diags.push(format!(
            "split mapping: the pool's CMA area is back to {before} used pages after the last munmap"
        ));
    }
    Ok(Outcome::Pass)
}

/// `SIGSEGV`.
fn libc_sigsegv() -> i32 {
    rustix::process::Signal::SEGV.as_raw()
}
