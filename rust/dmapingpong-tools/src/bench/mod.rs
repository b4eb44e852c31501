//! `dmapingpong bench`: how the driver's fences and buffers compare with
//! what a user would pick instead, every figure a ratio against a baseline
//! measured in the same run (absolute times under emulation mean little).
//!
//! Groups (each figure with its median, 99th percentile and sample count):
//!
//! 1. [`fence`]: fence round trip between two processes: eventfd (floor),
//!    `sw_sync` (anchor), our explicit fences (`poll()` and
//!    `DPP_IOCTL_WAIT_FENCE`), our implicit fences (`poll()` on the dma-buf).
//! 2. [`cpu`]: CPU fill + verify over anonymous memory (floor), our
//!    dma-buf, a system-heap and a CMA-heap dma-buf, 4 KiB to 8 MiB.
//! 3. [`pingpong`]: the ping-pong, both modes, across buffer sizes and
//!    counts, against explicit mode.
//! 4. [`jobs`]: device copies and fills against user-space `memcpy` and
//!    `memset`, submit-to-signal latency, chained against independent jobs.
//! 5. [`scale`]: concurrent ping-pong pairs and live buffers.
//!
//! Output: one progress line per figure (`# bench: ...`), the table, one
//! line per goal (`goal met` / `goal missed by X %`), and the results as
//! JSON ([`Report`], schema [`report::SCHEMA`]) on lines starting with
//! [`JSON_PREFIX`], then its length in bytes after [`JSON_END_PREFIX`] (and
//! in `--output`).

mod cpu;
mod fence;
mod jobs;
pub mod peer;
mod pingpong;
mod report;
mod scale;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use dmapingpong::Device;

pub use report::{Figure, JSON_END_PREFIX, JSON_PREFIX, Report};

/// How much to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// A few samples of everything: at most 2 minutes of guest time (checks
    /// that every figure and ratio is computed).
    Quick,
    /// The figures of the README.
    Full,
}

impl Profile {
    fn name(self) -> &'static str {
        match self {
            Profile::Quick => "quick",
            Profile::Full => "full",
        }
    }

    /// `quick` or `full` of a count.
    fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Profile::Quick => quick,
            Profile::Full => full,
        }
    }
}

/// What the bench needs from the command line.
pub struct Options {
    /// The device node.
    pub device: PathBuf,
    /// The profile.
    pub profile: Profile,
    /// Where to write the results (JSON), besides the console.
    pub output: Option<PathBuf>,
    /// Only these groups (all if empty).
    pub groups: Vec<String>,
}

/// The groups, in order.
pub const GROUPS: [&str; 5] = ["fence", "cpu", "pingpong", "jobs", "scale"];

/// The bound of every wait of the bench.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of a run: the device, the profile and the figures so far.
pub struct Bench {
    device: PathBuf,
    profile: Profile,
    report: Report,
}

impl Bench {
    fn dev(&self) -> anyhow::Result<Device> {
        Ok(Device::open(&self.device)?)
    }

    /// Records a figure and prints its progress line.
    fn add(&mut self, mut figure: Figure) {
        figure.resolve(&self.report.figures);
        println!("# bench: {}", figure.progress_line());
        self.report.figures.push(figure);
    }
}

/// Runs the bench and prints its results.
pub fn run(opts: Options) -> anyhow::Result<()> {
    for g in &opts.groups {
        anyhow::ensure!(
            GROUPS.contains(&g.as_str()),
            "unknown group {g:?} (groups: {})",
            GROUPS.join(", ")
        );
    }
    raise_fd_limit();
    let mut bench = Bench {
        device: opts.device.clone(),
        profile: opts.profile,
        report: Report::new(opts.profile.name()),
    };
    let info = bench.dev()?.info()?;
    bench.report.machine.page_size = info.page_size.into();
    bench.report.machine.pool_size = info.pool_size;
    let start = Instant::now();
    println!(
        "# bench: profile {} on {} ({} CPUs, kernel {})",
        opts.profile.name(),
        bench.report.machine.model,
        bench.report.machine.cpus,
        bench.report.machine.kernel
    );
    let wanted = |g: &str| opts.groups.is_empty() || opts.groups.iter().any(|x| x == g);
    if wanted("fence") {
        fence::run(&mut bench).context("fence round trip")?;
    }
    if wanted("cpu") {
        cpu::run(&mut bench).context("CPU fill + verify")?;
    }
    if wanted("pingpong") {
        pingpong::run(&mut bench).context("ping-pong")?;
    }
    if wanted("jobs") {
        jobs::run(&mut bench).context("device jobs")?;
    }
    if wanted("scale") {
        scale::run(&mut bench).context("scale")?;
    }
    bench.report.elapsed_s = start.elapsed().as_secs_f64();
    bench.report.evaluate_goals();
    bench.report.print_table();
    let json = serde_json::to_string(&bench.report).context("serialize the results")?;
    if let Some(path) = &opts.output {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("write {}", path.display()))?;
    }
    // Short lines, split at character boundaries: the host joins them and checks the length.
    let mut rest = json.as_str();
    while !rest.is_empty() {
        let mut end = rest.len().min(160);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        println!("{JSON_PREFIX}{}", &rest[..end]);
        rest = &rest[end..];
    }
    println!("{JSON_END_PREFIX}{}", json.len());
    let met = bench.report.goals.iter().filter(|g| g.met).count();
    println!(
        "dmapingpong-bench: done: {} figures, {} of {} goals met, {:.0} s",
        bench.report.figures.len(),
        met,
        bench.report.goals.len(),
        bench.report.elapsed_s
    );
    Ok(())
}

/// Up to 1 024 live buffers, their mappings and the peers' sockets need
/// more than the default 1 024 fds: raise the soft limit to the hard one.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    lim.current = lim.maximum;
    if let Err(e) = setrlimit(Resource::Nofile, lim) {
        log::warn!("cannot raise RLIMIT_NOFILE: {e}");
    }
}

/// Times `n` calls of `f`, in microseconds each, after one untimed call (page faults, first
/// mappings).
fn time_each(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<f64>> {
    f()?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        samples.push(micros(t.elapsed()));
    }
    Ok(samples)
}

/// A duration in microseconds.
fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Iterations that process about `budget` bytes in pieces of `size` bytes,
/// within `min..=max`.
fn iterations(budget: u64, size: u64, min: usize, max: usize) -> usize {
    usize::try_from(budget / size.max(1))
        .unwrap_or(max)
        .clamp(min, max)
}

/// A human size: `4 KiB`, `1 MiB`.
fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The CMA heap of `/dev/dma_heap` (the default CMA area): `default_cma_region` since Linux
/// 6.16, the area's name (`reserved`) before; `None` without `CONFIG_DMABUF_HEAPS_CMA`.
fn cma_heap() -> Option<String> {
    let names = dmapingpong::DmaHeap::names();
    ["default_cma_region", "reserved", "linux,cma"]
        .into_iter()
        .find(|n| names.iter().any(|h| h == n))
        .map(String::from)
}

/// A size in ids: `4KiB`, `1MiB`.
fn size_id(bytes: u64) -> String {
    size_name(bytes).replace(' ', "")
}
