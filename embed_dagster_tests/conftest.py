"""Shared fixtures: real servers on loopback, real DuckDB files, sample landing data.

Markers (pyproject.toml) mean what they say, and the fast loop enforces its own:
- ``integration``: starts a process (the bundled HTTP server, redis-server, PostgreSQL, dagster dev,
  a run in a subprocess). Tests get it automatically from the fixtures that start those processes
  (``PROCESS_FIXTURES``) or from ``pytestmark`` in the module.
- ``slow``, ``faults``, ``ui``: long-running, fault injection, browser.
``make test-fast`` deselects all four and sets ``EMBED_DAGSTER_TEST_FAST=1``; then any test that still
tries to start a process fails with a message naming the marker it lacks.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytest_plugins = ["embed_dagster_tests.support.fixtures_redis", "embed_dagster_tests.support.fault_figures"]

SHARED = Path(os.environ.get("EMBED_DAGSTER_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))

# Fixtures that start a process; a test depending on one (directly or not) is an integration test.
PROCESS_FIXTURES = {"local_server", "redis_server", "redis_server_factory", "postgres_url", "ops_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if PROCESS_FIXTURES.intersection(fixtures):
            item.add_marker(pytest.mark.integration)
        # `make test` runs on two pytest-xdist workers with --dist loadgroup: a module's tests stay
        # on one worker, so its module fixtures (a materialized lake, a dagster dev) are built once,
        # and every test of the one session-wide `dagster dev` (ops_server) shares a worker too.
        if not item.get_closest_marker("xdist_group"):
            group = "ops_server" if "ops_server" in fixtures else item.module.__name__
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _no_processes_in_the_fast_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """In ``make test-fast``, starting a process is a bug in the test's markers: say so, loudly."""
    if os.environ.get("EMBED_DAGSTER_TEST_FAST") != "1":
        return

    class _Refused(subprocess.Popen):
        def __init__(self, args, *a, **kw):
            raise AssertionError(
                f"{request.node.nodeid} starts a process ({args!r}) but is not marked integration/slow; "
                "mark it, or keep it in-process"
            )

    monkeypatch.setattr(subprocess, "Popen", _Refused)


@pytest.fixture(scope="session")
def local_server():
    """One bundled embedding server for the whole session: loading the model costs ~2 s."""
    from embed_dagster.dev.local_server import LocalServerProcess

    with LocalServerProcess() as server:
        yield server


@pytest.fixture
def shared_datasets() -> Path:
    path = SHARED / "datasets"
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set EMBED_DAGSTER_SHARED)")
    return path
