"""The Warehouse on a real DuckLake lake on disk (SQLite catalog + Parquet files)."""

import logging
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from embed_dagster.core.model_key import ModelKey
from embed_dagster.core.warehouse import lake as lake_module
from embed_dagster.core.warehouse.lake import (
    LakeConfig,
    Warehouse,
    WarehouseError,
    bundled_extension_directory,
    scrub,
    validate_identifier,
)

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


@pytest.fixture
def wh(tmp_path):
    with Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30) as warehouse:
        yield warehouse


def test_extensions_come_from_the_wheels_and_unsigned_stay_off(wh):
    assert (bundled_extension_directory()).is_dir()
    with wh.session() as cur:
        rows = cur.execute(
            "SELECT extension_name, loaded, install_path FROM duckdb_extensions() "
            "WHERE extension_name IN ('ducklake', 'sqlite_scanner')"
        ).fetchall()
        unsigned = cur.execute("SELECT current_setting('allow_unsigned_extensions')").fetchone()[0]
    assert {name: loaded for name, loaded, _ in rows} == {"ducklake": True, "sqlite_scanner": True}
    assert all(path.startswith(str(bundled_extension_directory())) for _, _, path in rows)
    assert unsigned is False


def test_replace_partition_replaces_only_that_partition_one_snapshot_each(wh):
    s1 = wh.replace_partition(D1, {"deduplicated_texts": _texts(3)})
    s2 = wh.replace_partition(D2, {"deduplicated_texts": _texts(5)})
    s3 = wh.replace_partition(D1, {"deduplicated_texts": _texts(2)})
    assert s1 < s2 < s3
    assert wh.row_counts("deduplicated_texts", D1) == (2, 7)
    assert wh.count_rows("deduplicated_texts", D2) == 5
    # The "as of" recipe of docs/warehouse.md: the day before the re-run.
    before = wh.sql(
        f"SELECT count(*) AS n FROM deduplicated_texts AT (VERSION => {s2}) WHERE partition_date = ?", [D1]
    )
    assert before.column("n")[0].as_py() == 3


def test_replace_partition_is_atomic_across_tables(wh):
    wh.replace_partition(D1, {"deduplicated_texts": _texts(3)})
    snapshot = wh.current_snapshot()
    bad = pa.table({"comment_id": ["a"], "no_such_column": ["x"]})
    with pytest.raises(duckdb.Error):
        wh.replace_partition(D1, {"deduplicated_texts": _texts(1), "comment_texts": bad})
    # The failed second table rolled back the first table's delete and insert: no new snapshot.
    assert wh.count_rows("deduplicated_texts", D1) == 3
    assert wh.current_snapshot() == snapshot


def test_quarantine_keyed_by_source_asset(wh):
    def rows(n):
        return pa.table({"raw": [f"r{i}" for i in range(n)], "reason": ["x"] * n})

    wh.replace_partition(D1, {"quarantine": ({"source_asset": "raw_comments"}, rows(2))})
    wh.replace_partition(D1, {"quarantine": ({"source_asset": "fresh_embeddings"}, rows(1))})
    wh.replace_partition(D1, {"quarantine": ({"source_asset": "raw_comments"}, rows(4))})
    assert wh.count_rows("quarantine", D1) == 5


@pytest.mark.parametrize("name", ["raw comments", "x;drop table y", "", "1abc", "a" * 80, "t\u00e9"])
def test_validate_identifier_rejects(name):
    with pytest.raises(ValueError):
        validate_identifier(name)


def test_unknown_table_is_refused(wh):
    with pytest.raises(ValueError, match="unknown table"):
        wh.replace_partition(D1, {"no_such_table": _texts(1)})
    with pytest.raises(ValueError, match="unknown table"):
        wh.row_counts("no_such_table", D1)


def test_schema_is_ensured_once_per_process(tmp_path, monkeypatch):
    first = Warehouse.embedded(tmp_path / "lake")
    first.ensure_schema()
    key = (first.config.catalog, first.config.data_path)
    assert key in lake_module._ENSURED
    second = Warehouse.embedded(tmp_path / "lake")

    def no_ddl(*args, **kwargs):
        raise AssertionError("schema DDL ran again in the same process")

    monkeypatch.setattr(second, "_transaction", no_ddl)
    assert second.partition_hashes(D1) == []  # reads without re-running the DDL
    first.close()
    second.close()


def test_steps_share_the_process_connection(tmp_path, monkeypatch):
    """Every step gets ``with_log`` clones of the shared Warehouse: they must reuse its one
    connection, not attach the lake again (a copied ``None`` used to cost each step an ATTACH)."""
    opened = []
    real_connect = Warehouse._connect

    def counting_connect(self):
        opened.append(self)
        return real_connect(self)

    monkeypatch.setattr(Warehouse, "_connect", counting_connect)
    config = LakeConfig.embedded(tmp_path / "lake")
    shared = Warehouse.shared(config)
    try:
        step_one = shared.with_log(logging.getLogger("step-one"))
        step_one.replace_partition(D1, {"deduplicated_texts": _texts(3)})
        step_two = shared.with_log(logging.getLogger("step-two"))
        assert step_two.partition_hashes(D1) == ["h0", "h1", "h2"]
        assert shared.partition_hashes(D1) == ["h0", "h1", "h2"]
        assert len(opened) == 1
        step_two.close()  # closes the one connection; the next use opens a new one
        assert step_one.partition_hashes(D1) == ["h0", "h1", "h2"]
        assert len(opened) == 2
    finally:
        shared.close()


def test_vector_store_roundtrip_isolation_and_repeated_rows(wh):
    a = ModelKey("m", 4, None, 1).id
    b = ModelKey("m", 4, "cluster these", 1).id
    m = np.eye(4, dtype=np.float32)[:3]
    assert wh.save(a, ["x", "y", "z"], m, partition_date=D1) == 3
    # x already stored: not again
    assert wh.save(a, ["x", "w"], np.eye(4, dtype=np.float32)[:2], partition_date=D1) == 1
    hashes, matrix = wh.lookup(a, ["z", "x", "nope"])
    assert hashes == ["x", "z"]
    np.testing.assert_allclose(matrix, m[[0, 2]])
    assert wh.lookup(b, ["x"])[0] == []
    assert wh.existing(a, ["x", "q"]) == {"x"}
    # Two runs racing may both insert a vector (no primary keys in DuckLake): reads take it once.
    wh._transaction(
        lambda cur: cur.execute(
            "INSERT INTO embedding_store SELECT * REPLACE (now() AS created_at) "
            "FROM embedding_store WHERE text_hash = 'x'"
        ),
        what="test: a repeated vector",
    )
    assert (
        wh.sql("SELECT count(*) AS n FROM embedding_store WHERE text_hash = 'x'").column("n")[0].as_py() == 2
    )
    hashes, matrix = wh.lookup(a, ["x", "z"])
    assert hashes == ["x", "z"] and matrix.shape == (2, 4)
    wh.replace_partition(
        D1,
        {
            "deduplicated_texts": pa.table(
                {"text_hash": ["x", "z"], "text": ["X", "Z"], "comment_count": pa.array([1, 1], pa.int64())}
            )
        },
    )
    texts, vectors = wh.vectors_for_day(D1, a, 4)
    assert texts.column("text_hash").to_pylist() == ["x", "z"] and vectors.shape == (2, 4)


def test_register_model_key_is_idempotent(wh):
    key = ModelKey("m", 4, None, 1)
    wh.register_model_key(key)
    wh.register_model_key(key)
    assert wh.count_rows("model_keys") == 1


def _interfering_rows(tmp_path, times):
    """Rows for replace_partition that, while the transaction is open, let another process-like
    writer (a second DuckDB instance on the same lake) commit the same day first, ``times`` times."""
    other = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30, writer_lock=False)
    calls = {"n": 0}

    def rows(tx):
        tx.partition_hashes(D1)  # pin this transaction's snapshot before the other commit
        if calls["n"] < times:
            other.replace_partition(D1, {"deduplicated_texts": _texts(7, prefix="other")})
        calls["n"] += 1
        return _texts(3)

    return other, calls, rows


def test_commit_conflict_is_retried_and_the_day_ends_with_one_copy(tmp_path, caplog):
    # The retries a PostgreSQL catalog relies on; the SQLite catalog's writer lock is off to provoke them.
    wh = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30, writer_lock=False)
    wh.replace_partition(D1, {"deduplicated_texts": _texts(2)})
    other, calls, rows = _interfering_rows(tmp_path, times=1)
    with caplog.at_level(logging.WARNING):
        wh.replace_partition(D1, {"deduplicated_texts": rows})
    assert calls["n"] == 2 and wh.commit_retries == 1
    assert "commit conflict" in caplog.text and "writing deduplicated_texts for 2025-01-01" in caplog.text
    assert wh.partition_hashes(D1) == ["h0", "h1", "h2"]  # this run's copy, once; the other's is gone
    other.close()
    wh.close()


def test_commit_conflict_wait_is_bounded_by_the_configured_limit(tmp_path):
    wh = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=0.5, writer_lock=False)
    wh.replace_partition(D1, {"deduplicated_texts": _texts(2)})
    other, calls, rows = _interfering_rows(tmp_path, times=10_000)
    with pytest.raises(WarehouseError, match=r"gave up after \d+ attempts .*commit_timeout_s=0.5s"):
        wh.replace_partition(D1, {"deduplicated_texts": rows})
    assert calls["n"] >= 1
    assert wh.count_rows("deduplicated_texts", D1) == 7  # the other writer's copy, once
    other.close()
    wh.close()


def test_writer_lock_makes_a_second_writer_wait_for_the_first_commit(tmp_path, caplog):
    """With the embedded catalog's writer lock (the default), the same interleaving that conflicts
    above cannot happen: the second writer waits for the open transaction and commits after it."""
    wh = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30)
    wh.replace_partition(D1, {"deduplicated_texts": _texts(2)})
    other = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=0.3)

    def rows(tx):
        with pytest.raises(WarehouseError, match="writer lock"):
            other.replace_partition(D1, {"deduplicated_texts": _texts(7, prefix="other")})
        return _texts(3)

    wh.replace_partition(D1, {"deduplicated_texts": rows})
    assert wh.commit_retries == 0 and wh.partition_hashes(D1) == ["h0", "h1", "h2"]
    other.replace_partition(D1, {"deduplicated_texts": _texts(7, prefix="other")})  # lock free again
    assert wh.count_rows("deduplicated_texts", D1) == 7
    other.close()
    wh.close()


def test_read_only_session_cannot_write(tmp_path):
    Warehouse.embedded(tmp_path / "lake").replace_partition(D1, {"deduplicated_texts": _texts(2)})
    reader = Warehouse.embedded(tmp_path / "lake", read_only=True)
    assert reader.count_rows("deduplicated_texts", D1) == 2
    with pytest.raises(WarehouseError, match="read-only"):
        reader.replace_partition(D1, {"deduplicated_texts": _texts(1)})
    with pytest.raises(duckdb.Error):
        reader.sql("DELETE FROM deduplicated_texts")
    assert reader.count_rows("deduplicated_texts", D1) == 2
    reader.close()


def test_views_for_analysts(wh):
    wh.replace_partition(
        D1,
        {
            "clusters": pa.table(
                {"comment_id": ["c1"], "text_hash": ["h"], "cluster_id": pa.array([0], pa.int32())}
            )
        },
    )
    row = wh.sql("SELECT * FROM comment_topics").to_pylist()
    assert row == [
        {"partition_date": D1, "comment_id": "c1", "cluster_id": 0, "topic_id": None, "label": None}
    ]
    assert wh.sql("SELECT * FROM topic_registry").num_rows == 0


def test_the_report_counts_new_topics_not_their_clusters(wh):
    """The topics table has a row per cluster: one new topic of three clusters was reported as
    three new topics by `make demo` (stop 25)."""
    wh.replace_partition(
        D1,
        {
            "topics": pa.table(
                {
                    "topic_id": ["T1", "T1", "T1", "T2", "T0"],
                    "cluster_id": pa.array([0, 1, 2, 3, 4], pa.int32()),
                    "is_new": [True, True, True, True, False],
                }
            )
        },
    )
    assert wh.partition_figures(D1)["new_topics"] == 2


def test_merged_topics_count_under_the_topic_they_live_on_in(wh):
    """Stop-25 review: topic_registry grouped by the raw id, so a topic merged into another stayed a
    topic of its own and its comments were left out of the survivor's total; comment_topics and the
    trend chart showed the absorbed id. Merges chain across days (C into B on day 2, B into A on
    day 3)."""
    D3 = D1 + timedelta(days=2)

    def topics(ids, sizes, absorbed):
        return pa.table(
            {
                "topic_id": ids,
                "cluster_id": pa.array(range(len(ids)), pa.int32()),
                "size": [float(x) for x in sizes],
                "label": [f"label {i}" for i in ids],
                "absorbed": pa.array(absorbed, pa.list_(pa.string())),
            }
        )

    wh.replace_partition(D1, {"topics": topics(["A", "B", "C"], [10, 20, 30], [[], [], []])})
    wh.replace_partition(D2, {"topics": topics(["A", "B"], [5, 7], [[], ["C"]])})
    wh.replace_partition(D3, {"topics": topics(["A"], [4], [["B"]])})
    wh.replace_partition(
        D1,
        {
            "clusters": pa.table(
                {"comment_id": ["c1"], "text_hash": ["h"], "cluster_id": pa.array([2], pa.int32())}
            )
        },
    )
    registry = {r["topic_id"]: r for r in wh.sql("SELECT * FROM topic_registry").to_pylist()}
    assert set(registry) == {"A"}
    assert registry["A"]["total_size"] == 76 and registry["A"]["days_seen"] == 3
    assert wh.sql("SELECT topic_id FROM comment_topics").to_pylist() == [{"topic_id": "A"}]
    trend = wh.topic_trend_rows(D1, D3)
    assert {(r["partition_date"], r["topic_id"], r["size"]) for r in trend} == {
        (D1, "A", 60.0),
        (D2, "A", 12.0),
        (D3, "A", 4.0),
    }
    # as of day 2, B had not been merged yet: the chart drawn then shows it
    assert {r["topic_id"] for r in wh.topic_trend_rows(D1, D2)} == {"A", "B"}


def test_maintenance_merges_files_and_expires_snapshots(wh):
    for n in range(1, 6):
        wh.replace_partition(D1, {"deduplicated_texts": _texts(n)})
        wh.replace_partition(D2, {"deduplicated_texts": _texts(n)})
    stats = wh.maintain(expire_older_than=timedelta(0), delete_files_older_than=timedelta(0))
    assert stats["files_after"] < stats["files_before"]
    assert stats["snapshots_expired"] > 0 and stats["files_deleted"] > 0
    assert wh.row_counts("deduplicated_texts", D1) == (5, 10)
    assert wh.file_stats()["files"] == stats["files_after"]


def test_maintenance_deletes_files_a_killed_write_left_and_keeps_files_being_written(wh):
    """A write killed before its COMMIT leaves its Parquet files; cleanup_old_files never sees them
    (1.15 MB per killed write stayed for good: stop-25 adversarial pass). Past the grace they go; a
    file a running job has written but not committed is younger and stays."""
    import os
    import time

    wh.replace_partition(D1, {"deduplicated_texts": _texts(3)})
    folder = next((wh_root := Path(wh.config.data_path)).rglob("*.parquet")).parent
    killed = folder / "ducklake-killed-write.parquet"
    killed.write_bytes(b"PAR1")
    old = time.time() - 2 * 86400
    os.utime(killed, (old, old))
    in_flight = folder / "ducklake-in-flight.parquet"
    in_flight.write_bytes(b"PAR1")
    stats = wh.maintain(expire_older_than=timedelta(days=30), delete_files_older_than=timedelta(0))
    assert stats["orphaned_files_deleted"] == 1 and not killed.exists() and in_flight.exists()
    assert wh.row_counts("deduplicated_texts", D1) == (3, 3)
    assert len(list(wh_root.rglob("*.parquet"))) == 2  # the day's file and the one in flight


def test_maintenance_waits_for_the_writer_lock(tmp_path, monkeypatch):
    """Run beside a writer on the SQLite catalog, the expire and cleanup calls took no writer lock:
    "database is locked" failed the step and pushed the writer into commit conflicts (stop 25)."""
    wh = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30)
    wh.replace_partition(D1, {"deduplicated_texts": _texts(2)})
    other = Warehouse.embedded(tmp_path / "lake", commit_timeout_s=0.3)

    def rows(tx):
        with pytest.raises(WarehouseError, match="writer lock"):
            other.maintain(expire_older_than=timedelta(0), delete_files_older_than=timedelta(0))
        return _texts(3)

    wh.replace_partition(D1, {"deduplicated_texts": rows})
    writes, transaction = [], other._transaction
    monkeypatch.setattr(
        other, "_transaction", lambda body, **kw: writes.append(kw["what"]) or transaction(body, **kw)
    )
    stats = other.maintain(expire_older_than=timedelta(0), delete_files_older_than=timedelta(0))
    assert stats["snapshots_expired"] > 0 and wh.row_counts("deduplicated_texts", D1) == (3, 3)
    # every call that writes the catalog goes through the writer lock and the conflict retries
    assert writes == [
        "merging small files",
        "expiring snapshots",
        "deleting expired files",
        "deleting orphaned files",
    ]
    other.close()
    wh.close()


def test_an_object_store_data_path_loads_httpfs(tmp_path):
    """Stop 25: with autoloading off, httpfs was never loaded, so an s3:// lake failed to open in the
    repository mode the docs give for it ("requires the extension httpfs to be loaded"). It is now
    loaded with the others; the bundled wheels do not carry it, which the error says at LOAD."""
    config = LakeConfig(catalog=f"sqlite:{tmp_path / 'catalog.sqlite'}", data_path="s3://bucket/lake/")
    with pytest.raises(WarehouseError) as failed:
        Warehouse(config).ensure_schema()
    message = str(failed.value)
    assert "httpfs" in message and "requires the extension httpfs to be loaded" not in message


def test_password_never_reaches_labels_or_errors(tmp_path):
    config = LakeConfig(
        catalog="postgres:dbname=lake host=127.0.0.1 port=1 connect_timeout=1",
        data_path=str(tmp_path / "files") + "/",
        catalog_password="s3cr3t-pw",
    )
    assert "s3cr3t-pw" not in repr(config) and "s3cr3t-pw" not in config.label()
    assert scrub("x password=abc y", config) == "x password=*** y"
    assert scrub("x password='a b\\'c' y", config) == "x password=*** y"  # libpq's quoted form, whole
    uri = LakeConfig(catalog="postgres:postgresql://lake:urlpw@127.0.0.1:1/lake", data_path="/x/")
    assert "urlpw" not in uri.label() and "lake:***@127.0.0.1" in uri.label()  # the URI form
    with pytest.raises(WarehouseError) as info:
        Warehouse(config).partition_hashes(D1)
    assert "s3cr3t-pw" not in str(info.value)


def test_a_view_made_by_an_older_definition_is_replaced_and_a_current_one_is_left(tmp_path):
    """topic_registry counted rows per (day, cluster) as days and listed emerging clusters as a topic;
    views were only created when missing, so a fix never reached a lake (stop-24 adversarial pass)."""
    old = "SELECT topic_id, count(*) AS days_seen FROM topics GROUP BY topic_id"
    wh = Warehouse.embedded(tmp_path / "lake")
    wh.ensure_schema()
    topics = pa.table(
        {
            "topic_id": ["T1", "T1", None],
            "cluster_id": pa.array([0, 1, 2], pa.int32()),
            "first_seen": [D1] * 3,
            "size": [3.0, 2.0, 1.0],
        }
    )
    wh.replace_partition(D1, {"topics": ({}, topics)})
    with wh.session() as cur:
        cur.execute(f"CREATE OR REPLACE VIEW topic_registry AS {old}")  # as an older release made it
    wh.close()
    lake_module._ENSURED.clear()  # a new process of this release
    wh = Warehouse.embedded(tmp_path / "lake")
    wh.ensure_schema()
    registry = wh._arrow("SELECT topic_id, days_seen FROM topic_registry ORDER BY topic_id").to_pylist()
    assert registry == [{"topic_id": "T1", "days_seen": 1}]
    snapshots = len(wh.snapshots())
    lake_module._ENSURED.clear()
    wh.ensure_schema()  # nothing to change: no new snapshot
    assert len(wh.snapshots()) == snapshots
    wh.close()


def test_comment_topics_shows_a_topic_only_for_the_clustering_it_was_built_from(wh):
    """Between a re-run's clusters commit and its topics commit, or when a failed check stopped
    topics, the view joined the new cluster ids to the old topics: 271 of 295 comments showed
    another topic's label in one trial (stop-24 adversarial pass)."""

    def clusters(clustering):
        wh.replace_partition(
            D1,
            {
                "clusters": pa.table({"comment_id": ["a", "b"], "cluster_id": pa.array([0, 1], pa.int32())}),
                "cluster_summaries": pa.table(
                    {"cluster_id": pa.array([0, 1], pa.int32()), "clustering": [clustering] * 2}
                ),
            },
        )

    def topics(clustering):
        table = pa.table(
            {
                "topic_id": ["T-refunds", "T-shipping"],
                "cluster_id": pa.array([0, 1], pa.int32()),
                "label": ["refunds", "shipping"],
                "clustering": [clustering] * 2,
            }
        )
        wh.replace_partition(D1, {"topics": table})

    def shown():
        rows = wh._arrow("SELECT comment_id, topic_id FROM comment_topics ORDER BY comment_id").to_pylist()
        return {r["comment_id"]: r["topic_id"] for r in rows}

    clusters("first")
    topics("first")
    assert shown() == {"a": "T-refunds", "b": "T-shipping"}
    clusters("second")  # re-clustered: cluster 0 is now other comments' cluster
    assert shown() == {"a": None, "b": None}
    topics("second")
    assert shown() == {"a": "T-refunds", "b": "T-shipping"}
