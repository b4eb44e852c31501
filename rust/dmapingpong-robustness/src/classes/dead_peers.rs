//! Class 5, `dead_peers`: a ping-pong peer is SIGKILLed at a random time;
//! the survivor must see a fence error (`ECANCELED`) or a closed socket
//! within its timeout, never hang, and nothing may be left behind.

use std::time::{Duration, Instant};

use dmapingpong::pingpong::{self, Mode, Params};
use dmapingpong::{Errno, Error};

use super::Diags;
use crate::ctx::{Ctx, Figures};
use crate::error::{Failure, Result};
use crate::ktap::Outcome;
use crate::rng::Rng;

/// How the survivor learnt about the death.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    canceled: u64,
    closed: u64,
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    let mut rng = Rng::stream(ctx.seed, 5);
    let mut seen = Seen::default();
    let mut worst = Duration::ZERO;
    let dev = ctx.open()?;
    for i in 0..ctx.plan.peer_kills {
        let mode = if rng.chance(50) {
            Mode::Explicit
        } else {
            Mode::Implicit
        };
        // Victim: the pong child (we ping) or the ping child (we pong).
        let victim_pings = rng.chance(50);
        let delay = Duration::from_micros(rng.range(0, 150_000));
        let size = rng.range(1, 4) * 4096;
        let what = format!(
            "kill {i}: {mode}, victim {}, after {} us",
            if victim_pings { "ping" } else { "pong" },
            delay.as_micros()
        );
        let (mut kid, chan) = if victim_pings {
            ctx.spawn(
                "ping",
                &[
                    "--mode".into(),
                    mode.name().into(),
                    "--count".into(),
                    u64::MAX.to_string(),
                    "--size".into(),
                    size.to_string(),
                ],
            )?
        } else {
            ctx.spawn("pong", &[])?
        };
        let pid = kid.pid();
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            let r = kid.kill();
            (kid, r, Instant::now())
        });
        let result = if victim_pings {
            pingpong::pong(&dev, &chan, ctx.timeout)
        } else {
            pingpong::ping(
                &dev,
                &chan,
                &Params {
                    mode,
                    buffers: 1,
                    size,
                    rounds: u64::MAX,
                    timeout: ctx.timeout,
                },
            )
        };
        let noticed = Instant::now();
        let (kid, killed, at) = killer
            .join()
            .map_err(|_| Failure::Check("killer thread panicked".into()))?;
        killed?;
        let status = kid.wait(ctx.timeout)?;
        drop(chan);
        check!(
            !status.success(),
            "{what}: pid {pid} exited successfully instead of being killed"
        );
        Figures::add(&ctx.figures.peers_killed, 1);
        let latency = noticed.saturating_duration_since(at);
        worst = worst.max(latency);
        match result {
            Err(Error::FenceError { errno, .. }) if errno == Errno::CANCELED => seen.canceled += 1,
            Err(Error::PeerClosed { .. }) => seen.closed += 1,
            Err(Error::Timeout { what: w, timeout }) => {
                fail!(
                    "{what}: survivor waited its full timeout ({} ms) for {w}",
                    timeout.as_millis()
                )
            }
            Err(e) => {
                fail!("{what}: survivor failed with {e}, expected ECANCELED or a closed socket")
            }
            Ok(stats) => fail!("{what}: survivor finished a session of u64::MAX rounds: {stats}"),
        }
        if latency > ctx.timeout / 2 {
            fail!(
                "{what}: the survivor noticed only {} ms after the kill",
                latency.as_millis()
            );
        }
    }
    drop(dev);
    diags.push(format!(
        "{} peers killed: survivor saw ECANCELED {} times, a closed socket {} times; slowest notice {} ms after the kill",
        ctx.plan.peer_kills,
        seen.canceled,
        seen.closed,
        worst.as_millis()
    ));
    ctx.expect_baseline(baseline, "after the killed peers")?;
    Ok(Outcome::Pass)
}
