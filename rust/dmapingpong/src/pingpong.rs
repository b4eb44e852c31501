//! The ping-pong engine: two processes take turns writing and verifying the
//! same dma-bufs, synchronised by DMA fences.
//!
//! The ping side allocates `buffers` buffers of `size` bytes and sends them
//! with [`Message::Hello`] to the pong side over a [`Channel`]. In round `r`
//! ping writes [`pattern`] sequence `2r`, pong verifies it and writes
//! `2r + 1`, ping verifies that. Each write is announced by a
//! [`Message::Round`] and synchronised as chosen by [`Mode`]. Each step is
//! bounded by one session timeout: sending or receiving a message, the waits
//! of a read (the peer's fences and the start of the CPU accesses), the
//! starts of the CPU accesses of a write. On any error the failing side
//! sends [`Message::Abort`] with its error text before returning it.

use std::fmt;
use std::os::fd::AsFd;
use std::str::FromStr;
use std::time::{Duration, Instant};

use rustix::event::PollFlags;
use rustix::io::Errno;

use crate::channel::{Channel, MAX_FDS, Message};
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::fence::poll_until;
use crate::pattern;
use crate::{Access, Device, DmaBuf, Fence, FenceStatus, Mapping, SyncFile, Usage};

/// How a writer tells the reader that its writes are complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A fence without buffer whose sync_file travels with the round
    /// message; the reader waits on it (`DPP_IOCTL_WAIT_FENCE`).
    Explicit,
    /// One write fence per buffer in the buffer's reservation; the reader
    /// `poll()`s the dma-bufs and checks the exported fence status.
    Implicit,
}

impl Mode {
    /// Both modes.
    pub const ALL: [Mode; 2] = [Mode::Explicit, Mode::Implicit];

    /// The lower-case name: `explicit` or `implicit`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Explicit => "explicit",
            Mode::Implicit => "implicit",
        }
    }

    pub(crate) fn wire(self) -> u32 {
        match self {
            Mode::Explicit => 0,
            Mode::Implicit => 1,
        }
    }

    pub(crate) fn from_wire(v: u32) -> Result<Mode> {
        match v {
            0 => Ok(Mode::Explicit),
            1 => Ok(Mode::Implicit),
            _ => Err(Error::Protocol(format!("unknown mode {v}"))),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mode> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown mode {s:?} (expected explicit or implicit)"
                ))
            })
    }
}

/// Parameters of a session, chosen by the ping side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// Synchronisation mode.
    pub mode: Mode,
    /// Number of buffers, `1..=`[`MAX_FDS`].
    pub buffers: u32,
    /// Bytes per buffer (rounded up to pages by the driver), at least 1.
    pub size: u64,
    /// Rounds, at least 1.
    pub rounds: u64,
    /// Bound of every wait (fences, polls, socket receives), non-zero.
    pub timeout: Duration,
}

impl Params {
    /// Checks the documented ranges.
    pub fn validate(&self) -> Result<()> {
        if self.buffers == 0 || self.buffers as usize > MAX_FDS {
            return Err(Error::InvalidArgument(format!(
                "buffers must be 1..={MAX_FDS}, not {}",
                self.buffers
            )));
        }
        if self.size == 0 {
            return Err(Error::InvalidArgument(
                "buffer size must be at least 1 byte".into(),
            ));
        }
        if self.rounds == 0 {
            return Err(Error::InvalidArgument("rounds must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::InvalidArgument("timeout must be non-zero".into()));
        }
        Ok(())
    }
}

/// What one side did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Rounds completed.
    pub rounds: u64,
    /// Bytes this side read back and found correct.
    pub bytes_verified: u64,
    /// Time from the first write or read to the last verification.
    pub elapsed: Duration,
}

impl Stats {
    /// Verified bytes per second, in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        self.bytes_verified as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rounds {} verified {} bytes in {:.3} s ({:.1} MB/s)",
            self.rounds,
            self.bytes_verified,
            self.elapsed.as_secs_f64(),
            self.mb_per_s()
        )
    }
}

/// One side's view of a session.
struct Session<'a> {
    dev: &'a Device,
    chan: &'a Channel,
    mode: Mode,
    timeout: Duration,
    bufs: Vec<DmaBuf>,
    maps: Vec<Mapping>,
    verified: u64,
}

impl Session<'_> {
    /// Writes `seq` to every buffer and announces it as round `round`.
    fn write(&mut self, round: u64, seq: u64) -> Result<()> {
        let Session {
            dev,
            chan,
            bufs,
            maps,
            ..
        } = self;
        match self.mode {
            Mode::Explicit => {
                let fence = dev.create_fence(None)?;
                let written = chan
                    .send(&Message::Round { round, seq }, &[fence.as_fd()])
                    .and_then(|()| {
                        let deadline = Deadline::after(self.timeout);
                        for (b, map) in maps.iter_mut().enumerate() {
                            let cpu = map.begin_until(Access::Write, &deadline)?;
                            pattern::fill(cpu.words(), seq, b as u32);
                            cpu.end()?;
                        }
                        Ok(())
                    });
                finish(dev, std::slice::from_ref(&fence), written)
            }
            Mode::Implicit => {
                // DMA_BUF_SYNC_START waits for the fences it conflicts with,
                // our own included: start every access before adding our
                // write fences. The peer's fences have signalled, as the
                // previous read round checked.
                let deadline = Deadline::after(self.timeout);
                let mut cpus = maps
                    .iter_mut()
                    .map(|m| m.begin_until(Access::Write, &deadline))
                    .collect::<Result<Vec<_>>>()?;
                let mut fences = Vec::with_capacity(bufs.len());
                for buf in bufs.iter() {
                    match dev.create_fence(Some((buf.as_fd(), Usage::Write))) {
                        Ok(fence) => fences.push(fence),
                        Err(e) => return finish(dev, &fences, Err(e)),
                    }
                }
                let mut signalled = 0;
                let written = chan
                    .send(&Message::Round { round, seq }, &[])
                    .and_then(|()| {
                        for (b, (cpu, fence)) in cpus.drain(..).zip(&fences).enumerate() {
                            pattern::fill(cpu.words(), seq, b as u32);
                            cpu.end()?;
                            dev.signal(fence, None)?;
                            signalled += 1;
                        }
                        Ok(())
                    });
                finish(dev, &fences[signalled..], written)
            }
        }
    }

    /// Receives round `round`, waits for its writes to complete and
    /// verifies `seq` in every buffer.
    fn read(&mut self, round: u64, seq: u64) -> Result<()> {
        let context = format!("round {round} (seq {seq})");
        let (msg, mut fds) = self.chan.recv(&context)?;
        if msg != (Message::Round { round, seq }) {
            return Err(Error::Protocol(format!("expected {context}, got {msg:?}")));
        }
        let want_fds = usize::from(self.mode == Mode::Explicit);
        if fds.len() != want_fds {
            return Err(Error::Protocol(format!(
                "{context} carried {} fds, expected {want_fds}",
                fds.len()
            )));
        }
        // One bound for the fence waits and the accesses of this read.
        let deadline = Deadline::after(self.timeout);
        match (self.mode, fds.pop()) {
            (Mode::Explicit, Some(fd)) => {
                let fence = SyncFile::from_fd(fd);
                let what = format!("the peer's fence of {context}");
                check_status(
                    self.dev.wait_fence_until(fence.as_fd(), &deadline)?,
                    what,
                    self.timeout,
                )?;
            }
            _ => {
                for (b, buf) in self.bufs.iter().enumerate() {
                    let what = format!("write fences of buffer {b} in {context}");
                    // Export the write fences before waiting: once signalled they leave
                    // the reservation's view (EXPORT_SYNC_FILE skips signalled fences),
                    // and with them the error of a peer that died.
                    let fences = buf.export_sync_file(Access::Read)?;
                    if !poll_until(buf.as_fd(), PollFlags::IN, &deadline, "dma-buf")? {
                        return Err(deadline.expired(what));
                    }
                    let status = fences.status()?;
                    if status == FenceStatus::Pending {
                        return Err(Error::Protocol(format!(
                            "{what}: pending after poll() reported them done"
                        )));
                    }
                    check_status(status, what, self.timeout)?;
                }
            }
        }
        for (b, map) in self.maps.iter_mut().enumerate() {
            let cpu = map.begin_until(Access::Read, &deadline)?;
            let verified = pattern::verify(cpu.words(), seq, b as u32);
            cpu.end()?;
            if let Err(mismatch) = verified {
                // A writer killed between its round message and our export of its
                // write fences: their cancellation (ECANCELED) happened before the
                // export, which leaves signalled fences out. Say what happened.
                if self.mode == Mode::Implicit && self.chan.peer_closed()? {
                    return Err(Error::PeerClosed {
                        context: format!(
                            "{context}: the writer exited before finishing it ({mismatch})"
                        ),
                    });
                }
                return Err(mismatch.into());
            }
            self.verified += map.len() as u64;
        }
        Ok(())
    }
}

/// Ends a write: on success signals `pending` (in order); on failure cancels
/// them with `ECANCELED`, so that neither the peer nor a later session on the
/// same device (whose fences must signal in seqno order) is left waiting.
fn finish(dev: &Device, pending: &[Fence], written: Result<()>) -> Result<()> {
    let error = written.as_ref().err().map(|_| Errno::CANCELED);
    for fence in pending {
        let signalled = dev.signal(fence, error);
        if written.is_ok() {
            signalled?;
        }
    }
    written
}

fn check_status(status: FenceStatus, what: String, timeout: Duration) -> Result<()> {
    match status {
        FenceStatus::Signalled => Ok(()),
        FenceStatus::Pending => Err(Error::Timeout { what, timeout }),
        FenceStatus::Error(errno) => Err(Error::FenceError { what, errno }),
    }
}

/// Runs `f`; if it fails, tells the peer why before returning the error.
fn abort_on_error<T>(chan: &Channel, f: impl FnOnce() -> Result<T>) -> Result<T> {
    f().inspect_err(|e| {
        if !matches!(e, Error::PeerAborted(_) | Error::PeerClosed { .. }) {
            if let Err(send) = chan.send(&Message::Abort(e.to_string()), &[]) {
                log::debug!("could not tell the peer: {send}");
            }
        }
    })
}

/// Runs the ping side: allocates the buffers on `dev`, sends them over
/// `chan` and runs `params.rounds` rounds, writing first.
pub fn ping(dev: &Device, chan: &Channel, params: &Params) -> Result<Stats> {
    ping_session(dev, chan, params, None)
}

/// [`ping`], also appending the duration of every round (a write and the
/// read of the peer's answer) to `round_times`, which grows by
/// `params.rounds` entries.
pub fn ping_timed(
    dev: &Device,
    chan: &Channel,
    params: &Params,
    round_times: &mut Vec<Duration>,
) -> Result<Stats> {
    ping_session(dev, chan, params, Some(round_times))
}

fn ping_session(
    dev: &Device,
    chan: &Channel,
    params: &Params,
    mut round_times: Option<&mut Vec<Duration>>,
) -> Result<Stats> {
    abort_on_error(chan, || {
        params.validate()?;
        chan.set_timeout(params.timeout)?;
        let bufs = (0..params.buffers)
            .map(|_| dev.alloc(params.size))
            .collect::<Result<Vec<_>>>()?;
        let maps = bufs.iter().map(DmaBuf::mmap).collect::<Result<Vec<_>>>()?;
        let hello = Message::Hello {
            mode: params.mode,
            buffers: params.buffers,
            size: bufs[0].size(),
            rounds: params.rounds,
        };
        let fds: Vec<_> = bufs.iter().map(AsFd::as_fd).collect();
        chan.send(&hello, &fds)?;
        let mut s = Session {
            dev,
            chan,
            mode: params.mode,
            timeout: params.timeout,
            bufs,
            maps,
            verified: 0,
        };
        let start = Instant::now();
        let mut round_start = start;
        for r in 0..params.rounds {
            s.write(r, 2 * r)?;
            s.read(r, 2 * r + 1)?;
            if let Some(times) = round_times.as_deref_mut() {
                let now = Instant::now();
                times.push(now - round_start);
                round_start = now;
            }
        }
        Ok(Stats {
            rounds: params.rounds,
            bytes_verified: s.verified,
            elapsed: start.elapsed(),
        })
    })
}

/// Runs the pong side: waits up to `timeout` for the ping side's
/// [`Message::Hello`] on `chan`, then answers every round.
pub fn pong(dev: &Device, chan: &Channel, timeout: Duration) -> Result<Stats> {
    abort_on_error(chan, || {
        chan.set_timeout(timeout)?;
        let (hello, fds) = chan.recv("the ping side's hello")?;
        let Message::Hello {
            mode,
            buffers,
            size,
            rounds,
        } = hello
        else {
            return Err(Error::Protocol(format!("expected hello, got {hello:?}")));
        };
        if fds.len() != buffers as usize || fds.is_empty() {
            return Err(Error::Protocol(format!(
                "hello announced {buffers} buffers but carried {} fds",
                fds.len()
            )));
        }
        // Refuses anything but dma-bufs (a memfd the peer could truncate
        // under our mappings, say) before mapping any of them.
        let bufs = fds
            .into_iter()
            .enumerate()
            .map(|(b, fd)| DmaBuf::from_fd_named(fd, &format!("buffer {b} of the ping side")))
            .collect::<Result<Vec<_>>>()?;
        if let Some((b, buf)) = bufs.iter().enumerate().find(|(_, buf)| buf.size() != size) {
            return Err(Error::Protocol(format!(
                "buffer {b} has {} bytes, hello said {size}",
                buf.size()
            )));
        }
        pong_session(dev, chan, mode, timeout, bufs, rounds)
    })
}

fn pong_session(
    dev: &Device,
    chan: &Channel,
    mode: Mode,
    timeout: Duration,
    bufs: Vec<DmaBuf>,
    rounds: u64,
) -> Result<Stats> {
    let maps = bufs.iter().map(DmaBuf::mmap).collect::<Result<Vec<_>>>()?;
    let mut s = Session {
        dev,
        chan,
        mode,
        timeout,
        bufs,
        maps,
        verified: 0,
    };
    let start = Instant::now();
    for r in 0..rounds {
        s.read(r, 2 * r)?;
        s.write(r, 2 * r + 1)?;
    }
    Ok(Stats {
        rounds,
        bytes_verified: s.verified,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names() {
        assert_eq!("explicit".parse::<Mode>().unwrap(), Mode::Explicit);
        assert_eq!("implicit".parse::<Mode>().unwrap(), Mode::Implicit);
        assert!(matches!(
            "Implicit".parse::<Mode>(),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(Mode::Implicit.to_string(), "implicit");
        for m in Mode::ALL {
            assert_eq!(Mode::from_wire(m.wire()).unwrap(), m);
        }
    }

    #[test]
    fn params_validation() {
        let ok = Params {
            mode: Mode::Explicit,
            buffers: 4,
            size: 1,
            rounds: 1,
            timeout: Duration::from_millis(1),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            Params {
                buffers: 0,
                ..ok.clone()
            },
            Params {
                buffers: MAX_FDS as u32 + 1,
                ..ok.clone()
            },
            Params {
                size: 0,
                ..ok.clone()
            },
            Params {
                rounds: 0,
                ..ok.clone()
            },
            Params {
                timeout: Duration::ZERO,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }

    /// pong refuses a memfd sent as a buffer before mapping it (the peer
    /// truncated it: any access of a mapping would raise SIGBUS), and tells
    /// the peer why. pong uses the device only after the hello: `/dev/null`
    /// stands in for it on the host.
    #[test]
    fn pong_refuses_a_memfd_from_the_peer() {
        use rustix::fs::MemfdFlags;
        let dev = Device::open("/dev/null").unwrap();
        let (ping_end, pong_end) = Channel::pair().unwrap();
        ping_end.set_timeout(Duration::from_secs(5)).unwrap();
        let memfd = rustix::fs::memfd_create("not-a-dma-buf", MemfdFlags::CLOEXEC).unwrap();
        rustix::fs::ftruncate(&memfd, 1 << 16).unwrap();
        let hello = Message::Hello {
            mode: Mode::Explicit,
            buffers: 1,
            size: 1 << 16,
            rounds: 1,
        };
        ping_end.send(&hello, &[memfd.as_fd()]).unwrap();
        rustix::fs::ftruncate(&memfd, 0).unwrap();
        let err = pong(&dev, &pong_end, Duration::from_millis(500)).unwrap_err();
        assert!(
            matches!(&err, Error::NotADmaBuf { what, .. } if what == "buffer 0 of the ping side"),
            "{err}"
        );
        match ping_end.recv("the refusal") {
            Err(Error::PeerAborted(reason)) => assert_eq!(reason, err.to_string()),
            other => panic!("the peer got {other:?}"),
        }
    }

    #[test]
    fn stats_throughput() {
        let s = Stats {
            rounds: 2,
            bytes_verified: 4_000_000,
            elapsed: Duration::from_secs(2),
        };
        assert!((s.mb_per_s() - 2.0).abs() < 1e-9);
        assert_eq!(
            s.to_string(),
            "rounds 2 verified 4000000 bytes in 2.000 s (2.0 MB/s)"
        );
    }
}
