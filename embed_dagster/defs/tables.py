"""The warehouse's side tables and views as asset specs, so the lineage graph shows every table.

Why: the six assets each write more than their own table (``deduplicated_texts`` also writes
``comment_texts``; ``clusters`` writes ``cluster_summaries``; three assets set rows aside in
``quarantine``; the embedding assets fill ``embedding_store``), and analysts read two views. As
specs with their producers as dependencies, the graph answers "where do quarantine rows come
from?", and each shows its description and column schema. They are not materialized on their own:
their producers write them in the same transaction as their own table and report a materialization
of the daily ones too (``report_side_tables``), so the UI shows their row counts per day.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from embed_dagster.core.warehouse.lake import Warehouse
from embed_dagster.core.warehouse.schema import VIEWS
from embed_dagster.lib.asset_options import GROUP, OWNERS
from embed_dagster.lib.metadata import definition_metadata, table_metadata
from embed_dagster.lib.partitions import daily_partitions


def _daily_table(name: str, deps: list[str], description: str) -> dg.AssetSpec:
    """A daily warehouse table written by ``deps``, with the column schema schema.py declares."""
    return dg.AssetSpec(
        name,
        deps=deps,
        description=description,
        metadata=definition_metadata(name),
        partitions_def=daily_partitions,
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb"},
    )


def _view(name: str, deps: list[str], what: str) -> dg.AssetSpec:
    """A view over ``deps``; its description ends with the view's SQL from schema.py."""
    return dg.AssetSpec(
        name,
        deps=deps,
        description=f"View: {what} SQL: " + " ".join(VIEWS[name].split()),
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb"},
        metadata={"dagster/table_name": f"embed_dagster.main.{name}"},
    )


side_tables = [
    _daily_table(
        "quarantine",
        ["raw_comments", "deduplicated_texts", "fresh_embeddings"],
        "Every landed row or text set aside, with a readable reason and the asset that set "
        "it aside (`source_asset`): rows that fail validation (raw_comments), texts empty after "
        "normalization (deduplicated_texts), texts the embedding server refused (fresh_embeddings). "
        "With `clusters`, it accounts for every landed row (the conservation check).",
    ),
    _daily_table(
        "comment_texts",
        ["deduplicated_texts"],
        "Every valid comment of the day mapped to the hash of its normalized text; "
        "written with deduplicated_texts in one transaction.",
    ),
    _daily_table(
        "cluster_summaries",
        ["clusters"],
        "One row per cluster of the day: size, c-TF-IDF keywords, label, representative "
        "comments and centroid; written with clusters in one transaction, read by topics.",
    ),
    dg.AssetSpec(
        "embedding_store",
        deps=["cached_embeddings", "fresh_embeddings"],
        description="The durable vector store: one vector per (model key, text hash), shared by all "
        "days, so no text is embedded twice for a model key. Filled batch by batch by fresh_embeddings "
        "(and with vectors found only in Redis by cached_embeddings). Not partitioned.",
        metadata=definition_metadata("embedding_store"),
        group_name=GROUP,
        owners=OWNERS,
        kinds={"duckdb"},
    ),
    _view(
        "comment_topics",
        ["clusters", "topics"],
        "each comment with its cluster and topic (id and label) for its day.",
    ),
    _view(
        "topic_registry",
        ["topics"],
        "one row per topic over all days (first and last day seen, days seen, total size, latest "
        "label and keywords).",
    ),
]


def report_side_tables(
    context: dg.AssetExecutionContext, wh: Warehouse, day: date, tables: list[str], snapshot: int | None
) -> None:
    """Record a materialization of the side tables a step just wrote for ``day`` (same snapshot)."""
    for table in tables:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=table,
                partition=day.isoformat(),
                metadata={
                    **table_metadata(wh, table, day, snapshot),
                    "written_by": context.asset_key.path[-1],
                },
            )
        )
