//! Class 7, `soak`: many fence-bound ping-pong rounds in both modes with
//! allocation churn beside them; then the driver's counters must be back at
//! the baseline and kmemleak must find nothing.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dmapingpong::pingpong::{self, Mode, Params};
use dmapingpong::{Errno, Usage};

use super::Diags;
use crate::ctx::{Ctx, Figures};
use crate::error::{Failure, Result};
use crate::ktap::Outcome;
use crate::rng::Rng;

/// The kmemleak control file.
pub const KMEMLEAK: &str = "/sys/kernel/debug/kmemleak";

/// Clears kmemleak's list (at the start of the run): `Ok(false)` if the
/// kernel has no kmemleak.
pub fn kmemleak_clear() -> std::io::Result<bool> {
    if !std::path::Path::new(KMEMLEAK).exists() {
        return Ok(false);
    }
    std::fs::write(KMEMLEAK, "clear")?;
    Ok(true)
}

/// Scans twice, a few seconds apart (kmemleak reports only objects that
/// stayed unreferenced over scans and are old enough), and returns the
/// reported objects, each as its lines (the first, then its hex dump and
/// backtrace).
fn kmemleak_scan() -> Result<Vec<Vec<String>>> {
    let scan = || std::fs::write(KMEMLEAK, "scan").map_err(|e| Failure::io("kmemleak scan", e));
    scan()?;
    std::thread::sleep(Duration::from_secs(6));
    scan()?;
    let report = std::fs::read_to_string(KMEMLEAK).map_err(|e| Failure::io("read kmemleak", e))?;
    let mut objects: Vec<Vec<String>> = Vec::new();
    for line in report.lines() {
        if line.starts_with("unreferenced object") {
            objects.push(vec![line.to_string()]);
        } else if let Some(object) = objects.last_mut() {
            object.push(line.trim().to_string());
        }
    }
    Ok(objects)
}

/// Allocation and fence churn on its own file until `stop`; returns ops.
fn churn(ctx: &Ctx, stop: &AtomicBool, seed: u64) -> Result<u64> {
    let dev = ctx.open()?;
    let mut rng = Rng::stream(seed, 7);
    let mut held = Vec::new();
    let mut ops = 0;
    while !stop.load(Ordering::Relaxed) {
        ops += 1;
        if held.len() < 8 && rng.chance(60) {
            match dev.alloc(rng.range(1, 256 * 1024)) {
                Ok(b) => held.push(b),
                Err(e) if e.errno() == Some(Errno::NOMEM) => {}
                Err(e) => return Err(e.into()),
            }
        } else if !held.is_empty() {
            let b = held.swap_remove(rng.index(held.len()));
            if rng.chance(30) {
                let f = dev.create_fence(Some((b.as_fd(), Usage::Read)))?;
                dev.signal(&f, None)?;
            }
        }
    }
    Ok(ops)
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    let dev = ctx.open()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut churn_ops = 0;
    for mode in Mode::ALL {
        let rounds = ctx.plan.soak_rounds_per_mode;
        let (kid, chan) = ctx.spawn("pong", &[])?;
        stop.store(false, Ordering::Relaxed);
        let r = std::thread::scope(|s| {
            let churner = s.spawn(|| churn(ctx, &stop, ctx.seed ^ mode as u64));
            let start = Instant::now();
            let r = pingpong::ping(
                &dev,
                &chan,
                &Params {
                    mode,
                    buffers: 1,
                    size: 4096,
                    rounds,
                    timeout: ctx.timeout,
                },
            );
            stop.store(true, Ordering::Relaxed);
            let c = churner
                .join()
                .map_err(|_| Failure::Check("churn thread panicked".into()));
            (r, c, start.elapsed())
        });
        drop(chan);
        let (stats, c, elapsed) = r;
        let exit = kid.wait_success(ctx.timeout);
        let stats = stats?;
        exit?;
        churn_ops += c??;
        check!(
            stats.rounds == rounds,
            "{mode}: {} rounds of {rounds}",
            stats.rounds
        );
        Figures::add(&ctx.figures.rounds_soaked, rounds);
        diags.push(format!(
            "{mode}: {rounds} rounds of one page in {:.1} s ({:.0} rounds/s)",
            elapsed.as_secs_f64(),
            rounds as f64 / elapsed.as_secs_f64().max(1e-9)
        ));
    }
    drop(dev);
    diags.push(format!(
        "{churn_ops} alloc/free/fence churn ops beside the rounds"
    ));
    ctx.expect_baseline(baseline, "after the soak")?;
    if std::path::Path::new(KMEMLEAK).exists() {
        let leaks = kmemleak_scan()?;
        Figures::add(&ctx.figures.leaked_objects, leaks.len() as u64);
        for (i, object) in leaks.iter().take(10).enumerate() {
            // The first object whole (where it was allocated), the others by their first line.
            let lines = if i == 0 { &object[..] } else { &object[..1] };
            for l in lines {
                diags.push(format!("kmemleak: {l}"));
            }
        }
        check!(
            leaks.is_empty(),
            "kmemleak reports {} unreferenced object(s)",
            leaks.len()
        );
        diags.push("kmemleak: no leaks after two scans".into());
    } else {
        diags.push("kmemleak absent in this kernel: leaks not scanned".into());
    }
    Ok(Outcome::Pass)
}
