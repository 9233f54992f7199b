"""The code location: everything under ``embed_dagster/defs/``, loaded by Dagster's ``dg`` convention.

Assets, checks, automation and resources live in ``defs/``; this module only loads that folder, so
adding a definition never means editing a list here. Every setting comes from the environment, so the
same code runs the embedded default (no variables set) and production.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
