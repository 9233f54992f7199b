"""A faster process exit for every process that loads this code location.

Why: after a run, a Dagster process (the CLI, a run worker, a code server) holds about 370,000
objects tracked by Python's cyclic garbage collector: Dagster's definitions and snapshots, the run's
events, the libraries. At interpreter shutdown CPython runs that collector over all of them more
than once; measured with ``perf`` on a 30,000-comment day's ``dagster asset materialize``, 1.3-1.5 s
from the last atexit handler to the process's end, almost all in ``gc_collect_main`` (a no-op twin
of the same graph exits in about 0.6 s). That is as long as every small step of the run together.

``gc.freeze()`` in an atexit handler moves the surviving objects to the permanent generation, which
those shutdown passes skip. Everything is still released by reference counting as modules are torn
down (the lake's DuckDB connection included); only objects kept alive by reference cycles are left
to the operating system, and CPython makes no promise to finalize those at shutdown anyway.
Handlers registered after this one (Dagster's) run before it; earlier ones (logging's flush) after.
"""

from __future__ import annotations

import atexit
import gc

_installed = False


def _freeze_for_exit() -> None:
    gc.freeze()


def install() -> None:
    """Register the exit handler once per process."""
    global _installed
    if not _installed:
        atexit.register(_freeze_for_exit)
        _installed = True
