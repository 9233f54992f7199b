"""Metadata the Dagster UI understands: standard table keys plus Markdown tables and images."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import date

import dagster as dg

from embed_dagster.core.warehouse.schema import TABLES
from embed_dagster.core.warehouse.storage import count_rows


def column_schema(table: str) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(c.name, c.type, description=c.description) for c in TABLES[table].columns]
    )


def table_metadata(db_path: str, table: str, partition_date: date) -> dict:
    """``dagster/*`` keys: the partition's rows, the whole table's rows, schema and name."""
    return {
        "dagster/partition_row_count": count_rows(db_path, table, partition_date),
        "dagster/row_count": count_rows(db_path, table),
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": f"embed_dagster.main.{table}",
    }


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
