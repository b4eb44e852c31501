//! Group 1: the fence round trip between two processes (ping signals, pong
//! wakes and signals back), by mechanism. See [`super::peer`] for the loops:
//! fences are created and passed outside the timed rounds, but for the
//! implicit case, whose peer must add its next fence to a reservation before
//! it waits (see [`peer::implicit`]).

use std::os::fd::AsFd;
use std::time::Duration;

use dmapingpong::{Device, PollFlags, Usage};

use super::peer::{self, Peer, Role, Timeline};
use super::{Bench, Figure, time_each};

/// Runs `rounds` round trips of `role` with a new peer; the parent's times in us.
fn round_trips(b: &Bench, role: Role, rounds: u64) -> anyhow::Result<Vec<f64>> {
    let peer = Peer::spawn(&b.device, role, rounds)?;
    let times = match role {
        Role::Eventfd => peer::eventfd(&peer.chan, rounds, true)?,
        Role::SwSync => peer::sync_files(&peer.chan, Timeline::sw_sync()?, None, rounds, true)?,
        Role::ExplicitPoll => {
            peer::sync_files(&peer.chan, Timeline::ours(&b.device)?, None, rounds, true)?
        }
        Role::ExplicitWait => {
            let waiter = Device::open(&b.device)?;
            let tl = Timeline::ours(&b.device)?;
            peer::sync_files(&peer.chan, tl, Some(&waiter), rounds, true)?
        }
        Role::Implicit => {
            let dev = b.dev()?;
            let page = b.report.machine.page_size;
            let bufs = (0..2 * peer::IMPLICIT_BUFFERS)
                .map(|_| dev.alloc(page))
                .collect::<Result<Vec<_>, _>>()?;
            peer::implicit(&peer.chan, &dev, Some(bufs), rounds)?
        }
        Role::Pong => anyhow::bail!("not a fence mechanism"),
    };
    peer.finish()?;
    Ok(times)
}

pub fn run(b: &mut Bench) -> anyhow::Result<()> {
    let rounds: u64 = b.profile.pick(600, 3000);
    // The mechanisms take turns, in blocks, so that a drift of the machine
    // (another guest, the host) spreads over all of them.
    const BLOCKS: u64 = 3;
    let cases: [(Role, &str, &str, Option<&str>); 5] = [
        (
            Role::Eventfd,
            "fence/eventfd",
            "eventfd write + blocking read (floor)",
            None,
        ),
        (
            Role::SwSync,
            "fence/sw_sync",
            "sw_sync timelines, poll() on sync_files (anchor)",
            Some("fence/eventfd"),
        ),
        (
            Role::ExplicitPoll,
            "fence/explicit-poll",
            "our fences, poll() on sync_files",
            Some("fence/sw_sync"),
        ),
        (
            Role::ExplicitWait,
            "fence/explicit-wait",
            "our fences, DPP_IOCTL_WAIT_FENCE",
            Some("fence/sw_sync"),
        ),
        (
            Role::Implicit,
            "fence/implicit",
            "our write fences in dma_resv, poll() on dma-bufs",
            Some("fence/sw_sync"),
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for _ in 0..BLOCKS {
        for (case, t) in cases.iter().zip(times.iter_mut()) {
            t.extend(round_trips(b, case.0, rounds / BLOCKS)?);
        }
    }
    for ((_, id, label, baseline), t) in cases.into_iter().zip(times) {
        let mut fig = Figure::latency(id, label, "us", &t).param("round_trips", t.len() as u64);
        if let Some(base) = baseline {
            fig = fig.against(base);
        }
        b.add(fig);
    }

    // What bounds the implicit round trip: a poll() of a dma-buf (reservation
    // lock, fence walk) against a poll() of a sync_file, both signalled.
    let n = b.profile.pick(500, 3000) as usize;
    let dev = b.dev()?;
    let buf = dev.alloc(b.report.machine.page_size)?;
    let fence = dev.create_fence(Some((buf.as_fd(), Usage::Write)))?;
    dev.signal(&fence, None)?;
    let samples = time_each(n, || {
        anyhow::ensure!(
            fence.sync_file().poll(Duration::ZERO)?,
            "sync_file not signalled"
        );
        Ok(())
    })?;
    b.add(Figure::latency(
        "fence/poll-sync_file",
        "one poll() of a signalled sync_file",
        "us",
        &samples,
    ));
    let samples = time_each(n, || {
        anyhow::ensure!(buf.poll(PollFlags::IN, Duration::ZERO)?, "dma-buf not idle");
        Ok(())
    })?;
    b.add(
        Figure::latency(
            "fence/poll-dma-buf",
            "one poll() of a dma-buf whose write fence signalled",
            "us",
            &samples,
        )
        .against("fence/poll-sync_file"),
    );
    Ok(())
}
