"""One daily partitions definition and one backfill policy for the whole lineage.

The start date (EMBED_DAGSTER_START_DATE) lets teams backfill their history; the timezone
(EMBED_DAGSTER_TIMEZONE) decides when a day is complete (its partition exists from then on);
EMBED_DAGSTER_DAYS_PER_RUN decides how many days a backfill run takes. All come from the one
Settings object, read when the code location loads.
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


def backfill_policy() -> dg.BackfillPolicy:
    """Every asset of the lineage handles a range of days in one run, each day in its own transaction.

    Why ranges: a run costs ~10 s of start-up (a process, Dagster, the code location, the model), a
    400-comment day ~5 s of work, so one run per day spends most of a backfill starting up; and
    ``topics`` continues the previous day, so day-per-run backfills also wait a daemon tick per day.
    Why single-run by default: a backfill is then one run that loads the model once, and Dagster's
    CLI accepts ``--partition-range`` only for single-run assets. ``EMBED_DAGSTER_DAYS_PER_RUN=N``
    bounds a run to N days (``multi_run``) where a failure should cost at most N days of re-run;
    Dagster then runs ``topics``' chunks one after another, in date order (it depends on itself).
    """
    n = _settings.days_per_run
    return dg.BackfillPolicy.single_run() if n == 0 else dg.BackfillPolicy.multi_run(max_partitions_per_run=n)


def partition_dates(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """Every day of the run, oldest first: one for a daily run, several for a range run (a backfill,
    or ``--partition-range``)."""
    return sorted(date.fromisoformat(k) for k in context.partition_keys)
