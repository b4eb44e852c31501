//! The driver's engine counters, from debugfs.
//!
//! The exporter publishes what its engines did in
//! `/sys/kernel/debug/dmapingpong/stats` (`key: value` lines) and injects
//! transfer failures through `/sys/kernel/debug/dmapingpong/fail_transfers`
//! (root only, debugfs mounted).

use std::path::{Path, PathBuf};

use crate::device::Engine;
use crate::error::{Error, Result};

/// The driver's debugfs directory.
pub const DEBUGFS_DIR: &str = "/sys/kernel/debug/dmapingpong";

/// The counters of `stats`. Bytes are bytes filled or copied by jobs that
/// succeeded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// `dma <channel>` or `cpu`.
    pub engine: String,
    /// Jobs the DMA controller ran successfully.
    pub dma_jobs: u64,
    /// Bytes the DMA controller filled or copied.
    pub dma_bytes: u64,
    /// Jobs the CPU worker ran successfully.
    pub cpu_jobs: u64,
    /// Bytes the CPU worker filled or copied.
    pub cpu_bytes: u64,
    /// Jobs whose out-fence signalled an error.
    pub jobs_failed: u64,
    /// Jobs submitted and not yet signalled.
    pub jobs_pending: u64,
}

impl EngineStats {
    /// Reads `stats` of the driver's debugfs directory `dir`.
    pub fn read(dir: impl AsRef<Path>) -> Result<EngineStats> {
        let path = dir.as_ref().join("stats");
        let text = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
        Self::parse(&text)
            .map_err(|what| Error::InvalidArgument(format!("{}: {what}", path.display())))
    }

    /// Parses the `key: value` lines of `stats`.
    pub fn parse(text: &str) -> std::result::Result<EngineStats, String> {
        let mut stats = EngineStats::default();
        for line in text.lines() {
            let (key, value) = line
                .split_once(": ")
                .ok_or_else(|| format!("line {line:?} is not 'key: value'"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|_| format!("{key}: {value:?}"))
            };
            match key {
                "engine" => stats.engine = value.to_string(),
                "dma_jobs" => stats.dma_jobs = number()?,
                "dma_bytes" => stats.dma_bytes = number()?,
                "cpu_jobs" => stats.cpu_jobs = number()?,
                "cpu_bytes" => stats.cpu_bytes = number()?,
                "jobs_failed" => stats.jobs_failed = number()?,
                "jobs_pending" => stats.jobs_pending = number()?,
                _ => {} // Newer drivers may add counters.
            }
        }
        if stats.engine.is_empty() {
            return Err("no 'engine' line".into());
        }
        Ok(stats)
    }

    /// The engine that runs the jobs.
    pub fn kind(&self) -> Engine {
        if self.engine.starts_with("dma") {
            Engine::Dma
        } else {
            Engine::Cpu
        }
    }

    /// `(jobs, bytes)` of `engine`.
    pub fn of(&self, engine: Engine) -> (u64, u64) {
        match engine {
            Engine::Dma => (self.dma_jobs, self.dma_bytes),
            Engine::Cpu => (self.cpu_jobs, self.cpu_bytes),
        }
    }

    /// Makes the next `count` transfers of the driver fail with `EIO`
    /// (fault injection: they do not touch memory).
    pub fn inject_transfer_failures(dir: impl AsRef<Path>, count: u32) -> Result<()> {
        let path: PathBuf = dir.as_ref().join("fail_transfers");
        std::fs::write(&path, format!("{count}\n")).map_err(|e| io_error("write", &path, e))
    }
}

impl std::fmt::Display for EngineStats {
    /// One line: `engine: <engine> dma_jobs=N dma_bytes=N cpu_jobs=N ...`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "engine: {} dma_jobs={} dma_bytes={} cpu_jobs={} cpu_bytes={} jobs_failed={} jobs_pending={}",
            self.engine,
            self.dma_jobs,
            self.dma_bytes,
            self.cpu_jobs,
            self.cpu_bytes,
            self.jobs_failed,
            self.jobs_pending
        )
    }
}

fn io_error(op: &'static str, path: &Path, e: std::io::Error) -> Error {
    let errno = rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO);
    Error::os(op, path.display().to_string(), errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_driver_format() {
        let text = "engine: dma dma0chan0\ndma_jobs: 3\ndma_bytes: 4096\ncpu_jobs: 0\n\
                    cpu_bytes: 0\njobs_failed: 1\njobs_pending: 0\n";
        let s = EngineStats::parse(text).unwrap();
        assert_eq!(s.kind(), Engine::Dma);
        assert_eq!(s.of(Engine::Dma), (3, 4096));
        assert_eq!(s.jobs_failed, 1);
        assert_eq!(
            s.to_string(),
            "engine: dma dma0chan0 dma_jobs=3 dma_bytes=4096 cpu_jobs=0 cpu_bytes=0 \
             jobs_failed=1 jobs_pending=0"
        );
    }

    #[test]
    fn rejects_garbage() {
        assert!(EngineStats::parse("dma_jobs: x\n").is_err());
        assert!(EngineStats::parse("dma_jobs: 1\n").is_err());
        assert!(EngineStats::parse("nonsense\n").is_err());
        assert_eq!(
            EngineStats::parse("engine: cpu\n").unwrap().kind(),
            Engine::Cpu
        );
    }
}
