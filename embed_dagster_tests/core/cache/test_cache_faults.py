"""Issue 15, D5: values in Redis with a valid header and length but garbage inside (zeros, 5.0,
1e30, NaN) are misses, never hits, never copied into the durable store, and get overwritten."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from embed_dagster.core.cache.redis_cache import DTYPE_FLOAT32, encode_header, redis_key
from embed_dagster_tests.core.cache.test_tiered import DIMS, MK, hashes, store, tiered, vectors  # noqa: F401

pytestmark = pytest.mark.faults

GARBAGE = {
    "zeros": np.zeros(DIMS),
    "fives": np.full(DIMS, 5.0),
    "huge": np.full(DIMS, 1e30),
    "nan": np.full(DIMS, np.nan),
}


def _poison(url: str, hs: list[str]) -> None:
    raw = redis.Redis.from_url(url)
    for h, vec in zip(hs, GARBAGE.values(), strict=True):
        raw.set(redis_key(MK, h), encode_header(DTYPE_FLOAT32, DIMS) + vec.astype("<f4").tobytes())
    raw.close()


def test_d5_corrupt_redis_values_are_misses_and_get_overwritten(store, redis_server, fault_figures):  # noqa: F811
    hs = hashes(0, len(GARBAGE))
    _poison(redis_server.url, hs)
    fault_figures.add("faults_injected", len(GARBAGE))
    tc = tiered(store, redis_server.url)
    res = tc.lookup(MK, hs)
    assert res.hashes == [] and res.missing == hs  # not one counted as a hit
    meta = tc.metadata()
    assert meta["redis_corrupt"] == len(GARBAGE) and meta["hits_redis"] == 0
    assert store.lookup(MK, hs)[0] == []  # nothing was copied into the durable store

    tc.save(MK, hs, vectors(hs), partition_date=None)  # what fresh_embeddings does with the misses
    again = tiered(store, redis_server.url)
    res = again.lookup(MK, hs)
    assert res.hashes == hs and res.tiers == ["redis"] * len(hs)  # overwritten in Redis
    np.testing.assert_allclose(np.linalg.norm(res.matrix, axis=1), 1.0, atol=1e-5)
    assert again.metadata()["redis_corrupt"] == 0


def test_d5_invalid_vectors_are_never_written_to_redis(redis_server):
    from embed_dagster.core.cache.redis_cache import RedisVectorCache

    cache = RedisVectorCache(redis_server.url, MK, DIMS)
    good = vectors(hashes(10, 11))
    matrix = np.vstack([good, np.zeros((1, DIMS)), np.full((1, DIMS), 5.0)]).astype(np.float32)
    assert cache.set_many(hashes(10, 13), matrix) == 1
    assert cache.get_many(hashes(10, 13))[0] == hashes(10, 11)
