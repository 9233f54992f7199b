"""Two-tier vector lookup: Redis (hot, shared, lossy) in front of the durable store (the record).

Order of a lookup: Redis, then the store for Redis misses only; what only the store had is written
back to Redis so the next worker gets it hot. Fresh vectors go to the store first (if Redis fails
later nothing is lost) and then to Redis. Redis is optional: pass ``None`` and the store is used
alone. Store errors propagate, because the store is the record; Redis errors never do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

import numpy as np

from embed_dagster.core.cache.redis_cache import RedisVectorCache, valid_vectors


class VectorStoreLike(Protocol):
    def lookup(self, model_key_id: str, hashes: Sequence[str]) -> tuple[list[str], np.ndarray]: ...

    def save(
        self,
        model_key_id: str,
        hashes: Sequence[str],
        matrix: np.ndarray,
        *,
        partition_date: date | None,
        truncated: Sequence[bool] | None = None,
    ) -> int: ...

    def forget(self, model_key_id: str, hashes: Sequence[str]) -> int: ...


@dataclass
class LookupResult:
    """Found vectors in the order of the (de-duplicated) input, with the tier each came from."""

    hashes: list[str]
    matrix: np.ndarray
    tiers: list[str]  # 'redis' | 'store', one per found hash
    missing: list[str] = field(default_factory=list)  # found in no tier: must be embedded

    def __len__(self) -> int:
        return len(self.hashes)


class TieredCache:
    """Orchestrates one model key's lookups and saves over the two tiers and keeps run metadata."""

    def __init__(
        self,
        store: VectorStoreLike,
        redis_cache: RedisVectorCache | None,
        *,
        log: logging.Logger | logging.LoggerAdapter | None = None,
        dimensions: int | None = None,
    ) -> None:
        self.store = store
        # Only needed to shape an empty result when Redis is disabled and the store finds nothing.
        self.dimensions = redis_cache.dimensions if redis_cache is not None else dimensions
        self.redis = redis_cache
        self.log = log or logging.getLogger(__name__)
        self.hits_redis = 0
        self.hits_store = 0
        self.misses = 0
        self.written_back = 0
        self.store_corrupt = 0
        self.saved_store = 0
        self.lookup_s = 0.0
        self.store_lookup_s = 0.0
        self.save_s = 0.0

    def _check_namespace(self, model_key_id: str) -> None:
        # The Redis cache is bound to one namespace; serving it for another model key would mix
        # vectors from different models, so a mismatch is a wiring bug and fails loudly.
        if self.redis is not None and self.redis.namespace != model_key_id:
            raise ValueError(
                f"Redis cache namespace {self.redis.namespace!r} does not match model key {model_key_id!r}"
            )

    def lookup(self, model_key_id: str, hashes: Sequence[str]) -> LookupResult:
        self._check_namespace(model_key_id)
        started = time.perf_counter()
        wanted = list(dict.fromkeys(hashes))
        dims = self.dimensions
        rows: dict[str, tuple[str, np.ndarray, int]] = {}  # hash -> (tier, matrix, row)

        redis_hashes: list[str] = []
        if self.redis is not None and wanted:
            redis_hashes, redis_matrix = self.redis.get_many(wanted)
            rows.update((h, ("redis", redis_matrix, i)) for i, h in enumerate(redis_hashes))
        remaining = [h for h in wanted if h not in rows] if rows else wanted

        store_hashes: list[str] = []
        if remaining:
            t0 = time.perf_counter()
            store_hashes, store_matrix = self.store.lookup(model_key_id, remaining)
            self.store_lookup_s += time.perf_counter() - t0
            store_matrix = np.asarray(store_matrix, dtype=np.float32)
            if store_hashes:
                dims = store_matrix.shape[1]
                ok = valid_vectors(store_matrix)
                if not ok.all():  # a vector stored before reads were checked: re-embed, never serve
                    self.store_corrupt += int((~ok).sum())
                    bad = [h for h, good in zip(store_hashes, ok, strict=True) if not good]
                    store_hashes = [h for h, good in zip(store_hashes, ok, strict=True) if good]
                    store_matrix = store_matrix[ok]
                    # deleted, or the fresh step would find them stored (and resume past them) and
                    # save() would keep them: they stayed for good (stop-24 adversarial pass)
                    self.store.forget(model_key_id, bad)
                    self.log.warning(
                        f"durable store held {len(bad)} invalid vector(s) (not finite or not unit "
                        "length) for this day; deleted, they count as misses and are embedded again"
                    )
            rows.update((h, ("store", store_matrix, i)) for i, h in enumerate(store_hashes))
            if store_hashes and self.redis is not None and self.redis.available:
                self.written_back += self.redis.set_many(store_hashes, store_matrix)

        found = [h for h in wanted if h in rows]
        missing = [h for h in wanted if h not in rows]
        tiers = [rows[h][0] for h in found]
        matrix = np.empty((len(found), dims or 0), dtype=np.float32)
        gather: dict[int, tuple[np.ndarray, list[int], list[int]]] = {}  # one fancy-index copy per tier
        for i, h in enumerate(found):
            _, source, row = rows[h]
            slot = gather.setdefault(id(source), (source, [], []))
            slot[1].append(i)
            slot[2].append(row)
        for source, dst, src in gather.values():
            matrix[dst] = source[src]

        self.hits_redis += len(redis_hashes)
        self.hits_store += len(store_hashes)
        self.misses += len(missing)
        self.lookup_s += time.perf_counter() - started
        return LookupResult(hashes=found, matrix=matrix, tiers=tiers, missing=missing)

    def save(
        self,
        model_key_id: str,
        hashes: Sequence[str],
        matrix: np.ndarray,
        *,
        partition_date: date | None,
        truncated: Sequence[bool] | None = None,
    ) -> int:
        """Persist fresh vectors: store first (the record), then Redis. Returns rows new in the store.

        ``partition_date`` (the day being embedded) and ``truncated`` go to the store only: they are
        what makes the day's fresh/cached split reproducible (Warehouse.save). Redis keeps vectors.
        """
        self._check_namespace(model_key_id)
        hashes = list(hashes)
        if not hashes:
            return 0
        started = time.perf_counter()
        inserted = self.store.save(
            model_key_id, hashes, matrix, partition_date=partition_date, truncated=truncated
        )
        self.saved_store += inserted
        if self.redis is not None:
            self.redis.set_many(hashes, matrix)
        self.save_s += time.perf_counter() - started
        return inserted

    def metadata(self) -> dict[str, int | float | bool | str]:
        """Flat, JSON-friendly numbers for Dagster metadata; never contains a Redis password."""
        asked = self.hits_redis + self.hits_store + self.misses
        out: dict[str, int | float | bool | str] = {
            "hits_redis": self.hits_redis,
            "store_corrupt": self.store_corrupt,
            "hits_store": self.hits_store,
            "misses": self.misses,
            "hit_rate": round((self.hits_redis + self.hits_store) / asked, 4) if asked else 0.0,
            "written_back": self.written_back,
            "saved_store": self.saved_store,
            "lookup_s": round(self.lookup_s, 4),
            "store_lookup_s": round(self.store_lookup_s, 4),
            "save_s": round(self.save_s, 4),
        }
        if self.redis is None:
            out.update(
                bytes_read=0,
                bytes_written=0,
                redis_degraded=False,
                redis_corrupt=0,
                redis_errors=0,
                redis_url="disabled",
            )
        else:
            stats = self.redis.stats
            out.update(
                bytes_read=stats.bytes_read,
                bytes_written=stats.bytes_written,
                redis_degraded=stats.degraded,
                redis_corrupt=stats.corrupt,
                redis_errors=stats.errors,
                redis_url=self.redis.url,
            )
        return out
