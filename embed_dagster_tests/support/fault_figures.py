"""Pytest plugin: the fault suite's figures, summed over the session and printed at its end.

Why a plugin and not asserts alone: the README quotes these numbers ("N faults injected, 0 rows
lost"), so they must come from what the tests measured, not from a hand-written claim. Tests take
the session fixture ``fault_figures`` and call ``.add(name, n)``; lost and duplicated rows are
added as measured (before the test asserts they are 0), so a failing run still reports them.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

# name -> label printed in the summary, in this order
FIGURES = {
    "bad_input_cases": "bad-input cases tried",
    "faults_injected": "faults injected",
    "partitions_recovered": "partitions recovered",
    "rows_lost": "rows lost",
    "rows_duplicated": "rows duplicated",
    "vectors_reembedded_after_resume": "vectors re-embedded after a resume",
    "hung_runs": "hung runs (past their deadline, or holding a slot)",
    "secrets_found": "secrets found in logs, errors, metadata or stored rows",
}
MUST_BE_ZERO = (
    "rows_lost",
    "rows_duplicated",
    "vectors_reembedded_after_resume",
    "hung_runs",
    "secrets_found",
)
_KEY = pytest.StashKey["FaultFigures"]()


class FaultFigures:
    """Session totals plus a per-test breakdown (shown with -v)."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = dict.fromkeys(FIGURES, 0)
        self.by_test: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIGURES, 0))
        self.measured: dict[str, str] = {}
        self.current_test = "(no test)"
        self.touched = False

    def add(self, name: str, n: int = 1) -> None:
        if name not in FIGURES:
            raise KeyError(f"unknown figure {name!r}; known: {', '.join(FIGURES)}")
        n = int(n)
        if n < 0:
            raise ValueError(f"figure {name} cannot decrease (got {n})")
        self.totals[name] += n
        self.by_test[self.current_test][name] += n
        self.touched = True

    def measure(self, name: str, text: str) -> None:
        """A measured value that is not a count (e.g. peak memory against file size), printed as is."""
        self.measured[name] = text
        self.touched = True

    def summary_lines(self, verbose: bool = False) -> list[str]:
        width = max(len(label) for label in FIGURES.values())
        lines = [f"{label:<{width}}  {self.totals[name]}" for name, label in FIGURES.items()]
        lines += [f"{name:<{width}}  {text}" for name, text in self.measured.items()]
        bad = [FIGURES[n] for n in MUST_BE_ZERO if self.totals[n]]
        lines.append(
            "verdict: " + (f"NOT OK ({', '.join(bad)} above 0)" if bad else "nothing lost, nothing doubled")
        )
        if verbose:
            lines.append("")
            lines.append("per test:")
            for test, figs in self.by_test.items():
                parts = [f"{FIGURES[n]}={v}" for n, v in figs.items() if v]
                if parts:
                    lines.append(f"  {test}: {', '.join(parts)}")
        return lines


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = FaultFigures()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    # wraps setup too: module fixtures that materialize partitions add figures during setup
    figures = item.config.stash.get(_KEY, None)
    if figures is not None:
        figures.current_test = item.nodeid
    yield


@pytest.fixture(scope="session")
def fault_figures(request: pytest.FixtureRequest) -> FaultFigures:
    return request.config.stash[_KEY]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    figures = config.stash.get(_KEY, None)
    if figures is None or not figures.touched:
        return
    terminalreporter.write_sep("=", "fault suite figures")
    for line in figures.summary_lines(verbose=config.get_verbosity() > 0):
        terminalreporter.write_line(line)
