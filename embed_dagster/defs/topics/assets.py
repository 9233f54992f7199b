"""clusters → topics: the day's clusters matched to the topics of earlier days."""


import dagster as dg
import numpy as np
import pyarrow as pa

from embed_dagster.core.clustering.recipe import ClusterSummary
from embed_dagster.core.topics.matching import TopicState, assign_topics
from embed_dagster.core.warehouse.vector_store import matrix_to_arrow
from embed_dagster.defs.resources import (
    ClusteringResource,
    WarehouseResource,
)
from embed_dagster.lib.asset_options import COMMON
from embed_dagster.lib.metadata import definition_metadata, markdown_table, table_metadata
from embed_dagster.lib.partitions import partition_date


@dg.asset(
    **COMMON,
    deps=[
        "clusters",
        dg.AssetDep(
            "topics", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        ),
    ],
    kinds={"duckdb"},
    code_version="1",
    metadata=definition_metadata("topics"),
    description="Stable topics across days: each day's clusters are matched one-to-one to the topics "
    "seen on earlier days by centroid similarity; unmatched clusters start new topics. Depends on its "
    "own previous partition, so backfills run in date order. `topic_registry` aggregates it.",
)
def topics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, clustering: ClusteringResource
) -> dg.MaterializeResult:
    day = partition_date(context)
    wh = warehouse.open(context.log)
    summaries_t = wh.cluster_summaries(day)
    registry_t = wh.topic_registry_before(day)
    summaries = _summaries_from_table(summaries_t)
    registry = [
        TopicState(t, np.asarray(c, dtype=np.float32))
        for t, c in zip(registry_t.column("topic_id").to_pylist(), registry_t.column("centroid").to_pylist())
    ]
    first_seen = dict(
        zip(registry_t.column("topic_id").to_pylist(), registry_t.column("first_seen").to_pylist())
    )
    assignment = assign_topics(registry, summaries, clustering.topic_threshold, day)
    centroid_of = {t.topic_id: t.centroid for t in registry}
    rows = []
    for s in summaries:
        topic_id = assignment[s.cluster_id]
        previous = centroid_of.get(topic_id)
        rows.append(
            {
                "topic_id": topic_id,
                "cluster_id": s.cluster_id,
                "is_new": previous is None,
                "similarity": float(np.dot(previous, s.centroid)) if previous is not None else None,
                "first_seen": first_seen.get(topic_id, day),
                "size": s.size,
                "label": s.label,
                "keywords": list(s.keywords),
            }
        )
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [
                ("topic_id", pa.string()),
                ("cluster_id", pa.int32()),
                ("is_new", pa.bool_()),
                ("similarity", pa.float64()),
                ("first_seen", pa.date32()),
                ("size", pa.int64()),
                ("label", pa.string()),
                ("keywords", pa.list_(pa.string())),
            ]
        ),
    )
    centroids = np.vstack([s.centroid for s in summaries]) if summaries else np.zeros((0, 1), np.float32)
    table = table.append_column("centroid", matrix_to_arrow(centroids))
    snapshot = wh.replace_partition(
        day, {"topics": ({}, table)}, message=f"topics {day} run {context.run_id}"
    )
    new = sum(r["is_new"] for r in rows)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(wh, "topics", day, snapshot),
            "topics_today": len(rows),
            "new_topics": new,
            "continued_topics": len(rows) - new,
            "known_topics_before": len(registry),
            "topics": markdown_table(
                ["topic", "new", "size", "label"],
                [(r["topic_id"], "yes" if r["is_new"] else "", r["size"], r["label"]) for r in rows[:15]],
            ),
        }
    )


def _summaries_from_table(table: pa.Table) -> list[ClusterSummary]:
    out = []
    for row in table.to_pylist():
        out.append(
            ClusterSummary(
                cluster_id=row["cluster_id"],
                size=row["size"],
                n_texts=row["n_texts"],
                keywords=row["keywords"] or [],
                label=row["label"],
                representatives=row["representatives"] or [],
                centroid=np.asarray(row["centroid"], dtype=np.float32),
            )
        )
    return out
