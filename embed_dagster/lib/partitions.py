"""One daily partitions definition for the whole lineage.

The start date (EMBED_DAGSTER_START_DATE) lets teams backfill their history; the timezone
(EMBED_DAGSTER_TIMEZONE) decides when a day is complete (its partition exists from then on). Both come from
the one Settings object, read when the code location loads.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from embed_dagster.settings import load_settings

_settings = load_settings()


def start_date() -> str:
    return _settings.start_date.isoformat()


def timezone() -> str:
    return _settings.timezone


daily_partitions = dg.DailyPartitionsDefinition(start_date=start_date(), timezone=timezone())


def partition_date(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    return date.fromisoformat(context.partition_key)


def partition_dates(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """Every day of the run, oldest first: one for a daily run, several for a range run (a backfill
    whose asset has a single-run backfill policy, or ``--partition-range``)."""
    return sorted(date.fromisoformat(k) for k in context.partition_keys)
