//! The results of a bench run: figures, goals and the machine, as printed
//! and as JSON (schema [`SCHEMA`], documented in the README).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `schema` field of the results.
pub const SCHEMA: &str = "dmapingpong-bench/1";

/// Prefix of the console lines that carry the results as JSON, in pieces
/// (joined in order, without separators, they are the JSON document).
pub const JSON_PREFIX: &str = "dmapingpong-bench-json: ";

/// Prefix of the line after the pieces: the document's length in bytes.
pub const JSON_END_PREFIX: &str = "dmapingpong-bench-json-end: ";

/// What was measured on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// The device tree's `model`.
    pub model: String,
    /// CPUs available to the bench.
    pub cpus: usize,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The engine of the device jobs: `dma`, `cpu` (empty if not measured).
    pub engine: String,
    /// The CPU page size, in bytes.
    pub page_size: u64,
    /// The driver's pool (reserved-memory region), in bytes.
    pub pool_size: u64,
}

impl Machine {
    fn probe() -> Machine {
        let model = std::fs::read("/proc/device-tree/model")
            .map(|m| {
                String::from_utf8_lossy(&m)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_else(|_| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        Machine {
            model,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel,
            ..Default::default()
        }
    }
}

/// One measured figure.
///
/// Latencies (`us`, `us/op`) are the median and the 99th percentile (nearest
/// rank: with fewer than 100 samples, the slowest) of the samples. Rates
/// (`MB/s`, `round trips/s`) are derived from the time of each sample:
/// `median` is the rate of the median sample, `p99` the rate of the
/// 99th-percentile (slow) one. `ratio` is `median / baseline's median`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// Unique name, `group/what/...`, e.g. `fence/sw_sync`.
    pub id: String,
    /// The group: `fence`, `cpu`, `pingpong`, `jobs`, `scale`.
    pub group: String,
    /// What it is, for people.
    pub label: String,
    /// `us`, `us/op`, `MB/s`, `round trips/s`, `bytes`.
    pub unit: String,
    /// The median (see above).
    pub median: f64,
    /// The 99th percentile (see above).
    pub p99: f64,
    /// Number of samples.
    pub samples: usize,
    /// Parameters (sizes in bytes, counts).
    pub params: BTreeMap<String, u64>,
    /// The `id` of the figure it is compared with, measured in the same run.
    pub baseline: Option<String>,
    /// `median / baseline's median` (same unit).
    pub ratio: Option<f64>,
}

/// Median and 99th percentile (nearest rank) of `samples`.
pub fn median_p99(samples: &[f64]) -> (f64, f64) {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    let median = if s.len() % 2 == 1 {
        s[s.len() / 2]
    } else {
        (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
    };
    (median, rank(0.99))
}

impl Figure {
    fn new(id: &str, label: &str, unit: &str, median: f64, p99: f64, samples: usize) -> Figure {
        Figure {
            id: id.into(),
            group: id.split('/').next().unwrap_or_default().into(),
            label: label.into(),
            unit: unit.into(),
            median,
            p99,
            samples,
            params: BTreeMap::new(),
            baseline: None,
            ratio: None,
        }
    }

    /// A latency from samples in microseconds.
    pub fn latency(id: &str, label: &str, unit: &str, samples_us: &[f64]) -> Figure {
        let (median, p99) = median_p99(samples_us);
        Figure::new(id, label, unit, median, p99, samples_us.len())
    }

    /// A rate of `per_sample` units (bytes for `MB/s`) per sample, from the
    /// samples' times in microseconds.
    pub fn rate(id: &str, label: &str, unit: &str, per_sample: f64, samples_us: &[f64]) -> Figure {
        let (median, p99) = median_p99(samples_us);
        let scale = if unit == "MB/s" { 1.0 } else { 1e6 };
        Figure::new(
            id,
            label,
            unit,
            per_sample * scale / median,
            per_sample * scale / p99,
            samples_us.len(),
        )
    }

    /// A single value (one sample).
    pub fn value(id: &str, label: &str, unit: &str, value: f64) -> Figure {
        Figure::new(id, label, unit, value, value, 1)
    }

    /// Adds a parameter.
    pub fn param(mut self, name: &str, value: u64) -> Figure {
        self.params.insert(name.into(), value);
        self
    }

    /// Compares with the figure `id` (measured earlier in the same run).
    pub fn against(mut self, id: &str) -> Figure {
        self.baseline = Some(id.into());
        self
    }

    /// Sets `ratio` from the baseline among `earlier`.
    pub(super) fn resolve(&mut self, earlier: &[Figure]) {
        if let Some(base) = &self.baseline {
            self.ratio = earlier
                .iter()
                .find(|f| &f.id == base)
                .map(|b| self.median / b.median);
        }
    }

    /// `id: median X unit, p99 Y, n=N (R x baseline)`.
    pub(super) fn progress_line(&self) -> String {
        let mut line = format!(
            "{}: median {} {}, p99 {}, n={}",
            self.id,
            num(self.median),
            self.unit,
            num(self.p99),
            self.samples
        );
        if let (Some(b), Some(r)) = (&self.baseline, self.ratio) {
            line += &format!(" ({r:.3} x {b})");
        }
        line
    }
}

/// A number with 4 significant digits at most, without exponent.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let digits = if x.abs() >= 1000.0 {
        0
    } else if x.abs() >= 100.0 {
        1
    } else if x.abs() >= 10.0 {
        2
    } else {
        3
    };
    format!("{x:.digits$}")
}

/// A goal of the issue: `figure / baseline` at most (or at least) `limit`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    /// What it says.
    pub text: String,
    /// The figure's `id`.
    pub figure: String,
    /// The baseline's `id`.
    pub baseline: String,
    /// `figure's median / baseline's median`.
    pub ratio: f64,
    /// The bound.
    pub limit: f64,
    /// `true`: `ratio <= limit` is the goal; `false`: `ratio >= limit`.
    pub at_most: bool,
    /// Whether it was met.
    pub met: bool,
    /// How far it was missed, in % of the limit (0 if met).
    pub missed_by_percent: f64,
}

/// All results of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// `quick` or `full`.
    pub profile: String,
    /// The machine.
    pub machine: Machine,
    /// The project's commit (filled in by `scripts/bench`; `null` here).
    pub commit: Option<String>,
    /// Duration of the run, in seconds.
    pub elapsed_s: f64,
    /// The figures, in the order measured.
    pub figures: Vec<Figure>,
    /// The goals, evaluated at the end.
    pub goals: Vec<Goal>,
}

/// The goals: (figure, baseline, at most?, limit, text). A goal whose
/// figures were not measured (a group left out, no CMA heap) is left out.
fn goal_specs(figures: &[Figure], engine: &str) -> Vec<(String, String, bool, f64, String)> {
    let mut specs = vec![];
    let mut add = |f: &str, b: &str, at_most: bool, limit: f64, text: String| {
        specs.push((f.to_string(), b.to_string(), at_most, limit, text));
    };
    add(
        "fence/explicit-poll",
        "fence/sw_sync",
        true,
        1.05,
        "fence round trip: explicit <= 1.05 x sw_sync".into(),
    );
    add(
        "fence/implicit",
        "fence/sw_sync",
        true,
        1.10,
        "fence round trip: implicit <= 1.10 x sw_sync".into(),
    );
    add(
        "fence/explicit-poll",
        "fence/eventfd",
        true,
        1.2,
        "fence round trip: explicit <= 1.2 x eventfd".into(),
    );
    add(
        "fence/implicit",
        "fence/eventfd",
        true,
        1.2,
        "fence round trip: implicit <= 1.2 x eventfd".into(),
    );
    add(
        "pingpong/implicit/4x1MiB",
        "pingpong/explicit/4x1MiB",
        false,
        0.9,
        "ping-pong 4 x 1 MiB: implicit >= 0.9 x explicit (MB/s)".into(),
    );
    for f in figures {
        if let Some(size) = f.id.strip_prefix("cpu/dmapingpong/") {
            if f.params.get("size").is_some_and(|&s| s >= 64 << 10) {
                add(
                    &f.id,
                    &format!("cpu/anon/{size}"),
                    false,
                    0.9,
                    format!("fill + verify {size}: our dma-buf >= 0.9 x anonymous memory"),
                );
            }
        }
        if let Some(size) = f.id.strip_prefix("jobs/copy/") {
            if engine == "cpu" {
                add(
                    &f.id,
                    &format!("jobs/memcpy/{size}"),
                    false,
                    0.8,
                    format!("device copy {size} on the CPU worker >= 0.8 x memcpy"),
                );
            }
        }
    }
    add(
        "scale/pairs/64",
        "scale/pairs/1",
        true,
        1.5,
        "cost per round trip at 64 pairs <= 1.5 x at 1 pair (per vCPU)".into(),
    );
    for op in ["alloc", "fence"] {
        add(
            &format!("scale/buffers/{op}/1024"),
            &format!("scale/buffers/{op}/4"),
            true,
            1.5,
            format!("cost per {op} with 1024 live buffers <= 1.5 x with 4"),
        );
    }
    specs
}

impl Report {
    /// An empty report of this machine.
    pub fn new(profile: &str) -> Report {
        Report {
            schema: SCHEMA.into(),
            profile: profile.into(),
            machine: Machine::probe(),
            commit: None,
            elapsed_s: 0.0,
            figures: vec![],
            goals: vec![],
        }
    }

    fn figure(&self, id: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.id == id)
    }

    /// Evaluates the goals whose figures were measured.
    pub fn evaluate_goals(&mut self) {
        self.goals.clear();
        for (fig, base, at_most, limit, text) in goal_specs(&self.figures, &self.machine.engine) {
            let (Some(f), Some(b)) = (self.figure(&fig), self.figure(&base)) else {
                continue;
            };
            let ratio = f.median / b.median;
            let met = if at_most {
                ratio <= limit
            } else {
                ratio >= limit
            };
            let missed_by_percent = if met {
                0.0
            } else {
                (ratio - limit).abs() / limit * 100.0
            };
            self.goals.push(Goal {
                text,
                figure: fig,
                baseline: base,
                ratio,
                limit,
                at_most,
                met,
                missed_by_percent,
            });
        }
    }

    /// Prints the table of figures and the goals.
    pub fn print_table(&self) {
        println!("# bench: results ({} figures)", self.figures.len());
        println!(
            "# {:<34} {:>12} {:>12} {:>6}  {:<14} ratio",
            "figure", "median", "p99", "n", "unit"
        );
        for f in &self.figures {
            let ratio = match (&f.baseline, f.ratio) {
                (Some(b), Some(r)) => format!("{r:.3} x {b}"),
                _ => String::new(),
            };
            println!(
                "# {:<34} {:>12} {:>12} {:>6}  {:<14} {ratio}",
                f.id,
                num(f.median),
                num(f.p99),
                f.samples,
                f.unit
            );
        }
        for g in &self.goals {
            let verdict = if g.met {
                "goal met".to_string()
            } else {
                format!("goal missed by {:.1} %", g.missed_by_percent)
            };
            println!(
                "# goal: {}: {:.3} x ({} {}): {verdict}",
                g.text,
                g.ratio,
                if g.at_most { "<=" } else { ">=" },
                g.limit
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let s: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median_p99(&s), (50.5, 99.0));
        assert_eq!(median_p99(&[3.0, 1.0, 2.0]), (2.0, 3.0));
        assert!(median_p99(&[]).0.is_nan());
    }

    #[test]
    fn rates_and_ratios() {
        // 1 MB per sample in 1000 us (median) and 2000 us (p99: rank 99 of 100).
        let mut samples = vec![1000.0; 98];
        samples.extend([2000.0; 2]);
        let f = Figure::rate("cpu/ours/1 MiB", "x", "MB/s", 1e6, &samples);
        assert_eq!((f.median, f.p99), (1000.0, 500.0));
        let base = Figure::rate("cpu/anon/1 MiB", "x", "MB/s", 1e6, &[500.0]);
        let mut f = f.against("cpu/anon/1 MiB");
        f.resolve(&[base]);
        assert_eq!(f.ratio, Some(0.5));
        let r = Figure::rate("x/rt", "x", "round trips/s", 1.0, &[100.0]);
        assert_eq!(r.median, 10_000.0);
    }

    #[test]
    fn goals_and_json() {
        let mut r = Report::new("quick");
        r.figures = vec![
            Figure::latency("fence/sw_sync", "", "us", &[100.0]),
            Figure::latency("fence/eventfd", "", "us", &[100.0]),
            Figure::latency("fence/explicit-poll", "", "us", &[110.0]),
            Figure::latency("fence/implicit", "", "us", &[100.0]),
        ];
        r.evaluate_goals();
        assert_eq!(r.goals.len(), 4);
        let explicit = &r.goals[0];
        assert!(!explicit.met);
        assert!((explicit.missed_by_percent - 100.0 * (1.1 - 1.05) / 1.05).abs() < 1e-9);
        assert!(r.goals[1].met && r.goals[3].met);
        let json = serde_json::to_string(&r).unwrap();
        let back: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(json.contains("\"schema\":\"dmapingpong-bench/1\""));
    }
}
