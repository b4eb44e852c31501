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

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::event::PollFlags;

use rustix::io::Errno;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

use crate::error::{Error, Result};
use crate::fence::poll_fd;
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
#[derive(Debug)]
pub struct Channel {
    sock: OwnedFd,
}

impl Channel {
    /// Wraps a connected `AF_UNIX` `SOCK_STREAM` socket.
    pub fn from_fd(sock: OwnedFd) -> Channel {
        Channel { sock }
    }

    /// A connected pair of close-on-exec sockets.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::os("socketpair", "socket", e))?;
        Ok((Channel { sock: a }, Channel { sock: b }))
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

    /// Sets the receive and send timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`):
    /// [`recv`](Self::recv) fails with [`Error::Timeout`] when nothing
    /// arrives in time. `timeout` must be non-zero (zero means "forever").
    pub fn set_timeout(&self, timeout: Duration) -> Result<()> {
        if timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "a zero socket timeout would wait forever".into(),
            ));
        }
        for id in [
            rustix::net::sockopt::Timeout::Recv,
            rustix::net::sockopt::Timeout::Send,
        ] {
            rustix::net::sockopt::set_socket_timeout(&self.sock, id, Some(timeout))
                .map_err(|e| Error::os("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)", "socket", e))?;
        }
        Ok(())
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
        Ok(Channel { sock })
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
        Ok(Channel { sock: result? })
    }

    fn timeout(&self) -> Duration {
        rustix::net::sockopt::socket_timeout(&self.sock, rustix::net::sockopt::Timeout::Recv)
            .ok()
            .flatten()
            .unwrap_or_default()
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

    /// Sends `msg` with `fds` (at most [`MAX_FDS`]) attached.
    pub fn send(&self, msg: &Message, fds: &[BorrowedFd<'_>]) -> Result<()> {
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
        let mut sent = 0;
        while sent < bytes.len() {
            let r = rustix::net::sendmsg(
                &self.sock,
                &[IoSlice::new(&bytes[sent..])],
                &mut control,
                SendFlags::NOSIGNAL,
            );
            match r {
                Ok(n) => {
                    sent += n;
                    // The fds went with the first chunk.
                    control.clear();
                }
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    return Err(Error::Timeout {
                        what: "the peer to accept a message".into(),
                        timeout: self.timeout(),
                    });
                }
                Err(e @ (Errno::PIPE | Errno::CONNRESET)) => {
                    log::debug!("send: {e}");
                    return Err(Error::PeerClosed {
                        context: "sending a message".into(),
                    });
                }
                Err(e) => return Err(Error::os("sendmsg", "socket", e)),
            }
        }
        log::debug!("sent {msg:?} with {} fds", fds.len());
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes, collecting fds that arrive.
    fn recv_exact(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>, context: &str) -> Result<()> {
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
        let mut got = 0;
        while got < buf.len() {
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let r = rustix::net::recvmsg(
                &self.sock,
                &mut [IoSliceMut::new(&mut buf[got..])],
                &mut control,
                RecvFlags::CMSG_CLOEXEC,
            );
            match r {
                Ok(m) if m.bytes == 0 => {
                    return Err(Error::PeerClosed {
                        context: context.into(),
                    });
                }
                Ok(m) => {
                    got += m.bytes;
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
                Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => {
                    return Err(Error::Timeout {
                        what: context.into(),
                        timeout: self.timeout(),
                    });
                }
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

    /// Receives one message and the fds attached to it. A
    /// [`Message::Abort`] is returned as [`Error::PeerAborted`]. Fails with
    /// [`Error::Timeout`] after the socket's timeout and
    /// [`Error::PeerClosed`] at end of stream.
    pub fn recv(&self, context: &str) -> Result<(Message, Vec<OwnedFd>)> {
        let mut fds = Vec::new();
        let mut header = [0u8; HEADER_LEN];
        self.recv_exact(&mut header, &mut fds, context)?;
        let (tag, len) = Message::decode_header(header)?;
        let mut payload = vec![0u8; len];
        self.recv_exact(&mut payload, &mut fds, context)?;
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
}
