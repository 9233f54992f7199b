"""Issue 13: the CLI path. `dagster asset materialize --select '*' --partition-range A...B` runs the
whole lineage for a range of days in one run (every asset has a single-run backfill policy by
default), and the instance records every day on its own, as the UI shows a day-by-day run.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.event_api import PartitionKeyFilter

from embed_dagster.dev.local_server import MODEL_NAME
from embed_dagster.dev.sample_data import generate_landing
from embed_dagster_tests.support.dagster_procs import clean_env
from embed_dagster_tests.support.defs import ASSETS
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import ORDER_FREE_TABLES, materialize, pipeline_resources

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
FIRST = date(2025, 2, 1)
DAYS = [FIRST + timedelta(days=i) for i in range(3)]
LINEAGE = [a.key.to_user_string() for a in ASSETS]
CHECKS = [
    ("clusters", "conservation"),
    ("fresh_embeddings", "coverage"),
    ("fresh_embeddings", "vector_sanity"),
    ("clusters", "clustering_health"),
    ("topics", "topic_alerts"),
]


def _counts(db: str, table: str) -> dict[str, int]:
    rows = query_arrow(db, f"SELECT partition_date AS d, count(*) AS n FROM {table} GROUP BY 1").to_pylist()
    return {r["d"].isoformat(): r["n"] for r in rows}


def test_partition_range_over_the_whole_lineage_is_one_run_with_every_day_recorded(tmp_path, local_server):
    landing, home = tmp_path / "landing", tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster.yaml").read_text())
    generate_landing(landing, FIRST, len(DAYS), per_day=150, seed=5)
    env = clean_env(
        DAGSTER_HOME=str(home),
        EMBED_DAGSTER_LAKE=str(tmp_path / "lake"),
        EMBED_DAGSTER_LANDING=str(landing),
        SGLANG_BASE_URL=local_server.base_url,
        SGLANG_MODEL=MODEL_NAME,
    )
    command = [
        str(Path(sys.executable).with_name("dagster")),
        "asset",
        "materialize",
        "-m",
        "embed_dagster.definitions",
        "--select",
        "*",
        "--partition-range",
        f"{DAYS[0]}...{DAYS[-1]}",
    ]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS
        assert runs[0].tags["dagster/asset_partition_range_start"] == DAYS[0].isoformat()
        days = [d.isoformat() for d in DAYS]
        for asset in LINEAGE:
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
            by_day = {r.partition_key: r.asset_materialization.metadata for r in records}
            assert sorted(by_day) == days, asset
            # each day's own row count, not one figure stamped on every day of the range
            if asset != "topics":
                counts = _counts(str(tmp_path / "lake"), asset)
                rows = {d: m["dagster/partition_row_count"].value for d, m in by_day.items()}
                assert rows == {d: counts.get(d, 0) for d in days}, asset
        for asset, check in CHECKS:
            key = dg.AssetCheckKey(dg.AssetKey(asset), check)
            for day in days:
                record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                    [key], partition_filter=PartitionKeyFilter(key=day)
                ).get(key)
                assert record is not None and record.event is not None, (check, day)
                evaluation = record.event.dagster_event.asset_check_evaluation_data
                assert evaluation.partition == day
                if check not in ("clustering_health", "topic_alerts"):  # warnings: the data decides
                    assert evaluation.passed, (check, day, evaluation.metadata)

    # the same tables as the days run one by one
    reference = tmp_path / "reference"
    resources = pipeline_resources(reference, landing, base_url=local_server.base_url, model=MODEL_NAME)
    assert all(materialize(resources, day).success for day in DAYS)
    for table in [*ORDER_FREE_TABLES, "cached_embeddings", "fresh_embeddings"]:
        assert _counts(str(tmp_path / "lake"), table) == _counts(str(reference), table), table
    sql = "SELECT partition_date, cluster_id, topic_id, is_new, size FROM topics ORDER BY ALL"
    assert (
        query_arrow(str(tmp_path / "lake"), sql).to_pylist() == query_arrow(str(reference), sql).to_pylist()
    )
