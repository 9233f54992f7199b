"""The code location: everything under ``embed_dagster/defs/``, loaded by Dagster's ``dg`` convention.

Assets, checks, automation and resources live in ``defs/``; this module only loads that folder, so
adding a definition never means editing a list here. Every setting comes from the environment, so the
same code runs the embedded default (no variables set) and production.

The default executor is the in-process one, for every job and for ``dagster asset materialize``: a
day's steps are short and run one after the other anyway (each needs the previous one's table), so
the multiprocess executor's Python process per step was pure start-up cost, and the bundled model
would load once per process instead of once per run (docs/benchmarks.md, "Backfill"). A job that
needs another executor can still name its own.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from embed_dagster.lib import process_exit

process_exit.install()  # the process leaves without a 1.2 s garbage-collector pass (lib/process_exit.py)

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(executor=dg.in_process_executor),
)
