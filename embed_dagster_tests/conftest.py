"""Shared fixtures: real servers on loopback, real DuckDB files, sample landing data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["embed_dagster_tests.support.fixtures_redis", "embed_dagster_tests.support.fault_figures"]

SHARED = Path(os.environ.get("EMBED_DAGSTER_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))


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
