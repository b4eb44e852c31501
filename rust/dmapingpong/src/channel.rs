//! Typed messages and fds over a connected Unix stream socket.
//!
//! Wire format of a message, all integers little-endian:
//! `tag: u32, payload_len: u32, payload`. Fds travel as `SCM_RIGHTS`
//! attached to the message's first byte. Payloads:
//!
//! | tag | message | payload | fds |
//! |-----|---------|---------|-----|
//! | 1 | [`Message::Hello`] | `mode: u32` (0 explicit, 1 implicit), `buffers: u32`, `size: u64`, `rounds: u64` | `buffers` dma-bufs |
//! | 2 | [`Message::Round`] | `round: u64`, `seq: u64` | none, or one sync_file |
//! | 3 | [`Message::Abort`] | UTF-8 reason, at most [`MAX_REASON_LEN`] bytes | none |
//!
//! Every message is sent and received within one deadline
//! ([`Channel::set_timeout`]), however many system calls it takes: the
//! socket is `poll()`ed for the time left before each non-blocking
//! `sendmsg()`/`recvmsg()`. A message cut by a timeout (or by a malformed
//! header) leaves the stream without message boundaries: that direction of
//! the channel then fails with [`Error::ChannelBroken`].

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::event::PollFlags;

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::fence::{poll_fd, poll_until};
use crate::pingpong::Mode;

/// Most fds one message may carry (well below the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 64;
/// Longest [`Message::Abort`] reason, in bytes.
pub const MAX_REASON_LEN: usize = 1024;

const TAG_HELLO: u32 = 1;
const TAG_ROUND: u32 = 2;
const TAG_ABORT: u32 = 3;
const HEADER_LEN: usize = 8;

/// A message of the ping-pong protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Starts a session; carries the `buffers` dma-buf fds.
    Hello {
        /// Synchronisation mode.
        mode: Mode,
        /// Number of buffers (fds attached).
        buffers: u32,
        /// Size of each buffer in bytes.
        size: u64,
        /// Number of rounds.
        rounds: u64,
    },
    /// The sender wrote (or is writing) `seq` in round `round`; in explicit
    /// mode it carries the sync_file signalled when the writes are done.
    Round {
        /// Round number, from 0.
        round: u64,
        /// Sequence number of the data: `2 * round` from ping, `+ 1` from pong.
        seq: u64,
    },
    /// The sender failed and gives up; the text is its error.
    Abort(String),
}

impl Message {
    /// Serializes to the wire format (header included).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        let tag = match self {
            Message::Hello {
                mode,
                buffers,
                size,
                rounds,
            } => {
                p.extend_from_slice(&mode.wire().to_le_bytes());
                p.extend_from_slice(&buffers.to_le_bytes());
                p.extend_from_slice(&size.to_le_bytes());
                p.extend_from_slice(&rounds.to_le_bytes());
                TAG_HELLO
            }
            Message::Round { round, seq } => {
                p.extend_from_slice(&round.to_le_bytes());
                p.extend_from_slice(&seq.to_le_bytes());
                TAG_ROUND
            }
            Message::Abort(reason) => {
                let mut end = reason.len().min(MAX_REASON_LEN);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                p.extend_from_slice(&reason.as_bytes()[..end]);
                TAG_ABORT
            }
        };
        let mut out = Vec::with_capacity(HEADER_LEN + p.len());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&p);
        out
    }

    /// Parses a header: returns `(tag, payload_len)`.
    fn decode_header(h: [u8; HEADER_LEN]) -> Result<(u32, usize)> {
        let tag = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
        let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
        let max = match tag {
            TAG_HELLO => 24,
            TAG_ROUND => 16,
            TAG_ABORT => MAX_REASON_LEN,
            _ => return Err(Error::Protocol(format!("unknown message tag {tag}"))),
        };
        if (tag != TAG_ABORT && len != max) || len > max {
            return Err(Error::Protocol(format!(
                "message tag {tag} with {len} payload bytes"
            )));
        }
        Ok((tag, len))
    }

    /// Parses a payload of the given tag (as checked by `decode_header`).
    fn decode_payload(tag: u32, p: &[u8]) -> Result<Message> {
        let u32_at = |o: usize| u32::from_le_bytes(p[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(p[o..o + 8].try_into().expect("8 bytes"));
        Ok(match tag {
            TAG_HELLO => Message::Hello {
                mode: Mode::from_wire(u32_at(0))?,
                buffers: u32_at(4),
                size: u64_at(8),
                rounds: u64_at(16),
            },
            TAG_ROUND => Message::Round {
                round: u64_at(0),
                seq: u64_at(8),
            },
            _ => Message::Abort(String::from_utf8_lossy(p).into_owned()),
        })
    }

    /// Parses one complete encoded message (header and payload).
    pub fn decode(bytes: &[u8]) -> Result<Message> {
        let header: [u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| Error::Protocol(format!("short message of {} bytes", bytes.len())))?;
        let (tag, len) = Message::decode_header(header)?;
        if bytes.len() != HEADER_LEN + len {
            return Err(Error::Protocol(format!(
                "message of {} bytes, header says {}",
                bytes.len(),
                HEADER_LEN + len
            )));
        }
        Message::decode_payload(tag, &bytes[HEADER_LEN..])
    }
}

/// A connected Unix stream socket carrying [`Message`]s with fds.
///
/// It may be shared between threads (one sending, one receiving, say): the
/// two directions fail independently.
#[derive(Debug)]
pub struct Channel {
    sock: OwnedFd,
    /// Bound of sending or receiving one message, in nanoseconds; 0: none.
    timeout_ns: AtomicU64,
    /// Why receiving lost the message boundaries, once it has.
    recv_broken: OnceLock<String>,
    /// Why sending lost the message boundaries, once it has.
    send_broken: OnceLock<String>,
}

/// Marks a direction of a channel broken after `err` cut a message
/// (`progress` says where) and returns the error to report: a timeout
/// becomes [`Error::ChannelBroken`], since the stream, not just this call,
/// is lost; other errors (the peer closed, a malformed header) stay as they
/// are.
fn cut(broken: &OnceLock<String>, err: Error, progress: String) -> Error {
    let reason = format!("{progress}: {err}");
    // A direction breaks once; a later reason would be a consequence.
    let _ = broken.set(reason.clone());
    match err {
        Error::Timeout { .. } => Error::ChannelBroken { reason },
        err => err,
    }
}

/// The error of a direction that broke earlier.
fn broken(reason: &str) -> Error {
    Error::ChannelBroken {
        reason: reason.into(),
    }
}

impl Channel {
    /// Wraps a connected `AF_UNIX` `SOCK_STREAM` socket, without timeout.
    pub fn from_fd(sock: OwnedFd) -> Channel {
        Channel {
            sock,
            timeout_ns: AtomicU64::new(0),
            recv_broken: OnceLock::new(),
            send_broken: OnceLock::new(),
        }
    }

    /// A connected pair of close-on-exec sockets, without timeout.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::os("socketpair", "socket", e))?;
        Ok((Channel::from_fd(a), Channel::from_fd(b)))
    }

    /// Returns whether the peer has closed its end of the connection
    /// (`POLLRDHUP`/`POLLHUP`), without waiting.
    pub fn peer_closed(&self) -> Result<bool> {
        let mut fds = [rustix::event::PollFd::new(
            &self.sock,
            PollFlags::RDHUP | PollFlags::IN,
        )];
        let now = rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        loop {
            match rustix::event::poll(&mut fds, Some(&now)) {
                Ok(_) => {
                    return Ok(fds[0]
                        .revents()
                        .intersects(PollFlags::RDHUP | PollFlags::HUP));
                }
                Err(Errno::INTR) => continue,
                Err(e) => return Err(Error::os("poll", "socket", e)),
            }
        }
    }

    /// Sets the bound of sending or receiving one message, from its first
    /// system call to its last: [`recv`](Self::recv) and
    /// [`send`](Self::send) fail with [`Error::Timeout`] when a message
    /// does not start in time, and with [`Error::ChannelBroken`] when it
    /// started but did not complete. `timeout` must be non-zero. Without
    /// this call, sending and receiving wait without bound.
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        if timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "a zero socket timeout would wait forever".into(),
            ));
        }
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        self.timeout_ns.store(ns, Ordering::Relaxed);
        Ok(())
    }

    /// The bound of one message ([`set_timeout`](Self::set_timeout)), if
    /// any.
    pub fn timeout(&self) -> Option<Duration> {
        match self.timeout_ns.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Connects to a listening Unix stream socket at `path`.
    pub fn connect(path: &Path) -> Result<Channel> {
        let target = path.display().to_string();
        let sock = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::os("socket", "socket", e))?;
        let addr =
            SocketAddrUnix::new(path).map_err(|e| Error::os("connect", target.clone(), e))?;
        rustix::net::connect(&sock, &addr).map_err(|e| Error::os("connect", target, e))?;
        Ok(Channel::from_fd(sock))
    }

    /// Listens on a new Unix stream socket at `path` (which must not exist),
    /// accepts one peer within `timeout` and removes `path` again.
    pub fn accept_one(path: &Path, timeout: Duration) -> Result<Channel> {
        let target = path.display().to_string();
        let listener = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::os("socket", "socket", e))?;
        let addr = SocketAddrUnix::new(path).map_err(|e| Error::os("bind", target.clone(), e))?;
        rustix::net::bind(&listener, &addr).map_err(|e| Error::os("bind", target.clone(), e))?;
        let result = (|| {
            rustix::net::listen(&listener, 1)
                .map_err(|e| Error::os("listen", target.clone(), e))?;
            log::info!(
                "waiting up to {} ms for a peer on {target}",
                timeout.as_millis()
            );
            if !poll_fd(listener.as_fd(), PollFlags::IN, timeout, &target)? {
                return Err(Error::Timeout {
                    what: format!("a peer to connect to {target}"),
                    timeout,
                });
            }
            rustix::net::accept_with(&listener, SocketFlags::CLOEXEC)
                .map_err(|e| Error::os("accept", target.clone(), e))
        })();
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove {target}: {e}");
        }
        Ok(Channel::from_fd(result?))
    }

    /// Hands one buffer to the peer: a [`Message::Hello`] of a one-buffer,
    /// one-round session in `mode`, with the buffer's fd attached.
    pub fn send_buffer(&self, buf: &crate::DmaBuf, mode: Mode) -> Result<()> {
        let hello = Message::Hello {
            mode,
            buffers: 1,
            size: buf.size(),
            rounds: 1,
        };
        self.send(&hello, &[buf.as_fd()])
    }

    /// Sends `msg` with `fds` (at most [`MAX_FDS`]) attached, within the
    /// channel's timeout.
    ///
    /// Errors: [`Error::Timeout`] if the peer accepted none of it in time,
    /// [`Error::ChannelBroken`] if it accepted only part of it (then and on
    /// every later send), [`Error::PeerClosed`].
    pub fn send(&self, msg: &Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
        if let Some(reason) = self.send_broken.get() {
            return Err(broken(reason));
        }
        if fds.len() > MAX_FDS {
            return Err(Error::InvalidArgument(format!(
                "{} fds in one message (max {MAX_FDS})",
                fds.len()
            )));
        }
        let bytes = msg.encode();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
            return Err(Error::InvalidArgument(
                "fds do not fit the control buffer".into(),
            ));
        }
        let deadline = Deadline::after_opt(self.timeout());
        let mut sent = 0;
        while sent < bytes.len() {
            match self.send_some(&bytes[sent..], &mut control, &deadline) {
                Ok(n) => {
                    sent += n;
                    // The fds went with the first chunk.
                    control.clear();
                }
                Err(e) if sent == 0 => return Err(e),
                Err(e) => {
                    let progress = format!(
                        "{msg:?} cut after {sent} of {} bytes were sent",
                        bytes.len()
                    );
                    return Err(cut(&self.send_broken, e, progress));
                }
            }
        }
        log::debug!("sent {msg:?} with {} fds", fds.len());
        Ok(())
    }

    /// One non-blocking `sendmsg()` of (part of) `bytes` once the socket
    /// is writable, before `deadline`; returns how many bytes went.
    fn send_some(
        &self,
        bytes: &[u8],
        control: &mut SendAncillaryBuffer<'_, '_, '_>,
        deadline: &Deadline,
    ) -> Result<usize> {
        loop {
            if !poll_until(self.sock.as_fd(), PollFlags::OUT, deadline, "socket")? {
                return Err(deadline.expired("the peer to accept a message"));
            }
            match rustix::net::sendmsg(
                &self.sock,
                &[IoSlice::new(bytes)],
                control,
                SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
            ) {
                Ok(n) => return Ok(n),
                Err(Errno::INTR | Errno::AGAIN) => continue,
                Err(e @ (Errno::PIPE | Errno::CONNRESET)) => {
                    log::debug!("send: {e}");
                    return Err(Error::PeerClosed {
                        context: "sending a message".into(),
                    });
                }
                Err(e) => return Err(Error::os("sendmsg", "socket", e)),
            }
        }
    }

    /// Reads `buf[*got..]` before `deadline`, counting the bytes read in
    /// `got` (also on error) and collecting the fds that arrive.
    fn recv_exact(
        &self,
        buf: &mut [u8],
        got: &mut usize,
        fds: &mut Vec<OwnedFd>,
        context: &str,
        deadline: &Deadline,
    ) -> Result<()> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        while *got < buf.len() {
            if !poll_until(self.sock.as_fd(), PollFlags::IN, deadline, "socket")? {
                return Err(deadline.expired(context));
            }
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let r = rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut buf[*got..])],
                &mut control,
                RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
            );
            match r {
                Ok(m) if m.bytes == 0 => {
                    return Err(Error::PeerClosed {
                        context: context.into(),
                    });
                }
                Ok(m) => {
                    *got += m.bytes;
                    for c in control.drain() {
                        if let RecvAncillaryMessage::ScmRights(rights) = c {
                            fds.extend(rights);
                        }
                    }
                    if m.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
                        return Err(Error::Protocol(
                            "control data truncated (too many fds)".into(),
                        ));
                    }
                }
                Err(Errno::INTR | Errno::AGAIN) => continue,
                Err(Errno::CONNRESET) => {
                    return Err(Error::PeerClosed {
                        context: context.into(),
                    });
                }
                Err(e) => return Err(Error::os("recvmsg", "socket", e)),
            }
        }
        Ok(())
    }

    /// Receives one message and the fds attached to it, within the
    /// channel's timeout (one deadline for the whole message). A
    /// [`Message::Abort`] is returned as [`Error::PeerAborted`].
    ///
    /// Errors: [`Error::Timeout`] if no message started in time (the channel
    /// stays usable); [`Error::ChannelBroken`] if one started but did not
    /// complete in time, or on every receive after a message was cut (a
    /// timeout, a malformed header, lost fds); [`Error::PeerClosed`] at end
    /// of stream; [`Error::Protocol`] for a malformed message.
    pub fn recv(&self, context: &str) -> Result<(Message, Vec<OwnedFd>)> {
        if let Some(reason) = self.recv_broken.get() {
            return Err(broken(reason));
        }
        let deadline = Deadline::after_opt(self.timeout());
        let mut fds = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        let mut got = 0;
        if let Err(e) = self.recv_exact(&mut header, &mut got, &mut fds, context, &deadline) {
            if got == 0 {
                return Err(e);
            }
            let progress = format!("{context}: {got} of {HEADER_LEN} header bytes received");
            return Err(cut(&self.recv_broken, e, progress));
        }
        let (tag, len) = Message::decode_header(header)
            .map_err(|e| cut(&self.recv_broken, e, format!("{context}: bad header")))?;
        let mut payload = vec![0u8; len];
        let mut got = 0;
        if let Err(e) = self.recv_exact(&mut payload, &mut got, &mut fds, context, &deadline) {
            let progress =
                format!("{context}: {got} of {len} payload bytes of message tag {tag} received");
            return Err(cut(&self.recv_broken, e, progress));
        }
        let msg = Message::decode_payload(tag, &payload)?;
        log::debug!("received {msg:?} with {} fds", fds.len());
        match msg {
            Message::Abort(reason) => Err(Error::PeerAborted(reason)),
            msg => Ok((msg, fds)),
        }
    }
}

impl From<Channel> for OwnedFd {
    fn from(chan: Channel) -> OwnedFd {
        chan.sock
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_round_trip() {
        let msgs = [
            Message::Hello {
                mode: Mode::Implicit,
                buffers: 4,
                size: 1 << 20,
                rounds: 1000,
            },
            Message::Hello {
                mode: Mode::Explicit,
                buffers: 1,
                size: 4096,
                rounds: u64::MAX,
            },
            Message::Round { round: 7, seq: 15 },
            Message::Abort("verify failed: ünïcode".into()),
        ];
        for m in msgs {
            assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
        let hello = Message::Hello {
            mode: Mode::Implicit,
            buffers: 2,
            size: 3,
            rounds: 4,
        }
        .encode();
        assert_eq!(&hello[..8], &[1, 0, 0, 0, 24, 0, 0, 0]);
        assert_eq!(&hello[8..12], &[1, 0, 0, 0]);
    }

    #[test]
    fn decode_rejects_garbage() {
        assert!(matches!(
            Message::decode(&[9, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            Message::decode(&[2, 0, 0, 0, 8, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(
            Message::decode(&[2, 0, 0]),
            Err(Error::Protocol(_))
        ));
        let mut bad_mode = Message::Hello {
            mode: Mode::Explicit,
            buffers: 1,
            size: 1,
            rounds: 1,
        }
        .encode();
        bad_mode[8] = 7;
        assert!(matches!(
            Message::decode(&bad_mode),
            Err(Error::Protocol(_))
        ));
        let long = Message::Abort("x".repeat(MAX_REASON_LEN + 10)).encode();
        assert_eq!(long.len(), HEADER_LEN + MAX_REASON_LEN);
    }

    #[test]
    fn socket_round_trip_with_fds_and_timeout() {
        let (a, b) = Channel::pair().unwrap();
        b.set_timeout(Duration::from_millis(50)).unwrap();
        let (x, y) = Channel::pair().unwrap();
        a.send(
            &Message::Round { round: 1, seq: 3 },
            &[x.as_fd(), y.as_fd()],
        )
        .unwrap();
        a.send(&Message::Round { round: 2, seq: 5 }, &[]).unwrap();
        let (m, fds) = b.recv("round 1").unwrap();
        assert_eq!(m, Message::Round { round: 1, seq: 3 });
        assert_eq!(fds.len(), 2);
        // The received fds are the sockets: a message sent on the received
        // copy of `x` arrives on `y`.
        Channel::from_fd(fds.into_iter().next().unwrap())
            .send(&Message::Abort("hi".into()), &[])
            .unwrap();
        assert!(matches!(y.recv("abort"), Err(Error::PeerAborted(r)) if r == "hi"));
        let (m, fds) = b.recv("round 2").unwrap();
        assert_eq!((m, fds.len()), (Message::Round { round: 2, seq: 5 }, 0));
        assert!(matches!(b.recv("nothing"), Err(Error::Timeout { .. })));
        drop(a);
        assert!(matches!(b.recv("eof"), Err(Error::PeerClosed { .. })));
        assert!(b.peer_closed().unwrap());
    }

    /// Writes `bytes` to `sock` one byte every `gap`, as a slow peer.
    fn trickle(sock: OwnedFd, bytes: Vec<u8>, gap: Duration) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            for b in bytes {
                if rustix::net::send(&sock, &[b], SendFlags::NOSIGNAL).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
        })
    }

    /// One deadline per message: a peer sending a byte every 20 ms, well
    /// within the timeout of each `recvmsg()`, cannot stretch a message
    /// beyond the timeout. The cut message leaves the receiving direction
    /// broken for good; the sending direction still works.
    #[test]
    fn slow_peer_cannot_stretch_a_message() {
        let (a, b) = Channel::pair().unwrap();
        b.set_timeout(Duration::from_millis(150)).unwrap();
        let msg = Message::Round { round: 1, seq: 2 }.encode();
        let start = std::time::Instant::now();
        let writer = trickle(a.sock.try_clone().unwrap(), msg, Duration::from_millis(20));
        let err = b.recv("a slow message").unwrap_err();
        let took = start.elapsed();
        assert!(
            matches!(&err, Error::ChannelBroken { reason }
                if reason.contains("a slow message: ") && reason.contains(" received: timed out after 150 ms")),
            "{err}"
        );
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_millis(400),
            "timed out after {took:?}"
        );
        writer.join().unwrap();
        // The rest of the message arrived, but the boundaries are lost.
        assert!(matches!(
            b.recv("after the cut"),
            Err(Error::ChannelBroken { .. })
        ));
        b.send(&Message::Abort("bye".into()), &[]).unwrap();
        assert!(matches!(a.recv("abort"), Err(Error::PeerAborted(r)) if r == "bye"));
    }

    /// A timeout before a message starts leaves the channel in sync.
    #[test]
    fn timeout_between_messages_keeps_the_channel() {
        let (a, b) = Channel::pair().unwrap();
        b.set_timeout(Duration::from_millis(30)).unwrap();
        assert!(matches!(b.recv("nothing"), Err(Error::Timeout { .. })));
        a.send(&Message::Round { round: 3, seq: 7 }, &[]).unwrap();
        assert_eq!(
            b.recv("round 3").unwrap().0,
            Message::Round { round: 3, seq: 7 }
        );
    }

    /// A malformed header breaks the receiving direction: what follows it
    /// cannot be framed.
    #[test]
    fn bad_header_breaks_the_channel() {
        let (a, b) = Channel::pair().unwrap();
        b.set_timeout(Duration::from_millis(100)).unwrap();
        rustix::net::send(&a.sock, &[9, 0, 0, 0, 0, 0, 0, 0], SendFlags::NOSIGNAL).unwrap();
        assert!(matches!(b.recv("garbage"), Err(Error::Protocol(_))));
        a.send(&Message::Round { round: 0, seq: 0 }, &[]).unwrap();
        assert!(matches!(
            b.recv("after garbage"),
            Err(Error::ChannelBroken { reason }) if reason.starts_with("garbage: bad header: protocol error: unknown message tag 9")
        ));
    }

    /// A peer that does not read makes sends time out, each within the
    /// timeout, instead of blocking.
    #[test]
    fn send_to_a_stalled_peer_times_out() {
        let (a, _b) = Channel::pair().unwrap();
        a.set_timeout(Duration::from_millis(50)).unwrap();
        let abort = Message::Abort("x".repeat(MAX_REASON_LEN));
        let err = loop {
            let start = std::time::Instant::now();
            let r = a.send(&abort, &[]);
            assert!(start.elapsed() < Duration::from_millis(300));
            if let Err(e) = r {
                break e;
            }
        };
        assert!(
            matches!(err, Error::Timeout { .. } | Error::ChannelBroken { .. }),
            "{err}"
        );
    }
}
