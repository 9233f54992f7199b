"""The embedding client over real HTTP, against a server that fails on cue (fault_server.py)."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest

from embed_dagster.core.embedding.client import (
    MATRYOSHKA_FLAG,
    BatchOutcome,
    ClientConfig,
    EmbeddingClient,
    EmbeddingServerError,
    normalize_base_url,
)
from embed_dagster.dev.local_server import free_port
from embed_dagster_tests.support.fault_server import Fault, FaultServer, expected_vector

pytestmark = pytest.mark.faults

SECRET = "sk-test-secret-do-not-log"
DIM = 64


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


def config(urls, **overrides) -> ClientConfig:
    """Short timeouts and backoffs so every failure path runs in milliseconds."""
    urls = urls if isinstance(urls, list) else [urls]
    base = dict(
        base_urls=urls,
        model="fault-model",
        dimensions=DIM,
        api_key=SECRET,
        batch_size=4,
        max_concurrency=2,
        timeout_s=2.0,
        max_retries=3,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
        deadline_s=30.0,
    )
    base.update(overrides)
    return ClientConfig(**base)


def items(n: int, prefix: str = "text"):
    return [(f"k{i}", f"{prefix} {i}") for i in range(n)]


def run(cfg: ClientConfig, pairs, total=None, log=None) -> tuple[dict, list[BatchOutcome], EmbeddingClient]:
    client = EmbeddingClient(cfg, log=log or logging.getLogger("test.embed"))
    outcomes = list(client.embed_stream(iter(pairs), total=total))
    client.close()
    vectors = {k: v for o in outcomes for k, v in zip(o.keys, o.vectors, strict=True)}
    return vectors, outcomes, client


def assert_correct(vectors: dict, pairs, dim: int = DIM):
    assert set(vectors) == {k for k, _ in pairs}
    for key, text in pairs:
        np.testing.assert_allclose(vectors[key], expected_vector(text, dim), atol=1e-6)


def no_secret(caplog, *texts):
    for text in [*texts, caplog.text]:
        assert SECRET not in text


# ---------------------------------------------------------------- the happy path


def test_concurrent_batches_are_reassembled_by_key(srv):
    srv.latency_s = 0.02  # requests overlap, so completion order differs from submission order
    pairs = items(40)
    vectors, outcomes, client = run(config(srv.base_url, max_concurrency=4), pairs)
    assert_correct(vectors, pairs)
    reqs = srv.embedding_requests
    assert len(reqs) == 10 and all(len(r.inputs) == 4 for r in reqs)
    assert 1 < srv.max_in_flight <= 4
    first = reqs[0].body
    assert first["encoding_format"] == "base64" and first["dimensions"] == DIM
    assert first["model"] == "fault-model"
    for o in outcomes:
        assert o.vectors.dtype == np.float32 and o.vectors.shape == (len(o.keys), DIM)
        assert o.truncated == [False] * len(o.keys) and o.rejected == []
    meta = client.stats.as_metadata()
    json.dumps(meta)
    assert meta["requests"] == 10 and meta["texts_sent"] == 40 and meta["retries"] == 0
    assert meta["served_dimensions"] == DIM and meta["wire_format"] == "base64" and meta["bytes_received"] > 0


def test_the_typed_openai_call_is_the_fallback_transport(srv, monkeypatch):
    import embed_dagster.core.embedding.client as ec

    # as if openai's HTTP library could not be found
    monkeypatch.setattr(ec, "_raw_response_class", lambda: None)
    pairs = items(6)
    vectors, _, _ = run(config(srv.base_url), pairs)
    assert_correct(vectors, pairs)
    assert srv.embedding_requests[0].body["encoding_format"] == "base64"


def test_shuffled_response_order_is_put_back_by_index(srv):
    srv.fail_next(Fault.shuffled(), times=3)
    pairs = items(12)
    vectors, _, client = run(config(srv.base_url), pairs)
    assert_correct(vectors, pairs)
    assert client.stats.retries == 0


def test_stream_consumes_input_lazily_and_yields_before_the_end(srv):
    consumed = 0

    def source():
        nonlocal consumed
        for pair in items(1000):
            consumed += 1
            yield pair

    client = EmbeddingClient(config(srv.base_url, batch_size=10, max_concurrency=2))
    stream = client.embed_stream(source())
    first = next(stream)
    assert len(first.keys) == 10
    assert consumed <= 10 * 3  # in flight plus one batch being formed, never the whole input
    stream.close()
    client.close()


def test_empty_texts_are_rejected_without_being_sent(srv):
    pairs = [("a", "hello"), ("b", ""), ("c", "   \n"), ("d", "world")]
    vectors, outcomes, client = run(config(srv.base_url), pairs)
    assert set(vectors) == {"a", "d"}
    rejected = dict(r for o in outcomes for r in o.rejected)
    assert rejected == {"b": "empty text", "c": "empty text"}
    sent = [t for r in srv.embedding_requests for t in r.inputs]
    assert sent == ["hello", "world"]
    assert client.stats.as_metadata()["rejected_texts"] == 2


def test_only_empty_texts_send_nothing(srv):
    _, outcomes, _ = run(config(srv.base_url), [("a", " "), ("b", "")])
    assert [r for o in outcomes for r in o.rejected] == [("a", "empty text"), ("b", "empty text")]
    assert srv.embedding_requests == []


def test_long_texts_are_cut_to_max_chars_and_flagged(srv):
    pairs = [("long", "x" * 50), ("short", "short one")]
    vectors, outcomes, client = run(config(srv.base_url, max_chars=10), pairs)
    flags = {k: t for o in outcomes for k, t in zip(o.keys, o.truncated, strict=True)}
    assert flags == {"long": True, "short": False}
    assert srv.embedding_requests[0].inputs == ["x" * 10, "short one"]
    np.testing.assert_allclose(vectors["long"], expected_vector("x" * 10, DIM), atol=1e-6)
    assert client.stats.as_metadata()["truncated_texts"] == 1


def test_instruction_is_prefixed_the_qwen3_way(srv):
    run(config(srv.base_url, instruction="Cluster these comments by topic"), [("a", "nice hotel")])
    assert srv.embedding_requests[0].inputs == ["Instruct: Cluster these comments by topic\nQuery:nice hotel"]


def test_progress_is_logged_with_rate_and_eta(srv, caplog):
    srv.latency_s = 0.05
    caplog.set_level(logging.INFO, logger="test.embed")
    run(config(srv.base_url, progress_interval_s=0.01), items(16), total=16)
    lines = [r.getMessage() for r in caplog.records if "texts/s" in r.getMessage()]
    assert lines and any("/16 texts" in line and "ETA" in line for line in lines)


# ---------------------------------------------------------------- retryable failures


def test_server_errors_are_retried_then_succeed(srv, caplog):
    srv.fail_next(Fault.http(500, "CUDA out of memory"), times=2)
    pairs = items(4)
    vectors, _, client = run(config(srv.base_url, max_concurrency=1), pairs)
    assert_correct(vectors, pairs)
    assert client.stats.retries == 2 and len(srv.embedding_requests) == 3
    assert "HTTP 500: CUDA out of memory" in caplog.text and "retry 1/3" in caplog.text
    no_secret(caplog)


def test_retry_after_is_honoured(srv, caplog):
    srv.fail_next(Fault.rate_limited(retry_after=0.2))
    vectors, _, _ = run(config(srv.base_url, max_concurrency=1), items(2))
    assert len(vectors) == 2
    delays = [float(m) for m in re.findall(r"HTTP 429.*retry 1/3 in ([0-9.]+) s", caplog.text)]
    assert delays and delays[0] >= 0.2  # the server's wish beats the 1-10 ms backoff


def test_stall_past_timeout_is_retried(srv, caplog):
    srv.fail_next(Fault.stall(5.0))
    pairs = items(3)
    vectors, _, client = run(config(srv.base_url, timeout_s=0.3, max_concurrency=1), pairs)
    assert_correct(vectors, pairs)
    assert client.stats.retries == 1 and "timeout_s=0.3" in caplog.text


def test_dropped_connection_is_retried(srv):
    srv.fail_next(Fault.disconnect())
    pairs = items(3)
    vectors, _, client = run(config(srv.base_url, max_concurrency=1), pairs)
    assert_correct(vectors, pairs)
    assert client.stats.retries == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.wrong_dimension(32), "32 dimensions, asked for 64"),
        (Fault.nan(), "non-finite"),
        (Fault.too_few(), "3 vectors for 4 inputs"),
        (Fault.duplicate_index(), "indices are not 0..3 exactly once"),
        (Fault.unnormalized(), "not unit length"),
        (Fault.invalid_json(), "not valid JSON"),
        (Fault.deeply_nested_json(), "not valid JSON"),
    ],
)
def test_invalid_responses_are_never_returned(srv, caplog, fault, reason):
    srv.fail_next(fault)  # once: retried, then the correct answer is used
    pairs = items(4)
    vectors, _, client = run(config(srv.base_url, max_concurrency=1), pairs)
    assert_correct(vectors, pairs)
    assert client.stats.retries == 1 and reason in caplog.text

    srv.fail_next(fault, times=10)  # always: a clear error, and nothing yielded
    client = EmbeddingClient(config(srv.base_url, max_retries=2, max_concurrency=1))
    got = []
    with pytest.raises(EmbeddingServerError) as err:
        for outcome in client.embed_stream(iter(pairs)):
            got.append(outcome)
    assert got == []
    message = str(err.value)
    assert srv.base_url in message and "invalid responses" in message and reason in message
    no_secret(caplog, message)


def test_unnormalized_vectors_are_accepted_when_the_server_is_known_not_to_normalize(srv):
    srv.fail_next(Fault.unnormalized(), times=5)
    pairs = items(4)
    vectors, _, client = run(config(srv.base_url, server_normalizes=False, max_concurrency=1), pairs)
    assert_correct(vectors, pairs)  # normalized client-side
    assert client.stats.retries == 0


def test_unreachable_server_gives_one_clear_error(caplog):
    url = f"http://127.0.0.1:{free_port()}"
    client = EmbeddingClient(config(url, max_retries=2), log=logging.getLogger("test.embed"))
    with pytest.raises(EmbeddingServerError) as err:
        list(client.embed_stream(iter(items(3))))
    message = str(err.value)
    assert "cannot reach the embedding server at " + url + "/v1" in message
    assert "after 3 attempt(s)" in message and "local_server" in message
    assert client.stats.retries == 2
    no_secret(caplog, message)


def test_persistent_5xx_gives_up_after_max_retries(srv):
    srv.fail_next(Fault.http(503, "overloaded"), times=50)
    client = EmbeddingClient(config(srv.base_url, max_retries=3, max_concurrency=1))
    with pytest.raises(EmbeddingServerError, match="keeps failing .HTTP 503: overloaded. after 4 attempt"):
        list(client.embed_stream(iter(items(2))))
    assert len(srv.embedding_requests) == 4


def test_deadline_stops_retrying_before_a_long_retry_after(srv):
    srv.fail_next(Fault.rate_limited(retry_after=30), times=5)
    client = EmbeddingClient(config(srv.base_url, deadline_s=1.0, max_concurrency=1))
    with pytest.raises(EmbeddingServerError, match="HTTP 429"):
        list(client.embed_stream(iter(items(2))))
    assert len(srv.embedding_requests) == 1  # did not sleep 30 s to try again


def test_overall_deadline_stops_a_slow_stream_but_keeps_what_was_done(srv):
    srv.latency_s = 0.05
    client = EmbeddingClient(config(srv.base_url, deadline_s=0.3, max_concurrency=1))
    got = []
    with pytest.raises(EmbeddingServerError, match="longer than deadline_s=0.3 s .* of 200"):
        for outcome in client.embed_stream(iter(items(200)), total=200):
            got.append(outcome)
    assert 0 < len(got) < 50
    # every request sent was yielded, except the one in flight at the deadline, which is cut
    assert len(got) <= len(srv.embedding_requests) <= len(got) + 1


def test_auth_errors_are_not_retried_and_do_not_leak_the_key(srv, caplog):
    srv.fail_next(Fault.http(401, "invalid api key"))
    client = EmbeddingClient(config(srv.base_url, max_concurrency=1))
    with pytest.raises(EmbeddingServerError, match="HTTP 401: invalid api key .check api_key.") as err:
        list(client.embed_stream(iter(items(2))))
    assert len(srv.embedding_requests) == 1
    assert srv.embedding_requests[0].headers.get("authorization") == f"Bearer {SECRET}"  # sent, never logged
    no_secret(caplog, str(err.value), repr(client.cfg))


def test_a_server_serving_another_model_is_refused_without_retry(srv):
    srv.fail_next(Fault.wrong_model("Qwen/Qwen3-Embedding-0.6B"))
    client = EmbeddingClient(config(srv.base_url, max_concurrency=1))
    with pytest.raises(EmbeddingServerError, match="serves model 'Qwen/Qwen3-Embedding-0.6B'.*SGLANG_MODEL"):
        list(client.embed_stream(iter(items(2))))
    assert len(srv.embedding_requests) == 1


# ---------------------------------------------------------------- server capabilities


def test_falls_back_to_floats_once_when_base64_is_rejected(srv, caplog):
    srv.reject_base64 = True
    pairs = items(16)
    vectors, _, client = run(config(srv.base_url, max_concurrency=1), pairs)
    assert_correct(vectors, pairs)
    sent = [(r.inputs[0], r.body["encoding_format"]) for r in srv.embedding_requests]
    # the first batch fails, a one-word canary finds base64 is the problem, floats from then on
    assert sent == [
        ("text 0", "base64"),
        ("hello", "base64"),
        ("hello", "float"),
        ("text 0", "float"),
        ("text 4", "float"),
        ("text 8", "float"),
        ("text 12", "float"),
    ]
    assert caplog.text.count("rejected encoding_format=base64") == 1
    assert client.stats.as_metadata()["wire_format"] == "float"


def test_longer_vectors_are_truncated_client_side_with_one_warning(srv, caplog):
    srv.ignore_dimensions = True  # like SGLang launched without is_matryoshka
    pairs = items(12)
    vectors, _, client = run(config(srv.base_url), pairs)
    assert_correct(vectors, pairs)  # prefix + renormalize == what a matryoshka server returns
    assert caplog.text.count(MATRYOSHKA_FLAG) == 1
    assert client.stats.as_metadata()["served_dimensions"] == srv.native_dim


def test_longer_vectors_are_refused_when_matryoshka_is_off(srv):
    srv.ignore_dimensions = True
    client = EmbeddingClient(config(srv.base_url, matryoshka=False))
    with pytest.raises(EmbeddingServerError) as err:
        list(client.embed_stream(iter(items(4))))
    assert MATRYOSHKA_FLAG in str(err.value) and "1024-d" in str(err.value)


# ---------------------------------------------------------------- poison inputs


def test_poison_inputs_are_isolated_by_bisection(srv, caplog):
    pairs = items(16)
    srv.poison_texts.update({"text 3", "text 9"})
    vectors, outcomes, client = run(config(srv.base_url, batch_size=8, max_concurrency=1), pairs)
    rejected = dict(r for o in outcomes for r in o.rejected)
    assert set(rejected) == {"k3", "k9"}
    assert rejected["k3"] == "Input 'text 3' is not allowed"
    assert_correct(vectors, [p for p in pairs if p[0] not in rejected])
    # two batches of 8 with one poison text each: 1 + 2 + 2 + 2 requests per batch, plus one canary
    # after the very first 400 (until a request has worked, a 400 might mean a misconfigured request)
    assert len(srv.embedding_requests) == 2 * 7 + 1
    assert srv.embedding_requests[1].inputs == ["hello"]
    assert client.stats.as_metadata()["rejected_texts"] == 2


def test_a_server_that_rejects_every_request_is_a_configuration_error(srv):
    srv.fail_next(Fault.http(400, "Requested dimensions 64 exceeds the model's hidden size 32"), times=50)
    client = EmbeddingClient(config(srv.base_url, batch_size=8, max_concurrency=1))
    with pytest.raises(
        EmbeddingServerError,
        match="rejects even a one-word request .HTTP 400: Requested "
        "dimensions 64 exceeds.*check model 'fault-model', dimensions=64",
    ):
        list(client.embed_stream(iter(items(40))))
    # the batch, then a canary as base64 and as floats: not 2 x 40 requests of bisection
    assert [(r.inputs, r.body["encoding_format"]) for r in srv.embedding_requests] == [
        ([f"text {i}" for i in range(8)], "base64"),
        (["hello"], "base64"),
        (["hello"], "float"),
    ]


def test_many_poison_texts_in_one_batch_are_not_mistaken_for_misconfiguration(srv):
    pairs = items(32)
    srv.poison_texts.update(t for _, t in pairs[:20])  # more than a misconfiguration guard might allow
    vectors, outcomes, _ = run(config(srv.base_url, batch_size=32, max_concurrency=1), pairs)
    assert len(vectors) == 12 and len([r for o in outcomes for r in o.rejected]) == 20


# ---------------------------------------------------------------- several replicas


def test_requests_are_spread_over_replicas():
    with FaultServer() as a, FaultServer() as b:
        a.latency_s = b.latency_s = 0.01
        pairs = items(80)
        vectors, _, _ = run(config([a.base_url, b.base_url], max_concurrency=4), pairs)
        assert_correct(vectors, pairs)
        na, nb = len(a.embedding_requests), len(b.embedding_requests)
        assert na + nb == 20 and na >= 5 and nb >= 5


def test_a_down_replica_is_routed_around(caplog):
    with FaultServer() as a, FaultServer() as b:
        b.down()
        pairs = items(24)
        vectors, _, client = run(config([b.base_url, a.base_url], max_concurrency=2), pairs)
        assert_correct(vectors, pairs)
        assert len(a.embedding_requests) == 6 and client.stats.retries >= 1
        assert "connection failed" in caplog.text


def test_two_dead_replicas_of_three_do_not_fail_the_call():
    """A dead replica (0 requests in flight) was the least busy, and its cool-down ended when the
    batch retried: with two of three dead the call failed after 7 attempts (stop-24 adversarial pass)."""
    with FaultServer() as a, FaultServer() as b, FaultServer() as c:
        a.down()
        b.down()
        c.latency_s = 0.05
        pairs = items(200)
        cfg = config(
            [a.base_url, b.base_url, c.base_url],
            batch_size=2,
            max_concurrency=8,
            backoff_base_s=0.05,
            backoff_max_s=1.0,
            max_retries=6,
        )
        vectors, _, client = run(cfg, pairs)
        assert_correct(vectors, pairs)
        assert client.stats.retries <= 10  # each dead replica is tried again only after a growing pause


def test_a_replica_that_comes_back_is_used_again(srv):
    srv.down()
    with pytest.raises(EmbeddingServerError):
        run(config(srv.base_url, max_retries=1), items(2))
    srv.up()
    vectors, _, _ = run(config(srv.base_url), items(2))
    assert len(vectors) == 2


# ---------------------------------------------------------------- configuration


def test_base_urls_are_accepted_with_or_without_v1():
    assert normalize_base_url("http://h:30000") == "http://h:30000/v1"
    assert normalize_base_url("http://h:30000/v1/") == "http://h:30000/v1"
    assert ClientConfig(base_urls="http://h:1/").base_urls == ["http://h:1/v1"]


def test_bad_config_is_a_clear_value_error():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        ClientConfig(batch_size=0)
    with pytest.raises(ValueError, match="must start with http"):
        ClientConfig(base_urls=["localhost:30000"])
    with pytest.raises(ValueError, match="base_urls is empty"):
        ClientConfig(base_urls=[])
    assert SECRET not in repr(ClientConfig(api_key=SECRET))
