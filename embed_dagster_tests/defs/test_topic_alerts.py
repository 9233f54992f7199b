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
import pytest

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


@pytest.mark.parametrize("threshold, continued", [(None, True), ("0.9", False)])
def test_the_match_threshold_setting_decides_whether_a_theme_continues(
    tmp_path, monkeypatch, threshold, continued
):
    """EMBED_DAGSTER_TOPIC_MATCH (a deployment calibrated for another embedding model) replaces the
    code's constant in the run, and the topics code version changes with it."""
    from embed_dagster.defs.versions import code_versions

    monkeypatch.delenv("EMBED_DAGSTER_TOPIC_MATCH", raising=False)
    default_version = code_versions()["topics"]
    if threshold is not None:
        monkeypatch.setenv("EMBED_DAGSTER_TOPIC_MATCH", threshold)
    assert (code_versions()["topics"] == default_version) == (threshold is None)
    db = str(tmp_path / "lake")
    lake = Warehouse.embedded(db)
    resources = {"warehouse": WarehouseResource(root=db), "embedding": EmbeddingResource()}
    base, other = _unit(1), _unit(2)
    other = other - (other @ base) * base
    other /= np.linalg.norm(other)
    # the theme a day later at cosine 0.857: above the constant (0.72), under the setting (0.9) and
    # under the merge threshold (0.92), so a new topic from it stays new; 100 texts at that
    # distance are within the size rule's default limit ((1 - 0.857) * 100 < 20)
    drifted = ((base + 0.6 * other) / np.linalg.norm(base + 0.6 * other)).astype(np.float32)
    assert 0.85 < float(base @ drifted) < 0.86
    for k, centroid in enumerate([base, drifted]):
        day = DAY1 + datetime.timedelta(days=k)
        lake.replace_partition(day, {"cluster_summaries": ({}, _summaries({0: 100}, {0: centroid}))})
        assert dg.materialize([topics], partition_key=day.isoformat(), resources=resources).success
    day2 = DAY1 + datetime.timedelta(days=1)
    (row,) = query_arrow(db, "SELECT status FROM topics WHERE partition_date = ?", [day2]).to_pylist()
    assert row["status"] == ("continued" if continued else "new")


def test_a_topic_threshold_outside_cosine_range_fails_at_load_with_its_name(monkeypatch):
    from embed_dagster.settings import load_settings

    monkeypatch.setenv("EMBED_DAGSTER_TOPIC_MERGE", "1.5")
    with pytest.raises(ValueError, match="EMBED_DAGSTER_TOPIC_MERGE"):
        load_settings()


def test_the_benchmark_prints_settings_that_give_back_its_thresholds(monkeypatch):
    """What `bench_topics` prints for a calibrated model, set in the environment, is the TopicParams
    the topics asset runs with; a size rule the calibration turned off stays off."""
    from embed_dagster.defs.topics.params import topic_env, topic_params

    calibrated = {
        "match_threshold": 0.81,
        "small_join_threshold": 0.77,
        "merge_threshold": 0.93,
        "match_spread": 17.5,
        "spread_ratio": None,
    }
    lines = topic_env(calibrated)
    assert "EMBED_DAGSTER_TOPIC_SPREAD_RATIO=0" in lines
    for line in lines:
        name, value = line.split("=")
        monkeypatch.setenv(name, value)
    params = topic_params()
    assert {k: getattr(params, k) for k in calibrated} == calibrated
