//! The test classes, one KTAP test point each.

pub mod bad_ioctl;
pub mod dead_peers;
pub mod fault;
pub mod fence_rules;
pub mod fuzz;
pub mod lifetimes;
pub mod mmap_edges;
pub mod security;
pub mod soak;

use std::os::fd::AsFd;
use std::time::Duration;

use dmapingpong::{Device, FenceStatus, PollFlags, Usage};

use crate::ctx::Ctx;
use crate::error::Result;
use crate::ktap::Outcome;

/// Diagnostic lines of a class, printed before its result.
pub type Diags = Vec<String>;

/// A class: its KTAP name and body.
pub struct Class {
    /// KTAP test name, also the `--only` value.
    pub name: &'static str,
    /// The body: `Ok(Pass)`, `Ok(Skip(why))` or the failure.
    pub run: fn(&Ctx, &mut Diags) -> Result<Outcome>,
}

/// The classes in the order of the issue.
pub const CLASSES: &[Class] = &[
    Class {
        name: "bad_ioctl_input",
        run: bad_ioctl::run,
    },
    Class {
        name: "fuzz",
        run: fuzz::run,
    },
    Class {
        name: "mmap_edges",
        run: mmap_edges::run,
    },
    Class {
        name: "lifetimes_unload",
        run: lifetimes::run,
    },
    Class {
        name: "dead_peers",
        run: dead_peers::run,
    },
    Class {
        name: "fault_injection",
        run: fault::run,
    },
    Class {
        name: "soak",
        run: soak::run,
    },
    Class {
        name: "security",
        run: security::run,
    },
    Class {
        name: "user_fence_deadline",
        run: fence_rules::deadline,
    },
    Class {
        name: "user_fence_foreign_refused",
        run: fence_rules::foreign_refused,
    },
    Class {
        name: "fd_result_efault",
        run: fence_rules::fd_result_efault,
    },
    Class {
        name: "create_fence_emfile",
        run: fence_rules::create_fence_emfile,
    },
];

/// A short wait that must expire on a pending fence.
pub const SHORT: Duration = Duration::from_millis(20);

/// The normal cycle that must work after any abuse: allocate, map, write and
/// read back, add a write fence, see it block `poll()`, signal it, see it
/// signalled.
pub fn sanity_cycle(ctx: &Ctx) -> Result<()> {
    let dev: Device = ctx.open()?;
    let buf = dev.alloc(1)?;
    let mut map = buf.mmap()?;
    {
        let cpu = map.begin(dmapingpong::Access::Write, ctx.timeout)?;
        dmapingpong::pattern::fill(cpu.words(), 42, 0);
        cpu.end()?;
    }
    {
        let cpu = map.begin(dmapingpong::Access::Read, ctx.timeout)?;
        dmapingpong::pattern::verify(cpu.words(), 42, 0)?;
        cpu.end()?;
    }
    let fence = dev.create_fence(Some((buf.as_fd(), Usage::Write)))?;
    check!(
        !buf.poll(PollFlags::IN, SHORT)?,
        "sanity: dma-buf ready with a pending write fence"
    );
    dev.signal(&fence, None)?;
    let status = dev.wait_fence(&fence, ctx.timeout)?;
    check!(
        status == FenceStatus::Signalled,
        "sanity: fence status {status:?} after signal"
    );
    check!(
        buf.poll(PollFlags::IN, ctx.timeout)?,
        "sanity: dma-buf not ready after signal"
    );
    Ok(())
}

/// Pages of the pool's CMA area in use (debugfs `cma/<area>/used`; the area is named after its
/// reserved-memory node, `dmapingpong-pool` in our overlays), or `None` without
/// `CONFIG_CMA_DEBUGFS`.
pub fn cma_used() -> crate::error::Result<Option<u64>> {
    const CMA_DEBUGFS: &str = "/sys/kernel/debug/cma";
    let Ok(entries) = std::fs::read_dir(CMA_DEBUGFS) else {
        return Ok(None);
    };
    for entry in entries {
        let entry =
            entry.map_err(|e| crate::error::Failure::io(format!("read {CMA_DEBUGFS}"), e))?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("dmapingpong")
        {
            let path = entry.path().join("used");
            let s = std::fs::read_to_string(&path)
                .map_err(|e| crate::error::Failure::io(format!("read {}", path.display()), e))?;
            return s.trim().parse().map(Some).map_err(|_| {
                crate::error::Failure::Check(format!("{}: not a number: {s:?}", path.display()))
            });
        }
    }
    Ok(None)
}
