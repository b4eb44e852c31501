"""pytest glue of the dmapingpong lab tests (labgrid's pytest plugin gives
the env, target and strategy fixtures; --lg-env names the environment).

KTAP test points as pytest items: a test that runs a KTAP suite on the
target calls ktap_items(), and each test point runs as a test of its own
right after it (so it appears in the terminal and in the JUnit XML).

The environments are configs/labgrid/*.yaml; the options of their target
say what the target is expected to do (dpp_engine, dpp_kunit_suites).
"""

import pytest


class KtapCase(pytest.Item):
    """One test point of a KTAP report, as a pytest test."""

    def __init__(self, *, case, source, **kwargs):
        super().__init__(**kwargs)
        self.case = case
        self.source = source
        # No fixtures (labgrid's hooks look at every item's).
        self.fixturenames = ()

    def runtest(self):
        if self.case.skip:
            pytest.skip(self.case.reason or "skipped")
        if not self.case.ok:
            raise KtapFailure(self)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, KtapFailure):
            lines = [f"{self.source}: not ok {self.case.name}" + (f" # {self.case.reason}" if self.case.reason else "")]
            lines += [f"# {d}" for d in self.case.diagnostics]
            return "\n".join(lines)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{self.source}: {self.case.name}"


class KtapFailure(Exception):
    pass


@pytest.fixture
def ktap_items(request):
    """ktap_items(prefix, cases): each case runs as the test
    "<prefix>[<name>]" right after the calling test."""

    def add(prefix, cases):
        session = request.session
        items = [
            KtapCase.from_parent(request.node.parent, name=f"{prefix}[{c.name}]", case=c, source=prefix) for c in cases
        ]
        at = session.items.index(request.node) + 1
        session.items[at:at] = items
        session.testscollected += len(items)

    return add


@pytest.fixture(scope="session")
def option(env):
    """An option of the target "main" ("options:" in configs/labgrid/*.yaml)."""

    def get(name, default=None):
        try:
            return env.config.get_target_option("main", name)
        except KeyError:
            return default

    return get


@pytest.fixture(scope="session")
def strategy(target):
    return target.get_driver("DmapingpongStrategy")


@pytest.fixture(scope="session")
def shell(strategy):
    """A logged-in shell on the target's console, booted once per session."""
    strategy.transition("shell")
    return strategy.shell


def pytest_addoption(parser):
    parser.addoption(
        "--dpp-robustness",
        default="",
        metavar="PROFILE",
        help="also run dmapingpong-robustness with this profile (ci, full); debug kernels only",
    )
    parser.addoption(
        "--dpp-plant",
        action="append",
        default=[],
        choices=["selftest-case", "kernel-report"],
        help="plant a fault the suite must catch (scripts/test: lab-planted-faults): "
        "selftest-case, a self-test whose device is /dev/null; kernel-report, a WARNING line in the kernel log",
    )
    parser.addoption(
        "--dpp-robustness-only",
        default="",
        metavar="CLASSES",
        help="only these classes of the robustness suite (comma-separated)",
    )
    parser.addoption(
        "--dpp-interop-only",
        default="",
        metavar="TESTS",
        help="only these tests of the interop suite (comma-separated; scripts/mutation-check)",
    )
