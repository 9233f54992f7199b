"""`make demo`: sample comments for three days, the whole job through a real Dagster instance,
then a report read back from the lake.

Runs are executed in this process against the instance in $DAGSTER_HOME, so `dagster dev`
afterwards shows them, their materializations and metadata.

The days are the most recent complete ones (ending yesterday in EMBED_DAGSTER_TIMEZONE) unless
``--start`` is given: the UI's backfill dialog shows the last 90 days, and demo days there can be
re-run and backfilled from the UI. Running the demo twice writes identical tables.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from embed_dagster.dev.sample_data import generate_landing

UTC_ZONE = ZoneInfo("UTC")


def default_days(count: int, timezone: str, now: datetime | None = None) -> list[date]:
    """The ``count`` most recent complete days in ``timezone``: the last one is yesterday there."""
    today = (now or datetime.now(UTC_ZONE)).astimezone(ZoneInfo(timezone)).date()
    last = today - timedelta(days=1)
    return [last - timedelta(days=count - 1 - i) for i in range(count)]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def main(argv: list[str] | None = None) -> int:
    # argparse checks the values (usage message, exit 2): --days 0, --start 2025-13-01 were tracebacks
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=_positive, default=3)
    parser.add_argument("--per-day", type=_positive, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--start",
        type=_day,
        default=None,
        help="first day (default: the most recent complete days, ending yesterday)",
    )
    args = parser.parse_args(argv)

    if not os.environ.get("DAGSTER_HOME"):
        print("DAGSTER_HOME is not set; run `make demo`, which points it at .dagster_home/", file=sys.stderr)
        return 2
    # Imported after the environment is settled: definitions read it at import time.
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.PreviewWarning)

    from embed_dagster.definitions import defs
    from embed_dagster.defs.resources import build_resources
    from embed_dagster.dev.report import format_partition_report
    from embed_dagster.settings import load_settings

    settings = load_settings()
    if args.start:
        first = args.start
        days = [first + timedelta(days=i) for i in range(args.days)]
    else:
        days = default_days(args.days, settings.timezone)
        first = days[0]
    if first < settings.start_date:
        print(
            f"the demo's first day {first} is before EMBED_DAGSTER_START_DATE={settings.start_date}, "
            "so it is no partition; pass --start, or set an earlier start date",
            file=sys.stderr,
        )
        return 2
    landing = settings.landing
    from embed_dagster.core.warehouse.lake import LakeConfig, Warehouse

    lake = LakeConfig.from_settings(settings)
    generate_landing(landing, first, args.days, per_day=args.per_day, seed=args.seed)
    print(f"sample comments for {days[0]}..{days[-1]} written under {landing}/comments/")

    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("embed_comments_job")
    # Resources from the environment as it is now, not as it was when `defs` was first imported
    # (the same thing for `make demo`; a test calling main() twice in one process needs it).
    resources = build_resources(settings)
    for day in days:
        print(f"materializing {day} ...", flush=True)
        try:
            result = job.execute_in_process(
                partition_key=day.isoformat(),
                instance=instance,
                resources=resources,
                raise_on_error=False,
                # The step-by-step DEBUG log stays in the instance (and the UI); the terminal gets warnings.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        except dg.DagsterError as exc:
            print(f"run for {day} could not start: {exc}", file=sys.stderr)
            return 1
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            detail = failure.step_failure_data.error.message.strip() if failure else "see `dagster dev`"
            print(f"run {result.run_id} for {day} failed: {detail}", file=sys.stderr)
            return 1
        failed_checks = [
            e.asset_check_evaluation_data.check_name
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed
        ]
        note = f"; checks not passing: {', '.join(failed_checks)}" if failed_checks else "; all checks passed"
        print(f"  run {result.run_id} succeeded{note}")

    print()
    wh = Warehouse.shared(lake)
    for day in days:
        print(format_partition_report(wh, day))
        print()
    print(f"warehouse: {lake.label()}   Dagster instance: {os.environ['DAGSTER_HOME']}   UI: make ui")
    return 0


if __name__ == "__main__":
    sys.exit(main())
