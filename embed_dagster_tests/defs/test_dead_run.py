"""Issue 15, D1: a SIGKILLed run gives its pool slot back, through a real `dagster dev` instance.

Run A embeds against a fault server that answers only after a long delay, so it sits in
fresh_embeddings holding the ``embedding_server`` slot. Run B (another day) then waits for that
slot: its log must say at INFO which run holds it. A's run worker is SIGKILLed; within 2 minutes A
must be FAILURE and no slot may be held by it any more, and its orphaned step process must be gone
(the dead_run_watchdog sensor).
"""

from __future__ import annotations

import os
import signal
import time
from datetime import date

import dagster as dg
import pytest

from embed_dagster.defs.watchdog import _worker, process_alive
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.dagster_procs import (
    DagsterDev,
    backfill_status,
    clean_env,
    job_backfill_params,
    launch_backfill,
    lineage_keys,
    repository_selector,
    run_details,
    run_messages,
)
from embed_dagster_tests.support.fault_server import FaultServer

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

DAY_A, DAY_B = date(2025, 3, 1), date(2025, 3, 2)
LIMIT_S = 120
POOL = "embedding_server"


def _wait(what: str, predicate, timeout_s: float, dev: DagsterDev, step_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    raise TimeoutError(f"{what} not within {timeout_s:.0f} s\n{dev.log_tail(3000)}")


def _launch(dev: DagsterDev, repo: dict, keys: list[str], day: date) -> str:
    bid = launch_backfill(
        dev.gql, job_backfill_params(repo, "embed_comments_job", keys, [day.isoformat()], f"D1 {day}")
    )
    runs = _wait(f"run for {day}", lambda: backfill_status(dev.gql, bid)["runs"], 120, dev)
    return runs[0]["runId"]


def _holders(instance: dg.DagsterInstance) -> set[str]:
    return {c.run_id for c in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots}


def test_d1_a_killed_run_frees_its_slot_and_is_marked_failed(tmp_path, fault_figures):
    landing = tmp_path / "landing"
    generate_landing(landing, DAY_A, 2, per_day=40, seed=5)
    with FaultServer(native_dim=64) as srv:
        srv.latency_s = 600  # every embedding request hangs: run A sits in fresh_embeddings
        env = clean_env(
            SGLANG_BASE_URL=srv.base_url,
            SGLANG_MODEL=srv.model,
            EMBED_DAGSTER_DIMENSIONS="64",
            EMBED_DAGSTER_LAKE=str(tmp_path / "lake"),
            EMBED_DAGSTER_LANDING=str(landing),
        )
        with DagsterDev(tmp_path / "home", env, cwd=tmp_path / "cwd") as dev:
            instance = dg.DagsterInstance.from_config(str(dev.home))
            repo = repository_selector(dev.gql)
            keys = lineage_keys(dev.gql)
            run_a = _launch(dev, repo, keys, DAY_A)
            _wait("run A holding the embedding slot", lambda: run_a in _holders(instance), 240, dev)
            run_b = _launch(dev, repo, keys, DAY_B)

            def told_b():
                return [
                    m
                    for m in run_messages(dev.gql, run_b)
                    if f"waiting for pool '{POOL}'" in (m.get("message") or "") and run_a in m["message"]
                ]

            [note] = _wait("run B told which run holds the slot", told_b, 180, dev, step_s=3)[:1]
            assert note["level"] == "INFO"

            # the run worker itself (not a step process: the run worker notices a dead step and
            # fails the run on its own), as the OOM killer or `kill -9` would hit it
            # With the in-process executor (the default) the steps run inside the worker, so there may
            # be no step process at all; a job on the multiprocess executor has some.
            pid, _, step_pids = _worker(instance, run_a)
            assert pid, "run A's worker process not found"
            fault_figures.add("faults_injected")
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()

            def recovered():
                return run_details(dev.gql, run_a)["status"] == "FAILURE" and run_a not in _holders(instance)

            try:
                _wait("run A failed and its slot freed", recovered, LIMIT_S + 30, dev, step_s=2)
            except TimeoutError:
                fault_figures.add("hung_runs")
                raise
            took = time.monotonic() - killed_at
            # Marked failed by the watchdog ("run worker process N is gone") or, when the code server
            # that started the worker survived, by Dagster itself ("unexpectedly exited"); either
            # way the orphaned step process must not go on embedding and writing.
            _wait(
                "orphaned step processes killed",
                lambda: not any(process_alive(p, when) for p, when in step_pids.items()),
                60,
                dev,
            )
            fault_figures.add("hung_runs", int(took > LIMIT_S))
            assert took <= LIMIT_S, f"took {took:.0f} s"
            fault_figures.add("partitions_recovered")
            # the waiting run gets the slot next
            _wait("run B holding the slot", lambda: run_b in _holders(instance), 120, dev, step_s=2)
            instance.dispose()
