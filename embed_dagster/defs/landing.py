"""The landing folder as an observable source asset: one data version per day folder.

Why: "materialized incrementally" means a day is recomputed when, and only when, what it depends
on changed. The day folder is the first of those inputs. Its data version is the day's
:class:`~embed_dagster.core.ingest.DayFingerprint` (names, sizes, mtimes), recorded as an
observation of ``landing_comments``; ``raw_comments`` depends on it, so the UI shows a day whose
files changed since its run as stale, and the landing sensor re-runs exactly those days.
"""

from __future__ import annotations

import dagster as dg

from embed_dagster.core.ingest import fingerprint_day, scan_landing
from embed_dagster.lib.asset_options import GROUP, OWNERS
from embed_dagster.lib.partitions import daily_partitions

LANDING_ASSET = "landing_comments"


def valid_days() -> set[str]:
    return set(daily_partitions.get_partition_keys(dynamic_partitions_store=None))


@dg.observable_source_asset(
    name=LANDING_ASSET,
    partitions_def=daily_partitions,
    group_name=GROUP,
    owners=OWNERS,
    required_resource_keys={"landing"},
    description="Comment files landed by other systems under <landing>/comments/date=YYYY-MM-DD/ "
    "(JSON Lines, CSV, Parquet). Each day's data version is a fingerprint of its files' names, sizes "
    "and modification times; files still uploading (*.tmp, *.part, ...) are not part of it. The "
    "landing sensor records it on every change, and a day whose version differs from the one its "
    "raw_comments run read is re-run.",
)
def landing_comments(context) -> dg.DataVersionsByPartition:
    root = context.resources.landing.path()
    days = [d for d in scan_landing(root)[0] if d in valid_days()]
    return dg.DataVersionsByPartition({d: dg.DataVersion(fingerprint_day(root, d).version) for d in days})
