"""The topics asset and its WARN check on a warehouse with an injected surge (issue 16).

Seven days of cluster summaries are written straight into a real lake on disk: four steady
themes of 250 comments a day, then on day 7 one theme jumps to 1,250 and a new 400-comment theme
appears. The asset runs day by day in date order, as a backfill would; the check must stay quiet on
days 1–6 and warn on day 7, naming both.
"""

from __future__ import annotations

import datetime

import dagster as dg
import numpy as np
import pyarrow as pa

from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.core.warehouse.vector_store import matrix_to_arrow
from embed_dagster.defs.resources import EmbeddingResource, WarehouseResource
from embed_dagster.defs.topics.assets import topics
from embed_dagster.defs.topics.checks import topic_alerts
from embed_dagster_tests.support.lake import query_arrow

DAY1 = datetime.date(2025, 1, 1)


def _unit(seed: int, dim: int = 32) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def _summaries(sizes: dict[int, int], centroids: dict[int, np.ndarray]) -> pa.Table:
    ids = sorted(sizes, key=lambda c: -sizes[c])
    return pa.table(
        {
            "cluster_id": pa.array(list(range(len(ids))), pa.int32()),
            "size": pa.array([sizes[c] for c in ids], pa.int64()),
            "n_texts": pa.array([sizes[c] for c in ids], pa.int64()),
            "label": pa.array([f"theme {c}" for c in ids]),
            "keywords": pa.array([[f"word{c}", "common"] for c in ids], pa.list_(pa.string())),
            "representatives": pa.array([[f"text {c}"] for c in ids], pa.list_(pa.string())),
            "centroid": matrix_to_arrow(np.vstack([centroids[c] for c in ids])),
        }
    )


def test_check_warns_on_an_injected_surge_and_a_large_new_topic(tmp_path):
    db = str(tmp_path / "lake")
    lake = Warehouse.embedded(db)
    centroids = {c: _unit(c) for c in range(5)}
    resources = {"warehouse": WarehouseResource(root=db), "embedding": EmbeddingResource()}
    outcomes = {}
    for k in range(7):
        day = DAY1 + datetime.timedelta(days=k)
        sizes = {c: 250 for c in range(4)}
        if k == 6:
            sizes[3] = 1250  # the injected surge
            sizes[4] = 400  # a large new theme
        lake.replace_partition(day, {"cluster_summaries": ({}, _summaries(sizes, centroids))})
        result = dg.materialize([topics, topic_alerts], partition_key=day.isoformat(), resources=resources)
        (evaluation,) = result.get_asset_check_evaluations()
        outcomes[day] = evaluation
    warned = [d for d, e in outcomes.items() if not e.passed]
    last = outcomes[DAY1 + datetime.timedelta(days=6)]
    assert warned == [DAY1 + datetime.timedelta(days=6)]
    assert last.severity == dg.AssetCheckSeverity.WARN
    assert last.metadata["surging_topics"].value == 1 and last.metadata["large_new_topics"].value == 1
    alerts = {a["kind"]: a for a in last.metadata["alerts"].value}
    assert alerts["surging"]["topic_id"] == "T20250101-03" and alerts["surging"]["surge_z"] > 3
    assert alerts["large new"]["topic_id"] == "T20250107-01" and alerts["large new"]["comments"] == 400
    # the table says the same, and the ids of the steady themes never changed
    rows = (
        query_arrow(db, "SELECT DISTINCT topic_id FROM topics WHERE topic_id IS NOT NULL ORDER BY 1")
        .column("topic_id")
        .to_pylist()
    )
    assert rows == ["T20250101-00", "T20250101-01", "T20250101-02", "T20250101-03", "T20250107-01"]


def test_one_range_run_walks_the_days_in_order_and_gives_the_day_by_day_topics(tmp_path):
    """Issue 13: a backfill runs topics once for its range (single-run backfill policy). The days are
    walked in date order inside it, and every row comes out as in a day-by-day run."""
    rng = np.random.default_rng(11)
    centroids = {c: _unit(c) for c in range(8)}
    plan = []
    for k in range(7):  # themes come and go, sizes drift, a surge on day 6
        sizes = {c: int(rng.integers(120, 300)) for c in range(4 + k % 3)}
        if k == 5:
            sizes[2] = 1500
        plan.append((DAY1 + datetime.timedelta(days=k), sizes))
    roots = {name: str(tmp_path / name) for name in ("daily", "range")}
    for root in roots.values():
        lake = Warehouse.embedded(root)
        for day, sizes in plan:
            lake.replace_partition(day, {"cluster_summaries": ({}, _summaries(sizes, centroids))})
        lake.close()

    def resources(root: str) -> dict:
        return {"warehouse": WarehouseResource(root=root), "embedding": EmbeddingResource()}

    for day, _ in plan:
        dg.materialize([topics], partition_key=day.isoformat(), resources=resources(roots["daily"]))
    first, last = plan[0][0].isoformat(), plan[-1][0].isoformat()
    ranged = dg.materialize(
        [topics, topic_alerts],
        resources=resources(roots["range"]),
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    assert ranged.success
    # every day keeps its own figures and its own check evaluation, as a day-by-day run records them
    materializations = {m.partition: m for m in ranged.asset_materializations_for_node("topics")}
    assert sorted(materializations) == [d.isoformat() for d, _ in plan]
    assert {m.metadata["run/days"].value for m in materializations.values()} == {7}
    rows_per_day = {p: m.metadata["dagster/partition_row_count"].value for p, m in materializations.items()}
    assert rows_per_day == {d.isoformat(): len(s) for d, s in plan}
    evaluations = ranged.get_asset_check_evaluations()
    per_day = {e.partition: e for e in evaluations if e.partition is not None}
    (summary,) = [e for e in evaluations if e.partition is None]  # the run's result: all days together
    assert sorted(per_day) == sorted(materializations)
    alert_days = {p for p, e in per_day.items() if not e.passed}
    assert all(a["day"] == p for p, e in per_day.items() for a in e.metadata["alerts"].value)
    flagged = query_arrow(
        roots["daily"], "SELECT DISTINCT partition_date FROM topics WHERE surging OR large_new"
    ).column("partition_date")
    assert "2025-01-06" in alert_days and not summary.passed
    assert summary.metadata["run/failed_days"].value == len(alert_days)
    assert alert_days == {d.isoformat() for d in flagged.to_pylist()}  # the daily runs' alerts, all of them

    columns = "partition_date, cluster_id, topic_id, status, is_new, first_seen, size, label, surging"
    query = f"SELECT {columns} FROM topics ORDER BY partition_date, cluster_id"
    daily, ranged_rows = (query_arrow(roots[n], query).to_pylist() for n in ("daily", "range"))
    assert len(daily) == sum(len(s) for _, s in plan) and ranged_rows == daily
