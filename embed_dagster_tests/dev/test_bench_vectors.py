"""The topics benchmark can calibrate on the deployment's own embedding model: its vectors come
through the same embedder the pipeline uses, as the settings describe it."""

from __future__ import annotations

import numpy as np
import pytest

from embed_dagster.defs.resources import EmbeddingResource
from embed_dagster.dev.local_server import MODEL_NAME

pytestmark = pytest.mark.integration


def test_bench_vectors_come_from_the_embedder_the_settings_name(local_server, monkeypatch):
    from bench._topics_data import embed_with, settings_embedding

    monkeypatch.setenv("SGLANG_BASE_URL", local_server.base_url)
    monkeypatch.setenv("SGLANG_MODEL", MODEL_NAME)
    monkeypatch.setenv("SGLANG_API_KEY", "key-for-the-test")
    resource = settings_embedding()
    assert not resource.is_local and resource.model_key().model == MODEL_NAME
    # outside Dagster the secrets are their values, not unresolved EnvVars
    assert resource.base_url == local_server.base_url and resource.api_key == "key-for-the-test"
    texts = ["退款太慢了", "refund is slow", "the screen cracked", "屏幕碎了", "refund is slow"] * 40
    remote = embed_with(resource, texts)
    local = embed_with(EmbeddingResource(), texts)  # the same model, in this process
    assert remote.shape == (len(texts), 512)
    np.testing.assert_allclose(remote, local, atol=1e-4)  # one vector per text, in input order
    assert np.allclose(remote[1], remote[4]) and not np.allclose(remote[0], remote[1])
