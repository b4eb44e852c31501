//! The test points, one per behaviour of the list, in order.

use std::os::fd::AsFd;
use std::time::Duration;

use dmapingpong::{Access, Device, DmaBuf, Errno, FenceStatus, Job, PollFlags};

use crate::drm::Vgem;
use crate::error::{Failure, Result};
use crate::exporters;
use crate::frame::{self, POISON};
use crate::sys;
use crate::v4l2::Capture;

/// What every test gets.
pub struct Ctx {
    /// The exporter's device node.
    pub device: std::path::PathBuf,
    /// Frames to capture per vivid test.
    pub frames: u32,
    /// The bound of each wait for something that must happen.
    pub timeout: Duration,
    /// How long something that must not happen yet is watched for.
    pub hold: Duration,
}

/// A test point.
pub struct Test {
    /// Its KTAP name.
    pub name: &'static str,
    /// What it shows (printed as a diagnostic before it runs).
    pub about: &'static str,
    /// Runs it; may add diagnostics (`engine: dma|cpu` for the tests that
    /// run jobs on other exporters' buffers).
    pub run: fn(&Ctx, &mut Vec<String>) -> Result<()>,
}

/// The suite, in order.
pub const TESTS: &[Test] = &[
    Test {
        name: "prime_import_vgem",
        about: "vgem imports our dma-buf (PRIME): one GEM handle per buffer, and the same dma-buf back",
        run: |ctx, _| prime_import_vgem(ctx),
    },
    Test {
        name: "v4l2_capture_vmalloc",
        about: "vivid (vb2-vmalloc: dma_buf_vmap) captures the colour bars into our buffers",
        run: |ctx, _| v4l2_capture(ctx, 0),
    },
    Test {
        name: "v4l2_capture_dma_contig",
        about: "vivid (vb2-dma-contig: attach + map) captures the colour bars into our buffers",
        run: |ctx, _| v4l2_capture(ctx, 1),
    },
    Test {
        name: "vgem_fence_holds_back_jobs_and_cpu",
        about: "a vgem write fence in our buffer's reservation holds back CPU access and our jobs until signalled",
        run: |ctx, _| vgem_fence_holds_back_jobs_and_cpu(ctx),
    },
    Test {
        name: "job_fence_holds_back_vgem",
        about: "our pending job's fence in the reservation makes vgem's fence attach wait (EBUSY) until it signals",
        run: |ctx, _| job_fence_holds_back_vgem(ctx),
    },
    Test {
        name: "import_sync_file_into_vgem",
        about: "our job's out-fence imported into a vgem buffer (IMPORT_SYNC_FILE) holds back its users",
        run: |ctx, _| import_sync_file_into_vgem(ctx),
    },
    Test {
        name: "job_foreign_system_heap",
        about: "our jobs fill and copy a buffer of the system heap (scattered pages), honouring its reservation",
        run: |ctx, diags| job_foreign(ctx, diags, Foreign::SystemHeap),
    },
    Test {
        name: "job_foreign_cma_heap",
        about: "our jobs fill and copy a buffer of the CMA heap, honouring its reservation",
        run: |ctx, diags| job_foreign(ctx, diags, Foreign::CmaHeap),
    },
    Test {
        name: "job_foreign_udmabuf",
        about: "our jobs fill and copy a udmabuf (memfd pages), honouring its reservation",
        run: |ctx, diags| job_foreign(ctx, diags, Foreign::Udmabuf),
    },
    Test {
        name: "job_foreign_vgem",
        about: "our jobs fill and copy a vgem dumb buffer exported with PRIME, honouring its reservation",
        run: |ctx, diags| job_foreign(ctx, diags, Foreign::Vgem),
    },
    Test {
        name: "job_foreign_v4l2",
        about: "our jobs fill and copy a V4L2 buffer exported with VIDIOC_EXPBUF (vivid, vmalloc), honouring its reservation",
        run: |ctx, diags| job_foreign(ctx, diags, Foreign::V4l2),
    },
    Test {
        name: "job_foreign_refused_ranges",
        about: "a job on another exporter's buffer is range-checked at submission (EINVAL)",
        run: |ctx, _| job_foreign_refused_ranges(ctx),
    },
    Test {
        name: "capture_copy_verify",
        about: "vivid captures, our device job copies each frame into our buffer, the CPU verifies it: fences end to end",
        run: capture_copy_verify,
    },
];

fn open(ctx: &Ctx) -> Result<Device> {
    Ok(Device::open(&ctx.device)?)
}

/// The inode of a file, (device, inode number).
fn inode(fd: impl AsFd) -> Result<(u64, u64)> {
    let st = rustix::fs::fstat(fd).map_err(|errno| Failure::Os {
        op: "fstat",
        target: "dma-buf".into(),
        errno,
    })?;
    Ok((st.st_dev, st.st_ino))
}

/// The kind of every CPU access of the suite: read-write, whatever it does.
/// udmabuf maps its table for the CPU with the direction of a buffer's first
/// `DMA_BUF_IOCTL_SYNC` and syncs it later with the direction of each one,
/// which the DMA-API debugging reports as a mismatch when they differ.
const CPU_ACCESS: Access = Access::ReadWrite;

/// Fills the whole buffer with `word` (CPU access bracketed by
/// `DMA_BUF_IOCTL_SYNC`).
fn cpu_fill(buf: &DmaBuf, word: u64, ctx: &Ctx) -> Result<()> {
    let mut map = buf.mmap()?;
    let access = map.begin(CPU_ACCESS, ctx.timeout)?;
    access.write_from(&vec![word; access.words().len()]);
    access.end()?;
    Ok(())
}

/// The buffer's bytes (CPU read access bracketed by `DMA_BUF_IOCTL_SYNC`).
fn cpu_read(buf: &DmaBuf, ctx: &Ctx) -> Result<Vec<u8>> {
    let mut map = buf.mmap()?;
    let access = map.begin(CPU_ACCESS, ctx.timeout)?;
    let mut words = vec![0u64; access.words().len()];
    access.read_into(&mut words);
    access.end()?;
    Ok(words.iter().flat_map(|w| w.to_ne_bytes()).collect())
}

/// Checks that every word of the buffer is `word`.
fn check_words(buf: &DmaBuf, word: u64, what: &str, ctx: &Ctx) -> Result<()> {
    let bytes = cpu_read(buf, ctx)?;
    let want = word.to_ne_bytes();
    if let Some(i) = bytes.chunks(8).position(|w| w != want) {
        return Err(Failure::Check(format!(
            "{what}: word {i} is {:02x?}, expected {word:#018x}",
            &bytes[8 * i..8 * i + 8]
        )));
    }
    Ok(())
}

fn prime_import_vgem(ctx: &Ctx) -> Result<()> {
    let dev = open(ctx)?;
    let vgem = Vgem::open()?;
    let buf = dev.alloc(64 * 1024)?;
    cpu_fill(&buf, 0x5052_494d_4530_0001, ctx)?;
    let handle = vgem.import(&buf)?;
    let again = vgem.import(&buf)?;
    ensure!(
        handle == again,
        "a second import of the same dma-buf gave GEM handle {again}, the first {handle}"
    );
    let back = vgem.export(handle)?;
    let (ours, theirs) = (inode(&buf)?, inode(&back)?);
    ensure!(
        ours == theirs,
        "PRIME_HANDLE_TO_FD of the imported buffer gave another dma-buf (inode {theirs:?}, ours {ours:?})"
    );
    ensure!(
        back.size() == buf.size(),
        "size {} != {}",
        back.size(),
        buf.size()
    );
    // The GEM object holds the buffer: with every fd of ours closed, the
    // handle still gives back the same dma-buf, with our data.
    let held = inode(&buf)?;
    drop((buf, back));
    let again = vgem.export(handle)?;
    ensure!(
        inode(&again)? == held,
        "PRIME_HANDLE_TO_FD after our fds were closed gave another dma-buf"
    );
    check_words(&again, 0x5052_494d_4530_0001, "the dma-buf vgem kept", ctx)?;
    vgem.close(handle)?;
    Ok(())
}

/// vivid's instance `instance` (0: vmalloc, 1: dma-contig) captures
/// `ctx.frames` frames into two of our buffers; each frame must hold the
/// colour bars in every row, and both buffers must have been used.
fn v4l2_capture(ctx: &Ctx, instance: u32) -> Result<()> {
    let dev = open(ctx)?;
    let mut cap = Capture::open_vivid(instance)?;
    cap.set_input(0)?; // the webcam
    cap.set_control(sys::VIVID_CID_TEST_PATTERN, sys::VIVID_PATTERN_100_COLORBAR)?;
    cap.set_control(sys::VIVID_CID_OSD_TEXT_MODE, sys::VIVID_OSD_NONE)?;
    let fmt = cap.set_format(320, 180, sys::V4L2_PIX_FMT_RGB24)?;
    ensure!(
        (fmt.pixelformat, fmt.width, fmt.height) == (sys::V4L2_PIX_FMT_RGB24, 320, 180),
        "vivid chose {}x{} pixel format {:#x} instead of 320x180 RGB24",
        fmt.width,
        fmt.height,
        fmt.pixelformat
    );
    let size = u64::from(fmt.sizeimage).next_multiple_of(4096);
    let count = cap.request_buffers(2, sys::V4L2_MEMORY_DMABUF)?;
    ensure!(
        count == 2,
        "REQBUFS gave {count} DMABUF buffers, asked for 2"
    );
    let bufs = [dev.alloc(size)?, dev.alloc(size)?];
    let poison = u64::from_ne_bytes([POISON; 8]);
    for (i, buf) in bufs.iter().enumerate() {
        cpu_fill(buf, poison, ctx)?;
        cap.queue_dmabuf(i as u32, buf.as_fd(), size as u32)?;
    }
    cap.stream(true)?;
    let result = (|| {
        let mut used = [0u32; 2];
        let mut last_sequence = None;
        for n in 0..ctx.frames {
            let b = cap.dequeue(sys::V4L2_MEMORY_DMABUF, ctx.timeout)?;
            let i = b.index as usize;
            ensure!(i < 2, "DQBUF returned index {i}");
            ensure!(
                b.flags & sys::V4L2_BUF_FLAG_ERROR == 0,
                "frame {n}: V4L2_BUF_FLAG_ERROR"
            );
            ensure!(
                b.bytesused == fmt.sizeimage,
                "frame {n}: {} bytes used, the image has {}",
                b.bytesused,
                fmt.sizeimage
            );
            if let Some(last) = last_sequence {
                ensure!(
                    b.sequence > last,
                    "frame {n}: sequence {} after {last}",
                    b.sequence
                );
            }
            last_sequence = Some(b.sequence);
            let bytes = cpu_read(&bufs[i], ctx)?;
            frame::check_colorbar(
                &bytes,
                fmt.width as usize,
                fmt.height as usize,
                fmt.bytesperline as usize,
            )
            .map_err(|e| Failure::Check(format!("frame {n} (buffer {i}): {e}")))?;
            used[i] += 1;
            cpu_fill(&bufs[i], poison, ctx)?;
            cap.queue_dmabuf(i as u32, bufs[i].as_fd(), size as u32)?;
        }
        ensure!(
            used[0] > 0 && used[1] > 0,
            "frames per buffer {used:?}: both buffers of the queue must be captured into"
        );
        log::info!(
            "vivid instance {instance}: {} frames verified, per buffer {used:?}",
            ctx.frames
        );
        Ok(())
    })();
    let stopped = cap.stream(false);
    let freed = cap.request_buffers(0, sys::V4L2_MEMORY_DMABUF);
    result?;
    stopped?;
    freed?;
    Ok(())
}

fn vgem_fence_holds_back_jobs_and_cpu(ctx: &Ctx) -> Result<()> {
    let dev = open(ctx)?;
    let vgem = Vgem::open()?;
    let buf = dev.alloc(64 * 1024)?;
    let handle = vgem.import(&buf)?;
    let fence = vgem
        .attach_fence(handle, true)
        .map_err(|errno| Failure::Os {
            op: "DRM_IOCTL_VGEM_FENCE_ATTACH",
            target: vgem.path().display().to_string(),
            errno,
        })?;
    let result = (|| {
        // EXPORT_SYNC_FILE on our buffer returns vgem's fence.
        let exported = buf.export_sync_file(Access::Read)?;
        let fences = exported.fences()?;
        ensure!(
            fences.len() == 1
                && fences[0].driver == "vgem"
                && fences[0].status == FenceStatus::Pending,
            "EXPORT_SYNC_FILE of our buffer gave {fences:?}, expected the pending vgem fence"
        );
        // CPU access waits for it: poll() and DMA_BUF_IOCTL_SYNC.
        ensure!(
            !buf.poll(PollFlags::IN, ctx.hold)?,
            "poll(POLLIN) ready with the vgem fence pending"
        );
        let mut map = buf.mmap()?;
        match map.begin(Access::Read, ctx.hold) {
            Err(dmapingpong::Error::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
            Ok(_) => {
                return Err(Failure::Check(
                    "DMA_BUF_IOCTL_SYNC started with the vgem fence pending".into(),
                ));
            }
        }
        // So does our job.
        let job = dev.submit_job(&Job::fill(buf.as_fd(), 0x7667_656d_0000_0001, buf.size()))?;
        ensure!(
            job.fence.sync_file().wait(ctx.hold)? == FenceStatus::Pending,
            "our job ran with the vgem fence pending"
        );
        vgem.signal(fence)?;
        let status = job.fence.sync_file().wait(ctx.timeout)?;
        ensure!(
            status == FenceStatus::Signalled,
            "our job: {status:?} after the vgem fence signalled"
        );
        ensure!(
            exported.wait(ctx.timeout)? == FenceStatus::Signalled,
            "the exported sync_file did not signal"
        );
        check_words(&buf, 0x7667_656d_0000_0001, "the buffer after the job", ctx)
    })();
    if result.is_err() {
        // Never leave the fence to vgem's 10 s timeout.
        let _ = vgem.signal(fence);
    }
    result
}

fn job_fence_holds_back_vgem(ctx: &Ctx) -> Result<()> {
    let dev = open(ctx)?;
    let vgem = Vgem::open()?;
    let buf = dev.alloc(64 * 1024)?;
    let handle = vgem.import(&buf)?;
    let gate = dev.create_fence(None)?;
    let gates = [gate.as_fd()];
    let mut job = Job::fill(buf.as_fd(), 0x6a6f_6200_0000_0002, buf.size());
    job.in_fences = &gates;
    let job = dev.submit_job(&job)?;
    let result = (|| {
        for write in [false, true] {
            match vgem.attach_fence(handle, write) {
                Err(Errno::BUSY) => {}
                other => {
                    return Err(Failure::Check(format!(
                        "vgem fence attach (write {write}) with our job pending: {other:?}, expected EBUSY"
                    )));
                }
            }
        }
        Ok(())
    })();
    // The test's failure first; the gate is signalled either way.
    let signalled = dev.signal(&gate, None);
    result?;
    signalled?;
    let status = job.fence.sync_file().wait(ctx.timeout)?;
    ensure!(status == FenceStatus::Signalled, "our job: {status:?}");
    let fence = vgem
        .attach_fence(handle, true)
        .map_err(|errno| Failure::Os {
            op: "DRM_IOCTL_VGEM_FENCE_ATTACH",
            target: vgem.path().display().to_string(),
            errno,
        })?;
    vgem.signal(fence)?;
    check_words(&buf, 0x6a6f_6200_0000_0002, "the buffer after the job", ctx)
}

fn import_sync_file_into_vgem(ctx: &Ctx) -> Result<()> {
    let dev = open(ctx)?;
    let vgem = Vgem::open()?;
    let (handle, size) = vgem.create_dumb(64, 64)?;
    let theirs = vgem.export(handle)?;
    ensure!(
        size == theirs.size(),
        "dumb buffer of {size} bytes exported as {}",
        theirs.size()
    );
    let ours = dev.alloc(64 * 1024)?;
    let gate = dev.create_fence(None)?;
    let gates = [gate.as_fd()];
    let mut job = Job::fill(ours.as_fd(), 3, ours.size());
    job.in_fences = &gates;
    let job = dev.submit_job(&job)?;
    let result = (|| {
        theirs.import_sync_file(Access::Write, job.fence.sync_file())?;
        let fences = theirs.export_sync_file(Access::Read)?.fences()?;
        ensure!(
            fences
                .iter()
                .any(|f| f.driver == "dmapingpong" && f.status == FenceStatus::Pending),
            "the vgem buffer's reservation holds {fences:?}, expected our pending job fence"
        );
        ensure!(
            !theirs.poll(PollFlags::IN, ctx.hold)?,
            "poll(POLLIN) of the vgem buffer ready with our fence pending"
        );
        match vgem.attach_fence(handle, false) {
            Err(Errno::BUSY) => Ok(()),
            other => Err(Failure::Check(format!(
                "vgem fence attach with our imported fence pending: {other:?}, expected EBUSY"
            ))),
        }
    })();
    // The test's failure first; the gate is signalled either way.
    let signalled = dev.signal(&gate, None);
    result?;
    signalled?;
    ensure!(
        job.fence.sync_file().wait(ctx.timeout)? == FenceStatus::Signalled,
        "our job did not signal"
    );
    ensure!(
        theirs.poll(PollFlags::IN, ctx.timeout)?,
        "the vgem buffer stayed busy after our fence signalled"
    );
    let fence = vgem
        .attach_fence(handle, true)
        .map_err(|errno| Failure::Os {
            op: "DRM_IOCTL_VGEM_FENCE_ATTACH",
            target: vgem.path().display().to_string(),
            errno,
        })?;
    vgem.signal(fence)?;
    vgem.close(handle)?;
    Ok(())
}

/// The other exporters of the job tests.
#[derive(Clone, Copy, Debug)]
enum Foreign {
    SystemHeap,
    CmaHeap,
    Udmabuf,
    Vgem,
    V4l2,
}

/// What keeps a foreign buffer's exporter side alive (a vgem file, a V4L2
/// queue) until the test ends.
type Keep = Option<Box<dyn std::any::Any>>;

/// A dma-buf of `kind` of about 256 KiB: 64 pages, scattered for the
/// exporters of pages.
fn foreign_buffer(kind: Foreign) -> Result<(DmaBuf, Keep)> {
    const SIZE: u64 = 256 * 1024;
    Ok(match kind {
        Foreign::SystemHeap => (dmapingpong::DmaHeap::open("system")?.alloc(SIZE)?, None),
        Foreign::CmaHeap => (exporters::cma_heap()?.alloc(SIZE)?, None),
        Foreign::Udmabuf => (exporters::udmabuf(SIZE)?, None),
        Foreign::Vgem => {
            let vgem = Vgem::open()?;
            let (handle, _) = vgem.create_dumb(256, 256)?;
            let buf = vgem.export(handle)?;
            // The dma-buf holds the GEM object.
            vgem.close(handle)?;
            (buf, Some(Box::new(vgem)))
        }
        Foreign::V4l2 => {
            let mut cap = Capture::open_vivid(0)?;
            cap.set_format(320, 180, sys::V4L2_PIX_FMT_RGB24)?;
            // vivid allocates at least 2.
            let n = cap.request_buffers(2, sys::V4L2_MEMORY_MMAP)?;
            ensure!(n >= 1, "REQBUFS gave {n} MMAP buffers");
            (cap.export(0)?, Some(Box::new(cap)))
        }
    })
}

/// Submits `job` and waits for its fence to signal without error.
fn run_job(dev: &Device, job: &Job<'_>, ctx: &Ctx, what: &str) -> Result<dmapingpong::Engine> {
    let submitted = dev.submit_job(job)?;
    let status = submitted.fence.sync_file().wait(ctx.timeout)?;
    ensure!(
        status == FenceStatus::Signalled,
        "{what}: job fence {status:?}"
    );
    Ok(submitted.engine)
}

fn job_foreign(ctx: &Ctx, diags: &mut Vec<String>, kind: Foreign) -> Result<()> {
    let dev = open(ctx)?;
    let (theirs, keep) = foreign_buffer(kind)?;
    let size = theirs.size() & !7;
    // A fill of their buffer.
    let engine = run_job(
        &dev,
        &Job::fill(theirs.as_fd(), 0x666f_7265_6967_6e01, size),
        ctx,
        "fill",
    )?;
    check_words(
        &theirs,
        0x666f_7265_6967_6e01,
        &format!("{kind:?} after our fill"),
        ctx,
    )?;
    // A copy from ours into theirs, and from theirs into ours.
    let ours = dev.alloc(size)?;
    cpu_fill(&ours, 0x666f_7265_6967_6e02, ctx)?;
    run_job(
        &dev,
        &Job::copy(theirs.as_fd(), ours.as_fd(), size),
        ctx,
        "copy to theirs",
    )?;
    check_words(
        &theirs,
        0x666f_7265_6967_6e02,
        &format!("{kind:?} after our copy into it"),
        ctx,
    )?;
    cpu_fill(&theirs, 0x666f_7265_6967_6e03, ctx)?;
    let back = dev.alloc(size)?;
    run_job(
        &dev,
        &Job::copy(back.as_fd(), theirs.as_fd(), size),
        ctx,
        "copy from theirs",
    )?;
    check_words(
        &back,
        0x666f_7265_6967_6e03,
        &format!("our buffer after a copy from {kind:?}"),
        ctx,
    )?;
    // Their reservation holds our job back (a pending fence imported into
    // it), and our job's fence goes into it.
    let gate = dev.create_fence(None)?;
    theirs.import_sync_file(Access::Write, gate.sync_file())?;
    let job = dev.submit_job(&Job::fill(theirs.as_fd(), 0x666f_7265_6967_6e04, size))?;
    let held = (|| {
        ensure!(
            job.fence.sync_file().wait(ctx.hold)? == FenceStatus::Pending,
            "our job on {kind:?} ran with a fence pending in its reservation"
        );
        let fences = theirs.export_sync_file(Access::Write)?.fences()?;
        ensure!(
            fences.iter().filter(|f| f.driver == "dmapingpong").count() == 2,
            "the reservation of {kind:?} holds {fences:?}, expected the gate and our job's fence"
        );
        Ok(())
    })();
    let signalled = dev.signal(&gate, None);
    held?;
    signalled?;
    ensure!(
        job.fence.sync_file().wait(ctx.timeout)? == FenceStatus::Signalled,
        "our job did not signal"
    );
    check_words(
        &theirs,
        0x666f_7265_6967_6e04,
        &format!("{kind:?} after the held-back fill"),
        ctx,
    )?;
    diags.push(format!(
        "engine: {engine} ({kind:?}, {} bytes)",
        theirs.size()
    ));
    drop(keep);
    Ok(())
}

fn job_foreign_refused_ranges(ctx: &Ctx) -> Result<()> {
    let dev = open(ctx)?;
    let theirs = dmapingpong::DmaHeap::open("system")?.alloc(64 * 1024)?;
    let ours = dev.alloc(128 * 1024)?;
    let too_big = Job::copy(theirs.as_fd(), ours.as_fd(), 128 * 1024);
    let mut past_end = Job::fill(theirs.as_fd(), 1, 4096);
    past_end.dst_offset = 64 * 1024 - 8;
    let mut unaligned = Job::copy(ours.as_fd(), theirs.as_fd(), 4096);
    unaligned.op = dmapingpong::JobOp::Copy {
        src: theirs.as_fd(),
        src_offset: 4,
    };
    for (job, what) in [
        (too_big, "a copy larger than their buffer"),
        (past_end, "a fill past its end"),
        (unaligned, "an unaligned source offset"),
    ] {
        match dev.submit_job(&job) {
            Err(e) if e.errno() == Some(Errno::INVAL) => {}
            other => {
                return Err(Failure::Check(format!(
                    "SUBMIT_JOB of {what}: {other:?}, expected EINVAL"
                )));
            }
        }
    }
    Ok(())
}

/// The use case of the README: vivid captures into its own buffers
/// (vb2-dma-contig, exported with `VIDIOC_EXPBUF`: one contiguous segment,
/// as a camera's); each frame is copied into one of ours by a device job
/// submitted as soon as it is dequeued; the CPU verifies our copy
/// (`DMA_BUF_IOCTL_SYNC` waits for the job's fence in our reservation); the
/// capture buffer is queued again once the job's read fence in its
/// reservation has signalled (`poll(POLLOUT)`). No explicit wait for a
/// fence anywhere.
fn capture_copy_verify(ctx: &Ctx, diags: &mut Vec<String>) -> Result<()> {
    let dev = open(ctx)?;
    let mut cap = Capture::open_vivid(1)?;
    cap.set_input(0)?;
    cap.set_control(sys::VIVID_CID_TEST_PATTERN, sys::VIVID_PATTERN_100_COLORBAR)?;
    cap.set_control(sys::VIVID_CID_OSD_TEXT_MODE, sys::VIVID_OSD_NONE)?;
    let fmt = cap.set_format(320, 180, sys::V4L2_PIX_FMT_RGB24)?;
    let n = cap.request_buffers(2, sys::V4L2_MEMORY_MMAP)?;
    ensure!(n == 2, "REQBUFS gave {n} MMAP buffers, asked for 2");
    let frames = [cap.export(0)?, cap.export(1)?];
    let copy_size = u64::from(fmt.sizeimage) & !7;
    let ours = [dev.alloc(frames[0].size())?, dev.alloc(frames[1].size())?];
    for i in 0..2 {
        cap.queue_mmap(i)?;
    }
    cap.stream(true)?;
    let result = (|| {
        let mut engine = None;
        for n in 0..ctx.frames {
            let b = cap.dequeue(sys::V4L2_MEMORY_MMAP, ctx.timeout)?;
            let i = b.index as usize;
            ensure!(
                i < 2 && b.flags & sys::V4L2_BUF_FLAG_ERROR == 0,
                "frame {n}: buffer {i}, flags {:#x}",
                b.flags
            );
            let job = dev.submit_job(&Job::copy(ours[i].as_fd(), frames[i].as_fd(), copy_size))?;
            engine = Some(job.engine);
            let bytes = cpu_read(&ours[i], ctx)?;
            frame::check_colorbar(
                &bytes,
                fmt.width as usize,
                fmt.height as usize,
                fmt.bytesperline as usize,
            )
            .map_err(|e| Failure::Check(format!("frame {n} copied from buffer {i}: {e}")))?;
            ensure!(
                job.fence.sync_file().status()? == FenceStatus::Signalled,
                "frame {n}: the CPU read our copy before the job's fence signalled"
            );
            ensure!(
                frames[i].poll(PollFlags::OUT, ctx.timeout)?,
                "frame {n}: the capture buffer stayed busy after our copy"
            );
            cap.queue_mmap(i as u32)?;
            // The next frame must not be checked against a stale copy.
            cpu_fill(&ours[i], u64::from_ne_bytes([POISON; 8]), ctx)?;
        }
        let engine = engine.map_or("none".to_string(), |e| e.to_string());
        log::info!(
            "capture -> copy -> verify: {} frames, engine {engine}",
            ctx.frames
        );
        diags.push(format!("engine: {engine} ({} frames)", ctx.frames));
        Ok(())
    })();
    let stopped = cap.stream(false);
    drop(frames);
    let freed = cap.request_buffers(0, sys::V4L2_MEMORY_MMAP);
    result?;
    stopped?;
    freed?;
    Ok(())
}
