"""Code versions that mean something: each names exactly what decides an asset's output.

Why: with a constant ``code_version="1"`` nothing was ever stale. Dagster marks a partition stale
when the code version it was materialized with differs from the current one, and marks everything
downstream stale with it. So each version below is derived, when the code location loads, from
what decides that asset's rows:

* ``raw_comments``: the ingest rules (:data:`INGEST_VERSION`);
* ``deduplicated_texts``: the normalization rules (``NORMALIZATION_VERSION``);
* the embedding assets: the model key (model, output dimension, instruction, normalization);
  changing ``EMBED_DAGSTER_DIMENSIONS`` or the model marks every partition's embeddings, clusters
  and topics stale, and the backfill that follows sends only the texts with no vector for the new
  key (vectors are stored per model key);
* ``clusters``: the clustering recipe's settings; ``topics``: the topic-matching parameters; both
  also the model key, since the vectors decide them too.

A ``_LOGIC`` number per asset is bumped by hand when the code itself changes what it writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from embed_dagster.core.textnorm import NORMALIZATION_VERSION
from embed_dagster.defs.resources import ClusteringResource, EmbeddingResource
from embed_dagster.defs.topics.params import topic_params
from embed_dagster.settings import Settings, load_settings

INGEST_VERSION = 2
_LOGIC = {
    "raw_comments": 1,
    "deduplicated_texts": 1,
    "cached_embeddings": 2,
    "fresh_embeddings": 2,
    "clusters": 2,
    "topics": 3,
}


def settings_digest(values: object) -> str:
    """A short, stable digest of a dataclass's fields (or any JSON-able value)."""
    if dataclasses.is_dataclass(values):
        values = dataclasses.asdict(values)
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=5).hexdigest()


def code_versions(settings: Settings | None = None) -> dict[str, str]:
    """Asset name → code version, from the same Settings the resources are built from."""
    s = settings or load_settings()
    key = EmbeddingResource(
        base_url=s.sglang_base_url, model=s.sglang_model, dimensions=s.dimensions, instruction=s.instruction
    ).model_key()
    own = {
        "raw_comments": f"ingest{INGEST_VERSION}",
        "deduplicated_texts": f"norm{NORMALIZATION_VERSION}",
        "cached_embeddings": key.id,
        "fresh_embeddings": key.id,
        # The vectors decide the clusters and topics too. Dagster 1.13 marks a partition stale for its
        # own code version or for an upstream's new data version, not for an upstream that is merely
        # stale, so the model key is part of these versions: a new model marks them stale at once.
        "clusters": f"cluster-{settings_digest(ClusteringResource().config())}-{settings_digest(key.id)}",
        "topics": f"topics-{settings_digest(topic_params(s))}-{settings_digest(key.id)}",
    }
    return {name: f"v{_LOGIC[name]}-{value}" for name, value in own.items()}


CODE_VERSIONS = code_versions()
