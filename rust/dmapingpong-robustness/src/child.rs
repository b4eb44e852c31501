//! The child side of the multi-process tests: this executable started with
//! the hidden `child` subcommand, the parent's socket as stdin.

use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use dmapingpong::pingpong::{self, Mode, Params};
use dmapingpong::{Channel, Device, DmaBuf, Errno, Message, pattern};

use crate::error::{Context, Failure, Result};
use crate::sys;

/// What the child does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// The second fuzzer process (see [`crate::classes::fuzz`]).
    FuzzPeer,
    /// The pong side of a ping-pong session.
    Pong,
    /// The ping side of a ping-pong session (`--mode`, `--size`, `--count`
    /// rounds).
    Ping,
    /// Allocates a buffer of `--size` bytes, fills it with pattern seq 7,
    /// sends it with a Hello and exits at once.
    Exporter,
    /// Receives a buffer, verifies seq 8, writes seq 9, closes everything,
    /// answers Round{0, 9} and exits.
    Importer,
    /// Maps a buffer, unmaps it and reads the unmapped address: must die of
    /// SIGSEGV (exit 3 if it survives).
    TouchUnmapped,
    /// Opens the device (run as an unprivileged user): exit 0 on `EACCES`,
    /// 10 if the open succeeded, 11 on any other error.
    OpenDevice,
}

/// Arguments of a child.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The role.
    #[arg(value_enum)]
    pub role: Role,
    /// Device node.
    #[arg(long)]
    pub device: PathBuf,
    /// The run's seed.
    #[arg(long)]
    pub seed: u64,
    /// Bound of every wait.
    #[arg(long)]
    pub timeout_ms: u64,
    /// Rounds or operations, depending on the role.
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// Threads (fuzz peer).
    #[arg(long, default_value_t = 4)]
    pub threads: u64,
    /// Ping-pong mode (ping).
    #[arg(long, default_value = "explicit")]
    pub mode: Mode,
    /// Buffer size in bytes.
    #[arg(long, default_value_t = 4096)]
    pub size: u64,
}

/// Exit status of [`Role::OpenDevice`] when the open succeeded.
pub const OPEN_SUCCEEDED: i32 = 10;
/// Exit status of [`Role::OpenDevice`] on an errno other than `EACCES`.
pub const OPEN_OTHER_ERROR: i32 = 11;
/// Exit status of [`Role::TouchUnmapped`] if the access did not fault.
pub const TOUCH_SURVIVED: i32 = 3;

/// Runs the child described by `args`.
pub fn run(args: &Args) -> Result<()> {
    let timeout = Duration::from_millis(args.timeout_ms);
    if args.role == Role::OpenDevice {
        let code = match Device::open(&args.device) {
            Err(e) if e.errno() == Some(Errno::ACCESS) => 0,
            Ok(_) => OPEN_SUCCEEDED,
            Err(e) => {
                log::error!("open as uid {}: {e}", rustix::process::getuid().as_raw());
                OPEN_OTHER_ERROR
            }
        };
        std::process::exit(code);
    }
    let sock = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Failure::io("stdin", e))?;
    let chan = Channel::from_fd(sock);
    chan.set_timeout(timeout)?;
    match args.role {
        Role::FuzzPeer => crate::classes::fuzz::peer(args, chan),
        Role::Pong => {
            let dev = Device::open(&args.device)?;
            pingpong::pong(&dev, &chan, timeout)?;
            Ok(())
        }
        Role::Ping => {
            let dev = Device::open(&args.device)?;
            let params = Params {
                mode: args.mode,
                buffers: 1,
                size: args.size,
                rounds: args.count.max(1),
                timeout,
            };
            pingpong::ping(&dev, &chan, &params)?;
            Ok(())
        }
        Role::Exporter => {
            let dev = Device::open(&args.device)?;
            let buf = dev.alloc(args.size)?;
            let map = buf.mmap()?;
            pattern::fill(map.unsynced(), 7, 0);
            chan.send_buffer(&buf, Mode::Explicit)?;
            Ok(())
        }
        Role::Importer => {
            let (msg, mut fds) = chan.recv("hello")?;
            check!(
                matches!(msg, Message::Hello { buffers: 1, .. }) && fds.len() == 1,
                "expected a hello with one buffer, got {msg:?}"
            );
            let buf = DmaBuf::from_fd(fds.remove(0))?;
            let mut map = buf.mmap()?;
            {
                let cpu = map.begin(dmapingpong::Access::ReadWrite, timeout)?;
                pattern::verify(cpu.words(), 8, 0).ctx("the exporter's data")?;
                pattern::fill(cpu.words(), 9, 0);
                cpu.end()?;
            }
            drop(map);
            drop(buf);
            chan.send(&Message::Round { round: 0, seq: 9 }, &[])?;
            Ok(())
        }
        Role::TouchUnmapped => {
            let dev = Device::open(&args.device)?;
            let buf = dev.alloc(args.size)?;
            let map = sys::RawMap::shared(buf.as_fd(), buf.size() as usize, 0)
                .map_err(|e| Failure::os("mmap", e))?;
            map.bytes()[0].store(1, std::sync::atomic::Ordering::Relaxed);
            let addr = map.addr();
            drop(map);
            chan.send(&Message::Round { round: 0, seq: 0 }, &[])?;
            let v = sys::touch_unmapped(addr);
            log::error!("read {v} from unmapped address {addr:#x}");
            std::process::exit(TOUCH_SURVIVED);
        }
        Role::OpenDevice => unreachable!("handled above"),
    }
}
