"""The Dagster shell: assets, checks, automation and resources, one area per folder.

Dagster 1.13 emits a preview warning each time a partitioned asset check spec is built (about 100
times in a `make ui` session). Partitioned checks are used on purpose here, so the warning is
silenced once, for this code location's processes.
"""

import warnings

warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec")
