"""Vectors → clusters (+ cluster_summaries): the day's groups of similar comments."""

import hashlib

import dagster as dg
import numpy as np
import pyarrow as pa

from embed_dagster.core.clustering.recipe import ClusterSummary, cluster_vectors, summarize_clusters
from embed_dagster.core.topics.cluster_map import map_clusters, map_coordinates, render_cluster_map
from embed_dagster.core.warehouse.vector_store import matrix_to_arrow
from embed_dagster.defs.resources import (
    ClusteringResource,
    EmbeddingResource,
    WarehouseResource,
)
from embed_dagster.defs.tables import report_side_tables
from embed_dagster.defs.versions import CODE_VERSIONS
from embed_dagster.lib.asset_options import COMMON
from embed_dagster.lib.metadata import definition_metadata, markdown_table, png_markdown, table_metadata
from embed_dagster.lib.ranges import materialize_days

MAP_TOP = 12  # clusters named on the map, and listed in the top_clusters table: the same ones


@dg.asset(
    **COMMON,
    deps=["deduplicated_texts", "cached_embeddings", "fresh_embeddings"],
    kinds={"duckdb", "hdbscan"},
    code_version=CODE_VERSIONS["clusters"],
    metadata=definition_metadata("clusters"),
    description="Each comment's cluster of the day (−1 = noise) from HDBSCAN over the L2-normalized "
    "vectors of its distinct texts, after dimension reduction; `cluster_summaries` holds each "
    "cluster's size, c-TF-IDF keywords, label, representative comments and centroid.",
)
def clusters(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedding: EmbeddingResource,
    clustering: ClusteringResource,
) -> dg.MaterializeResult:
    key = embedding.model_key()
    wh = warehouse.open(context.log)
    try:
        config = clustering.config()
    except ValueError as exc:
        raise dg.Failure(description=f"invalid clustering configuration: {exc}") from None
    maps_dir = warehouse.maps_dir()
    return materialize_days(context, lambda day: _clusters_day(context, wh, key, config, maps_dir, day))


def _clusters_day(context, wh, key, config, maps_dir, day) -> dict:
    texts, matrix = wh.vectors_for_day(day, key.id, key.dimensions)
    expected = wh.expected_vector_count(day)
    if expected != texts.num_rows:
        raise dg.Failure(
            description=f"{expected - texts.num_rows} distinct texts of {day} have no vector for model key "
            f"{key.id}. Materialize cached_embeddings and fresh_embeddings for this partition with the "
            "same embedding settings first."
        )
    hashes = texts.column("text_hash").to_pylist()
    counts = np.asarray(texts.column("comment_count").to_pylist(), dtype=np.int64)
    result = cluster_vectors(matrix, config, weights=counts)
    summaries = summarize_clusters(texts.column("text").to_pylist(), matrix, result.labels, weights=counts)
    xy = map_coordinates(matrix, result.labels)  # stored: the topic map draws the same positions
    by_hash = pa.table(
        {
            "text_hash": pa.array(hashes, pa.string()),
            "cluster_id": pa.array(result.labels.astype(np.int32)),
            "probability": pa.array(result.probabilities.astype(np.float64)),
            "map_x": pa.array(xy[:, 0], pa.float32()),
            "map_y": pa.array(xy[:, 1], pa.float32()),
        }
    )
    comment_rows = wh.comment_assignments(day, by_hash)
    summary_rows = _summaries_table(summaries, clustering_digest(hashes, result.labels))
    map_path = maps_dir / f"clusters_{day.isoformat()}.png"
    # The map names the MAP_TOP largest clusters and the top_clusters table lists exactly those.
    named = map_clusters(result.labels, MAP_TOP)
    by_id = {s.cluster_id: s for s in summaries}
    png = render_cluster_map(
        xy,
        result.labels,
        title=f"clusters {day}",
        annotate_top=MAP_TOP,
        names={c: by_id[c].label for c in named if c in by_id},
    )
    map_path.parent.mkdir(parents=True, exist_ok=True)
    map_path.write_bytes(png)
    snapshot = wh.replace_partition(
        day,
        {"clusters": ({}, comment_rows), "cluster_summaries": ({}, summary_rows)},
        message=f"clusters {day} run {context.run_id}",
    )
    n_comments = comment_rows.num_rows
    noise_comments = int(counts[result.labels == -1].sum()) if len(counts) else 0
    report_side_tables(context, wh, day, ["cluster_summaries"], snapshot)
    return {
        **table_metadata(wh, "clusters", day, snapshot),
        "comments": n_comments,
        "distinct_texts": texts.num_rows,
        "clusters": result.n_clusters,
        "noise_share": round(noise_comments / n_comments, 4) if n_comments else 0.0,
        "noise_share_texts_before_reassignment": round(float(result.noise_share_before), 4),
        "noise_share_texts_after_reassignment": round(float(result.noise_share_after), 4),
        "recipe": dg.MetadataValue.json(result.params),
        "timings_s": dg.MetadataValue.json({k: round(v, 3) for k, v in result.timings.items()}),
        "top_clusters": markdown_table(
            ["cluster", "comments", "label (as on the map)", "representative comments"],
            [
                (c, int(by_id[c].size), by_id[c].label, " / ".join(by_id[c].representatives[:2]))
                for c in named
                if c in by_id
            ],
        ),
        "cluster_map": png_markdown(png, f"cluster map {day}"),
        "cluster_map_path": dg.MetadataValue.path(str(map_path)),
    }


def clustering_digest(hashes: list[str], labels: np.ndarray) -> str:
    """Which clustering a day has: the same texts in the same clusters give the same digest, so
    topics built from it stay valid across an identical re-run (see the comment_topics view)."""
    digest = hashlib.blake2b(digest_size=8)
    for h, label in sorted(zip(hashes, labels.tolist(), strict=True)):
        digest.update(f"{h}:{label}\n".encode())
    return digest.hexdigest()


def _summaries_table(summaries: list[ClusterSummary], clustering: str) -> pa.Table:
    dim = summaries[0].centroid.shape[0] if summaries else 1
    centroids = np.vstack([s.centroid for s in summaries]) if summaries else np.zeros((0, dim), np.float32)
    return pa.table(
        {
            "cluster_id": pa.array([s.cluster_id for s in summaries], pa.int32()),
            "size": pa.array([s.size for s in summaries], pa.int64()),
            "n_texts": pa.array([s.n_texts for s in summaries], pa.int64()),
            "label": pa.array([s.label for s in summaries], pa.string()),
            "keywords": pa.array([list(s.keywords) for s in summaries], pa.list_(pa.string())),
            "representatives": pa.array([list(s.representatives) for s in summaries], pa.list_(pa.string())),
            "centroid": matrix_to_arrow(centroids),
            "clustering": pa.array([clustering] * len(summaries), pa.string()),
        }
    )
