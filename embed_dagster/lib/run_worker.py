"""Which process runs a run, said so that the dead-run watchdog can judge runs it did not launch.

The watchdog knows a run's worker from the code server's "Started process for run (pid: N)" event,
which only runs launched from the code server have. A run started in a terminal (``dagster asset
materialize``, ``make demo``) has no such event, so when it was SIGKILLed it stayed STARTED and
kept its ``embedding_server`` pool slot for good: every later run's embedding step waited forever
(stop-25 adversarial pass). Each run's first step now tags the run with its own process, in a form
that is only meaningful on the same machine and in the same PID namespace: boot id, PID namespace,
pid and the process's start time in clock ticks since boot (so a recycled pid never passes for it).
A run started in a container or on another host carries another boot id or namespace, and the
watchdog leaves it alone, as before.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import dagster as dg

RUN_WORKER_TAG = "embed_dagster/run_worker"
_tagged: set[str] = set()


def _start_ticks(pid: int | str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _machine() -> tuple[str, str] | None:
    """(boot id, PID namespace) of this process; None off Linux."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip(), os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def this_process() -> str | None:
    machine, start = _machine(), _start_ticks("self")
    if machine is None or start is None:
        return None
    return f"{machine[0]}|{machine[1]}|{os.getpid()}|{start}"


def tag_run_worker(context) -> None:
    """Tag the run with this process, once, when the step runs in the run's own process.

    Only there: under the multiprocess executor a step runs in a child that exits after the step,
    while the run lives on (``multiprocessing.parent_process()`` is set in such a child).
    """
    run_id = context.run_id
    if run_id in _tagged or multiprocessing.parent_process() is not None:
        return
    _tagged.add(run_id)
    if RUN_WORKER_TAG in context.run.tags:
        return
    value = this_process()
    if value is not None:
        context.instance.add_run_tags(run_id, {RUN_WORKER_TAG: value})


def tagged_worker_alive(run: dg.DagsterRun) -> bool | None:
    """Whether the process in the run's tag still runs; None when the tag is absent or names a
    process of another machine or PID namespace (nothing can be said from here)."""
    value = run.tags.get(RUN_WORKER_TAG)
    machine = _machine()
    if not value or machine is None:
        return None
    parts = value.split("|")
    if len(parts) != 4 or (parts[0], parts[1]) != machine:
        return None
    pid, start = parts[2], parts[3]
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and _start_ticks(pid) == start
