"""The dmapingpong tests of one target (a QEMU machine or a board of a lab),
in the order they run: boot to a shell, the driver, the KUnit suites (debug
kernels), the self-test, the interop suite (targets with vgem and vivid),
ping-pong by hand, the robustness suite (when asked for), the kernel log,
and a clean power-off.

Every KTAP test point (self-test, interop and robustness suites, KUnit) is
reported as a test of its own (conftest.ktap_items). What a target must do comes from its
environment's options (configs/labgrid/*.yaml):

- dpp_engine: "dma" or "cpu", the engine of the driver's copies;
- dpp_kunit_suites: the KUnit suites the kernel must have run, separated by
  spaces (debug kernels);
- dpp_interop: "yes" if the kernel has the interop suite's drivers (vgem,
  vivid: configs/kernel/interop.cfg), which must then pass it.
"""

import re

import pytest

import dpplab

SELFTEST_TIMEOUT = 900
INTEROP_TIMEOUT = 600
INTEROP_ENGINE = re.compile(r"^[a-z0-9_]+: engine: ([a-z]+) ")
ROBUSTNESS_TIMEOUT = {"ci": 1200, "full": 5400}


def run(shell, cmd, timeout=60):
    """Runs cmd in the target's shell: (output lines, exit status)."""
    out, _, rc = shell.run(cmd, timeout=timeout, decodeerrors="replace")
    return out, rc


def run_ktap_suite(shell, ktap_items, name, cmd, log, timeout, checks):
    """Runs a KTAP suite (stderr to log): each test point becomes a test
    (ktap_items, named name[...]); fails on an incomplete report, on an exit
    status that disagrees with the test points, or on what checks(report)
    returns, with the tail of the suite's stderr."""
    out, rc = run(shell, f"{cmd} 2>{log}", timeout)
    report = dpplab.parse_ktap(out)
    ktap_items(name, report.cases)
    problems = dpplab.check_report(report, f"dmapingpong-{name}") + checks(report)
    failed = [c.name for c in report.cases if not c.ok]
    if (rc == 0) != (not failed):
        problems.append(f"exit status {rc} but failed test points: {failed or 'none'}")
    if problems:
        tail, _ = run(shell, f"tail -n 40 {log}")
        problems += ["stderr:"] + tail
    assert not problems, "\n".join(problems)


def test_driver(shell, request):
    """The exporter is bound and its device node answers GET_INFO (the module
    is loaded here if the image did not load it). Where the image ran its
    boot-time self-test (images of the Yocto layer and Buildroot, unless the
    kernel command line has dmapingpong.selftest=off), it finished and
    passed: the tests do not share the device with it."""
    if "kernel-report" in request.config.getoption("--dpp-plant"):
        # Planted: a kernel log line that test_kernel_log must report.
        run(shell, "echo '<4>WARNING: planted by --dpp-plant kernel-report' >/dev/kmsg")
    out, rc = run(
        shell,
        "grep -qwF dmapingpong.selftest=off /proc/cmdline && echo off && exit 0; "
        f"i=0; while [ ! -s /run/dmapingpong-selftest.result ] && [ $i -lt {SELFTEST_TIMEOUT} ]; do "
        "sleep 1; i=$((i + 1)); done; cat /run/dmapingpong-selftest.result",
        SELFTEST_TIMEOUT + 30,
    )
    assert rc == 0 and out and out[-1] in ("off", "PASS"), f"the boot-time self-test: {out}"
    _, rc = run(shell, "test -c /dev/dmapingpong || modprobe dmapingpong")
    assert rc == 0, "modprobe dmapingpong failed"
    out, rc = run(shell, "dmapingpong info")
    assert rc == 0, "\n".join(out)
    assert any("pool_size" in line for line in out), "\n".join(out)


def test_kunit(shell, option, ktap_items):
    """The KUnit suites the kernel ran at boot (/sys/kernel/debug/kunit/<suite>/results,
    CONFIG_KUNIT_DEBUGFS): each case of each suite is a test; every suite the
    environment names (dpp_kunit_suites) ran to its end."""
    expected = option("dpp_kunit_suites", "").split()
    if not expected:
        pytest.skip("the environment names no KUnit suites (dpp_kunit_suites: debug kernels)")
    listed, rc = run(shell, "ls -1 /sys/kernel/debug/kunit")
    assert rc == 0, "no /sys/kernel/debug/kunit (CONFIG_KUNIT_DEBUGFS)"
    cases = []
    problems = []
    for suite in sorted(set(listed) | set(expected)):
        out, rc = run(shell, f"cat /sys/kernel/debug/kunit/{suite}/results")
        found = dpplab.parse_kunit(out).get(suite)
        if rc != 0 or found is None or not found.cases:
            problems.append(f"{suite}: did not run (no results)")
            continue
        problems += dpplab.check_kunit_suite(suite, found)
        for case in found.cases:
            case.name = f"{suite}.{case.name}"
        cases += found.cases
    ktap_items("kunit", cases)
    assert not problems, "\n".join(problems)


def test_selftest(shell, option, ktap_items, request):
    """dmapingpong-selftest: a complete KTAP report, each test point a test,
    and the engine the environment expects in every engine line."""
    cmd = "RUST_LOG_STYLE=never dmapingpong-selftest"
    if "selftest-case" in request.config.getoption("--dpp-plant"):
        # Planted: the self-test's device is /dev/null, so its test points fail.
        run(shell, "echo 'device = \"/dev/null\"' >/tmp/planted.toml")
        cmd += " --config /tmp/planted.toml"
    run_ktap_suite(
        shell,
        ktap_items,
        "selftest",
        cmd,
        "/tmp/selftest.log",
        SELFTEST_TIMEOUT,
        lambda report: dpplab.check_engine(dpplab.engine_lines(report), option("dpp_engine")),
    )


def test_interop(shell, option, ktap_items, request):
    """dmapingpong-interop (targets with dpp_interop: yes): vgem and vivid
    import our buffers, fences cross drivers both ways, our jobs import
    other exporters' buffers; each test point a test, and those jobs ran on
    the environment's engine."""
    if option("dpp_interop") != "yes":
        pytest.skip("the target's kernel has no vgem and vivid (dpp_interop)")

    def engines(report):
        found = [m.group(1) for c in report.cases for d in c.diagnostics for m in [INTEROP_ENGINE.match(d)] if m]
        if not found:
            return ["no 'engine:' diagnostic of the jobs on other exporters' buffers"]
        if set(found) != {option("dpp_engine")}:
            return [f"jobs on other exporters' buffers ran on {sorted(set(found))}, expected {option('dpp_engine')}"]
        return []

    cmd = "RUST_LOG_STYLE=never dmapingpong-interop"
    only = request.config.getoption("--dpp-interop-only")
    if only:
        cmd += f" --only {only}"
    run_ktap_suite(
        shell,
        ktap_items,
        "interop",
        cmd,
        "/tmp/interop.log",
        INTEROP_TIMEOUT,
        engines,
    )


@pytest.mark.parametrize("mode", ["explicit", "implicit"])
def test_pingpong_by_hand(shell, mode):
    """README "Ping-pong by hand": ping in the background, pong in the
    foreground; both exit 0 and each verified every byte the other wrote."""
    buffers, size, rounds = 4, 1048576, 200
    sock = f"/tmp/dpp-{mode}.sock"
    # pong connects once: it starts when ping's socket is there (10 s at most).
    out, rc = run(
        shell,
        f"rm -f {sock}; "
        f"dmapingpong ping --socket {sock} --mode {mode} --buffers {buffers} --size {size} --rounds {rounds} "
        f">/tmp/ping.out 2>&1 & pid=$!; "
        f"i=0; while [ ! -S {sock} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; "
        f"dmapingpong pong --socket {sock} >/tmp/pong.out 2>&1; pong=$?; wait $pid; ping=$?; "
        f"cat /tmp/ping.out /tmp/pong.out; echo status ping=$ping pong=$pong; [ $ping = 0 ] && [ $pong = 0 ]",
        timeout=300,
    )
    text = "\n".join(out)
    assert rc == 0, text
    want = (rounds, rounds * buffers * size)
    ping = [dpplab.summary_line(line, f"ping {mode}") for line in out]
    pong = [dpplab.summary_line(line, "pong") for line in out]
    assert want in ping, f"no 'ping {mode}: ... rounds {want[0]} verified {want[1]} bytes' line:\n{text}"
    assert want in pong, f"no 'pong: rounds {want[0]} verified {want[1]} bytes' line:\n{text}"


def test_robustness(shell, request, ktap_items):
    """dmapingpong-robustness (--dpp-robustness PROFILE; debug kernels): each
    class a test, and its figures reported."""
    profile = request.config.getoption("--dpp-robustness")
    if not profile:
        pytest.skip("not asked for (--dpp-robustness ci|full)")
    only = request.config.getoption("--dpp-robustness-only")
    cmd = f"RUST_LOG_STYLE=never dmapingpong-robustness --profile {profile}"
    if only:
        cmd += f" --only {only}"
    out, rc = run(shell, f"{cmd} 2>/tmp/robustness.log", ROBUSTNESS_TIMEOUT.get(profile, 5400))
    report = dpplab.parse_ktap(out)
    ktap_items("robustness", report.cases)
    problems = dpplab.check_report(report, "dmapingpong-robustness")
    figures = [d for c in report.cases for d in c.diagnostics if d.startswith("figures: ")]
    figures += [line[2:] for line in out if line.startswith("# figures: ")]
    if not figures:
        problems.append("no '# figures:' line")
    if rc != 0 and all(c.ok for c in report.cases):
        problems.append(f"exit status {rc} with every test point passed")
    if problems:
        log, _ = run(shell, "tail -n 40 /tmp/robustness.log")
        problems += ["stderr:"] + log
    assert not problems, "\n".join(problems)


def test_kernel_log(shell):
    """No oops, BUG, WARNING (the DMA-API debug checks' among them), panic,
    sanitizer, lockdep, kmemleak, RCU-stall or hung-task report in the
    kernel log since boot (dpplab.KERNEL_REPORT)."""
    out, rc = run(shell, "dmesg")
    assert rc == 0
    assert out, "empty kernel log"
    reports = dpplab.kernel_reports(out)
    assert not reports, "the kernel reported problems:\n" + "\n".join(reports)


def test_poweroff(strategy, shell):
    """The module unloads (nothing of it left: no file, buffer or fence of the
    tests outlived them), then a clean power-off: init stops the services,
    the kernel powers down (on QEMU: QEMU exits with status 0 by itself), and
    the console shows no kernel report on the way."""
    out, rc = run(shell, "modprobe -r dmapingpong && ! test -e /sys/module/dmapingpong && ! test -e /dev/dmapingpong")
    assert rc == 0, "the module did not unload:\n" + "\n".join(out)
    clean, console = strategy.poweroff()
    reports = dpplab.kernel_reports(console.splitlines())
    assert not reports, "the kernel reported problems at power-off:\n" + "\n".join(reports)
    assert clean, "no clean power-off ('reboot: Power down', QEMU exit status 0):\n" + console[-2000:]
