"""The vector store's origin (first_partition_date) and truncated flag, and the fresh/cached split
derived from them (issue 14): a day's split depends on the inputs and on which day first stored each
vector, never on which tier answered or whether a run is a re-run. Real DuckLake lakes on disk."""

from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from embed_dagster.core.warehouse.lake import Warehouse

D1, D2, D3 = date(2025, 3, 1), date(2025, 3, 2), date(2025, 3, 3)
KEY = "mk-test"


def _unit(n: int, seed: int) -> np.ndarray:
    m = np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _day_texts(wh: Warehouse, day: date, hashes: list[str]) -> None:
    wh.replace_partition(
        day,
        {
            "deduplicated_texts": pa.table(
                {
                    "text_hash": hashes,
                    "text": [f"text {h}" for h in hashes],
                    "comment_count": pa.array([1] * len(hashes), pa.int64()),
                    "normalization_version": pa.array([1] * len(hashes), pa.int32()),
                }
            )
        },
    )


def _split(wh: Warehouse, day: date) -> tuple[list[str], list[tuple[str, bool]]]:
    cached, fresh = wh.embedding_split(day, KEY)
    assert set(cached.column("model_key").to_pylist()) <= {KEY}
    return (
        cached.column("text_hash").to_pylist(),
        list(zip(fresh.column("text_hash").to_pylist(), fresh.column("truncated").to_pylist())),
    )


@pytest.fixture
def wh(tmp_path):
    with Warehouse.embedded(tmp_path / "lake", commit_timeout_s=30) as warehouse:
        yield warehouse


def test_save_records_the_first_day_and_truncation_and_never_moves_them(wh):
    assert wh.save(KEY, ["a", "b"], _unit(2, 1), partition_date=D1, truncated=[True, False]) == 2
    # D2 saving a again (a racing or later run) inserts nothing: a keeps D1 and its flag
    assert wh.save(KEY, ["a", "c"], _unit(2, 2), partition_date=D2, truncated=[False, False]) == 1
    rows = wh.sql(
        "SELECT text_hash, first_partition_date AS d, truncated FROM embedding_store ORDER BY text_hash"
    ).to_pylist()
    assert rows == [
        {"text_hash": "a", "d": D1, "truncated": True},
        {"text_hash": "b", "d": D1, "truncated": False},
        {"text_hash": "c", "d": D2, "truncated": False},
    ]
    with pytest.raises(ValueError, match="truncated"):
        wh.save(KEY, ["z"], _unit(1, 3), partition_date=D1, truncated=[True, False])


def test_split_fresh_on_the_first_day_cached_on_every_other_day(wh):
    _day_texts(wh, D1, ["a", "b", "s"])
    _day_texts(wh, D2, ["s", "c", "r", "todo"])
    wh.save(KEY, ["a", "b", "s"], _unit(3, 1), partition_date=D1, truncated=[False, True, False])
    wh.save(KEY, ["c"], _unit(1, 2), partition_date=D2, truncated=[False])
    wh.save(KEY, ["r"], _unit(1, 3), partition_date=D2)  # copied from Redis: truncation unknown
    assert _split(wh, D1) == ([], [("a", False), ("b", True), ("s", False)])
    # s: D1 stored it first; r: only Redis had it; todo: not stored yet, so in neither table
    assert _split(wh, D2) == (["r", "s"], [("c", False)])
    # the split reads the store only: asking again (a re-run) gives the same rows
    assert _split(wh, D2) == (["r", "s"], [("c", False)])
    # another model key's vectors count for nothing
    wh.save("other-key", ["todo"], _unit(1, 4), partition_date=D2, truncated=[False])
    assert _split(wh, D2) == (["r", "s"], [("c", False)])


def test_duplicates_from_racing_runs_resolve_to_the_smallest_origin_everywhere(wh):
    """Two runs saving at once may both insert a text; every reader takes the row with the smallest
    first_partition_date (NULL, a row saved before origins existed, counts as earliest)."""
    _day_texts(wh, D1, ["x"])
    _day_texts(wh, D2, ["x", "y"])
    v2, v1, v0 = _unit(3, 7)
    wh.save(KEY, ["x"], v2[None], partition_date=D2, truncated=[False])

    def insert(origin, vector):
        def body(cur):
            cur.register("v", pa.table({"vector": pa.array([vector.tolist()], pa.list_(pa.float32()))}))
            cur.execute(
                "INSERT INTO embedding_store SELECT ?, 'x', 4, vector, now(), ?::DATE, false FROM v",
                [KEY, origin],
            )

        wh._transaction(body, what="test: a racing run's insert")

    insert(D1, v1)  # a run of D1 inserted x at the same time
    assert wh.sql("SELECT count(*) AS n FROM embedding_store").column("n")[0].as_py() == 2
    assert _split(wh, D1) == ([], [("x", False)])
    assert _split(wh, D2) == (["x"], [])
    hashes, matrix = wh.lookup(KEY, ["x"])
    np.testing.assert_array_equal(matrix[0], v1)
    _, vectors = wh.vectors_for_day(D2, KEY, 4)
    np.testing.assert_array_equal(vectors[0], v1)
    insert(None, v0)  # a legacy row: earlier than any day
    assert _split(wh, D1) == (["x"], [])
    np.testing.assert_array_equal(wh.lookup(KEY, ["x"])[1][0], v0)


OLD_STORE = (
    "CREATE TABLE embedding_store (model_key VARCHAR, text_hash VARCHAR, dim INTEGER, vector FLOAT[], "
    "created_at TIMESTAMPTZ)"
)
OLD_CACHED = (
    "CREATE TABLE cached_embeddings (partition_date DATE, text_hash VARCHAR, model_key VARCHAR, tier VARCHAR)"
)


def test_an_existing_lake_gets_the_new_columns_and_its_old_vectors_count_as_cached(tmp_path):
    root = tmp_path / "old-lake"
    old = Warehouse.embedded(root, commit_timeout_s=30)

    def create_old(cur):
        cur.execute(OLD_STORE)
        cur.execute(OLD_CACHED)
        cur.execute(
            "INSERT INTO embedding_store VALUES (?, 'a', 4, [1, 0, 0, 0]::FLOAT[], now())",
            [KEY],
        )
        cur.execute(f"INSERT INTO cached_embeddings VALUES (DATE '{D1}', 'a', '{KEY}', 'store')")

    old._transaction(create_old, what="test: a lake as the previous version wrote it", ensure=False)
    old.close()

    with Warehouse.embedded(root, commit_timeout_s=30) as wh:
        _day_texts(wh, D3, ["a", "n"])  # the first write ensures the schema: columns are added
        columns = {
            r["column_name"]
            for r in wh.sql(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = 'lake' "
                "AND table_name = 'embedding_store'"
            ).to_pylist()
        }
        assert {"first_partition_date", "truncated"} <= columns
        wh.save(KEY, ["n"], _unit(1, 5), partition_date=D3, truncated=[False])
        # the vector saved before origins existed is cached on every day, the new one fresh on D3
        assert _split(wh, D3) == (["a"], [("n", False)])
        # the dropped tier column stays (left in place, see ensure_schema); new rows leave it NULL
        cached, _ = wh.embedding_split(D3, KEY)
        wh.replace_partition(D3, {"cached_embeddings": cached})
        rows = wh.sql("SELECT partition_date, tier FROM cached_embeddings ORDER BY 1").to_pylist()
        assert rows == [{"partition_date": D1, "tier": "store"}, {"partition_date": D3, "tier": None}]
