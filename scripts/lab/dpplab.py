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

# What a kernel prints when something went wrong: oopses, BUG/WARN splats,
# panics, sanitizer (KASAN, UBSAN, KFENCE), lockdep and kmemleak reports, and
# the DMA-API debug checks (Documentation/core-api/dma-api.rst, "DMA-API:").
KERNEL_REPORT = re.compile(
    r"Oops|BUG[: ]|WARNING:|Kernel panic|Call trace:|Unable to handle kernel|"
    r"KASAN|UBSAN|KFENCE|suspected memory leak|possible circular locking|"
    r"inconsistent lock state|possible recursive locking|DMA-API: |"
    r"rcu: INFO: rcu_.* detected stalls|hung_task|soft lockup"
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


def parse_kunit_results(suite, text):
    """The cases of one KUnit suite from its debugfs results file.

    The file holds the suite's KTAP (its own "# Subtest:", plan and cases,
    indented one level) and the suite's own result line at the top level.
    Returns (cases, suite_ok): suite_ok is None if the suite has no result
    line (it did not finish).
    """
    cases = []
    suite_ok = None
    pending = []
    for raw in text.splitlines():
        line = raw.rstrip()
        m = RESULT.match(line)
        if m and m["indent"]:
            directive = (m["directive"] or "").strip()
            skip = directive.upper().startswith("SKIP")
            cases.append(
                Case(
                    m["name"].strip(),
                    ok=not m["not"],
                    skip=skip,
                    reason=directive[4:].strip() if skip else directive,
                    diagnostics=pending,
                )
            )
            pending = []
        elif m and m["name"].strip() == suite:
            suite_ok = not m["not"]
        elif line.strip().startswith("# ") and not line.strip().startswith("# Subtest:"):
            pending.append(line.strip()[2:])
    return cases, suite_ok


def kernel_reports(lines):
    """The lines of a kernel log that report a problem (KERNEL_REPORT)."""
    return [line.rstrip() for line in lines if KERNEL_REPORT.search(line)]


def summary_line(line, prefix):
    """Parses a ping or pong summary line: "<prefix>: ... rounds R verified
    B bytes ..." -> (rounds, bytes), or None."""
    m = re.search(rf"{re.escape(prefix)}\b.*\brounds (\d+) verified (\d+) bytes", line)
    return (int(m[1]), int(m[2])) if m else None
