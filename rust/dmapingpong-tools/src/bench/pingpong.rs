//! Group 3: the ping-pong as a whole (`dmapingpong::pingpong`, a pong peer
//! process), both modes, across buffer sizes and counts: MB/s verified by
//! the ping side and round trips per second, implicit against explicit.

use dmapingpong::pingpong::{self, Mode, Params};

use super::peer::{Peer, Role};
use super::{Bench, Figure, TIMEOUT, iterations, micros, size_id, size_name};

/// Runs one session; returns its round times in us.
pub(super) fn session(b: &Bench, params: &Params) -> anyhow::Result<Vec<f64>> {
    let dev = b.dev()?;
    let peer = Peer::spawn(&b.device, Role::Pong, params.rounds)?;
    let mut times = Vec::new();
    pingpong::ping_timed(&dev, &peer.chan, params, &mut times)?;
    peer.finish()?;
    // Round 0 includes the peer's start (mapping the buffers): not a sample.
    Ok(times.into_iter().skip(1).map(micros).collect())
}

pub fn run(b: &mut Bench) -> anyhow::Result<()> {
    let (sizes, counts, budget): (&[u64], &[u32], u64) = b.profile.pick(
        (&[4 << 10, 1 << 20], &[1, 4], 12 << 20),
        (
            &[4 << 10, 64 << 10, 1 << 20, 8 << 20],
            &[1, 4, 16, 64],
            160 << 20,
        ),
    );
    // Both sides map every buffer; leave half of the pool free.
    let pool = b.report.machine.pool_size;
    for &size in sizes {
        for &count in counts {
            let bytes = size * u64::from(count);
            if bytes > pool / 2 {
                println!(
                    "# bench: pingpong {count} x {}: not measured: more than half of the pool",
                    size_name(size)
                );
                continue;
            }
            let rounds = iterations(budget, bytes, 20, 2000) as u64 + 1;
            let cfg = format!("{count}x{}", size_id(size));
            for mode in Mode::ALL {
                let params = Params {
                    mode,
                    buffers: count,
                    size,
                    rounds,
                    timeout: TIMEOUT,
                };
                let times = session(b, &params)?;
                let id = format!("pingpong/{mode}/{cfg}");
                let label = format!("ping-pong {mode}, {count} x {}", size_name(size));
                let mut mb = Figure::rate(&id, &label, "MB/s", bytes as f64, &times)
                    .param("size", size)
                    .param("buffers", count.into())
                    .param("rounds", rounds);
                let mut rt =
                    Figure::rate(&format!("{id}/rt"), &label, "round trips/s", 1.0, &times)
                        .param("size", size)
                        .param("buffers", count.into())
                        .param("rounds", rounds);
                if mode == Mode::Implicit {
                    mb = mb.against(&format!("pingpong/explicit/{cfg}"));
                    rt = rt.against(&format!("pingpong/explicit/{cfg}/rt"));
                }
                b.add(mb);
                b.add(rt);
            }
        }
    }
    Ok(())
}
