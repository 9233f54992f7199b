"""Runs at once against one DuckDB file: the same partition twice, and a parallel backfill.

Each run is a process of its own (``faults_run``), as Dagster launches runs in production. DuckDB
lets one process write at a time, so the runs take turns on the lock; the test proves they get it
without errors and that the result is what running them one after another gives.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from embed_dagster_tests.fault_server import FaultServer
from embed_dagster_tests.faults_helpers import (
    DIM,
    account,
    make_resources,
    materialize,
    model_key_id,
    results_from_log,
    run_config,
    scalar,
    spawn,
    step_failures,
    wait_all,
    write_day,
    wrong_vectors,
)

pytestmark = pytest.mark.faults

TABLES = ["raw_comments", "quarantine", "deduplicated_texts", "comment_texts", "clusters", "cluster_summaries",
          "topics"]


def partition_counts(db, day: date) -> dict[str, int]:
    counts = {t: scalar(db, f"SELECT count(*) AS n FROM {t} WHERE partition_date = ?", [day])["n"] for t in TABLES}
    counts["embedded"] = scalar(
        db, "SELECT (SELECT count(*) FROM cached_embeddings WHERE partition_date = $d) "
        "+ (SELECT count(*) FROM fresh_embeddings WHERE partition_date = $d) AS n", {"d": day})["n"]
    return counts


def split_is_exact(db, day: date) -> dict[str, int]:
    """Each distinct text of the day is in exactly one of cached_embeddings / fresh_embeddings."""
    return scalar(
        db,
        """WITH src AS (SELECT text_hash FROM cached_embeddings WHERE partition_date = $d
                        UNION ALL SELECT text_hash FROM fresh_embeddings WHERE partition_date = $d),
                per AS (SELECT d.text_hash, (SELECT count(*) FROM src WHERE src.text_hash = d.text_hash) AS n
                        FROM deduplicated_texts d WHERE d.partition_date = $d)
           SELECT count(*) FILTER (WHERE n = 0) AS missing, count(*) FILTER (WHERE n > 1) AS doubled FROM per""",
        {"d": day},
    )


def test_two_runs_of_one_partition_at_once_equal_one_run(tmp_path, fault_figures):
    day = date(2025, 6, 1)
    landing = tmp_path / "landing"
    rows = write_day(landing, day, 90, distinct=60)
    db, reference_db = tmp_path / "warehouse.duckdb", tmp_path / "reference.duckdb"
    with FaultServer() as srv:
        srv.latency_s = 0.05
        config = run_config(db, landing, srv.base_url, [day.isoformat()], batch_size=4, max_concurrency=2)
        procs = [spawn(config, tmp_path / f"run{i}.log") for i in range(2)]
        fault_figures.add("faults_injected")  # a second run of the same partition at the same time
        reference = materialize(make_resources(reference_db, landing, srv.base_url), day)
        codes = wait_all(procs, timeout_s=240)
    assert reference.success
    logs = [(tmp_path / f"run{i}.log").read_text(errors="replace") for i in range(2)]
    results = [r for i in range(2) for r in results_from_log(tmp_path / f"run{i}.log")]
    assert codes == [0, 0] and [r["success"] for r in results] == [True, True], [log[-3000:] for log in logs]
    for r in results:
        assert all(r["checks"][c] for c in ("conservation", "coverage", "vector_sanity")), r["checks"]
    assert partition_counts(db, day) == partition_counts(reference_db, day)
    assert split_is_exact(db, day) == {"missing": 0, "doubled": 0}
    assert scalar(db, "SELECT count(*) AS n FROM embedding_store")["n"] == 60
    account(fault_figures, db, day, rows)
    assert wrong_vectors(db, day, model_key_id(make_resources(db, landing, "http://127.0.0.1:1")), DIM) == 0


def test_fourteen_partitions_backfilled_by_three_runs_at_once_equal_a_sequential_backfill(
    tmp_path, fault_figures
):
    days = [date(2025, 7, 1) + timedelta(days=i) for i in range(14)]
    landing = tmp_path / "landing"
    shared = [f"text every day shares, number {k}" for k in range(6)]  # embedded by several runs at once
    rows = {d: write_day(landing, d, 34, distinct=24, extra=shared) for d in days}
    db, sequential_db = tmp_path / "parallel.duckdb", tmp_path / "sequential.duckdb"
    # the clustering-derived tables are compared with a sequential backfill of three of the days
    # (clustering reads only its own day); every other count is known exactly from the landing files
    sampled = [days[0], days[6], days[13]]
    with FaultServer() as srv:
        srv.latency_s = 0.02
        procs = [
            spawn(run_config(db, landing, srv.base_url, [d.isoformat() for d in days[i::3]], batch_size=8),
                  tmp_path / f"worker{i}.log")
            for i in range(3)
        ]
        sequential = [materialize(make_resources(sequential_db, landing, srv.base_url), d) for d in sampled]
        codes = wait_all(procs, timeout_s=500)
    assert all(r.success for r in sequential), [step_failures(r) for r in sequential if not r.success]
    logs = "\n".join((tmp_path / f"worker{i}.log").read_text(errors="replace") for i in range(3))
    results = [r for i in range(3) for r in results_from_log(tmp_path / f"worker{i}.log")]
    assert codes == [0, 0, 0] and len(results) == 14 and all(r["success"] for r in results), logs[-4000:]
    assert all(r["checks"][c] for r in results for c in ("conservation", "coverage", "vector_sanity"))
    assert "could not set lock" not in logs.lower() and "stayed locked" not in logs
    distinct = 24 + len(shared)
    exact = {"raw_comments": 40, "quarantine": 0, "deduplicated_texts": distinct, "comment_texts": 40,
             "clusters": 40, "embedded": distinct}
    key = model_key_id(make_resources(db, landing, "http://127.0.0.1:1"))
    for day in days:
        counts = partition_counts(db, day)
        assert {k: counts[k] for k in exact} == exact, day
        assert counts["topics"] == counts["cluster_summaries"], day
        if day in sampled:
            assert counts == partition_counts(sequential_db, day), day
        assert split_is_exact(db, day) == {"missing": 0, "doubled": 0}, day
        account(fault_figures, db, day, rows[day])
        assert wrong_vectors(db, day, key, DIM) == 0, day
    assert scalar(db, "SELECT count(*) AS n FROM embedding_store")["n"] == 14 * 24 + len(shared)
