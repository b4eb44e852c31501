//! Group 2: CPU fill + verify (the ping-pong's own work: one write and one
//! read of every word) over anonymous memory (floor), our dma-buf, and
//! dma-buf heap buffers, each access of a dma-buf bracketed by
//! `DMA_BUF_IOCTL_SYNC` as the ping-pong does.
//!
//! QEMU does not model caches: the mapping's memory type (cached or
//! write-combined) changes nothing here, and cache maintenance costs
//! nothing. On a board, uncached or write-combined mappings read far slower.

use std::sync::atomic::AtomicU64;

use dmapingpong::{Access, DmaBuf, DmaHeap, pattern};

use super::{Bench, Figure, TIMEOUT, cma_heap, iterations, size_id, size_name, time_each};

pub(super) const SIZES: [u64; 4] = [4 << 10, 64 << 10, 1 << 20, 8 << 20];

fn fill_verify(words: &[AtomicU64], seq: u64) -> anyhow::Result<()> {
    pattern::fill(words, seq, 0);
    pattern::verify(words, seq, 0)?;
    Ok(())
}

/// Fill + verify of a dma-buf, each in its own CPU access bracket.
fn dma_buf_samples(buf: &DmaBuf, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut map = buf.mmap()?;
    let mut seq = 0;
    time_each(n, || {
        seq += 1;
        let cpu = map.begin(Access::Write, TIMEOUT)?;
        pattern::fill(cpu.words(), seq, 0);
        cpu.end()?;
        let cpu = map.begin(Access::Read, TIMEOUT)?;
        let ok = pattern::verify(cpu.words(), seq, 0);
        cpu.end()?;
        Ok(ok?)
    })
}

pub fn run(b: &mut Bench) -> anyhow::Result<()> {
    let budget = b.profile.pick(8u64 << 20, 96 << 20);
    let dev = b.dev()?;
    let heaps = DmaHeap::names();
    let system = heaps.iter().find(|h| *h == "system").cloned();
    let cma = cma_heap();
    if cma.is_none() {
        println!("# bench: no CMA heap in {} ({heaps:?})", DmaHeap::DIR);
    }
    for size in SIZES {
        let n = iterations(budget, size, 20, 2000);
        let (sid, sname) = (size_id(size), size_name(size));
        let anon: Vec<AtomicU64> = (0..size / 8).map(|_| AtomicU64::new(0)).collect();
        let mut seq = 0;
        let samples = time_each(n, || {
            seq += 1;
            fill_verify(&anon, seq)
        })?;
        drop(anon);
        let base = format!("cpu/anon/{sid}");
        let label = format!("fill + verify {sname}: anonymous memory (floor)");
        b.add(Figure::rate(&base, &label, "MB/s", size as f64, &samples).param("size", size));

        // A dma-buf against the floor, each access in its SYNC bracket.
        let mut measure = |kind: &str, what: &str, buf: DmaBuf| -> anyhow::Result<()> {
            let samples = dma_buf_samples(&buf, n)?;
            let label = format!("fill + verify {sname}: {what}, SYNC brackets");
            let id = format!("cpu/{kind}/{sid}");
            b.add(
                Figure::rate(&id, &label, "MB/s", size as f64, &samples)
                    .param("size", size)
                    .against(&base),
            );
            Ok(())
        };
        measure("dmapingpong", "our dma-buf", dev.alloc(size)?)?;
        for (kind, heap) in [("heap-system", &system), ("heap-cma", &cma)] {
            let Some(heap) = heap else { continue };
            match DmaHeap::open(heap).and_then(|h| h.alloc(size)) {
                Ok(buf) => measure(kind, &format!("/dev/dma_heap/{heap}"), buf)?,
                Err(e) => println!("# bench: cpu/{kind}/{sid}: not measured: {e}"),
            }
        }
    }
    Ok(())
}
