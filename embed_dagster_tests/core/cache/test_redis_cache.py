"""RedisVectorCache against a real redis-server: bulk I/O, isolation, TTL, and every way Redis fails."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
import redis

from embed_dagster.core.cache.redis_cache import (
    HEADER_SIZE,
    RedisVectorCache,
    encode_header,
    redact_url,
    redis_key,
)
from embed_dagster.core.redact import env_secrets

DIMS = 16
LOGGER = "embed_dagster.test_redis_cache"


def hashes(start: int, stop: int) -> list[str]:
    return [f"{i:032x}" for i in range(start, stop)]


def vectors(n: int, dims: int = DIMS, seed: int = 0) -> np.ndarray:
    m = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def make_cache(url: str, namespace: str = "modelA-d16", **kwargs) -> RedisVectorCache:
    kwargs.setdefault("log", logging.getLogger(LOGGER))
    return RedisVectorCache(url, namespace, kwargs.pop("dimensions", DIMS), **kwargs)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


def test_two_partitions_hit_only_their_overlap(redis_server):
    cache = make_cache(redis_server.url, chunk_size=7)
    part1, part2 = hashes(0, 30), hashes(20, 50)  # overlap: 20..29
    m1 = vectors(30)
    found, _ = cache.get_many(part1)
    assert found == []
    assert cache.set_many(part1, m1) == 30

    found, matrix = cache.get_many(part2)
    assert found == hashes(20, 30)
    np.testing.assert_array_equal(matrix, m1[20:30])
    assert matrix.dtype == np.float32 and matrix.shape == (10, DIMS)
    stats = cache.stats.as_metadata()
    assert (stats["hits"], stats["misses"], stats["corrupt"]) == (10, 50, 0)
    assert stats["bytes_written"] == 30 * (HEADER_SIZE + 4 * DIMS)
    assert stats["bytes_read"] == 10 * (HEADER_SIZE + 4 * DIMS)
    assert stats["degraded"] is False and stats["errors"] == 0


def test_key_scheme_is_versioned_and_value_carries_dimension(redis_server):
    cache = make_cache(redis_server.url)
    cache.set_many(hashes(0, 1), vectors(1))
    raw = redis.Redis.from_url(redis_server.url).get(f"embed:v1:modelA-d16:{hashes(0, 1)[0]}")
    assert raw is not None and len(raw) == HEADER_SIZE + 4 * DIMS
    assert raw[:HEADER_SIZE] == encode_header(1, DIMS) and raw[:2] == b"EV"


def test_vectors_of_one_model_key_are_never_served_for_another(redis_server):
    a, b = make_cache(redis_server.url, "modelA-d16"), make_cache(redis_server.url, "modelB-d16")
    hs = hashes(0, 5)
    a.set_many(hs, vectors(5, seed=1))
    assert b.get_many(hs)[0] == []
    b.set_many(hs, vectors(5, seed=2))
    np.testing.assert_array_equal(a.get_many(hs)[1], vectors(5, seed=1))
    np.testing.assert_array_equal(b.get_many(hs)[1], vectors(5, seed=2))
    # Same namespace but another dimension (a misconfiguration): the header check refuses the values.
    wrong_dim = make_cache(redis_server.url, "modelA-d16", dimensions=DIMS * 2)
    assert wrong_dim.get_many(hs)[0] == []
    assert wrong_dim.stats.corrupt == 5


def test_ttl_sets_expiry_and_zero_means_none(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    forever = make_cache(redis_server.url, "forever", ttl_s=0)
    short = make_cache(redis_server.url, "short", ttl_s=1)
    hs = hashes(0, 3)
    forever.set_many(hs, vectors(3))
    short.set_many(hs, vectors(3))
    assert client.ttl(redis_key("forever", hs[0])) == -1
    assert client.ttl(redis_key("short", hs[0])) in (0, 1)
    assert short.get_many(hs)[0] == hs
    deadline = time.monotonic() + 5
    while client.exists(redis_key("short", hs[0])) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert short.get_many(hs)[0] == []
    assert forever.get_many(hs)[0] == hs


def test_killed_between_calls_degrades_with_one_warning(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    cache = make_cache(redis_server.url)
    cache.set_many(hashes(0, 10), vectors(10))
    redis_server.kill()
    found, matrix = cache.get_many(hashes(0, 10))
    assert found == [] and matrix.shape == (0, DIMS)
    assert cache.set_many(hashes(10, 20), vectors(10)) == 0
    assert cache.get_many(hashes(0, 10))[0] == []
    assert cache.available is False
    stats = cache.stats.as_metadata()
    assert stats["degraded"] is True and stats["errors"] == 1 and stats["skipped"] == 20
    assert len(warnings_of(caplog)) == 1 and "unavailable" in warnings_of(caplog)[0]


def test_killed_between_chunks_keeps_what_was_read(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    make_cache(redis_server.url).set_many(hashes(0, 50), vectors(50))

    def kill_after_first_chunk(op: str, done: int, total: int) -> None:
        if done == 10:
            redis_server.kill()

    cache = make_cache(redis_server.url, chunk_size=10, progress=kill_after_first_chunk)
    found, matrix = cache.get_many(hashes(0, 50))
    assert found == hashes(0, 10)
    np.testing.assert_array_equal(matrix, vectors(50)[:10])
    assert cache.available is False and cache.stats.hits == 10 and cache.stats.misses == 40

    redis_server.restart()
    writer = make_cache(redis_server.url, chunk_size=10, progress=kill_after_first_chunk)
    assert writer.set_many(hashes(0, 50), vectors(50)) == 10
    assert writer.stats.rejected_writes == 40 and writer.stats.degraded is True
    assert len(warnings_of(caplog)) == 2  # one per cache object


def test_unreachable_at_start_and_reconnect_after_restart(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    redis_server.stop()
    cache = make_cache(redis_server.url)
    assert cache.available is False
    assert cache.get_many(hashes(0, 3))[0] == []
    assert cache.set_many(hashes(0, 3), vectors(3)) == 0
    assert len(warnings_of(caplog)) == 1

    redis_server.restart()
    assert cache.available is False  # one object stays on the store for the rest of its run
    fresh = make_cache(redis_server.url)
    assert fresh.available is True
    assert fresh.set_many(hashes(0, 3), vectors(3)) == 3
    assert fresh.get_many(hashes(0, 3))[0] == hashes(0, 3)


@pytest.mark.parametrize(
    "garbage",
    [
        b"not a vector at all",
        encode_header(1, DIMS) + b"\x00" * (4 * DIMS - 1),  # right header, truncated payload
        b"XX" + encode_header(1, DIMS)[2:] + b"\x00" * (4 * DIMS),  # right length, wrong magic
        encode_header(1, DIMS) + np.full(DIMS, np.nan, dtype="<f4").tobytes(),  # NaN payload
    ],
    ids=["garbage", "truncated", "bad-magic", "nan"],
)
def test_corrupt_value_is_a_counted_miss_and_gets_overwritten(redis_server, garbage):
    cache = make_cache(redis_server.url)
    hs = hashes(0, 3)
    cache.set_many(hs, vectors(3))
    redis.Redis.from_url(redis_server.url).set(redis_key("modelA-d16", hs[1]), garbage)
    found, matrix = cache.get_many(hs)
    assert found == [hs[0], hs[2]]
    np.testing.assert_array_equal(matrix, vectors(3)[[0, 2]])
    assert cache.stats.corrupt == 1 and cache.stats.misses == 1
    cache.set_many([hs[1]], vectors(3)[1:2])
    assert cache.get_many(hs)[0] == hs


def test_full_redis_with_noeviction_degrades_writes_not_the_run(redis_server_factory, caplog):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    server = redis_server_factory(maxmemory="2mb", maxmemory_policy="noeviction")
    dims = 256
    cache = make_cache(server.url, dimensions=dims, chunk_size=200)
    n = 4000  # ~4 MB of vectors into 2 MB
    written = cache.set_many(hashes(0, n), vectors(n, dims))
    assert 0 < written < n
    stats = cache.stats
    assert stats.errors > 0 and stats.rejected_writes == n - written and stats.keys_written == written
    assert cache.available is True  # reads still work
    found, _ = cache.get_many(hashes(0, n))
    assert len(found) == written
    # still full, and no exception; Redis frees client buffers lazily, so one key may fit again
    assert cache.set_many(hashes(n, n + 10), vectors(10, dims)) <= 1
    assert len(warnings_of(caplog)) == 1 and "full" in warnings_of(caplog)[0]


def test_password_never_leaks(redis_server_factory, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55-word"
    server = redis_server_factory(password=secret)
    good = make_cache(server.url)
    assert good.available is True
    good.set_many(hashes(0, 2), vectors(2))
    assert good.get_many(hashes(0, 2))[0] == hashes(0, 2)

    explicit = make_cache(server.url_without_password, password=secret)
    assert explicit.available is True

    wrong = make_cache(server.url.replace(secret, "wrong-" + secret[::-1]))
    no_auth = make_cache(server.url_without_password)
    assert wrong.available is False and no_auth.available is False
    server.kill()
    good.get_many(hashes(0, 2))

    with pytest.raises(ValueError) as bad_scheme:
        make_cache(f"http://user:{secret}@127.0.0.1:1/0")
    texts = [str(bad_scheme.value), repr(good), good.url, str(good.stats.as_metadata())]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    assert len(warnings_of(caplog)) == 3
    for text in texts:
        assert secret not in text and secret[::-1] not in text


def test_float16_halves_bytes_with_small_cosine_error(redis_server):
    dims = 512
    m = vectors(200, dims, seed=7)
    half = make_cache(redis_server.url, "m-d512", dimensions=dims, float16=True)
    half.set_many(hashes(0, 200), m)
    assert half.stats.bytes_written == 200 * (HEADER_SIZE + 2 * dims)
    found, back = half.get_many(hashes(0, 200))
    assert found == hashes(0, 200) and back.dtype == np.float32
    cos = (back * m).sum(axis=1) / np.linalg.norm(back, axis=1)
    assert float((1 - cos).max()) < 1e-5
    # A float32 cache reads values a float16 cache wrote (the header says which they are).
    full = make_cache(redis_server.url, "m-d512", dimensions=dims)
    np.testing.assert_array_equal(full.get_many(hashes(0, 200))[1], back)


def test_redact_url():
    assert redact_url("redis://user:pw@host:6379/0") == "redis://user:***@host:6379/0"
    assert redact_url("rediss://:pw@host:6380") == "rediss://:***@host:6380"
    assert redact_url("redis://lonesecret@host") == "redis://***@host"
    assert redact_url("redis://host:6379/1") == "redis://host:6379/1"
    assert "pw" not in redact_url("unix:///tmp/r.sock?db=0&password=pw")


def test_redact_url_hides_passwords_of_urls_that_are_not_well_formed(monkeypatch):
    """urlsplit put an unencoded '#', '?' or '/' in a password, or a missing scheme, into the
    path or fragment, and the password was printed as written (stop-24 adversarial pass)."""
    for url in (
        "http://user:Hunter2#pw@gpu1:30000/v1",
        "http://user:Hunter2?pw@gpu1:30000/v1",
        "redis://default:Hunt/er2@cache:6379/0",
        "default:Hunter2pw@cache.internal:6379/0",
    ):
        assert "Hunt" not in redact_url(url) and "@" in redact_url(url), url
    assert (
        redact_url("http://127.0.0.1:30000/v1?x=1&api_key=Hunter2")
        == "http://127.0.0.1:30000/v1?x=1&api_key=***"
    )
    with pytest.raises(ValueError, match="cannot be parsed") as bad:
        make_cache("redis://:Hunter2#pw@127.0.0.1:1/0", "m-d4")
    assert "Hunter" not in str(bad.value)
    # the user name of REDIS_URL is not a secret: scrubbing it replaced the word everywhere in quarantine
    monkeypatch.setenv("REDIS_URL", "redis://default@cache.internal:6379/0")
    monkeypatch.setenv("REDIS_PASSWORD", "the-real-password")
    assert env_secrets(["REDIS_URL", "REDIS_PASSWORD"]) == ["the-real-password"]
    monkeypatch.setenv("REDIS_URL", "redis://default:Hunt#er2@cache.internal:6379/0")
    assert env_secrets(["REDIS_URL"]) == ["Hunt#er2"]


def test_caller_mistakes_raise_clear_value_errors(redis_server):
    with pytest.raises(ValueError, match="namespace"):
        make_cache(redis_server.url, "has space")
    with pytest.raises(ValueError, match="invalid Redis URL") as typo:
        make_cache(redis_server.url.replace("127.0.0.1", ":pw@127.0.0.1") + "?sokcet_timeout=1")
    assert "pw" not in str(typo.value)
    with pytest.raises(ValueError, match="ttl_s"):
        make_cache(redis_server.url, ttl_s=-1)
    cache = make_cache(redis_server.url)
    with pytest.raises(ValueError, match="text hash"):
        cache.get_many(["a:b"])
    with pytest.raises(ValueError, match="matrix"):
        cache.set_many(hashes(0, 2), vectors(3))


def test_the_redis_password_is_scrubbed_from_any_text_of_the_process(redis_server):
    """The README promises that an embedding server's text loses the Redis password too; only the
    cache's own messages did (stop-24 adversarial pass)."""
    from embed_dagster.core.redact import scrub

    make_cache(redis_server.url.replace("redis://", "redis://:url-Pa55word-24@"), password="arg-Pa55word-24")
    said = scrub("upstream auth url-Pa55word-24 / arg-Pa55word-24")
    assert "Pa55word" not in said
