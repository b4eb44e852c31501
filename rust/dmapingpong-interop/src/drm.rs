//! vgem (`drivers/gpu/drm/vgem`), a DRM driver without hardware: GEM
//! buffers (dumb buffers of shmem pages), PRIME import and export, and
//! fences that user space attaches to a buffer's reservation and signals
//! (`include/uapi/drm/vgem_drm.h`). A vgem fence signals by itself after 10
//! s (`VGEM_FENCE_TIMEOUT`): none is indefinite.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use dmapingpong::{DmaBuf, Errno};

use crate::error::{Failure, Result};
use crate::sys::{self, set, update};

/// An open vgem device node.
pub struct Vgem {
    file: File,
    path: PathBuf,
}

impl Vgem {
    /// Opens the DRM card node that vgem registered (`/dev/dri/card*` whose
    /// device, `/sys/class/drm/card*/device`, is `vgem`: a faux device since
    /// Linux 6.15, a platform device before).
    pub fn open() -> Result<Vgem> {
        let cards = std::fs::read_dir("/sys/class/drm")
            .map_err(|e| Failure::Missing(format!("/sys/class/drm: {e} (no DRM core)")))?;
        for card in cards.flatten() {
            let name = card.file_name().to_string_lossy().into_owned();
            if !name.starts_with("card") || name.contains('-') {
                continue;
            }
            let device = std::fs::canonicalize(card.path().join("device")).ok();
            if device.as_deref().and_then(Path::file_name) != Some("vgem".as_ref()) {
                continue;
            }
            let path = Path::new("/dev/dri").join(&name);
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Failure::Missing(format!("{}: {e}", path.display())))?;
            return Ok(Vgem { file, path });
        }
        Err(Failure::Missing(
            "no DRM card of vgem (CONFIG_DRM_VGEM, modprobe vgem)".into(),
        ))
    }

    fn os(&self, op: &'static str, errno: Errno) -> Failure {
        Failure::Os {
            op,
            target: self.path.display().to_string(),
            errno,
        }
    }

    /// `DRM_IOCTL_PRIME_FD_TO_HANDLE`: imports a dma-buf; the GEM handle of
    /// the buffer (the same one for every import of the same dma-buf into
    /// this file).
    pub fn import(&self, dmabuf: impl AsFd) -> Result<u32> {
        self.try_import(dmabuf)
            .map_err(|e| self.os("DRM_IOCTL_PRIME_FD_TO_HANDLE", e))
    }

    /// [`import`](Self::import) with the errno as the error.
    pub fn try_import(&self, dmabuf: impl AsFd) -> rustix::io::Result<u32> {
        let mut arg = sys::DrmPrimeHandle {
            fd: dmabuf.as_fd().as_raw_fd(),
            ..Default::default()
        };
        // SAFETY: `_IOWR('d', 0x2e, struct drm_prime_handle)`.
        unsafe { update::<{ sys::DRM_IOCTL_PRIME_FD_TO_HANDLE }, _>(self.file.as_fd(), &mut arg) }?;
        Ok(arg.handle)
    }

    /// `DRM_IOCTL_PRIME_HANDLE_TO_FD`: the dma-buf of a GEM handle (for an
    /// imported buffer, the dma-buf it was imported from).
    pub fn export(&self, handle: u32) -> Result<DmaBuf> {
        let mut arg = sys::DrmPrimeHandle {
            handle,
            flags: sys::DRM_CLOEXEC | sys::DRM_RDWR,
            fd: -1,
        };
        // SAFETY: `_IOWR('d', 0x2d, struct drm_prime_handle)`.
        unsafe { update::<{ sys::DRM_IOCTL_PRIME_HANDLE_TO_FD }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("DRM_IOCTL_PRIME_HANDLE_TO_FD", e))?;
        // SAFETY: on success the kernel installed a new fd that nothing else
        // owns.
        let fd = unsafe { OwnedFd::from_raw_fd(arg.fd) };
        Ok(DmaBuf::from_fd(fd)?)
    }

    /// `DRM_IOCTL_MODE_CREATE_DUMB`: a buffer of `width` x `height` pixels of
    /// 32 bits; its handle and size in bytes.
    pub fn create_dumb(&self, width: u32, height: u32) -> Result<(u32, u64)> {
        let mut arg = sys::DrmModeCreateDumb {
            width,
            height,
            bpp: 32,
            ..Default::default()
        };
        // SAFETY: `_IOWR('d', 0xb2, struct drm_mode_create_dumb)`.
        unsafe { update::<{ sys::DRM_IOCTL_MODE_CREATE_DUMB }, _>(self.file.as_fd(), &mut arg) }
            .map_err(|e| self.os("DRM_IOCTL_MODE_CREATE_DUMB", e))?;
        Ok((arg.handle, arg.size))
    }

    /// `DRM_IOCTL_GEM_CLOSE`.
    pub fn close(&self, handle: u32) -> Result<()> {
        let arg = sys::DrmGemClose { handle, pad: 0 };
        // SAFETY: `_IOW('d', 0x09, struct drm_gem_close)`.
        unsafe { set::<{ sys::DRM_IOCTL_GEM_CLOSE }, _>(self.file.as_fd(), arg) }
            .map_err(|e| self.os("DRM_IOCTL_GEM_CLOSE", e))
    }

    /// `DRM_IOCTL_VGEM_FENCE_ATTACH`: a new vgem fence in the buffer's
    /// reservation (a write fence with `write`, else a read fence); its id
    /// for [`signal`](Self::signal). Fails with `EBUSY` while a fence the
    /// new one conflicts with is pending (a write fence for a read; any for
    /// a write).
    pub fn attach_fence(&self, handle: u32, write: bool) -> rustix::io::Result<u32> {
        let mut arg = sys::VgemFenceAttach {
            handle,
            flags: if write { sys::VGEM_FENCE_WRITE } else { 0 },
            ..Default::default()
        };
        // SAFETY: `_IOWR('d', 0x41, struct drm_vgem_fence_attach)`.
        unsafe { update::<{ sys::DRM_IOCTL_VGEM_FENCE_ATTACH }, _>(self.file.as_fd(), &mut arg) }?;
        Ok(arg.out_fence)
    }

    /// `DRM_IOCTL_VGEM_FENCE_SIGNAL`: signals a fence of
    /// [`attach_fence`](Self::attach_fence).
    pub fn signal(&self, fence: u32) -> Result<()> {
        let arg = sys::VgemFenceSignal { fence, flags: 0 };
        // SAFETY: `_IOW('d', 0x42, struct drm_vgem_fence_signal)`.
        unsafe { set::<{ sys::DRM_IOCTL_VGEM_FENCE_SIGNAL }, _>(self.file.as_fd(), arg) }
            .map_err(|e| self.os("DRM_IOCTL_VGEM_FENCE_SIGNAL", e))
    }

    /// The device node's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
