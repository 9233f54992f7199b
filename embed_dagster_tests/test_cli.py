"""``embed-dagster``: read-only SQL as CSV, and the migration from a single-file warehouse."""

import csv
import hashlib
import io
import subprocess
import sys
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from embed_dagster.cli import main
from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.core.warehouse.schema import TABLES, ddl
from embed_dagster.core.warehouse.vector_store import matrix_to_arrow

D1, D2 = date(2025, 1, 1), date(2025, 1, 2)


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "embed-dagster"
    return [str(script)] if script.exists() else [sys.executable, "-m", "embed_dagster.cli"]


@pytest.fixture
def lake(tmp_path):
    root = tmp_path / "lake"
    with Warehouse.embedded(root) as wh:
        wh.replace_partition(
            D1,
            {
                "clusters": pa.table(
                    {
                        "comment_id": ["a", "b"],
                        "text_hash": ["h1", "h2"],
                        "cluster_id": pa.array([0, -1], pa.int32()),
                        "probability": [0.9, 0.0],
                    }
                )
            },
        )
        wh.replace_partition(
            D1,
            {
                "topics": pa.table(
                    {
                        "topic_id": ["T1"],
                        "cluster_id": pa.array([0], pa.int32()),
                        "label": ["refunds, late"],
                        "keywords": [["a", "b"]],
                    }
                )
            },
        )
    return root


@pytest.mark.integration
def test_sql_prints_csv_from_the_views(lake):
    done = subprocess.run(
        [
            *_cli(),
            "--lake",
            str(lake),
            "sql",
            "SELECT comment_id, topic_id, label FROM comment_topics ORDER BY comment_id",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert list(csv.reader(io.StringIO(done.stdout))) == [
        ["comment_id", "topic_id", "label"],
        ["a", "T1", "refunds, late"],
        ["b", "", ""],
    ]


def test_sql_fails_non_zero_with_the_error_and_cannot_write(lake, capsys):
    assert main(["--lake", str(lake), "sql", "SELECT * FROM no_such_table"]) == 1
    assert "no_such_table" in capsys.readouterr().err
    assert main(["--lake", str(lake), "sql", "DELETE FROM clusters"]) == 1
    assert "only queries" in capsys.readouterr().err
    assert main(["--lake", str(lake), "sql", "SELECT count(*) AS n FROM clusters"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "2"]


def test_sql_reaches_no_file_outside_the_lake_and_runs_no_lake_maintenance(lake, tmp_path, capsys):
    """The read-only attach stopped catalog writes only: COPY TO wrote anywhere, and
    ducklake_delete_orphaned_files deleted a file a running job was writing (stop-24 adversarial pass)."""
    outside = tmp_path / "copied.csv"
    assert main(["--lake", str(lake), "sql", f"COPY (SELECT 1) TO '{outside}'"]) == 1
    assert not outside.exists() and "only queries" in capsys.readouterr().err
    assert main(["--lake", str(lake), "sql", "SELECT * FROM read_csv('/etc/hostname')"]) == 1
    capsys.readouterr()
    being_written = next((lake / "files").rglob("*.parquet")).parent / "ducklake-in-flight.parquet"
    being_written.write_bytes(b"PAR1")
    call = "CALL ducklake_delete_orphaned_files('lake', cleanup_all => true)"
    assert main(["--lake", str(lake), "sql", call]) == 1
    assert being_written.exists() and "this is CALL" in capsys.readouterr().err
    for call in (
        "SELECT * FROM ducklake_delete_orphaned_files('lake', cleanup_all => true)",
        "SELECT * FROM \"DuckLake_Delete_Orphaned_Files\"('lake', cleanup_all => true)",
    ):
        assert main(["--lake", str(lake), "sql", call]) == 1
        assert being_written.exists() and "lake_maintenance" in capsys.readouterr().err
    assert main(["--lake", str(lake), "sql", "SELECT count(*) AS n FROM clusters"]) == 0  # reads still work


def test_sql_cannot_change_the_lake_through_its_own_folder_or_catalog(lake, capsys):
    """Stop-25 adversarial pass: the session could write inside the data folder (COPY over a Parquet
    file broke every read of its table), attach catalog.sqlite again read-write (DELETE FROM its
    ducklake_data_file emptied the table), and reach the maintenance calls through query()."""
    parquet = next((lake / "files").rglob("*.parquet"))
    before = parquet.read_bytes()
    catalog = next(lake.glob("*.sqlite"))
    attempts = [
        f"COPY (SELECT 1 AS x) TO '{parquet}' (FORMAT parquet)",
        f"ATTACH '{catalog}' AS cat (TYPE sqlite); DELETE FROM cat.ducklake_data_file",
        "SELECT 1; DELETE FROM clusters",
        "SET lock_configuration = false",
        "SELECT * FROM query('SELECT * FROM ducklake_' || "
        "'delete_orphaned_files(''lake'', cleanup_all => true)')",
        "SELECT * FROM clusters WHERE comment_id IN (SELECT * FROM query_table('clusters'))",
        f"SELECT * FROM sqlite_query('{catalog}', 'DELETE FROM ducklake_data_file')",
        "EXPLAIN ANALYZE SELECT * FROM query('SELECT 1')",
        # DuckLake maintenance by its catalog-scoped name, or through a checkpoint (stop-25 review)
        "SELECT * FROM lake.merge_adjacent_files()",
        "SELECT * FROM lake.main.expire_snapshots()",
        "SELECT * FROM checkpoint('lake')",
        "SELECT * FROM FORCE_CHECKPOINT('lake')",
        "SELECT * FROM ducklake_rewrite_data_files('lake')",
        "PREPARE p AS SELECT 1",
    ]
    for sql in attempts:
        assert main(["--lake", str(lake), "sql", sql]) == 1, sql
        assert capsys.readouterr().err.strip(), sql
    assert parquet.read_bytes() == before
    assert main(["--lake", str(lake), "sql", "SELECT count(*) AS n FROM clusters"]) == 0
    assert capsys.readouterr().out.splitlines() == ["n", "2"]
    files_before = sorted((lake / "files").rglob("*"))
    reads = (
        "EXPLAIN SELECT * FROM clusters",
        "DESCRIBE clusters",
        "SHOW TABLES",
        "SUMMARIZE clusters",
        "SELECT * FROM lake.snapshots()",
        "SELECT * FROM ducklake_snapshots('lake')",
        "SELECT * FROM lake.table_info()",
        "SELECT count(*) FROM clusters AT (VERSION => 1)",
    )
    for query in reads:
        assert main(["--lake", str(lake), "sql", query]) == 0, query
        capsys.readouterr()
    assert sorted((lake / "files").rglob("*")) == files_before  # nothing written or deleted


def test_sql_on_a_missing_lake_says_so(tmp_path, capsys):
    assert main(["--lake", str(tmp_path / "nothing"), "sql", "SELECT 1"]) == 1
    assert "no lake catalog" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()  # a reader never creates a lake


def _old_warehouse(path: Path) -> None:
    """A warehouse as the single-file design wrote it (same tables, one DuckDB file)."""
    con = duckdb.connect(str(path))
    for name in TABLES:
        con.execute(ddl(name))
    # The store as that design declared it: without the origin and truncated columns added since.
    con.execute("ALTER TABLE embedding_store DROP COLUMN first_partition_date")
    con.execute("ALTER TABLE embedding_store DROP COLUMN truncated")
    for day, n in ((D1, 30), (D2, 12)):
        con.execute(
            "INSERT INTO raw_comments (partition_date, comment_id, text, source_file, source_row) "
            "SELECT ?, 'c' || i, 'text ' || i, 'f.jsonl', i FROM range(?) t(i)",
            [day, n],
        )
        con.execute(
            "INSERT INTO quarantine (partition_date, source_asset, reason) VALUES (?, 'raw_comments', 'x')",
            [day],
        )
    vectors = pa.table(
        {"text_hash": [f"h{i}" for i in range(5)], "vector": matrix_to_arrow(np.eye(5, 4, dtype=np.float32))}
    )
    con.register("v", vectors)
    con.execute("INSERT INTO embedding_store SELECT 'mk', text_hash, 4, vector::FLOAT[], now() FROM v")
    con.execute(  # the columns an old single-file warehouse had
        "INSERT INTO model_keys (model_key, model, dimensions, instruction, normalization_version) "
        "VALUES ('mk', 'm', 4, NULL, 1)"
    )
    con.close()


def test_migrate_copies_verifies_and_leaves_the_old_file_untouched(tmp_path, capsys):
    old = tmp_path / "embed_dagster.duckdb"
    _old_warehouse(old)
    digest = hashlib.sha256(old.read_bytes()).hexdigest()
    lake = tmp_path / "lake"
    assert main(["--lake", str(lake), "migrate", "--from", str(old)]) == 0
    out = capsys.readouterr().out
    assert "raw_comments" in out and "counts match" in out
    assert hashlib.sha256(old.read_bytes()).hexdigest() == digest
    with Warehouse.embedded(lake, read_only=True) as wh:
        assert wh.partition_counts("raw_comments") == {D1: 30, D2: 12}
        assert wh.partition_counts("quarantine") == {D1: 1, D2: 1}
        hashes, matrix = wh.lookup("mk", ["h0", "h4", "zz"])
        assert hashes == ["h0", "h4"] and matrix.shape == (2, 4)
    # Migrating again replaces the partitions and merges the keyed tables: nothing doubles.
    assert main(["--lake", str(lake), "migrate", "--from", str(old)]) == 0
    with Warehouse.embedded(lake, read_only=True) as wh:
        assert wh.partition_counts("raw_comments") == {D1: 30, D2: 12}
        assert wh.count_rows("embedding_store") == 5 and wh.count_rows("model_keys") == 1
