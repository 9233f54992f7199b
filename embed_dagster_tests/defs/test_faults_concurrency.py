"""Runs at once against one lake: the same partition twice, and a parallel backfill.

Each run is a process of its own (``faults_run``), as Dagster launches runs in production. On the
embedded SQLite catalog their write transactions take turns on the lake's writer lock (embedding
and clustering still overlap); the test proves every run finishes without errors and that the
result is what running them one after another gives.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from embed_dagster_tests.support.fault_server import Fault, FaultServer
from embed_dagster_tests.support.faults_helpers import (
    DIM,
    account,
    assert_checks_pass,
    asset_metadata,
    fault_model_key,
    make_resources,
    materialize,
    results_from_log,
    run_config,
    scalar,
    spawn,
    wait_all,
    wait_for_saved_vectors,
    write_day,
    wrong_vectors,
)
from embed_dagster_tests.support.pipeline import ORDER_FREE_TABLES  # noqa: E402

pytestmark = pytest.mark.faults

TABLES = ORDER_FREE_TABLES


def partition_counts(db, day: date) -> dict[str, int]:
    counts = ", ".join(f"(SELECT count(*) FROM {t} WHERE partition_date = $d) AS {t}" for t in TABLES)
    return scalar(
        db,
        f"""SELECT {counts}, (SELECT count(*) FROM cached_embeddings WHERE partition_date = $d)
                 + (SELECT count(*) FROM fresh_embeddings WHERE partition_date = $d) AS embedded""",
        {"d": day},
    )


def split_is_exact(db, day: date) -> dict[str, int]:
    """Each distinct text of the day is in exactly one of cached_embeddings / fresh_embeddings."""
    return scalar(
        db,
        """WITH src AS (SELECT text_hash FROM cached_embeddings WHERE partition_date = $d
                        UNION ALL SELECT text_hash FROM fresh_embeddings WHERE partition_date = $d),
                per AS (SELECT d.text_hash, (SELECT count(*) FROM src WHERE src.text_hash = d.text_hash) AS n
                        FROM deduplicated_texts d WHERE d.partition_date = $d)
           SELECT count(*) FILTER (WHERE n = 0) AS missing, count(*) FILTER (WHERE n > 1) AS doubled
           FROM per""",
        {"d": day},
    )


def test_a_second_run_while_the_first_embeds_leaves_each_text_in_one_embedding_table(tmp_path, fault_figures):
    """Run A embeds slowly; run B of the same partition starts, finds A's checkpointed vectors cached,
    embeds the rest and finishes; then A finishes and writes fresh_embeddings last. A's list of texts
    to embed was read before B cached part of them, yet no text may end up in both tables."""
    day = date(2025, 6, 2)
    landing = tmp_path / "landing"
    rows = write_day(landing, day, 70, distinct=60)
    db = tmp_path / "lake"
    config = dict(batch_size=4, max_concurrency=1, timeout_s=300.0)
    with FaultServer() as slow, FaultServer() as fast:
        # 15 requests of 4 texts must outlast the first checkpoint (CHECKPOINT_SECONDS, 2 s): at 0.1 s
        # each, A could embed all 60 before saving any, and B then found every text cached (seen in CI)
        slow.latency_s = 0.3
        a = spawn(run_config(db, landing, slow.base_url, [day.isoformat()], **config), tmp_path / "a.log")
        try:
            assert wait_for_saved_vectors(a, db), (tmp_path / "a.log").read_text(errors="replace")[-3000:]
            slow.fail_next(Fault.stall(300.0), times=100_000)  # A now hangs mid-embedding
            fault_figures.add("faults_injected")
            b = materialize(make_resources(db, landing, fast.base_url, batch_size=4), day)
        finally:
            a_sent = {t for r in slow.embedding_requests for t in r.inputs}
            slow.reset()
            slow.stop()  # wakes A's stalled requests, which then get their answers
            slow.up()
            (code,) = wait_all([a], timeout_s=240)
            a_sent |= {t for r in slow.embedding_requests for t in r.inputs}
    assert b.success and code == 0, (tmp_path / "a.log").read_text(errors="replace")[-3000:]
    # the race was really set up: B found some of A's vectors cached, A embedded every text anyway
    assert 0 < asset_metadata(b, "cached_embeddings")["cache_hits"] < 60
    assert len(a_sent) == 60
    assert_checks_pass(b)
    (a_result,) = results_from_log(tmp_path / "a.log")
    assert _all_checks_pass(a_result), a_result["checks"]
    assert split_is_exact(db, day) == {"missing": 0, "doubled": 0}
    account(fault_figures, db, day, rows)
    assert wrong_vectors(db, day, fault_model_key(), DIM) == 0


DAYS = [date(2025, 7, 1) + timedelta(days=i) for i in range(14)]
SHARED = [f"text every day shares, number {k}" for k in range(6)]  # embedded by several runs at once
DISTINCT = 24 + len(SHARED)
SAMPLED = [DAYS[0], DAYS[13]]  # the day run twice at once, and the last day


@pytest.fixture(scope="module")
def backfill(tmp_path_factory, fault_figures):
    """Three runs at once backfill fourteen tiny days; two of them start with the same day.

    The clustering-derived tables are compared with a sequential backfill of two of the days
    (clustering reads only its own day); every other count is known exactly from the landing files.
    """
    tmp = tmp_path_factory.mktemp("backfill")
    landing = tmp / "landing"
    rows = {d: write_day(landing, d, 34, distinct=24, extra=SHARED) for d in DAYS}
    db, sequential_db = tmp / "parallel-lake", tmp / "sequential-lake"
    plan = [DAYS[0::3], [DAYS[0], *DAYS[1::3]], DAYS[2::3]]  # DAYS[0] twice, at the same moment
    with FaultServer() as srv:
        srv.latency_s = 0.02
        procs = [
            spawn(
                run_config(db, landing, srv.base_url, [d.isoformat() for d in days], batch_size=8),
                tmp / f"worker{i}.log",
            )
            for i, days in enumerate(plan)
        ]
        fault_figures.add("faults_injected")  # the second run of DAYS[0]
        sequential = {
            d: materialize(make_resources(sequential_db, landing, srv.base_url), d) for d in SAMPLED
        }
        codes = wait_all(procs, timeout_s=500)
    logs = "\n".join((tmp / f"worker{i}.log").read_text(errors="replace") for i in range(len(plan)))
    results = [r for i in range(len(plan)) for r in results_from_log(tmp / f"worker{i}.log")]
    return {
        "db": db,
        "sequential_db": sequential_db,
        "sequential": sequential,
        "rows": rows,
        "codes": codes,
        "logs": logs,
        "results": results,
        "key": fault_model_key(),
    }


def _all_checks_pass(result: dict) -> bool:
    return all(result["checks"][c] for c in ("conservation", "coverage", "vector_sanity"))


def test_two_runs_of_one_partition_at_once_equal_one_run(backfill, fault_figures):
    day, db = DAYS[0], backfill["db"]
    twice = [r for r in backfill["results"] if r["partition"] == day.isoformat()]
    assert len(twice) == 2 and all(r["success"] and _all_checks_pass(r) for r in twice), twice
    assert partition_counts(db, day) == partition_counts(backfill["sequential_db"], day)
    assert split_is_exact(db, day) == {"missing": 0, "doubled": 0}
    per_text = scalar(
        db,
        """SELECT count(*) AS stored, count(DISTINCT s.text_hash) AS texts FROM embedding_store s
                             JOIN deduplicated_texts d USING (text_hash) WHERE d.partition_date = ?""",
        [day],
    )
    assert per_text == {"stored": DISTINCT, "texts": DISTINCT}  # one stored vector per text
    account(fault_figures, db, day, backfill["rows"][day])


def test_fourteen_partitions_backfilled_by_three_runs_at_once_equal_a_sequential_backfill(
    backfill, fault_figures
):
    db, results = backfill["db"], backfill["results"]
    assert all(r.success for r in backfill["sequential"].values())
    assert backfill["codes"] == [0, 0, 0], backfill["logs"][-4000:]
    assert len(results) == 15 and all(r["success"] and _all_checks_pass(r) for r in results), results
    assert "could not set lock" not in backfill["logs"].lower() and "stayed locked" not in backfill["logs"]
    exact = {
        "raw_comments": 40,
        "quarantine": 0,
        "deduplicated_texts": DISTINCT,
        "comment_texts": 40,
        "clusters": 40,
        "embedded": DISTINCT,
    }
    for day in DAYS:
        counts = partition_counts(db, day)
        assert {k: counts[k] for k in exact} == exact, day
        assert counts["topics"] == counts["cluster_summaries"], day
        if day in SAMPLED:
            assert counts == partition_counts(backfill["sequential_db"], day), day
        assert split_is_exact(db, day) == {"missing": 0, "doubled": 0}, day
        if day != DAYS[0]:  # accounted by the two-runs test
            account(fault_figures, db, day, backfill["rows"][day])
        assert wrong_vectors(db, day, backfill["key"], DIM) == 0, day
    assert scalar(db, "SELECT count(*) AS n FROM embedding_store")["n"] == 14 * 24 + len(SHARED)
