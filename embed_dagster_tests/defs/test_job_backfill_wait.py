"""The wait that makes a job backfill's topics follow the days, on a real instance's run records."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

import dagster as dg
import pytest

from embed_dagster.defs.topics import assets as topics_assets
from embed_dagster.defs.topics.assets import wait_for_previous_day_in_a_job_backfill


@dataclass
class _StepContext:
    """The four things the wait reads from an asset step's context."""

    instance: dg.DagsterInstance
    run: dg.DagsterRun
    asset_key: dg.AssetKey = dg.AssetKey("topics")
    log: logging.Logger = logging.getLogger("test")

    @property
    def run_id(self) -> str:
        return self.run.run_id


def test_a_run_of_a_job_backfill_not_recorded_yet_waits_for_the_record(monkeypatch):
    """`dagster job backfill` queued its first runs 6 s before it recorded the backfill; in that window
    the wait returned at once, so a day's topics could run before the previous day's (stop 25)."""
    day = datetime.date(2025, 1, 2)
    with dg.instance_for_test() as instance:
        run = instance.add_run(
            dg.DagsterRun(job_name="embed_comments_job", run_id="run-one", tags={"dagster/backfill": "cli"})
        )
        context = _StepContext(instance, run)
        with pytest.raises(dg.RetryRequested):
            wait_for_previous_day_in_a_job_backfill(context, day)
        # a record that never comes (a backfill deleted) does not hold the run for ever
        monkeypatch.setattr(topics_assets, "BACKFILL_RECORD_WAIT_S", 0.0)
        wait_for_previous_day_in_a_job_backfill(context, day)
        # a run outside any backfill never waits
        plain = instance.add_run(dg.DagsterRun(job_name="embed_comments_job", run_id="run-two"))
        wait_for_previous_day_in_a_job_backfill(_StepContext(instance, plain), day)
