"""Host tests of dpplab (what the lab tests read from a target): run by
scripts/test (lab-parsers), not on a target."""

import dpplab

SELFTEST = """\
[2026-12-07T18:00:00Z INFO  dmapingpong_selftest] a log line before the report
KTAP version 1
1..4
# driver_present: version 3 page_size 4096 pool_size 33554432 pool_used 0 buffers 0
ok 1 driver_present
# device_fill_copy: engine: dma dma0chan0 dma_jobs=32 dma_bytes=33554432 cpu_jobs=0 cpu_bytes=0
ok 2 device_fill_copy
not ok 3 job_chain # seqno 3 signalled before 2
ok 4 engine_unbind # SKIP [jobs] unbind_check = false
# totals: pass:2 fail:1 skip:1
""".splitlines()


def test_parse_ktap_cases_and_diagnostics():
    report = dpplab.parse_ktap(SELFTEST)
    assert report.planned == 4
    assert [(c.name, c.ok, c.skip) for c in report.cases] == [
        ("driver_present", True, False),
        ("device_fill_copy", True, False),
        ("job_chain", False, False),
        ("engine_unbind", True, True),
    ]
    assert report.cases[0].diagnostics == ["driver_present: version 3 page_size 4096 pool_size 33554432 pool_used 0 buffers 0"]
    assert report.cases[2].reason == "seqno 3 signalled before 2"
    assert report.cases[3].reason == "[jobs] unbind_check = false"
    assert dpplab.check_report(report, "t") == []


def test_check_report_finds_a_short_report():
    report = dpplab.parse_ktap(SELFTEST[:6])
    assert dpplab.check_report(report, "t") == ["t: planned 4 tests, reported 1"]
    assert "t: no KTAP plan" in dpplab.check_report(dpplab.parse_ktap(["KTAP version 1", "ok 1 a"]), "t")
    assert "t: test points reported twice: a" in dpplab.check_report(
        dpplab.parse_ktap(["KTAP version 1", "1..2", "ok 1 a", "ok 2 a"]), "t"
    )


def test_engine():
    lines = dpplab.engine_lines(dpplab.parse_ktap(SELFTEST))
    assert lines == ["device_fill_copy: engine: dma dma0chan0 dma_jobs=32 dma_bytes=33554432 cpu_jobs=0 cpu_bytes=0"]
    assert dpplab.check_engine(lines, "dma") == []
    assert dpplab.check_engine(lines, "cpu")[0].startswith("engine 'dma', expected 'cpu'")
    assert dpplab.check_engine(["engine: dma dma0chan0 dma_jobs=0"], "dma")[0].startswith("engine dma but no DMA job")
    assert dpplab.check_engine(["engine: cpu dma_jobs=2"], "cpu")[0].startswith("engine cpu but 2 DMA jobs")
    assert dpplab.check_engine(["engine: cpu"], "cpu")[0].startswith("no engine and dma_jobs")
    assert dpplab.check_engine([], "cpu")[0].startswith("no 'engine:' line")


KUNIT = """\
KTAP version 1

    # Subtest: rust_dma_fence
    # speed: normal
    1..3
    ok 1 signal_in_order
    # wait_timeout: EXPECTATION FAILED at rust/kernel/dma_fence.rs:10
    not ok 2 wait_timeout
    ok 3 deadline # SKIP no deadline support
# rust_dma_fence: pass:1 fail:1 skip:1 total:3
# Totals: pass:1 fail:1 skip:1 total:3
not ok 1 rust_dma_fence
"""


def test_kunit_results():
    suite = dpplab.parse_kunit(KUNIT.splitlines())["rust_dma_fence"]
    cases = suite.cases
    assert (suite.ok, suite.planned) == (False, 3)
    assert dpplab.check_kunit_suite("s", suite) == []
    assert [(c.name, c.ok, c.skip) for c in cases] == [
        ("signal_in_order", True, False),
        ("wait_timeout", False, False),
        ("deadline", True, True),
    ]
    assert cases[1].diagnostics == ["wait_timeout: EXPECTATION FAILED at rust/kernel/dma_fence.rs:10"]
    unfinished = dpplab.parse_kunit(KUNIT.splitlines()[:6])["rust_dma_fence"]
    assert unfinished.ok is None and len(unfinished.cases) == 1
    assert dpplab.check_kunit_suite("s", unfinished) == ["KUnit: suite s did not finish"]
    short = dpplab.parse_kunit(KUNIT.splitlines()[:6] + KUNIT.splitlines()[9:])["rust_dma_fence"]
    assert dpplab.check_kunit_suite("s", short) == [
        "KUnit: suite s planned 3 cases, reported 1",
        "KUnit: suite s not ok, with no failed case",
    ]
    init_failed = dpplab.parse_kunit(KUNIT.replace("not ok 2", "ok 2").splitlines())["rust_dma_fence"]
    assert dpplab.check_kunit_suite("s", init_failed) == ["KUnit: suite s not ok, with no failed case"]


def test_kernel_reports():
    log = [
        "[    1.0] dmapingpong dmapingpong: pool 32 MiB",
        "[    2.0] WARNING: CPU: 0 PID: 1 at drivers/dma-buf/dma-fence.c:1 dma_fence_signal",
        "[    3.0] BUG: KASAN: slab-use-after-free in dma_buf_release",
        "[    4.0] WARNING: CPU: 1 PID: 80 at kernel/dma/debug.c:1056 check_unmap+0x5c0/0x8d0",
        "[    5.0] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
        "[    6.0] INFO: task dmapingpong:90 blocked for more than 120 seconds.",
    ]
    quiet = [
        "[    0.1] DMA-API: preallocated 65536 debug entries",
        "[    0.2] DMA-API: debugging enabled by kernel config",
        "[    0.3] kfence: initialized - using 2097152 bytes for 255 objects",
        "[    0.4] dmapingpong: DEBUG: pool ready",
    ]
    assert dpplab.kernel_reports(quiet + log) == log[1:]


def test_summary_line():
    line = "ping explicit: 4 buffers: rounds 200 verified 838860800 bytes in 1.5 s (559.2 MB/s)"
    assert dpplab.summary_line(line, "ping explicit") == (200, 838860800)
    assert dpplab.summary_line("pong: rounds 200 verified 838860800 bytes in 1.5 s", "pong") == (200, 838860800)
    assert dpplab.summary_line(line, "pong") is None


CONSOLE = """\
[    0.500000] KTAP version 1
[    0.500001] 1..2
[    0.500002]     KTAP version 1
[    0.500003]     # Subtest: rust_dma_fence
[    0.500004]     1..2
[    0.500005]     ok 1 signal_in_order
[    0.500006]     ok 2 deadline # SKIP no deadline support
[    0.500007] ok 1 rust_dma_fence
[    0.500008]     KTAP version 1
[    0.500009]     # Subtest: rust_sync_file
[    0.500010]     1..1
[    0.500011]     ok 1 merge
[    0.500012] ok 2 rust_sync_file
dmapingpong-selftest: starting
KTAP version 1
1..2
ok 1 driver_present
# device_fill_copy: engine: cpu dma_jobs=0 dma_bytes=0 cpu_jobs=32
ok 2 device_fill_copy
dmapingpong-selftest: PASS
[   18.202088] reboot: Power down
""".splitlines()


def test_check_console():
    passed, failed, problems, notes = dpplab.check_console(CONSOLE, "cpu", ["rust_dma_fence", "rust_sync_file"])
    assert (passed, failed, problems) == (4, 0, [])
    assert notes[0] == "kunit: 2 suites, 2 passed, 0 failed, 1 skipped"
    _, _, problems, _ = dpplab.check_console(CONSOLE, "dma", ["rust_dma_fence", "rust_dma_buf"])
    assert problems == [
        "engine 'cpu', expected 'dma': device_fill_copy: engine: cpu dma_jobs=0 dma_bytes=0 cpu_jobs=32",
        "KUnit: suite rust_dma_buf did not run",
    ]
    broken = CONSOLE[:5] + ["[    0.6] WARNING: CPU: 0 PID: 1 at x"] + CONSOLE[5:7] + CONSOLE[13:]
    passed, failed, problems, _ = dpplab.check_console(broken, "cpu", ["rust_dma_fence"])
    assert problems == [
        "the kernel reported: [    0.6] WARNING: CPU: 0 PID: 1 at x",
        "KUnit: suite rust_dma_fence did not finish",
    ]
