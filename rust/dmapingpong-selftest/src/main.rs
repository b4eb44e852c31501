//! `dmapingpong-selftest`: the init-time self-test of the dmapingpong
//! driver. Reads its configuration (default
//! `/etc/dmapingpong/selftest.toml`), runs the scenarios of [`scenarios`]
//! and prints KTAP version 1 to stdout; logs go to stderr (`RUST_LOG`,
//! default `info`). Exits non-zero if any test fails.
//!
//! Child processes are this executable again with the hidden `child`
//! subcommand and a socket as stdin.

mod child;
mod config;
mod jobs;
mod ktap;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::ktap::{Ktap, Outcome};

#[derive(Parser)]
#[command(version, about = "Self-test of the dmapingpong driver (KTAP output)")]
struct Cli {
    /// Configuration file; the defaults apply if it does not exist.
    #[arg(long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    child: Option<ChildCommand>,
}

#[derive(Subcommand)]
enum ChildCommand {
    /// Internal: a child process of a scenario, talking over stdin.
    #[command(hide = true)]
    Child {
        #[arg(value_enum)]
        role: child::Role,
        #[arg(long)]
        device: PathBuf,
        #[arg(long)]
        timeout_ms: u64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    if let Some(ChildCommand::Child {
        role,
        device,
        timeout_ms,
    }) = cli.child
    {
        return match child::run(role, &device, timeout_ms) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!("child {role:?}: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cfg = match Config::load(&cli.config) {
        Ok(cfg) => cfg,
        Err(e) => {
            log::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(&cfg) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            log::error!("writing KTAP: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cfg: &Config) -> std::io::Result<bool> {
    let tests = scenarios::plan(cfg);
    let mut ktap = Ktap::new(std::io::stdout().lock(), tests.len())?;
    let mut driver_missing = None;
    for test in tests {
        log::info!("running {}", test.name);
        let mut diags = Vec::new();
        let outcome = match &driver_missing {
            Some(reason) => Outcome::Skip(format!("driver_present failed: {reason}")),
            None => match (test.run)(cfg, &mut diags) {
                Ok(()) => Outcome::Pass,
                Err(e) => match e.downcast_ref::<scenarios::Skip>() {
                    Some(skip) => Outcome::Skip(skip.0.clone()),
                    None => Outcome::Fail(format!("{e:#}")),
                },
            },
        };
        for d in &diags {
            ktap.diag(&format!("{}: {d}", test.name))?;
        }
        if let Outcome::Fail(reason) = &outcome {
            log::error!("{} failed: {reason}", test.name);
            if test.name == "driver_present" {
                driver_missing = Some(reason.clone());
            }
        }
        ktap.result(&test.name, &outcome)?;
    }
    ktap.finish()
}
