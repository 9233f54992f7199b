"""Tests read the lake through the Warehouse, read-only, as an analyst would (never raw DuckDB)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from embed_dagster.core.warehouse.lake import LakeConfig, Warehouse


def reader(root: Path | str) -> Warehouse:
    """This process's read-only Warehouse on the embedded lake at ``root`` (opened once)."""
    return Warehouse.shared(LakeConfig.embedded(root), read_only=True)


def query_arrow(root: Path | str, sql: str, params: list | dict | None = None) -> pa.Table:
    return reader(root).sql(sql, params)
