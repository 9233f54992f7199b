"""Issue 14 with Redis in front: a text that only Redis had is cached on its day, on the first run and
on every re-run, although the run copies it into the store with that day as its origin."""

from __future__ import annotations

from datetime import date

import pytest

from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import (
    PARTITIONED_TABLES,
    materialize,
    own_materialization,
    pipeline_resources,
)

pytestmark = pytest.mark.slow  # about 30 s: three materializations and a redis-server

DAY = date(2025, 4, 1)


def _day_rows(lake, table: str) -> list[str]:
    rows = query_arrow(
        lake, f"SELECT * EXCLUDE (partition_date) FROM {table} WHERE partition_date = ?", [DAY]
    )
    return sorted(repr(tuple(r.values())) for r in rows.to_pylist())


def _meta(result, asset: str) -> dict:
    return {k: v.value for k, v in own_materialization(result, asset).metadata.items()}


def test_redis_only_vectors_are_cached_on_every_run_of_the_day(tmp_path, redis_server):
    generate_landing(tmp_path / "landing", DAY, 1, per_day=60, seed=3)
    cache = {"redis_url": redis_server.url}
    # lake A embeds the day (in process) and fills Redis; lake B, a second machine's, shares Redis only
    first = materialize(pipeline_resources(tmp_path / "a", tmp_path / "landing", vector_cache=cache), DAY)
    texts = _meta(first, "fresh_embeddings")["texts_sent"]
    assert first.success and texts > 0
    resources = pipeline_resources(tmp_path / "b", tmp_path / "landing", vector_cache=cache)
    lake = tmp_path / "b"

    runs, rows = [], []
    for _ in range(3):  # the first run copies Redis's vectors into the store; the re-runs find them there
        runs.append(materialize(resources, DAY))
        rows.append({t: _day_rows(lake, t) for t in PARTITIONED_TABLES})
    assert rows[0] == rows[1] == rows[2]
    for result in runs:
        assert result.success
        assert _meta(result, "fresh_embeddings")["texts_sent"] == 0
        assert _meta(result, "fresh_embeddings")["dagster/partition_row_count"] == 0
    assert [_meta(r, "cached_embeddings")["copied_from_redis"] for r in runs] == [texts, 0, 0]
    assert len(rows[0]["cached_embeddings"]) == texts and rows[0]["fresh_embeddings"] == []
    # the copies carry the day as origin and no truncated flag: not embedded by this lake
    stored = query_arrow(
        lake,
        "SELECT count(*) AS n, count(*) FILTER (WHERE first_partition_date = ? AND truncated IS NULL) "
        "AS copied FROM embedding_store",
        [DAY],
    ).to_pylist()[0]
    assert stored == {"n": texts, "copied": texts}
