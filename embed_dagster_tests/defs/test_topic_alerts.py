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
