//! `dmapingpong-interop`: the in-guest interop suite of the dmapingpong
//! exporter with the kernel's other importers and exporters, which use the
//! same dma-buf, dma_resv and dma-fence core paths as hardware drivers:
//! vgem (DRM PRIME, vgem fences) and vivid (V4L2 capture into dma-bufs).
//!
//! ```text
//! dmapingpong-interop [--device /dev/dmapingpong] [--frames N] [--only TEST[,TEST...]]
//!                     [--no-modprobe] [--timeout-ms MS] [--hold-ms MS]
//! ```
//!
//! Loads the drivers it needs first (`modprobe vgem`; `modprobe vivid
//! n_devs=2 node_types=0x1,0x1 allocators=0,1`: two video capture instances,
//! one with vb2's vmalloc allocator, one with dma-contig), unless
//! `--no-modprobe`, and unloads at the end the ones it loaded. A missing driver fails the
//! tests that need it (it is not a skip: the QEMU kernels have them,
//! `configs/kernel/interop.cfg`).
//!
//! Prints KTAP version 1 on stdout, one test point per behaviour
//! ([`tests::TESTS`]) and a last one, `nothing_left`: once vgem and vivid
//! are unloaded, the device holds no more buffers and pending fences than
//! before the suite. Logs go to stderr (`RUST_LOG`, default `info`). Exits
//! non-zero if any test failed.

// The V4L2 structures of `sys` are laid out for 64-bit little-endian
// targets (aarch64, x86-64): `struct timeval`, the `m` union.
#[cfg(not(all(target_pointer_width = "64", target_endian = "little")))]
compile_error!("dmapingpong-interop supports 64-bit little-endian targets only");

#[macro_use]
mod error;
mod drm;
mod exporters;
mod frame;
// Every test point passes or fails: none is skipped.
#[allow(dead_code)]
#[path = "../../dmapingpong-selftest/src/ktap.rs"]
mod ktap;
mod sys;
mod tests;
mod v4l2;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::error::{Failure, Result};
use crate::ktap::{Ktap, Outcome};
use crate::tests::{Ctx, TESTS};

#[derive(Parser)]
#[command(
    version,
    about = "Interop tests of the dmapingpong exporter with vgem and vivid (KTAP output)"
)]
struct Cli {
    /// Device node of the exporter.
    #[arg(long, default_value = dmapingpong::Device::DEFAULT_PATH)]
    device: PathBuf,
    /// Frames to capture and verify per vivid test.
    #[arg(long, default_value_t = 12)]
    frames: u32,
    /// Run only this test (or these, comma-separated, in the suite's order).
    #[arg(long, value_parser = test_names)]
    only: Option<String>,
    /// Do not load (and unload) vgem and vivid.
    #[arg(long)]
    no_modprobe: bool,
    /// Bound of every wait for something that must happen, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// How long something that must not happen yet is watched for, in
    /// milliseconds.
    #[arg(long, default_value_t = 300)]
    hold_ms: u64,
}

fn test_names(s: &str) -> Result<String, String> {
    s.split(',')
        .all(|name| TESTS.iter().any(|t| t.name == name))
        .then(|| s.to_string())
        .ok_or_else(|| {
            let names: Vec<_> = TESTS.iter().map(|t| t.name).collect();
            format!("unknown test in {s:?}; tests: {}", names.join(", "))
        })
}

/// The vivid module's parameters: two video capture instances, 0 with the
/// vmalloc allocator, 1 with dma-contig.
const VIVID_PARAMS: [&str; 3] = ["n_devs=2", "node_types=0x1,0x1", "allocators=0,1"];

/// Runs `modprobe` or `rmmod` with `args` (`dmapingpong::module`).
fn run_tool(tool: &str, args: &[&str]) -> Result<()> {
    let what = format!("{tool} {}", args.join(" "));
    match dmapingpong::module::run_tool_args(tool, args) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(Failure::Missing(format!("{what}: {why}"))),
        Err(e) => Err(Failure::Missing(format!("{what}: {e}"))),
    }
}

fn modprobe(args: &[&str]) -> Result<()> {
    run_tool("modprobe", args)
}

/// Whether vivid is loaded with [`VIVID_PARAMS`].
fn vivid_as_needed() -> bool {
    let param = |name: &str| {
        std::fs::read_to_string(Path::new("/sys/module/vivid/parameters").join(name))
            .unwrap_or_default()
    };
    param("n_devs").trim() == "2"
        && param("allocators").starts_with("0,1")
        && param("node_types").starts_with("1,1")
}

/// Loads vgem and vivid (each whatever became of the other); returns the
/// modules it loaded, which the suite unloads at the end, and the errors.
fn load_modules() -> (Vec<&'static str>, Vec<Failure>) {
    let mut loaded = Vec::new();
    let mut errors = Vec::new();
    if !Path::new("/sys/module/vgem").exists() {
        match modprobe(&["vgem"]) {
            Ok(()) => loaded.push("vgem"),
            Err(e) => errors.push(e),
        }
    }
    if Path::new("/sys/module/vivid").exists() && !vivid_as_needed() {
        if let Err(e) = run_tool("rmmod", &["vivid"]) {
            errors.push(e);
            return (loaded, errors);
        }
    }
    if !Path::new("/sys/module/vivid").exists() {
        let mut args = vec!["vivid"];
        args.extend(VIVID_PARAMS);
        match modprobe(&args) {
            Ok(()) => loaded.push("vivid"),
            Err(e) => errors.push(e),
        }
    }
    (loaded, errors)
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let ctx = Ctx {
        device: cli.device,
        frames: cli.frames.max(2),
        timeout: Duration::from_millis(cli.timeout_ms.max(1)),
        hold: Duration::from_millis(cli.hold_ms.max(1)),
    };
    let tests: Vec<_> = TESTS
        .iter()
        .filter(|t| {
            cli.only
                .as_deref()
                .is_none_or(|o| o.split(',').any(|o| o == t.name))
        })
        .collect();
    match run(&ctx, &tests, !cli.no_modprobe) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("writing KTAP: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The device's live buffers and pending fences.
fn held(ctx: &Ctx) -> Result<(u64, u64)> {
    let info = dmapingpong::Device::open(&ctx.device)?.info()?;
    Ok((info.buffers, info.fences_pending))
}

fn run(ctx: &Ctx, tests: &[&tests::Test], modules: bool) -> std::io::Result<bool> {
    let mut ktap = Ktap::new(std::io::stdout().lock(), tests.len() + 1)?;
    let before = held(ctx);
    let (loaded, errors) = if modules {
        load_modules()
    } else {
        (Vec::new(), Vec::new())
    };
    for e in &errors {
        ktap.diag(&format!("loading the drivers: {e}"))?;
    }
    if !loaded.is_empty() {
        ktap.diag(&format!(
            "loaded: {} (vivid {})",
            loaded.join(", "),
            VIVID_PARAMS.join(" ")
        ))?;
    }
    for test in tests {
        ktap.diag(test.about)?;
        let mut diags = Vec::new();
        let outcome = match (test.run)(ctx, &mut diags) {
            Ok(()) => Outcome::Pass,
            Err(e) => {
                log::error!("{}: {e}", test.name);
                Outcome::Fail(e.to_string())
            }
        };
        for d in diags {
            ktap.diag(&format!("{}: {d}", test.name))?;
        }
        ktap.result(test.name, &outcome)?;
    }
    // The importers let go of our buffers when they are unloaded (vivid's
    // queues are freed by the tests already).
    // Only what this run loaded, each on its own; the cores they pulled in
    // (DRM, V4L2) may stay.
    let mut unloaded: Result<()> = Ok(());
    for module in loaded.iter().rev() {
        let result = run_tool("rmmod", &[module]);
        if unloaded.is_ok() {
            unloaded = result;
        }
    }
    let left = (|| {
        unloaded?;
        let before =
            before.map_err(|e| Failure::Check(format!("device info at the start: {e}")))?;
        let after = held(ctx)?;
        ensure!(
            after == before,
            "buffers and pending fences {after:?} after the suite, {before:?} before"
        );
        Ok(())
    })();
    let outcome = match left {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e.to_string()),
    };
    ktap.result("nothing_left", &outcome)?;
    ktap.finish()
}
