//! Group 4: device jobs on the driver's engine (a DMA channel, or its CPU
//! worker): copy and fill throughput against user-space `memcpy`/`memset`
//! of the same bytes, the submit-to-signal latency of a 4 KiB copy against
//! a bare fence (create, signal, wait), and a chain of jobs linked by
//! in-fences against the same jobs submitted independently.

use std::hint::black_box;
use std::os::fd::AsFd;
use std::time::Instant;

use anyhow::ensure;
use dmapingpong::{Device, DmaBuf, Fence, FenceStatus, Job};

use super::{Bench, Figure, TIMEOUT, iterations, micros, size_id, size_name, time_each};

fn wait(dev: &Device, fence: &Fence) -> anyhow::Result<()> {
    let status = dev.wait_fence(fence.sync_file(), TIMEOUT)?;
    ensure!(status == FenceStatus::Signalled, "job fence: {status:?}");
    Ok(())
}

/// A copy of `size` bytes from `src` to `dst` that waits only for `in_fences`.
fn copy<'a>(
    dst: &'a DmaBuf,
    src: &'a DmaBuf,
    size: u64,
    in_fences: &'a [std::os::fd::BorrowedFd<'a>],
) -> Job<'a> {
    Job {
        in_fences,
        implicit_sync: false,
        ..Job::copy(dst.as_fd(), src.as_fd(), size)
    }
}

pub fn run(b: &mut Bench) -> anyhow::Result<()> {
    let dev = b.dev()?;
    let budget = b.profile.pick(8u64 << 20, 96 << 20);
    let sizes: &[u64] = b
        .profile
        .pick(&[64 << 10, 1 << 20], &[64 << 10, 1 << 20, 8 << 20]);
    for &size in sizes {
        let n = iterations(budget, size, 20, 1000);
        let (sid, sname) = (size_id(size), size_name(size));
        let src = vec![0x5au8; size as usize];
        let mut dst = vec![0u8; size as usize];
        let samples = time_each(n, || {
            black_box(&mut dst).copy_from_slice(black_box(&src));
            Ok(())
        })?;
        let memcpy = format!("jobs/memcpy/{sid}");
        b.add(
            Figure::rate(
                &memcpy,
                &format!("user-space memcpy {sname}"),
                "MB/s",
                size as f64,
                &samples,
            )
            .param("size", size),
        );
        let samples = time_each(n, || {
            black_box(&mut dst).fill(black_box(0xa5));
            Ok(())
        })?;
        let memset = format!("jobs/memset/{sid}");
        b.add(
            Figure::rate(
                &memset,
                &format!("user-space memset {sname}"),
                "MB/s",
                size as f64,
                &samples,
            )
            .param("size", size),
        );
        drop((src, dst));

        let (s, d) = (dev.alloc(size)?, dev.alloc(size)?);
        let mut engine = None;
        let samples = time_each(n, || {
            let job = dev.submit_job(&copy(&d, &s, size, &[]))?;
            engine = Some(job.engine);
            wait(&dev, &job.fence)
        })?;
        let engine = engine.map(|e| e.to_string()).unwrap_or_default();
        b.report.machine.engine.clone_from(&engine);
        b.add(
            Figure::rate(
                &format!("jobs/copy/{sid}"),
                &format!("copy job {sname} on the {engine} engine, submit to signal"),
                "MB/s",
                size as f64,
                &samples,
            )
            .param("size", size)
            .against(&memcpy),
        );
        let fill = Job {
            implicit_sync: false,
            ..Job::fill(d.as_fd(), 0xa5a5_a5a5_a5a5_a5a5, size)
        };
        match time_each(n, || {
            let job = dev.submit_job(&fill)?;
            wait(&dev, &job.fence)
        }) {
            Ok(samples) => b.add(
                Figure::rate(
                    &format!("jobs/fill/{sid}"),
                    &format!("fill job {sname} on the {engine} engine, submit to signal"),
                    "MB/s",
                    size as f64,
                    &samples,
                )
                .param("size", size)
                .against(&memset),
            ),
            Err(e) => println!("# bench: jobs/fill/{sid}: not measured: {e:#}"),
        }
    }

    // Submit-to-signal latency of a 4 KiB copy, and of a bare fence.
    let n = b.profile.pick(100, 1000);
    let page = b.report.machine.page_size;
    let samples = time_each(n, || {
        let fence = dev.create_fence(None)?;
        dev.signal(&fence, None)?;
        wait(&dev, &fence)
    })?;
    b.add(Figure::latency(
        "jobs/fence-only",
        "a bare fence: CREATE_FENCE, SIGNAL_FENCE, WAIT_FENCE",
        "us",
        &samples,
    ));
    let (s, d) = (dev.alloc(page)?, dev.alloc(page)?);
    let samples = time_each(n, || {
        let job = dev.submit_job(&copy(&d, &s, page, &[]))?;
        wait(&dev, &job.fence)
    })?;
    b.add(
        Figure::latency(
            &format!("jobs/latency/{}", size_id(page)),
            &format!("copy job of {}, submit to signal", size_name(page)),
            "us",
            &samples,
        )
        .param("size", page)
        .against("jobs/fence-only"),
    );

    // N jobs, each waiting for the previous one's out-fence, against the
    // same N jobs without in-fences (one file's jobs run in order anyway).
    const CHAIN: usize = 16;
    let size = 64 << 10;
    let src = dev.alloc(size)?;
    let dsts = (0..CHAIN)
        .map(|_| dev.alloc(size))
        .collect::<Result<Vec<_>, _>>()?;
    let reps = b.profile.pick(5, 40);
    let mut chain_us = Vec::with_capacity(reps);
    let mut indep_us = Vec::with_capacity(reps);
    for _ in 0..reps {
        for chained in [false, true] {
            let t = Instant::now();
            let mut fences: Vec<Fence> = Vec::with_capacity(CHAIN);
            for d in &dsts {
                let prev = fences
                    .last()
                    .filter(|_| chained)
                    .map(|f| f.sync_file().as_fd());
                let ins: Vec<_> = prev.into_iter().collect();
                fences.push(dev.submit_job(&copy(d, &src, size, &ins))?.fence);
            }
            for f in &fences {
                wait(&dev, f)?;
            }
            let us = micros(t.elapsed());
            if chained {
                chain_us.push(us)
            } else {
                indep_us.push(us)
            }
        }
    }
    b.add(
        Figure::latency(
            "jobs/independent16",
            "16 copy jobs of 64 KiB without in-fences, first submit to last signal",
            "us",
            &indep_us,
        )
        .param("jobs", CHAIN as u64)
        .param("size", size),
    );
    b.add(
        Figure::latency(
            "jobs/chain16",
            "16 copy jobs of 64 KiB, each with the previous out-fence as in-fence",
            "us",
            &chain_us,
        )
        .param("jobs", CHAIN as u64)
        .param("size", size)
        .against("jobs/independent16"),
    );
    Ok(())
}
