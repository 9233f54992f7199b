import subprocess
import sys
import textwrap
import time
from datetime import date

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from embed_dagster.core.model_key import ModelKey
from embed_dagster.core.warehouse.storage import (
    StorageError,
    connect,
    count_rows,
    validate_identifier,
    write_partition,
)
from embed_dagster.core.warehouse.vector_store import VectorStore

D1, D2 = date(2025, 1, 1), date(2025, 1, 2)


def _texts(n, prefix="h"):
    return pa.table(
        {
            "text_hash": [f"{prefix}{i}" for i in range(n)],
            "text": [f"t{i}" for i in range(n)],
            "comment_count": pa.array([1] * n, pa.int64()),
            "normalization_version": pa.array([1] * n, pa.int32()),
        }
    )


def test_write_partition_replaces_only_that_partition(tmp_path):
    db = tmp_path / "w.duckdb"
    write_partition(db, D1, {"deduplicated_texts": ({}, _texts(3))})
    write_partition(db, D2, {"deduplicated_texts": ({}, _texts(5))})
    write_partition(db, D1, {"deduplicated_texts": ({}, _texts(2))})
    assert count_rows(db, "deduplicated_texts", D1) == 2
    assert count_rows(db, "deduplicated_texts", D2) == 5


def test_write_partition_is_atomic_across_tables(tmp_path):
    db = tmp_path / "w.duckdb"
    write_partition(db, D1, {"deduplicated_texts": ({}, _texts(3))})
    bad = pa.table({"comment_id": ["a"], "no_such_column": ["x"]})
    with pytest.raises(duckdb.Error):
        write_partition(db, D1, {"deduplicated_texts": ({}, _texts(1)), "comment_texts": ({}, bad)})
    # The failed second table rolled back the first table's delete and insert too.
    assert count_rows(db, "deduplicated_texts", D1) == 3


def test_quarantine_keyed_by_source_asset(tmp_path):
    db = tmp_path / "w.duckdb"

    def rows(n):
        return pa.table({"raw": [f"r{i}" for i in range(n)], "reason": ["x"] * n})

    write_partition(db, D1, {"quarantine": ({"source_asset": "raw_comments"}, rows(2))})
    write_partition(db, D1, {"quarantine": ({"source_asset": "fresh_embeddings"}, rows(1))})
    write_partition(db, D1, {"quarantine": ({"source_asset": "raw_comments"}, rows(4))})
    assert count_rows(db, "quarantine", D1) == 5


@pytest.mark.parametrize("name", ["raw comments", "x;drop table y", "", "1abc", "a" * 80, "t\u00e9"])
def test_validate_identifier_rejects(name):
    with pytest.raises(ValueError):
        validate_identifier(name)


@pytest.mark.integration
def test_connect_waits_for_another_process_lock(tmp_path):
    db = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, time
                con = duckdb.connect({str(db)!r})
                print("locked", flush=True)
                time.sleep(1.5)
                con.close()
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with connect(db, retry_s=30) as con:
        assert con.execute("select 42").fetchone()[0] == 42
    holder.wait(timeout=30)


@pytest.mark.integration
def test_connect_gives_a_clear_error_when_lock_is_held_too_long(tmp_path):
    db = tmp_path / "w.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('x', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        started = time.monotonic()
        with pytest.raises(StorageError, match="stayed locked"):
            with connect(db, retry_s=0.5):
                pass
        assert time.monotonic() - started < 20
    finally:
        holder.kill()
        holder.wait()


def test_vector_store_roundtrip_and_isolation(tmp_path):
    store = VectorStore(tmp_path / "w.duckdb")
    a = ModelKey("m", 4, None, 1).id
    b = ModelKey("m", 4, "cluster these", 1).id
    assert a != b
    m = np.eye(4, dtype=np.float32)[:3]
    assert store.save(a, ["x", "y", "z"], m) == 3
    assert store.save(a, ["x", "w"], np.eye(4, dtype=np.float32)[:2]) == 1  # x already stored: ignored
    hashes, matrix = store.lookup(a, ["z", "x", "nope"])
    assert hashes == ["x", "z"]
    np.testing.assert_allclose(matrix, m[[0, 2]])
    assert store.lookup(b, ["x"])[0] == []
    assert store.existing(a, ["x", "q"]) == {"x"}
