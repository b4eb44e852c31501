//! Class 2, `fuzz`: a seeded structured fuzzer.
//!
//! Two processes (the suite and a `fuzz-peer` child) each run
//! [`Plan::fuzz_threads`](crate::ctx::Plan) worker threads doing random
//! operations on the driver's objects: open and close device files, allocate
//! (valid and invalid arguments), create fences with and without a buffer,
//! signal them in and out of order and with errors, signal other files'
//! fences, wait with short timeouts, poll dma-bufs and sync_files, export
//! sync_files, map (whole, at offsets, beyond the end) and unmap, bracket
//! CPU access with `DMA_BUF_IOCTL_SYNC`, submit device jobs (fills and
//! copies waiting for random sync_files), dup, close, and pass fds to the
//! other process over a socket.
//!
//! Each worker models its own device files exactly (which fences are
//! pending, in which order, and with which status they were signalled), so
//! that every outcome is checked against the one the ABI documents; for
//! objects shared with other threads and the peer only the set of
//! documented outcomes is known. A result outside it, a crash or a hang fails
//! the class with the seed, process, thread and op index.
//!
//! To stay free of deadlocks by construction, buffers are created either
//! "syncable" (mapped and accessed with `DMA_BUF_IOCTL_SYNC`, which waits
//! for the buffer's fences, up to the timeout, which fails the class; never
//! given fences) or "fenceable" (given fences, polled, exported, never
//! synced); the tag travels with the fd.

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmapingpong::uapi::{DPP_FD_NO_CLOEXEC, DppAlloc, DppFenceCreate, DppInfo};
use dmapingpong::{
    Access, Channel, Device, DmaBuf, Errno, Fence, FenceStatus, Job, JobOp, Mapping, Message,
    PollFlags, SyncFile, Usage,
};

use super::Diags;
use crate::child::Args;
use crate::ctx::{Ctx, Figures};
use crate::error::{Failure, Result};
use crate::ktap::Outcome;
use crate::rng::Rng;
use crate::sys;

/// Message kinds (the `round` field of a [`Message::Round`]).
const KIND_SYNCABLE: u64 = 0;
const KIND_FENCEABLE: u64 = 1;
const KIND_SYNC_FILE: u64 = 2;
/// End of a process's operations; `seq` is its op count.
const KIND_DONE: u64 = 3;

/// Objects in a process's pool, shared by its threads.
#[derive(Debug)]
enum Obj {
    /// A dma-buf and whether it takes fences (else: CPU access).
    Buf {
        buf: DmaBuf,
        fenceable: bool,
        /// Created by this process (only those are sent to the peer).
        local: bool,
    },
    /// A sync_file.
    Sync {
        file: SyncFile,
        /// A fence of the peer process: no device file of ours owns it.
        peer: bool,
        /// Created by this process from its own fence (may be sent).
        local: bool,
    },
}

/// State shared by the threads of one fuzzing process.
struct Shared {
    pool: Mutex<Vec<Obj>>,
    chan: Channel,
    send_lock: Mutex<()>,
    stop: AtomicBool,
    progress: AtomicU64,
    /// What each thread is doing, for hang reports.
    current: Vec<Mutex<String>>,
    info: DppInfo,
    device: std::path::PathBuf,
    seed: u64,
    stream: u64,
    timeout: Duration,
}

/// Most objects in a pool; beyond it, received or new objects are closed.
const POOL_CAP: usize = 48;

impl Shared {
    fn put(&self, obj: Obj) {
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.len() < POOL_CAP {
            pool.push(obj);
        }
    }

    /// Runs `f` on a random pool object matching `pred`.
    fn with_obj<T>(
        &self,
        rng: &mut Rng,
        pred: impl Fn(&Obj) -> bool,
        f: impl FnOnce(&Obj) -> T,
    ) -> Option<T> {
        let pool = self.pool.lock().expect("pool lock");
        let idx: Vec<usize> = (0..pool.len()).filter(|&i| pred(&pool[i])).collect();
        if idx.is_empty() {
            return None;
        }
        Some(f(&pool[idx[rng.index(idx.len())]]))
    }

    /// Takes a random pool object matching `pred` out of the pool.
    fn take(&self, rng: &mut Rng, pred: impl Fn(&Obj) -> bool) -> Option<Obj> {
        let mut pool = self.pool.lock().expect("pool lock");
        let idx: Vec<usize> = (0..pool.len()).filter(|&i| pred(&pool[i])).collect();
        if idx.is_empty() {
            return None;
        }
        Some(pool.swap_remove(idx[rng.index(idx.len())]))
    }

    fn send(
        &self,
        kind: u64,
        seq: u64,
        fds: &[std::os::fd::BorrowedFd<'_>],
    ) -> dmapingpong::Result<()> {
        let _guard = self.send_lock.lock().expect("send lock");
        self.chan.send(&Message::Round { round: kind, seq }, fds)
    }
}

fn dup(fd: impl AsFd) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| Failure::os("dup", e))
}

fn is_fenceable(o: &Obj) -> bool {
    matches!(
        o,
        Obj::Buf {
            fenceable: true,
            ..
        }
    )
}

fn is_syncable(o: &Obj) -> bool {
    matches!(
        o,
        Obj::Buf {
            fenceable: false,
            ..
        }
    )
}

/// One device file of a worker and the exact state of its fences.
struct DevState {
    dev: Device,
    pending: VecDeque<Fence>,
    /// Signalled fences and the status they were signalled with (bounded).
    done: VecDeque<(Fence, FenceStatus)>,
}

/// One worker thread.
struct Worker {
    shared: Arc<Shared>,
    rng: Rng,
    thread: u64,
    op: u64,
    devs: Vec<DevState>,
    maps: Vec<Mapping>,
    raw_maps: Vec<sys::RawMap>,
}

/// An operation's outcome: `None` for success, or its errno.
type Got = Option<Errno>;

fn got<T>(r: &dmapingpong::Result<T>) -> Got {
    crate::error::errno_of(r)
}

impl Worker {
    fn where_(&self, name: &str) -> String {
        format!(
            "seed {} process {} thread {} op #{} ({name})",
            self.shared.seed, self.shared.stream, self.thread, self.op
        )
    }

    /// Fails unless `got` is one of `allowed`.
    fn expect(&self, name: &str, got: Got, allowed: &[Got]) -> Result<()> {
        if allowed.contains(&got) {
            return Ok(());
        }
        let expected: Vec<String> = allowed.iter().map(|a| crate::error::outcome(*a)).collect();
        Err(Failure::Unexpected {
            op: self.where_(name),
            got: crate::error::outcome(got),
            expected: expected.join(" or "),
        })
    }

    fn check(&self, name: &str, cond: bool, what: impl FnOnce() -> String) -> Result<()> {
        if cond {
            Ok(())
        } else {
            Err(Failure::Check(format!("{}: {}", self.where_(name), what())))
        }
    }

    fn random_errno(&mut self) -> Option<Errno> {
        match self.rng.below(4) {
            0 => Some(Errno::IO),
            1 => Some(Errno::from_raw_os_error(self.rng.range(1, 4095) as i32)),
            _ => None,
        }
    }

    /// A random valid allocation size: mostly small, sometimes page multiples.
    fn alloc_size(&mut self) -> u64 {
        let page = u64::from(self.shared.info.page_size);
        match self.rng.below(10) {
            0..=6 => self.rng.range(1, 16 * 1024),
            7 | 8 => self.rng.range(1, 64) * page,
            _ => self.rng.range(1, 256 * 1024),
        }
    }

    fn step(&mut self) -> Result<()> {
        let pick = self.rng.below(105);
        match pick {
            0..=3 => self.open_dev(),
            4..=5 => self.close_dev(),
            6..=17 => self.alloc(),
            18..=21 => self.alloc_bad(),
            22..=31 => self.create_fence(),
            32..=33 => self.create_fence_bad(),
            34..=43 => self.signal_oldest(),
            44..=47 => self.signal_wrong(),
            48..=53 => self.wait_own(),
            54..=58 => self.wait_pool(),
            59..=62 => self.poll_pool(),
            63..=65 => self.export(),
            66..=70 => self.map(),
            71..=73 => self.unmap(),
            74..=79 => self.cpu_access(),
            80..=83 => self.dup_obj(),
            84..=88 => self.close_obj(),
            89..=94 => self.send(),
            95..=97 => self.info(),
            98..=99 => self.bad_opcode(),
            _ => self.submit_job(),
        }
    }

    fn dev_index(&mut self) -> Result<usize> {
        if self.devs.is_empty() {
            self.open_dev()?;
        }
        Ok(self.rng.index(self.devs.len()))
    }

    fn open_dev(&mut self) -> Result<()> {
        if self.devs.len() >= 3 {
            return Ok(());
        }
        let r = Device::open(&self.shared.device);
        self.expect("open", got(&r), &[None])?;
        self.devs.push(DevState {
            dev: r?,
            pending: VecDeque::new(),
            done: VecDeque::new(),
        });
        Ok(())
    }

    /// Closes a device file: its pending fences must turn `ECANCELED`.
    fn close_dev(&mut self) -> Result<()> {
        if self.devs.is_empty() {
            return Ok(());
        }
        let i = self.rng.index(self.devs.len());
        let st = self.devs.swap_remove(i);
        let pending: Vec<SyncFile> = st.pending.into_iter().map(Fence::into_sync_file).collect();
        drop(st.dev);
        for f in pending {
            let s = f.wait(self.shared.timeout)?;
            self.check(
                "close device",
                s == FenceStatus::Error(Errno::CANCELED),
                || format!("a pending fence of a closed file has status {s:?}, expected ECANCELED"),
            )?;
        }
        Ok(())
    }

    fn alloc(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let size = self.alloc_size();
        let no_cloexec = self.rng.chance(10);
        let r = self.devs[d].dev.alloc_raw(DppAlloc {
            size,
            flags: if no_cloexec { DPP_FD_NO_CLOEXEC } else { 0 },
            ..Default::default()
        });
        self.expect("alloc", got(&r), &[None, Some(Errno::NOMEM)])?;
        let Ok(buf) = r else { return Ok(()) };
        let page = u64::from(self.shared.info.page_size);
        self.check("alloc", buf.size() == size.next_multiple_of(page), || {
            format!("size {size} became {}", buf.size())
        })?;
        let cloexec = sys::cloexec(&buf).map_err(|e| Failure::os("F_GETFD", e))?;
        self.check("alloc", cloexec != no_cloexec, || {
            format!("FD_CLOEXEC {cloexec} with DPP_FD_NO_CLOEXEC {no_cloexec}")
        })?;
        let fenceable = self.rng.chance(50);
        if !fenceable && self.rng.chance(30) {
            let mut map = buf.mmap()?;
            let cpu = map.begin(Access::Read, self.shared.timeout)?;
            let nonzero = cpu
                .words()
                .iter()
                .position(|w| w.load(Ordering::Relaxed) != 0);
            cpu.end()?;
            self.check("alloc", nonzero.is_none(), || {
                format!("new buffer not zero at byte {}", nonzero.unwrap_or(0) * 8)
            })?;
        }
        self.shared.put(Obj::Buf {
            buf,
            fenceable,
            local: true,
        });
        Ok(())
    }

    fn alloc_bad(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let pool = self.shared.info.pool_size;
        let arg = match self.rng.below(5) {
            0 => DppAlloc {
                size: 0,
                ..Default::default()
            },
            1 => DppAlloc {
                size: pool + self.rng.range(1, u64::MAX - pool),
                ..Default::default()
            },
            2 => DppAlloc {
                size: 4096,
                flags: 1 << self.rng.range(1, 31),
                ..Default::default()
            },
            3 => DppAlloc {
                size: 4096,
                reserved: [self.rng.next_u64() | 1, 0],
                ..Default::default()
            },
            _ => DppAlloc {
                size: 4096,
                reserved: [0, self.rng.next_u64() | 1],
                ..Default::default()
            },
        };
        let r = self.devs[d].dev.alloc_raw(arg);
        self.expect(&format!("alloc {arg:?}"), got(&r), &[Some(Errno::INVAL)])
    }

    fn create_fence(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let target = if self.rng.chance(50) {
            self.shared
                .with_obj(&mut self.rng, is_fenceable, |o| match o {
                    Obj::Buf { buf, .. } => dup(buf),
                    Obj::Sync { .. } => unreachable!("fenceable buffers only"),
                })
                .transpose()?
        } else {
            None
        };
        let usage = if self.rng.chance(50) {
            Usage::Write
        } else {
            Usage::Read
        };
        let r = self.devs[d]
            .dev
            .create_fence(target.as_ref().map(|fd| (fd.as_fd(), usage)));
        self.expect("create fence", got(&r), &[None])?;
        let fence = r?;
        let st = &self.devs[d];
        if let Some(last) = st.pending.back().or(st.done.back().map(|(f, _)| f)) {
            let (ctx, seq) = (last.context(), last.seqno());
            self.check(
                "create fence",
                fence.context() == ctx && fence.seqno() > seq,
                || {
                    format!(
                        "fence {}:{} after {ctx}:{seq} on the same file",
                        fence.context(),
                        fence.seqno()
                    )
                },
            )?;
        }
        if self.rng.chance(30) {
            let copy = SyncFile::from_fd(dup(&fence)?);
            self.shared.put(Obj::Sync {
                file: copy,
                peer: false,
                local: true,
            });
        }
        self.devs[d].pending.push_back(fence);
        Ok(())
    }

    /// A dup of a random sync_file of the pool.
    fn pool_sync_file(&mut self) -> Result<Option<OwnedFd>> {
        self.shared
            .with_obj(
                &mut self.rng,
                |o| matches!(o, Obj::Sync { .. }),
                |o| match o {
                    Obj::Sync { file, .. } => dup(file),
                    Obj::Buf { .. } => unreachable!("sync_files only"),
                },
            )
            .transpose()
    }

    /// A random fenceable buffer of the pool: a dup of its fd, its size and
    /// its inode (to tell two fds of one buffer).
    fn fenceable_buf(&mut self) -> Result<Option<(OwnedFd, u64, u64)>> {
        let fd = self
            .shared
            .with_obj(&mut self.rng, is_fenceable, |o| match o {
                Obj::Buf { buf, .. } => dup(buf).map(|fd| (fd, buf.size())),
                Obj::Sync { .. } => unreachable!("fenceable buffers only"),
            })
            .transpose()?;
        let Some((fd, size)) = fd else {
            return Ok(None);
        };
        let ino = rustix::fs::fstat(&fd)
            .map_err(|e| Failure::os("fstat", e))?
            .st_ino;
        Ok(Some((fd, size, ino)))
    }

    /// Submits a device job (a fill, or a copy between two buffers) on
    /// fenceable buffers, waiting for up to three sync_files of the pool and
    /// randomly for the reservations; its out-fence joins the pool (no
    /// device file of ours can signal it). Must succeed.
    fn submit_job(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let Some((dst, dst_size, dst_ino)) = self.fenceable_buf()? else {
            return Ok(());
        };
        let src = if self.rng.chance(50) {
            self.fenceable_buf()?.filter(|&(_, _, ino)| ino != dst_ino)
        } else {
            None
        };
        let mut in_fds = Vec::new();
        for _ in 0..self.rng.below(4) {
            in_fds.extend(self.pool_sync_file()?);
        }
        let max = src.as_ref().map_or(dst_size, |&(_, s, _)| s.min(dst_size)) / 8;
        let size = self.rng.range(1, max) * 8;
        let op = match &src {
            Some((src, _, _)) => JobOp::Copy {
                src: src.as_fd(),
                src_offset: 0,
            },
            None => JobOp::Fill {
                pattern: self.rng.next_u64(),
            },
        };
        let in_fences: Vec<_> = in_fds.iter().map(|f| f.as_fd()).collect();
        let job = Job {
            op,
            dst: dst.as_fd(),
            dst_offset: 0,
            size,
            in_fences: &in_fences,
            implicit_sync: self.rng.chance(50),
        };
        let r = self.devs[d].dev.submit_job(&job);
        self.expect("submit job", got(&r), &[None])?;
        self.shared.put(Obj::Sync {
            file: r?.fence.into_sync_file(),
            peer: true,
            local: true,
        });
        Ok(())
    }

    fn create_fence_bad(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let arg = match self.rng.below(4) {
            0 => DppFenceCreate {
                dmabuf_fd: -1,
                usage: self.rng.range(1, 3) as u32,
                ..Default::default()
            },
            1 => DppFenceCreate {
                dmabuf_fd: -1,
                flags: self.rng.range(1, u64::from(u32::MAX)) as u32,
                ..Default::default()
            },
            2 => DppFenceCreate {
                dmabuf_fd: -1,
                reserved: [self.rng.next_u64() | 1],
                ..Default::default()
            },
            _ => DppFenceCreate {
                dmabuf_fd: std::os::fd::AsRawFd::as_raw_fd(&self.devs[d].dev.as_fd()),
                usage: 1,
                ..Default::default()
            },
        };
        let r = self.devs[d].dev.create_fence_raw(arg);
        self.expect(
            &format!("create fence {arg:?}"),
            got(&r),
            &[Some(Errno::INVAL)],
        )
    }

    fn signal_oldest(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let error = self.random_errno();
        let st = &mut self.devs[d];
        let Some(fence) = st.pending.pop_front() else {
            return Ok(());
        };
        let r = st.dev.signal(&fence, error);
        self.expect("signal oldest", got(&r), &[None])?;
        let want = error.map_or(FenceStatus::Signalled, FenceStatus::Error);
        let s = fence.sync_file().status()?;
        self.check("signal oldest", s == want, || {
            format!("status {s:?} after signalling with {want:?}")
        })?;
        let st = &mut self.devs[d];
        st.done.push_back((fence, want));
        if st.done.len() > 8 {
            st.done.pop_front();
        }
        Ok(())
    }

    /// Signals what must be refused: a newer fence, a signalled one, another
    /// file's, the peer's.
    fn signal_wrong(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let n = self.devs.len();
        let which = self.rng.below(4);
        let st = &self.devs[d];
        let r = match which {
            0 if st.pending.len() >= 2 => {
                let i = 1 + self.rng.index(st.pending.len() - 1);
                st.dev.signal(&st.pending[i], None)
            }
            1 if !st.done.is_empty() => st
                .dev
                .signal(&st.done[self.rng.index(st.done.len())].0, None),
            2 if n >= 2 && !self.devs[(d + 1) % n].pending.is_empty() => {
                let other = &self.devs[(d + 1) % n];
                st.dev.signal(&other.pending[0], None)
            }
            _ => {
                let fd = self
                    .shared
                    .with_obj(
                        &mut self.rng,
                        |o| matches!(o, Obj::Sync { peer: true, .. }),
                        |o| match o {
                            Obj::Sync { file, .. } => dup(file),
                            Obj::Buf { .. } => unreachable!("sync_files only"),
                        },
                    )
                    .transpose()?;
                let Some(fd) = fd else { return Ok(()) };
                st.dev.signal_raw(dmapingpong::uapi::DppFenceSignal {
                    fence_fd: std::os::fd::AsRawFd::as_raw_fd(&fd),
                    ..Default::default()
                })
            }
        };
        self.expect(
            &format!("signal refused (case {which})"),
            got(&r),
            &[Some(Errno::INVAL)],
        )
    }

    fn short_timeout(&mut self) -> Duration {
        Duration::from_micros(self.rng.below(500))
    }

    fn wait_own(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let t = self.short_timeout();
        let st = &self.devs[d];
        let (r, want) = if !st.pending.is_empty() && self.rng.chance(50) {
            let f = &st.pending[self.rng.index(st.pending.len())];
            (st.dev.wait_fence(f, t), FenceStatus::Pending)
        } else if !st.done.is_empty() {
            let (f, want) = &st.done[self.rng.index(st.done.len())];
            (st.dev.wait_fence(f, t), *want)
        } else {
            return Ok(());
        };
        self.expect("wait own fence", got(&r), &[None])?;
        let s = r?;
        self.check("wait own fence", s == want, || {
            format!("WAIT_FENCE status {s:?}, expected {want:?}")
        })
    }

    fn wait_pool(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let t = self.short_timeout();
        let Some(fd) = self.pool_sync_file()? else {
            return Ok(());
        };
        let r = self.devs[d].dev.wait_fence(&fd, t);
        self.expect("wait shared sync_file", got(&r), &[None])
    }

    fn poll_pool(&mut self) -> Result<()> {
        let t = self.short_timeout();
        let events = match self.rng.below(3) {
            0 => PollFlags::IN,
            1 => PollFlags::OUT,
            _ => PollFlags::IN | PollFlags::OUT,
        };
        let fd = self
            .shared
            .with_obj(
                &mut self.rng,
                |_| true,
                |o| match o {
                    Obj::Sync { file, .. } => dup(file),
                    Obj::Buf { buf, .. } => dup(buf),
                },
            )
            .transpose()?;
        let Some(fd) = fd else { return Ok(()) };
        let mut fds = [rustix::event::PollFd::new(&fd, events)];
        let ts = rustix::event::Timespec::try_from(t).expect("short timeout");
        let r = rustix::event::poll(&mut fds, Some(&ts));
        self.expect("poll", r.err().filter(|e| *e != Errno::INTR), &[None])
    }

    fn export(&mut self) -> Result<()> {
        let access = if self.rng.chance(50) {
            Access::Read
        } else {
            Access::Write
        };
        let r = self
            .shared
            .with_obj(&mut self.rng, is_fenceable, |o| match o {
                Obj::Buf { buf, .. } => buf.export_sync_file(access),
                Obj::Sync { .. } => unreachable!("buffers only"),
            });
        let Some(r) = r else { return Ok(()) };
        self.expect("export sync_file", got(&r), &[None])?;
        let file = r?;
        let cloexec = sys::cloexec(&file).map_err(|e| Failure::os("F_GETFD", e))?;
        self.check("export sync_file", cloexec, || "no FD_CLOEXEC".into())?;
        // May hold our own fences: never signalled through, never sent.
        self.shared.put(Obj::Sync {
            file,
            peer: false,
            local: false,
        });
        Ok(())
    }

    fn map(&mut self) -> Result<()> {
        let page = u64::from(self.shared.info.page_size);
        let raw = self.rng.chance(30);
        let pick = self.rng.next_u64();
        let r = self
            .shared
            .with_obj(&mut self.rng, is_syncable, |o| match o {
                Obj::Buf { buf, .. } if raw => {
                    let pages = buf.size() / page;
                    let off = pick % pages;
                    let len = pages - off + u64::from(pick % 3 == 0);
                    (
                        Some((
                            sys::RawMap::shared(buf.as_fd(), (len * page) as usize, off * page),
                            pick % 3 == 0,
                        )),
                        None,
                    )
                }
                Obj::Buf { buf, .. } => (None, Some(buf.mmap())),
                Obj::Sync { .. } => unreachable!("buffers only"),
            });
        match r {
            Some((Some((r, beyond)), _)) => {
                let want = if beyond { Some(Errno::INVAL) } else { None };
                self.expect("mmap at an offset", r.as_ref().err().copied(), &[want])?;
                if let Ok(m) = r {
                    // Touch it: a load and a store (no atomic read-modify-write,
                    // which a write-combined mapping need not support).
                    let b = &m.bytes()[0];
                    b.store(b.load(Ordering::Relaxed), Ordering::Relaxed);
                    self.raw_maps.push(m);
                }
            }
            Some((None, Some(r))) => {
                self.expect("mmap", got(&r), &[None])?;
                self.maps.push(r?);
            }
            _ => {}
        }
        while self.maps.len() > 4 {
            self.maps.remove(0);
        }
        while self.raw_maps.len() > 2 {
            self.raw_maps.remove(0);
        }
        Ok(())
    }

    fn unmap(&mut self) -> Result<()> {
        if !self.maps.is_empty() {
            let i = self.rng.index(self.maps.len());
            self.maps.swap_remove(i);
        }
        if !self.raw_maps.is_empty() && self.rng.chance(50) {
            let i = self.rng.index(self.raw_maps.len());
            self.raw_maps.swap_remove(i);
        }
        Ok(())
    }

    fn cpu_access(&mut self) -> Result<()> {
        if self.maps.is_empty() {
            return self.map();
        }
        let i = self.rng.index(self.maps.len());
        let access = match self.rng.below(3) {
            0 => Access::Read,
            1 => Access::Write,
            _ => Access::ReadWrite,
        };
        let value = self.rng.next_u64();
        let word = self.rng.next_u64();
        let (start, end) = {
            let map = &mut self.maps[i];
            match map.begin(access, self.shared.timeout) {
                Ok(cpu) => {
                    let s = cpu.words();
                    let w = (word % s.len() as u64) as usize;
                    if access == Access::Read {
                        std::hint::black_box(s[w].load(Ordering::Relaxed));
                    } else {
                        s[w].store(value, Ordering::Relaxed);
                    }
                    (None, got(&cpu.end()))
                }
                Err(e) => (Some(e.errno().unwrap_or(Errno::IO)), None),
            }
        };
        self.expect("DMA_BUF_IOCTL_SYNC start", start, &[None])?;
        self.expect("DMA_BUF_IOCTL_SYNC end", end, &[None])
    }

    fn dup_obj(&mut self) -> Result<()> {
        let copy = self
            .shared
            .with_obj(
                &mut self.rng,
                |_| true,
                |o| -> Result<Obj> {
                    Ok(match o {
                        Obj::Buf {
                            buf,
                            fenceable,
                            local,
                        } => Obj::Buf {
                            buf: DmaBuf::from_fd(dup(buf)?)?,
                            fenceable: *fenceable,
                            local: *local,
                        },
                        Obj::Sync { file, peer, local } => Obj::Sync {
                            file: SyncFile::from_fd(dup(file)?),
                            peer: *peer,
                            local: *local,
                        },
                    })
                },
            )
            .transpose()?;
        if let Some(obj) = copy {
            self.shared.put(obj);
        }
        Ok(())
    }

    fn close_obj(&mut self) -> Result<()> {
        drop(self.shared.take(&mut self.rng, |_| true));
        Ok(())
    }

    fn send(&mut self) -> Result<()> {
        let msg = self
            .shared
            .with_obj(
                &mut self.rng,
                |o| {
                    matches!(
                        o,
                        Obj::Buf { local: true, .. } | Obj::Sync { local: true, .. }
                    )
                },
                |o| -> Result<(u64, OwnedFd)> {
                    Ok(match o {
                        Obj::Buf { buf, fenceable, .. } => (
                            if *fenceable {
                                KIND_FENCEABLE
                            } else {
                                KIND_SYNCABLE
                            },
                            dup(buf)?,
                        ),
                        Obj::Sync { file, .. } => (KIND_SYNC_FILE, dup(file)?),
                    })
                },
            )
            .transpose()?;
        let Some((kind, fd)) = msg else { return Ok(()) };
        let r = self.shared.send(kind, 0, &[fd.as_fd()]);
        // The peer may already be done and gone.
        match r {
            Ok(()) | Err(dmapingpong::Error::PeerClosed { .. }) => Ok(()),
            Err(e) => Err(Failure::Check(format!("{}: {e}", self.where_("send fd")))),
        }
    }

    fn info(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let r = self.devs[d].dev.info();
        self.expect("GET_INFO", got(&r), &[None])?;
        let info = r?;
        let pool = self.shared.info.pool_size;
        self.check(
            "GET_INFO",
            info.pool_size == pool && info.pool_used <= pool && info.reserved == [0; 3],
            || format!("{info:?}"),
        )
    }

    fn bad_opcode(&mut self) -> Result<()> {
        let d = self.dev_index()?;
        let nr = self.rng.range(5, 255) as u8;
        let dir = self.rng.below(4) as u32;
        let size = self.rng.below(256) as u32;
        let op = sys::ioc(dir, dmapingpong::uapi::DPP_IOC_MAGIC, nr, size);
        let mut buf = [0u8; 256];
        let r = sys::ioctl_bytes(self.devs[d].dev.as_fd(), op, &mut buf);
        self.expect(&format!("ioctl {op:#x}"), r.err(), &[Some(Errno::NOTTY)])
    }

    /// Closes everything; pending fences must turn `ECANCELED`.
    fn finish(mut self) -> Result<()> {
        while !self.devs.is_empty() {
            self.close_dev()?;
        }
        Ok(())
    }
}

/// Result of one fuzzing process.
struct ProcResult {
    ops: u64,
    peer_ops: u64,
}

/// Runs `threads` workers of `ops` operations each, plus a receiver of the
/// peer's fds, in this process; `stream` 0 is the suite, 1 the child.
fn fuzz_process(
    device: &std::path::Path,
    seed: u64,
    stream: u64,
    threads: u64,
    ops: u64,
    chan: Channel,
    timeout: Duration,
) -> Result<ProcResult> {
    let info = Device::open(device)?.info()?;
    let shared = Arc::new(Shared {
        pool: Mutex::new(Vec::new()),
        chan,
        send_lock: Mutex::new(()),
        stop: AtomicBool::new(false),
        progress: AtomicU64::new(0),
        current: (0..threads).map(|_| Mutex::new(String::new())).collect(),
        info,
        device: device.to_path_buf(),
        seed,
        stream,
        timeout,
    });
    let receiver = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || receive(&shared))
    };
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..threads {
        let shared = Arc::clone(&shared);
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut w = Worker {
                rng: crate::rng::Rng::stream(seed, stream * 1000 + t),
                shared: Arc::clone(&shared),
                thread: t,
                op: 0,
                devs: Vec::new(),
                maps: Vec::new(),
                raw_maps: Vec::new(),
            };
            let mut result = Ok(());
            while w.op < ops && !shared.stop.load(Ordering::Relaxed) {
                *shared.current[t as usize].lock().expect("lock") = w.where_("running");
                if let Err(e) = w.step() {
                    shared.stop.store(true, Ordering::Relaxed);
                    result = Err(e);
                    break;
                }
                w.op += 1;
                shared.progress.fetch_add(1, Ordering::Relaxed);
            }
            let done = w.op;
            let result = result.and_then(|()| w.finish());
            let _ = tx.send((done, result));
        });
    }
    drop(tx);
    // Collect the workers, watching for hangs: no progress in 60 s is a hang.
    let stall = Duration::from_secs(60).max(timeout * 2);
    let mut total = 0;
    let mut first_err = None;
    let mut finished = 0;
    let mut last = (shared.progress.load(Ordering::Relaxed), Instant::now());
    while finished < threads {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok((done, result)) => {
                finished += 1;
                total += done;
                if let Err(e) = result {
                    first_err.get_or_insert(e);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let p = shared.progress.load(Ordering::Relaxed);
                if p != last.0 {
                    last = (p, Instant::now());
                } else if last.1.elapsed() > stall {
                    let doing: Vec<String> = shared
                        .current
                        .iter()
                        .map(|c| c.lock().expect("lock").clone())
                        .collect();
                    return Err(Failure::Timeout {
                        what: format!("fuzz progress (hung in one of: {})", doing.join("; ")),
                        timeout: stall,
                    });
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Failure::Check(format!(
                    "a fuzz thread of process {stream} panicked (seed {seed})"
                )));
            }
        }
    }
    // Tell the peer we are done (or why we failed), then wait for its end.
    {
        let _guard = shared.send_lock.lock().expect("send lock");
        let msg = match &first_err {
            Some(e) => Message::Abort(e.to_string()),
            None => Message::Round {
                round: KIND_DONE,
                seq: total,
            },
        };
        let _ = shared.chan.send(&msg, &[]);
        let _ = rustix::net::shutdown(&shared.chan, rustix::net::Shutdown::Write);
    }
    let peer = receiver
        .join()
        .map_err(|_| Failure::Check("the fd receiver thread panicked".into()))?;
    shared.pool.lock().expect("pool lock").clear();
    if let Some(e) = first_err {
        return Err(e);
    }
    let peer_ops = peer?;
    Ok(ProcResult {
        ops: total,
        peer_ops,
    })
}

/// Receives the peer's fds into the pool until it is done; returns its op
/// count, or its failure.
fn receive(shared: &Shared) -> Result<u64> {
    let mut peer_ops = None;
    loop {
        match shared.chan.recv("the peer's fds") {
            Ok((
                Message::Round {
                    round: KIND_DONE,
                    seq,
                },
                _,
            )) => peer_ops = Some(seq),
            Ok((Message::Round { round: kind, .. }, mut fds)) if fds.len() == 1 => {
                let fd = fds.remove(0);
                let obj = match kind {
                    KIND_SYNC_FILE => Obj::Sync {
                        file: SyncFile::from_fd(fd),
                        peer: true,
                        local: false,
                    },
                    _ => Obj::Buf {
                        buf: DmaBuf::from_fd(fd)?,
                        fenceable: kind == KIND_FENCEABLE,
                        local: false,
                    },
                };
                shared.put(obj);
            }
            Ok((msg, fds)) => {
                return Err(Failure::Check(format!(
                    "unexpected message from the fuzz peer: {msg:?} with {} fds",
                    fds.len()
                )));
            }
            Err(dmapingpong::Error::PeerClosed { .. }) => {
                return peer_ops.ok_or_else(|| {
                    Failure::Check("the fuzz peer closed the socket without finishing".into())
                });
            }
            Err(dmapingpong::Error::PeerAborted(why)) => {
                return Err(Failure::Check(format!("fuzz peer failed: {why}")));
            }
            // Quiet for a while: keep listening unless we are done and the
            // peer is gone for good (its exit closes the socket).
            Err(dmapingpong::Error::Timeout { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The `fuzz-peer` child.
pub fn peer(args: &Args, chan: Channel) -> Result<()> {
    let r = fuzz_process(
        &args.device,
        args.seed,
        1,
        args.threads,
        args.count,
        chan,
        Duration::from_millis(args.timeout_ms),
    )?;
    log::info!("fuzz peer: {} ops", r.ops);
    Ok(())
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    let plan = ctx.plan;
    let start = Instant::now();
    let (kid, chan) = ctx.spawn(
        "fuzz-peer",
        &[
            "--count".into(),
            plan.fuzz_ops_per_thread.to_string(),
            "--threads".into(),
            plan.fuzz_threads.to_string(),
        ],
    )?;
    let r = fuzz_process(
        &ctx.device,
        ctx.seed,
        0,
        plan.fuzz_threads,
        plan.fuzz_ops_per_thread,
        chan,
        ctx.timeout,
    );
    let exit = kid.wait_success(ctx.timeout * 3);
    let r = r?;
    exit?;
    let total = r.ops + r.peer_ops;
    Figures::add(&ctx.figures.ioctls_fuzzed, total);
    diags.push(format!(
        "{total} ops ({} + {} in 2 processes x {} threads) in {:.1} s",
        r.ops,
        r.peer_ops,
        plan.fuzz_threads,
        start.elapsed().as_secs_f64()
    ));
    check!(
        total == 2 * plan.fuzz_threads * plan.fuzz_ops_per_thread,
        "only {total} ops done"
    );
    super::sanity_cycle(ctx)?;
    ctx.expect_baseline(baseline, "after fuzzing")?;
    Ok(Outcome::Pass)
}
