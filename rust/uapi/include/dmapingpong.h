/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * User-space API of the dmapingpong exporter (/dev/dmapingpong), version 2.
 *
 * C mirror of rust/uapi/src/abi.rs, which is the definition; the crate's
 * tests check that both agree. All ioctls are issued on an open file of
 * /dev/dmapingpong. Argument structures have fixed sizes without implicit
 * padding; reserved fields must be zero (-EINVAL otherwise) and unknown flag
 * bits are rejected with -EINVAL.
 *
 * Each open file is one fence context: fences get seqnos 1, 2, ... and must
 * be signalled by that file in seqno order; when the file is released its
 * pending fences are signalled with -ECANCELED. Fences are sync_file fds
 * (<linux/sync_file.h>), buffers are dma-buf fds (<linux/dma-buf.h>).
 */
#ifndef _UAPI_LINUX_DMAPINGPONG_H
#define _UAPI_LINUX_DMAPINGPONG_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Version of this ABI, reported by DPP_IOCTL_GET_INFO. */
#define DPP_UAPI_VERSION 3

/* ioctl type ("magic") of the device. */
#define DPP_IOC_MAGIC 0xD7

/* Flag: return the fd without O_CLOEXEC (the default is O_CLOEXEC). */
#define DPP_FD_NO_CLOEXEC (1U << 0)

/* Fence usage: no buffer, the fence is only returned as a sync_file. */
#define DPP_USAGE_NONE 0
/* Fence usage: a write fence (DMA_RESV_USAGE_WRITE) of the buffer. */
#define DPP_USAGE_WRITE 1
/* Fence usage: a read fence (DMA_RESV_USAGE_READ) of the buffer. */
#define DPP_USAGE_READ 2

/* Largest errno a fence may be signalled with (MAX_ERRNO). */
#define DPP_MAX_ERRNO 4095

/* Deadline of a user fence created with deadline_ms 0, in milliseconds. */
#define DPP_FENCE_DEFAULT_DEADLINE_MS 10000

/* The most user fences a file may have pending (else -EBUSY). */
#define DPP_FENCE_MAX_PENDING 1024

/* Job operation: fill with copies of the 8-byte pattern (native byte order). */
#define DPP_JOB_FILL 1
/* Job operation: copy the source to the destination. */
#define DPP_JOB_COPY 2
/* Job flag: wait only for the in-fences, not for the buffers' reservations. */
#define DPP_JOB_NO_IMPLICIT_SYNC (1U << 0)
/* Number of in-fence slots of struct dpp_job. */
#define DPP_JOB_MAX_IN_FENCES 4
/* Engine of a job: a channel of the SoC's DMA controller. */
#define DPP_ENGINE_DMA 1
/* Engine of a job: a CPU worker of the driver (no usable DMA channel). */
#define DPP_ENGINE_CPU 2

/**
 * struct dpp_info - output of DPP_IOCTL_GET_INFO; sizes in bytes
 * @version: DPP_UAPI_VERSION of the driver
 * @page_size: CPU page size; buffer sizes are rounded up to it
 * @pool_size: size of the reserved-memory pool; no buffer is larger
 * @pool_used: bytes of the pool held by live buffers of this device
 * @buffers: live buffers (dma-bufs) of this device
 * @fences_pending: fences of this device created and not yet signalled
 * @reserved: zero
 */
struct dpp_info {
	__u32 version;
	__u32 page_size;
	__u64 pool_size;
	__u64 pool_used;
	__u64 buffers;
	__u64 fences_pending;
	__u64 reserved[3];
};

/**
 * struct dpp_alloc - argument of DPP_IOCTL_ALLOC
 * @size: in: requested size in bytes, 1..pool_size; out: rounded up to pages
 * @flags: in: 0 or DPP_FD_NO_CLOEXEC
 * @fd: out: the dma-buf fd (O_RDWR); the buffer is zero-filled
 * @reserved: in: zero
 */
struct dpp_alloc {
	__u64 size;
	__u32 flags;
	__s32 fd;
	__u64 reserved[2];
};

/**
 * struct dpp_fence_create - argument of DPP_IOCTL_CREATE_FENCE
 * @dmabuf_fd: in: a dma-buf fd of a buffer of this device (-EINVAL for any
 *             other dma-buf) to whose reservation the new fence is added
 *             with @usage, or -1 for none
 * @usage: in: DPP_USAGE_WRITE or DPP_USAGE_READ with a dma-buf,
 *         DPP_USAGE_NONE with @dmabuf_fd == -1
 * @flags: in: 0 or DPP_FD_NO_CLOEXEC
 * @fence_fd: out: a sync_file fd of the new, unsignalled fence
 * @context: out: the fence context (one per open file of the device)
 * @seqno: out: the fence's seqno on that context (1, 2, ...)
 * @deadline_ms: in: milliseconds after which the fence, if not signalled,
 *               signals with -ETIMEDOUT (or later: never before an older
 *               fence of the same file); 0 for
 *               DPP_FENCE_DEFAULT_DEADLINE_MS; at most 60000, else -EINVAL
 * @pad: in: zero
 * @reserved: in: zero
 *
 * User fences are fences whose signalling user space controls (as sw_sync's).
 * So that none becomes an indefinite fence (Documentation/driver-api/dma-buf.rst,
 * "Indefinite DMA Fences"), each has a deadline, and it may only enter the
 * reservation of this device's own buffers, whose importers expect it: never
 * that of another exporter's dma-buf (a display or GPU would wait on it). A
 * job's out-fence, which enters the reservation of another exporter's buffer
 * that the job uses, signals at the latest after the deadlines of the user
 * fences it depends on and its own timeout.
 */
struct dpp_fence_create {
	__s32 dmabuf_fd;
	__u32 usage;
	__u32 flags;
	__s32 fence_fd;
	__u64 context;
	__u64 seqno;
	__u32 deadline_ms;
	__u32 pad;
	__u64 reserved[1];
};

/**
 * struct dpp_fence_signal - argument of DPP_IOCTL_SIGNAL_FENCE
 * @fence_fd: in: a sync_file fd of a fence created on this open file, which
 *            must be the oldest of its pending fences
 * @error: in: 0, or a negative errno (-DPP_MAX_ERRNO..-1) that the fence
 *         carries to its waiters
 * @reserved: in: zero
 */
struct dpp_fence_signal {
	__s32 fence_fd;
	__s32 error;
	__u64 reserved[2];
};

/**
 * struct dpp_fence_wait - argument of DPP_IOCTL_WAIT_FENCE
 * @fence_fd: in: a sync_file fd (of any fence)
 * @flags: in: zero
 * @timeout_ns: in: how long to wait, in nanoseconds; 0 only samples the state
 * @status: out: 0 if the fence signalled without error, else its negative errno
 * @pad: in: zero
 * @reserved: in: zero
 */
struct dpp_fence_wait {
	__s32 fence_fd;
	__u32 flags;
	__u64 timeout_ns;
	__s32 status;
	__u32 pad;
	__u64 reserved[2];
};

/**
 * struct dpp_job - argument of DPP_IOCTL_SUBMIT_JOB; sizes and offsets in bytes
 * @op: in: DPP_JOB_FILL or DPP_JOB_COPY
 * @flags: in: 0 or DPP_JOB_NO_IMPLICIT_SYNC
 * @dst_fd: in: the destination, a dma-buf fd (of this device or another
 *          exporter, which the job imports)
 * @src_fd: in: the source (copy), a dma-buf fd (of this device or another
 *          exporter); -1 for a fill
 * @dst_offset: in: offset into the destination, a multiple of 8
 * @src_offset: in: offset into the source, a multiple of 8; 0 for a fill
 * @size: in: bytes to fill or copy, a non-zero multiple of 8 (with
 *        DPP_ENGINE_DMA, offsets and size also multiples of the controller's
 *        copy and fill alignments)
 * @pattern: in: the fill pattern; 0 for a copy
 * @in_fence_fds: in: sync_file fds the job waits for; -1 for an unused slot
 * @out_fence_fd: out: a sync_file fd (O_CLOEXEC) of the job's out-fence
 * @engine: out: DPP_ENGINE_DMA or DPP_ENGINE_CPU
 * @context: out: the fence context of the out-fence (one per open file)
 * @seqno: out: the out-fence's seqno on that context (1, 2, ...)
 * @reserved: in: zero
 *
 * The job waits for its in-fences and (unless DPP_JOB_NO_IMPLICIT_SYNC) the
 * fences in its buffers' reservations, runs, and signals its out-fence, which
 * is also added to the destination's reservation as a write fence and to the
 * source's as a read fence. The jobs of one open file signal in submission
 * order. The out-fence carries the error of a failed in-fence (the job does
 * not run), -EIO (transfer failed), -ETIMEDOUT (not done in 5 s + 0.2 s per
 * MiB + 20 ms per transfer) or -ECANCELED (DMA channel released while it ran
 * or before it could start). The CPU worker accesses another exporter's
 * buffer through its kernel mapping without dma_buf_begin/end_cpu_access()
 * (they may not run in a fence signalling path): the exporter's mapping must
 * be coherent with the buffer's other users.
 */
struct dpp_job {
	__u32 op;
	__u32 flags;
	__s32 dst_fd;
	__s32 src_fd;
	__u64 dst_offset;
	__u64 src_offset;
	__u64 size;
	__u64 pattern;
	__s32 in_fence_fds[DPP_JOB_MAX_IN_FENCES];
	__s32 out_fence_fd;
	__u32 engine;
	__u64 context;
	__u64 seqno;
	__u64 reserved[2];
};

/* Reads struct dpp_info. Errors: -EFAULT. */
#define DPP_IOCTL_GET_INFO _IOR(DPP_IOC_MAGIC, 0x00, struct dpp_info)
/*
 * Allocates a zero-filled buffer from the pool and returns it as a dma-buf.
 * Errors: -EINVAL (size 0 or larger than the pool, unknown flags, non-zero
 * reserved), -ENOMEM (the pool has no room), -EMFILE (no free fd),
 * -EOPNOTSUPP (the device translates DMA addresses: dma-ranges, IOMMU).
 */
#define DPP_IOCTL_ALLOC _IOWR(DPP_IOC_MAGIC, 0x01, struct dpp_alloc)
/*
 * Creates a fence on this file's context, optionally adds it to a dma-buf's
 * reservation, and returns it as a sync_file. Errors: -EINVAL (bad
 * usage/flags/reserved, dmabuf_fd not a dma-buf), -EBADF (dmabuf_fd not
 * open), -EBUSY (DPP_FENCE_MAX_PENDING fences of this file pending),
 * -ENOMEM, -EMFILE, -EINTR.
 */
#define DPP_IOCTL_CREATE_FENCE _IOWR(DPP_IOC_MAGIC, 0x02, struct dpp_fence_create)
/*
 * Signals a fence created on this file, optionally with an error. Errors:
 * -EINVAL (not a sync_file of this file's context, already signalled, an
 * older fence of the context still pending, error out of range, non-zero
 * reserved).
 */
#define DPP_IOCTL_SIGNAL_FENCE _IOW(DPP_IOC_MAGIC, 0x03, struct dpp_fence_signal)
/*
 * Waits for a sync_file's fence with a timeout and returns its status.
 * Errors: -EINVAL (not a sync_file, non-zero flags/reserved), -ETIME (the
 * timeout expired first), -EINTR/-ERESTARTSYS (a signal arrived).
 */
#define DPP_IOCTL_WAIT_FENCE _IOWR(DPP_IOC_MAGIC, 0x04, struct dpp_fence_wait)
/*
 * Submits a job (struct dpp_job) and returns its out-fence. Errors: -EINVAL
 * (unknown op/flags, non-zero reserved, a buffer fd not a dma-buf, a range
 * out of bounds, unaligned or overlapping, an in-fence fd not a sync_file;
 * another exporter's buffer without a kernel mapping for the CPU worker or
 * with DMA segments unaligned for the DMA engine), -EOPNOTSUPP (another
 * exporter's buffer in I/O memory, CPU worker), -ERANGE (another exporter's
 * buffer, and a DMA controller that cannot address all of memory: its mapping
 * could be bounced), the exporter's error if it cannot map its buffer for the
 * DMA controller, -EBADF, -ENOMEM, -EMFILE, -EINTR.
 */
#define DPP_IOCTL_SUBMIT_JOB _IOWR(DPP_IOC_MAGIC, 0x05, struct dpp_job)

#endif /* _UAPI_LINUX_DMAPINGPONG_H */
