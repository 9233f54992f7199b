"""The pipeline as tests run it: the resources for a temp warehouse and landing folder, one
``materialize``, the table lists, and a free loopback port. One copy each, so a change of a
resource's fields is made here once."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg

from embed_dagster.core.warehouse.schema import TABLES as _SCHEMA
from embed_dagster.defs.checks import CHECKS
from embed_dagster.defs.resources import (
    ClusteringResource,
    EmbeddingResource,
    LandingResource,
    VectorCacheResource,
    WarehouseResource,
)
from embed_dagster_tests.support.defs import ASSETS

# Partitioned tables whose per-day rows do not depend on the order runs happened in; plus the two
# embedding tables, whose split between cached and fresh does.
ORDER_FREE_TABLES = [
    "raw_comments",
    "quarantine",
    "deduplicated_texts",
    "comment_texts",
    "clusters",
    "cluster_summaries",
    "topics",
]
EMBEDDING_TABLES = ["cached_embeddings", "fresh_embeddings"]
PARTITIONED_TABLES = [t for t in _SCHEMA if any(c.name == "partition_date" for c in _SCHEMA[t].columns)]


def pipeline_resources(
    lake: str | Path,
    landing: str | Path,
    *,
    warehouse: dict | None = None,
    vector_cache: dict | None = None,
    **embedding: object,
) -> dict:
    """Resources for one test pipeline; ``embedding`` are EmbeddingResource fields (base_url, model…)."""
    return {
        "warehouse": WarehouseResource(root=str(lake), **(warehouse or {})),
        "landing": LandingResource(root=str(landing)),
        "embedding": EmbeddingResource(**embedding),
        "vector_cache": VectorCacheResource(**(vector_cache or {})),
        "clustering": ClusteringResource(),
    }


def materialize(
    resources: dict,
    day: date | str,
    *,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
    selection: list[str] | None = None,
) -> dg.ExecuteInProcessResult:
    """The whole lineage and its checks (or ``selection``, with their checks) for one day, or for a
    range ``"A...B"`` in one run (as a backfill or ``--partition-range`` runs it), in process."""
    key = day if isinstance(day, str) else day.isoformat()
    first, _, last = key.partition("...")
    return dg.materialize(
        [*ASSETS, *CHECKS],
        partition_key=None if last else key,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
        if last
        else None,
        resources=resources,
        instance=instance,
        raise_on_error=raise_on_error,
        selection=selection,
    )


def own_materialization(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetMaterialization:
    """The asset's own materialization: its step also records the side tables it wrote (quarantine…)."""
    (event,) = [m for m in result.asset_materializations_for_node(asset) if m.asset_key == dg.AssetKey(asset)]
    return event
