//! The kernel log since the suite started, read from `/dev/kmsg` without
//! blocking, and the reports in it that fail the run.

use std::os::fd::OwnedFd;

use dmapingpong::Errno;
use rustix::fs::{Mode, OFlags, SeekFrom};

/// Substrings of kernel log lines that are reports of kernel bugs: KASAN,
/// UBSAN, kmemleak, lockdep, DMA-API debugging, `WARN()`, `BUG()`, oopses.
pub const REPORT_PATTERNS: &[&str] = &[
    "KASAN",
    "UBSAN",
    "suspected memory leak",
    "possible circular locking",
    "possible recursive locking",
    "inconsistent lock state",
    "BUG: sleeping function",
    "DMA-API",
    "WARNING:",
    "BUG:",
    "Oops",
];

/// Whether a kernel log line is a report (see [`REPORT_PATTERNS`]).
pub fn is_report(line: &str) -> bool {
    REPORT_PATTERNS.iter().any(|p| line.contains(p))
}

/// Whether `text` contains what looks like a kernel address: 16 hex digits
/// starting with `ffff` (arm64/x86-64 kernel space), with or without `0x`.
pub fn has_kernel_address(text: &str) -> bool {
    let b = text.as_bytes();
    let hex = |c: u8| c.is_ascii_hexdigit();
    (0..b.len()).any(|i| {
        b[i..].len() >= 16
            && b[i..i + 4].eq_ignore_ascii_case(b"ffff")
            && b[i..i + 16].iter().all(|&c| hex(c))
            && (i == 0 || !hex(b[i - 1]))
            && b.get(i + 16).is_none_or(|&c| !hex(c))
    })
}

/// Parses one `/dev/kmsg` record (`prio,seq,usec,flags;text\n` followed by
/// ` KEY=value` continuation lines) into its text.
pub fn record_text(record: &[u8]) -> String {
    let s = String::from_utf8_lossy(record);
    let first = s.lines().next().unwrap_or("");
    first
        .split_once(';')
        .map_or(first, |(_, text)| text)
        .to_string()
}

/// A reader of `/dev/kmsg` positioned at the suite's start, keeping every
/// line read since.
#[derive(Debug)]
pub struct Kmsg {
    fd: Option<OwnedFd>,
    lines: Vec<String>,
    /// Records lost because the ring buffer overflowed (`EPIPE`).
    pub lost: u64,
}

impl Kmsg {
    /// Opens `/dev/kmsg` and skips everything logged so far.
    pub fn open() -> Result<Kmsg, Errno> {
        Kmsg::open_at(SeekFrom::End(0))
    }

    /// Opens `/dev/kmsg` at the oldest record still in the ring buffer.
    pub fn open_from_boot() -> Result<Kmsg, Errno> {
        Kmsg::open_at(SeekFrom::Start(0))
    }

    fn open_at(pos: SeekFrom) -> Result<Kmsg, Errno> {
        let fd = rustix::fs::open(
            "/dev/kmsg",
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::seek(&fd, pos)?;
        Ok(Kmsg {
            fd: Some(fd),
            lines: Vec::new(),
            lost: 0,
        })
    }

    /// A reader that reads nothing (no `/dev/kmsg`).
    pub fn none() -> Kmsg {
        Kmsg {
            fd: None,
            lines: Vec::new(),
            lost: 0,
        }
    }

    /// Whether the kernel log is being read.
    pub fn available(&self) -> bool {
        self.fd.is_some()
    }

    /// Reads the records logged since the last call; returns the index of
    /// the first new line in [`lines`](Self::lines).
    pub fn poll(&mut self) -> usize {
        let start = self.lines.len();
        let Some(fd) = &self.fd else {
            return start;
        };
        let mut buf = vec![0u8; 8192];
        loop {
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => self.lines.push(record_text(&buf[..n])),
                Err(Errno::PIPE) => self.lost += 1,
                Err(Errno::INTR) => continue,
                Err(_) => break, // EAGAIN: nothing more.
            }
        }
        start
    }

    /// Every line read since the suite started.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The report lines among `lines()[from..]`.
    pub fn reports_since(&self, from: usize) -> Vec<&str> {
        self.lines[from.min(self.lines.len())..]
            .iter()
            .map(String::as_str)
            .filter(|l| is_report(l))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        assert!(is_report(
            "BUG: KASAN: slab-use-after-free in dma_buf_release+0x30/0x100"
        ));
        assert!(is_report("WARNING: CPU: 1 PID: 80 at mm/slub.c:123"));
        assert!(is_report(
            "kmemleak: 2 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"
        ));
        assert!(is_report(
            "WARNING: possible circular locking dependency detected"
        ));
        assert!(is_report(
            "DMA-API: dmapingpong: device driver frees DMA memory"
        ));
        assert!(!is_report(
            "dmapingpong dmapingpong: rejected request (3 so far): ALLOC: size 0 not in 1..=33554432"
        ));
    }

    #[test]
    fn kernel_addresses() {
        assert!(has_kernel_address("ptr 0xffff000012345678 here"));
        assert!(has_kernel_address("ffff80008000abcd"));
        assert!(has_kernel_address("x=FFFF80008000ABCD,"));
        assert!(!has_kernel_address("pool of 32768 KiB at 0x48000000"));
        assert!(!has_kernel_address("ffff8000"));
        assert!(!has_kernel_address("1ffff80008000abcd"));
        assert!(!has_kernel_address(
            "size:\t4096\ncount:\t1\nexp_name:\tdmapingpong\n"
        ));
    }

    #[test]
    fn records() {
        assert_eq!(
            record_text(b"6,339,5140900,-;NET: Registered protocol family 10\n"),
            "NET: Registered protocol family 10"
        );
        assert_eq!(record_text(b"4,1,2,-;a;b\n SUBSYSTEM=platform\n"), "a;b");
    }
}
