"""Faults in the embedding server and in Redis, injected under real Dagster runs.

The embedding server is ``fault_server.FaultServer`` (real HTTP on 127.0.0.1, scripted failures,
hash-seeded vectors), so every stored vector can be compared with what the server should have
answered for its text: a vector stored under the wrong key, from a shuffled or short answer, or
with NaN, shows up as a mismatch. Redis is a real redis-server that the tests kill, restart and fill.
Each case checks that the partition finishes (or fails with a readable message and re-runs), that
conservation and coverage hold, and that no row was lost or doubled.
"""

from __future__ import annotations

import socket
import threading
from datetime import date

import dagster as dg
import pytest
import redis

from embed_dagster.core.cache.redis_cache import RedisVectorCache
from embed_dagster_tests.support.fault_server import Fault, FaultServer, wait_until
from embed_dagster_tests.support.faults_helpers import (
    DIM,
    account,
    assert_checks_pass,
    asset_metadata,
    fault_model_key,
    make_resources,
    materialize,
    model_key_id,
    query,
    scalar,
    step_failures,
    write_day,
    wrong_vectors,
)

pytestmark = pytest.mark.faults

DAY = date(2025, 4, 1)


@pytest.fixture(scope="module")
def server():
    with FaultServer() as srv:
        yield srv


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@pytest.fixture
def srv(server):
    server.reset()
    if not _listening(server.port):  # a test took it down and failed before bringing it back
        server.up()
    yield server
    server.reset()


@pytest.fixture
def day(tmp_path):
    """48 comments over 32 distinct texts: 8 full batches of 4."""
    landing = tmp_path / "landing"
    rows = write_day(landing, DAY, 48, distinct=32)
    return {"landing": landing, "db": tmp_path / "lake", "rows": rows, "texts": 32}


def resources_for(day, srv, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("max_concurrency", 4)
    return make_resources(day["db"], day["landing"], srv.base_url, **kw)


def finish_ok(result, day, figures) -> dict:
    """A finished partition: success, checks pass, nothing lost or doubled, every vector right."""
    assert result.success, step_failures(result)
    assert_checks_pass(result)
    account(figures, day["db"], DAY, day["rows"])
    key = fault_model_key()
    assert wrong_vectors(day["db"], DAY, key, DIM) == 0
    return asset_metadata(result, "fresh_embeddings")


def test_http_errors_rate_limits_stalls_and_drops_are_retried(srv, day, fault_figures):
    faults = [
        Fault.http(500),
        Fault.http(503, "overloaded"),
        Fault.rate_limited(0.2),
        Fault.http(500),
        Fault.stall(3.0),
        Fault.disconnect(),
        Fault.rate_limited(0.1),
    ]
    for f in faults:
        srv.fail_next(f)
    fault_figures.add("faults_injected", len(faults))
    result = materialize(resources_for(day, srv, timeout_s=0.5), DAY)
    meta = finish_ok(result, day, fault_figures)
    assert srv.pending_faults == 0
    answered = [r.answered for r in srv.embedding_requests]
    assert {f.kind for f in faults} <= set(answered)
    assert meta["client/retries"] == len(faults)  # one retry per fault, none given up
    assert meta["texts_sent"] == day["texts"]


def test_invalid_answers_are_never_stored_and_shuffled_ones_are_reassembled(srv, day, fault_figures):
    # shuffled first: it lands on one of the first (full) batches; the others must be refused
    invalid = [
        Fault.wrong_dimension(32),
        Fault.nan(),
        Fault.too_few(),
        Fault.duplicate_index(),
        Fault.unnormalized(),
        Fault.invalid_json(),
    ]
    srv.fail_next(Fault.shuffled())
    srv.fail_next(Fault.wrong_dimension(128))  # more dimensions than asked: cut and renormalized, kept
    for f in invalid:
        srv.fail_next(f)
    fault_figures.add("faults_injected", len(invalid) + 2)
    result = materialize(resources_for(day, srv), DAY)
    meta = finish_ok(result, day, fault_figures)
    answered = {r.answered: r for r in srv.embedding_requests}
    assert answered["shuffled"].status == 200 and len(answered["shuffled"].inputs) == 4
    assert meta["client/retries"] == len(invalid)
    dims = scalar(day["db"], "SELECT min(dim) AS lo, max(dim) AS hi, count(*) AS n FROM embedding_store")
    assert dims == {"lo": DIM, "hi": DIM, "n": day["texts"]}


def test_a_different_model_behind_the_url_fails_the_run_and_stores_nothing(srv, day, fault_figures):
    srv.fail_next(Fault.wrong_model("another-model"))
    fault_figures.add("faults_injected")
    failed = materialize(resources_for(day, srv, max_concurrency=1), DAY)
    assert not failed.success
    message = step_failures(failed)["fresh_embeddings"]
    assert (
        "serves model 'another-model' but the embedding resource is configured for 'fault-model'" in message
    )
    assert (
        scalar(day["db"], "SELECT count(*) AS n FROM embedding_store")["n"] == 0
    )  # its vectors never stored
    finish_ok(materialize(resources_for(day, srv), DAY), day, fault_figures)
    fault_figures.add("partitions_recovered")


def test_server_down_for_the_whole_run_fails_clearly_and_the_rerun_succeeds(srv, day, fault_figures):
    srv.down()
    fault_figures.add("faults_injected")
    try:
        failed = materialize(resources_for(day, srv, max_retries=2), DAY)
    finally:
        srv.up()
    assert not failed.success
    message = step_failures(failed)["fresh_embeddings"]
    assert f"embedding failed for {DAY}" in message
    assert f"cannot reach the embedding server at {srv.base_url}" in message
    assert "re-running this partition sends only the rest" in message
    assert "Traceback" not in message and 'File "' not in message
    assert not failed.asset_materializations_for_node("clusters")  # nothing downstream of the failure
    result = materialize(resources_for(day, srv), DAY)
    finish_ok(result, day, fault_figures)
    fault_figures.add("partitions_recovered")


def test_server_dies_mid_run_and_the_rerun_sends_only_the_rest(srv, day, fault_figures):
    srv.latency_s = 0.1

    def break_after_three():
        wait_until(lambda: len(srv.embedding_requests) >= 3, timeout_s=60)
        srv.fail_next(Fault.http(500, "GPU fell off the bus"), times=1000)

    killer = threading.Thread(target=break_after_three, daemon=True)
    killer.start()
    fault_figures.add("faults_injected")
    failed = materialize(resources_for(day, srv, max_concurrency=1, max_retries=1), DAY)
    killer.join(timeout=5)
    assert not failed.success
    message = step_failures(failed)["fresh_embeddings"]
    assert "keeps failing (HTTP 500: GPU fell off the bus)" in message
    db = day["db"]
    saved = scalar(db, "SELECT count(*) AS n FROM embedding_store")["n"]
    assert f"{saved} vectors were saved before the failure" in message
    assert 0 < saved < day["texts"]
    saved_texts = set(
        query(db, "SELECT d.text FROM deduplicated_texts d JOIN embedding_store s USING (text_hash)")
        .column("text")
        .to_pylist()
    )

    srv.reset()
    result = materialize(resources_for(day, srv), DAY)
    meta = finish_ok(result, day, fault_figures)
    sent_again = {t for r in srv.embedding_requests for t in r.inputs}
    fault_figures.add("vectors_reembedded_after_resume", len(sent_again & saved_texts))
    assert not sent_again & saved_texts
    # a full re-run finds the saved vectors in the store before fresh_embeddings runs; this day
    # stored them, so they stay fresh rows (not cached), resumed rather than sent (issue 14)
    assert asset_metadata(result, "cached_embeddings")["cache/hits_store"] == saved
    assert asset_metadata(result, "cached_embeddings")["dagster/partition_row_count"] == 0
    assert meta["texts_sent"] == day["texts"] - saved and meta["resumed_from_checkpoint"] == saved
    assert meta["dagster/partition_row_count"] == day["texts"]
    fault_figures.add("partitions_recovered")


# ------------------------------------------------------------------------------------ Redis


def _logs(instance: dg.DagsterInstance, result) -> str:
    return "\n".join(e.user_message or "" for e in instance.all_logs(result.run_id))


def _redis_vectors_match(url: str, db, key: str) -> tuple[int, int]:
    """(vectors Redis holds for the day, how many of those differ from the store)."""
    t = query(db, "SELECT text_hash, vector FROM embedding_store WHERE model_key = ?", [key])
    hashes = t.column("text_hash").to_pylist()
    stored = dict(zip(hashes, t.column("vector").to_pylist()))
    with RedisVectorCache(url, key, DIM) as cache:
        found, matrix = cache.get_many(hashes)
    import numpy as np

    wrong = sum(not np.allclose(matrix[i], stored[h], atol=1e-6) for i, h in enumerate(found))
    return len(found), wrong


def test_redis_killed_mid_run_the_store_carries_on(srv, day, redis_server, fault_figures):
    srv.latency_s = 0.1
    resources = resources_for(day, srv, max_concurrency=1, redis_url=redis_server.url)

    def kill_redis():
        if wait_until(lambda: len(srv.embedding_requests) >= 3, timeout_s=60):
            redis_server.kill()

    killer = threading.Thread(target=kill_redis, daemon=True)
    killer.start()
    instance = dg.DagsterInstance.ephemeral()
    fault_figures.add("faults_injected")
    result = materialize(resources, DAY, instance=instance)
    killer.join(timeout=5)
    assert not redis_server.running
    meta = finish_ok(result, day, fault_figures)
    assert asset_metadata(result, "cached_embeddings")["cache/redis_degraded"] is False  # it was up then
    assert meta["cache/redis_degraded"] is True
    assert meta["cache/saved_store"] == day["texts"]
    assert "continuing with the durable store only" in _logs(instance, result)


def test_redis_back_mid_run_is_used_again_by_the_next_run(srv, day, redis_server, fault_figures):
    redis_server.stop()
    srv.latency_s = 0.05
    resources = resources_for(day, srv, max_concurrency=1, redis_url=redis_server.url)

    def restart_redis():
        if wait_until(lambda: len(srv.embedding_requests) >= 1, timeout_s=60):
            redis_server.restart()

    thread = threading.Thread(target=restart_redis, daemon=True)
    thread.start()
    fault_figures.add("faults_injected")
    result = materialize(resources, DAY)
    thread.join(timeout=15)
    assert redis_server.running
    meta = finish_ok(result, day, fault_figures)
    assert meta["cache/redis_degraded"] is True  # down when the step connected: store only, flagged
    key = model_key_id(resources)
    assert _redis_vectors_match(redis_server.url, day["db"], key) == (0, 0)

    again = materialize(resources, DAY)
    assert again.success
    cached = asset_metadata(again, "cached_embeddings")
    assert cached["cache/redis_degraded"] is False
    assert cached["cache/hits_store"] == day["texts"] and cached["cache/written_back"] == day["texts"]
    assert _redis_vectors_match(redis_server.url, day["db"], key) == (day["texts"], 0)
    account(fault_figures, day["db"], DAY, day["rows"])


def test_redis_full_refuses_writes_and_the_store_keeps_everything(
    srv, day, redis_server_factory, fault_figures
):
    server = redis_server_factory(maxmemory_policy="noeviction")
    client = redis.Redis.from_url(server.url)
    used = int(client.info("memory")["used_memory"])
    client.config_set("maxmemory", used + 4096)  # room for one or two vectors, not 32
    client.close()
    resources = resources_for(day, srv, redis_url=server.url)
    instance = dg.DagsterInstance.ephemeral()
    fault_figures.add("faults_injected")
    result = materialize(resources, DAY, instance=instance)
    meta = finish_ok(result, day, fault_figures)
    assert meta["cache/redis_errors"] > 0 and meta["cache/saved_store"] == day["texts"]
    assert "is full (maxmemory reached, writes refused)" in _logs(instance, result)
    in_redis, wrong = _redis_vectors_match(server.url, day["db"], model_key_id(resources))
    assert in_redis < day["texts"] and wrong == 0
