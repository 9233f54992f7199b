"""The lineage as software-defined assets: raw_comments → deduplicated_texts →
cached_embeddings / fresh_embeddings → clusters → topics.

Assets are thin: read inputs with a short DuckDB connection, call the pure core, write the
partition atomically, and describe what happened in metadata. No DuckDB connection is held across
an HTTP call or a clustering fit (see storage.py for why).
"""

import time
from datetime import date
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa

from embed_dagster.cluster_map import render_cluster_map
from embed_dagster.clustering import ClusterSummary, cluster_vectors, summarize_clusters
from embed_dagster.dedup import deduplicate
from embed_dagster.embedding_client import EmbeddingServerError
from embed_dagster.ingest import read_landing_partition
from embed_dagster.metadata import definition_metadata, markdown_table, png_markdown, table_metadata
from embed_dagster.partitions import daily_partitions, partition_date
from embed_dagster.resources import (
    ClusteringResource,
    EmbeddingResource,
    LandingResource,
    VectorCacheResource,
    WarehouseResource,
)
from embed_dagster.storage import query_arrow, write_partition
from embed_dagster.topics import TopicState, assign_topics
from embed_dagster.vector_store import arrow_to_matrix, matrix_to_arrow

OWNERS = ["team:comment-insights"]
GROUP = "comment_topics"
DUCKDB_POOL = "duckdb_writer"
EMBEDDING_POOL = "embedding_server"
CHECKPOINT_ROWS = 2048
CHECKPOINT_SECONDS = 2.0

_common = dict(partitions_def=daily_partitions, group_name=GROUP, owners=OWNERS)


def _quarantine_preview(rejected: pa.Table, limit: int = 10) -> dg.MetadataValue:
    rows = rejected.slice(0, limit).to_pylist()
    return markdown_table(
        ["file:row", "comment_id", "reason"],
        [(f"{r.get('source_file')}:{r.get('source_row')}", r.get("comment_id"), r["reason"]) for r in rows],
    )


@dg.asset(
    **_common,
    kinds={"duckdb"},
    code_version="1",
    pool=DUCKDB_POOL,
    metadata=definition_metadata("raw_comments"),
    description="The day's valid comments from the landing folder date=YYYY-MM-DD (JSON Lines, CSV, "
    "Parquet). Rows that fail validation go to `quarantine` with a reason instead of failing the run.",
)
def raw_comments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, landing: LandingResource
) -> dg.MaterializeResult:
    day = partition_date(context)
    result = read_landing_partition(landing.path(), day, max_text_chars=landing.max_text_chars)
    write_partition(
        warehouse.path,
        day,
        {
            "raw_comments": ({}, result.valid),
            "quarantine": ({"source_asset": "raw_comments"}, result.rejected),
        },
    )
    if result.stats.get("files", 0) == 0:
        context.log.warning(
            f"no landing files for {day} under {landing.root}: materialized an empty partition"
        )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse.path, "raw_comments", day),
            "rows_read": result.stats.get("rows_read", 0),
            "files": result.stats.get("files", 0),
            "quarantined": result.rejected.num_rows,
            "quarantine_preview": _quarantine_preview(result.rejected),
        }
    )


@dg.asset(
    **_common,
    deps=[raw_comments],
    kinds={"duckdb"},
    code_version="1",
    pool=DUCKDB_POOL,
    metadata=definition_metadata("deduplicated_texts"),
    description="One row per distinct normalized text of the day (NFKC, invisible characters removed, "
    "whitespace collapsed) with its BLAKE2b-128 `text_hash` and comment count; `comment_texts` maps "
    "every comment to its text_hash.",
)
def deduplicated_texts(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    day = partition_date(context)
    rows = query_arrow(
        warehouse.path,
        "SELECT comment_id, text, source_file, source_row FROM raw_comments "
        "WHERE partition_date = ? ORDER BY source_file, source_row",
        [day],
    )
    result = deduplicate(
        rows.column("comment_id").to_pylist(),
        rows.column("text").to_pylist(),
        rows.column("source_file").to_pylist(),
        rows.column("source_row").to_pylist(),
    )
    write_partition(
        warehouse.path,
        day,
        {
            "deduplicated_texts": ({}, result.texts),
            "comment_texts": ({}, result.mapping),
            "quarantine": ({"source_asset": "deduplicated_texts"}, result.empty),
        },
    )
    comments = result.mapping.num_rows
    distinct = result.texts.num_rows
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse.path, "deduplicated_texts", day),
            "comments": comments,
            "distinct_texts": distinct,
            "duplicate_share": round(1 - distinct / comments, 4) if comments else 0.0,
            "quarantined": result.empty.num_rows,
        }
    )


def _partition_hashes(db: str, day: date) -> list[str]:
    rows = query_arrow(
        db, "SELECT text_hash FROM deduplicated_texts WHERE partition_date = ? ORDER BY text_hash", [day]
    )
    return rows.column("text_hash").to_pylist()


@dg.asset(
    **_common,
    deps=[deduplicated_texts],
    kinds={"duckdb", "redis"},
    code_version="1",
    pool=DUCKDB_POOL,
    metadata=definition_metadata("cached_embeddings"),
    description="Distinct texts of the day whose vector already exists for the current model key "
    "(model + dimensions + instruction + normalization version), found in Redis (if configured) or "
    "the durable vector store. These are never sent to the embedding server.",
)
def cached_embeddings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedding: EmbeddingResource,
    vector_cache: VectorCacheResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    key = embedding.model_key()
    store = warehouse.store()
    store.register_model_key(key)
    hashes = _partition_hashes(warehouse.path, day)
    cache = vector_cache.tiered(store, key, context.log)
    found = cache.lookup(key.id, hashes)
    # Redis may hold vectors this warehouse never stored (another machine embedded them); the store
    # is the tier of record that clusters reads, so copy those in.
    redis_only = [h for h, tier in zip(found.hashes, found.tiers) if tier == "redis"]
    if redis_only:
        missing = sorted(set(redis_only) - store.existing(key.id, redis_only))
        if missing:
            index = {h: i for i, h in enumerate(found.hashes)}
            store.save(key.id, missing, found.matrix[[index[h] for h in missing]])
    rows = pa.table(
        {
            "text_hash": pa.array(found.hashes, pa.string()),
            "model_key": pa.array([key.id] * len(found.hashes), pa.string()),
            "tier": pa.array(found.tiers, pa.string()),
        }
    )
    write_partition(warehouse.path, day, {"cached_embeddings": ({}, rows)})
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse.path, "cached_embeddings", day),
            "model": key.model,
            "dimensions": key.dimensions,
            "model_key": key.id,
            "distinct_texts": len(hashes),
            "cache_hits": len(found.hashes),
            "cache_misses": len(hashes) - len(found.hashes),
            **{f"cache/{k}": v for k, v in cache.metadata().items()},
        }
    )


class _Checkpointer:
    """Saves vectors as batches complete, in bounded chunks, so a killed run loses little."""

    def __init__(self, cache, key_id: str):
        self.cache = cache
        self.key_id = key_id
        self.hashes: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.last = time.monotonic()
        self.saved = 0

    def add(self, hashes: list[str], vectors: np.ndarray) -> None:
        self.hashes.extend(hashes)
        self.vectors.append(vectors)
        if len(self.hashes) >= CHECKPOINT_ROWS or time.monotonic() - self.last >= CHECKPOINT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.hashes:
            self.cache.save(self.key_id, self.hashes, np.vstack(self.vectors))
            self.saved += len(self.hashes)
        self.hashes, self.vectors, self.last = [], [], time.monotonic()


@dg.asset(
    **_common,
    deps=[deduplicated_texts, cached_embeddings],
    kinds={"duckdb", "sglang", "redis"},
    code_version="1",
    pool=EMBEDDING_POOL,
    metadata=definition_metadata("fresh_embeddings"),
    description="Vectors for the day's distinct texts that no cache tier had, computed now by the "
    "SGLang embedding server (the bundled local server when SGLANG_BASE_URL is unset) and saved to "
    "the durable store batch by batch, so a killed run resumes without re-embedding.",
)
def fresh_embeddings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedding: EmbeddingResource,
    vector_cache: VectorCacheResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    key = embedding.model_key()
    store = warehouse.store()
    store.register_model_key(key)
    todo = query_arrow(
        warehouse.path,
        """SELECT d.text_hash, d.text FROM deduplicated_texts d
           WHERE d.partition_date = ? AND d.text_hash NOT IN (
               SELECT text_hash FROM cached_embeddings WHERE partition_date = ? AND model_key = ?)
           ORDER BY d.text_hash""",
        [day, day, key.id],
    )
    todo_hashes = todo.column("text_hash").to_pylist()
    resumed = store.existing(key.id, todo_hashes)
    if resumed:
        context.log.info(f"{len(resumed)} vectors were saved by an earlier attempt; not sending them again")
    to_send = [(h, t) for h, t in zip(todo_hashes, todo.column("text").to_pylist()) if h not in resumed]
    cache = vector_cache.tiered(store, key, context.log)
    truncated: dict[str, bool] = {}
    rejected: dict[str, str] = {}
    client_stats: dict = {}
    server = "not started (nothing to embed)"
    started = time.monotonic()
    if to_send:
        checkpoint = _Checkpointer(cache, key.id)
        try:
            with embedding.open_client(context.log) as (client, server):
                try:
                    for outcome in client.embed_stream(iter(to_send), total=len(to_send)):
                        checkpoint.add(outcome.keys, outcome.vectors)
                        truncated.update(zip(outcome.keys, outcome.truncated))
                        rejected.update(outcome.rejected)
                finally:
                    checkpoint.flush()
                    client_stats = client.stats.as_metadata()
        except EmbeddingServerError as exc:
            raise dg.Failure(
                description=f"embedding failed for {day}: {exc}. {checkpoint.saved} vectors were saved "
                "before the failure; re-running this partition sends only the rest.",
                metadata={"vectors_saved_before_failure": checkpoint.saved},
            ) from None
    elapsed = time.monotonic() - started

    def fresh_rows(con) -> pa.Table:
        # Read inside the write's transaction: another run of this partition may have rewritten
        # cached_embeddings since `todo` was read (finding vectors this run saved), and a text it lists
        # as cached must not be listed here too.
        cached_now = {
            r[0]
            for r in con.execute(
                "SELECT text_hash FROM cached_embeddings WHERE partition_date = ? AND model_key = ?",
                [day, key.id],
            ).fetchall()
        }
        done = [h for h in todo_hashes if h not in rejected and h not in cached_now]
        return pa.table(
            {
                "text_hash": pa.array(done, pa.string()),
                "model_key": pa.array([key.id] * len(done), pa.string()),
                "truncated": pa.array([truncated.get(h, False) for h in done], pa.bool_()),
                "resumed": pa.array([h in resumed for h in done], pa.bool_()),
            }
        )

    quarantined = _rejected_comments(warehouse.path, day, rejected)
    write_partition(
        warehouse.path,
        day,
        {
            "fresh_embeddings": ({}, fresh_rows),
            "quarantine": ({"source_asset": "fresh_embeddings"}, quarantined),
        },
    )
    sent = len(to_send)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse.path, "fresh_embeddings", day),
            "model": key.model,
            "dimensions": key.dimensions,
            "model_key": key.id,
            "server": server,
            "texts_needed": len(todo_hashes),
            "texts_sent": sent,
            "resumed_from_checkpoint": len(resumed),
            "truncated_texts": sum(truncated.values()),
            "rejected_texts": len(rejected),
            "quarantined_comments": quarantined.num_rows,
            "seconds": round(elapsed, 3),
            "texts_per_s": round(sent / elapsed, 1) if sent and elapsed > 0 else 0.0,
            **{f"client/{k}": v for k, v in client_stats.items()},
            **{f"cache/{k}": v for k, v in cache.metadata().items()},
        }
    )


def _rejected_comments(db: str, day: date, rejected: dict[str, str]) -> pa.Table:
    """Every comment whose text the server refused, with the server's message as the reason."""
    reasons = pa.table(
        {
            "text_hash": pa.array(list(rejected), pa.string()),
            "reason": pa.array(
                [f"embedding server rejected the text: {m}" for m in rejected.values()], pa.string()
            ),
        }
    )
    if not rejected:
        return pa.table(
            {
                "comment_id": pa.array([], pa.string()),
                "source_file": pa.array([], pa.string()),
                "source_row": pa.array([], pa.int64()),
                "raw": pa.array([], pa.string()),
                "reason": pa.array([], pa.string()),
            }
        )
    from embed_dagster.storage import connect, ensure_schema

    with connect(db) as con:
        ensure_schema(con)
        con.register("_rejected", reasons)
        return con.sql(
            """SELECT m.comment_id, r.source_file, r.source_row, left(r.text, 2000) AS raw, x.reason
               FROM comment_texts m JOIN _rejected x USING (text_hash)
               JOIN raw_comments r ON r.partition_date = m.partition_date AND r.comment_id = m.comment_id
               WHERE m.partition_date = ? ORDER BY r.source_file, r.source_row""",
            params=[day],
        ).to_arrow_table()


def _load_partition_vectors(db: str, day: date, model_key_id: str, dim: int) -> tuple[pa.Table, np.ndarray]:
    """The day's distinct texts that have a vector, with those vectors, in one join."""
    table = query_arrow(
        db,
        """SELECT d.text_hash, d.text, d.comment_count, s.vector FROM deduplicated_texts d
           JOIN embedding_store s ON s.text_hash = d.text_hash AND s.model_key = ?
           WHERE d.partition_date = ? ORDER BY d.text_hash""",
        [model_key_id, day],
    )
    return table.drop(["vector"]), arrow_to_matrix(table.column("vector"), dim)


@dg.asset(
    **_common,
    deps=[deduplicated_texts, cached_embeddings, fresh_embeddings],
    kinds={"duckdb", "hdbscan"},
    code_version="1",
    pool=DUCKDB_POOL,
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
    day = partition_date(context)
    key = embedding.model_key()
    texts, matrix = _load_partition_vectors(warehouse.path, day, key.id, key.dimensions)
    expected = (
        query_arrow(
            warehouse.path,
            """SELECT count(*) AS n FROM deduplicated_texts d WHERE d.partition_date = ?
           AND d.text_hash NOT IN (SELECT m.text_hash FROM quarantine q JOIN comment_texts m
               ON m.partition_date = q.partition_date AND m.comment_id = q.comment_id
               WHERE q.partition_date = ? AND q.source_asset = 'fresh_embeddings')""",
            [day, day],
        )
        .column("n")[0]
        .as_py()
    )
    if expected != texts.num_rows:
        raise dg.Failure(
            description=f"{expected - texts.num_rows} distinct texts of {day} have no vector for model key "
            f"{key.id}. Materialize cached_embeddings and fresh_embeddings for this partition with the "
            "same embedding settings first."
        )
    try:
        config = clustering.config()
    except ValueError as exc:
        raise dg.Failure(description=f"invalid clustering configuration: {exc}") from None
    result = cluster_vectors(matrix, config)
    hashes = texts.column("text_hash").to_pylist()
    counts = np.asarray(texts.column("comment_count").to_pylist(), dtype=np.int64)
    summaries = summarize_clusters(texts.column("text").to_pylist(), matrix, result.labels, weights=counts)
    by_hash = pa.table(
        {
            "text_hash": pa.array(hashes, pa.string()),
            "cluster_id": pa.array(result.labels.astype(np.int32)),
            "probability": pa.array(result.probabilities.astype(np.float64)),
        }
    )
    comment_rows = _comment_assignments(warehouse.path, day, by_hash)
    summary_rows = _summaries_table(summaries)
    map_path = Path(warehouse.path).parent / "maps" / f"clusters_{day.isoformat()}.png"
    png = render_cluster_map(matrix, result.labels, title=f"clusters {day} ({result.n_clusters} clusters)")
    map_path.parent.mkdir(parents=True, exist_ok=True)
    map_path.write_bytes(png)
    write_partition(
        warehouse.path, day, {"clusters": ({}, comment_rows), "cluster_summaries": ({}, summary_rows)}
    )
    n_comments = comment_rows.num_rows
    noise_comments = int(counts[result.labels == -1].sum()) if len(counts) else 0
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse.path, "clusters", day),
            "comments": n_comments,
            "distinct_texts": texts.num_rows,
            "clusters": result.n_clusters,
            "noise_share": round(noise_comments / n_comments, 4) if n_comments else 0.0,
            "noise_share_texts_before_reassignment": round(float(result.noise_share_before), 4),
            "noise_share_texts_after_reassignment": round(float(result.noise_share_after), 4),
            "recipe": dg.MetadataValue.json(result.params),
            "timings_s": dg.MetadataValue.json({k: round(v, 3) for k, v in result.timings.items()}),
            "top_clusters": markdown_table(
                ["cluster", "size", "label", "representative comments"],
                [
                    (s.cluster_id, int(s.size), s.label, " / ".join(s.representatives[:2]))
                    for s in summaries[:10]
                ],
            ),
            "cluster_map": png_markdown(png, f"cluster map {day}"),
            "cluster_map_path": dg.MetadataValue.path(str(map_path)),
        }
    )


def _comment_assignments(db: str, day: date, by_hash: pa.Table) -> pa.Table:
    from embed_dagster.storage import connect, ensure_schema

    with connect(db) as con:
        ensure_schema(con)
        con.register("_labels", by_hash)
        return con.sql(
            """SELECT m.comment_id, m.text_hash, l.cluster_id, l.probability
               FROM comment_texts m JOIN _labels l USING (text_hash)
               WHERE m.partition_date = ? ORDER BY m.comment_id""",
            params=[day],
        ).to_arrow_table()


def _summaries_table(summaries: list[ClusterSummary]) -> pa.Table:
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
        }
    )


@dg.asset(
    **_common,
    deps=[
        clusters,
        dg.AssetDep(
            "topics", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        ),
    ],
    kinds={"duckdb"},
    code_version="1",
    pool=DUCKDB_POOL,
    metadata=definition_metadata("topics"),
    description="Stable topics across days: each day's clusters are matched one-to-one to the topics "
    "seen on earlier days by centroid similarity; unmatched clusters start new topics. Depends on its "
    "own previous partition, so backfills run in date order. `topic_registry` aggregates it.",
)
def topics(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, clustering: ClusteringResource
) -> dg.MaterializeResult:
    day = partition_date(context)
    summaries_t = query_arrow(
        warehouse.path,
        "SELECT * FROM cluster_summaries WHERE partition_date = ? ORDER BY cluster_id",
        [day],
    )
    registry_t = query_arrow(
        warehouse.path,
        """SELECT topic_id, arg_max(centroid, partition_date) AS centroid, min(first_seen) AS first_seen
           FROM topics WHERE partition_date < ? GROUP BY topic_id ORDER BY topic_id""",
        [day],
    )
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
    write_partition(warehouse.path, day, {"topics": ({}, table)})
    new = sum(r["is_new"] for r in rows)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(warehouse.path, "topics", day),
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


ASSETS = [raw_comments, deduplicated_texts, cached_embeddings, fresh_embeddings, clusters, topics]
