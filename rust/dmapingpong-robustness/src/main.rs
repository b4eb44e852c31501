//! `dmapingpong-robustness`: the in-guest hostile-input, fault-injection,
//! race and soak test suite of the dmapingpong driver (issue 5).
//!
//! ```text
//! dmapingpong-robustness [--profile ci|full] [--seed N] [--device /dev/dmapingpong] [--only CLASS[,CLASS...]]
//! ```
//!
//! Prints KTAP version 1 on stdout, one test point per class, diagnostics as
//! `# ` lines, and at the end one machine-readable line
//!
//! ```text
//! # figures: ioctls_fuzzed=N peers_killed=N fault_injections=N rounds_soaked=N reports=N leaked_objects=N
//! ```
//!
//! Logs go to stderr (`RUST_LOG`, default `info`). Exits non-zero if any class
//! fails or the kernel log shows a report (KASAN, UBSAN, kmemleak, lockdep,
//! DMA-API, `WARNING:`, `BUG:`, `Oops`) while the suite runs. All random
//! choices derive from the seed, printed first (from the clock if not given):
//! `--seed N` replays a failing run as far as the scheduler allows.
//!
//! The classes, in order (`--only` runs some):
//!
//! 1. `bad_ioctl_input`: wrong sizes and unknown numbers (`ENOTTY`), reserved
//!    fields, unknown flags and usages, sizes 0 / 1 / unaligned / > pool /
//!    `u64::MAX`, bad, closed and wrong-type fds (regular file, eventfd,
//!    socket, the device, a sync_file, another exporter's dma-buf if
//!    `/dev/dma_heap/system` or `/dev/udmabuf` exist), bad pointers
//!    (`EFAULT`); then a normal alloc + fence cycle must still work.
//! 2. `fuzz`: a seeded structured fuzzer, [`classes::fuzz`], in 4 threads in
//!    each of 2 processes that pass fds to each other; every outcome is
//!    checked against the documented ones.
//! 3. `mmap_edges`: beyond the size, non-zero offsets, `MAP_PRIVATE`,
//!    `PROT_EXEC`, `mprotect(PROT_EXEC)`, `mremap` growth, access after
//!    `munmap` (a child that must die of `SIGSEGV`), a mapping outliving the
//!    fd and the device.
//! 4. `lifetimes_unload`: close orders across processes; `rmmod` refused while
//!    a device file, buffer, mapping or fence lives, accepted afterwards; the
//!    module is loaded again and the pool is whole.
//! 5. `dead_peers`: ping-pong peers SIGKILLed at random times; the survivor
//!    gets `ECANCELED` or a closed socket in time; no buffer or fence left.
//! 6. `fault_injection`: failslab and fail_page_alloc for this task only
//!    (`fail-nth` for every allocation of each call, then `task-filter` with
//!    `interval`/`times`); calls fail cleanly, nothing leaks, everything
//!    works afterwards. Skipped without the debugfs knobs.
//! 7. `soak`: ping-pong rounds in both modes with one page per buffer (fence
//!    bound) plus allocation churn; counters back to the baseline; kmemleak
//!    (cleared at the start of the run) must find nothing.
//! 8. `security`: `FD_CLOEXEC`, no stale data in reused pool memory, no
//!    kernel address in ioctl results, fdinfo, sysfs/debugfs or the driver's
//!    log lines, the node's mode 0660 and `EACCES` for uid/gid 65534,
//!    `DMA_BUF_SET_NAME` limits.
//!
//! Sizes of the profiles ([`ctx::Profile::plan`]):
//!
//! | | `ci` | `full` |
//! | --- | --- | --- |
//! | fuzz ops (2 processes x 4 threads) | 12 000 | 100 000 |
//! | peers killed | 30 | 100 |
//! | soak rounds (2 modes) | 3 000 | 100 000 |
//! | `fail-nth` depth per call | 64 | 256 |
//! | pool reuse rounds | 8 | 32 |
//!
//! `ci` is sized for about 3 minutes on QEMU TCG (2 vCPUs) with a KASAN
//! kernel. Measured on the normal kernel (QEMU TCG on a 2-core x86-64 host):
//! ~1 450 fuzz ops/s, ~230 fence-bound ping-pong rounds/s, ~0.2 s per
//! killed peer; ioctl-bound work is assumed ~5x slower under KASAN, which
//! gives ~40 s of fuzzing, ~65 s of soak (plus two kmemleak scans), ~20 s of
//! killed peers and a few seconds for each other class.
//!
//! Child processes are this executable again with the hidden `child`
//! subcommand and a socket as stdin (as in `dmapingpong-selftest`).

#[macro_use]
mod error;
mod child;
mod classes;
mod ctx;
mod kmsg;
#[path = "../../dmapingpong-selftest/src/ktap.rs"]
mod ktap;
mod rng;
mod sys;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};

use crate::classes::{CLASSES, Class};
use crate::ctx::{Ctx, Figures, Profile};
use crate::ktap::{Ktap, Outcome};

#[derive(Parser)]
#[command(
    version,
    about = "Hostile-input, fault, race and soak tests of the dmapingpong driver (KTAP output)"
)]
struct Cli {
    /// How much work: `ci` (~3 min on QEMU TCG with KASAN) or `full` (the
    /// issue's numbers).
    #[arg(long, value_enum, default_value = "ci")]
    profile: Profile,
    /// Seed of every random choice (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Device node.
    #[arg(long, default_value = dmapingpong::Device::DEFAULT_PATH)]
    device: PathBuf,
    /// Run only this class (or these, comma-separated, in the suite's order).
    #[arg(long, value_parser = class_name)]
    only: Option<String>,
    /// Bound of every single wait, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Kernel module name for rmmod/modprobe.
    #[arg(long, default_value = "dmapingpong")]
    module: String,
    #[command(subcommand)]
    child: Option<ChildCommand>,
}

fn class_name(s: &str) -> Result<String, String> {
    s.split(',')
        .all(|name| CLASSES.iter().any(|c| c.name == name))
        .then(|| s.to_string())
        .ok_or_else(|| {
            let names: Vec<_> = CLASSES.iter().map(|c| c.name).collect();
            format!("unknown class in {s:?}; classes: {}", names.join(", "))
        })
}

#[derive(Subcommand)]
enum ChildCommand {
    /// Internal: a child process of a test class, talking over stdin.
    #[command(hide = true)]
    Child(child::Args),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(ChildCommand::Child(args)) = cli.child {
        return match child::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("child {:?}: {e}", args.role);
                ExitCode::FAILURE
            }
        };
    }
    let seed = cli.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let ctx = Arc::new(Ctx {
        device: cli.device,
        seed,
        profile: cli.profile,
        plan: cli.profile.plan(),
        timeout: Duration::from_millis(cli.timeout_ms.max(1)),
        module: cli.module,
        figures: Figures::default(),
    });
    let classes: Vec<&Class> = CLASSES
        .iter()
        .filter(|c| {
            cli.only
                .as_deref()
                .is_none_or(|o| o.split(',').any(|o| o == c.name))
        })
        .collect();
    match run(&ctx, &classes) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("writing KTAP: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long a class may run before it counts as hung.
fn class_budget(ctx: &Ctx) -> Duration {
    match ctx.profile {
        Profile::Ci => Duration::from_secs(600),
        Profile::Full => Duration::from_secs(3 * 3600),
    }
}

/// Runs the classes and prints the report; returns whether all passed.
fn run(ctx: &Arc<Ctx>, classes: &[&Class]) -> std::io::Result<bool> {
    let mut kmsg = kmsg::Kmsg::open().unwrap_or_else(|e| {
        log::warn!("cannot read /dev/kmsg ({e}): kernel reports are not checked");
        kmsg::Kmsg::none()
    });
    let mut ktap = Ktap::new(std::io::stdout().lock(), classes.len())?;
    ktap.diag(&format!(
        "seed: {} (replay with --seed {}), profile {:?}, {:?}",
        ctx.seed, ctx.seed, ctx.profile, ctx.plan
    ))?;
    log::info!("seed {}", ctx.seed);
    if !kmsg.available() {
        ktap.diag("kernel log not readable: reports are not checked")?;
    }
    match classes::soak::kmemleak_clear() {
        Ok(true) => ktap.diag("kmemleak: cleared at the start of the run")?,
        Ok(false) => ktap.diag("kmemleak: absent in this kernel, leaks are not scanned")?,
        Err(e) => ktap.diag(&format!("kmemleak: cannot clear: {e}"))?,
    }
    let start = Instant::now();
    let mut hung = None;
    for class in classes {
        let from = kmsg.poll();
        let (outcome, diags) = match &hung {
            Some(name) => (
                Outcome::Fail(format!("not run: class {name} hung")),
                Vec::new(),
            ),
            None => run_class(ctx, class),
        };
        for d in &diags {
            ktap.diag(&format!("{}: {d}", class.name))?;
        }
        kmsg.poll();
        let reports = kmsg.reports_since(from);
        for r in reports.iter().take(20) {
            ktap.diag(&format!("{}: kernel: {r}", class.name))?;
        }
        let outcome = match outcome {
            Outcome::Pass | Outcome::Skip(_) if !reports.is_empty() => Outcome::Fail(format!(
                "{} kernel report(s) during the class, first: {}",
                reports.len(),
                reports[0]
            )),
            Outcome::Fail(why) if why.contains("hung") && hung.is_none() => {
                hung = Some(class.name);
                Outcome::Fail(why)
            }
            o => o,
        };
        if let Outcome::Fail(why) = &outcome {
            log::error!("{} failed: {why}", class.name);
        }
        ktap.result(class.name, &outcome)?;
    }
    kmsg.poll();
    let reports = kmsg.reports_since(0);
    let f = &ctx.figures;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    ktap.diag(&format!(
        "ran {} classes in {:.1} s; kernel log: {} lines read, {} records lost",
        classes.len(),
        start.elapsed().as_secs_f64(),
        kmsg.lines().len(),
        kmsg.lost
    ))?;
    ktap.diag(&format!(
        "figures: ioctls_fuzzed={} peers_killed={} fault_injections={} rounds_soaked={} reports={} leaked_objects={}",
        get(&f.ioctls_fuzzed),
        get(&f.peers_killed),
        get(&f.fault_injections),
        get(&f.rounds_soaked),
        reports.len(),
        get(&f.leaked_objects),
    ))?;
    let clean = reports.is_empty();
    if !clean {
        ktap.diag(&format!(
            "FAIL: {} kernel report(s) in the log",
            reports.len()
        ))?;
    }
    let passed = ktap.finish()?;
    if hung.is_some() {
        // A thread is stuck in the kernel: exit without waiting for it.
        std::process::exit(1);
    }
    Ok(passed && clean)
}

/// Runs one class in its own thread, bounded by [`class_budget`].
fn run_class(ctx: &Arc<Ctx>, class: &Class) -> (Outcome, Vec<String>) {
    log::info!("running {}", class.name);
    let (tx, rx) = std::sync::mpsc::channel();
    let run = class.run;
    let thread_ctx = Arc::clone(ctx);
    let spawned = std::thread::Builder::new()
        .name(class.name.into())
        .spawn(move || {
            let mut diags = Vec::new();
            let result = run(&thread_ctx, &mut diags);
            let _ = tx.send((result, diags));
        });
    if let Err(e) = spawned {
        return (Outcome::Fail(format!("cannot start a thread: {e}")), vec![]);
    }
    let budget = class_budget(ctx);
    match rx.recv_timeout(budget) {
        Ok((Ok(outcome), diags)) => (outcome, diags),
        Ok((Err(e), mut diags)) => {
            diags.push(format!(
                "seed {} (replay with --seed {})",
                ctx.seed, ctx.seed
            ));
            (Outcome::Fail(e.to_string()), diags)
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => (
            Outcome::Fail(format!(
                "hung: not finished after {} s (seed {})",
                budget.as_secs(),
                ctx.seed
            )),
            vec![],
        ),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => (
            Outcome::Fail(format!("panicked (seed {}); see stderr", ctx.seed)),
            vec![],
        ),
    }
}
