//! `dmapingpong`: device info, by-hand ping/pong runs between two
//! processes over a Unix socket, and the benchmark (`dmapingpong bench`).

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use dmapingpong::pingpong::{self, Mode, Params};
use dmapingpong::{Channel, Device};

#[derive(Parser)]
#[command(version, about = "Exercise the dmapingpong driver by hand")]
struct Cli {
    /// Device node.
    #[arg(long, global = true, default_value = Device::DEFAULT_PATH)]
    device: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Explicit,
    Implicit,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Explicit => Mode::Explicit,
            ModeArg::Implicit => Mode::Implicit,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Print the driver's GET_INFO.
    Info,
    /// Allocate the buffers, wait for one pong peer on SOCKET and run.
    Ping {
        /// Unix socket path to listen on (must not exist).
        #[arg(long)]
        socket: PathBuf,
        /// Synchronisation mode.
        #[arg(long, value_enum, default_value = "explicit")]
        mode: ModeArg,
        /// Number of buffers (1..=64).
        #[arg(long, default_value_t = 4)]
        buffers: u32,
        /// Bytes per buffer (rounded up to pages).
        #[arg(long, default_value_t = 1 << 20)]
        size: u64,
        /// Number of rounds.
        #[arg(long, default_value_t = 1000)]
        rounds: u64,
        /// Bound of every wait, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// How long to wait for the peer to connect, in milliseconds.
        #[arg(long, default_value_t = 60_000)]
        accept_timeout_ms: u64,
    },
    /// Measure fences, buffers, the ping-pong and device jobs against
    /// their baselines in this run (eventfd, sw_sync, anonymous memory,
    /// dma-buf heaps, memcpy); print the figures, the goals and the results
    /// as JSON.
    Bench {
        /// How much to measure.
        #[arg(long, value_enum, default_value = "full")]
        profile: bench::Profile,
        /// Also write the results (JSON) to this file.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Only these groups (fence, cpu, pingpong, jobs, scale).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
    /// The peer process of the bench's two-process measurements (its
    /// socket is stdin).
    #[command(hide = true)]
    BenchPeer {
        #[arg(long, value_enum)]
        role: bench::peer::Role,
        #[arg(long)]
        rounds: u64,
    },
    /// Connect to a ping on SOCKET and answer its rounds.
    Pong {
        /// Unix socket path of the ping side.
        #[arg(long)]
        socket: PathBuf,
        /// Bound of every wait, in milliseconds.
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let open = || Device::open(&cli.device);
    match cli.command {
        Command::Bench {
            profile,
            output,
            only,
        } => bench::run(bench::Options {
            device: cli.device.clone(),
            profile,
            output,
            groups: only,
        })?,
        Command::BenchPeer { role, rounds } => bench::peer::run(&cli.device, role, rounds)?,
        Command::Info => {
            let i = open()?.info()?;
            println!(
                "version {} page_size {} pool_size {} pool_used {} buffers {} fences_pending {}",
                i.version, i.page_size, i.pool_size, i.pool_used, i.buffers, i.fences_pending
            );
        }
        Command::Ping {
            socket,
            mode,
            buffers,
            size,
            rounds,
            timeout_ms,
            accept_timeout_ms,
        } => {
            let params = Params {
                mode: mode.into(),
                buffers,
                size,
                rounds,
                timeout: Duration::from_millis(timeout_ms),
            };
            params.validate()?;
            let chan = Channel::accept_one(&socket, Duration::from_millis(accept_timeout_ms))?;
            let stats = pingpong::ping(&open()?, &chan, &params).context("ping")?;
            println!("ping {}: {buffers} buffers: {stats}", params.mode);
        }
        Command::Pong { socket, timeout_ms } => {
            let chan = Channel::connect(&socket)?;
            let stats = pingpong::pong(&open()?, &chan, Duration::from_millis(timeout_ms))
                .context("pong")?;
            println!("pong: {stats}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmapingpong: {e:#}");
            ExitCode::FAILURE
        }
    }
}
