"""The partitioned job, its daily schedule, and the landing-folder sensor."""

import json
from pathlib import Path

import dagster as dg

from embed_dagster.core.ingest import scan_landing
from embed_dagster.lib.partitions import daily_partitions, timezone
from embed_dagster.settings import load_settings

embed_comments_job = dg.define_asset_job(
    "embed_comments_job",
    selection=dg.AssetSelection.groups("comment_topics"),
    partitions_def=daily_partitions,
    description="Materialize the whole lineage, with its checks, for one day.",
)


_hour, _minute = load_settings().schedule_hour_minute
daily_schedule = dg.build_schedule_from_partitioned_job(
    embed_comments_job,
    name="daily_embed_comments",
    hour_of_day=_hour,
    minute_of_hour=_minute,
    description=f"Every day at {_hour:02d}:{_minute:02d} {timezone()}, materialize the previous day's "
    "partition. Stopped by default, as Dagster schedules are: turn it on in the UI or with "
    "`dagster schedule start daily_embed_comments`.",
)

MALFORMED_TAG = "embed_dagster/malformed_landing_folders"


def landing_dates(root: Path) -> list[str]:
    """Date folders holding anything the reader would turn into rows or quarantine rows.

    The same listing as the reader (``core.ingest.scan_landing``): files in sub-folders count.
    """
    return scan_landing(root)[0]


def _malformed_text(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} under comments/ that no run reads: {shown}"


@dg.sensor(
    job=embed_comments_job,
    minimum_interval_seconds=60,
    description="Requests a day's run when a new landing folder date=YYYY-MM-DD appears. The cursor "
    "remembers requested days, so no partition is requested twice.",
)
def landing_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    root = load_settings().landing
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=None))
    days, malformed = scan_landing(root)
    outside = sorted(d for d in days if d not in valid)
    # Folders that are not date=YYYY-MM-DD with a real date (date=2025-02-30, date=2025-1-5,
    # Date=...) would otherwise be skipped without a word and their rows never processed.
    problems = malformed + [f"date={d} (outside the partitions)" for d in outside]
    note = _malformed_text(problems) if problems else ""
    if note:
        context.log.warning(f"landing sensor: {note}; rename them to date=YYYY-MM-DD")
    new = [d for d in days if d not in requested and d in valid]
    if not new:
        reason = f"no new landing folders under {root / 'comments'}"
        return dg.SensorResult(skip_reason=f"{reason}; {note}" if note else reason)
    tags = {MALFORMED_TAG: note[:1000]} if note else {}
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"landing-{d}", partition_key=d, tags=tags) for d in new],
        cursor=json.dumps(sorted(requested | set(new))),
    )
