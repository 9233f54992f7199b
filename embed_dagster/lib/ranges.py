"""One day or a range of days in one run, with the UI still showing every day on its own.

A range run (a backfill, ``--partition-range``) of a daily asset yields one ``MaterializeResult``
and one check result for all its days. Left at that, every day would show the same metadata and
one check evaluation would stand for the whole range. So the assets compute each day on its own
(its own transaction) and these helpers attach each day's figures to that day's partition: asset
metadata with ``add_asset_metadata(partition_key=…)``, check results as one
``AssetCheckEvaluation`` per day. A one-day run looks exactly as it did before ranges existed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date

import dagster as dg

from embed_dagster.lib.partitions import partition_dates


def _first_step_of_the_run(context) -> None:
    """Say which process runs this run, and fail runs whose process died (see lib/run_worker.py)."""
    from embed_dagster.defs.watchdog import reap_dead_runs  # the shell's pass; imported late
    from embed_dagster.lib.run_worker import tag_run_worker

    tag_run_worker(context)
    reap_dead_runs(context)


def materialize_days(
    context: dg.AssetExecutionContext, one_day: Callable[[date], dict]
) -> dg.MaterializeResult:
    """Run ``one_day`` for each day of the run, oldest first; it writes the day and returns its
    metadata. A failing day fails the step: earlier days stay written (each committed on its own)
    and a retry rewrites them with the same rows."""
    _first_step_of_the_run(context)
    days = partition_dates(context)
    if len(days) == 1:
        return dg.MaterializeResult(metadata=one_day(days[0]))
    name = context.asset_key.to_user_string()
    started = time.monotonic()
    done: list[tuple[date, dict]] = []
    try:
        for i, day in enumerate(days, 1):
            t0 = time.monotonic()
            metadata = {**one_day(day), "run/day_seconds": round(time.monotonic() - t0, 3)}
            done.append((day, metadata))
            context.add_asset_metadata(metadata, partition_key=day.isoformat())
            rows = metadata.get("dagster/partition_row_count")
            context.log.info(f"{name} {day} done ({i}/{len(days)}){'' if rows is None else f': {rows} rows'}")
    except (Exception, KeyboardInterrupt, dg.DagsterExecutionInterruptedError):
        _record_days_done(context, done, days)
        raise
    return dg.MaterializeResult(
        metadata={
            "run/days": len(days),
            "run/range": f"{days[0]}...{days[-1]}",
            "run/seconds": round(time.monotonic() - started, 3),
        }
    )


def _record_days_done(context: dg.AssetExecutionContext, done: list[tuple[date, dict]], days: list) -> None:
    """A range step that fails (or is cancelled) part way: record the days it did commit.

    Why: their metadata waits for the step's one result, which a failure never produces, so days
    written to the lake had no materialization in Dagster (the UI showed them missing, their
    snapshot ids and landing fingerprints were lost) while the side tables logged at once did
    (stop-24 adversarial pass). Each becomes its own materialization now, marked ``run/partial``.
    """
    for day, metadata in done:
        context.log_event(
            dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=day.isoformat(),
                metadata={
                    **metadata,
                    "run/partial": f"{len(done)} of {len(days)} days done before the step failed",
                },
            )
        )
    if done:
        context.log.warning(
            f"{context.asset_key.to_user_string()}: {len(done)} of {len(days)} days were written before "
            f"the failure and are recorded ({done[0][0]}...{done[-1][0]}); a re-run rewrites them with "
            "the same rows"
        )


def check_days(
    context: dg.AssetCheckExecutionContext, one_day: Callable[[date], dg.AssetCheckResult]
) -> Iterator[dg.AssetCheckEvaluation | dg.AssetCheckResult]:
    """Evaluate the check for each day of the run.

    One day: its result, as always. A range (from a backfill or ``--partition-range``, even of a
    single day): one evaluation per day, recorded against that day's
    partition (a blocking check that fails on any day still blocks what follows), then one result for
    the run that Dagster records without a partition: it passes only if every day did and names the
    failing days.
    """
    days = partition_dates(context)
    if context.op_execution_context.has_partition_key:
        yield one_day(days[0])
        return
    # A range, also a range of one day (a backfill's last chunk): Dagster records a plain result of a
    # range run without a partition, and the day's planned evaluation would end as "skipped".
    (spec,) = context.check_specs
    failed, worst = [], dg.AssetCheckSeverity.WARN
    for day in days:
        result = one_day(day)
        severity = result.severity or dg.AssetCheckSeverity.ERROR
        if not result.passed:
            failed.append(f"{day}: {result.description or 'failed'}")
            if severity == dg.AssetCheckSeverity.ERROR:
                worst = severity
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=result.passed,
            metadata=result.metadata,
            severity=severity,
            description=result.description,
            blocking=spec.blocking,
            partition=day.isoformat(),
        )
    yield dg.AssetCheckResult(
        passed=not failed,
        severity=worst if failed else dg.AssetCheckSeverity.WARN,
        description=("; ".join(failed[:10]) + (f"; and {len(failed) - 10} more" if len(failed) > 10 else ""))
        or None,
        metadata={
            "run/days": len(days),
            "run/range": f"{days[0]}...{days[-1]}",
            "run/failed_days": len(failed),
        },
    )
