"""Issue 15 regressions for the embedding client: D6 (a trickling server), D8 (an echoed API key),
and the decision on answers without a ``model`` field. Real HTTP against the fault server."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import pytest

from embed_dagster.core.embedding.client import EmbeddingClient, EmbeddingServerError
from embed_dagster_tests.core.embedding.test_client import SECRET, config, items, run
from embed_dagster_tests.support.fault_server import Fault, FaultServer

pytestmark = pytest.mark.faults


@pytest.fixture
def srv():
    with FaultServer() as server:
        yield server


def test_d6_a_trickling_server_is_cut_on_the_wall_clock(srv, caplog, fault_figures):
    """Headers at once, then one byte every 0.2 s: every byte restarts httpx's read timeout."""
    srv.fail_next(Fault.trickle(0.2), times=100)
    fault_figures.add("faults_injected")
    cfg = config(srv.base_url, timeout_s=0.5, deadline_s=2.0, max_retries=50, max_concurrency=1)
    client = EmbeddingClient(cfg, log=logging.getLogger("test.embed"))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(EmbeddingServerError) as err:
        list(client.embed_stream(iter(items(3))))
    elapsed = time.monotonic() - t0
    client.close()
    msg = str(err.value)
    # generous bound (deadline + one request + slack): a regression hangs for minutes, not seconds
    hung = elapsed > cfg.deadline_s + cfg.timeout_s + 10
    fault_figures.add("hung_runs", int(hung))
    assert not hung, f"embed_stream ran {elapsed:.1f} s past deadline_s={cfg.deadline_s}"
    assert "cannot reach" not in msg and "Is it running" not in msg, msg
    assert "too slowly" in msg or "deadline_s=2" in msg, msg
    assert "the server is sending too slowly" in caplog.text  # each cut request says why


def test_d6_deadline_holds_while_a_request_is_in_flight(srv, fault_figures):
    """One long trickle with a large timeout_s: the call's deadline still ends it."""
    srv.fail_next(Fault.trickle(0.5), times=10)
    fault_figures.add("faults_injected")
    cfg = config(srv.base_url, timeout_s=600.0, deadline_s=1.5, max_concurrency=1)
    client = EmbeddingClient(cfg)
    t0 = time.monotonic()
    with pytest.raises(EmbeddingServerError, match="deadline_s=1.5|too slowly"):
        list(client.embed_stream(iter(items(2))))
    hung = time.monotonic() - t0 > cfg.deadline_s + 10
    fault_figures.add("hung_runs", int(hung))
    assert not hung


def test_d8_an_echoed_api_key_is_scrubbed_from_errors_and_logs(srv, caplog, fault_figures):
    srv.fail_next(Fault.echo_auth(401))
    fault_figures.add("faults_injected")
    client = EmbeddingClient(config(srv.base_url, max_concurrency=1), log=logging.getLogger("test.embed"))
    expect = pytest.raises(EmbeddingServerError, match="HTTP 401: bad key")
    with caplog.at_level(logging.DEBUG), expect as err:
        list(client.embed_stream(iter(items(2))))
    assert srv.embedding_requests[0].headers["authorization"] == f"Bearer {SECRET}"  # it was echoed
    found = sum(t.count(SECRET) for t in (str(err.value), caplog.text))
    fault_figures.add("secrets_found", found)
    assert found == 0 and "***" in str(err.value)


def test_d8_echoed_key_in_a_400_rejection_reason_is_scrubbed(srv, fault_figures):
    """A 400 on one input becomes that input's rejection reason, which lands in quarantine.reason."""
    srv.fail_next(Fault.echo_auth(400), times=1)
    srv.poison_texts.add("text 1")
    fault_figures.add("faults_injected")
    _, outcomes, _ = run(config(srv.base_url, batch_size=2, max_concurrency=1), items(2))
    reasons = [r for o in outcomes for _, r in o.rejected]
    found = sum(r.count(SECRET) for r in reasons)
    fault_figures.add("secrets_found", found)
    assert reasons and found == 0


def test_an_echoed_key_across_the_message_cut_leaves_no_prefix(srv, caplog, fault_figures):
    """Server messages are cut to 500 characters; the cut came before the scrub, so a key across
    it was kept in part (stop-24 adversarial pass). A pad of 493 leaves "sk-test" (too short for
    the sk- key pattern) before the cut."""
    srv.fail_next(Fault.echo_auth(401, pad=493))
    fault_figures.add("faults_injected")
    client = EmbeddingClient(config(srv.base_url, max_concurrency=1), log=logging.getLogger("test.embed"))
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingServerError, match="HTTP 401") as err:
        list(client.embed_stream(iter(items(2))))
    assert "x" * 400 in str(err.value)  # the padded message did reach the error
    assert SECRET[:7] not in str(err.value) and SECRET[:7] not in caplog.text


def test_a_server_that_starts_rejecting_everything_fails_the_call_and_quarantines_nothing(srv, fault_figures):
    """After a first success a 400 was taken to mean bad input, so a server (or proxy) answering 400
    to every request had the whole day bisected into quarantine, and the run succeeded (stop 24)."""
    client = EmbeddingClient(config(srv.base_url, batch_size=8, max_concurrency=1))
    stream = client.embed_stream(iter(items(64)))
    first = next(stream)
    assert len(first.keys) == 8 and not first.rejected
    srv.fail_next(Fault.http(400, "model is reloading, try later"), times=10_000)
    fault_figures.add("faults_injected")
    later = []
    with pytest.raises(EmbeddingServerError, match="now rejects even a one-word request"):
        for outcome in stream:
            later.append(outcome)
    assert [r for o in later for r in o.rejected] == []


def test_an_answer_without_model_is_accepted_with_one_warning(srv, caplog):
    srv.fail_next(Fault.wrong_model(None), times=3)
    with caplog.at_level(logging.WARNING):
        vectors, _, _ = run(config(srv.base_url), items(6))
    assert len(vectors) == 6
    assert caplog.text.count("does not name the model") == 1


def test_an_interrupt_does_not_wait_for_requests_in_flight(srv, fault_figures):
    """Cancel in the UI interrupts the step the way Dagster does on Unix: SIGINT to the run worker
    (``dagster_shared.ipc.send_interrupt``), whose handler raises in the main thread. The stream must
    then end at once, not after the requests still waiting on a hung server reach timeout_s:
    through dagster dev, a run cancelled 15 s into a hung fresh_embeddings step showed CANCELED
    only 47 s later (one-off, before this test), when its requests timed out."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    srv.latency_s = 60.0  # every request hangs
    fault_figures.add("faults_injected")
    cfg = config(srv.base_url, timeout_s=30.0, deadline_s=600.0, max_concurrency=2, batch_size=2)
    client = EmbeddingClient(cfg)
    # Python's own handler (raises KeyboardInterrupt), whatever this process inherited
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    t0 = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            list(client.embed_stream(iter(items(8))))
        took = time.monotonic() - t0
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    client.close()
    # the requests in flight would end only at timeout_s (30 s); the interrupt came after 1 s
    hung = took > cfg.timeout_s / 2
    fault_figures.add("hung_runs", int(hung))
    assert not hung, f"the interrupted stream returned after {took:.1f} s"
