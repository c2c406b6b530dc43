"""Fixtures for crash tests: a recording sink, mailroute installations that are reaped
whatever happens, and a summary of what each test measured (duplicates, timings)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.delivery.sink import Sink
from tests.reliability.service import Installation

REPORT = "reliability"


@pytest.fixture
def sink() -> Iterator[Sink]:
    sink = Sink().start()
    yield sink
    sink.stop()


InstallationFactory = Callable[..., Installation]


@pytest.fixture
def installation(tmp_path: Path, sink: Sink) -> Iterator[InstallationFactory]:
    """``installation(database_url, **settings)``: an installation relaying to ``sink``."""
    made: list[Installation] = []

    def make(database_url: str, **settings: str) -> Installation:
        made.append(Installation(tmp_path, database_url, sink.port, **settings))
        return made[-1]

    yield make
    for each in made:
        each.reap()


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Callable[[str], None]:
    """A line for the reliability summary at the end of the run (and the JUnit XML)."""
    return lambda line: record_property(REPORT, line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = [
        f"{report.nodeid}: {value}"
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if report.when == "call"
        for name, value in report.user_properties
        if name == REPORT
    ]
    if lines:
        terminalreporter.section("reliability")
        for line in lines:
            terminalreporter.write_line(line)
