//! V4L2 video capture (`include/uapi/linux/videodev2.h`,
//! `Documentation/userspace-api/media/v4l/dmabuf.rst`) on vivid
//! (`drivers/media/test-drivers/vivid`), whose instances capture a test
//! pattern with vb2's vmalloc allocator (`allocators=0`: an imported dma-buf
//! is `dma_buf_vmap`ped) or its dma-contig one (`allocators=1`: attached and
//! mapped for vivid's device).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use dmapingpong::{DmaBuf, Errno};
use rustix::event::{PollFd, PollFlags};

use crate::error::{Failure, Result};
use crate::sys::{self, update};

/// An open V4L2 video capture node.
pub struct Capture {
    file: File,
    path: PathBuf,
    /// The format set by [`set_format`](Self::set_format).
    pub format: sys::V4l2PixFormat,
}

/// The text of a NUL-padded name field.
fn c_name(raw: &[u8]) -> String {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

impl Capture {
    /// Opens the video capture node of vivid's instance `instance` (bus
    /// info `platform:vivid-<instance, 3 digits>`).
    pub fn open_vivid(instance: u32) -> Result<Capture> {
        let bus = format!("platform:vivid-{instance:03}");
        let mut nodes: Vec<PathBuf> = std::fs::read_dir("/dev")
            .map_err(|e| Failure::Missing(format!("/dev: {e}")))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("video"))
            })
            .collect();
        nodes.sort();
        for path in nodes {
            let Ok(file) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
            else {
                continue;
            };
            let mut cap = sys::V4l2Capability {
                driver: [0; 16],
                card: [0; 32],
                bus_info: [0; 32],
                version: 0,
                capabilities: 0,
                device_caps: 0,
                reserved: [0; 3],
            };
            // SAFETY: `_IOR('V', 0, struct v4l2_capability)`; read-only
            // requests are issued like read-write ones.
            if unsafe { update::<{ sys::VIDIOC_QUERYCAP }, _>(file.as_fd(), &mut cap) }.is_err() {
                continue;
            }
            if c_name(&cap.driver) == "vivid"
                && c_name(&cap.bus_info) == bus
                && cap.device_caps & sys::V4L2_CAP_VIDEO_CAPTURE != 0
            {
                return Ok(Capture {
                    file,
                    path,
                    format: sys::V4l2PixFormat::default(),
                });
            }
        }
        Err(Failure::Missing(format!(
            "no video capture node of vivid instance {instance} ({bus}; CONFIG_VIDEO_VIVID, modprobe vivid)"
        )))
    }

    fn os(&self, op: &'static str, errno: Errno) -> Failure {
        Failure::Os {
            op,
            target: self.path.display().to_string(),
            errno,
        }
    }

    /// `VIDIOC_S_INPUT`.
    pub fn set_input(&self, input: i32) -> Result<()> {
        let mut arg = input;
        // SAFETY: `_IOWR('V', 39, int)`.
        unsafe { update::<{ sys::VIDIOC_S_INPUT }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_S_INPUT", e))
    }

    /// `VIDIOC_S_CTRL`.
    pub fn set_control(&self, id: u32, value: i32) -> Result<()> {
        let mut arg = sys::V4l2Control { id, value };
        // SAFETY: `_IOWR('V', 28, struct v4l2_control)`.
        unsafe { update::<{ sys::VIDIOC_S_CTRL }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_S_CTRL", e))
    }

    /// `VIDIOC_S_FMT` of a progressive single-planar capture format; the
    /// format the driver chose (it may adjust the size).
    pub fn set_format(
        &mut self,
        width: u32,
        height: u32,
        pixelformat: u32,
    ) -> Result<sys::V4l2PixFormat> {
        let mut arg = sys::V4l2Format {
            type_: sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            pad: 0,
            pix: sys::V4l2PixFormat {
                width,
                height,
                pixelformat,
                field: sys::V4L2_FIELD_NONE,
                ..Default::default()
            },
            rest: [0; 200 - size_of::<sys::V4l2PixFormat>()],
        };
        // SAFETY: `_IOWR('V', 5, struct v4l2_format)`.
        unsafe { update::<{ sys::VIDIOC_S_FMT }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_S_FMT", e))?;
        self.format = arg.pix;
        Ok(arg.pix)
    }

    /// `VIDIOC_REQBUFS`: `count` buffers of `memory` (`V4L2_MEMORY_*`; 0
    /// frees them); the number the driver allocated.
    pub fn request_buffers(&self, count: u32, memory: u32) -> Result<u32> {
        let mut arg = sys::V4l2RequestBuffers {
            count,
            type_: sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            memory,
            ..Default::default()
        };
        // SAFETY: `_IOWR('V', 8, struct v4l2_requestbuffers)`.
        unsafe { update::<{ sys::VIDIOC_REQBUFS }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_REQBUFS", e))?;
        Ok(arg.count)
    }

    /// `VIDIOC_QBUF` of buffer `index` of a `V4L2_MEMORY_DMABUF` queue, to
    /// be captured into the dma-buf `dmabuf` (`length`: its size).
    pub fn queue_dmabuf(&self, index: u32, dmabuf: BorrowedFd<'_>, length: u32) -> Result<()> {
        let mut arg = sys::V4l2Buffer {
            index,
            type_: sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            memory: sys::V4L2_MEMORY_DMABUF,
            m: dmabuf.as_raw_fd() as u32 as u64,
            length,
            ..Default::default()
        };
        // SAFETY: `_IOWR('V', 15, struct v4l2_buffer)`.
        unsafe { update::<{ sys::VIDIOC_QBUF }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_QBUF", e))
    }

    /// `VIDIOC_QBUF` of buffer `index` of a `V4L2_MEMORY_MMAP` queue.
    pub fn queue_mmap(&self, index: u32) -> Result<()> {
        let mut arg = sys::V4l2Buffer {
            index,
            type_: sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            memory: sys::V4L2_MEMORY_MMAP,
            ..Default::default()
        };
        // SAFETY: `_IOWR('V', 15, struct v4l2_buffer)`.
        unsafe { update::<{ sys::VIDIOC_QBUF }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_QBUF", e))
    }

    /// Waits up to `timeout` for a captured frame (`poll(POLLIN)`), then
    /// `VIDIOC_DQBUF`s it.
    pub fn dequeue(&self, memory: u32, timeout: Duration) -> Result<sys::V4l2Buffer> {
        let ts = rustix::event::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        loop {
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&ts)) {
                Ok(0) => {
                    return Err(Failure::Check(format!(
                        "{}: no frame captured within {} ms",
                        self.path.display(),
                        timeout.as_millis()
                    )));
                }
                Ok(_) => break,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(self.os("poll", e)),
            }
        }
        let mut arg = sys::V4l2Buffer {
            type_: sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            memory,
            ..Default::default()
        };
        // SAFETY: `_IOWR('V', 17, struct v4l2_buffer)`.
        unsafe { update::<{ sys::VIDIOC_DQBUF }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_DQBUF", e))?;
        Ok(arg)
    }

    /// `VIDIOC_STREAMON` / `VIDIOC_STREAMOFF` (which also takes back every
    /// queued buffer).
    pub fn stream(&self, on: bool) -> Result<()> {
        let kind = sys::V4L2_BUF_TYPE_VIDEO_CAPTURE as i32;
        let fd = self.file.as_fd();
        if on {
            // SAFETY: `_IOW('V', 18, int)`.
            unsafe { sys::set::<{ sys::VIDIOC_STREAMON }, _>(fd, kind) }
                .map_err(|e| self.os("VIDIOC_STREAMON", e))
        } else {
            // SAFETY: `_IOW('V', 19, int)`.
            unsafe { sys::set::<{ sys::VIDIOC_STREAMOFF }, _>(fd, kind) }
                .map_err(|e| self.os("VIDIOC_STREAMOFF", e))
        }
    }

    /// `VIDIOC_EXPBUF`: buffer `index` of a `V4L2_MEMORY_MMAP` queue as a
    /// dma-buf (vivid is then the exporter).
    pub fn export(&self, index: u32) -> Result<DmaBuf> {
        let mut arg = sys::V4l2ExportBuffer {
            type_: sys::V4L2_BUF_TYPE_VIDEO_CAPTURE,
            index,
            flags: (rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC).bits(),
            ..Default::default()
        };
        // SAFETY: `_IOWR('V', 16, struct v4l2_exportbuffer)`.
        unsafe { update::<{ sys::VIDIOC_EXPBUF }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("VIDIOC_EXPBUF", e))?;
        // SAFETY: on success the kernel installed a new fd that nothing else
        // owns.
        let fd = unsafe { OwnedFd::from_raw_fd(arg.fd) };
        Ok(DmaBuf::from_fd(fd)?)
    }
}
