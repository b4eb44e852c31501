//! Group 5: scale. Concurrent ping-pong pairs (explicit mode, one 4 KiB
//! buffer each: the per-round cost, not the bytes) and live buffers: the
//! cost per operation must stay flat as the count grows (no O(n) list on a
//! hot path), and the memory each buffer costs.

use std::os::fd::AsFd;
use std::sync::Barrier;
use std::time::Instant;

use anyhow::Context;
use dmapingpong::pingpong::{self, Mode, Params};
use dmapingpong::{DmaBuf, DmaHeap, Usage};

use super::peer::{Peer, Role};
use super::{Bench, Figure, TIMEOUT, cma_heap, micros, size_name, time_each};

/// A field of `/proc/meminfo`, in KiB.
fn meminfo_kib(field: &str) -> anyhow::Result<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/meminfo"))
}

fn pairs(b: &mut Bench) -> anyhow::Result<()> {
    let counts: &[usize] = b.profile.pick(&[1, 64], &[1, 2, 4, 8, 16, 32, 64]);
    let total_rounds = b.profile.pick(600u64, 4000);
    let cpus = b.report.machine.cpus;
    for &p in counts {
        let rounds = (total_rounds / p as u64).max(20) + 1;
        let params = Params {
            mode: Mode::Explicit,
            buffers: 1,
            size: 4096,
            rounds,
            timeout: TIMEOUT,
        };
        let peers = (0..p)
            .map(|_| Peer::spawn(&b.device, Role::Pong, rounds))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let devs = (0..p)
            .map(|_| b.dev())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let barrier = Barrier::new(p + 1);
        let (times, wall) = std::thread::scope(|s| -> anyhow::Result<_> {
            let threads: Vec<_> = peers
                .iter()
                .zip(&devs)
                .map(|(peer, dev)| {
                    let (barrier, params) = (&barrier, &params);
                    s.spawn(move || -> anyhow::Result<Vec<f64>> {
                        let mut times = Vec::new();
                        barrier.wait();
                        pingpong::ping_timed(dev, &peer.chan, params, &mut times)?;
                        // Round 0 includes the peer's start: not a sample.
                        Ok(times.into_iter().skip(1).map(micros).collect())
                    })
                })
                .collect();
            barrier.wait();
            let t = Instant::now();
            let mut all = Vec::new();
            for th in threads {
                all.extend(
                    th.join()
                        .map_err(|_| anyhow::anyhow!("ping thread panicked"))??,
                );
            }
            Ok((all, t.elapsed()))
        })?;
        for peer in peers {
            peer.finish()?;
        }
        // A pair runs one side at a time: p pairs keep min(p, CPUs) CPUs
        // busy, so a round trip costs its latency x min(p, CPUs) / p.
        let share = p.min(cpus) as f64 / p as f64;
        let cost: Vec<f64> = times.iter().map(|t| t * share).collect();
        let id = format!("scale/pairs/{p}");
        let mut fig = Figure::latency(
            &id,
            &format!("{p} concurrent ping-pong pairs: cost per round trip (latency x min(pairs, CPUs) / pairs)"),
            "us/op",
            &cost,
        )
        .param("pairs", p as u64)
        .param("rounds_per_pair", rounds);
        if p != counts[0] {
            fig = fig.against(&format!("scale/pairs/{}", counts[0]));
        }
        b.add(fig);
        let mut aggregate = Figure::value(
            &format!("{id}/aggregate"),
            &format!("{p} concurrent ping-pong pairs: round trips per second, all pairs"),
            "round trips/s",
            times.len() as f64 / wall.as_secs_f64(),
        )
        .param("pairs", p as u64);
        if p != counts[0] {
            aggregate = aggregate.against(&format!("scale/pairs/{}/aggregate", counts[0]));
        }
        b.add(aggregate);
    }
    Ok(())
}

/// Allocates `count` live buffers with `alloc`, then times `n` allocations (each closed at
/// once) next to them; returns the live buffers, the slab they took (KiB) and the samples.
fn live_and_alloc(
    count: usize,
    n: usize,
    what: &str,
    alloc: impl Fn() -> dmapingpong::Result<DmaBuf>,
) -> anyhow::Result<(Vec<DmaBuf>, u64, Vec<f64>)> {
    let before = meminfo_kib("Slab")?;
    let live = (0..count)
        .map(|_| alloc())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{count} live buffers of {what}"))?;
    let slab = meminfo_kib("Slab")?.saturating_sub(before);
    let samples = time_each(n, || {
        drop(alloc()?);
        Ok(())
    })?;
    Ok((live, slab, samples))
}

/// The cost per operation `op` with `count` live buffers, against that with `first`.
fn per_live(op: &str, label: String, samples: &[f64], count: usize, first: usize) -> Figure {
    let fig = Figure::latency(
        &format!("scale/buffers/{op}/{count}"),
        &label,
        "us/op",
        samples,
    )
    .param("live", count as u64);
    if count == first {
        fig
    } else {
        fig.against(&format!("scale/buffers/{op}/{first}"))
    }
}

fn buffers(b: &mut Bench) -> anyhow::Result<()> {
    let counts: &[usize] = b
        .profile
        .pick(&[4, 1024], &[4, 16, 64, 256, 512, 1024, 2048]);
    let n = b.profile.pick(100, 500);
    let dev = b.dev()?;
    let page = b.report.machine.page_size;
    let cma = cma_heap();
    let (first, last) = (counts[0], counts[counts.len() - 1]);
    for &count in counts {
        let (live, slab, samples) =
            live_and_alloc(count, n, "/dev/dmapingpong", || dev.alloc(page))?;
        let info = dev.info()?;
        let label = format!(
            "ALLOC + close of a {} buffer with {count} live buffers",
            size_name(page)
        );
        b.add(per_live("alloc", label, &samples, count, first));
        let mut k = 0;
        let samples = time_each(n, || {
            k = (k + 7919) % live.len();
            let fence = dev.create_fence(Some((live[k].as_fd(), Usage::Write)))?;
            dev.signal(&fence, None)?;
            Ok(())
        })?;
        let label = format!("write fence into a buffer's dma_resv + signal, {count} live buffers");
        b.add(per_live("fence", label, &samples, count, first));
        drop(live);
        // The same with the CMA heap's buffers (another exporter allocating
        // single pages of a CMA area, as ours does from the pool's).
        let mut heap_slab = None;
        if let Some(cma) = &cma {
            let heap = DmaHeap::open(cma)?;
            let what = format!("/dev/dma_heap/{cma}");
            let (live_cma, cma_slab, samples) =
                live_and_alloc(count, n, &what, || heap.alloc(page))?;
            heap_slab = Some(cma_slab);
            let label = format!(
                "CMA heap: ALLOC + close of a {} buffer with {count} live buffers",
                size_name(page)
            );
            b.add(per_live("heap-cma-alloc", label, &samples, count, first));
            drop(live_cma);
        }
        if count == last {
            b.add(
                Figure::value(
                    "scale/memory/pool-per-buffer",
                    &format!(
                        "pool bytes per live {} buffer (GET_INFO pool_used / buffers)",
                        size_name(page)
                    ),
                    "bytes",
                    info.pool_used as f64 / info.buffers.max(1) as f64,
                )
                .param("live", info.buffers),
            );
            let per_buffer = |kib: u64| kib as f64 * 1024.0 / count as f64;
            if let Some(heap_slab) = heap_slab {
                b.add(
                    Figure::value(
                        "scale/memory/heap-cma-slab-per-buffer",
                        "CMA heap: slab bytes per live buffer (/proc/meminfo Slab)",
                        "bytes",
                        per_buffer(heap_slab),
                    )
                    .param("live", count as u64),
                );
            }
            let mut fig = Figure::value(
                "scale/memory/slab-per-buffer",
                "slab bytes per live buffer (/proc/meminfo Slab: dma-buf file, inode, reservation, driver state)",
                "bytes",
                per_buffer(slab),
            )
            .param("live", count as u64);
            if heap_slab.is_some() {
                fig = fig.against("scale/memory/heap-cma-slab-per-buffer");
            }
            b.add(fig);
        }
    }
    Ok(())
}

pub fn run(b: &mut Bench) -> anyhow::Result<()> {
    pairs(b)?;
    buffers(b)
}
