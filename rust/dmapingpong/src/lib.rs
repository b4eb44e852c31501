//! User-space library for `/dev/dmapingpong`, built on [`rustix`].
//!
//! * [`Device`]: an open file of the device, i.e. one fence context. It
//!   allocates [`DmaBuf`]s and creates, signals and waits for [`Fence`]s
//!   (ABI: [`dmapingpong_uapi`]).
//! * [`DmaBuf`]: an owned dma-buf fd with its size. [`DmaBuf::mmap`] maps it
//!   ([`Mapping`]); [`Mapping::begin`] brackets CPU access with
//!   `DMA_BUF_IOCTL_SYNC` ([`CpuAccess`]). Mapped memory is shared with other
//!   processes and devices and is only seen as atomics
//!   ([`CpuAccess::words`]). [`DmaBuf::from_fd`] refuses fds that are not
//!   dma-bufs. Polling and sync_file export follow
//!   `include/uapi/linux/dma-buf.h`.
//! * [`SyncFile`]: an owned sync_file fd (`include/uapi/linux/sync_file.h`),
//!   waited for with `poll()` and queried with `SYNC_IOC_FILE_INFO`.
//! * [`Channel`]: a connected Unix stream socket carrying typed [`Message`]s
//!   and fds (`SCM_RIGHTS`), each sent or received within one timeout.
//! * [`pingpong`]: the two-process ping-pong engine over a [`Channel`], and
//!   [`pattern`]: the data pattern it writes and verifies.
//! * [`module`]: unloading and loading the driver's module.
//! * [`baseline`]: what a user would use instead, for comparisons: dma-buf
//!   heaps ([`DmaHeap`]) and `sw_sync` timelines ([`SwSyncTimeline`]).
//!
//! Every blocking operation has a timeout, kept as an absolute deadline
//! across `EINTR` and across the system calls it takes; errors are
//! [`Error`]s naming the operation and carrying the [`Errno`].

pub mod baseline;
mod buffer;
mod channel;
mod deadline;
mod device;
mod error;
mod fence;
pub mod module;
pub mod pattern;
pub mod pingpong;
pub mod stats;
mod sys;

pub use baseline::{DmaHeap, SwSyncTimeline};
pub use buffer::{Access, CpuAccess, DMA_BUF_MAGIC, DmaBuf, Mapping};
pub use channel::{Channel, MAX_FDS, MAX_REASON_LEN, Message};
pub use device::{Device, Engine, Job, JobOp, SubmittedJob, Usage};
pub use dmapingpong_uapi as uapi;
pub use error::{ErrnoName, Error, Result};
pub use fence::{Fence, FenceInfo, FenceStatus, SyncFile};
pub use rustix::event::PollFlags;
pub use rustix::io::Errno;
pub use stats::EngineStats;
