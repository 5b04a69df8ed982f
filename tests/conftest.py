"""Shared test setup: tier markers by folder, and the real lab components, built once.

The component fixtures build from bundles/lab.yaml (cached on their inputs, outside the
repository); the integration and lab tiers both use them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

from appliance.components.build import BuildReport, build_components
from appliance.definition import Definition, load_definition
from appliance.errors import RegistryRefusedError
from appliance.settings import SUPPLIED_ENV, supplied_dir

# No deadline on a property test's examples: how fast code runs is the benchmarks' business
# (benchmarks/), and a busy 2-core machine made examples of the Merkle tests miss the
# default 200 ms and fail.
settings.register_profile("appliance", deadline=None)
settings.load_profile("appliance")

REPO = Path(__file__).resolve().parents[1]
TIERS = ("unit", "integration", "lab")
#: Seconds spent in each test module (setup, call and teardown of its tests), for the
#: summary `make test` prints: the suite's budget is watched module by module.
_MODULE_SECONDS: defaultdict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Add each phase's duration to its module's total."""
    _MODULE_SECONDS[report.nodeid.split("::", 1)[0]] += report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print each module's time, slowest first, and the total."""
    if not _MODULE_SECONDS:
        return
    terminalreporter.section("time per test module")
    for module, seconds in sorted(_MODULE_SECONDS.items(), key=lambda item: -item[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {module}")
    total = sum(_MODULE_SECONDS.values())
    terminalreporter.write_line(f"{total:8.1f} s  in all ({total / 60:.1f} min)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests/unit/* as `unit` and so on, so `-m TIER` selects a tier."""
    for item in items:
        parts = Path(item.path).parts
        for tier in TIERS:
            if tier in parts:
                item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def lab_definition() -> Definition:
    """bundles/lab.yaml, whose outputs land in build/ as `make demo` leaves them."""
    return load_definition(REPO / "bundles/lab.yaml")


@pytest.fixture(scope="session")
def build_lab(lab_definition: Definition) -> Callable[..., BuildReport]:
    """Build named lab components (cached on their inputs) and fail on any error.

    OpenZiti programs come from the supplied folder when it holds them (docs/components.md).
    A component whose upstream source the package registry refuses, with nothing supplied,
    is skipped with one line saying so: that is the machine's limit, not a defect to hide.
    """

    def build(*names: str) -> BuildReport:
        folder = supplied_dir()
        report = build_components(lab_definition, only=list(names), supplied=folder)
        for result in report.failed:
            if isinstance(result.error, RegistryRefusedError):
                pytest.skip(
                    f"no supplied OpenZiti programs in {folder} (set ${SUPPLIED_ENV}; "
                    f"docs/components.md) and {result.error}"
                )
            raise AssertionError(f"{result.name} failed to build: {result.error}")
        return report

    return build
