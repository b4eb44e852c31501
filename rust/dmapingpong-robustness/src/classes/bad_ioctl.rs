//! Class 1, `bad_ioctl_input`: every ioctl with hostile arguments gets its
//! documented errno, and the driver stays usable.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use dmapingpong::uapi::{
    self as u, DPP_FD_NO_CLOEXEC, DPP_USAGE_NONE, DPP_USAGE_READ, DPP_USAGE_WRITE, DppAlloc,
    DppFenceCreate, DppFenceSignal, DppFenceWait,
};
use dmapingpong::{Device, Errno, FenceStatus};
use rustix::event::EventfdFlags;

use super::{Diags, sanity_cycle};
use crate::ctx::Ctx;
use crate::error::{Failure, Result, errno_of, expect_errno, expect_raw, outcome};
use crate::ktap::Outcome;
use crate::sys::{self, IOC_NONE, IOC_READ, IOC_WRITE, ioc};

/// The driver's valid `(nr, dir, size)` triples.
const VALID: [(u8, u32, usize); 5] = [
    (0, IOC_READ, u::DppInfo::SIZE),
    (1, IOC_READ | IOC_WRITE, u::DppAlloc::SIZE),
    (2, IOC_READ | IOC_WRITE, u::DppFenceCreate::SIZE),
    (3, IOC_WRITE, u::DppFenceSignal::SIZE),
    (4, IOC_READ | IOC_WRITE, u::DppFenceWait::SIZE),
];

/// Fds of every wrong type, with names.
struct WrongFds {
    fds: Vec<(&'static str, OwnedFd)>,
}

impl WrongFds {
    fn new(dev: &Device, ctx: &Ctx) -> Result<WrongFds> {
        let os = |op: &'static str| move |e| Failure::os(op, e);
        let mut fds: Vec<(&'static str, OwnedFd)> = vec![
            (
                "regular file",
                std::fs::File::open("/proc/self/exe")
                    .map_err(|e| Failure::io("open /proc/self/exe", e))?
                    .into(),
            ),
            (
                "memfd",
                rustix::fs::memfd_create("robustness", rustix::fs::MemfdFlags::CLOEXEC)
                    .map_err(os("memfd_create"))?,
            ),
            (
                "eventfd",
                rustix::event::eventfd(0, EventfdFlags::CLOEXEC).map_err(os("eventfd"))?,
            ),
            (
                "the device",
                dev.as_fd()
                    .try_clone_to_owned()
                    .map_err(|e| Failure::io("dup", e))?,
            ),
            ("a socket", dmapingpong::Channel::pair()?.0.into()),
        ];
        let other = ctx.open()?;
        fds.push((
            "a sync_file of another file",
            other.create_fence(None)?.into_sync_file().into(),
        ));
        // Dropping `other` cancels that fence: nothing waits for it.
        Ok(WrongFds { fds })
    }
}

/// A closed fd number: opened, its number remembered, closed.
fn closed_fd() -> Result<i32> {
    let fd =
        rustix::event::eventfd(0, EventfdFlags::CLOEXEC).map_err(|e| Failure::os("eventfd", e))?;
    let raw = fd.as_raw_fd();
    drop(fd);
    Ok(raw)
}

/// Wrong sizes, directions and numbers: all `ENOTTY`.
fn opcodes(fd: BorrowedFd<'_>, what: &str) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 14];
    let mut n = 0;
    let mut expect_nottty = |opcode: u32, buf: &mut [u8]| -> Result<()> {
        n += 1;
        buf.fill(0);
        expect_raw(
            sys::ioctl_bytes(fd, opcode, buf),
            Errno::NOTTY,
            &format!("ioctl {opcode:#010x} on {what}"),
        )
    };
    for &(nr, dir, size) in &VALID {
        for dir2 in [IOC_NONE, IOC_READ, IOC_WRITE, IOC_READ | IOC_WRITE] {
            for size2 in [
                0,
                1,
                4,
                size - 8,
                size - 1,
                size + 1,
                size + 8,
                2 * size,
                0x3fff,
            ] {
                if (dir2, size2) != (dir, size) {
                    expect_nottty(ioc(dir2, u::DPP_IOC_MAGIC, nr, size2 as u32), &mut buf)?;
                }
            }
            if dir2 != dir {
                expect_nottty(ioc(dir2, u::DPP_IOC_MAGIC, nr, size as u32), &mut buf)?;
            }
        }
    }
    for nr in 5..=255u8 {
        for &(_, dir, size) in &VALID {
            expect_nottty(ioc(dir, u::DPP_IOC_MAGIC, nr, size as u32), &mut buf)?;
        }
    }
    // Other subsystems' numbers, and the driver's numbers with other magics.
    for magic in [0u8, b'b', b'>', b'H', b'T', 0xD6, 0xD8, 0xff] {
        for &(nr, dir, size) in &VALID {
            expect_nottty(ioc(dir, magic, nr, size as u32), &mut buf)?;
        }
    }
    for op in [
        sys::DMA_BUF_IOCTL_SYNC,
        sys::DMA_BUF_SET_NAME,
        sys::DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
        sys::SYNC_IOC_FILE_INFO,
        0x5401, /* TCGETS */
    ] {
        expect_nottty(op, &mut buf)?;
    }
    Ok(n)
}

fn alloc_cases(dev: &Device, info: &u::DppInfo, diags: &mut Diags) -> Result<()> {
    let page = u64::from(info.page_size);
    let pool = info.pool_size;
    for (size, want) in [
        (1, page),
        (page - 1, page),
        (page, page),
        (page + 1, 2 * page),
        (3 * page + 17, 4 * page),
    ] {
        let buf = dev.alloc(size)?;
        check!(
            buf.size() == want,
            "ALLOC of {size} bytes returned {} bytes, expected {want}",
            buf.size()
        );
        let seek = dmapingpong::DmaBuf::from_fd(
            buf.as_fd()
                .try_clone_to_owned()
                .map_err(|e| Failure::io("dup", e))?,
        )?;
        check!(
            seek.size() == want,
            "lseek(SEEK_END) of the dma-buf: {}, expected {want}",
            seek.size()
        );
    }
    for size in [
        0,
        pool + 1,
        pool + page,
        u64::MAX,
        u64::MAX - page + 2,
        1 << 63,
    ] {
        expect_errno(
            dev.alloc(size),
            Errno::INVAL,
            &format!("ALLOC of {size} bytes"),
        )?;
    }
    for flags in [1 << 1, 1 << 31, u32::MAX, DPP_FD_NO_CLOEXEC | 4] {
        expect_errno(
            dev.alloc_raw(DppAlloc {
                size: page,
                flags,
                ..Default::default()
            }),
            Errno::INVAL,
            &format!("ALLOC with flags {flags:#x}"),
        )?;
    }
    for reserved in [[1, 0], [0, 1], [u64::MAX, u64::MAX]] {
        expect_errno(
            dev.alloc_raw(DppAlloc {
                size: page,
                reserved,
                ..Default::default()
            }),
            Errno::INVAL,
            &format!("ALLOC with reserved {reserved:?}"),
        )?;
    }
    // The fd field is output only: garbage in it is ignored.
    let b = dev.alloc_raw(DppAlloc {
        size: page,
        fd: 12345,
        ..Default::default()
    })?;
    check!(
        b.as_fd().as_raw_fd() != 12345,
        "ALLOC used the input fd field"
    );
    // The whole pool: fits exactly, or the CMA area is fragmented (ENOMEM).
    match dev.alloc(pool) {
        Ok(b) => check!(
            b.size() == pool,
            "ALLOC of the whole pool: {} bytes",
            b.size()
        ),
        Err(e) if e.errno() == Some(Errno::NOMEM) => {
            diags.push("ALLOC of the whole pool: ENOMEM (fragmented CMA area)".into())
        }
        Err(e) => return Err(e.into()),
    }
    // Exhaustion: quarter-pool buffers until ENOMEM, never more than the pool.
    let chunk = (pool / 4).next_multiple_of(page).max(page);
    let held = crate::ctx::fill_pool(dev, chunk, pool)?;
    let used = dev.info()?.pool_used;
    check!(
        used <= pool && used >= held.len() as u64 * chunk,
        "pool_used {used} with {} buffers of {chunk} (pool {pool})",
        held.len()
    );
    diags.push(format!(
        "pool of {pool} bytes exhausted after {} buffers of {chunk}",
        held.len()
    ));
    drop(held);
    dev.alloc(chunk)?;
    Ok(())
}

fn create_fence_cases(dev: &Device, wrong: &WrongFds) -> Result<()> {
    let buf = dev.alloc(1)?;
    let bfd = buf.as_fd().as_raw_fd();
    let cases: Vec<(String, DppFenceCreate, Errno)> = vec![
        (
            "unknown flags 2".into(),
            DppFenceCreate {
                dmabuf_fd: -1,
                flags: 2,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "reserved set".into(),
            DppFenceCreate {
                dmabuf_fd: -1,
                reserved: [1],
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "pad set".into(),
            DppFenceCreate {
                dmabuf_fd: -1,
                pad: 1,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "a deadline above the maximum".into(),
            DppFenceCreate {
                dmabuf_fd: -1,
                deadline_ms: 60_001,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "usage 3".into(),
            DppFenceCreate {
                dmabuf_fd: bfd,
                usage: 3,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "usage u32::MAX".into(),
            DppFenceCreate {
                dmabuf_fd: bfd,
                usage: u32::MAX,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "usage WRITE without buffer".into(),
            DppFenceCreate {
                dmabuf_fd: -1,
                usage: DPP_USAGE_WRITE,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "usage NONE with a buffer".into(),
            DppFenceCreate {
                dmabuf_fd: bfd,
                usage: DPP_USAGE_NONE,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "fd -2".into(),
            DppFenceCreate {
                dmabuf_fd: -2,
                usage: DPP_USAGE_READ,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "fd 0 with usage NONE".into(),
            DppFenceCreate {
                dmabuf_fd: 0,
                usage: DPP_USAGE_NONE,
                ..Default::default()
            },
            Errno::INVAL,
        ),
        (
            "a closed fd".into(),
            DppFenceCreate {
                dmabuf_fd: closed_fd()?,
                usage: DPP_USAGE_WRITE,
                ..Default::default()
            },
            Errno::BADF,
        ),
        (
            "fd 1000000".into(),
            DppFenceCreate {
                dmabuf_fd: 1_000_000,
                usage: DPP_USAGE_READ,
                ..Default::default()
            },
            Errno::BADF,
        ),
        (
            "fd i32::MAX".into(),
            DppFenceCreate {
                dmabuf_fd: i32::MAX,
                usage: DPP_USAGE_WRITE,
                ..Default::default()
            },
            Errno::BADF,
        ),
    ];
    let mut cases = cases;
    for (name, fd) in &wrong.fds {
        cases.push((
            format!("a dma-buf fd that is {name}"),
            DppFenceCreate {
                dmabuf_fd: fd.as_raw_fd(),
                usage: DPP_USAGE_WRITE,
                ..Default::default()
            },
            Errno::INVAL,
        ));
    }
    for (what, arg, errno) in cases {
        expect_errno(
            dev.create_fence_raw(arg),
            errno,
            &format!("CREATE_FENCE with {what}"),
        )?;
    }
    // Output fields given as input are ignored.
    let f = dev.create_fence_raw(DppFenceCreate {
        dmabuf_fd: -1,
        fence_fd: 77,
        context: u64::MAX,
        seqno: 5,
        ..Default::default()
    })?;
    dev.signal(&f, None)?;
    // Another exporter's dma-buf: refused (class user_fence_foreign_refused).
    Ok(())
}

fn signal_cases(ctx: &Ctx, dev: &Device, wrong: &WrongFds) -> Result<()> {
    let a = dev.create_fence(None)?;
    let b = dev.create_fence(None)?;
    let afd = a.as_fd().as_raw_fd();
    let bad_errors = [1, 4096, -4096, -10_000, i32::MIN, i32::MAX];
    for error in bad_errors {
        expect_errno(
            dev.signal_raw(DppFenceSignal {
                fence_fd: afd,
                error,
                ..Default::default()
            }),
            Errno::INVAL,
            &format!("SIGNAL_FENCE with error {error}"),
        )?;
    }
    expect_errno(
        dev.signal_raw(DppFenceSignal {
            fence_fd: afd,
            reserved: [1, 0],
            ..Default::default()
        }),
        Errno::INVAL,
        "SIGNAL_FENCE with reserved set",
    )?;
    let buf = dev.alloc(1)?;
    let mut fds: Vec<(String, i32)> = vec![
        ("fd -1".into(), -1),
        ("a closed fd".into(), closed_fd()?),
        ("fd 1000000".into(), 1_000_000),
        ("a dma-buf".into(), buf.as_fd().as_raw_fd()),
    ];
    for (name, fd) in &wrong.fds {
        fds.push((name.to_string(), fd.as_raw_fd()));
    }
    for (name, fd) in fds {
        expect_errno(
            dev.signal_raw(DppFenceSignal {
                fence_fd: fd,
                ..Default::default()
            }),
            Errno::INVAL,
            &format!("SIGNAL_FENCE of {name}"),
        )?;
    }
    expect_errno(
        dev.signal(&b, None),
        Errno::INVAL,
        "SIGNAL_FENCE out of order",
    )?;
    let other = ctx.open()?;
    expect_errno(
        other.signal(&a, None),
        Errno::INVAL,
        "SIGNAL_FENCE of another file's fence",
    )?;
    // The largest errno is fine and reaches the waiters.
    dev.signal(&a, Some(Errno::from_raw_os_error(u::DPP_MAX_ERRNO)))?;
    let st = dev.wait_fence(&a, Duration::ZERO)?;
    check!(
        st == FenceStatus::Error(Errno::from_raw_os_error(u::DPP_MAX_ERRNO)),
        "status {st:?} after signalling -4095"
    );
    expect_errno(dev.signal(&a, None), Errno::INVAL, "SIGNAL_FENCE twice")?;
    dev.signal(&b, None)?;
    Ok(())
}

fn wait_cases(ctx: &Ctx, dev: &Device, wrong: &WrongFds) -> Result<()> {
    let f = dev.create_fence(None)?;
    let ffd = f.as_fd().as_raw_fd();
    let base = DppFenceWait {
        fence_fd: ffd,
        ..Default::default()
    };
    for (what, arg) in [
        ("flags 1", DppFenceWait { flags: 1, ..base }),
        ("pad 1", DppFenceWait { pad: 1, ..base }),
        (
            "reserved set",
            DppFenceWait {
                reserved: [0, u64::MAX],
                ..base
            },
        ),
    ] {
        expect_errno(
            dev.wait_fence_raw(arg),
            Errno::INVAL,
            &format!("WAIT_FENCE with {what}"),
        )?;
    }
    let buf = dev.alloc(1)?;
    let mut fds: Vec<(String, i32)> = vec![
        ("fd -1".into(), -1),
        ("a closed fd".into(), closed_fd()?),
        ("a dma-buf".into(), buf.as_fd().as_raw_fd()),
    ];
    for (name, fd) in &wrong.fds {
        if !name.starts_with("a sync_file") {
            fds.push((name.to_string(), fd.as_raw_fd()));
        }
    }
    for (name, fd) in fds {
        expect_errno(
            dev.wait_fence_raw(DppFenceWait {
                fence_fd: fd,
                ..base
            }),
            Errno::INVAL,
            &format!("WAIT_FENCE of {name}"),
        )?;
    }
    // Timeouts: 0 samples (ETIME while pending), 1 ns, a huge one after signal.
    for timeout_ns in [0, 1, 1000] {
        expect_errno(
            dev.wait_fence_raw(DppFenceWait { timeout_ns, ..base }),
            Errno::TIME,
            &format!("WAIT_FENCE of a pending fence for {timeout_ns} ns"),
        )?;
    }
    dev.signal(&f, None)?;
    let out = dev.wait_fence_raw(DppFenceWait {
        timeout_ns: u64::MAX,
        status: 99,
        ..base
    })?;
    check!(
        out.status == 0,
        "WAIT_FENCE of a signalled fence: status {}",
        out.status
    );
    // Any file can wait for any sync_file.
    let other = ctx.open()?;
    let st = other.wait_fence(&f, Duration::ZERO)?;
    check!(
        st == FenceStatus::Signalled,
        "WAIT_FENCE from another file: {st:?}"
    );
    Ok(())
}

/// Ioctls on other fds of the driver, bad pointers, and dma-buf sync flags.
fn other_fds(dev: &Device, diags: &mut Diags) -> Result<u64> {
    let buf = dev.alloc(1)?;
    let fence = dev.create_fence(None)?;
    let mut n = 0;
    let mut scratch = vec![0u8; 256];
    for (what, fd) in [("a dma-buf", buf.as_fd()), ("a sync_file", fence.as_fd())] {
        for &(nr, dir, size) in &VALID {
            n += 1;
            expect_raw(
                sys::ioctl_bytes(
                    fd,
                    ioc(dir, u::DPP_IOC_MAGIC, nr, size as u32),
                    &mut scratch,
                ),
                Errno::NOTTY,
                &format!("driver ioctl {nr} on {what}"),
            )?;
        }
    }
    for addr in [0, 0xffff_8000_0000_0000] {
        for &(nr, dir, size) in &VALID {
            n += 1;
            let op = ioc(dir, u::DPP_IOC_MAGIC, nr, size as u32);
            expect_raw(
                sys::ioctl_addr(dev.as_fd(), op, addr),
                Errno::FAULT,
                &format!("ioctl nr {nr} with argument address {addr:#x}"),
            )?;
        }
    }
    for flags in [
        0,
        sys::SYNC_END,
        8,
        sys::SYNC_READ | 0x100,
        u64::MAX,
        1 << 63,
    ] {
        n += 1;
        expect_raw(
            sys::dma_buf_sync(buf.as_fd(), flags),
            Errno::INVAL,
            &format!("DMA_BUF_IOCTL_SYNC with flags {flags:#x}"),
        )?;
    }
    for flags in [
        sys::SYNC_READ,
        sys::SYNC_WRITE,
        sys::SYNC_READ | sys::SYNC_WRITE,
    ] {
        n += 2;
        sys::dma_buf_sync(buf.as_fd(), flags)
            .map_err(|e| Failure::os("DMA_BUF_IOCTL_SYNC start", e))?;
        sys::dma_buf_sync(buf.as_fd(), flags | sys::SYNC_END)
            .map_err(|e| Failure::os("DMA_BUF_IOCTL_SYNC end", e))?;
    }
    dev.signal(&fence, None)?;
    diags.push(format!(
        "{n} ioctls on dma-bufs, sync_files and with bad pointers"
    ));
    Ok(n)
}

/// Runs the class.
pub fn run(ctx: &Ctx, diags: &mut Diags) -> Result<Outcome> {
    let baseline = ctx.usage()?;
    {
        let dev = ctx.open()?;
        let info = dev.info()?;
        check!(
            info.version == u::DPP_UAPI_VERSION
                && info.reserved == [0; 3]
                && info.page_size.is_power_of_two()
                && info.pool_used <= info.pool_size,
            "GET_INFO: {info:?}"
        );
        let n = opcodes(dev.as_fd(), "the device")?;
        diags.push(format!(
            "{n} ioctl numbers with wrong sizes, directions, numbers or magics: all ENOTTY"
        ));
        let wrong = WrongFds::new(&dev, ctx)?;
        alloc_cases(&dev, &info, diags)?;
        create_fence_cases(&dev, &wrong)?;
        signal_cases(ctx, &dev, &wrong)?;
        wait_cases(ctx, &dev, &wrong)?;
        other_fds(&dev, diags)?;
        // Every fence made above was signalled: the rejected calls left none.
        let pending = dev.info()?.fences_pending;
        check!(
            pending == baseline.fences_pending,
            "fences_pending {pending} after the bad calls, expected {}",
            baseline.fences_pending
        );
        let r = dev.info();
        check!(
            r.is_ok(),
            "GET_INFO after the bad calls: {}",
            outcome(errno_of(&r))
        );
    }
    sanity_cycle(ctx)?;
    ctx.expect_baseline(baseline, "after bad_ioctl_input")?;
    Ok(Outcome::Pass)
}
