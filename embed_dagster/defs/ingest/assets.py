"""Landing files → raw_comments → deduplicated_texts: what arrived, and what is distinct."""

import dagster as dg
import pyarrow as pa

from embed_dagster.core.dedup import deduplicate
from embed_dagster.core.ingest import fingerprint_day, read_landing_partition, scan_landing
from embed_dagster.core.redact import env_secrets
from embed_dagster.defs.landing import LANDING_ASSET
from embed_dagster.defs.resources import (
    LandingResource,
    WarehouseResource,
)
from embed_dagster.defs.tables import report_side_tables
from embed_dagster.defs.versions import CODE_VERSIONS
from embed_dagster.lib.asset_options import COMMON
from embed_dagster.lib.metadata import definition_metadata, markdown_table, table_metadata
from embed_dagster.lib.ranges import materialize_days


def _quarantine_preview(rejected: pa.Table, limit: int = 10) -> dg.MetadataValue:
    rows = rejected.slice(0, limit).to_pylist()
    return markdown_table(
        ["file:row", "comment_id", "reason"],
        [(f"{r.get('source_file')}:{r.get('source_row')}", r.get("comment_id"), r["reason"]) for r in rows],
    )


@dg.asset(
    **COMMON,
    deps=[LANDING_ASSET],
    kinds={"duckdb"},
    code_version=CODE_VERSIONS["raw_comments"],
    metadata=definition_metadata("raw_comments"),
    description="The day's valid comments from the landing folder date=YYYY-MM-DD (JSON Lines, CSV, "
    "Parquet). Rows that fail validation go to `quarantine` with a reason instead of failing the run.",
)
def raw_comments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
) -> dg.MaterializeResult:
    wh = warehouse.open(context.log)
    # Nothing landed may vanish without a word: marker files skipped, folders no run reads.
    malformed = scan_landing(landing.path())[1]
    if malformed:
        context.log.warning(
            f"{len(malformed)} entries under {landing.root}/comments are not date=YYYY-MM-DD folders "
            f"and are never read: {', '.join(malformed[:20])}"
        )
    return materialize_days(context, lambda day: _raw_comments_day(context, wh, landing, day, malformed))


def _raw_comments_day(context, wh, landing: LandingResource, day, malformed: list[str]) -> dict:
    # Taken before reading: a file that lands during the read changes the day's version after this
    # one, so the landing sensor sees a difference and re-runs the day.
    fingerprint = fingerprint_day(landing.path(), day)
    result = read_landing_partition(
        landing.path(), day, max_text_chars=landing.max_text_chars, secrets=env_secrets()
    )
    snapshot = wh.replace_partition(
        day,
        {
            "raw_comments": ({}, result.valid),
            "quarantine": ({"source_asset": "raw_comments"}, result.rejected),
        },
        message=f"raw_comments {day} run {context.run_id}",
    )
    if result.stats.get("files", 0) == 0:
        context.log.warning(
            f"no landing files for {day} under {landing.root}: materialized an empty partition"
        )
    if result.stats.get("landing_rows_mismatch"):
        context.log.warning(f"row counts differ from the files: {result.stats['landing_rows_mismatch']}")
    for warning in result.stats.get("warnings", []):  # e.g. a Parquet column left out (not UTF-8)
        context.log.warning(f"{day}: {warning}")
    report_side_tables(context, wh, day, ["quarantine"], snapshot)
    return {
        **table_metadata(wh, "raw_comments", day, snapshot),
        "landing_fingerprint": fingerprint.version,
        "landing_bytes": fingerprint.bytes,
        "rows_read": result.stats.get("rows_read", 0),
        # counted from the files by a separate reader; the conservation check compares them
        "landing_rows": result.stats.get("landing_rows", 0),
        "ignored": dg.MetadataValue.json(result.stats.get("ignored", [])),
        "warnings": dg.MetadataValue.json(result.stats.get("warnings", [])),
        "malformed_landing_folders": dg.MetadataValue.json(malformed),
        "files": result.stats.get("files", 0),
        "quarantined": result.rejected.num_rows,
        "quarantine_preview": _quarantine_preview(result.rejected),
    }


@dg.asset(
    **COMMON,
    deps=["raw_comments"],
    kinds={"duckdb"},
    code_version=CODE_VERSIONS["deduplicated_texts"],
    metadata=definition_metadata("deduplicated_texts"),
    description="One row per distinct normalized text of the day (NFKC, invisible characters removed, "
    "whitespace collapsed) with its BLAKE2b-128 `text_hash` and comment count; `comment_texts` maps "
    "every comment to its text_hash.",
)
def deduplicated_texts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    wh = warehouse.open(context.log)
    return materialize_days(context, lambda day: _deduplicated_day(context, wh, day))


def _deduplicated_day(context, wh, day) -> dict:
    rows = wh.raw_rows(day)
    result = deduplicate(
        rows.column("comment_id"), rows.column("text"), rows.column("source_file"), rows.column("source_row")
    )
    snapshot = wh.replace_partition(
        day,
        {
            "deduplicated_texts": ({}, result.texts),
            "comment_texts": ({}, result.mapping),
            "quarantine": ({"source_asset": "deduplicated_texts"}, result.empty),
        },
        message=f"deduplicated_texts {day} run {context.run_id}",
    )
    comments = result.mapping.num_rows
    distinct = result.texts.num_rows
    report_side_tables(context, wh, day, ["comment_texts", "quarantine"], snapshot)
    return {
        **table_metadata(wh, "deduplicated_texts", day, snapshot),
        "comments": comments,
        "distinct_texts": distinct,
        "duplicate_share": round(1 - distinct / comments, 4) if comments else 0.0,
        "quarantined": result.empty.num_rows,
    }
