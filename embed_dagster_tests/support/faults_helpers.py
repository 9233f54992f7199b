"""Shared pieces of the fault suite: landing days, resources, runs, and the ledger of every row.

The ledger is computed from the warehouse, independently of the ``conservation`` check it mirrors,
so a bug in the check cannot hide a lost row from the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pyarrow as pa

from embed_dagster.core.warehouse.lake import WarehouseError
from embed_dagster.core.warehouse.vector_store import arrow_to_matrix
from embed_dagster.defs.resources import (
    EmbeddingResource,
)
from embed_dagster_tests.support.fault_server import expected_vector
from embed_dagster_tests.support.lake import query_arrow
from embed_dagster_tests.support.pipeline import materialize as support_materialize
from embed_dagster_tests.support.pipeline import pipeline_resources

REPO = Path(__file__).resolve().parents[2]
FAULT_MODEL = "fault-model"
DIM = 64  # small vectors: the fault server's answers are hash-seeded, any size proves the point
TOPICS = ["delivery", "refund", "app crash", "battery", "customer service", "price", "快递", "退款"]


def day_texts(day: date, n: int, distinct: int | None = None) -> list[str]:
    """``n`` comments over ``distinct`` texts (about 2/3 of n by default), unique to the day."""
    distinct = distinct or max(1, (2 * n) // 3)
    return [
        f"{TOPICS[k % len(TOPICS)]} comment {k} from {day.isoformat()}"
        for k in (i % distinct for i in range(n))
    ]


def write_day(landing: Path, day: date, n: int, distinct: int | None = None, extra: list[str] = ()) -> int:
    """One JSON Lines file of ``n`` comments (plus ``extra`` texts); returns the rows written."""
    folder = Path(landing) / "comments" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    texts = [*day_texts(day, n, distinct), *extra]
    with open(folder / "comments.jsonl", "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            row = {
                "comment_id": f"{day:%Y%m%d}-{i:05d}",
                "created_at": f"{day.isoformat()}T08:00:00Z",
                "text": text,
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(texts)


def make_resources(
    db: Path | str,
    landing: Path | str,
    base_url: str,
    *,
    model: str = FAULT_MODEL,
    dimensions: int = DIM,
    redis_url: str | None = None,
    redis_password: str | None = None,
    **embedding: object,
) -> dict:
    settings = {
        "batch_size": 8,
        "max_concurrency": 2,
        "timeout_s": 5.0,
        "max_retries": 4,
        "deadline_s": 120.0,
    }
    settings.update(embedding)
    return pipeline_resources(
        db,
        landing,
        warehouse={"lock_timeout_s": 120.0},
        vector_cache={"redis_url": redis_url, "redis_password": redis_password},
        base_url=base_url,
        model=model,
        dimensions=dimensions,
        **settings,
    )


def materialize(resources: dict, day: date | str, instance: dg.DagsterInstance | None = None):
    return support_materialize(resources, day, instance=instance, raise_on_error=False)


def check_results(result) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def assert_checks_pass(result, names=("conservation", "coverage", "vector_sanity")) -> None:
    checks = check_results(result)
    assert all(checks.get(n) for n in names), checks


def asset_metadata(result, asset: str) -> dict:
    # the step also records its side tables (quarantine, ...): take the asset's own event
    for m in result.asset_materializations_for_node(asset):
        if m.asset_key == dg.AssetKey(asset):
            return {k: v.value for k, v in m.metadata.items()}
    raise AssertionError(f"{asset} was not materialized")


def step_failures(result) -> dict[str, str]:
    """Failed step -> the message a user reads (a dg.Failure's description, else the error message)."""
    out = {}
    for e in result.all_events:
        if e.event_type_value == "STEP_FAILURE":
            data = e.step_failure_data
            desc = data.user_failure_data.description if data.user_failure_data else None
            out[e.step_key] = desc or (data.error.message if data.error else "")
    return out


def query(db: Path | str, sql: str, params: list | dict | None = None) -> pa.Table:
    """A read-only query on the lake for assertions, through the Warehouse (as an analyst reads)."""
    return query_arrow(db, sql, params)


def scalar(db: Path | str, sql: str, params: list | dict | None = None) -> dict:
    return query(db, sql, params).to_pylist()[0]


def ledger(db: Path | str, day: date, rows_in_landing: int | None = None) -> dict[str, int]:
    """Where every landing row of ``day`` went; ``lost``/``duplicated`` must both be 0.

    rows_in_landing: what the test wrote, when it knows; otherwise what ingest says it read.
    duplicated counts a comment clustered twice, clustered and also set aside after ingest, a
    landing row quarantined twice, a comment_id twice in raw_comments, and a vector stored twice.
    """
    n = scalar(
        db,
        """SELECT
             (SELECT count(*) FROM raw_comments WHERE partition_date = $d) AS raw,
             (SELECT count(*) FROM quarantine WHERE partition_date = $d AND source_asset = 'raw_comments')
                 AS quarantined_at_ingest,
             (SELECT count(*) FROM quarantine WHERE partition_date = $d) AS quarantined,
             (SELECT count(*) FROM clusters WHERE partition_date = $d) AS clustered,
             (SELECT count(*) - count(DISTINCT comment_id) FROM clusters WHERE partition_date = $d)
                 AS clustered_twice,
             (SELECT count(*) FROM clusters c JOIN quarantine q
                ON q.partition_date = c.partition_date AND q.comment_id = c.comment_id
               WHERE c.partition_date = $d AND q.source_asset <> 'raw_comments') AS clustered_and_quarantined,
             (SELECT count(*) - count(DISTINCT (source_file, source_row)) FROM quarantine
               WHERE partition_date = $d AND source_row IS NOT NULL) AS quarantined_twice,
             (SELECT count(*) - count(DISTINCT comment_id) FROM raw_comments WHERE partition_date = $d)
                 AS raw_id_twice,
             (SELECT count(*) - count(DISTINCT (model_key, text_hash)) FROM embedding_store)
                 AS stored_twice""",
        {"d": day},
    )
    read = n["raw"] + n["quarantined_at_ingest"]
    landing = read if rows_in_landing is None else rows_in_landing
    n["rows_read"] = read
    n["rows_in_landing"] = landing
    n["lost"] = landing - n["clustered"] - n["quarantined"]
    n["duplicated"] = (
        n["clustered_twice"]
        + n["clustered_and_quarantined"]
        + n["quarantined_twice"]
        + n["raw_id_twice"]
        + n["stored_twice"]
    )
    return n


def account(figures, db: Path | str, day: date, rows_in_landing: int | None = None) -> dict[str, int]:
    """Measure the ledger, add lost/duplicated to the figures, then assert both are 0."""
    n = ledger(db, day, rows_in_landing)
    figures.add("rows_lost", max(n["lost"], 0) + max(-n["lost"], 0))
    figures.add("rows_duplicated", n["duplicated"])
    assert n["lost"] == 0 and n["duplicated"] == 0, n
    return n


def day_vectors(db: Path | str, day: date, model_key: str, dim: int) -> tuple[list[str], np.ndarray]:
    """The day's distinct texts and the stored vector of each (every text must have one)."""
    t = query(
        db,
        """SELECT d.text, s.vector FROM deduplicated_texts d JOIN embedding_store s
             ON s.text_hash = d.text_hash AND s.model_key = ?
           WHERE d.partition_date = ? ORDER BY d.text_hash""",
        [model_key, day],
    )
    return t.column("text").to_pylist(), arrow_to_matrix(t.column("vector"), dim)


def wrong_vectors(db: Path | str, day: date, model_key: str, dim: int) -> int:
    """Stored vectors that differ from what a correct fault server answer holds for their text.

    A vector stored under another text's key (shuffled indices misread, a batch misaligned) fails
    this: every text's vector is seeded by the text itself.
    """
    texts, matrix = day_vectors(db, day, model_key, dim)
    assert texts, "no vectors stored for the day"
    want = np.stack([expected_vector(t, dim) for t in texts])
    return int((~np.isclose(matrix, want, atol=1e-6).all(axis=1)).sum())


def model_key_id(resources: dict) -> str:
    return resources["embedding"].model_key().id


def fault_model_key(dimensions: int = DIM) -> str:
    """The model key the fault server's vectors are stored under with the suite's settings."""
    return (
        EmbeddingResource(base_url="http://127.0.0.1:1", model=FAULT_MODEL, dimensions=dimensions)
        .model_key()
        .id
    )


# ---------------------------------------------------------------------- subprocess runs


def run_config(db, landing, base_url, partitions, **extra) -> dict:
    return {
        "db": str(db),
        "landing": str(landing),
        "base_url": base_url,
        "partitions": list(partitions),
        **extra,
    }


def spawn(config: dict, log_path: Path) -> subprocess.Popen:
    """Start ``python -m embed_dagster_tests.support.faults_run`` (its own process, as a Dagster run)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("DAGSTER_HOME", None)  # ephemeral instance: runs must not touch a developer's instance
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the child's exit; kept for the test to read
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "embed_dagster_tests.support.faults_run", json.dumps(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO),
            env=env,
            start_new_session=True,
        )
    finally:
        log.close()


def results_from_log(log_path: Path) -> list[dict]:
    out = []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if line.startswith("FAULTS_RUN_RESULT "):
            out.append(json.loads(line.split(" ", 1)[1]))
    return out


def wait_all(procs: list[subprocess.Popen], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(0.1, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


def read_only_scalar(db: Path | str, sql: str, timeout_s: float = 0.5):
    """A read while another process may be writing; None while the lake or the table does not exist
    yet (callers poll). Readers never wait for writers on the lake, so there is no lock to retry."""
    try:
        return query_arrow(db, sql).column(0)[0].as_py()
    except (WarehouseError, duckdb.CatalogException):
        return None


def wait_for_saved_vectors(proc: subprocess.Popen, db: Path | str, timeout_s: float = 180.0) -> int | None:
    """Poll the store of a run in another process until it has checkpointed some vectors.

    Returns how many it saw, or None if the run exited (or the time ran out) first.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        saved = read_only_scalar(db, "SELECT count(*) FROM embedding_store")
        if saved:
            return saved
        time.sleep(0.05)
    return None
