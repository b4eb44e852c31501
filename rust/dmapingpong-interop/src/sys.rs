//! The uapi of the other drivers the suite talks to, as Linux 6.18 defines
//! it: DRM PRIME and dumb buffers (`include/uapi/drm/drm.h`,
//! `drm_mode.h`), vgem fences (`include/uapi/drm/vgem_drm.h`), V4L2 capture
//! (`include/uapi/linux/videodev2.h`) and vivid's controls
//! (`drivers/media/test-drivers/vivid/vivid-ctrls.c`). The opcodes are
//! checked against the numbers the kernel headers give (tests below).

use std::os::fd::BorrowedFd;

use rustix::ioctl::{Opcode, Setter, Updater, ioctl, opcode};

/// `ioctl(fd, OP, &mut arg)` for an `_IOWR` request.
///
/// # Safety
///
/// `OP` must be an `_IOWR` request whose argument is a `T`.
pub unsafe fn update<const OP: Opcode, T>(
    fd: BorrowedFd<'_>,
    arg: &mut T,
) -> rustix::io::Result<()> {
    // SAFETY: the caller's guarantee; `arg` is valid and exclusively
    // borrowed for the call.
    unsafe { ioctl(fd, Updater::<OP, T>::new(arg)) }
}

/// `ioctl(fd, OP, &arg)` for an `_IOW` request.
///
/// # Safety
///
/// `OP` must be an `_IOW` request whose argument is a `T`.
pub unsafe fn set<const OP: Opcode, T: Copy>(fd: BorrowedFd<'_>, arg: T) -> rustix::io::Result<()> {
    // SAFETY: the caller's guarantee; the setter passes a pointer to a
    // valid `T` for the call.
    unsafe { ioctl(fd, Setter::<OP, T>::new(arg)) }
}

/// `struct drm_prime_handle`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DrmPrimeHandle {
    pub handle: u32,
    pub flags: u32,
    pub fd: i32,
}

/// `struct drm_gem_close`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DrmGemClose {
    pub handle: u32,
    pub pad: u32,
}

/// `struct drm_mode_create_dumb`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DrmModeCreateDumb {
    pub height: u32,
    pub width: u32,
    pub bpp: u32,
    pub flags: u32,
    pub handle: u32,
    pub pitch: u32,
    pub size: u64,
}

/// `struct drm_vgem_fence_attach`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VgemFenceAttach {
    pub handle: u32,
    pub flags: u32,
    pub out_fence: u32,
    pub pad: u32,
}

/// `struct drm_vgem_fence_signal`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct VgemFenceSignal {
    pub fence: u32,
    pub flags: u32,
}

/// `DRM_CLOEXEC` (`O_CLOEXEC`) and `DRM_RDWR` (`O_RDWR`).
pub const DRM_CLOEXEC: u32 = 0o2000000;
pub const DRM_RDWR: u32 = 0o2;
/// `VGEM_FENCE_WRITE`.
pub const VGEM_FENCE_WRITE: u32 = 1;

const DRM_IOCTL_BASE: u8 = b'd';
const DRM_COMMAND_BASE: u8 = 0x40;
pub const DRM_IOCTL_GEM_CLOSE: Opcode = opcode::write::<DrmGemClose>(DRM_IOCTL_BASE, 0x09);
pub const DRM_IOCTL_PRIME_HANDLE_TO_FD: Opcode =
    opcode::read_write::<DrmPrimeHandle>(DRM_IOCTL_BASE, 0x2d);
pub const DRM_IOCTL_PRIME_FD_TO_HANDLE: Opcode =
    opcode::read_write::<DrmPrimeHandle>(DRM_IOCTL_BASE, 0x2e);
pub const DRM_IOCTL_MODE_CREATE_DUMB: Opcode =
    opcode::read_write::<DrmModeCreateDumb>(DRM_IOCTL_BASE, 0xb2);
pub const DRM_IOCTL_VGEM_FENCE_ATTACH: Opcode =
    opcode::read_write::<VgemFenceAttach>(DRM_IOCTL_BASE, DRM_COMMAND_BASE + 1);
pub const DRM_IOCTL_VGEM_FENCE_SIGNAL: Opcode =
    opcode::write::<VgemFenceSignal>(DRM_IOCTL_BASE, DRM_COMMAND_BASE + 2);

/// `struct v4l2_capability`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct V4l2Capability {
    pub driver: [u8; 16],
    pub card: [u8; 32],
    pub bus_info: [u8; 32],
    pub version: u32,
    pub capabilities: u32,
    pub device_caps: u32,
    pub reserved: [u32; 3],
}

/// `struct v4l2_pix_format`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct V4l2PixFormat {
    pub width: u32,
    pub height: u32,
    pub pixelformat: u32,
    pub field: u32,
    pub bytesperline: u32,
    pub sizeimage: u32,
    pub colorspace: u32,
    pub priv_: u32,
    pub flags: u32,
    pub ycbcr_enc: u32,
    pub quantization: u32,
    pub xfer_func: u32,
}

/// `struct v4l2_format` for single-planar video capture: the union is 200
/// bytes, 8-byte aligned (it holds pointers).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct V4l2Format {
    pub type_: u32,
    pub pad: u32,
    pub pix: V4l2PixFormat,
    pub rest: [u8; 200 - size_of::<V4l2PixFormat>()],
}

/// `struct v4l2_requestbuffers`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct V4l2RequestBuffers {
    pub count: u32,
    pub type_: u32,
    pub memory: u32,
    pub capabilities: u32,
    pub flags: u8,
    pub reserved: [u8; 3],
}

/// `struct timeval` (64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeval {
    pub sec: i64,
    pub usec: i64,
}

/// `struct v4l2_timecode`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct V4l2Timecode {
    pub type_: u32,
    pub flags: u32,
    pub frames: u8,
    pub seconds: u8,
    pub minutes: u8,
    pub hours: u8,
    pub userbits: [u8; 4],
}

/// `struct v4l2_buffer` (64-bit): `m` is the union of `offset`, `userptr`,
/// `planes` and `fd`, here the fd of a `V4L2_MEMORY_DMABUF` buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct V4l2Buffer {
    pub index: u32,
    pub type_: u32,
    pub bytesused: u32,
    pub flags: u32,
    pub field: u32,
    pub pad: u32,
    pub timestamp: Timeval,
    pub timecode: V4l2Timecode,
    pub sequence: u32,
    pub memory: u32,
    pub m: u64,
    pub length: u32,
    pub reserved2: u32,
    pub request_fd: i32,
    pub pad2: u32,
}

/// `struct v4l2_control`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct V4l2Control {
    pub id: u32,
    pub value: i32,
}

/// `struct v4l2_exportbuffer`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct V4l2ExportBuffer {
    pub type_: u32,
    pub index: u32,
    pub plane: u32,
    pub flags: u32,
    pub fd: i32,
    pub reserved: [u32; 11],
}

pub const V4L2_BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
pub const V4L2_MEMORY_MMAP: u32 = 1;
pub const V4L2_MEMORY_DMABUF: u32 = 4;
pub const V4L2_FIELD_NONE: u32 = 1;
pub const V4L2_CAP_VIDEO_CAPTURE: u32 = 0x1;
/// `V4L2_PIX_FMT_RGB24`, `v4l2_fourcc('R', 'G', 'B', '3')`: 3 bytes per
/// pixel, R, G, B.
pub const V4L2_PIX_FMT_RGB24: u32 = u32::from_le_bytes(*b"RGB3");
/// `V4L2_BUF_FLAG_ERROR`.
pub const V4L2_BUF_FLAG_ERROR: u32 = 0x40;
/// vivid's own controls (`VIVID_CID_VIVID_BASE` = `0x00f00000 | 0xf000`):
/// the test pattern (a menu: 1 is "100% Colorbar") and the text drawn on
/// the frame (2: none).
pub const VIVID_CID_TEST_PATTERN: u32 = 0x00f0_f000;
pub const VIVID_CID_OSD_TEXT_MODE: u32 = 0x00f0_f001;
pub const VIVID_PATTERN_100_COLORBAR: i32 = 1;
pub const VIVID_OSD_NONE: i32 = 2;

const V: u8 = b'V';
pub const VIDIOC_QUERYCAP: Opcode = opcode::read::<V4l2Capability>(V, 0);
pub const VIDIOC_S_FMT: Opcode = opcode::read_write::<V4l2Format>(V, 5);
pub const VIDIOC_REQBUFS: Opcode = opcode::read_write::<V4l2RequestBuffers>(V, 8);
pub const VIDIOC_QBUF: Opcode = opcode::read_write::<V4l2Buffer>(V, 15);
pub const VIDIOC_EXPBUF: Opcode = opcode::read_write::<V4l2ExportBuffer>(V, 16);
pub const VIDIOC_DQBUF: Opcode = opcode::read_write::<V4l2Buffer>(V, 17);
pub const VIDIOC_STREAMON: Opcode = opcode::write::<i32>(V, 18);
pub const VIDIOC_STREAMOFF: Opcode = opcode::write::<i32>(V, 19);
pub const VIDIOC_S_CTRL: Opcode = opcode::read_write::<V4l2Control>(V, 28);
pub const VIDIOC_S_INPUT: Opcode = opcode::read_write::<i32>(V, 39);

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and opcodes as a C program including the 6.18 headers prints
    /// them (aarch64 and x86-64 agree: both are LP64).
    #[test]
    fn opcodes() {
        assert_eq!(size_of::<V4l2Format>(), 208);
        assert_eq!(size_of::<V4l2Buffer>(), 88);
        assert_eq!(size_of::<V4l2Capability>(), 104);
        assert_eq!(size_of::<V4l2ExportBuffer>(), 64);
        assert_eq!(size_of::<V4l2RequestBuffers>(), 20);
        let want: [(Opcode, u64); 16] = [
            (DRM_IOCTL_GEM_CLOSE, 0x4008_6409),
            (DRM_IOCTL_PRIME_HANDLE_TO_FD, 0xc00c_642d),
            (DRM_IOCTL_PRIME_FD_TO_HANDLE, 0xc00c_642e),
            (DRM_IOCTL_MODE_CREATE_DUMB, 0xc020_64b2),
            (DRM_IOCTL_VGEM_FENCE_ATTACH, 0xc010_6441),
            (DRM_IOCTL_VGEM_FENCE_SIGNAL, 0x4008_6442),
            (VIDIOC_QUERYCAP, 0x8068_5600),
            (VIDIOC_S_FMT, 0xc0d0_5605),
            (VIDIOC_REQBUFS, 0xc014_5608),
            (VIDIOC_QBUF, 0xc058_560f),
            (VIDIOC_EXPBUF, 0xc040_5610),
            (VIDIOC_DQBUF, 0xc058_5611),
            (VIDIOC_STREAMON, 0x4004_5612),
            (VIDIOC_STREAMOFF, 0x4004_5613),
            (VIDIOC_S_CTRL, 0xc008_561c),
            (VIDIOC_S_INPUT, 0xc004_5627),
        ];
        for (ours, kernel) in want {
            assert_eq!(ours as u64, kernel, "{kernel:#x}");
        }
    }
}
