"""TieredCache over a real redis-server and the real DuckDB VectorStore file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import redis

from embed_dagster.core.cache.redis_cache import RedisVectorCache, redis_key
from embed_dagster.core.cache.tiered import TieredCache
from embed_dagster.core.warehouse.vector_store import VectorStore

DIMS = 16
MK = "modelA-d16-n1-0123456789abcdef"
LOGGER = "embed_dagster.test_tiered_cache"


def hashes(start: int, stop: int) -> list[str]:
    return [f"{i:032x}" for i in range(start, stop)]


def vectors(hs: list[str], seed: int = 0) -> np.ndarray:
    """Deterministic per hash, so any lookup can be checked against the expected rows."""
    rows = [np.random.default_rng([seed, int(h, 16) % 2**32]).standard_normal(DIMS) for h in hs]
    m = np.asarray(rows, dtype=np.float32).reshape(len(hs), DIMS)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)  # stored vectors are unit


@pytest.fixture
def store(tmp_path) -> VectorStore:
    return VectorStore(tmp_path / "warehouse.duckdb", retry_s=5)


def tiered(store, url: str | None, model_key: str = MK, **kwargs) -> TieredCache:
    log = logging.getLogger(LOGGER)
    cache = RedisVectorCache(url, model_key, DIMS, log=log, **kwargs) if url else None
    return TieredCache(store, cache, log=log, dimensions=DIMS)


def test_partitions_flow_redis_then_store_then_missing(store, redis_server):
    tc = tiered(store, redis_server.url)
    day1 = hashes(0, 40)
    res = tc.lookup(MK, day1)
    assert res.hashes == [] and res.missing == day1 and res.matrix.shape == (0, DIMS)
    assert tc.save(MK, day1, vectors(day1), partition_date=None) == 40

    day2 = hashes(30, 60)  # 10 seen yesterday
    res = tc.lookup(MK, day2)
    assert res.hashes == hashes(30, 40) and res.tiers == ["redis"] * 10
    np.testing.assert_array_equal(res.matrix, vectors(res.hashes))
    assert res.missing == hashes(40, 60)
    meta = tc.metadata()
    assert (meta["hits_redis"], meta["hits_store"], meta["misses"]) == (10, 0, 60)
    assert meta["hit_rate"] == round(10 / 70, 4)
    assert meta["redis_degraded"] is False and meta["redis_url"] == redis_server.url


def test_store_refills_an_emptied_redis(store, redis_server):
    tc = tiered(store, redis_server.url)
    hs = hashes(0, 25)
    tc.save(MK, hs, vectors(hs), partition_date=None)
    redis.Redis.from_url(redis_server.url).flushall()

    wanted = hashes(20, 30) + hashes(0, 5)  # order of the request is kept
    res = tc.lookup(MK, wanted)
    assert res.hashes == hashes(20, 25) + hashes(0, 5) and set(res.tiers) == {"store"}
    np.testing.assert_array_equal(res.matrix, vectors(res.hashes))
    assert res.missing == hashes(25, 30)
    assert tc.metadata()["written_back"] == 10

    res = tc.lookup(MK, wanted)
    assert res.tiers == ["redis"] * 10
    np.testing.assert_array_equal(res.matrix, vectors(res.hashes))


def test_mixed_tiers_keep_request_order_and_drop_duplicates(store, redis_server):
    tc = tiered(store, redis_server.url)
    store.save(MK, hashes(0, 5), vectors(hashes(0, 5)), partition_date=None)  # store only
    tc.save(MK, hashes(5, 10), vectors(hashes(5, 10)), partition_date=None)  # both tiers
    wanted = [hashes(7, 8)[0], hashes(2, 3)[0], hashes(7, 8)[0], hashes(99, 100)[0], hashes(5, 6)[0]]
    res = tc.lookup(MK, wanted)
    assert res.hashes == [wanted[0], wanted[1], wanted[4]]
    assert res.tiers == ["redis", "store", "redis"]
    assert res.missing == [wanted[3]]
    np.testing.assert_array_equal(res.matrix, vectors(res.hashes))


def test_model_keys_are_isolated_in_both_tiers(store, redis_server):
    other = "modelB-d16-n1-fedcba9876543210"
    hs = hashes(0, 8)
    tiered(store, redis_server.url, MK).save(MK, hs, vectors(hs, seed=1), partition_date=None)
    tc_b = tiered(store, redis_server.url, other)
    assert tc_b.lookup(other, hs).missing == hs
    tc_b.save(other, hs, vectors(hs, seed=2), partition_date=None)
    redis.Redis.from_url(redis_server.url).flushall()  # force one pass through the store as well
    for key, seed in ((MK, 1), (other, 2)):
        tc = tiered(store, redis_server.url, key)
        for tier in ("store", "redis"):
            res = tc.lookup(key, hs)
            assert res.tiers == [tier] * 8
            np.testing.assert_array_equal(res.matrix, vectors(hs, seed=seed))
    with pytest.raises(ValueError, match="does not match"):
        tc_b.lookup(MK, hs)


def test_redis_killed_mid_run_falls_back_to_store(store, redis_server, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    tc = tiered(store, redis_server.url)
    hs = hashes(0, 20)
    tc.save(MK, hs[:10], vectors(hs[:10]), partition_date=None)
    redis_server.kill()
    res = tc.lookup(MK, hs)
    assert res.hashes == hs[:10] and res.tiers == ["store"] * 10 and res.missing == hs[10:]
    assert (
        tc.save(MK, hs[10:], vectors(hs[10:]), partition_date=None) == 10
    )  # the record still gets everything
    res = tc.lookup(MK, hs)
    assert res.hashes == hs and set(res.tiers) == {"store"}
    meta = tc.metadata()
    assert meta["redis_degraded"] is True and meta["hits_store"] == 30
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


def test_corrupt_redis_value_falls_through_to_store_and_is_repaired(store, redis_server):
    tc = tiered(store, redis_server.url)
    hs = hashes(0, 4)
    tc.save(MK, hs, vectors(hs), partition_date=None)
    redis.Redis.from_url(redis_server.url).set(redis_key(MK, hs[2]), b"\x00garbage")
    res = tc.lookup(MK, hs)
    assert res.tiers == ["redis", "redis", "store", "redis"]
    np.testing.assert_array_equal(res.matrix, vectors(hs))
    assert tc.metadata()["redis_corrupt"] == 1
    assert tc.lookup(MK, hs).tiers == ["redis"] * 4


def test_without_redis_the_store_is_used_alone(store):
    tc = tiered(store, None)
    hs = hashes(0, 6)
    assert tc.lookup(MK, hs).missing == hs
    tc.save(MK, hs[:3], vectors(hs[:3]), partition_date=None)
    res = tc.lookup(MK, hs)
    assert res.tiers == ["store"] * 3 and res.missing == hs[3:]
    meta = tc.metadata()
    assert meta["redis_url"] == "disabled" and meta["redis_degraded"] is False
    assert (meta["hits_store"], meta["misses"]) == (3, 9)


def test_metadata_redacts_the_password(store, redis_server_factory):
    secret = "tiered-s3cret"
    server = redis_server_factory(password=secret)
    tc = tiered(store, server.url)
    hs = hashes(0, 3)
    tc.save(MK, hs, vectors(hs), partition_date=None)
    assert tc.lookup(MK, hs).tiers == ["redis"] * 3
    meta = tc.metadata()
    assert meta["redis_url"] == server.url.replace(secret, "***")
    assert secret not in str(meta)


def test_an_invalid_stored_vector_is_deleted_on_read_so_a_good_one_replaces_it(store):
    """It counted as a miss but stayed stored: the fresh step found it there and resumed past it,
    and save() never overwrites, so it stayed for good (stop-24 adversarial pass)."""
    tc = tiered(store, None)
    hs = hashes(0, 3)
    bad = vectors(hs)
    bad[1] = 0.0  # e.g. written before reads were checked
    store.save(MK, hs, bad, partition_date=None)
    res = tc.lookup(MK, hs)
    assert res.hashes == [hs[0], hs[2]] and tc.metadata()["store_corrupt"] == 1
    assert store.existing(MK, hs) == {hs[0], hs[2]}
    tc.save(MK, [hs[1]], vectors(hs)[1:2], partition_date=None)
    again = tc.lookup(MK, hs)
    assert again.hashes == hs
    np.testing.assert_array_equal(again.matrix, vectors(hs))
