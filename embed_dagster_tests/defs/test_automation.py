"""The daily schedule and the landing sensor, evaluated the way the daemon evaluates them.

The schedule's time of day and timezone are read from the environment when the code location is
imported, so each setting is evaluated in a fresh interpreter with those variables set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date

import dagster as dg
import pytest

from embed_dagster.defs.automation import landing_sensor
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.dagster_procs import REPO, dagster_bin

_EVALUATE = """
import datetime as dt, json, sys
from zoneinfo import ZoneInfo
import dagster as dg

from embed_dagster.defs.automation import daily_schedule as s
out = {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name,
       "default_status": s.default_status.value, "ticks": {}}
for tick in json.loads(sys.argv[1]):
    when = dt.datetime.fromisoformat(tick)
    data = s.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=when))
    out["ticks"][tick] = [r.partition_key for r in data.run_requests]
print("RESULT " + json.dumps(out))
"""


def _evaluate_schedule(env_overrides: dict[str, str], ticks: list[str]) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBED_DAGSTER_")}
    env.update(env_overrides)
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _EVALUATE, json.dumps(ticks)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:]}
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.integration
def test_default_schedule_runs_yesterday_at_two_utc():
    out = _evaluate_schedule({}, ["2025-03-10T02:00:00+00:00", "2025-01-02T02:00:00+00:00"])
    assert out["cron"] == "0 2 * * *"
    assert out["timezone"] == "UTC"
    assert out["job"] == "embed_comments_job"
    assert out["default_status"] == "STOPPED"  # turned on deliberately (UI or CLI), never by deploying
    assert out["ticks"] == {
        "2025-03-10T02:00:00+00:00": ["2025-03-09"],
        "2025-01-02T02:00:00+00:00": ["2025-01-01"],
    }


@pytest.mark.integration
def test_schedule_time_and_timezone_come_from_the_environment():
    # 23:30 UTC on 9 March is 07:30 on 10 March in Shanghai: "yesterday" is a different day there.
    instant = "2025-03-09T23:30:00+00:00"
    shanghai = _evaluate_schedule(
        {"EMBED_DAGSTER_TIMEZONE": "Asia/Shanghai", "EMBED_DAGSTER_SCHEDULE_TIME": "07:30"}, [instant]
    )
    assert shanghai["cron"] == "30 7 * * *"
    assert shanghai["timezone"] == "Asia/Shanghai"
    assert shanghai["ticks"][instant] == ["2025-03-09"]
    utc = _evaluate_schedule({"EMBED_DAGSTER_SCHEDULE_TIME": "23:30"}, [instant])
    assert utc["cron"] == "30 23 * * *"
    assert utc["ticks"][instant] == ["2025-03-08"]


@pytest.mark.integration
def test_bad_schedule_time_is_a_clear_error():
    out = _evaluate_schedule({"EMBED_DAGSTER_SCHEDULE_TIME": "25:00"}, [])
    assert "EMBED_DAGSTER_SCHEDULE_TIME='25:00' is not HH:MM" in out["error"]


def _tick(cursor: str | None) -> dg.SensorExecutionData:
    from embed_dagster.definitions import defs

    return landing_sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor, definitions=defs))


def test_landing_sensor_requests_each_new_day_once(tmp_path, monkeypatch):
    landing = tmp_path / "landing"
    monkeypatch.setenv("EMBED_DAGSTER_LANDING", str(landing))
    assert _tick(None).run_requests == []  # no landing folder yet: skip, not an error

    generate_landing(landing, date(2025, 1, 1), 2, per_day=20, seed=3)
    # Folders that must not trigger a run: empty, only hidden/in-progress files, not a real date,
    # and a day after the last partition.
    comments = landing / "comments"
    (comments / "date=2025-01-05").mkdir()
    (comments / "date=2025-01-06").mkdir()
    (comments / "date=2025-01-06" / ".part-0001.jsonl").write_text("{}\n")
    (comments / "date=2025-02-30").mkdir()
    (comments / "date=2025-02-30" / "x.jsonl").write_text("{}\n")
    (comments / "date=2999-01-01").mkdir()
    (comments / "date=2999-01-01" / "x.jsonl").write_text("{}\n")

    first = _tick(None)
    assert [(r.partition_key, r.run_key) for r in first.run_requests] == [
        ("2025-01-01", "landing-2025-01-01"),
        ("2025-01-02", "landing-2025-01-02"),
    ]
    assert first.cursor

    second = _tick(first.cursor)
    assert second.run_requests == []
    assert second.skip_message and "no new landing folders" in second.skip_message

    generate_landing(landing, date(2025, 1, 3), 1, per_day=20, seed=3)
    (comments / "date=2025-01-06" / "sample.jsonl").write_text("{}\n")  # the upload finished
    third = _tick(second.cursor or first.cursor)
    assert sorted(r.partition_key for r in third.run_requests) == ["2025-01-03", "2025-01-06"]
    assert _tick(third.cursor).run_requests == []


@pytest.mark.integration
def test_schedule_start_cli_turns_the_schedule_on(tmp_path):
    """The command docs/operations.md gives, against a fresh DAGSTER_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    proc = subprocess.run(
        [dagster_bin(), "schedule", "start", "daily_embed_comments", "-w", "workspace.yaml"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Started schedule daily_embed_comments" in proc.stdout
    # The schedule state the daemon reads (no public name for these enums in dagster 1.13).
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType

    with dg.DagsterInstance.from_config(str(home)) as instance:
        states = {
            s.instigator_name: s.status
            for s in instance.all_instigator_state(instigator_type=InstigatorType.SCHEDULE)
        }
    assert states == {"daily_embed_comments": InstigatorStatus.RUNNING}


def test_d10_malformed_day_folders_are_reported_not_skipped_silently(tmp_path, monkeypatch):
    """Issue 15, D10: date=2025-02-30, date=2025-1-5 and Date=... hold rows no run ever reads."""
    landing = tmp_path / "landing"
    monkeypatch.setenv("EMBED_DAGSTER_LANDING", str(landing))
    comments = landing / "comments"
    for name in ("date=2025-02-30", "date=2025-1-5", "Date=2025-01-05"):
        (comments / name).mkdir(parents=True)
        (comments / name / "x.jsonl").write_text("{}\n")
    first = _tick(None)
    assert first.run_requests == []
    for name in ("date=2025-02-30", "date=2025-1-5", "Date=2025-01-05"):
        assert name in first.skip_message

    generate_landing(landing, date(2025, 1, 1), 1, per_day=20, seed=3)
    second = _tick(None)
    [req] = second.run_requests
    note = req.tags["embed_dagster/malformed_landing_folders"]
    assert "date=2025-1-5" in note and "Date=2025-01-05" in note  # shown on the run that follows
