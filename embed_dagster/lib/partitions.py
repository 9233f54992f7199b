"""One daily partitions definition for the whole lineage.

The start date comes from EMBED_DAGSTER_START_DATE so teams can backfill their history; the
timezone (EMBED_DAGSTER_TIMEZONE) decides when a day is complete and when the schedule fires.
"""

from __future__ import annotations

import os
from datetime import date

import dagster as dg

DEFAULT_START_DATE = "2025-01-01"


def start_date() -> str:
    value = os.environ.get("EMBED_DAGSTER_START_DATE", DEFAULT_START_DATE)
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"EMBED_DAGSTER_START_DATE={value!r} is not a YYYY-MM-DD date") from None
    return value


def timezone() -> str:
    return os.environ.get("EMBED_DAGSTER_TIMEZONE", "UTC")


daily_partitions = dg.DailyPartitionsDefinition(start_date=start_date(), timezone=timezone())


def partition_date(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)
