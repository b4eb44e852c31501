//! Class 4, `lifetimes_unload`: close orders across processes, and the
//! module pinned by every object of the driver, unloaded once all are gone
//! and loaded again with a whole pool.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use dmapingpong::{DmaBuf, Message, pattern};

use super::Diags;
use crate::ctx::Ctx;
use crate::error::{Context, Result};
use crate::ktap::Outcome;

/// Exporter first, importer first, mapping last.
fn close_orders(ctx: &Ctx, diags: &mut Diags) -> Result<()> {
    let baseline = ctx.usage()?;
    let size = 64 * 1024u64;
    // Exporter process first: it allocates, fills, sends and exits; we map
    // and use the buffer after it is gone.
    {
        let (kid, chan) = ctx.spawn("exporter", &["--size".into(), size.to_string()])?;
        let (msg, mut fds) = chan.recv("the exporter's buffer")?;
        check!(
            matches!(msg, Message::Hello { buffers: 1, .. }) && fds.len() == 1,
            "exporter sent {msg:?} with {} fds",
            fds.len()
        );
        kid.wait_success(ctx.timeout)?;
        let buf = DmaBuf::from_fd(fds.remove(0))?;
        let mut map = buf.mmap()?;
        let cpu = map.begin(dmapingpong::Access::ReadWrite, ctx.timeout)?;
        pattern::verify(cpu.words(), 7, 0).ctx("exporter first: its data after it exited")?;
        pattern::fill(cpu.words(), 8, 0);
        cpu.end()?;
    }
    ctx.expect_baseline(baseline, "exporter first")?;
    // Importer first: we allocate and keep only a mapping; the importer
    // writes, closes everything and exits; we read its data.
    {
        let dev = ctx.open()?;
        let buf = dev.alloc(size)?;
        let mut map = buf.mmap()?;
        pattern::fill(map.unsynced(), 8, 0);
        let (kid, chan) = ctx.spawn("importer", &[])?;
        chan.send_buffer(&buf, dmapingpong::pingpong::Mode::Explicit)?;
        drop(buf);
        drop(dev);
        map.close_fd();
        let answer = chan.recv("the importer's answer")?;
        check!(
            answer.0 == (Message::Round { round: 0, seq: 9 }),
            "importer answered {:?}",
            answer.0
        );
        kid.wait_success(ctx.timeout)?;
        pattern::verify(map.unsynced(), 9, 0)
            .ctx("importer first: its data after it exited, through our last mapping")?;
    }
    ctx.expect_baseline(baseline, "importer first, mapping last")?;
    diags.push("close orders: exporter first, importer first, mapping last: ok".into());
    Ok(())
}

/// Whether `rmmod` is refused now.
fn rmmod_refused(ctx: &Ctx, what: &str) -> Result<()> {
    match ctx.modtool("rmmod")? {
        Ok(()) => fail!("rmmod {} succeeded while {what} was alive", ctx.module),
        Err(_) => Ok(()),
    }
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    close_orders(ctx, diags)?;
    let refcnt = format!("/sys/module/{}/refcnt", ctx.module);
    if !std::path::Path::new(&refcnt).exists() {
        diags.push(format!(
            "{refcnt} absent: the driver is not a loadable module"
        ));
        return Ok(Outcome::Skip("the driver is built in: no unload".into()));
    }
    let info = ctx.open()?.info()?;
    // Each kind of object alone pins the module.
    {
        let dev = ctx.open()?;
        rmmod_refused(ctx, "an open device file")?;
        let buf = dev.alloc(1)?;
        drop(dev);
        rmmod_refused(ctx, "a dma-buf fd")?;
        let mut map = buf.mmap()?;
        drop(buf);
        map.close_fd();
        rmmod_refused(ctx, "a mapping")?;
        drop(map);
        let fence = ctx.open()?.create_fence(None)?.into_sync_file();
        // Its file is closed: the fence is cancelled, but the fence lives.
        rmmod_refused(ctx, "a sync_file of a fence")?;
        drop(fence);
        let dev = ctx.open()?;
        let buf = dev.alloc(1)?;
        let fence = dev.create_fence(Some((buf.as_fd(), dmapingpong::Usage::Write)))?;
        dev.signal(&fence, None)?;
        drop((fence, dev));
        rmmod_refused(ctx, "a dma-buf holding a signalled fence")?;
        drop(buf);
    }
    // All gone: rmmod succeeds (RCU-deferred frees may take a moment).
    let start = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        match ctx.modtool("rmmod")? {
            Ok(()) => break,
            Err(e) if start.elapsed() > ctx.timeout => {
                fail!("rmmod {} after closing everything: {e}", ctx.module)
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    diags.push(format!(
        "rmmod refused while a device file, dma-buf, mapping or fence lived; succeeded after {attempts} attempt(s), {} ms",
        start.elapsed().as_millis()
    ));
    check!(
        !ctx.device.exists(),
        "{} still exists after rmmod",
        ctx.device.display()
    );
    if let Err(e) = ctx.modtool("modprobe")? {
        fail!("modprobe {}: {e}", ctx.module);
    }
    let start = Instant::now();
    while !ctx.device.exists() {
        if start.elapsed() > ctx.timeout {
            fail!(
                "{} did not reappear within {} ms of modprobe",
                ctx.device.display(),
                ctx.timeout.as_millis()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let again = ctx.open()?.info()?;
    check!(
        again.pool_used == 0
            && again.buffers == 0
            && again.fences_pending == 0
            && again.pool_size == info.pool_size,
        "after reloading: {again:?}, expected an empty pool of {}",
        info.pool_size
    );
    // The whole pool is usable again (or fragmented CMA: ENOMEM is fine).
    let dev = ctx.open()?;
    match dev.alloc(again.pool_size / 2) {
        Ok(_) => {}
        Err(e) if e.errno() == Some(dmapingpong::Errno::NOMEM) => {
            diags.push("half the pool after reload: ENOMEM (fragmented CMA)".into())
        }
        Err(e) => return Err(e.into()),
    }
    super::sanity_cycle(ctx)?;
    Ok(Outcome::Pass)
}
