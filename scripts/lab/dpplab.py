"""What the lab tests read from a dmapingpong target: KTAP reports, the
engine lines of the self-test, KUnit results and kernel reports.

Plain functions over text, with no labgrid in them, so that they can be
checked on their own (scripts/lab/test_dpplab.py runs on the host).

Sources: KTAP is Documentation/dev-tools/ktap.rst (version 1: "ok N name",
"not ok N name # reason", "ok N name # SKIP reason", "# diagnostic");
the KUnit debugfs results are Documentation/dev-tools/kunit/running_tips.rst
(/sys/kernel/debug/kunit/<suite>/results, CONFIG_KUNIT_DEBUGFS).
"""

import re
from dataclasses import dataclass, field

RESULT = re.compile(r"^(?P<indent>\s*)(?P<not>not )?ok (?P<num>\d+) (?P<name>[^#]*?)\s*(?:#\s*(?P<directive>.*))?$")
PLAN = re.compile(r"^\s*1\.\.(?P<n>\d+)\s*$")

# What a kernel prints when something went wrong: oopses, BUG/WARN splats
# (the DMA-API debug checks of Documentation/core-api/dma-api.rst report
# with WARN: "WARNING: ... kernel/dma/debug.c"; their plain "DMA-API: "
# lines are not reports), panics, sanitizer (KASAN, UBSAN, KFENCE), lockdep
# and kmemleak reports, RCU stalls and hung tasks.
KERNEL_REPORT = re.compile(
    r"Oops|\bBUG[: ]|WARNING:|Kernel panic|Call trace:|Unable to handle kernel|"
    r"KASAN|UBSAN|KFENCE|suspected memory leak|possible circular locking|"
    r"inconsistent lock state|possible recursive locking|"
    r"rcu: INFO: rcu_.* detected stalls|blocked for more than \d+ seconds"
)


@dataclass
class Case:
    """One test point of a KTAP report."""

    name: str
    ok: bool
    skip: bool = False
    reason: str = ""
    diagnostics: list = field(default_factory=list)


@dataclass
class Report:
    """A KTAP report: its plan, its test points, in order."""

    planned: int | None
    cases: list


def parse_ktap(lines):
    """Parses the top level of a KTAP version 1 report.

    Diagnostic lines ("# ...") are given to the test point that follows
    them, as the self-test prints them ("# name: text" before "ok N name").
    Lines before "KTAP version 1" (logs) are ignored.
    """
    planned = None
    cases = []
    pending = []
    started = False
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith("KTAP version"):
            started = True
            continue
        if not started:
            continue
        m = PLAN.match(line)
        if m and not line.startswith((" ", "\t")) and planned is None:
            planned = int(m["n"])
            continue
        m = RESULT.match(line)
        if m and not m["indent"]:
            directive = (m["directive"] or "").strip()
            skip = directive.upper().startswith("SKIP")
            reason = directive[4:].strip() if skip else directive
            cases.append(Case(m["name"].strip(), ok=not m["not"], skip=skip, reason=reason, diagnostics=pending))
            pending = []
            continue
        if line.startswith("# "):
            pending.append(line[2:])
    return Report(planned, cases)


def check_report(report, what):
    """The problems of a report as a whole: no plan, or a plan that does not
    match the test points (a crashed suite stops early), duplicate names."""
    problems = []
    if report.planned is None:
        problems.append(f"{what}: no KTAP plan")
    elif report.planned != len(report.cases):
        problems.append(f"{what}: planned {report.planned} tests, reported {len(report.cases)}")
    if not report.cases:
        problems.append(f"{what}: no test point")
    names = [c.name for c in report.cases]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        problems.append(f"{what}: test points reported twice: {', '.join(dups)}")
    return problems


ENGINE = re.compile(r"^(?:[A-Za-z0-9_]+: )?engine: (?P<engine>[a-z]+)\b.*?\bdma_jobs=(?P<jobs>\d+)\b")


def engine_lines(report):
    """The self-test's "engine: <dma|cpu> ... dma_jobs=N" diagnostics."""
    return [d for c in report.cases for d in c.diagnostics if re.match(r"^(?:[A-Za-z0-9_]+: )?engine: ", d)]


def check_engine(lines, expected):
    """Every engine line names the expected engine: dma with N > 0 DMA jobs,
    cpu with none. No line at all is a problem too."""
    if not lines:
        return [f"no 'engine:' line in the self-test's report (expected engine {expected})"]
    problems = []
    for line in lines:
        m = ENGINE.match(line)
        if not m:
            problems.append(f"no engine and dma_jobs=<N> in: {line}")
        elif m["engine"] != expected:
            problems.append(f"engine '{m['engine']}', expected '{expected}': {line}")
        elif expected == "dma" and int(m["jobs"]) == 0:
            problems.append(f"engine dma but no DMA job done: {line}")
        elif expected == "cpu" and int(m["jobs"]) != 0:
            problems.append(f"engine cpu but {m['jobs']} DMA jobs: {line}")
    return problems


SUBTEST = re.compile(r"^(?P<indent>\s+)# Subtest: (?P<suite>\S+)")


@dataclass
class Suite:
    """A KUnit suite of a KTAP report: its plan, its cases, its own result
    (None: no result line, the suite did not finish)."""

    planned: int | None = None
    cases: list = field(default_factory=list)
    ok: bool | None = None


def parse_kunit(lines):
    """The KUnit suites of a KTAP report: {name: Suite}.

    Each suite opens with "# Subtest: <suite>", indented; its plan and its
    cases are the lines at that indentation, its own result the line at a
    smaller one with its name. Deeper lines (parameterised cases) belong to
    their case. Works on the console (printk time stamps stripped) and on
    the debugfs results file of one suite.
    """
    suites = {}
    suite = None
    level = None
    pending = []
    for raw in lines:
        line = raw.rstrip()
        m = SUBTEST.match(line)
        if m:
            suite, level, pending = m["suite"], len(m["indent"]), []
            suites.setdefault(suite, Suite())
            continue
        if suite is None:
            continue
        m = RESULT.match(line)
        p = PLAN.match(line)
        if p and len(line) - len(line.lstrip()) == level and suites[suite].planned is None:
            suites[suite].planned = int(p["n"])
        elif m and len(m["indent"]) == level:
            directive = (m["directive"] or "").strip()
            skip = directive.upper().startswith("SKIP")
            reason = directive[4:].strip() if skip else directive
            suites[suite].cases.append(
                Case(m["name"].strip(), ok=not m["not"], skip=skip, reason=reason, diagnostics=pending)
            )
            pending = []
        elif m and len(m["indent"]) < level and m["name"].strip() == suite:
            suites[suite].ok = not m["not"]
            suite = None
        elif line[:level].strip() == "" and line[level:].startswith("# "):
            pending.append(line[level + 2 :])
    return suites


def check_kunit_suite(name, suite):
    """The problems of one KUnit suite: no result line (it did not finish),
    a plan its cases do not match, "not ok" with every case passed (a
    failure outside the cases: init, exit)."""
    if suite.ok is None:
        return [f"KUnit: suite {name} did not finish"]
    problems = []
    if suite.planned is not None and suite.planned != len(suite.cases):
        problems.append(f"KUnit: suite {name} planned {suite.planned} cases, reported {len(suite.cases)}")
    if not suite.ok and all(c.ok for c in suite.cases):
        problems.append(f"KUnit: suite {name} not ok, with no failed case")
    return problems


TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\] ")


def check_console(lines, engine, kunit_suites):
    """What scripts/run-qemu checks on a console log: kernel reports, the
    engine lines, and (debug kernels) the KUnit suites. Returns (passed,
    failed, problems, notes): the KTAP results of user space (top-level "ok"
    and "not ok" lines without a time stamp) plus the KUnit cases."""
    lines = [line.rstrip("\r\n") for line in lines]
    user = [line for line in lines if not TIMESTAMP.match(line)]
    passed = sum(1 for line in user if re.match(r"^ok \d+ ", line))
    failed = sum(1 for line in user if re.match(r"^not ok \d+ ", line))
    problems = [f"the kernel reported: {r}" for r in kernel_reports(lines)]
    engine_found = [line[2:] for line in user if re.match(r"^# (?:[A-Za-z0-9_]+: )?engine: ", line)]
    problems += check_engine(engine_found, engine)
    notes = []
    if kunit_suites:
        suites = parse_kunit(TIMESTAMP.sub("", line) for line in lines)
        problems += [f"KUnit: suite {name} did not run" for name in kunit_suites if name not in suites]
        for name, suite in suites.items():
            problems += check_kunit_suite(name, suite)
        cases = [(name, c) for name, suite in suites.items() for c in suite.cases]
        kskipped = sum(1 for _, c in cases if c.skip)
        kfailed = [f"{name}.{c.name}" for name, c in cases if not c.ok]
        problems += [f"KUnit: not ok {c}" for c in kfailed]
        notes.append(
            f"kunit: {len(suites)} suites, {len(cases) - kskipped - len(kfailed)} passed, "
            f"{len(kfailed)} failed, {kskipped} skipped"
        )
        notes += [f"  {name}: {len(suite.cases)} cases" for name, suite in sorted(suites.items())]
        passed += len(cases) - kskipped - len(kfailed)
        failed += len(kfailed)
    return passed, failed, problems, notes


def kernel_reports(lines):
    """The lines of a kernel log that report a problem (KERNEL_REPORT)."""
    return [line.rstrip() for line in lines if KERNEL_REPORT.search(line)]


def summary_line(line, prefix):
    """Parses a ping or pong summary line: "<prefix>: ... rounds R verified
    B bytes ..." -> (rounds, bytes), or None."""
    m = re.search(rf"{re.escape(prefix)}\b.*\brounds (\d+) verified (\d+) bytes", line)
    return (int(m[1]), int(m[2])) if m else None


def main(argv):
    """dpplab.py console LOG --engine dma|cpu [--kunit "SUITE ..."]: the
    checks of check_console on a console log (scripts/run-qemu); problems
    and notes on stderr, then "N passed, N failed"; exit status 1 if
    anything is wrong."""
    import argparse  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel

    ap = argparse.ArgumentParser(prog="dpplab.py")
    sub = ap.add_subparsers(dest="command", required=True)
    console = sub.add_parser("console", help="check a console log of scripts/run-qemu")
    console.add_argument("log")
    console.add_argument("--engine", required=True, choices=["dma", "cpu"])
    console.add_argument("--kunit", default="", help="the KUnit suites that must have run, separated by spaces")
    args = ap.parse_args(argv)
    with open(args.log, encoding="utf-8", errors="replace") as f:
        passed, failed, problems, notes = check_console(f, args.engine, args.kunit.split())
    for note in notes:
        print(f"# {note}", file=sys.stderr)
    for problem in problems:
        print(f"[dmapingpong] {problem}", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if problems or failed else 0


if __name__ == "__main__":
    raise SystemExit(main(__import__("sys").argv[1:]))
