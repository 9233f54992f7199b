"""The partitioned job, its daily schedule, and the landing-folder sensor."""

import json
import re
from datetime import date
from pathlib import Path

import dagster as dg

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

_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def landing_dates(root: Path) -> list[str]:
    """Date folders that exist and hold at least one non-hidden file."""
    base = root / "comments"
    if not base.is_dir():
        return []
    found = []
    for child in base.iterdir():
        match = _DATE_DIR.match(child.name)
        if not match or not child.is_dir():
            continue
        try:
            date.fromisoformat(match.group(1))
        except ValueError:
            continue
        if any(not f.name.startswith((".", "_")) for f in child.iterdir() if f.is_file()):
            found.append(match.group(1))
    return sorted(found)


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
    new = [d for d in landing_dates(root) if d not in requested and d in valid]
    if not new:
        return dg.SensorResult(skip_reason=f"no new landing folders under {root / 'comments'}")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"landing-{d}", partition_key=d) for d in new],
        cursor=json.dumps(sorted(requested | set(new))),
    )
