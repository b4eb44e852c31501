//! What every test class gets: the parameters of the run, the figures it
//! adds to, and helpers for child processes, the driver's counters and the
//! module.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dmapingpong::{Channel, Device, DmaBuf, Errno};

use crate::error::{Context, Failure, Result};

/// How much work each class does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// About 3 minutes on QEMU TCG with a KASAN kernel.
    Ci,
    /// The numbers: >= 100 000 fuzz ops, >= 100 peer kills,
    /// >= 100 000 soak rounds.
    Full,
}

/// The sizes of one profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Fuzzer threads per process (two processes).
    pub fuzz_threads: u64,
    /// Fuzzer ops per thread.
    pub fuzz_ops_per_thread: u64,
    /// Ping-pong peers killed.
    pub peer_kills: u64,
    /// Soak rounds per ping-pong mode (two modes).
    pub soak_rounds_per_mode: u64,
    /// Highest `fail-nth` tried per operation in fault injection.
    pub fail_nth_max: u32,
    /// Operations per failure interval in the task-filter phase.
    pub filter_ops: u64,
    /// Fill/free/re-allocate iterations of the data-leak check.
    pub reuse_rounds: u64,
}

impl Profile {
    /// The sizes of this profile.
    pub fn plan(self) -> Plan {
        match self {
            Profile::Ci => Plan {
                fuzz_threads: 4,
                fuzz_ops_per_thread: 1_500,
                peer_kills: 30,
                soak_rounds_per_mode: 1_500,
                fail_nth_max: 64,
                filter_ops: 40,
                reuse_rounds: 8,
            },
            Profile::Full => Plan {
                fuzz_threads: 4,
                fuzz_ops_per_thread: 12_500,
                peer_kills: 100,
                soak_rounds_per_mode: 50_000,
                fail_nth_max: 256,
                filter_ops: 200,
                reuse_rounds: 32,
            },
        }
    }
}

/// Figures reported at the end of the run.
#[derive(Debug, Default)]
pub struct Figures {
    /// Fuzzer operations (each one ioctl or syscall on a driver object).
    pub ioctls_fuzzed: AtomicU64,
    /// Ping-pong peers killed with SIGKILL.
    pub peers_killed: AtomicU64,
    /// Allocation failures injected into driver calls.
    pub fault_injections: AtomicU64,
    /// Ping-pong rounds of the soak.
    pub rounds_soaked: AtomicU64,
    /// Objects kmemleak reported after the soak.
    pub leaked_objects: AtomicU64,
}

impl Figures {
    /// Adds `n` to a figure.
    pub fn add(figure: &AtomicU64, n: u64) {
        figure.fetch_add(n, Ordering::Relaxed);
    }
}

/// The run's parameters and figures, shared by the classes.
#[derive(Debug)]
pub struct Ctx {
    /// The device node.
    pub device: PathBuf,
    /// The seed of every random choice.
    pub seed: u64,
    /// The profile.
    pub profile: Profile,
    /// Its sizes.
    pub plan: Plan,
    /// Bound of every single wait.
    pub timeout: Duration,
    /// Module name for rmmod/modprobe.
    pub module: String,
    /// The figures.
    pub figures: Figures,
}

/// The driver's usage counters that must return to their baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the pool in use.
    pub pool_used: u64,
    /// Live buffers.
    pub buffers: u64,
    /// Unsignalled fences.
    pub fences_pending: u64,
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pool_used {} buffers {} fences_pending {}",
            self.pool_used, self.buffers, self.fences_pending
        )
    }
}

/// A child process of the suite, killed if dropped while running.
#[derive(Debug)]
pub struct Kid {
    child: Option<Child>,
    role: String,
}

impl Kid {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends SIGKILL.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(c) = &mut self.child {
            c.kill()
                .map_err(|e| Failure::io(format!("kill {}", self.role), e))?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for the child to exit; kills it after that
    /// (and fails).
    pub fn wait(mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut child = self.child.take().expect("child present until waited for");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| Failure::io(format!("wait for {}", self.role), e))?
            {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Timeout {
                    what: format!("exit of child {}", self.role),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits like [`wait`](Self::wait) and fails unless the exit status is 0.
    pub fn wait_success(self, timeout: Duration) -> Result<()> {
        let role = self.role.clone();
        let status = self.wait(timeout)?;
        check!(
            status.success(),
            "child {role} failed ({status}); see its log on stderr"
        );
        Ok(())
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Ctx {
    /// Opens the device.
    pub fn open(&self) -> Result<Device> {
        Ok(Device::open(&self.device)?)
    }

    /// The driver's counters, through a new open file.
    pub fn usage(&self) -> Result<Usage> {
        let info = self.open()?.info()?;
        Ok(Usage {
            pool_used: info.pool_used,
            buffers: info.buffers,
            fences_pending: info.fences_pending,
        })
    }

    /// Waits up to the timeout for the counters to return to `baseline`
    /// (releases of fds of exited processes and RCU-deferred fence frees can
    /// lag a little), and fails with the difference otherwise.
    pub fn expect_baseline(&self, baseline: Usage, what: &str) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let now = self.usage()?;
            if now == baseline {
                return Ok(());
            }
            if Instant::now() > deadline {
                fail!("{what}: driver counters {now}, expected the baseline {baseline}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts this executable as a child with `args` after `child`, and
    /// returns it and our end of a socket that is its stdin. The child's
    /// stdout goes to stderr, so that it cannot disturb the KTAP output.
    pub fn spawn(&self, role: &str, args: &[String]) -> Result<(Kid, Channel)> {
        let (ours, theirs) = Channel::pair()?;
        let exe = std::env::current_exe().map_err(|e| Failure::io("current_exe", e))?;
        let child = Command::new(exe)
            .arg("child")
            .arg(role)
            .arg("--device")
            .arg(&self.device)
            .arg("--seed")
            .arg(self.seed.to_string())
            .arg("--timeout-ms")
            .arg(self.timeout.as_millis().to_string())
            .args(args)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(std::io::stderr())
            .spawn()
            .map_err(|e| Failure::io(format!("spawn child {role}"), e))?;
        ours.set_timeout(self.timeout).ctx("child socket")?;
        Ok((
            Kid {
                child: Some(child),
                role: role.to_string(),
            },
            ours,
        ))
    }

    /// Runs `rmmod` or `modprobe` on the module; `Err` carries its output.
    pub fn modtool(&self, tool: &str) -> Result<std::result::Result<(), String>> {
        dmapingpong::module::run_tool(tool, &self.module)
            .map_err(|e| Failure::io(format!("run {tool}"), e))
    }
}

/// Allocates buffers of `chunk` bytes until the pool answers `ENOMEM`, and
/// fails if more than `pool_size` bytes could be allocated: the pool must
/// bound them (and a driver that never says `ENOMEM` must not make this loop
/// run until the machine is out of memory).
pub fn fill_pool(dev: &Device, chunk: u64, pool_size: u64) -> Result<Vec<DmaBuf>> {
    let mut held = Vec::new();
    loop {
        match dev.alloc(chunk) {
            Ok(b) => held.push(b),
            Err(e) if e.errno() == Some(Errno::NOMEM) => return Ok(held),
            Err(e) => return Err(e.into()),
        }
        if held.len() as u64 * chunk > pool_size {
            return Err(Failure::Check(format!(
                "allocated {} buffers of {chunk} bytes from a pool of {pool_size}",
                held.len()
            )));
        }
    }
}
