"""Dead-run watchdog: a run whose worker process died gives its pool slots back, and a blocked step
learns, at INFO, which run holds the slot it waits for.

Why a sensor of our own: with Dagster's default run launcher, run monitoring has no worker health
check (``DefaultRunLauncher.supports_check_run_worker_health`` is False), so a run whose worker is
SIGKILLed or OOM-killed stays STARTED forever, and ``free_slots_after_run_end_seconds`` only frees
slots of runs that *ended*. ``max_runtime_seconds`` would also end it, but only after the longest
legitimate run (hours), which stalls every backfill for that long. A sensor runs in the code server,
which is where the default launcher starts run workers (also in deploy/'s profile), so it can see
those processes:

* every STARTED run's worker pid comes from its "Started process for run (pid: N)" engine event,
  or, for a run started in a terminal (``dagster asset materialize``, ``make demo``), from the tag
  its first step wrote (``lib/run_worker.py``: boot id, PID namespace, pid, start time); if that
  process is gone (or a zombie, or a newer process reusing the pid) the run is marked failed, its
  orphaned step processes are killed (they would go on writing the warehouse), and its pool slots
  are freed at once. Each run's first step also does this pass itself (``reap_dead_runs``), so a
  run started in a terminal with no daemon up is not blocked by a dead one;
* Dagster logs "Step blocked by limit for pool" at DEBUG only; for each run waiting on a pool the
  watchdog writes one INFO engine event into that run's log naming the run and step holding the
  slot (again when the holder changes).

The sensor is on by default (``DefaultSensorStatus.RUNNING``) and ticks every 15 s, so a dead run
is failed and its slots are free within about 30 s (one tick plus the daemon's sensor loop).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType  # noqa: PLC2701 - the event type enum has no public path

from embed_dagster.lib.run_worker import RUN_WORKER_TAG, tagged_worker_alive

WATCHDOG_INTERVAL_S = 15
_STARTED = "Started process for run (pid: "


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    return 0.0


def process_alive(pid: int, not_after: float | None = None) -> bool:
    """Whether ``pid`` runs and is not a zombie; with ``not_after``, it must have started by then.

    The start-time test keeps a new process that reuses a dead worker's pid from passing for it.
    Without /proc (not Linux) a plain signal-0 probe is used.
    """
    stat_path = Path(f"/proc/{pid}/stat")
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    try:
        fields = stat_path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    if fields[0] in ("Z", "X"):
        return False
    if not_after is not None:
        started = _boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK")
        if started > not_after + 2:
            return False
    return True


def _worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int | None, float | None, dict[int, float]]:
    """(run worker pid, when it was reported, {step process pid: when its step started}).

    The worker pid only from the code server's "Started process for run (pid: N)": that is a run
    the default launcher started from the code server, the process this sensor runs in, so the pid
    means something here. A run without it (``dagster asset materialize`` in a terminal, a container
    or another host, against the same instance) has a pid from another process table; judging it
    by this one failed a live run and freed its slots while it wrote (stop-24 adversarial pass).
    """
    worker, when, steps = None, None, {}
    kinds = {DagsterEventType.ENGINE_EVENT, DagsterEventType.STEP_START}
    for entry in instance.all_logs(run_id, of_type=kinds):
        event = entry.dagster_event
        if event is None:
            continue
        text = event.message or entry.user_message or ""
        if event.event_type == DagsterEventType.ENGINE_EVENT and text.startswith(_STARTED):
            worker, when = int(text[len(_STARTED) :].split(")")[0]), entry.timestamp
        elif event.step_key and event.pid and event.pid != worker:
            steps[event.pid] = entry.timestamp
    return worker, when, (steps if worker is not None else {})


def fail_dead_runs(instance: dg.DagsterInstance, log, *, tagged_only: bool = False) -> list[str]:
    """Mark STARTED runs whose worker died as failed, kill their orphans, free their slots.

    Only with the default run launcher: other launchers run workers in containers or pods whose
    pids mean nothing here, and they have health checks of their own (run_monitoring).
    """
    if type(instance.run_launcher).__name__ != "DefaultRunLauncher":
        return []
    started = instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    return [
        r.dagster_run.run_id
        for r in started
        if fail_if_dead(instance, r.dagster_run, log, tagged_only=tagged_only)
    ]


def _dead_worker(
    instance: dg.DagsterInstance, run: dg.DagsterRun, tagged_only: bool
) -> tuple[int, dict[int, float]] | None:
    """(worker pid, {step pid: start}) of a run whose worker is gone; None when it lives or cannot
    be judged from here.

    A run with a run-worker tag (lib/run_worker.py) is judged by it alone, and only when it names
    this machine and PID namespace: with a tag from another host or a container, its "Started
    process" pid belongs to another process table, and judging it failed live runs (stop-25
    review). ``tagged_only`` (the in-run pass, which may run on any host) judges tagged runs only.
    """
    if tagged_only or RUN_WORKER_TAG in run.tags:
        if tagged_worker_alive(run) is not False:
            return None
        pid = int(run.tags[RUN_WORKER_TAG].split("|")[2])
        return pid, ({} if tagged_only else _worker(instance, run.run_id)[2])
    pid, when, step_pids = _worker(instance, run.run_id)
    if pid is None or process_alive(pid, when):
        return None
    return pid, step_pids


def fail_if_dead(
    instance: dg.DagsterInstance, listed: dg.DagsterRun, log, *, tagged_only: bool = False
) -> bool:
    """Fail ``listed`` (a run seen STARTED) if its worker is gone and the run never finished.

    The status is read again *after* the worker is seen gone. A worker writes its run's last event
    (RUN_SUCCESS, RUN_FAILURE) before it exits, and exits within about 0.1 s of it
    (lib/process_exit.py), so a run listed as STARTED a moment ago may have ended normally since.
    Failing it from the listing alone turned a finished run into a failed one (a CI run's job
    backfill: every day materialized and checked, the backfill COMPLETED_FAILED). A run still
    STARTED once its worker is gone has lost its worker for good.
    """
    dead = _dead_worker(instance, listed, tagged_only)
    if dead is None:
        return False
    pid, step_pids = dead
    run = instance.get_run_by_id(listed.run_id)
    if run is None or run.status != dg.DagsterRunStatus.STARTED:
        return False  # it ended by itself after the listing
    for step_pid, step_when in step_pids.items():  # start-time check: never a reused pid
        if process_alive(step_pid, step_when) and step_pid != os.getpid():
            try:
                os.kill(step_pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    message = (
        f"run worker process {pid} is gone (killed, e.g. SIGKILL or the OOM killer); "
        "marking the run failed and freeing its pool slots. Re-run the partition: saved "
        "work is kept."
    )
    instance.report_run_failed(run, message)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    log.warning(f"run {run.run_id}: {message}")
    return True


def kill_orphaned_steps(instance: dg.DagsterInstance, log, window_s: float = 3600) -> int:
    """Kill step processes still alive after their run ended (failed or cancelled in the last hour).

    When a run worker is killed, Dagster's code server may mark the run failed itself, and the
    daemon then frees its slots, but the step process it had started lives on and keeps writing
    while the next run holds the slot.
    """
    killed = 0
    if type(instance.run_launcher).__name__ != "DefaultRunLauncher":
        return killed
    ended = dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
        updated_after=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=window_s),
    )
    for record in instance.get_run_records(ended):
        _, _, step_pids = _worker(instance, record.dagster_run.run_id)
        for step_pid, step_when in step_pids.items():
            if step_pid != os.getpid() and process_alive(step_pid, step_when):
                try:
                    os.kill(step_pid, signal.SIGKILL)
                    killed += 1
                    log.warning(
                        f"run {record.dagster_run.run_id} has ended but its step process {step_pid} "
                        "was still running: killed it"
                    )
                except (ProcessLookupError, PermissionError):
                    pass
    return killed


def report_blocked_steps(instance: dg.DagsterInstance, told: dict[str, str], log) -> dict[str, str]:
    """One INFO event per waiting run and holder: "pool X: waiting for run R (step S)"."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return told
    now_told: dict[str, str] = {}
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        waiting = [p for p in info.pending_steps if p.assigned_timestamp is None]
        if not waiting or not info.claimed_slots:
            continue
        holders = ", ".join(sorted(f"run {c.run_id} (step {c.step_key})" for c in info.claimed_slots))
        for step in waiting:
            key = f"{step.run_id}|{step.step_key}|{pool}"
            now_told[key] = holders
            if told.get(key) == holders:
                continue
            run = instance.get_run_by_id(step.run_id)
            if run is None:
                continue
            msg = (
                f"step {step.step_key} is waiting for pool {pool!r} "
                f"(limit {info.slot_count}), held by {holders}"
            )
            instance.report_engine_event(msg, run)
            log.info(msg)
    return now_told


@dg.sensor(
    minimum_interval_seconds=WATCHDOG_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails runs whose worker process died (SIGKILL, OOM) and frees their pool slots; tells "
    "blocked steps, at INFO in their run's log, which run holds the pool slot they wait for.",
)
def dead_run_watchdog(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    started = time.monotonic()
    told = json.loads(context.cursor) if context.cursor else {}
    failed = fail_dead_runs(context.instance, context.log)
    orphans = kill_orphaned_steps(context.instance, context.log)
    told = report_blocked_steps(context.instance, told, context.log)
    context.update_cursor(json.dumps(told))
    what = f"failed {len(failed)} dead run(s): {', '.join(failed)}" if failed else "no dead runs"
    what += f"; killed {orphans} orphaned step process(es)" if orphans else ""
    return dg.SkipReason(f"{what}; {len(told)} blocked step(s) told ({time.monotonic() - started:.2f} s)")


_reaped: set[str] = set()


def reap_dead_runs(context) -> None:
    """The watchdog's pass, once per run, from the run's first step: a run started in a terminal
    without `dagster dev` up has no sensor to free the pool slot a killed run holds, and its
    embedding step would wait for it forever."""
    if context.run_id in _reaped:
        return
    _reaped.add(context.run_id)
    try:
        fail_dead_runs(context.instance, context.log, tagged_only=True)
    except Exception as exc:  # noqa: BLE001 - a housekeeping pass must not fail the step
        context.log.warning(f"dead-run check skipped: {type(exc).__name__}: {exc}")
