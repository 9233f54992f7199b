"""Metadata the Dagster UI understands: standard table keys plus Markdown tables and images."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import date

import dagster as dg

from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.core.warehouse.schema import TABLES


def column_schema(table: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, c.type, description=c.description) for c in TABLES[table].columns]
    )


def table_metadata(
    warehouse: Warehouse, table: str, partition_date: date, snapshot_id: int | None = None
) -> dict:
    """``dagster/*`` keys: the partition's rows, the whole table's rows, schema and name.

    ``lake/snapshot_id`` is the DuckLake snapshot the partition write committed: the version to
    read the day "as of" later (``AT (VERSION => n)``, docs/warehouse.md), e.g. after a re-run.
    """
    partition_rows, total_rows = warehouse.row_counts(table, partition_date)
    out = {
        "dagster/partition_row_count": partition_rows,
        "dagster/row_count": total_rows,
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": f"embed_dagster.main.{table}",
    }
    if snapshot_id is not None:
        out["lake/snapshot_id"] = dg.MetadataValue.int(int(snapshot_id))
    return out


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> dg.MetadataValue:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})")


def definition_metadata(table: str) -> dict:
    return {
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": f"embed_dagster.main.{table}",
    }
