//! The child side of the multi-process scenarios. The parent's socket is
//! the child's stdin.

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use dmapingpong::pingpong::Mode;
use dmapingpong::{Access, Channel, Device, DmaBuf, Error, Message, Usage, pattern, pingpong};
use rustix::fs::MemfdFlags;

/// What the child does.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Role {
    /// The pong side of a ping-pong session.
    Pong,
    /// Receives one buffer (Hello), waits for Round{0, 0}, verifies seq 0,
    /// writes seq 1 and reads it back, closes everything and answers
    /// Round{0, 1}.
    Lifetimes,
    /// Creates a fence without buffer, sends it with Round{0, 0}, waits for
    /// Round{0, 1} and exits without signalling it.
    ExitExplicit,
    /// Receives one buffer (Hello), adds a write fence to it, sends
    /// Round{0, 0}, waits for Round{0, 1} and exits without signalling.
    ExitImplicit,
    /// Plays a hostile ping side: sends a memfd of [`MEMFD_SIZE`] bytes in
    /// place of a dma-buf, in the Hello of a one-buffer session (what
    /// `Channel::send_buffer` sends), truncates it to 0 bytes, and expects the
    /// parent's Abort saying that the fd is not a dma-buf.
    SendMemfd,
}

/// Size of the memfd [`Role::SendMemfd`] sends, in bytes.
pub const MEMFD_SIZE: u64 = 64 * 1024;

fn expect(
    chan: &Channel,
    want: Message,
    context: &str,
) -> anyhow::Result<Vec<std::os::fd::OwnedFd>> {
    let (msg, fds) = chan.recv(context)?;
    ensure!(msg == want, "{context}: expected {want:?}, got {msg:?}");
    Ok(fds)
}

fn recv_buffer(chan: &Channel) -> anyhow::Result<DmaBuf> {
    let (msg, mut fds) = chan.recv("hello")?;
    ensure!(
        matches!(msg, Message::Hello { buffers: 1, .. }) && fds.len() == 1,
        "expected a hello with one buffer, got {msg:?}"
    );
    Ok(DmaBuf::from_fd(fds.remove(0))?)
}

/// Runs `role` against the parent on stdin.
pub fn run(role: Role, device: &Path, timeout_ms: u64) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(timeout_ms);
    let sock = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .context("stdin")?;
    let chan = Channel::from_fd(sock);
    chan.set_timeout(timeout)?;
    match role {
        Role::Pong => {
            let dev = Device::open(device)?;
            let stats = pingpong::pong(&dev, &chan, timeout)?;
            log::info!("pong: {stats}");
        }
        Role::Lifetimes => {
            let buf = recv_buffer(&chan)?;
            expect(&chan, Message::Round { round: 0, seq: 0 }, "go")?;
            let mut map = buf.mmap()?;
            {
                let cpu = map.begin(Access::ReadWrite, timeout)?;
                pattern::verify(cpu.words(), 0, 0).context("the parent's data")?;
                pattern::fill(cpu.words(), 1, 0);
                cpu.end()?;
            }
            let cpu = map.begin(Access::Read, timeout)?;
            pattern::verify(cpu.words(), 1, 0).context("reading back our data")?;
            cpu.end()?;
            drop(map);
            drop(buf);
            chan.send(&Message::Round { round: 0, seq: 1 }, &[])?;
        }
        Role::ExitExplicit | Role::ExitImplicit => {
            let dev = Device::open(device)?;
            let buf = match role {
                Role::ExitImplicit => Some(recv_buffer(&chan)?),
                _ => None,
            };
            let fence = dev.create_fence(buf.as_ref().map(|b| (b.as_fd(), Usage::Write)))?;
            let fds = match &buf {
                Some(_) => vec![],
                None => vec![fence.as_fd()],
            };
            chan.send(&Message::Round { round: 0, seq: 0 }, &fds)?;
            expect(&chan, Message::Round { round: 0, seq: 1 }, "exit order")?;
            log::info!(
                "exiting with fence {}:{} unsignalled",
                fence.context(),
                fence.seqno()
            );
            // Closing `dev` at exit cancels the fence.
        }
        Role::SendMemfd => {
            let memfd = rustix::fs::memfd_create("dmapingpong-not-a-dma-buf", MemfdFlags::CLOEXEC)
                .context("memfd_create")?;
            rustix::fs::ftruncate(&memfd, MEMFD_SIZE).context("ftruncate")?;
            let hello = Message::Hello {
                mode: Mode::Explicit,
                buffers: 1,
                size: MEMFD_SIZE,
                rounds: 1,
            };
            chan.send(&hello, &[memfd.as_fd()])?;
            // From now on, a mapping of it faults (SIGBUS) on every access.
            rustix::fs::ftruncate(&memfd, 0).context("ftruncate to 0")?;
            match chan.recv("the parent's answer") {
                Err(Error::PeerAborted(reason)) if reason.contains("is not a dma-buf") => {
                    log::info!("refused as it should: {reason}");
                }
                other => bail!("expected an abort refusing the memfd, got {other:?}"),
            }
        }
    }
    Ok(())
}

/// Turns a child's unsuccessful exit status into an error.
pub fn check_exit(status: std::process::ExitStatus, role: Role) -> anyhow::Result<()> {
    if !status.success() {
        bail!("child {role:?} failed ({status}); see its log on stderr");
    }
    Ok(())
}
