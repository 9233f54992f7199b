"""A 7-day backfill through a real Dagster instance, launched the way the UI launches it.

`dagster dev` runs with the repo's dagster.yaml (queued run coordinator, max_concurrent_runs 4,
pool `embedding_server` of limit 1 at op granularity; the warehouse steps take no pool), and
EMBED_DAGSTER_DAYS_PER_RUN=3. The backfill goes in through GraphQL `launchPartitionBackfill`; the
daemon submits runs of up to 3 days (the assets' multi-run backfill policy), several at once against
one DuckLake lake, and `topics`' chunks one after another. The result must equal the same days
materialized one after the other in this process into a second warehouse.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from embed_dagster_tests.support.dagster_procs import (
    BACKFILL_DAYS,
    DAYS_PER_RUN,
    PER_DAY,
    failure_report,
    metadata_dict,
    run_details,
    run_messages,
)
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import ORDER_FREE_TABLES  # noqa: E402

pytest_plugins = ["embed_dagster_tests.support.dagster_procs"]


def _per_day(db: str, sql: str) -> dict[str, list]:
    out: dict[str, list] = defaultdict(list)
    for row in query_arrow(db, sql).to_pylist():
        out[row["d"].isoformat()].append(tuple(v for k, v in row.items() if k != "d"))
    return {k: sorted(v) for k, v in out.items()}


def _run_days(run: dict) -> list[str]:
    """The partitions a run covers: one day, or a range (an asset with a single-run backfill policy)."""
    tags = {t["key"]: t["value"] for t in run["tags"]}
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    first, last = tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]
    return [d.isoformat() for d in BACKFILL_DAYS if first <= d.isoformat() <= last]


def _counts(db: str, table: str) -> dict[str, int]:
    rows = query_arrow(db, f"SELECT partition_date AS d, count(*) AS n FROM {table} GROUP BY 1").to_pylist()
    return {r["d"].isoformat(): r["n"] for r in rows}


@pytest.fixture(scope="module")
def backfill(ops_backfills, ops_server):
    runs = {r["runId"]: run_details(ops_server.gql, r["runId"]) for r in ops_backfills.asset["runs"]}
    return ops_backfills, runs


def test_every_partition_succeeds(backfill, ops_server):
    result, runs = backfill
    assert result.asset["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), failure_report(
        ops_server.gql, result.asset
    )
    assert result.asset["isAssetBackfill"]
    assert sorted(result.asset["partitionNames"]) == [d.isoformat() for d in BACKFILL_DAYS]
    assert runs and all(r["status"] == "SUCCESS" for r in runs.values()), {
        r["runId"]: r["status"] for r in runs.values()
    }
    # Multi-run: the runs that materialize raw_comments carry up to DAYS_PER_RUN days each, and every
    # day is in exactly one of them: 7 days are 3 runs, not 7.
    ingest_runs = [r for r in runs.values() if {"path": ["raw_comments"]} in (r["assetSelection"] or [])]
    days = [_run_days(r) for r in ingest_runs]
    assert all(1 <= len(d) <= DAYS_PER_RUN for d in days), days
    assert sorted(x for d in days for x in d) == [d.isoformat() for d in BACKFILL_DAYS]
    assert len(ingest_runs) == math.ceil(len(BACKFILL_DAYS) / DAYS_PER_RUN), days
    assert all(ok for ok in result.reference_ok.values()), result.reference_ok


def test_runs_overlapped_within_the_configured_limit(backfill, ops_server):
    _, runs = backfill
    instance = ops_server.gql("{ instance { runQueueConfig { maxConcurrentRuns } } }")["instance"]
    queue = instance["runQueueConfig"]
    assert queue["maxConcurrentRuns"] >= 3
    edges = sorted([(r["startTime"], 1) for r in runs.values()] + [(r["endTime"], -1) for r in runs.values()])
    most, now = 0, 0
    for _, step in edges:
        now += step
        most = max(most, now)
    print(f"\nmost runs in progress at once: {most} (limit {queue['maxConcurrentRuns']})")
    # How many overlap depends on the daemon's timing and on `topics` waiting for the previous day,
    # so the count is reported; the queue's limit is what must hold.
    assert 1 <= most <= queue["maxConcurrentRuns"]


def test_no_lock_errors_in_any_run(backfill, ops_server):
    _, runs = backfill
    for run_id in runs:
        for event in run_messages(ops_server.gql, run_id):
            message = (event.get("message") or "").lower()
            assert "could not set lock" not in message, event
            assert "stayed locked" not in message, event


def test_topics_ran_in_date_order(backfill):
    """A day's topics never started before the previous day's topics had finished (in another run),
    or ran in the same run (which walks its days in date order)."""
    _, runs = backfill
    span_of = {}
    for r in runs.values():
        for step in r["stepStats"]:
            if step["stepKey"] == "topics":
                for day in _run_days(r):
                    span_of[day] = (r["runId"], step["startTime"], step["endTime"])
    days = [d.isoformat() for d in BACKFILL_DAYS]
    assert sorted(span_of) == days
    for before, after in zip(days, days[1:]):
        (run_a, _, end_a), (run_b, start_b, _) = span_of[before], span_of[after]
        assert run_a == run_b or start_b >= end_a, (before, after, span_of)


def test_row_counts_per_day_match_a_sequential_run(backfill, ops_server):
    result, _ = backfill
    days = _day_strings()
    for table in ORDER_FREE_TABLES:
        ours = {d: n for d, n in _counts(ops_server.db, table).items() if d in days}
        assert ours == _counts(result.reference_db, table), table


def _day_strings() -> set[str]:
    return {d.isoformat() for d in BACKFILL_DAYS}


def test_nothing_lost_nothing_doubled(backfill, ops_server):
    db = ops_server.db
    for day in BACKFILL_DAYS:
        n = query_arrow(
            db,
            """SELECT (SELECT count(*) FROM clusters WHERE partition_date = $d) AS clustered,
                      (SELECT count(DISTINCT comment_id) FROM clusters WHERE partition_date = $d)
                          AS distinct_ids,
                      (SELECT count(*) FROM quarantine WHERE partition_date = $d) AS quarantined""",
            {"d": day},
        ).to_pylist()[0]
        assert n["clustered"] + n["quarantined"] == PER_DAY, (day, n)
        assert n["clustered"] == n["distinct_ids"], (day, n)
    stored = query_arrow(
        db, "SELECT count(*) AS n, count(DISTINCT (model_key, text_hash)) AS d FROM embedding_store"
    ).to_pylist()[0]
    assert stored["n"] == stored["d"]


def test_every_text_has_one_vector_source(backfill, ops_server):
    """Which day embeds a text shared by several days depends on which run got there first, so the
    cached/fresh split differs from the sequential run; their union must not."""
    result, _ = backfill
    sql = """SELECT partition_date AS d, text_hash, count(*) AS n FROM (
                 SELECT partition_date, text_hash FROM cached_embeddings
                 UNION ALL SELECT partition_date, text_hash FROM fresh_embeddings) GROUP BY ALL"""
    ours, reference = _per_day(ops_server.db, sql), _per_day(result.reference_db, sql)
    for day in _day_strings():
        assert all(n == 1 for _, n in ours[day]), day
        assert ours[day] == reference[day], day


def test_topic_ids_match_the_sequential_run(backfill, ops_server):
    result, _ = backfill
    # emerging clusters have no topic id yet (docs/topics.md): compare the topics
    sql = "SELECT partition_date AS d, topic_id, size, is_new FROM topics WHERE topic_id IS NOT NULL"
    ours, reference = _per_day(ops_server.db, sql), _per_day(result.reference_db, sql)
    assert sum(len(v) for v in reference.values()) >= len(BACKFILL_DAYS), "days without topics prove nothing"
    for day in sorted(_day_strings()):
        assert ours.get(day, []) == reference.get(day, []), day


def test_pools_held_one_step_at_a_time(backfill, ops_backfills, ops_server):
    """Across both backfills, no two steps of a pool of limit 1 were ever running at the same time."""
    gql = ops_server.gql
    nodes = gql("{ assetNodes { assetKey { path } pools } }")["assetNodes"]
    pool_of = {n["assetKey"]["path"][0]: n["pools"] for n in nodes}
    assert not pool_of["raw_comments"]  # the lake has many writers: no global writer slot
    assert pool_of["fresh_embeddings"] == ["embedding_server"]
    limits = {
        c["concurrencyKey"]: c["slotCount"]
        for c in gql("{ instance { concurrencyLimits { concurrencyKey slotCount } } }")["instance"][
            "concurrencyLimits"
        ]
    }
    assert "duckdb_writer" not in limits and limits.get("embedding_server") == 1, limits
    intervals: dict[str, list] = defaultdict(list)
    run_ids = [r["runId"] for r in ops_backfills.asset["runs"] + ops_backfills.job["runs"]]
    for run_id in run_ids:
        for step in run_details(gql, run_id)["stepStats"]:
            for pool in pool_of.get(step["stepKey"], []):
                intervals[pool].append((step["startTime"], step["endTime"], run_id, step["stepKey"]))
    # one fresh_embeddings step per run: the asset backfill's runs of up to 3 days, the job backfill's
    assert len(intervals["embedding_server"]) >= math.ceil(len(BACKFILL_DAYS) / DAYS_PER_RUN)
    for pool, spans in intervals.items():
        spans.sort()
        for a, b in zip(spans, spans[1:]):
            assert b[0] >= a[1], f"pool {pool}: {a[3]} of run {a[2]} overlaps {b[3]} of run {b[2]}"


def test_checks_passed_for_every_day(backfill, ops_server):
    gql = ops_server.gql
    query = """query C($k: AssetKeyInput!, $c: String!, $p: String) {
      assetCheckExecutions(assetKey: $k, checkName: $c, partition: $p, limit: 5) {
        status evaluation { success severity metadataEntries { __typename label
          ... on IntMetadataEntry { intValue } } } } }"""
    for day in sorted(_day_strings()):
        for asset, check in [
            ("clusters", "conservation"),
            ("fresh_embeddings", "coverage"),
            ("fresh_embeddings", "vector_sanity"),
            ("clusters", "clustering_health"),
        ]:
            runs = gql(query, {"k": {"path": [asset]}, "c": check, "p": day})["assetCheckExecutions"]
            assert runs, (day, check)
            latest = runs[0]
            if check == "clustering_health":  # a warning, never a failure of the backfill
                assert latest["evaluation"]["severity"] == "WARN"
                continue
            assert latest["status"] == "SUCCEEDED", (day, check, latest)
            assert latest["evaluation"]["success"], (day, check, latest)
            if check == "conservation":
                meta = metadata_dict(latest["evaluation"]["metadataEntries"])
                assert meta["lost"] == 0 and meta["doubled"] == 0
