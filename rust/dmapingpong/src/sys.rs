//! Standard kernel uapi used on dma-buf and sync_file fds (Linux 6.18
//! `include/uapi/linux/dma-buf.h` and `include/uapi/linux/sync_file.h`), and
//! the ioctl opcodes of both those and `/dev/dmapingpong`.

use rustix::ioctl::{Opcode, opcode};

use dmapingpong_uapi as uapi;

/// `struct dma_buf_sync`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DmaBufSync {
    pub flags: u64,
}

/// `DMA_BUF_SYNC_READ`.
pub(crate) const DMA_BUF_SYNC_READ: u64 = 1;
/// `DMA_BUF_SYNC_WRITE`.
pub(crate) const DMA_BUF_SYNC_WRITE: u64 = 2;
/// `DMA_BUF_SYNC_START`.
pub(crate) const DMA_BUF_SYNC_START: u64 = 0;
/// `DMA_BUF_SYNC_END`.
pub(crate) const DMA_BUF_SYNC_END: u64 = 4;

/// `struct dma_buf_export_sync_file`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DmaBufExportSyncFile {
    pub flags: u32,
    pub fd: i32,
}

/// `struct sync_file_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SyncFileInfo {
    pub name: [u8; 32],
    pub status: i32,
    pub flags: u32,
    pub num_fences: u32,
    pub pad: u32,
    pub sync_fence_info: u64,
}

/// `struct dma_buf_import_sync_file`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DmaBufImportSyncFile {
    pub flags: u32,
    pub fd: i32,
}

/// `struct sync_fence_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncFenceInfo {
    pub obj_name: [u8; 32],
    pub driver_name: [u8; 32],
    pub status: i32,
    pub flags: u32,
    pub timestamp_ns: u64,
}

/// `DMA_BUF_IOCTL_SYNC`: `_IOW('b', 0, struct dma_buf_sync)`.
pub(crate) const DMA_BUF_IOCTL_SYNC: Opcode = opcode::write::<DmaBufSync>(b'b', 0);
/// `DMA_BUF_IOCTL_EXPORT_SYNC_FILE`: `_IOWR('b', 2, struct dma_buf_export_sync_file)`.
pub(crate) const DMA_BUF_IOCTL_EXPORT_SYNC_FILE: Opcode =
    opcode::read_write::<DmaBufExportSyncFile>(b'b', 2);
/// `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`: `_IOW('b', 3, struct dma_buf_import_sync_file)`.
pub(crate) const DMA_BUF_IOCTL_IMPORT_SYNC_FILE: Opcode =
    opcode::write::<DmaBufImportSyncFile>(b'b', 3);
/// `SYNC_IOC_FILE_INFO`: `_IOWR('>', 4, struct sync_file_info)`.
pub(crate) const SYNC_IOC_FILE_INFO: Opcode = opcode::read_write::<SyncFileInfo>(b'>', 4);

/// The ioctls of `/dev/dmapingpong` (`rust/uapi/include/dmapingpong.h`), encoded by rustix as
/// the kernel's `_IOR`/`_IOW`/`_IOWR` do; equal to the uapi crate's numbers (see the tests).
const DPP_MAGIC: u8 = uapi::DPP_IOC_MAGIC;
pub(crate) const DPP_GET_INFO: Opcode = opcode::read::<uapi::DppInfo>(DPP_MAGIC, 0x00);
pub(crate) const DPP_ALLOC: Opcode = opcode::read_write::<uapi::DppAlloc>(DPP_MAGIC, 0x01);
pub(crate) const DPP_CREATE_FENCE: Opcode =
    opcode::read_write::<uapi::DppFenceCreate>(DPP_MAGIC, 0x02);
pub(crate) const DPP_SIGNAL_FENCE: Opcode = opcode::write::<uapi::DppFenceSignal>(DPP_MAGIC, 0x03);
pub(crate) const DPP_WAIT_FENCE: Opcode = opcode::read_write::<uapi::DppFenceWait>(DPP_MAGIC, 0x04);
pub(crate) const DPP_SUBMIT_JOB: Opcode = opcode::read_write::<uapi::DppJob>(DPP_MAGIC, 0x05);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpp_opcodes_match_the_uapi_crate() {
        let pairs = [
            (DPP_GET_INFO, uapi::DPP_IOCTL_GET_INFO),
            (DPP_ALLOC, uapi::DPP_IOCTL_ALLOC),
            (DPP_CREATE_FENCE, uapi::DPP_IOCTL_CREATE_FENCE),
            (DPP_SIGNAL_FENCE, uapi::DPP_IOCTL_SIGNAL_FENCE),
            (DPP_WAIT_FENCE, uapi::DPP_IOCTL_WAIT_FENCE),
            (DPP_SUBMIT_JOB, uapi::DPP_IOCTL_SUBMIT_JOB),
        ];
        for (ours, uapi) in pairs {
            assert_eq!(ours as u64, u64::from(uapi));
        }
    }

    /// The opcodes as printed by a C program including the kernel headers.
    #[test]
    fn kernel_uapi_opcodes() {
        assert_eq!(size_of::<SyncFileInfo>(), 56);
        assert_eq!(size_of::<SyncFenceInfo>(), 80);
        assert_eq!(u64::from(DMA_BUF_IOCTL_IMPORT_SYNC_FILE), 0x4008_6203);
        assert_eq!(u64::from(DMA_BUF_IOCTL_SYNC), 0x4008_6200);
        assert_eq!(u64::from(DMA_BUF_IOCTL_EXPORT_SYNC_FILE), 0xc008_6202);
        assert_eq!(u64::from(SYNC_IOC_FILE_INFO), 0xc038_3e04);
    }
}
