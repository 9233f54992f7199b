"""The code location's assets and checks as the tests need them, loaded the way Dagster loads them."""

from __future__ import annotations

from embed_dagster.defs.clustering.assets import clusters
from embed_dagster.defs.embeddings.assets import cached_embeddings, fresh_embeddings
from embed_dagster.defs.ingest.assets import deduplicated_texts, raw_comments
from embed_dagster.defs.topics.assets import topics

ASSETS = [raw_comments, deduplicated_texts, cached_embeddings, fresh_embeddings, clusters, topics]
