"""The dead-run watchdog fails only runs that lost their worker, never one that ended by itself.

A real Dagster instance (temporary, default run launcher) and a real process that has exited. The
first test is the race a CI run hit: the watchdog listed a run as STARTED, the run's worker wrote
RUN_SUCCESS and exited, and the watchdog then saw the worker gone and marked the finished run
failed, so a job backfill whose days had all materialized ended COMPLETED_FAILED.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.events import (  # noqa: PLC2701 - run events have no public constructor
    DagsterEvent,
    DagsterEventType,
    EngineEventData,
)

from embed_dagster.defs.watchdog import fail_dead_runs, fail_if_dead

pytestmark = pytest.mark.integration  # starts (and reaps) one short process for its pid

LOG = logging.getLogger("watchdog-test")


@dg.op
def _noop() -> None:
    pass


@dg.job
def _job() -> None:
    _noop()


def _report(instance: dg.DagsterInstance, run: dg.DagsterRun, kind: DagsterEventType) -> None:
    event = DagsterEvent(event_type_value=kind.value, job_name=run.job_name, message=kind.value)
    instance.report_dagster_event(event, run_id=run.run_id)


@pytest.fixture
def started_run_without_worker():
    """A STARTED run whose "Started process for run (pid: N)" names a process that has exited."""
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(job_def=_job)
        _report(instance, run, DagsterEventType.RUN_START)
        worker = subprocess.Popen([sys.executable, "-c", "pass"])
        worker.wait()
        instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", run)
        listed = instance.get_run_by_id(run.run_id)
        assert listed.status == dg.DagsterRunStatus.STARTED
        yield instance, listed, worker.pid


def test_a_run_that_ended_after_the_listing_keeps_its_success(started_run_without_worker):
    instance, listed, _ = started_run_without_worker
    _report(instance, listed, DagsterEventType.RUN_SUCCESS)  # the worker finished, then exited
    assert not fail_if_dead(instance, listed, LOG)
    assert instance.get_run_by_id(listed.run_id).status == dg.DagsterRunStatus.SUCCESS


def test_a_run_whose_worker_died_is_failed_with_the_reason(started_run_without_worker):
    instance, listed, pid = started_run_without_worker
    assert fail_dead_runs(instance, LOG) == [listed.run_id]
    assert instance.get_run_by_id(listed.run_id).status == dg.DagsterRunStatus.FAILURE
    messages = [e.message for e in instance.all_logs(listed.run_id) if e.dagster_event is not None]
    assert any(f"run worker process {pid} is gone" in (m or "") for m in messages), messages
    # a second pass finds nothing left to fail
    assert fail_dead_runs(instance, LOG) == []


def test_a_run_not_started_by_this_code_server_is_left_alone():
    """A CLI run (``dagster asset materialize``) in a container or on another host reports the pid
    of its own process table; seen from here that pid is gone, and the watchdog failed the live run
    and freed its slots (stop-24 adversarial pass). Only runs with the code server's "Started
    process for run" event are judged."""
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(job_def=_job)
        _report(instance, run, DagsterEventType.RUN_START)
        worker = subprocess.Popen([sys.executable, "-c", "pass"])
        worker.wait()  # a pid that means nothing here
        event = DagsterEvent(
            event_type_value=DagsterEventType.ENGINE_EVENT.value,
            job_name=run.job_name,
            message=f"Executing steps in process (pid: {worker.pid})",
            event_specific_data=EngineEventData(),
            pid=worker.pid,
        )
        instance.report_dagster_event(event, run_id=run.run_id)
        assert fail_dead_runs(instance, LOG) == []
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED


def test_a_terminal_run_whose_process_died_is_failed_by_its_run_worker_tag():
    """Stop 25: a SIGKILLed `dagster asset materialize` run has no "Started process" event, so it
    stayed STARTED with its embedding_server slot, and every later run's embedding step waited for
    good. Its first step tags it with its process (boot id, PID namespace, pid, start time); the
    watchdog judges that process while it lives, after it dies, and never one of another machine."""
    from embed_dagster.lib.run_worker import RUN_WORKER_TAG

    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from embed_dagster.lib.run_worker import this_process; "
            "print(this_process(), flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        value = child.stdout.readline().strip()
        assert value.count("|") == 3 and value.split("|")[2] == str(child.pid)
        with dg.instance_for_test() as instance:
            run = instance.create_run_for_job(job_def=_job, tags={RUN_WORKER_TAG: value})
            _report(instance, run, DagsterEventType.RUN_START)
            other = instance.create_run_for_job(
                job_def=_job, tags={RUN_WORKER_TAG: "another-boot|pid:[1]|" + value.split("|", 2)[2]}
            )
            _report(instance, other, DagsterEventType.RUN_START)
            assert fail_dead_runs(instance, LOG) == []  # alive
            child.kill()
            child.wait()
            assert fail_dead_runs(instance, LOG) == [run.run_id]
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
            assert instance.get_run_by_id(other.run_id).status == dg.DagsterRunStatus.STARTED
            # a recycled pid (same pid, another start time) is not the run's process either
            boot, ns, pid, start = value.split("|")
            alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            try:
                from embed_dagster.lib.run_worker import _start_ticks

                recycled = f"{boot}|{ns}|{alive.pid}|{int(_start_ticks(alive.pid)) - 1}"
                third = instance.create_run_for_job(job_def=_job, tags={RUN_WORKER_TAG: recycled})
                _report(instance, third, DagsterEventType.RUN_START)
                assert fail_dead_runs(instance, LOG) == [third.run_id]
            finally:
                alive.kill()
                alive.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_each_run_tags_its_own_process_and_reaps_dead_runs_in_its_first_step(tmp_path):
    """The tag is written by the run's first step, in the run's own process."""
    from embed_dagster.lib.run_worker import RUN_WORKER_TAG, this_process
    from embed_dagster_tests.support.pipeline import materialize, pipeline_resources

    resources = pipeline_resources(tmp_path / "lake", tmp_path / "landing")
    with dg.instance_for_test() as instance:
        result = materialize(resources, "2025-01-01", instance=instance, selection=["raw_comments"])
        assert result.success
        tag = instance.get_run_by_id(result.run_id).tags[RUN_WORKER_TAG]
        assert tag == this_process()


def test_the_in_run_pass_judges_only_runs_tagged_on_this_machine(started_run_without_worker):
    """Stop-25 review: each run's first step did the whole watchdog pass, so a run on another host
    (or in a container) failed live runs whose "Started process" pid belongs to the code server's
    process table, not its own. The in-run pass judges runs by their run-worker tag only, and the
    sensor leaves a run whose tag names another machine or namespace."""
    from embed_dagster.lib.run_worker import RUN_WORKER_TAG

    instance, listed, _ = started_run_without_worker
    assert fail_dead_runs(instance, LOG, tagged_only=True) == []
    assert instance.get_run_by_id(listed.run_id).status == dg.DagsterRunStatus.STARTED
    instance.add_run_tags(listed.run_id, {RUN_WORKER_TAG: "another-boot|pid:[1]|1|1"})
    assert fail_dead_runs(instance, LOG) == []  # the sensor: its event pid means nothing for it
    assert instance.get_run_by_id(listed.run_id).status == dg.DagsterRunStatus.STARTED
