"""The code location: assets, checks, job, schedule, sensor and resources.

Every setting comes from the environment, so the same code runs the embedded default (no
variables set: local DuckDB file, bundled CPU embedding server, no Redis) and production.
"""

from __future__ import annotations

import os

import dagster as dg

from embed_dagster.assets import ASSETS
from embed_dagster.automation import daily_schedule, embed_comments_job, landing_sensor
from embed_dagster.checks import CHECKS
from embed_dagster.resources import (
    ClusteringResource,
    EmbeddingResource,
    LandingResource,
    VectorCacheResource,
    WarehouseResource,
    env_or_none,
)


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def build_resources() -> dict:
    return {
        "warehouse": WarehouseResource(path=os.environ.get("EMBED_DAGSTER_DB", "data/embed_dagster.duckdb")),
        "landing": LandingResource(root=os.environ.get("EMBED_DAGSTER_LANDING", "data/landing")),
        "embedding": EmbeddingResource(
            base_url=env_or_none("SGLANG_BASE_URL"),
            api_key=env_or_none("SGLANG_API_KEY"),
            model=os.environ.get("SGLANG_MODEL") or None,
            dimensions=_int_env("EMBED_DAGSTER_DIMENSIONS", 512),
            batch_size=_int_env("EMBED_DAGSTER_BATCH_SIZE", 128),
            max_concurrency=_int_env("EMBED_DAGSTER_MAX_CONCURRENCY", 8),
            instruction=os.environ.get("EMBED_DAGSTER_INSTRUCTION") or None,
        ),
        "vector_cache": VectorCacheResource(
            redis_url=env_or_none("REDIS_URL"),
            redis_password=env_or_none("REDIS_PASSWORD"),
            ttl_s=_int_env("EMBED_DAGSTER_REDIS_TTL_S", 30 * 24 * 3600),
        ),
        "clustering": ClusteringResource(),
    }


defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=CHECKS,
    jobs=[embed_comments_job],
    schedules=[daily_schedule],
    sensors=[landing_sensor],
    resources=build_resources(),
)
