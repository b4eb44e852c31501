//! The two sides of the bench's two-process measurements. The parent
//! starts this executable again as `dmapingpong bench-peer --role ROLE` with
//! its end of a socket pair as stdin; both sides run the same loops, the
//! parent times them.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use dmapingpong::{
    Channel, Device, DmaBuf, Fence, FenceStatus, Message, PollFlags, SwSyncTimeline, SyncFile,
    Usage, pingpong,
};

use super::{TIMEOUT, micros};

/// What the peer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// eventfd ping-pong: `write()` one, blocking `read()` of the other.
    Eventfd,
    /// `sw_sync` timelines, waiting with `poll()` on the sync_files.
    SwSync,
    /// Our fences without buffer, waiting with `poll()` on the sync_files.
    ExplicitPoll,
    /// Our fences without buffer, waiting with `DPP_IOCTL_WAIT_FENCE`.
    ExplicitWait,
    /// Our write fences in the reservations of dma-bufs, waiting with
    /// `poll()` on the dma-bufs.
    Implicit,
    /// The pong side of a ping-pong session.
    Pong,
}

/// A started peer and our end of its socket.
pub struct Peer {
    child: Child,
    /// Our end of the peer's socket.
    pub chan: Channel,
}

impl Peer {
    /// Starts this executable as a peer in `role`.
    pub fn spawn(device: &Path, role: Role, rounds: u64) -> anyhow::Result<Peer> {
        use clap::ValueEnum;
        let (ours, theirs) = Channel::pair()?;
        let name = role
            .to_possible_value()
            .context("role without a name")?
            .get_name()
            .to_string();
        let child = Command::new(std::env::current_exe().context("current_exe")?)
            .arg("--device")
            .arg(device)
            .arg("bench-peer")
            .arg("--role")
            .arg(name)
            .arg("--rounds")
            .arg(rounds.to_string())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .spawn()
            .context("spawn the bench peer")?;
        ours.set_timeout(TIMEOUT)?;
        Ok(Peer { child, chan: ours })
    }

    /// Waits for the peer to exit (after its last round) and checks its
    /// status.
    pub fn finish(mut self) -> anyhow::Result<()> {
        let status = self.child.wait().context("wait for the bench peer")?;
        ensure!(status.success(), "the bench peer failed: {status}");
        Ok(())
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // Only after an error: `finish` has reaped it otherwise.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `role` against the parent on stdin (the `bench-peer` subcommand).
pub fn run(device: &Path, role: Role, rounds: u64) -> anyhow::Result<()> {
    let sock = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("stdin")?;
    let chan = Channel::from_fd(sock);
    chan.set_timeout(TIMEOUT)?;
    match role {
        Role::Eventfd => eventfd(&chan, rounds, false).map(drop),
        Role::SwSync => sync_files(&chan, Timeline::sw_sync()?, None, rounds, false).map(drop),
        Role::ExplicitPoll => {
            sync_files(&chan, Timeline::ours(device)?, None, rounds, false).map(drop)
        }
        Role::ExplicitWait => {
            let waiter = Device::open(device)?;
            sync_files(&chan, Timeline::ours(device)?, Some(&waiter), rounds, false).map(drop)
        }
        Role::Implicit => implicit(&chan, &Device::open(device)?, None, rounds).map(drop),
        Role::Pong => {
            pingpong::pong(&Device::open(device)?, &chan, TIMEOUT)?;
            Ok(())
        }
    }
}

fn expect_round(chan: &Channel, round: u64, seq: u64, fds: usize) -> anyhow::Result<Vec<OwnedFd>> {
    let (msg, got) = chan.recv("the peer's round")?;
    ensure!(
        msg == (Message::Round { round, seq }) && got.len() == fds,
        "expected round {round} ({seq}) with {fds} fds, got {msg:?} with {} fds",
        got.len()
    );
    Ok(got)
}

fn poll_in(fd: impl AsFd, what: &str) -> anyhow::Result<()> {
    let mut fds = [rustix::event::PollFd::new(&fd, PollFlags::IN)];
    let ts = rustix::event::Timespec::try_from(TIMEOUT)?;
    loop {
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => bail!("{what}: nothing within {} s", TIMEOUT.as_secs()),
            Ok(_) => return Ok(()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => bail!("poll {what}: {e}"),
        }
    }
}

/// The eventfd ping-pong (the floor: one system call to signal, one to
/// wait); the parent passes both eventfds (to the peer, to the parent) in
/// round 0. Returns the parent's round trip times in us.
pub fn eventfd(chan: &Channel, rounds: u64, parent: bool) -> anyhow::Result<Vec<f64>> {
    use rustix::event::{EventfdFlags, eventfd};
    let (to_peer, to_parent) = if parent {
        let a = eventfd(0, EventfdFlags::CLOEXEC)?;
        let b = eventfd(0, EventfdFlags::CLOEXEC)?;
        chan.send(
            &Message::Round { round: 0, seq: 0 },
            &[a.as_fd(), b.as_fd()],
        )?;
        (a, b)
    } else {
        let mut fds = expect_round(chan, 0, 0, 2)?.into_iter();
        (fds.next().unwrap(), fds.next().unwrap())
    };
    let (mine, theirs) = if parent {
        (&to_parent, &to_peer)
    } else {
        (&to_peer, &to_parent)
    };
    let mut buf = [0u8; 8];
    let mut times = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let t = Instant::now();
        if parent {
            rustix::io::write(theirs, &1u64.to_ne_bytes())?;
        }
        // A blocking read: the cheapest wait (one system call), with the peer's
        // exit as the bound (its end of the socket closes, and `finish` reports it).
        rustix::io::read(mine, &mut buf)?;
        if parent {
            times.push(micros(t.elapsed()));
        } else {
            rustix::io::write(theirs, &1u64.to_ne_bytes())?;
        }
    }
    Ok(times)
}

/// A timeline whose fences travel as sync_files: `sw_sync` or our device.
pub enum Timeline {
    /// A `sw_sync` timeline and the point of the next fence.
    SwSync(SwSyncTimeline, u32),
    /// Our device file and its pending fences, oldest first.
    Ours(Device, VecDeque<Fence>),
}

impl Timeline {
    /// A new `sw_sync` timeline.
    pub fn sw_sync() -> anyhow::Result<Timeline> {
        Ok(Timeline::SwSync(SwSyncTimeline::open()?, 1))
    }

    /// A new open file of our device.
    pub fn ours(device: &Path) -> anyhow::Result<Timeline> {
        Ok(Timeline::Ours(Device::open(device)?, VecDeque::new()))
    }

    /// Creates the fences of the `n` rounds from `round` and sends them in
    /// one message (`Round { round, seq: n }`).
    fn send_batch(&mut self, chan: &Channel, round: u64, n: u64) -> anyhow::Result<()> {
        let msg = Message::Round { round, seq: n };
        match self {
            Timeline::SwSync(tl, next) => {
                let fences = (0..n)
                    .map(|i| tl.create_fence(*next + i as u32))
                    .collect::<Result<Vec<_>, _>>()?;
                *next += n as u32;
                let fds: Vec<_> = fences.iter().map(AsFd::as_fd).collect();
                chan.send(&msg, &fds)?;
            }
            Timeline::Ours(dev, pending) => {
                let first = pending.len();
                for _ in 0..n {
                    pending.push_back(dev.create_fence(None)?);
                }
                let fds: Vec<_> = pending
                    .iter()
                    .skip(first)
                    .map(|f| f.sync_file().as_fd())
                    .collect();
                chan.send(&msg, &fds)?;
            }
        }
        Ok(())
    }

    /// Signals the oldest pending fence.
    fn signal(&mut self) -> anyhow::Result<()> {
        match self {
            Timeline::SwSync(tl, _) => tl.inc(1)?,
            Timeline::Ours(dev, pending) => {
                let fence = pending.pop_front().context("no pending fence")?;
                dev.signal(&fence, None)?;
            }
        }
        Ok(())
    }
}

/// Fences created and exchanged per batch, outside the timed rounds.
const BATCH: u64 = 32;

/// Round trips over sync_files. Before every [`BATCH`] rounds (untimed),
/// each side creates the fences of these rounds on its timeline and sends
/// them to the peer in one message; a round is then: the parent signals its
/// fence, the peer wakes (`poll()`, or `DPP_IOCTL_WAIT_FENCE` on `waiter`)
/// and signals its own, the parent wakes. Returns the parent's round trip
/// times in us.
pub fn sync_files(
    chan: &Channel,
    mut tl: Timeline,
    waiter: Option<&Device>,
    rounds: u64,
    parent: bool,
) -> anyhow::Result<Vec<f64>> {
    let wait = |f: &SyncFile| -> anyhow::Result<()> {
        match waiter {
            None => poll_in(f, "the peer's sync_file"),
            Some(dev) => {
                let status = dev.wait_fence(f, TIMEOUT)?;
                ensure!(
                    status == FenceStatus::Signalled,
                    "the peer's fence: {status:?}"
                );
                Ok(())
            }
        }
    };
    let mut theirs = VecDeque::new();
    let mut times = Vec::with_capacity(rounds as usize);
    for r in 0..rounds {
        if r % BATCH == 0 {
            let n = BATCH.min(rounds - r);
            tl.send_batch(chan, r, n)?;
            let fds = expect_round(chan, r, n, n as usize)?;
            theirs.extend(fds.into_iter().map(SyncFile::from_fd));
        }
        let fence = theirs.pop_front().context("no fence of the peer")?;
        let t = Instant::now();
        if parent {
            tl.signal()?;
            wait(&fence)?;
            times.push(micros(t.elapsed()));
            // Untimed: the peer's fence signalled without error.
            let status = fence.status()?;
            ensure!(
                status == FenceStatus::Signalled,
                "the peer's fence of round {r}: {status:?}"
            );
        } else {
            wait(&fence)?;
            tl.signal()?;
        }
    }
    Ok(times)
}

/// Buffers per side of [`implicit`].
pub const IMPLICIT_BUFFERS: usize = 3;

/// Round trips over reservations. Each side writes fences into its own
/// [`IMPLICIT_BUFFERS`] dma-bufs, round `r` into buffer `r % 3`, and
/// `poll()`s the peer's. Before signalling the fence of round `r` (and, on
/// the peer's side, before waiting for the parent's), it adds the fence of
/// round `r + 1` to the next buffer (untimed on the parent's side), so that
/// the other side's next `poll()` finds it. Three buffers, not two: the
/// fence of round `r + 2`, which the peer adds while the parent may still be
/// polling for round `r`, must not land in the buffer being polled, or the
/// parent would wait for it (`poll()` on a dma-buf waits for the fences
/// there when it looks). The parent allocates all buffers and sends them with
/// the hello (its own first); the peer answers with round 0 once its first
/// fence is in place. Returns the parent's round trip times in us.
pub fn implicit(
    chan: &Channel,
    dev: &Device,
    parent_bufs: Option<Vec<DmaBuf>>,
    rounds: u64,
) -> anyhow::Result<Vec<f64>> {
    const N: usize = IMPLICIT_BUFFERS;
    let parent = parent_bufs.is_some();
    let bufs: Vec<DmaBuf> = match parent_bufs {
        Some(b) => b,
        None => {
            let (msg, fds) = chan.recv("hello")?;
            ensure!(
                fds.len() == 2 * N
                    && matches!(msg, Message::Hello { buffers, .. } if buffers as usize == 2 * N),
                "expected a hello with {} buffers, got {msg:?}",
                2 * N
            );
            fds.into_iter()
                .map(DmaBuf::from_fd)
                .collect::<Result<_, _>>()?
        }
    };
    ensure!(bufs.len() == 2 * N, "{} buffers, not {}", bufs.len(), 2 * N);
    let (mine, theirs) = if parent {
        (&bufs[..N], &bufs[N..])
    } else {
        (&bufs[N..], &bufs[..N])
    };
    let create = |b: &DmaBuf| dev.create_fence(Some((b.as_fd(), Usage::Write)));
    let mut pending = VecDeque::from([create(&mine[0])?]);
    if parent {
        let hello = Message::Hello {
            mode: pingpong::Mode::Implicit,
            buffers: (2 * N) as u32,
            size: bufs[0].size(),
            rounds,
        };
        let fds: Vec<_> = bufs.iter().map(AsFd::as_fd).collect();
        chan.send(&hello, &fds)?;
        expect_round(chan, 0, 0, 0)?;
    } else {
        chan.send(&Message::Round { round: 0, seq: 0 }, &[])?;
    }
    let mut times = Vec::with_capacity(rounds as usize);
    for r in 0..rounds {
        let i = (r % N as u64) as usize;
        pending.push_back(create(&mine[(i + 1) % N])?);
        let current = pending.pop_front().context("no pending fence")?;
        let what = |who: &str| format!("{who} dma-buf {i} in round {r}");
        let t = Instant::now();
        if parent {
            dev.signal(&current, None)?;
            poll_in(&theirs[i], &what("the peer's"))?;
            times.push(micros(t.elapsed()));
        } else {
            poll_in(&theirs[i], &what("the parent's"))?;
            dev.signal(&current, None)?;
        }
    }
    for fence in pending {
        dev.signal(&fence, None)?;
    }
    Ok(times)
}
