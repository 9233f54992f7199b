"""The bundled server answers like SGLang: same shapes, same rejections, correct vectors in order."""

from __future__ import annotations

import base64
import json
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from embed_dagster.core.embedding.client import ClientConfig, EmbeddingClient
from embed_dagster.dev.local_server import (
    MODEL_NAME,
    NATIVE_DIM,
    DynamicBatcher,
    LocalServerProcess,
    make_server,
    pseudo_vector,
)

ZH_EN = [
    "这家酒店的服务非常好，房间也很干净。",
    "宾馆服务很棒，客房干净整洁。",
    "我的银行卡还没有寄到，怎么办？",
    "The hotel staff were friendly and the room was spotless.",
    "My new card still hasn't arrived after two weeks.",
]


def post(base_url: str, body, path: str = "/embeddings") -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(base_url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def vectors_of(payload: dict) -> np.ndarray:
    rows = sorted(payload["data"], key=lambda d: d["index"])
    out = []
    for row in rows:
        emb = row["embedding"]
        out.append(np.frombuffer(base64.b64decode(emb), "<f4") if isinstance(emb, str) else np.array(emb))
    return np.stack(out).astype(np.float32)


def test_vectors_are_unit_length_at_the_requested_dimension(local_server):
    for dims in (None, 512, 128):
        body = {"model": MODEL_NAME, "input": ZH_EN}
        if dims:
            body["dimensions"] = dims
        status, payload = post(local_server.base_url, body)
        assert status == 200
        v = vectors_of(payload)
        assert v.shape == (len(ZH_EN), dims or NATIVE_DIM)
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert payload["object"] == "list" and payload["model"] == MODEL_NAME
        assert [d["index"] for d in payload["data"]] == list(range(len(ZH_EN)))


def test_truncation_is_matryoshka_style_prefix_then_renormalize(local_server):
    full = vectors_of(post(local_server.base_url, {"input": ZH_EN})[1])
    cut = vectors_of(post(local_server.base_url, {"input": ZH_EN, "dimensions": 64})[1])
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, atol=1e-5)


def test_batch_rows_keep_input_order_and_match_single_requests(local_server):
    batch = vectors_of(post(local_server.base_url, {"input": ZH_EN})[1])
    for i, text in enumerate(ZH_EN):
        single = vectors_of(post(local_server.base_url, {"input": text})[1])
        np.testing.assert_allclose(batch[i], single[0], atol=1e-5)


def test_base64_and_float_carry_the_same_vectors(local_server):
    floats = vectors_of(post(local_server.base_url, {"input": ZH_EN, "encoding_format": "float"})[1])
    status, payload = post(local_server.base_url, {"input": ZH_EN, "encoding_format": "base64"})
    assert status == 200 and all(isinstance(d["embedding"], str) for d in payload["data"])
    np.testing.assert_allclose(vectors_of(payload), floats, atol=1e-6)


def test_chinese_paraphrases_are_closer_than_unrelated_text_and_across_languages(local_server):
    v = vectors_of(post(local_server.base_url, {"input": ZH_EN})[1])
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2  # two hotel reviews vs a bank card question
    assert sim[2, 4] > sim[2, 3]  # zh card question is closer to the en card question than to a hotel
    assert sim[0, 3] > sim[0, 4]  # zh hotel review is closer to the en hotel review


def test_usage_counts_tokens_per_text(local_server):
    one = post(local_server.base_url, {"input": ZH_EN[0]})[1]["usage"]
    two = post(local_server.base_url, {"input": [ZH_EN[0], ZH_EN[3]]})[1]["usage"]
    other = post(local_server.base_url, {"input": ZH_EN[3]})[1]["usage"]
    assert one["prompt_tokens"] > 2 and one["total_tokens"] == one["prompt_tokens"]
    assert two["prompt_tokens"] == one["prompt_tokens"] + other["prompt_tokens"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": ""}, "Input cannot be empty"),
        ({"input": "   "}, "Input cannot be empty or whitespace only"),
        ({"input": []}, "Input cannot be empty"),
        ({"input": ["fine", " \n"]}, "Input at index 1 cannot be empty or whitespace only"),
        ({"input": ["ok"], "dimensions": 513}, "exceeds the model's hidden size 512"),
        ({"input": ["ok"], "dimensions": 0}, "dimensions must be a positive integer"),
        ({"input": ["ok"], "encoding_format": "int8"}, "encoding_format must be"),
        ({"input": [1, 2, 3]}, "must be strings"),
        ({"input": ["fine", "\ud800"]}, "Input at index 1 is not valid Unicode text"),
    ],
)
def test_bad_requests_get_sglang_error_shape(local_server, body, message):
    status, payload = post(local_server.base_url, body)
    assert status == 400
    assert set(payload) == {"object", "message", "type", "param", "code"}
    assert payload["object"] == "error" and payload["type"] == "BadRequestError"
    assert payload["code"] == 400 and payload["param"] is None
    assert message in payload["message"]


def test_invalid_json_and_unknown_path_are_clear_errors(local_server):
    status, payload = post(local_server.base_url, b"{not json")
    assert status == 400 and payload["message"] == "Request body is not valid JSON"
    status, payload = post(local_server.base_url, {"input": "x"}, path="/chat/completions")
    assert status == 404 and payload["object"] == "error"


def test_requests_that_would_take_the_server_down_are_refused(local_server):
    """Stop-24 adversarial pass: 100,000 one-letter inputs (a 0.5 MB body) took the server to 4 GB;
    Content-Length: -1 read until the client closed, past the body cap."""
    status, payload = post(local_server.base_url, {"input": ["a"] * 100_000})
    assert status == 413 and "at most 4096 per request" in payload["message"]
    host, port = local_server.base_url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n{")
        answer = b""  # it answers at once, without the client closing its side; headers and body
        while b"non-negative" not in answer:  # may come in separate packets
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"Content-Length must be a non-negative integer" in answer


class _PoisonEncoder:
    def __init__(self):
        self.passes: list[list[str]] = []

    def encode(self, texts):
        self.passes.append(list(texts))
        if "BAD" in texts:
            raise UnicodeEncodeError("utf-8", "BAD", 0, 1, "surrogates not allowed")
        return np.stack([pseudo_vector(t) for t in texts]), [1] * len(texts)


def test_one_bad_input_fails_its_own_request_not_the_ones_merged_with_it():
    """It failed every request merged into the same pass (stop-24 adversarial pass)."""
    enc = _PoisonEncoder()
    batcher = DynamicBatcher(enc, max_batch=100, max_wait_s=0.3)  # long enough to merge all four
    outcome: dict[str, object] = {}

    def call(name: str, texts: list[str]):
        try:
            outcome[name] = batcher.submit(texts)[0]
        except Exception as exc:  # noqa: BLE001
            outcome[name] = exc

    threads = [threading.Thread(target=call, args=(f"ok{i}", [f"t{i}"])) for i in range(3)]
    threads.append(threading.Thread(target=call, args=("bad", ["BAD"])))
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    batcher.stop()
    assert len(enc.passes[0]) == 4  # they were merged
    assert isinstance(outcome["bad"], UnicodeEncodeError)
    for i in range(3):
        np.testing.assert_array_equal(outcome[f"ok{i}"], pseudo_vector(f"t{i}")[None, :])


def test_models_endpoint_and_health(local_server):
    with urllib.request.urlopen(local_server.base_url + "/models", timeout=10) as resp:
        models = json.loads(resp.read())
    assert models["object"] == "list"
    card = models["data"][0]
    assert card["id"] == MODEL_NAME and card["object"] == "model" and card["owned_by"] == "sglang"
    health_url = local_server.base_url.removesuffix("/v1") + "/health"
    with urllib.request.urlopen(health_url, timeout=10) as resp:
        assert resp.status == 200


def test_client_reassembles_order_under_concurrency_against_the_real_model(local_server):
    texts = [f"{ZH_EN[i % len(ZH_EN)]} #{i}" for i in range(48)]
    cfg = ClientConfig(base_urls=[local_server.base_url], dimensions=256, batch_size=4, max_concurrency=4)
    with EmbeddingClient(cfg) as client:
        got = {}
        for outcome in client.embed_stream(((str(i), t) for i, t in enumerate(texts)), total=len(texts)):
            got.update(zip(outcome.keys, outcome.vectors, strict=True))
    reference = vectors_of(post(local_server.base_url, {"input": texts, "dimensions": 256})[1])
    assert sorted(got, key=int) == [str(i) for i in range(len(texts))]
    np.testing.assert_allclose(np.stack([got[str(i)] for i in range(len(texts))]), reference, atol=1e-5)
    assert client.stats.as_metadata()["wire_format"] == "base64"


class _GateEncoder:
    """Blocks its first pass until the test has queued more work, so merging is deterministic."""

    def __init__(self):
        self.release = threading.Event()
        self.pass_texts: list[list[str]] = []

    def encode(self, texts):
        self.pass_texts.append(list(texts))
        if len(self.pass_texts) == 1:
            self.release.wait(10)
        return np.stack([pseudo_vector(t) for t in texts]), [1] * len(texts)


def test_batcher_merges_concurrent_requests_and_respects_max_batch():
    enc = _GateEncoder()
    batcher = DynamicBatcher(enc, max_batch=10, max_wait_s=0.0)
    results: dict[int, np.ndarray] = {}

    def call(i: int, n: int):
        results[i] = batcher.submit([f"r{i} t{j}" for j in range(n)])[0]

    first = threading.Thread(target=call, args=(0, 2))
    first.start()
    while not enc.pass_texts:  # the first pass is running (and blocked)
        threading.Event().wait(0.005)
    others = [threading.Thread(target=call, args=(i, 3)) for i in range(1, 5)] + [
        threading.Thread(target=call, args=(5, 25))
    ]
    for t in others:
        t.start()
    while len(batcher._queue) < 4 + 3:  # four 3-text jobs + the 25-text request split into 10/10/5
        threading.Event().wait(0.005)
    enc.release.set()
    for t in [first, *others]:
        t.join(10)
    batcher.stop()
    sizes = [len(p) for p in enc.pass_texts]
    assert max(sizes) <= 10
    assert len(enc.pass_texts) < 1 + 7  # later requests shared passes instead of one pass each
    assert sum(sizes) == 2 + 4 * 3 + 25
    for i, n in [(0, 2), (1, 3), (5, 25)]:
        np.testing.assert_array_equal(results[i], np.stack([pseudo_vector(f"r{i} t{j}") for j in range(n)]))


@pytest.mark.integration
def test_latency_model_mode_is_deterministic_and_binds_loopback():
    with LocalServerProcess(extra_args=["--latency-fixed-ms", "1", "--latency-per-token-ms", "0"]) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        status, payload = post(srv.base_url, {"input": ["a", "b"], "dimensions": 32})
    assert status == 200
    expected = np.stack([pseudo_vector(t)[:32] for t in ("a", "b")])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors_of(payload), expected, atol=1e-6)
    server = make_server(latency_fixed_ms=0.0)
    try:
        assert server.server_address[0] == "127.0.0.1"
    finally:
        server.batcher.stop()
        server.server_close()


@pytest.mark.integration
def test_a_server_that_cannot_start_says_why():
    with pytest.raises(RuntimeError, match="(?s)exited with code 2.*--max-batch must be >= 1"):
        LocalServerProcess(extra_args=["--max-batch", "0"]).start()
