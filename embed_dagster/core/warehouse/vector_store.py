"""Vectors between numpy and Arrow, for the vector store that lives in the lake.

The store itself (lookup / existing / save) is part of :class:`~embed_dagster.core.warehouse.lake.Warehouse`,
which owns all warehouse SQL. Vectors are stored as ``FLOAT[]`` (DuckLake has no fixed-size arrays);
this module turns them into a contiguous float32 matrix without per-row Python objects.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def matrix_to_arrow(matrix: np.ndarray) -> pa.Array:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def arrow_to_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks else pa.array([], pa.list_(pa.float32()))
    if len(column) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if values.size != len(column) * dim:
        raise ValueError(f"stored vectors do not all have {dim} dimensions")
    return values.reshape(len(column), dim)


def VectorStore(root, retry_s: float = 300.0):  # noqa: N802 - the old class name, kept for callers
    """The lake's vector store at ``root`` (an embedded lake folder): a :class:`Warehouse`."""
    from embed_dagster.core.warehouse.lake import Warehouse

    return Warehouse.embedded(root, commit_timeout_s=retry_s)
