"""The durable vector store: the tier of record for embeddings, in the warehouse file.

Vectors are keyed by (model_key, text_hash) with a primary key, so two runs that embed the same
text at once (parallel backfills) cannot store it twice: the second insert is ignored. Each call
opens its own short connection; callers save batch by batch as they complete, which is what lets
a killed run resume without re-embedding what it had saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from embed_dagster.core.model_key import ModelKey
from embed_dagster.core.warehouse.storage import connect, ensure_schema


def matrix_to_arrow(matrix: np.ndarray) -> pa.Array:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def arrow_to_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.size != len(column) * dim:
        raise ValueError(f"stored vectors do not all have {dim} dimensions")
    return values.reshape(len(column), dim)


class VectorStore:
    def __init__(self, path: str | Path, retry_s: float = 300.0):
        self.path = Path(path)
        self.retry_s = retry_s

    def register_model_key(self, key: ModelKey) -> None:
        with connect(self.path, retry_s=self.retry_s) as con:
            ensure_schema(con)
            con.execute(
                "INSERT INTO model_keys VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [key.id, key.model, key.dimensions, key.instruction, key.normalization_version],
            )

    def lookup(self, model_key_id: str, hashes: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """One join against the requested hashes; returns the found ones and their vectors."""
        hashes = pa.table({"text_hash": pa.array(list(hashes), pa.string())})
        with connect(self.path, retry_s=self.retry_s) as con:
            ensure_schema(con)
            con.register("_wanted", hashes)
            result = con.sql(
                """SELECT s.text_hash, s.dim, s.vector FROM embedding_store s
                   JOIN (SELECT DISTINCT text_hash FROM _wanted) w USING (text_hash)
                   WHERE s.model_key = ? ORDER BY s.text_hash""",
                params=[model_key_id],
            ).to_arrow_table()
        if result.num_rows == 0:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = set(result.column("dim").to_pylist())
        if len(dims) != 1:
            raise ValueError(f"model key {model_key_id} has vectors of several dimensions: {sorted(dims)}")
        return result.column("text_hash").to_pylist(), arrow_to_matrix(result.column("vector"), dims.pop())

    def save(self, model_key_id: str, hashes: Sequence[str], matrix: np.ndarray) -> int:
        """Insert-or-ignore in one short transaction; returns how many rows were new."""
        if len(hashes) == 0:
            return 0
        if len(hashes) != len(matrix):
            raise ValueError("hashes and vectors differ in length")
        rows = pa.table(
            {
                "text_hash": pa.array(list(hashes), pa.string()),
                "vector": matrix_to_arrow(matrix),
            }
        )
        with connect(self.path, retry_s=self.retry_s) as con:
            ensure_schema(con)
            con.register("_new_vectors", rows)
            before = con.execute(
                "SELECT count(*) FROM embedding_store WHERE model_key = ?", [model_key_id]
            ).fetchone()[0]
            con.execute(
                """INSERT INTO embedding_store (model_key, text_hash, dim, vector, created_at)
                   SELECT ?, text_hash, ?, vector::FLOAT[], now() FROM _new_vectors
                   ON CONFLICT DO NOTHING""",
                [model_key_id, int(matrix.shape[1])],
            )
            after = con.execute(
                "SELECT count(*) FROM embedding_store WHERE model_key = ?", [model_key_id]
            ).fetchone()[0]
        return after - before

    def existing(self, model_key_id: str, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` are stored, without moving the vectors."""
        wanted = pa.table({"text_hash": pa.array(list(hashes), pa.string())})
        with connect(self.path, retry_s=self.retry_s) as con:
            ensure_schema(con)
            con.register("_wanted", wanted)
            rows = con.execute(
                """SELECT DISTINCT s.text_hash FROM embedding_store s JOIN _wanted w USING (text_hash)
                   WHERE s.model_key = ?""",
                [model_key_id],
            ).fetchall()
        return {r[0] for r in rows}
